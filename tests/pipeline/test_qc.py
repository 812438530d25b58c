"""Signature quality metrics: spec §9.5/§9.7 numbers, self-rank by hand, flags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.kernels.modz import modz
from opencmap.pipeline.qc import cc_summaries, cc_summary, distil_ss, exemplar_flags, is_gold, self_rank_pct_q25, ss_ngene, tas


def test_spec_9_5_cc_q75_is_matlab_percentile() -> None:
    z = np.array([[2.0, 1.8, 0.9], [1.0, 1.2, -0.2], [0.5, 0.2, 1.5], [-0.5, -0.4, 0.3], [-1, -1.5, -1.1], [-2, -1.9, -0.4]])
    q75, cmax, cmed = cc_summary(modz(z).corr)
    assert q75 == pytest.approx(0.914286, abs=1e-6)  # numpy's default would give 0.828571
    assert cmax == pytest.approx(1.0) and cmed == pytest.approx(0.657143, abs=1e-6)
    assert all(np.isnan(v) for v in cc_summary(np.zeros((1, 1))))


def test_spec_9_6_cc_q75_after_clipping() -> None:
    z = np.array([[3, 2, -2], [1, 1.5, -1], [0, 0.5, 0], [-1, -0.5, 1], [-2, -3, 2.5]], dtype=float)
    assert cc_summary(modz(z).corr)[0] == pytest.approx(0.75)


def test_spec_9_7_tas_and_ss_ngene() -> None:
    assert tas(100, 0.5) == pytest.approx(0.226108, abs=1e-6)
    assert tas(0, 0.3) == pytest.approx(0.000554, abs=1e-6)
    assert tas(50, -0.2) == pytest.approx(0.007150, abs=1e-6)
    np.testing.assert_allclose(tas(np.array([100, 50]), np.array([0.5, np.nan])), [0.226108, np.nan], atol=1e-6)
    assert np.isnan(tas(10, -666))
    assert ss_ngene(np.array([1.2, -1.5, 0.9, 2.1, -0.3]), 3) == 3
    assert ss_ngene(np.array([1.2, -1.5, 0.9, 2.1, -0.3]), 1) == 1
    assert ss_ngene(np.array([2.0, -2.0, np.nan]), 1) == 2  # >= is inclusive, NaN never counts


def test_distil_ss() -> None:
    v = np.arange(300, dtype=float)
    assert distil_ss(v) == pytest.approx(249.5 - 49.5)
    assert distil_ss(np.array([1.0, 2.0, 10.0, 11.0])) == pytest.approx(9.0)  # tails of 2 each


def test_self_rank_by_hand() -> None:
    # 4 instances: replicates {0, 1} are mutually most similar; {2, 3} are each other's 3rd choice
    s = np.array(
        [
            [1.0, 0.9, 0.1, 0.0],
            [0.9, 1.0, 0.2, 0.3],
            [0.1, 0.2, 1.0, -0.5],
            [0.0, 0.3, -0.5, 1.0],
        ]
    )
    out = self_rank_pct_q25(s, [np.array([0, 1]), np.array([2, 3]), np.array([1])])
    assert out[0] == pytest.approx(0.0)  # rank 1 -> 100 * (1 - 1) / 3
    assert out[1] == pytest.approx(100 * (3 - 1) / 3)
    assert np.isnan(out[2])
    # three replicates: pair ranks (min of both directions) [1, 2, 3] -> prctile25 (Hazen) = 1.25
    s3 = np.array([[1, 0.9, 0.5, 0.0], [0.9, 1, 0.0, 0.4], [0.5, 0.0, 1, 0.3], [0.0, 0.4, 0.3, 1]])
    # ranks: 0->1:1, 1->0:1 => 1; 0->2:2, 2->0:1 => 1; 1->2:3, 2->1:3 => 3
    out3 = self_rank_pct_q25(s3, [np.array([0, 1, 2])])
    expected_q25 = np.percentile([1, 1, 3], 25, method="hazen")
    assert out3[0] == pytest.approx(100 * (expected_q25 - 1) / 3)


def test_is_gold() -> None:
    cc = np.array([0.2, 0.5, 0.19, np.nan, 0.5])
    sr = np.array([5.0, 1.0, 0.0, 0.0, np.nan])
    np.testing.assert_array_equal(is_gold(cc, sr), [1, 1, 0, 0, 0])


def test_exemplar_is_highest_tas_per_pert_and_cell() -> None:
    info = pd.DataFrame(
        {
            "pert_id": ["a", "a", "a", "b", "b", "c"],
            "cell_id": ["X", "X", "Y", "X", "X", "X"],
            "tas": [0.2, 0.5, np.nan, np.nan, np.nan, 0.1],
        },
        index=[f"s{i}" for i in range(6)],
    )
    flags = exemplar_flags(info)
    assert flags.tolist() == [0, 1, 1, 1, 0, 1]
    assert exemplar_flags(info.iloc[:0]).empty


def _self_rank_by_sorting(sim: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Reference: full stable descending argsort of every row (self last)."""
    from opencmap.kernels.percentile import prctile

    s = np.array(sim, dtype=float)
    k = len(s)
    s[np.isnan(s)] = -np.inf
    np.fill_diagonal(s, np.nan)
    order = np.argsort(-s, axis=1, kind="stable")
    ranks = np.empty((k, k), dtype=int)
    np.put_along_axis(ranks, order, np.tile(np.arange(1, k + 1), (k, 1)), axis=1)
    out = []
    for cols in groups:
        if len(cols) < 2:
            out.append(np.nan)
            continue
        sub = ranks[np.ix_(cols, cols)]
        best = np.minimum(sub, sub.T)[np.triu_indices(len(cols), 1)]
        out.append(100 * (float(prctile(best.astype(float), 25)) - 1) / (k - 1))
    return np.array(out)


def test_self_rank_matches_full_sort_with_ties_and_nan() -> None:
    rng = np.random.default_rng(5)
    for trial in range(15):
        k = int(rng.integers(6, 40))
        x = np.round(rng.normal(size=(k, k)), 1)  # many ties
        s = (x + x.T) / 2
        if trial % 3 == 0:
            s[1, 4] = s[4, 1] = np.nan
        perm = rng.permutation(k)
        groups = [perm[:3], perm[3:5], perm[5:6], perm[6 : 6 + min(4, k - 6)]]
        np.testing.assert_allclose(self_rank_pct_q25(s, groups), _self_rank_by_sorting(s, groups), equal_nan=True)


def test_cc_summaries_equal_one_by_one() -> None:
    rng = np.random.default_rng(6)
    corrs = []
    for n in (1, 2, 3, 3, 5):
        c = np.clip(np.corrcoef(rng.normal(size=(n, 8))) if n > 1 else np.ones((1, 1)), 0, None)
        np.fill_diagonal(c, 0)
        corrs.append(c)
    many = cc_summaries(corrs)
    for row, c in zip(many, corrs, strict=True):
        np.testing.assert_allclose(row, cc_summary(c), equal_nan=True)


def test_ss_ngene_many_signatures() -> None:
    x = np.array([[1.2, 0.5], [-1.5, 3.0], [0.9, -2.0], [2.1, 0.1], [-0.3, np.nan]])
    np.testing.assert_array_equal(ss_ngene(x, np.array([3, 1])), [3, 2])


def test_distil_ss_columns_equal_one_by_one() -> None:
    from opencmap.pipeline.qc import distil_ss_columns

    rng = np.random.default_rng(5)
    for n in (978, 150, 3, 1, 0):
        v = rng.normal(size=(n, 25))
        if n > 2:
            v[::3, 4] = np.nan
        v[:, 7] = np.nan
        expected = np.array([distil_ss(v[:, g]) for g in range(25)])
        np.testing.assert_array_equal(distil_ss_columns(v), expected)
