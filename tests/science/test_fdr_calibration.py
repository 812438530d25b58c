"""FDR calibration on the planted mechanisms of the synthetic compendium (issue 12, item 3).

At q < 0.05 the default FDR method must keep the fraction of false connections near 0.05 (loosely:
the compendium is small) while finding most true connections; queries of programs planted in no
perturbagen must find (almost) nothing. The cmapM method's figures are printed for comparison
(benchmarks/bench_fdr_calibration.py prints them at other sizes).
"""

from __future__ import annotations

import pandas as pd
import pytest

from opencmap.query.fdr_null import DEFAULT_FDR_METHOD

from .ground_truth import ScienceData, fdr_calibration


@pytest.fixture(scope="module")
def calibration(science_data: ScienceData) -> pd.DataFrame:
    return fdr_calibration(science_data).set_index("method")


def test_default_fdr_method_is_calibrated(calibration: pd.DataFrame) -> None:
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"\nFDR calibration (q < 0.05), science compendium:\n{calibration.round(3).to_string()}")
    row = calibration.loc[DEFAULT_FDR_METHOD]
    assert row["fdp_zero_effect_mean"] <= 0.08, row
    assert row["fdp_strict_mean"] <= 0.15, row
    assert row["null_fwer"] <= 0.2, row
    assert row["power_mean"] >= 0.4, row


def test_random_query_methods_are_calibrated_and_beat_cmap(calibration: pd.DataFrame) -> None:
    for method in ("random_query", "random_query_pooled"):
        row = calibration.loc[method]
        assert row["fdp_zero_effect_mean"] <= 0.08, row
        assert row["fdp_strict_mean"] < calibration.loc["cmap", "fdp_strict_mean"], calibration
        assert row["power_mean"] > calibration.loc["cmap", "power_mean"], calibration
