"""LISS step: GCT in/out, invariant probes, bead sets, failures and parameter checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, PipelineError
from opencmap.pipeline.liss import EPSILON_INVARIANT_SETS, LISS_REFERENCE, LissParams, liss_bead_set, liss_plate

LEVELS = np.array(LISS_REFERENCE[1:11])


def bead_set(rng: np.random.Generator, genes: list[str], wells: list[str], *, gain: float = 1.0) -> GCT:
    """Linear-scale GEX of one bead set: genes + CAL01..CAL10 whose log2 follows the reference levels."""
    n = len(wells)
    log_genes = rng.uniform(5, 13, (len(genes), 1)) + rng.normal(0, 0.1, (len(genes), n))
    log_cal = LEVELS[:, None] + rng.normal(0, 0.05, (10, n))
    data = np.exp2(np.vstack([log_cal, log_genes]) * gain)
    rids = [f"CAL{i:02d}" for i in range(1, 11)] + genes
    col_meta = pd.DataFrame({"pert_type": ["trt_cp"] * n, "count_mean": [80] * n, "count_cv": [15] * n}, index=wells)
    return GCT(data, rids=rids, col_meta=col_meta)


WELLS = [f"P:A{i:02d}" for i in range(1, 9)]


def test_single_bead_set_outputs_genes_and_qc() -> None:
    rng = np.random.default_rng(0)
    gex = bead_set(rng, [f"g{i}" for i in range(200)], WELLS)
    norm, qc = liss_plate(gex)
    assert list(norm.rids) == [f"g{i}" for i in range(200)]
    assert list(norm.cids) == WELLS and norm.data.dtype == np.float32
    assert qc["qc_pass"].all() and list(qc.index) == WELLS
    assert {"qc_slope", "qc_f_logp", "qc_iqr", "coef_a", "coef_b", "coef_c", "cal_BASE", "cal_MOVAVG_2"} <= set(qc.columns)
    assert {"qc_slope", "qc_f_logp", "qc_iqr", "qc_pass", "pert_type"} <= set(norm.col_meta.columns)
    # the invariant levels already sit on the reference: scaled ~ log2 input
    log_in = np.log2(gex.subset(rids=norm.rids).data.astype(np.float64))
    mid = (log_in > 6) & (log_in < 12)
    assert np.abs(norm.data[mid] - log_in[mid]).max() < 0.5
    assert np.corrcoef(norm.data[mid], log_in[mid])[0, 1] > 0.999
    keep_all, _ = liss_plate(gex, params=LissParams(drop_invariant=False))
    assert keep_all.shape[0] == 210


def test_two_bead_sets_are_scaled_separately_and_stacked() -> None:
    rng = np.random.default_rng(1)
    a = bead_set(rng, [f"a{i}" for i in range(150)], WELLS)
    b = bead_set(rng, [f"b{i}" for i in range(150)], WELLS, gain=1.05)
    norm, qc = liss_plate({"dp52": a, "dp53": b})
    assert norm.shape == (300, len(WELLS))
    na, qa = liss_bead_set(a)
    nb, qb = liss_bead_set(b)
    np.testing.assert_array_equal(norm.data, np.vstack([na.data, nb.data]))
    np.testing.assert_allclose(qc["qc_slope"], (qa["calib_slope_deg"] + qb["calib_slope_deg"]) / 2)
    assert "cal_dp52_G50" in qc.columns and "cal_dp53_G7000" in qc.columns


def test_failed_calibration_is_flagged_and_zeroed() -> None:
    rng = np.random.default_rng(2)
    gex = bead_set(rng, [f"g{i}" for i in range(100)], WELLS)
    data = gex.data.copy()
    data[:10, 3] = 0.0  # no calibration signal in well 4
    bad = GCT(data, rids=gex.rids, col_meta=gex.col_meta)
    norm, qc = liss_plate(bad)
    assert qc["qc_pass"].tolist() == [True] * 3 + [False] + [True] * 4
    assert (norm.data[:, 3] == 0).all() and qc["qc_slope"].iloc[3] == 0
    assert qc["liss_failed_sets"].iloc[3] == "all" and qc["liss_failed_sets"].iloc[0] == ""


def test_errors_name_the_problem() -> None:
    rng = np.random.default_rng(3)
    gex = bead_set(rng, [f"g{i}" for i in range(50)], WELLS)
    no_cal5 = gex.subset(rids=[r for r in gex.rids if r != "CAL05"])
    with pytest.raises(PipelineError, match="G600"):
        liss_plate(no_cal5)
    other = bead_set(rng, [f"h{i}" for i in range(50)], WELLS[:-1])
    with pytest.raises(PipelineError, match="different wells"):
        liss_plate({"a": gex, "b": other})
    with pytest.raises(PipelineError, match="share gene rows"):
        liss_plate({"a": gex, "b": gex})
    with pytest.raises(ConfigError):
        LissParams(reference=LISS_REFERENCE[:-1])
    with pytest.raises(ConfigError):
        LissParams().replace(spam=1)
    # mappings are accepted for the invariant sets
    assert LissParams(invariant_sets=dict(EPSILON_INVARIANT_SETS)).invariant_sets == EPSILON_INVARIANT_SETS
