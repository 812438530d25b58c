"""The plain statistics of ground_truth.py against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, pearsonr, spearmanr

from .ground_truth import auc, pearson, spearman


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_is_the_mann_whitney_u_fraction(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pos = np.round(rng.normal(0.5, 1, 17), 1)  # rounded: ties
    neg = np.round(rng.normal(0, 1, 23), 1)
    u = mannwhitneyu(pos, neg).statistic
    assert auc(pos, neg) == pytest.approx(u / (17 * 23), abs=1e-12)
    assert auc(pos, pos) == 0.5
    assert auc(np.array([2.0]), np.array([1.0, 0.0])) == 1.0


def test_correlations_match_scipy() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=50), rng.normal(size=50)
    y[::3] = x[::3]
    assert pearson(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)
    assert spearman(x, np.round(y, 1)) == pytest.approx(spearmanr(x, np.round(y, 1)).statistic, abs=1e-12)


def test_auc_ranks_nan_last() -> None:
    assert auc(np.array([np.nan]), np.array([0.0])) == 0.0
    assert auc(np.array([1.0, np.nan]), np.array([np.nan])) == 0.75
