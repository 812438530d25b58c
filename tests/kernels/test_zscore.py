"""Robust z-score kernel: spec §9.7 examples, a plain reference, and invariances (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from opencmap.kernels.zscore import MAD_SCALE, robust_center_scale, robust_zscore


def _reference(x: np.ndarray, cols: list[int], floor: float) -> np.ndarray:
    """Obviously-correct per-row loop in float64 with statistics.median."""
    import statistics

    out = np.empty_like(x, dtype=np.float64)
    for g, row in enumerate(x.tolist()):
        ref = [row[c] for c in cols]
        mu = statistics.median(ref)
        mad = statistics.median(abs(v - mu) for v in ref)
        out[g] = [(v - mu) / (MAD_SCALE * max(mad, floor)) for v in row]
    return out


def test_spec_9_7_zspc_and_floor() -> None:
    x = np.array([[10, 11, 12, 13, 14, 30], [5, 5, 5, 5, 5.05, 5]], dtype=np.float64)
    z = robust_zscore(x)
    np.testing.assert_allclose(z[0], [-1.124151, -0.674491, -0.224830, 0.224830, 0.674491, 7.869059], atol=1e-6)
    np.testing.assert_allclose(z[1], [0, 0, 0, 0, 0.337245, 0], atol=1e-6)


def test_spec_9_7_zsvc_first_three_controls() -> None:
    x = np.array([[10, 11, 12, 13, 14, 30]], dtype=np.float64)
    z = robust_zscore(x, np.array([0, 1, 2]))
    np.testing.assert_allclose(z[0], [-0.674491, 0, 0.674491, 1.348982, 2.023472, 12.815324], atol=1e-6)
    # a boolean mask means the same
    mask = np.array([True, True, True, False, False, False])
    np.testing.assert_array_equal(robust_zscore(x, mask), z)


def test_floor_applies_to_raw_mad() -> None:
    x = np.array([[0.0, 0.0, 0.05, 0.0, 1.0]])  # raw MAD 0 < 0.1; the floor is not 0.1 / 1.4826
    z = robust_zscore(x)
    np.testing.assert_allclose(z[0, -1], 1.0 / (1.4826 * 0.1))


def test_var_adjustments() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 30))
    x[:5] = 7.0  # five zero-MAD genes
    _, mad_none = robust_center_scale(x, var_adjustment="none")
    assert (mad_none[:5] == 0).all()
    with np.errstate(all="ignore"):
        z_none = robust_zscore(x, var_adjustment="none")
    assert np.isnan(z_none[:5]).all()  # 0/0
    # estimate: floor = max(prctile_1 of MADs, min_mad) -> with 2.5 % zero MADs the 1st percentile is 0
    _, mad_est = robust_center_scale(x, var_adjustment="estimate", min_mad=0.1)
    assert (mad_est[:5] == 0.1).all()
    _, mad_est20 = robust_center_scale(x, var_adjustment="estimate", estimate_prct=20, min_mad=0.0)
    from opencmap.kernels.percentile import prctile

    floor = prctile(mad_none, 20)
    np.testing.assert_allclose(mad_est20, np.maximum(mad_none, floor))
    with pytest.raises(ValueError, match="var_adjustment"):
        robust_zscore(x, var_adjustment="bogus")


def test_nan_ignored_and_kept() -> None:
    x = np.array([[1.0, 2.0, np.nan, 4.0, 100.0], [np.nan] * 5])
    z = robust_zscore(x)
    ref = robust_zscore(np.array([[1.0, 2.0, 4.0, 100.0]]))
    np.testing.assert_allclose(z[0, [0, 1, 3, 4]], ref[0])
    assert np.isnan(z[0, 2]) and np.isnan(z[1]).all()


def test_float32_stays_float32() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert robust_zscore(x).dtype == np.float32
    assert robust_zscore(x.astype(int)).dtype == np.float64


finite = st.floats(-50, 50, allow_nan=False, width=64)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 9)), elements=finite))
def test_matches_reference_loop(x: np.ndarray) -> None:
    cols = list(range(x.shape[1]))
    np.testing.assert_allclose(robust_zscore(x), _reference(x, cols, 0.1), rtol=1e-9, atol=1e-9)
    bg = cols[: max(1, len(cols) // 2)]
    np.testing.assert_allclose(robust_zscore(x, np.array(bg)), _reference(x, bg, 0.1), rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(2, 9)), elements=finite),
    st.floats(-20, 20),
    st.floats(0.5, 4),
    st.randoms(use_true_random=False),
)
def test_invariances(x: np.ndarray, shift: float, factor: float, rnd) -> None:
    z = robust_zscore(x)
    # shift invariance per row (the 0.1 floor bounds the round-off amplification)
    np.testing.assert_allclose(robust_zscore(x + shift), z, rtol=0, atol=1e-8)
    # scale invariance, with the floor scaled alike
    np.testing.assert_allclose(robust_zscore(x * factor, min_mad=0.1 * factor), z, rtol=1e-9, atol=1e-9)
    # permuting samples permutes the output
    perm = list(range(x.shape[1]))
    rnd.shuffle(perm)
    np.testing.assert_allclose(robust_zscore(x[:, perm]), robust_zscore(x)[:, perm], rtol=1e-12, atol=1e-12)
    # the median sample has z = 0 for odd sample counts
    if x.shape[1] % 2 == 1:
        med = np.median(x, axis=1)
        zz = robust_zscore(x)
        for g in range(x.shape[0]):
            assert np.any(np.isclose(zz[g][np.isclose(x[g], med[g])], 0.0))


@settings(max_examples=80, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 40)),
        elements=st.sampled_from([-3.5, -1.0, 0.0, 0.25, 1.0, 2.0, 7.75]) | st.floats(-50, 50, width=32),
    ),
    st.booleans(),
)
def test_centre_and_mad_bit_identical_to_np_median(x: np.ndarray, fortran: bool) -> None:
    """The compiled quickselect gives exactly np.median's float32 medians and MADs (ties, even n)."""
    a = np.asfortranarray(x) if fortran else x
    med, mad = robust_center_scale(a, var_adjustment="none")
    ref_med = np.median(x, axis=1).astype(np.float32)
    ref_mad = np.median(np.abs(x - ref_med[:, None]), axis=1).astype(np.float32)
    assert med.dtype == np.float32 and mad.dtype == np.float32
    np.testing.assert_array_equal(med, ref_med)
    np.testing.assert_array_equal(mad, ref_mad)


def _numpy_reference(a: np.ndarray, background: np.ndarray | None = None, floor: float = 0.1) -> np.ndarray:
    """The textbook numpy formula in the input's dtype (np.median, broadcasting)."""
    ref = a if background is None else a[:, background]
    med = np.median(ref, axis=1)
    mad = np.maximum(np.median(np.abs(ref - med[:, None]), axis=1), a.dtype.type(floor))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a - med[:, None]) / (a.dtype.type(MAD_SCALE) * mad[:, None])


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 40),
    st.sampled_from([np.float32, np.float64]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.0, 0.5, 2.0]),  # 0: continuous values; else rounded (many ties)
)
def test_sorted_median_mad_equal_numpy_bitwise(rows: int, n: int, dtype, fortran: bool, seed: int, step: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(8, 2, size=(rows, n))
    if step:
        a = np.round(a / step) * step
    a = a.astype(dtype)
    a = np.asfortranarray(a) if fortran else np.ascontiguousarray(a)
    z = robust_zscore(a)
    assert z.dtype == a.dtype and z.shape == a.shape
    np.testing.assert_array_equal(z, _numpy_reference(a))
    bg = np.arange(0, n, 2)
    np.testing.assert_array_equal(robust_zscore(a, bg), _numpy_reference(a, bg))


def test_out_parameter_and_layouts() -> None:
    rng = np.random.default_rng(3)
    a = np.asfortranarray(rng.normal(size=(30, 17)).astype(np.float32))
    expected = _numpy_reference(a)
    buffer = np.empty((40, 30), dtype=np.float32).T  # column-major, like the runner's set buffer
    out = buffer[:, 5:22]
    assert robust_zscore(a, out=out) is out
    np.testing.assert_array_equal(out, expected)
    c_out = np.empty((30, 17), dtype=np.float32)  # another memory order than the input
    np.testing.assert_array_equal(robust_zscore(a, out=c_out), expected)
    with pytest.raises(ValueError, match="out must be"):
        robust_zscore(a, out=np.empty((30, 17), dtype=np.float64))
