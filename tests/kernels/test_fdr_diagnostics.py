"""Issue 12, item 3: where the cmapM FDR says nothing (flags), and the random-query p-values / BH."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import false_discovery_control

from opencmap.errors import ValidationError
from opencmap.kernels.fdr import (
    FLAG_LINE,
    FLAG_ORDER,
    FLAG_TIED,
    FLAG_TOO_FEW,
    bh,
    fdr_gsea,
    fdr_gsea_reference,
    fdr_gsea_sides,
    flag_names,
    pooled_null,
    random_query_pooled_pvalues,
    random_query_pvalues,
)

POS, NEG = 0, 1


def _column(trt_pos, null_pos, trt_neg=(), null_neg=()):
    x = np.array([*trt_pos, *null_pos, *trt_neg, *null_neg], dtype=np.float64)
    null = np.array([0] * len(trt_pos) + [1] * len(null_pos) + [0] * len(trt_neg) + [1] * len(null_neg), dtype=bool)
    return x, null


# ---------------------------------------------------------------------------------- regression cases
def test_two_nulls_on_a_side_give_q_1_and_a_flag():
    # a self-match (WTCS = 1 -> the largest NCS) among many treatments, but only 2 positive nulls
    x, null = _column([4.0, *np.linspace(0.1, 1.5, 30)], [0.3, 0.6], [-0.5, -1.0, -1.5, -0.2], [-0.4, -0.7, -0.9, -1.2, -0.3])
    q = fdr_gsea(x, null)
    assert np.all(q[x > 0] == 1.0)  # cmapM: unchanged, bit for bit
    d = fdr_gsea_sides(x, null)
    assert d["n_null"][POS, 0] == 2 and d["n_treatment"][POS, 0] == 31
    assert d["flag"][POS, 0] & FLAG_TOO_FEW
    assert not d["flag"][NEG, 0] & FLAG_TOO_FEW
    assert flag_names(d["flag"][POS, 0]) == "too_few_nulls"


def test_three_or_four_nulls_above_most_treatments_flag_a_line():
    trt = np.linspace(0.05, 1.5, 40)
    for nulls in ([1.55, 1.6, 1.7], [1.55, 1.6, 1.7, 1.8]):
        x, null = _column(trt, nulls)
        q = fdr_gsea(x, null)
        side = x > 0
        # every raw q would be ~1; the null adjustment draws a line down to 0 at the top score
        assert q[np.argmax(x)] == pytest.approx(0.0, abs=1e-12)
        assert 0.1 < q[np.flatnonzero(np.isclose(x, 1.5))[0]] < 1.0
        d = fdr_gsea_sides(x, null)
        assert d["n_null"][POS, 0] == len(nulls)
        assert d["flag"][POS, 0] & FLAG_LINE, flag_names(d["flag"][POS, 0])
        assert np.all((q[side] >= 0) & (q[side] <= 1))
    x, null = _column(trt, np.linspace(0.1, 1.8, 5))
    assert not fdr_gsea_sides(x, null)["flag"][POS, 0] & FLAG_LINE


def test_negative_side_depends_on_row_order_and_is_flagged():
    rng = np.random.default_rng(3)
    trt_neg = [-3.0, -2.6, -2.2, -1.9, *(-rng.uniform(0.05, 1.2, 30))]
    null_neg = list(-rng.uniform(0.1, 1.5, 8))
    trt_pos = list(rng.uniform(0.05, 3.0, 30))
    null_pos = list(rng.uniform(0.1, 1.5, 8))
    x, null = _column(trt_pos, null_pos, trt_neg, null_neg)
    base = fdr_gsea(x, null)
    d = fdr_gsea_sides(x, null)
    bound = d["order_bound"][NEG, 0]
    assert bound == pytest.approx(min(null_neg))  # the most negative null: q moves at or below it
    differs = False
    for seed in range(20):
        perm = np.random.default_rng(seed).permutation(x.size)
        q = np.empty_like(base)
        q[perm] = fdr_gsea(x[perm], null[perm])
        np.testing.assert_array_equal(q[x > 0], base[x > 0])  # the positive side does not move
        np.testing.assert_array_equal(q[x > bound], base[x > bound])  # nor the scores short of the bound
        differs |= not np.array_equal(q[x < 0], base[x < 0])
        np.testing.assert_array_equal(q, fdr_gsea_reference(x[perm], null[perm])[np.argsort(perm)])
    assert differs  # "the same scores in another order give different zeros"
    assert d["flag"][NEG, 0] & FLAG_ORDER
    assert not d["flag"][POS, 0] & FLAG_ORDER
    # no treatment beyond the most negative null: no dependence, no flag
    x2, null2 = _column(trt_pos, null_pos, [-0.5, -0.8, -1.0, -0.3], [-2.0, -1.1, -0.6, -0.2, -1.4])
    assert not fdr_gsea_sides(x2, null2)["flag"][NEG, 0] & FLAG_ORDER


def test_three_tied_nulls_are_flagged_not_a_crash():
    x, null = _column([0.5, 0.9, 1.3, 2.0, 0.2], [0.7, 0.7, 0.7])
    q = fdr_gsea(x, null)  # cmapM's interp1 fails here; we return q-values and flag the side
    assert np.all(np.isfinite(q)) and np.all((q >= 0) & (q <= 1))
    np.testing.assert_allclose(q, fdr_gsea_reference(x, null), atol=1e-12)
    d = fdr_gsea_sides(x, null)
    assert d["n_null"][POS, 0] == 3 and d["n_null_distinct"][POS, 0] == 1
    assert d["flag"][POS, 0] & FLAG_TIED
    assert "tied_nulls" in flag_names(d["flag"][POS, 0])


def test_sides_shapes_and_errors():
    x = np.random.default_rng(0).standard_normal((50, 3))
    null = np.zeros(50, dtype=bool)
    null[:10] = True
    d = fdr_gsea_sides(x, null)
    assert all(v.shape == (2, 3) for v in d.values())
    assert (d["n_null"].sum(axis=0) == 10).all()
    with pytest.raises(ValidationError):
        fdr_gsea_sides(x, null[:-1])


# ---------------------------------------------------------------------------------- random queries
def _null_rows(rng, n_sig, n_random, zero_frac=0.5):
    v = np.abs(rng.standard_normal((n_sig, n_random))).astype(np.float32) * rng.uniform(0.05, 0.5, (n_sig, 1)).astype(np.float32)
    v[rng.random(v.shape) < zero_frac] = 0.0
    v = np.round(v, 3)  # ties with the observed scores
    counts = np.full(n_sig, n_random, dtype=np.int32)
    if n_random > 3:
        counts[0] = n_random - 3  # NaN padding
        v[0, -3:] = np.nan
    return np.sort(v, axis=1), counts


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 60), st.integers(1, 3))
def test_random_query_pvalues_match_definition(seed, n_sig, n_random, n_q):
    rng = np.random.default_rng(seed)
    null, counts = _null_rows(rng, n_sig, n_random)
    x = np.round(rng.standard_normal((n_sig, n_q)) * 0.3, 3)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[rng.random(x.shape) < 0.1] = 0.0
    p = random_query_pvalues(x, null, counts)
    for i in range(n_sig):
        finite = null[i, : counts[i]]
        for j in range(n_q):
            if np.isnan(x[i, j]):
                assert np.isnan(p[i, j])
            else:
                expected = (1 + np.count_nonzero(finite >= np.float64(abs(x[i, j])))) / (1 + counts[i])
                assert p[i, j] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(random_query_pvalues(x[:, 0], null, counts), p[:, 0])


def test_random_query_pvalues_are_uniform_under_exchangeability():
    # an observed score drawn from the same distribution as the random ones: P(p <= a) <= a
    rng = np.random.default_rng(5)
    n_sig, n_random = 4000, 199
    draws = rng.standard_normal((n_sig, n_random + 1))
    null = np.sort(np.abs(draws[:, 1:]), axis=1)
    p = random_query_pvalues(draws[:, 0], null, np.full(n_sig, n_random))
    for a in (0.01, 0.05, 0.2, 0.5):
        assert np.mean(p <= a) == pytest.approx(a, abs=3 * np.sqrt(a * (1 - a) / n_sig) + 0.005)


def test_pooled_pvalues_match_definition_and_reach_below_one_over_n():
    rng = np.random.default_rng(7)
    null, counts = _null_rows(rng, 30, 50)
    null[5] = 0.0  # a signature whose random scores are all 0
    scale, nonzero, pooled = pooled_null(null, counts)
    fin = [null[i, : counts[i]] for i in range(30)]
    assert nonzero[3] == np.count_nonzero(fin[3] > 0)
    assert scale[3] == pytest.approx(fin[3][fin[3] > 0].mean(), rel=1e-6)
    assert np.isnan(scale[5]) and nonzero[5] == 0
    expect_pool = np.sort(np.concatenate([f[f > 0] / scale[i] for i, f in enumerate(fin) if nonzero[i]]))
    np.testing.assert_allclose(pooled, expect_pool, rtol=1e-6)
    x = np.array([0.0, 0.05, 10.0, np.nan, 0.2, 0.3, *rng.uniform(0, 0.4, 24)])
    p = random_query_pooled_pvalues(x, counts, scale, nonzero, pooled)
    assert p[0] == 1.0 and np.isnan(p[3])
    assert p[5] == pytest.approx(1 / (1 + counts[5]))
    i = 2
    tail = (1 + np.count_nonzero(pooled >= x[i] / scale[i])) / (1 + pooled.size)
    assert p[i] == pytest.approx((1 + nonzero[i]) / (1 + counts[i]) * tail)
    assert p[i] < 1 / (1 + counts[i])  # finer than the per-signature resolution
    assert np.all((p[np.isfinite(p)] > 0) & (p[np.isfinite(p)] <= 1))


# ---------------------------------------------------------------------------------- BH
@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0, 1, allow_subnormal=False), min_size=1, max_size=60), st.booleans())
def test_bh_matches_scipy(pvalues, with_nan):
    p = np.array(pvalues)
    if with_nan and p.size > 1:
        p[0] = np.nan
    got = bh(p)
    ok = ~np.isnan(p)
    np.testing.assert_allclose(got[ok], false_discovery_control(p[ok], method="bh"), rtol=1e-12, atol=1e-15)
    assert np.isnan(got[~ok]).all()


def test_bh_columns_match_scipy():
    p = np.random.default_rng(1).random((200, 4)) ** 3
    np.testing.assert_allclose(bh(p, axis=0), false_discovery_control(p, axis=0, method="bh"), rtol=1e-12)
