"""Quantile normalisation: hand-worked example, tie rule, invariances (hypothesis), sketch mode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from opencmap.kernels.qnorm import quantile_normalize, quantile_sketch_normalize, quantile_target, resample_target


def _reference(x: np.ndarray) -> np.ndarray:
    """Plain loops: median of sorted columns; each value -> target at its average rank."""
    n, s = x.shape
    srt = np.sort(x, axis=0)
    target = [float(np.median(srt[i])) for i in range(n)]
    out = np.empty_like(x, dtype=np.float64)
    for j in range(s):
        col = x[:, j].tolist()
        for i, v in enumerate(col):
            below = sum(1 for w in col if w < v)
            equal = sum(1 for w in col if w == v)
            r = below + (equal + 1) / 2  # average 1-based rank
            lo = int(np.floor(r))
            frac = r - lo
            out[i, j] = target[lo - 1] if frac == 0 else target[lo - 1] * (1 - frac) + target[lo] * frac
    return out


def test_worked_example_with_a_tie() -> None:
    x = np.array([[5.0, 4, 3], [2, 1, 4], [3, 4, 6], [4, 2, 8]])
    # sorted columns: [2,3,4,5], [1,2,4,4], [3,4,6,8] -> target (medians) [2, 3, 4, 5]
    np.testing.assert_array_equal(quantile_target(x), [2, 3, 4, 5])
    out = quantile_normalize(x)
    # column 2 has 4 twice (ranks 3 and 4 -> 3.5 -> target 4.5)
    np.testing.assert_array_equal(out, [[5, 4.5, 2], [2, 2, 3], [3, 4.5, 4], [4, 3, 5]])
    np.testing.assert_array_equal(out, _reference(x))


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(2, 25), st.integers(1, 6)), elements=st.integers(0, 6).map(float)),
    st.randoms(use_true_random=False),
)
def test_matches_reference_and_is_permutation_invariant(x: np.ndarray, rnd) -> None:  # noqa: ANN001
    out = quantile_normalize(x)
    np.testing.assert_allclose(out, _reference(x), atol=1e-12)
    rows = list(range(x.shape[0]))
    cols = list(range(x.shape[1]))
    rnd.shuffle(rows)
    rnd.shuffle(cols)
    np.testing.assert_allclose(quantile_normalize(x[rows][:, cols]), out[rows][:, cols], atol=1e-12)
    # tied inputs stay tied, order is kept
    for j in range(x.shape[1]):
        a, b = x[:, j], out[:, j]
        assert np.all(np.diff(b[np.argsort(a, kind="stable")]) >= -1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(1, 5)), elements=st.floats(-10, 10, allow_nan=False), unique=True))
def test_without_ties_every_column_gets_the_target(x: np.ndarray) -> None:
    out = quantile_normalize(x)
    t = quantile_target(x)
    for j in range(x.shape[1]):
        np.testing.assert_allclose(np.sort(out[:, j]), t, atol=1e-12)


def test_nan_stays_nan_and_short_columns_are_stretched() -> None:
    x = np.array([[1.0, 10], [2, np.nan], [3, 30], [4, 40], [5, 50]])
    out = quantile_normalize(x)
    assert np.isnan(out[1, 1]) and np.isfinite(np.delete(out.ravel(), 3)).all()
    # column 2 (4 values) stretched over 5 ranks: its smallest gets target[0], largest target[-1]
    t = quantile_target(x)
    assert out[0, 1] == pytest.approx(t[0]) and out[4, 1] == pytest.approx(t[-1])


def test_sketch_mode_assigns_the_target_by_order() -> None:
    x = np.array([[3.0, 1], [1, 2], [2, 2]])
    target = np.array([10.0, 20, 30])
    out = quantile_sketch_normalize(x, target)
    np.testing.assert_array_equal(out, [[30, 10], [10, 20], [20, 30]])  # tie broken by row order
    # a longer target is interpolated onto the rows
    np.testing.assert_allclose(resample_target(np.linspace(0, 1, 5), 3), [0, 0.5, 1])
    np.testing.assert_allclose(quantile_sketch_normalize(x, np.linspace(10, 30, 5)), out)
