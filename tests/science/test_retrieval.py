"""Query engine: a compound's own signature connects to its mechanism (MOA) and its PCL.

Each active compound is queried with its top/bottom 50 landmark genes (highest dose, latest time,
in a cell line where its program acts). Other active compounds of the same MOA must outrank the
compounds of other MOAs in the perturbagen summary, and the compound's PCL (without itself) must
rank at or near the top of the PCL summary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .ground_truth import ScienceData, retrieval_scores


@pytest.fixture(scope="module")
def retrieval_table(science_data: ScienceData) -> pd.DataFrame:
    return retrieval_scores(science_data)


def test_same_moa_compounds_rank_first(retrieval_table: pd.DataFrame) -> None:
    t = retrieval_table
    assert len(t) >= 30
    means = t[["auc_tau", "auc_ncs", "auc_tau_same_cell"]].mean()
    print(f"\nself-retrieval over {len(t)} compounds, mean AUC same-MOA vs other MOAs:\n{means.round(3).to_string()}")
    assert means["auc_tau"] >= 0.85, means
    assert means["auc_ncs"] >= 0.85, means
    assert means["auc_tau_same_cell"] >= 0.85, means
    assert (t["auc_tau"] > 0.5).mean() >= 0.85, t


def test_true_pcl_ranks_first(retrieval_table: pd.DataFrame) -> None:
    ranks = retrieval_table["pcl_rank"].dropna().to_numpy()
    n_pcls = int(retrieval_table["n_pcls"].dropna().iloc[0])
    print(
        f"\nPCL rank of the true PCL (of {n_pcls}): median {np.median(ranks)}, "
        f"rank 1 in {np.mean(ranks == 1):.0%}, top 3 in {np.mean(ranks <= 3):.0%}"
    )
    assert len(ranks) >= 30
    assert np.median(ranks) == 1
    assert np.mean(ranks == 1) >= 0.6
    assert np.mean(ranks <= 3) >= 0.75
