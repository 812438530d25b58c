"""Query engine: a knock-down's CGS connects to the compounds inhibiting its target.

Inhibitors of a target act through the same program as the shRNAs against it; querying with a
CGS (top/bottom 50 landmarks) must rank those compounds above the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .ground_truth import ScienceData, cgs_compound_scores


@pytest.fixture(scope="module")
def cgs_query_table(science_data: ScienceData) -> pd.DataFrame:
    return cgs_compound_scores(science_data)


def test_target_inhibitors_rank_near_the_top(cgs_query_table: pd.DataFrame) -> None:
    t = cgs_query_table
    assert len(t) >= 8
    means = t[["auc_tau", "auc_ncs"]].mean()
    print(
        f"\nCGS -> inhibitors of its target over {len(t)} CGS: mean AUC\n{means.round(3).to_string()}\n"
        f"best inhibitor ranked first among compounds in {np.mean(t['best_rank'] == 1):.0%}"
    )
    assert means["auc_tau"] >= 0.85, means
    assert means["auc_ncs"] >= 0.85, means
    assert (t["auc_tau"] > 0.5).all(), t
    assert np.mean(t["best_rank"] == 1) >= 0.8, t
