"""MATLAB-style robust LOWESS: exact on lines, a plain per-point reference, vectorisation, CMap curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.io import read_gct
from opencmap.kernels.lowess import lowess_windows, robust_lowess

REF = np.array([4.3219, 5.1293, 5.8989, 6.9109, 7.9208, 8.7097, 9.7448, 10.6169, 11.3459, 12.0601, 12.4597, 12.6328, 12.8443])
ROUNDOFF = 1e-12  # residuals this small are floating-point noise of an exact local fit


def _reference(
    x: np.ndarray, y: np.ndarray, span: int, iterations: int, *, reweight_roundoff: frozenset[tuple[int, int]] = frozenset()
) -> np.ndarray:
    """Plain loop: k nearest points, tricube-weighted line via lstsq, local |r| median bisquare passes.

    A window whose residual scale is round-off keeps plain tricube weights, unless
    ``(pass, first index of the window)`` is in ``reweight_roundoff``: then (as MATLAB does when its
    round-off scale exceeds ``max|y| * eps``) only the points with round-off residuals keep weight.
    """
    n = len(x)
    windows, dmaxs = [], []
    for i in range(n):
        d = np.abs(x - x[i])
        cand = [j for j in range(max(0, i - span + 1), min(n, i + span))]
        kth = sorted(d[cand])[span - 1]
        kept = [j for j in cand if d[j] <= kth]
        windows.append(list(range(min(kept), max(kept) + 1)))
        dmaxs.append(max(d[kept]))

    def fit(i: int, extra: np.ndarray) -> float:
        idx = windows[i]
        x1 = x[idx] - x[i]
        w = (1 - (np.abs(x1) / dmaxs[i]) ** 3) ** 3 * extra
        a = np.column_stack([np.ones(len(idx)), x1]) * np.sqrt(w)[:, None]
        return float(np.linalg.lstsq(a, y[idx] * np.sqrt(w), rcond=None)[0][0])

    c = np.array([fit(i, np.ones(len(windows[i]))) for i in range(n)])
    for k in range(iterations):
        r = y - c
        new = []
        for i in range(n):
            r1 = np.abs(r[windows[i]])
            s = np.median(r1)
            if s < ROUNDOFF:
                reweight = s > 0 and (k, windows[i][0]) in reweight_roundoff
                new.append(fit(i, (r1 < ROUNDOFF).astype(float) if reweight else np.ones(len(r1))))
                continue
            u = r1 / (6 * s)
            new.append(fit(i, np.where(u < 1, (1 - u * u) ** 2, 0.0)))
        c = np.array(new)
    return c


def test_windows_are_the_k_nearest_points() -> None:
    w = lowess_windows(REF, 4)
    assert list(w[0]) == [0, 1, 2, 3]
    assert list(w[12]) == [9, 10, 11, 12]
    assert all(len(v) >= 4 for v in w)


@pytest.mark.parametrize("iterations", [0, 5])
def test_a_straight_line_is_reproduced(iterations: int) -> None:
    y = 2.0 + 0.5 * REF
    np.testing.assert_allclose(robust_lowess(REF, y, span=4, iterations=iterations), y, atol=1e-12)


def test_matches_plain_reference_on_smooth_noisy_curves() -> None:
    # (more passes can drive a local residual scale to ~0, where round-off decides; see the module doc)
    rng = np.random.default_rng(7)
    for _ in range(20):
        y = np.log(REF) * 5 + rng.normal(0, 0.2, REF.size)
        for it in (0, 1, 2):
            np.testing.assert_allclose(robust_lowess(REF, y, span=4, iterations=it), _reference(REF, y, 4, it), atol=1e-9)


def test_outlier_is_downweighted() -> None:
    x = np.arange(40, dtype=float)
    y = np.sin(x / 6)
    y[20] = 10.0
    plain = robust_lowess(x, y, span=11, iterations=0)
    robust = robust_lowess(x, y, span=11, iterations=5)
    truth = np.sin(x / 6)
    near = slice(15, 26)
    assert np.abs(robust - truth)[near].max() < 0.05 < np.abs(plain - truth)[near].max()


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_rows_are_independent_and_order_of_x_does_not_matter(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(8, 2, size=(4, REF.size))
    y[:, -2:] = 0.0  # the LISS zero placeholders
    together = robust_lowess(REF, y, span=4)
    one_by_one = np.vstack([robust_lowess(REF, row, span=4) for row in y])
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-12)
    perm = rng.permutation(REF.size)
    np.testing.assert_allclose(robust_lowess(REF[perm], y[:, perm], span=4), together[:, perm], atol=1e-12)


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        robust_lowess(np.array([1.0, 1.0, 2.0]), np.zeros(3), span=2)
    with pytest.raises(ValueError):
        robust_lowess(REF, np.zeros(5), span=4)
    assert np.array_equal(robust_lowess(REF, np.arange(13.0), span=1), np.arange(13.0))


# ---------------------------------------------------------------- CMap's smoothed calibration curves
@pytest.fixture(scope="module")
def test_plate_curves(shared_data: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """dp52 of the l1ktools test plate: well ids, raw 13-point curves, CMap's smoothed curves."""
    tp = shared_data / "pipeline" / "test_plate" / "expected"
    gex = read_gct(tp / "dpeak" / "dp52_GEX_n26x500.gct")
    x = np.log2(np.maximum(gex.data.astype(np.float64), 1))
    obs = np.zeros((x.shape[1], 13))
    obs[:, 0] = np.maximum(np.percentile(x, 1, axis=0, method="hazen"), 1)
    obs[:, 1:11] = x[gex.row_positions([f"CAL{i:02d}" for i in range(1, 11)])].T
    expected = read_gct(tp / "liss" / "calib_dp52_GEX_n26x500_n26x24.gct")
    assert list(expected.rids) == list(gex.cids)
    return [c.split(":")[1] for c in gex.cids], obs, expected.data.astype(np.float64)


def test_reference_and_kernel_agree_on_real_curves(test_plate_curves: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    _, obs, expected = test_plate_curves
    ours = robust_lowess(REF, obs, span=4)
    plain = np.vstack([_reference(REF, row, 4, 5) for row in obs])
    np.testing.assert_allclose(ours, plain, atol=1e-9)
    per_sample = np.abs(ours[:, :12] - expected[:, :12]).max(axis=1)
    assert (per_sample < 1e-4).sum() == 20  # of 26: the rest are decided by MATLAB's round-off (module doc)


@pytest.mark.parametrize(
    ("well", "reweighted"),
    [
        ("B13", {(2, 9)}),  # the third pass reweights the top window (points 9-12), the fourth does not
        ("A04", {(2, 7), (2, 8), (2, 9)}),
    ],
)
def test_divergent_curves_are_a_round_off_decision(
    well: str, reweighted: set[tuple[int, int]], test_plate_curves: tuple[list[str], np.ndarray, np.ndarray]
) -> None:
    wells, obs, expected = test_plate_curves
    s = wells.index(well)
    ours = robust_lowess(REF, obs[s], span=4)
    assert np.abs(ours[:12] - expected[s, :12]).max() > 0.1
    matlab_like = _reference(REF, obs[s], 4, 5, reweight_roundoff=frozenset(reweighted))
    np.testing.assert_allclose(matlab_like[:12], expected[s, :12], atol=1e-4)


@pytest.mark.parametrize("well", ["A03", "A07", "B19"])
def test_cmap_left_these_round_off_windows_alone(
    well: str, test_plate_curves: tuple[list[str], np.ndarray, np.ndarray]
) -> None:
    """The converse of B13: here CMap did *not* reweight the top window in the third pass, although its
    round-off scale is of the same size as B13's. In single precision (round-off ~1e-7, far above
    ``max|y| * eps``) MATLAB would have reweighted it, so CMap's curves rule out a float32 computation
    (module doc)."""
    wells, obs, expected = test_plate_curves
    s = wells.index(well)
    np.testing.assert_allclose(robust_lowess(REF, obs[s], span=4)[:12], expected[s, :12], atol=1e-4)
    reweighted = _reference(REF, obs[s], 4, 5, reweight_roundoff=frozenset({(2, 9)}))
    assert np.abs(reweighted[:12] - expected[s, :12]).max() > 0.1
