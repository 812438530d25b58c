"""LISS kernel: power fit, linear QC fit, rank-preserving clip, whole-sample behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from opencmap.kernels.liss import calibration_curves, fit_power_curve, linear_fit_qc, liss, rank_preserving_clip

REF = np.array([4.3219, 5.1293, 5.8989, 6.9109, 7.9208, 8.7097, 9.7448, 10.6169, 11.3459, 12.0601, 12.4597, 12.6328, 12.8443])


def test_power_fit_recovers_exact_curve() -> None:
    cobs = np.array([[2.0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], np.linspace(5, 12, 11)])
    truth = [(0.5, 1.3, 1.0), (2.0, 0.8, -1.5)]
    for s, (a, b, c) in enumerate(truth):
        ref = a * cobs[s] ** b + c
        coef, gof = fit_power_curve(cobs[[s]], ref)
        np.testing.assert_allclose(coef[0], [a, b, c], rtol=1e-6)
        assert gof["rsquare"][0] == pytest.approx(1.0)


def test_power_fit_matches_cmap_coefficients() -> None:
    # CMap stats_power_dp52 (TEST_A375 plate, well A03): a=0.0302406 b=2.47329 c=-0.896108,
    # rsquare 0.95582; calibration curve from its calib file (4 decimals)
    cal = np.array([7.7028, 8.6407, 9.3646, 9.8506, 10.0064, 10.0187, 10.4750, 10.8653, 11.0607, 11.6004, 11.9593])
    coef, gof = fit_power_curve(cal[None], REF[:11])
    np.testing.assert_allclose(coef[0], [0.0302406, 2.47329, -0.896108], rtol=2e-3)
    assert gof["rsquare"][0] == pytest.approx(0.95582, abs=1e-5)
    assert gof["f_logpval"][0] == pytest.approx(5.41908, abs=1e-3)


def test_linear_fit_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    cobs = np.sort(rng.uniform(5, 12, size=(3, 11)), axis=1)
    got = linear_fit_qc(cobs, REF[:11])
    for s in range(3):
        lr = stats.linregress(cobs[s], REF[:11])
        assert got["calib_slope"][s] == pytest.approx(lr.slope)
        assert got["calib_linfit_rsquare"][s] == pytest.approx(lr.rvalue**2)
        assert got["calib_linfit_logpval"][s] == pytest.approx(-np.log10(lr.pvalue), rel=1e-6)
        assert got["calib_slope_deg"][s] == pytest.approx(np.degrees(np.arctan(lr.slope)))


def test_clip_worked_example() -> None:
    y = np.array([16.0, 15.0, 15.5, 7.0, -1.0, 0.0, 15.5])
    out = rank_preserving_clip(y, 0.0, 15.0, step=1e-4)
    # top: 15.0 -> rank 0, 15.5 (tied) -> rank 1.5, 16 -> rank 3; bottom: 0 -> 0, -1 -> 1
    np.testing.assert_allclose(out, [15.0003, 15.0, 15.00015, 7.0, -0.0001, 0.0, 15.00015])


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 3)), elements=st.floats(-5, 25, allow_nan=False)))
def test_clip_preserves_order_and_bounds(y: np.ndarray) -> None:
    out = rank_preserving_clip(y, 0.0, 15.0, step=1e-4)
    inside = (y > 0) & (y < 15)
    np.testing.assert_array_equal(out[inside], y[inside])
    n = y.shape[0]
    assert (out <= 15 + 1e-4 * n).all() and (out >= -1e-4 * n).all()
    for s in range(y.shape[1]):
        a, b = y[:, s], out[:, s]
        i, j = np.meshgrid(np.arange(n), np.arange(n))
        assert not np.any((a[i] < a[j]) & (b[i] >= b[j]))  # strict order kept
        assert np.all(b[i][a[i] == a[j]] == b[j][a[i] == a[j]])  # ties stay tied


def _sample(rng: np.random.Generator, n_genes: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Log2 expression whose invariant levels follow the reference through a known distortion."""
    levels = REF[1:11]
    genes = rng.uniform(4, 14, n_genes)
    distort = lambda v: 0.8 * v + 1.5  # noqa: E731
    x = distort(genes)[:, None] + rng.normal(0, 0.05, (n_genes, 1))
    lev = distort(levels)[:, None] + rng.normal(0, 0.02, (10, 1))
    return x, lev


def test_liss_undoes_a_linear_distortion() -> None:
    rng = np.random.default_rng(3)
    x, lev = _sample(rng)
    res = liss(x, lev, REF)
    assert res.passed.all()
    truth = (x[:, 0] - 1.5) / 0.8
    mid = (truth > 5.5) & (truth < 12)
    assert np.abs(res.values[mid, 0] - truth[mid]).max() < 0.3
    assert res.calibration.shape == (1, 13)
    assert res.qc["truncated_genes"][0] == ((res.values <= 0) | (res.values >= 15)).sum()
    assert res.qc["iqr"][0] == pytest.approx(2 ** np.subtract(*np.percentile(res.values[:, 0], [75, 25], method="hazen")))


def test_failed_calibration_zeroes_the_sample() -> None:
    rng = np.random.default_rng(4)
    x, lev = _sample(rng)
    x2 = np.hstack([x, x])
    lev2 = np.hstack([lev, lev])
    lev2[:, 1] = np.nan  # unmeasured calibration probes
    res = liss(x2, lev2, REF)
    assert res.passed.tolist() == [True, False]
    assert (res.values[:, 1] == 0).all()
    assert np.isnan(res.qc["coef_a"][1]) and res.qc["rsquare"][1] == 0


def test_calibration_curve_uses_percentiles_and_zero_placeholders() -> None:
    rng = np.random.default_rng(5)
    x, lev = _sample(rng)
    cal = calibration_curves(x, lev, REF)
    assert cal[0, -1] >= np.percentile(x[:, 0], 99, method="hazen") - 1e-12
    with pytest.raises(ValueError):
        calibration_curves(x, lev, REF[:-1])
