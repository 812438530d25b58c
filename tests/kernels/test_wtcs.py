"""ES / WTCS kernel: spec §9.1-9.3, CMap's tie rules, and a plain full-list walk on random inputs."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ConfigError, ValidationError
from opencmap.kernels.ranks import descending_ranks
from opencmap.kernels import wtcs as wtcs_module
from opencmap.kernels.wtcs import combine_tails, enrichment_scores, set_enrichment_scores, wtcs

TOL = 1e-6


# ----------------------------------------------------------------------------- plain reference
def reference_es(ranks: np.ndarray, weights: np.ndarray | None, n: int) -> list[tuple[float, float]]:
    """Every acceptable (ES, leading-edge fraction) of one signature, by walking all n positions.

    Exact rational arithmetic; per hit the post-hit value E+ unless |E-| > |E+| (E- = value just
    before the hit), first maximum over hits (spec §13.2). Several answers are returned only
    where |values| tie exactly and float rounding may legitimately pick another.
    """
    present = [(int(r), Fraction(abs(float(w))) if weights is not None else Fraction(1)) for r, w in
               zip(ranks, weights if weights is not None else [1.0] * len(ranks)) if r > 0 and not np.isnan(w)]
    g = len(present)
    if g == 0:
        return [(np.nan, np.nan)]
    total = sum(w for _, w in present)
    if total == 0:  # every weight 0: hit steps 0/0 (cmapM fastESCore: NaN)
        return [(np.nan, np.nan)]
    hit_at = {r: w / total for r, w in present}
    miss = Fraction(1, n - g) if g != n else Fraction(1)
    running = Fraction(0)
    per_hit = []  # (E-, E+) per hit in rank order
    for pos in range(1, n + 1):
        if pos in hit_at:
            pre = running
            running += hit_at[pos]
            per_hit.append((pre, running))
        else:
            running -= miss
    assert running == 0 or g == n  # the walk ends at 0
    chosen = [pre if abs(pre) > abs(post) else post for pre, post in per_hit]
    best = max(abs(v) for v in chosen)
    answers = []
    for k, (pre, post) in enumerate(per_hit, start=1):
        # exact ties of |value| (between hits, or between E- and E+) may go either way in floats
        for v in {pre, post}:
            if abs(v) == best and (v == chosen[k - 1] or abs(pre) == abs(post)):
                es = float(v)
                answers.append((es, k / g if es >= 0 else (g - k + 1) / g))
    return answers


def flatten_sets(sets) -> tuple[np.ndarray, np.ndarray]:
    """``rows, bounds`` of :func:`set_enrichment_scores` for a list of row arrays."""
    rows = np.concatenate([np.asarray(x, dtype=np.int64) for x in sets])
    return rows, np.concatenate([[0], np.cumsum([len(x) for x in sets])]).astype(np.int64)


def assert_matches_reference(es, lf, ranks, weights, n):
    for s in range(ranks.shape[1]):
        answers = reference_es(ranks[:, s], None if weights is None else weights[:, s], n)
        if np.isnan(answers[0][0]):
            assert np.isnan(es[s]) and np.isnan(lf[s])
            continue
        ok = any(abs(es[s] - a) <= 1e-9 and abs(lf[s] - b) <= 1e-12 for a, b in answers)
        assert ok, f"signature {s}: got ({es[s]}, {lf[s]}), acceptable {answers}"


# ----------------------------------------------------------------------------- spec examples
V91 = np.array([3.0, 2.5, 2.0, 1.0, 0.5, -0.2, -0.8, -1.5, -2.0, -3.0])


def _set_inputs(v: np.ndarray, genes: list[int]):
    ranks = descending_ranks(v)
    idx = np.array(genes) - 1
    return ranks[idx][:, None].astype(np.int32), v[idx][:, None].astype(np.float32)


def test_example_9_1_weighted_and_unweighted():
    ru, wu = _set_inputs(V91, [1, 3, 5])
    rd, wd = _set_inputs(V91, [7, 9, 10])
    es_up, lf_up = enrichment_scores(ru, wu, 10)
    es_dn, lf_dn = enrichment_scores(rd, wd, 10)
    assert es_up[0] == pytest.approx(0.766234, abs=TOL)
    assert es_dn[0] == pytest.approx(-0.862069, abs=TOL)  # a pre-hit value
    assert wtcs(es_up, es_dn)[0] == pytest.approx(0.814151, abs=TOL)
    assert lf_up[0] == pytest.approx(2 / 3)  # max at the 2nd hit
    assert lf_dn[0] == pytest.approx(2 / 3)  # pre-hit of the 2nd hit: (3 - 2 + 1)/3
    cu, _ = enrichment_scores(ru, None, 10, weighted=False)
    cd, _ = enrichment_scores(rd, None, 10, weighted=False)
    assert (cu[0], cd[0]) == pytest.approx((0.714286, -0.857143), abs=TOL)
    assert wtcs(cu, cd)[0] == pytest.approx(0.785714, abs=TOL)


def test_example_9_2_same_sign_gives_zero():
    ru, wu = _set_inputs(V91, [1, 3, 5])
    rd, wd = _set_inputs(V91, [2, 4, 6])
    es_up, _ = enrichment_scores(ru, wu, 10)
    es_dn, _ = enrichment_scores(rd, wd, 10)
    assert (es_up[0], es_dn[0]) == pytest.approx((0.766234, 0.660232), abs=TOL)
    assert wtcs(es_up, es_dn)[0] == 0.0


def test_example_9_3_unsorted_tie_reversal():
    v = np.array([0.0, -1.2, 2.4, 0.7, -2.9, 1.1, 0.7, -0.3, 3.3, -0.6, 1.9, -1.8])
    np.testing.assert_array_equal(descending_ranks(v), [7, 10, 2, 5, 12, 4, 6, 8, 1, 9, 3, 11])
    ru, wu = _set_inputs(v, [3, 6, 9, 7])
    rd, wd = _set_inputs(v, [2, 5, 12])
    es_up, _ = enrichment_scores(ru, wu, 12)
    es_dn, _ = enrichment_scores(rd, wd, 12)
    assert es_up[0] == pytest.approx(0.781667, abs=TOL)
    assert es_dn[0] == pytest.approx(-1.0, abs=TOL)
    assert wtcs(es_up, es_dn)[0] == pytest.approx(0.890833, abs=TOL)
    assert wtcs(es_dn, es_up)[0] == pytest.approx(-0.890833, abs=TOL)


# ----------------------------------------------------------------------------- edge cases
def test_missing_genes_are_dropped_per_signature():
    # signature 0 has all three genes; in signature 1 the second gene is missing (rank 0)
    ranks = np.array([[1, 1], [3, 0], [5, 5]], dtype=np.int32)
    weights = np.array([[3.0, 3.0], [2.0, np.nan], [0.5, 0.5]], dtype=np.float32)
    es, _ = enrichment_scores(ranks, weights, 10)
    alone, _ = enrichment_scores(np.array([[1], [5]], dtype=np.int32), np.array([[3.0], [0.5]], dtype=np.float32), 10)
    assert es[0] == pytest.approx(0.766234, abs=TOL)
    assert es[1] == alone[0]  # G = 2 and miss step 1/8 for that signature
    # a NaN weight with a valid rank also drops the gene
    es_nan, _ = enrichment_scores(np.array([[1], [3], [5]], dtype=np.int32), np.array([[3.0], [np.nan], [0.5]], dtype=np.float32), 10)
    assert es_nan[0] == alone[0]


def test_no_gene_present_and_all_zero_weights_give_nan():
    es, lf = enrichment_scores(np.zeros((3, 2), dtype=np.int32), np.ones((3, 2), dtype=np.float32), 10)
    assert np.isnan(es).all() and np.isnan(lf).all()
    # issue 12 item 5: every weight 0 -> hit steps 0/0 -> NaN, as cmapM's fastESCore (spec §13.2);
    # this used to be 0. Both kernel paths (sorting network and per-signature bitmap sort).
    ranks = np.array([[1, 2], [4, 3]], dtype=np.int32)
    weights = np.array([[0.0, 0.5], [0.0, 0.25]], dtype=np.float32)
    es, lf = enrichment_scores(ranks, weights, 10)
    assert np.isnan(es[0]) and np.isnan(lf[0]) and np.isfinite(es[1])
    rows, bounds = np.arange(2), np.array([0, 2])
    es_b, lf_b = set_enrichment_scores(ranks, weights, rows, bounds, 10)
    assert np.isnan(es_b[0, 0]) and np.isnan(lf_b[0, 0]) and es_b[0, 1] == es[1]
    # network_max=1: force the per-signature bitmap path
    es_s, lf_s = set_enrichment_scores(ranks, weights, rows, bounds, 10, network_max=1)
    assert np.isnan(es_s[0, 0]) and np.isnan(lf_s[0, 0]) and es_s[0, 1] == es[1]
    # unweighted (cs) scores do not look at the weights: defined
    es_u, _ = enrichment_scores(ranks, weights, 10, weighted=False)
    assert np.isfinite(es_u).all()
    # WTCS: NaN propagates from either side (cmapM getCombinedES: sign(NaN) never equals a sign)
    assert np.isnan(wtcs(np.array([np.nan]), np.array([-0.5])))[0]
    assert np.isnan(wtcs(np.array([0.5]), np.array([np.nan])))[0]


def test_whole_list_is_the_set():
    ranks = np.arange(1, 6, dtype=np.int32)[:, None]
    es, lf = enrichment_scores(ranks, np.ones((5, 1), dtype=np.float32), 5)
    assert es[0] == pytest.approx(1.0) and lf[0] == 1.0


def test_cmap_tie_rules_on_exactly_representable_cases():
    # one hit at rank 3 of 5: E- = -1/2 and E+ = +1/2 tie -> E+ is kept
    es, lf = enrichment_scores(np.array([[3]], dtype=np.int32), None, 5, weighted=False)
    assert (es[0], lf[0]) == (0.5, 1.0)
    # hits at 3 and 6 of 6 (miss 1/4): both pre-hit values are -1/2 -> the first one counts
    es, lf = enrichment_scores(np.array([[3], [6]], dtype=np.int32), None, 6, weighted=False)
    assert (es[0], lf[0]) == (-0.5, 1.0)


def test_duplicate_ranks_give_nan():
    es, _ = enrichment_scores(np.array([[2], [2]], dtype=np.int32), np.ones((2, 1), dtype=np.float32), 10)
    assert np.isnan(es[0])


def test_rank_dtypes_and_memory_layouts_agree():
    rng = np.random.default_rng(3)
    n, g, s = 300, 20, 50
    ranks = np.stack([rng.permutation(n)[:g] + 1 for _ in range(s)], axis=1)
    weights = rng.standard_normal((g, s)).astype(np.float32)
    base = enrichment_scores(ranks.astype(np.int32), weights, n)
    for variant in (ranks.astype(np.uint16), ranks.astype(np.int64), np.asfortranarray(ranks)):
        got = enrichment_scores(variant, weights, n)
        np.testing.assert_array_equal(got[0], base[0])
        np.testing.assert_array_equal(got[1], base[1])
    for w in (weights.astype(np.float64), np.asfortranarray(weights), weights.astype(np.float16)):
        got = enrichment_scores(ranks.astype(np.int32), w, n)
        np.testing.assert_array_equal(got[0], enrichment_scores(ranks.astype(np.int32), w.astype(np.float64), n)[0])
    np.testing.assert_array_equal(enrichment_scores(ranks, weights.astype(np.float64), n)[0], base[0])


def test_many_signatures_cross_parallel_chunks():
    rng = np.random.default_rng(5)
    n, g, s = 120, 9, 4500  # more than two parallel chunks
    ranks = np.argsort(rng.random((s, n)), axis=1)[:, :g].T.astype(np.int32) + 1
    weights = rng.standard_normal((g, s)).astype(np.float32)
    es, lf = enrichment_scores(ranks, weights, n)
    pick = rng.choice(s, 40, replace=False)
    assert_matches_reference(es[pick], lf[pick], ranks[:, pick], weights[:, pick], n)


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(ValidationError):
        enrichment_scores(np.ones((2, 2), dtype=np.float32), None, 10, weighted=False)
    with pytest.raises(ValidationError):
        enrichment_scores(np.ones((2, 2), dtype=np.int32), np.ones((3, 2)), 10)
    with pytest.raises(ValidationError):
        enrichment_scores(np.ones((2, 2), dtype=np.int32), None, 10)
    with pytest.raises(ValidationError):
        enrichment_scores(np.ones(2, dtype=np.int32), None, 10, weighted=False)
    with pytest.raises(ConfigError):
        combine_tails(np.zeros(1), np.zeros(1), "left")


def test_wtcs_sign_rules_and_tails():
    up = np.array([0.5, 0.0, 0.3, np.nan, 0.0, -0.4])
    dn = np.array([-0.3, -0.6, 0.2, -0.1, 0.0, 0.2])
    np.testing.assert_allclose(wtcs(up, dn), [0.4, 0.3, 0.0, np.nan, 0.0, -0.3], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(combine_tails(up, dn, "up"), up)
    np.testing.assert_array_equal(combine_tails(up, dn, "down"), -dn)
    np.testing.assert_array_equal(combine_tails(up, dn, "both"), wtcs(up, dn))


# ----------------------------------------------------------------------------- property tests
@st.composite
def set_inputs(draw):
    n = draw(st.integers(1, 40))
    g = draw(st.integers(1, n))
    s = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ranks = np.stack([rng.permutation(n)[:g] + 1 for _ in range(s)], axis=1).astype(np.int32)
    # few distinct values -> many ties (in |w| and in |E+| vs |E-|), zeros included
    palette = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 0.25]), min_size=1, max_size=4)))
    weights = rng.choice(palette, size=(g, s)).astype(np.float32)
    missing = rng.random((g, s)) < draw(st.sampled_from([0.0, 0.2, 0.6]))
    ranks[missing] = 0
    return ranks, weights, n


@settings(max_examples=150, deadline=None)
@given(set_inputs())
def test_weighted_matches_plain_walk(inputs):
    ranks, weights, n = inputs
    es, lf = enrichment_scores(ranks, weights, n)
    assert_matches_reference(es, lf, ranks, weights, n)


@settings(max_examples=100, deadline=None)
@given(set_inputs())
def test_unweighted_matches_plain_walk(inputs):
    ranks, _, n = inputs
    es, lf = enrichment_scores(ranks, None, n, weighted=False)
    assert_matches_reference(es, lf, ranks, None, n)


# ----------------------------------------------------------------------------- fused, in-place form
def _gene_major(rng, n, s, missing=0.0):
    """Full gene-major rank matrix (n, s) of random permutations + scores, some genes missing."""
    ranks = np.argsort(rng.random((s, n)), axis=1).T.astype(np.uint16) + 1
    scores = rng.standard_normal((n, s)).astype(np.float32)
    gone = rng.random((n, s)) < missing
    ranks[gone] = 0
    scores[gone] = np.nan
    return ranks, scores


@pytest.mark.parametrize("weighted", [True, False])
def test_fused_sets_equal_one_set_at_a_time(weighted):
    rng = np.random.default_rng(11)
    n, s = 300, 700  # more than one tile of signatures
    ranks, scores = _gene_major(rng, n, s, missing=0.05)
    # sets of several sizes (several sorting networks in one call), an overlap, an empty set, a one-gene set
    sets = [rng.choice(n, 5, replace=False), rng.choice(n, 150, replace=False), np.array([], dtype=np.int64),
            rng.choice(n, 40, replace=False), np.array([7])]
    sets.append(np.concatenate([sets[0], sets[3][:10]]))
    rows, bounds = flatten_sets(sets)
    es, lf = set_enrichment_scores(ranks, scores if weighted else None, rows, bounds, n, weighted=weighted)
    assert es.shape == lf.shape == (len(sets), s)
    assert np.isnan(es[2]).all() and np.isnan(lf[2]).all()
    for q, members in enumerate(sets):
        if len(members) == 0:
            continue
        one_es, one_lf = enrichment_scores(ranks[members], scores[members] if weighted else None, n, weighted=weighted)
        np.testing.assert_array_equal(es[q], one_es)
        np.testing.assert_array_equal(lf[q], one_lf)
    pick = rng.choice(s, 15, replace=False)
    for q in (0, 1, 3):
        m = sets[q]
        assert_matches_reference(es[q, pick], lf[q, pick], ranks[m][:, pick], scores[m][:, pick] if weighted else None, n)


def test_fused_columns_out_and_threads():
    rng = np.random.default_rng(12)
    n, s = 200, 3000
    ranks, scores = _gene_major(rng, n, s)
    rows = rng.choice(n, 60, replace=False)
    bounds = np.array([0, 30, 60])
    full_es, full_lf = set_enrichment_scores(ranks, scores, rows, bounds, n, threads=1)
    es = np.empty((2, 1000))
    lf = np.empty((2, 1000))
    got = set_enrichment_scores(ranks, scores, rows, bounds, n, columns=(1500, 2500), out=(es, lf), threads=1)
    assert got[0] is es
    np.testing.assert_array_equal(es, full_es[:, 1500:2500])
    np.testing.assert_array_equal(lf, full_lf[:, 1500:2500])
    # min_thread_work=1: force the multi-threaded split
    par_es, par_lf = set_enrichment_scores(ranks, scores, rows, bounds, n, threads=3, columns=(7, 2999), min_thread_work=1)
    np.testing.assert_array_equal(par_es, full_es[:, 7:2999])
    np.testing.assert_array_equal(par_lf, full_lf[:, 7:2999])


def test_fused_bad_inputs_raise_typed_errors():
    ranks = np.ones((4, 3), dtype=np.uint16)
    with pytest.raises(ValidationError):
        set_enrichment_scores(ranks, None, np.array([0, 1]), np.array([0, 3]), 10, weighted=False)
    with pytest.raises(ValidationError):
        set_enrichment_scores(ranks, None, np.array([0, 9]), np.array([0, 2]), 10, weighted=False)
    with pytest.raises(ValidationError):
        set_enrichment_scores(ranks, None, np.array([0, 1]), np.array([0, 2]), 10, weighted=False, columns=(2, 5))
    with pytest.raises(ValidationError):
        set_enrichment_scores(ranks, np.ones((4, 2)), np.array([0, 1]), np.array([0, 2]), 10)


@st.composite
def gene_major_sets(draw):
    n = draw(st.integers(1, 60))
    s = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ranks = np.stack([rng.permutation(n) + 1 for _ in range(s)], axis=1).astype(np.int32)
    palette = np.array(draw(st.lists(st.sampled_from([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -3.0, 0.25]), min_size=1, max_size=4)))
    weights = rng.choice(palette, size=(n, s)).astype(np.float32)
    ranks[rng.random((n, s)) < draw(st.sampled_from([0.0, 0.3]))] = 0
    sizes = draw(st.lists(st.integers(0, n), min_size=1, max_size=4))
    sets = [rng.choice(n, g, replace=False) for g in sizes]
    return ranks, weights, n, sets


@settings(max_examples=80, deadline=None)
@given(gene_major_sets(), st.booleans())
def test_fused_matches_plain_walk(inputs, weighted):
    ranks, weights, n, sets = inputs
    rows, bounds = flatten_sets(sets)
    es, lf = set_enrichment_scores(ranks, weights if weighted else None, rows, bounds, n, weighted=weighted)
    for q, members in enumerate(sets):
        if len(members) == 0:
            assert np.isnan(es[q]).all()
            continue
        assert_matches_reference(es[q], lf[q], ranks[members], weights[members] if weighted else None, n)


# ----------------------------------------------------------------------------- kernel paths
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 33, 150, 257])
def test_sorting_network_sorts(n):
    """The pruned odd-even merge network sorts any input (random keys and 0/1 inputs)."""
    net = wtcs_module._sorting_network(n)
    assert (net[:, 0] < net[:, 1]).all() and net.max(initial=0) < max(n, 1)
    rng = np.random.default_rng(n)
    keys = np.concatenate([rng.integers(0, 1000, (n, 40)), rng.integers(0, 2, (n, 40))], axis=1).astype(np.uint32)
    expected = np.sort(keys, axis=0)
    wtcs_module._sort_lanes(keys, net, 0, len(net), keys.shape[1])
    np.testing.assert_array_equal(keys, expected)


def test_large_sets_take_the_bitmap_path_and_agree():
    """Sets above the network limit are ordered per signature; both paths give the same scores."""
    rng = np.random.default_rng(11)
    n, s = 2600, 6
    ranks = np.stack([rng.permutation(n) + 1 for _ in range(s)], axis=1).astype(np.int32)
    ranks[rng.random((n, s)) < 0.05] = 0
    weights = rng.standard_normal((n, s)).astype(np.float32)
    limit = wtcs_module.NETWORK_MAX
    genes = rng.choice(n, limit + 1, replace=False)
    rows = np.concatenate([genes[:limit], genes]).astype(np.int64)  # one set each side of the limit
    bounds = np.array([0, limit, 2 * limit + 1])
    for weighted in (True, False):
        es, lf = set_enrichment_scores(ranks, weights if weighted else None, rows, bounds, n, weighted=weighted)
        for q, members in enumerate((genes[:limit], genes)):
            assert_matches_reference(es[q], lf[q], ranks[members], weights[members] if weighted else None, n)


def test_ranks_beyond_16_bits():
    """Lists longer than 65,534 use 64-bit sort keys and still match the plain walk."""
    rng = np.random.default_rng(12)
    n, g, s = 70_000, 40, 3
    ranks = np.stack([rng.choice(n, g, replace=False) + 1 for _ in range(s)], axis=1).astype(np.int64)
    ranks[:, 0] = np.arange(n - g + 1, n + 1)  # the bottom of the list
    weights = rng.standard_normal((g, s)).astype(np.float32)
    es, lf = enrichment_scores(ranks, weights, n)
    assert_matches_reference(es, lf, ranks, weights, n)
    assert es[0] < 0


@settings(max_examples=60, deadline=None)
@given(gene_major_sets(), st.booleans())
def test_network_and_bitmap_paths_are_identical(inputs, weighted):
    """The SIMD network path and the per-signature bitmap path give bit-identical scores."""
    ranks, weights, n, sets = inputs
    rows, bounds = flatten_sets(sets)
    args = (ranks, weights if weighted else None, rows, bounds, n)
    network = set_enrichment_scores(*args, weighted=weighted)
    bitmap = set_enrichment_scores(*args, weighted=weighted, network_max=0)
    np.testing.assert_array_equal(network[0], bitmap[0])
    np.testing.assert_array_equal(network[1], bitmap[1])


@pytest.mark.parametrize("n_sets", [1, 3, 41])
def test_threaded_work_units_cover_every_set_and_column(n_sets):
    """Split by columns (few sets) or by sets (a batch), threads give the one-thread result."""
    rng = np.random.default_rng(n_sets)
    n, s = 400, 3000
    ranks = np.argsort(rng.random((s, n)), axis=1).T.astype(np.uint16) + 1
    weights = rng.standard_normal((n, s)).astype(np.float32)
    sets = [rng.choice(n, int(rng.integers(5, 60)), replace=False) for _ in range(n_sets)]
    rows, bounds = flatten_sets(sets)
    one = set_enrichment_scores(ranks, weights, rows, bounds, n, threads=1, columns=(7, s))
    many = set_enrichment_scores(ranks, weights, rows, bounds, n, threads=3, columns=(7, s), min_thread_work=1)
    assert not np.isnan(one[0]).any()
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


# ---------------------------------------------------------------------------------- tile checks while reading
def _check_of(ranks, scores, weighted=True):
    from opencmap.kernels.tilehash import TILE_COLS, ReadCheck, tile_hashes

    def part(arr):
        sums = tile_hashes(arr)
        return sums, np.zeros(sums.shape, dtype=np.uint8)

    return ReadCheck(part(ranks), part(scores) if weighted else None, TILE_COLS, np.full(3, -1, dtype=np.int64))


def _ranked(n_genes, n_sigs, seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_genes, n_sigs)).astype(np.float32)
    ranks = (np.argsort(np.argsort(-scores, axis=0), axis=0) + 1).astype(np.uint16)
    return ranks, scores


@pytest.mark.parametrize("columns", [None, (0, 1024), (512, 1300), (7, 1100), (600, 650)])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_checked_reads_give_identical_scores_and_mark_what_was_read(columns, weighted, threads):
    ranks, scores = _ranked(60, 1300, 0)
    rows = np.r_[np.arange(3, 18), np.arange(40, 52)]
    bounds = np.array([0, 15, 27])
    plain = set_enrichment_scores(ranks, scores, rows, bounds, 60, weighted=weighted, columns=columns, threads=threads, min_thread_work=1)
    check = _check_of(ranks, scores, weighted)
    got = set_enrichment_scores(ranks, scores, rows, bounds, 60, weighted=weighted, columns=columns, threads=threads, min_thread_work=1,
                                verify=check)  # fmt: skip
    assert check.bad[0] == -1
    for a, b in zip(plain, got, strict=True):
        np.testing.assert_array_equal(a, b)
    c0, c1 = columns or (0, 1300)
    want = np.zeros_like(check.ranks[1])
    want[rows, c0 // 512 : (c1 - 1) // 512 + 1] = 1
    np.testing.assert_array_equal(check.ranks[1], want)
    if weighted:
        np.testing.assert_array_equal(check.scores[1], want)


@pytest.mark.parametrize("columns", [None, (7, 1100)])
@pytest.mark.parametrize("kind", ["ranks", "scores"])
def test_a_changed_value_in_a_read_tile_is_reported(columns, kind):
    ranks, scores = _ranked(40, 1200, 1)
    check = _check_of(ranks, scores)
    rows = np.arange(10, 30)
    if kind == "ranks":
        ranks[17, 900] ^= 1
    else:
        scores[17, 900] = np.nextafter(scores[17, 900], np.float32(9))
    set_enrichment_scores(ranks, scores, rows, np.array([0, 10, 20]), 40, columns=columns, verify=check)
    assert check.bad.tolist() == [0 if kind == "ranks" else 1, 17, 1]
    # a tile already checked (marked) is not hashed again; an unread row is never checked
    fresh = _check_of(ranks, scores)
    fresh.ranks[1][17, 1] = fresh.scores[1][17, 1] = 1
    set_enrichment_scores(ranks, scores, rows, np.array([0, 10, 20]), 40, columns=columns, verify=fresh)
    assert fresh.bad[0] == -1
    other = _check_of(ranks, scores)
    set_enrichment_scores(ranks, scores, np.arange(20, 30), np.array([0, 10]), 40, columns=columns, verify=other)
    assert other.bad[0] == -1
