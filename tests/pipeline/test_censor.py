"""Censoring rules: each reason on a synthetic plate, the fallback rule and the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError
from opencmap.pipeline.censor import CENSOR_REASONS, CensorParams, censor_plate, outliers_1d


def plate(n: int = 20) -> tuple[GCT, pd.DataFrame]:
    rng = np.random.default_rng(0)
    wells = [f"W{i:02d}" for i in range(n)]
    meta = pd.DataFrame(
        {"pert_type": ["trt_cp"] * n, "count_mean": rng.uniform(70, 90, n).round(), "count_cv": rng.uniform(12, 16, n).round()},
        index=wells,
    )
    qc = pd.DataFrame(
        {
            "qc_pass": [True] * n,
            "calib_slope_deg": rng.uniform(58, 62, n),
            "f_logpval": rng.uniform(7, 9, n),
            "iqr": rng.uniform(8, 10, n),
        },
        index=wells,
    )
    return GCT(rng.normal(8, 2, (50, n)), cids=wells, col_meta=meta), qc


def test_each_reason() -> None:
    norm, qc = plate()
    qc.loc["W01", "qc_pass"] = False
    qc.loc["W02", ["f_logpval", "iqr"]] = [3.0, 40.0]  # two strikes
    qc.loc["W03", "f_logpval"] = 3.0  # one strike: kept
    norm.col_meta.loc["W04", ["count_mean", "count_cv"]] = [15, 35]
    norm.col_meta.loc["W05", ["count_mean", "count_cv"]] = [30, 40]  # outlier in both tails
    norm.col_meta.loc["W06", "pert_type"] = "LMA_x"
    norm.col_meta.loc["W07", "pert_type"] = "lma_y"
    kept, report = censor_plate(norm, qc)
    expected = {"W01": "liss_fail", "W02": "qc_outlier", "W04": "low_counts;count_outlier", "W05": "count_outlier",
                "W06": "process_control", "W07": "process_control"}
    assert report.loc[report["censored"], "reason"].to_dict() == expected
    assert report.loc["W03", "n_strikes"] == 1 and not report.loc["W03", "censored"]
    assert list(kept.cids) == [c for c in norm.cids if c not in expected]
    assert list(report.columns[: len(CENSOR_REASONS)]) == list(CENSOR_REASONS)


def test_drop_subset_and_missing_fields() -> None:
    norm, qc = plate()
    norm.col_meta.loc["W06", "pert_type"] = "LMA_x"
    kept, report = censor_plate(norm, qc, params=CensorParams(drop=("liss_fail",)))
    assert kept.shape == norm.shape and report.loc["W06", "process_control"]
    bare = GCT(norm.data, cids=norm.cids)
    kept, report = censor_plate(bare, qc)
    assert not report["censored"].any()


def test_fallback_iqr_rule() -> None:
    norm, _ = plate()
    data = norm.data.copy()
    data[:, 5] = 8.0 + 0.01 * np.arange(50)  # nearly flat profile: tiny IQR
    flat = GCT(data, cids=norm.cids, col_meta=norm.col_meta)
    kept, report = censor_plate(flat, None)
    assert report["censored"].sum() == 1 and report.loc["W05", "qc_outlier"]


def test_outliers_1d_and_params() -> None:
    x = np.array([1.0, 2, 3, 4, 5, 100, np.nan])
    assert outliers_1d(x, cutoff=2).tolist() == [False] * 5 + [True, False]
    assert not outliers_1d(x, cutoff=2, tail="left").any()
    with pytest.raises(ConfigError):
        CensorParams(drop=("nope",))
    with pytest.raises(ConfigError):
        outliers_1d(x, tail="middle")
