"""Level 2 → 3 against CMap's own outputs (shared/data/pipeline, see its README).

What is exact and what is not (measured; see the LISS notes in opencmap.kernels.lowess):

* QNORM given CMap's LISS output: exact (level2to4, 1e-4; test plate: every untied value exact
  and every tied value inside its tie block, CMap having normalised unrounded data).
* LISS given CMap's calibration curves (test plate): every value within 5e-4, 95-96 % within 1e-4.
  The curves are stored to 4 decimals; perturbing them by +-5e-5 alone moves up to 9 % of the
  values by > 5e-5 (max 3e-4). Where we compute the curves ourselves (level2to4) and they agree,
  99 % of the values are within 1e-4 (max 6.5e-4), so the power fit itself is not the gap
  (a MATLAB-like trust-region fit stopped at TolFun/TolX 1e-6 did not improve agreement).
* LISS calibration smoothing: MATLAB's robust malowess is decided by round-off for ~20 % of
  samples (opencmap.kernels.lowess); we reproduce the other ~80 % to 4 decimals, so whole-sample
  agreement is ~80 % (test plate 20/26 per bead set, level2to4 81 %).
* End to end (LISS + QNORM): within 1e-2 everywhere (the README's gex2norm tolerance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from opencmap.core.gct import GCT
from opencmap.io import read_gct
from opencmap.kernels.liss import liss
from opencmap.kernels.lowess import robust_lowess
from opencmap.kernels.qnorm import quantile_target
from opencmap.pipeline.censor import censor_plate
from opencmap.pipeline.liss import LISS_REFERENCE, LissParams, liss_plate
from opencmap.pipeline.qnorm import qnorm_plate

REF = np.array(LISS_REFERENCE)
PLATE = "TEST_A375_24H_X1_B20"


@pytest.fixture(scope="module")
def l24(shared_data: Path) -> Path:
    return shared_data / "pipeline" / "level2to4"


@pytest.fixture(scope="module")
def tp(shared_data: Path) -> Path:
    return shared_data / "pipeline" / "test_plate" / "expected"


@pytest.fixture(scope="module")
def bead_sets(tp: Path) -> dict[str, GCT]:
    return {b: read_gct(tp / "dpeak" / f"{b}_GEX_n26x500.gct") for b in ("dp52", "dp53")}


def test_reference_curve_matches_cmap_file(l24: Path) -> None:
    ref = read_gct(l24 / "log_ybio_epsilon.gct")
    np.testing.assert_allclose(ref.data[0], REF, atol=1e-6)


# ---------------------------------------------------------------- test plate (l1ktools)
@pytest.mark.parametrize("bset", ["dp52", "dp53"])
def test_fit_and_clip_given_cmap_calibration(bset: str, tp: Path, bead_sets: dict[str, GCT]) -> None:
    gex = bead_sets[bset]
    x = np.log2(np.maximum(gex.data.astype(np.float64), 1))
    cal = read_gct(tp / "liss" / f"calib_{bset}_GEX_n26x500_n26x24.gct")
    assert list(cal.rids) == list(gex.cids)
    res = liss(x, np.zeros((10, x.shape[1])), REF, calibration=cal.data.astype(np.float64))
    expected = read_gct(tp / "liss" / f"{bset}_GEX_n26x500_lissp.gct")
    assert list(expected.rids) == list(gex.rids)
    diff = np.abs(res.values - expected.data)
    assert diff.max() < 5e-4
    assert (diff <= 1e-4).mean() > 0.95
    stats = pd.read_csv(tp / "liss" / f"stats_power_{bset}_GEX_n26x500.txt", sep="\t")
    np.testing.assert_allclose(res.qc["calib_slope_deg"], stats["calib_slope_deg"], atol=1e-3)
    np.testing.assert_allclose(res.qc["rsquare"], stats["rsquare"], atol=1e-4)
    np.testing.assert_allclose(res.qc["f_logpval"], stats["f_logpval"], atol=2e-3)
    np.testing.assert_allclose(res.qc["iqr_raw"], stats["iqr_raw"], atol=1e-4)
    np.testing.assert_array_equal(res.qc["truncated_genes"], stats["truncated_genes"])


@pytest.mark.parametrize("bset", ["dp52", "dp53"])
def test_calibration_smoothing(bset: str, tp: Path, bead_sets: dict[str, GCT]) -> None:
    gex = bead_sets[bset]
    x = np.log2(np.maximum(gex.data.astype(np.float64), 1))
    obs = np.zeros((x.shape[1], 13))
    obs[:, 0] = np.maximum(np.percentile(x, 1, axis=0, method="hazen"), 1)
    obs[:, 1:11] = x[gex.row_positions([f"CAL{i:02d}" for i in range(1, 11)])].T
    smoothed = robust_lowess(REF, obs, span=4)
    expected = read_gct(tp / "liss" / f"calib_{bset}_GEX_n26x500_n26x24.gct").data
    per_sample = np.abs(smoothed[:, :12] - expected[:, :12]).max(axis=1)
    assert (per_sample < 1e-4).sum() == 20  # of 26; the rest are round-off-decided (module doc)
    white = np.maximum(np.percentile(x, 99, axis=0, method="hazen"), smoothed[:, 12])
    np.testing.assert_allclose(white, expected[:, 12], atol=1e-4)


def test_plate_norm_and_censoring(tp: Path, bead_sets: dict[str, GCT]) -> None:
    norm, qc = liss_plate(bead_sets)
    assert norm.shape == (978, 26) and qc["qc_pass"].all()
    kept, report = censor_plate(norm, qc)
    removed = report.loc[report["censored"], "reason"].to_dict()
    assert removed == {f"{PLATE}:B01": "process_control", f"{PLATE}:B02": "process_control", f"{PLATE}:B13": "qc_outlier"}
    outliers = pd.read_csv(tp / "liss" / "outlier_samples.txt", sep="\t")
    assert sorted(outliers["id"]) == sorted(removed)
    expected = read_gct(tp / f"{PLATE}_NORM_n23x978.gct")
    assert list(kept.cids) == list(expected.cids)
    ours = kept.subset(rids=expected.rids)
    per_sample = np.abs(ours.data - expected.data).max(axis=0)
    assert (per_sample < 5e-4).sum() == 18  # of 23
    good = per_sample < 5e-4
    meta = expected.col_meta
    np.testing.assert_allclose(ours.col_meta["qc_slope"][good], meta["qc_slope"].astype(float)[good], atol=0.51)
    np.testing.assert_allclose(ours.col_meta["qc_f_logp"][good], meta["qc_f_logp"].astype(float)[good], atol=0.051)
    np.testing.assert_allclose(ours.col_meta["qc_iqr"][good], meta["qc_iqr"].astype(float)[good], atol=0.02)


def test_plate_qnorm_tie_rule(tp: Path) -> None:
    norm = read_gct(tp / f"{PLATE}_NORM_n23x978.gct")
    expected = read_gct(tp / f"{PLATE}_QNORM_n23x978.gct")
    x = norm.data.astype(np.float64)
    ours = qnorm_plate(norm).data
    rmin = rankdata(x, axis=0, method="min").astype(int)
    rmax = rankdata(x, axis=0, method="max").astype(int)
    untied = rmin == rmax
    np.testing.assert_allclose(ours[untied], expected.data[untied], atol=1e-4)
    # CMap normalised the unrounded NORM: a value tied at 4 decimals lies within its tie block's targets
    t = quantile_target(x)
    assert (expected.data >= t[rmin - 1] - 1e-4).all() and (expected.data <= t[rmax - 1] + 1e-4).all()
    tied = ~untied
    assert np.abs(ours[tied] - expected.data[tied]).max() < 0.05


# ---------------------------------------------------------------- level2to4 (cmapM)
@pytest.fixture(scope="module")
def l24_norm(l24: Path) -> tuple[GCT, GCT]:
    gex = read_gct(l24 / "level2_n376x490.gct")
    cal = read_gct(l24 / "cal_n376x10.gct")
    assert list(cal.cids) == list(gex.cids)
    full = GCT(np.vstack([cal.data, gex.data]), rids=list(cal.rids) + list(gex.rids), cids=gex.cids)
    params = LissParams(percentiles_include_invariant=False, unassigned_ids=())
    norm, _ = liss_plate(full, params=params)
    return norm, gex


def test_level2to4_liss(l24: Path, l24_norm: tuple[GCT, GCT]) -> None:
    norm, gex = l24_norm
    expected = read_gct(l24 / "liss_n376x490.gct")
    assert list(norm.rids) == list(expected.rids) == list(gex.rids)
    diff = np.abs(norm.data - expected.data)
    per_sample = diff.max(axis=0)
    assert (per_sample <= 5e-4).mean() > 0.80  # measured 0.811
    assert (diff <= 1e-4).mean() > 0.80  # measured 0.809
    # wells: 305 of 376 within 5e-4, 265 within 1e-4 (float32 NORM); a single-precision LISS gets ~80 (kernels.lowess)
    assert (per_sample <= 5e-4).sum() == 305 and (per_sample <= 1e-4).sum() >= 265
    assert diff.max() < 1.0  # samples whose smoothing diverged (opencmap.kernels.lowess)
    agreeing = diff[:, per_sample <= 1e-3]  # smoothing reproduced: what is left is fit + 4-decimal output
    assert agreeing.shape[1] > 300
    assert (agreeing <= 1e-4).mean() > 0.99 and agreeing.max() < 1e-3


def test_level2to4_qnorm_exact(l24: Path) -> None:
    lissed = read_gct(l24 / "liss_n376x490.gct")
    expected = read_gct(l24 / "level3_n376x490.gct")
    np.testing.assert_allclose(qnorm_plate(lissed).data, expected.data, atol=1e-4)


def test_level2to4_end_to_end(l24: Path, l24_norm: tuple[GCT, GCT]) -> None:
    norm, _ = l24_norm
    expected = read_gct(l24 / "level3_n376x490.gct")
    np.testing.assert_allclose(qnorm_plate(norm).data, expected.data, atol=1e-2)


def test_gex2norm_liss_plus_qnorm(l24: Path) -> None:
    gex = read_gct(l24 / "GEX_n192x500.gct")
    expected = read_gct(l24 / "gex2norm_QNORM_n192x500.gct")
    norm, qc = liss_plate(gex, params=LissParams(drop_invariant=False, unassigned_ids=()))
    out = qnorm_plate(norm)
    assert list(out.rids) == list(expected.rids) and list(out.cids) == list(expected.cids)
    diff = np.abs(out.data - expected.data)
    assert (diff <= 1e-2).mean() > 0.995 and diff.max() < 0.05
    slope_ok = np.abs(qc["qc_slope"].to_numpy() - expected.col_meta["qc_slope"].astype(float).to_numpy()) <= 0.51
    assert slope_ok.mean() > 0.9
