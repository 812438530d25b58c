"""Similarity kernels vs scipy and plain formulas; SigCom rank z (spec example 9.10); XSum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from opencmap.errors import ValidationError
from opencmap.kernels.ranks import descending_ranks
from opencmap.kernels.similarity import cosine, pearson, rank_z, spearman, xsum, zsum

V91 = np.array([3.0, 2.5, 2.0, 1.0, 0.5, -0.2, -0.8, -1.5, -2.0, -3.0])


def _pair_ok(a, b):
    ok = ~np.isnan(a) & ~np.isnan(b)
    return a[ok], b[ok]


def plain_cosine(a, b):
    a, b = _pair_ok(a, b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 40), st.integers(1, 6), st.booleans())
def test_vector_metrics_match_references(seed, n_genes, n_sig, with_nan):
    rng = np.random.default_rng(seed)
    sigs = np.round(rng.standard_normal((n_genes, n_sig)), 1)  # ties for spearman
    query = np.round(rng.standard_normal((n_genes, 2)), 1)
    if with_nan:
        sigs[rng.random(sigs.shape) < 0.15] = np.nan
        query[rng.random(query.shape) < 0.15] = np.nan
    got = {"cosine": cosine(query, sigs), "pearson": pearson(query, sigs), "spearman": spearman(query, sigs)}
    for j in range(2):
        for s in range(n_sig):
            a, b = _pair_ok(query[:, j], sigs[:, s])
            if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
                continue
            assert got["cosine"][s, j] == pytest.approx(plain_cosine(query[:, j], sigs[:, s]), abs=1e-9)
            assert got["pearson"][s, j] == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-9)
            assert got["spearman"][s, j] == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-9)


def test_one_query_vector_and_degenerate_columns():
    sigs = np.column_stack([V91, -V91, np.ones(10)])
    np.testing.assert_allclose(pearson(V91, sigs)[:2], [1.0, -1.0])
    assert np.isnan(pearson(V91, sigs)[2])  # constant signature
    np.testing.assert_allclose(spearman(V91, sigs)[:2], [1.0, -1.0])
    assert cosine(V91, sigs).shape == (3,)
    with pytest.raises(ValidationError):
        cosine(V91[:5], sigs)


def test_example_9_10_rank_z():
    ranks = descending_ranks(V91)
    z_up, p_up = rank_z(ranks[[0, 2, 4]][:, None], 10)
    z_dn, p_dn = rank_z(ranks[[6, 8, 9]][:, None], 10)
    assert (z_up[0], p_up[0]) == pytest.approx((1.709409, 0.087375), abs=1e-6)
    assert (z_dn[0], p_dn[0]) == pytest.approx((-2.165251, 0.030368), abs=1e-6)
    assert zsum(z_up, z_dn)[0] == pytest.approx(3.874660, abs=1e-6)


def test_rank_z_is_the_mann_whitney_normal_approximation():
    rng = np.random.default_rng(0)
    n, g = 200, 15
    values = rng.standard_normal((n, 4))
    ranks = descending_ranks(values)
    genes = rng.choice(n, g, replace=False)
    z, p = rank_z(ranks[genes], n)
    for s in range(4):
        inside = values[genes, s]
        outside = np.delete(values[:, s], genes)
        ref = stats.mannwhitneyu(inside, outside, use_continuity=False, method="asymptotic")
        assert p[s] == pytest.approx(ref.pvalue, rel=1e-9)
        u = ref.statistic
        assert z[s] == pytest.approx((u - g * (n - g) / 2) / np.sqrt(g * (n - g) * (n + 1) / 12), rel=1e-9)
    # missing genes shrink n1 for that signature; no gene -> NaN
    r = ranks[genes].copy()
    r[0, 0] = 0
    assert rank_z(r, n)[0][0] == pytest.approx(rank_z(ranks[genes[1:], :1], n)[0][0])
    assert np.isnan(rank_z(np.zeros((3, 1), dtype=int), n)[0][0])


def test_xsum_counts_only_extreme_genes():
    ranks = descending_ranks(V91)[:, None]
    scores = V91[:, None]
    up, dn = [0, 2, 4], [6, 8, 9]
    # k = 2: extremes are ranks 1, 2, 9, 10 -> up contributes v1 = 3.0; down v9 + v10 = -5.0
    got = xsum(ranks[up], scores[up], ranks[dn], scores[dn], 10, k=2)
    assert got[0] == pytest.approx(3.0 - (-5.0))
    assert xsum(ranks[up], scores[up], None, None, 10, k=2)[0] == pytest.approx(3.0)
    with pytest.raises(ValidationError):
        xsum(None, None, None, None, 10)
    # a missing gene (rank 0) never counts
    r = ranks[up].copy()
    r[0, 0] = 0
    assert xsum(r, scores[up], None, None, 10, k=2)[0] == 0.0
