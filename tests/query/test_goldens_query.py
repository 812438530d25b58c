"""Scoring kernels against CMap's own query outputs (/work/shared/data/query, see its README).

* trichostatin A (MCF7, 10 µM) vs the HDAC up/down sets: WTCS and ES, weighted and unweighted
  (tolerance 1e-4, the published numbers have 4 decimals).
* custom_gutc: a full CMap GUTC run on 10 Touchstone A375 signatures (BING space) with 10
  queries. Kernel-level checks: ES, leading-edge fractions, WTCS (CMap stores float32: 1e-6),
  NCS (one group trt_cp:A375, every signature a Touchstone reference; GUTC normalisation),
  percentile scores through CMap's ns2ps tables, and the ns2ps tables themselves rebuilt from
  an introspect of the 10 signatures (top/bottom 50 BING genes as queries, WTCS, NCS,
  symmetrised) -- bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.kernels.ncs import ncs
from opencmap.kernels.tau import percentile_table, sorted_abs_background, tau_exact, tau_from_table, tau_grid
from opencmap.kernels.wtcs import enrichment_scores, wtcs

TOL_PUBLISHED = 1e-4
TOL_FLOAT32 = 1e-6


# ----------------------------------------------------------------------------- trichostatin A
@pytest.fixture(scope="module")
def tsa(shared_data):
    from opencmap.io import read_gct, read_grp

    d = shared_data / "query"
    score = read_gct(d / "trichostatina_mcf7_10um_score.gct")
    rank = read_gct(d / "trichostatina_mcf7_10um_rank_full.gct")
    assert list(score.rids) == list(rank.rids)
    rows = {gene: i for i, gene in enumerate(score.rids)}
    sets = {}
    for name in ("UP", "DN"):
        genes = read_grp(d / f"HDAC_{name}.grp")
        idx = np.array([rows[g] for g in genes if g in rows])
        assert len(idx) == len(genes)  # every probe of the sets is in the 22,268 space
        sets[name] = (rank.data[idx].astype(np.int32), score.data[idx])
    return sets, score.data.shape[0]


@pytest.mark.parametrize(
    ("weighted", "es_up", "es_dn", "score"),
    [(True, 0.7449, -0.8016, 0.7733), (False, 0.5516, -0.5585, 0.5551)],
)
def test_trichostatin_hdac_scores(tsa, weighted, es_up, es_dn, score):
    sets, n = tsa
    up, _ = enrichment_scores(sets["UP"][0], sets["UP"][1] if weighted else None, n, weighted=weighted)
    dn, _ = enrichment_scores(sets["DN"][0], sets["DN"][1] if weighted else None, n, weighted=weighted)
    assert up[0] == pytest.approx(es_up, abs=TOL_PUBLISHED)
    assert dn[0] == pytest.approx(es_dn, abs=TOL_PUBLISHED)
    assert wtcs(up, dn)[0] == pytest.approx(score, abs=TOL_PUBLISHED)


# ----------------------------------------------------------------------------- custom_gutc
@pytest.fixture(scope="module")
def gutc(shared_data):
    from opencmap.io import read_gct, read_gmt, read_table

    d = shared_data / "query" / "custom_gutc"
    score = read_gct(d / "build" / "modzs_n10x10174.gctx")
    rank = read_gct(d / "build" / "rank_bing_n10x10174.gctx")
    assert list(score.rids) == list(rank.rids) and list(score.cids) == list(rank.cids)
    info = read_table(d / "build" / "siginfo.txt")
    # NCS grouping: pert_type x cell_id -> a single group here; all 10 are Touchstone references
    assert set(info["pert_type"]) == {"trt_cp"} and set(info["cell_id"]) == {"A375"}
    assert set(info["is_touchstone"].astype(str)) == {"1"}
    up = {s.name.removesuffix("_UP"): s.genes for s in read_gmt(d / "queries" / "contest_query_ezid_up_n10.gmt")}
    dn = {s.name.removesuffix("_DN"): s.genes for s in read_gmt(d / "queries" / "contest_query_ezid_down_n10.gmt")}
    expected = {
        name: read_gct(d / "gutc_result" / "matrices" / rel)
        for name, rel in {
            "cs": "query/cs_n10x10.gctx",
            "es_up": "query/cs_up_n10x10.gctx",
            "es_dn": "query/cs_dn_n10x10.gctx",
            "leadf_up": "query/leadf_up_n10x10.gctx",
            "leadf_dn": "query/leadf_dn_n10x10.gctx",
            "ns": "gutc/ns_sig.gctx",
            "ps": "gutc/ps_sig.gctx",
        }.items()
    }
    ns2ps = read_gct(d / "gutc_background" / "sig" / "ns2ps.gctx")
    return {"score": score, "rank": rank, "up": up, "dn": dn, "expected": expected, "ns2ps": ns2ps}


def _query_scores(g, sig_ids, queries):
    """ES up/down, leading edges and WTCS (signatures x queries) of gene-id queries."""
    score, rank = g["score"], g["rank"]
    rows = {gene: i for i, gene in enumerate(score.rids)}
    cols = [list(score.cids).index(c) for c in sig_ids]
    n = score.data.shape[0]
    out = {k: np.empty((len(cols), len(queries))) for k in ("es_up", "es_dn", "leadf_up", "leadf_dn")}
    for j, (up_genes, dn_genes) in enumerate(queries):
        for tail, genes in (("up", up_genes), ("dn", dn_genes)):
            idx = np.array([rows[x] for x in genes if x in rows])
            es, lf = enrichment_scores(
                np.ascontiguousarray(rank.data[np.ix_(idx, cols)]).astype(np.int32),
                np.ascontiguousarray(score.data[np.ix_(idx, cols)]),
                n,
            )
            out[f"es_{tail}"][:, j] = es
            out[f"leadf_{tail}"][:, j] = lf
    out["cs"] = wtcs(out["es_up"], out["es_dn"])
    return out


@pytest.fixture(scope="module")
def gutc_scores(gutc):
    ref = gutc["expected"]["cs"]
    queries = [(gutc["up"][q], gutc["dn"][q]) for q in ref.cids]
    return _query_scores(gutc, list(ref.rids), queries)


@pytest.mark.parametrize("name", ["es_up", "es_dn", "leadf_up", "leadf_dn", "cs"])
def test_gutc_es_wtcs_leading_edge(gutc, gutc_scores, name):
    np.testing.assert_allclose(gutc_scores[name], gutc["expected"][name].data, rtol=0, atol=TOL_FLOAT32)


def test_gutc_ncs(gutc, gutc_scores):
    expected = gutc["expected"]["ns"]
    n_sig = expected.data.shape[0]
    groups = np.zeros(n_sig, dtype=np.int64)
    is_ref = np.ones(n_sig, dtype=bool)
    for mode in ("gutc", "clean"):
        got = ncs(gutc_scores["cs"], groups, is_ref, mode=mode)
        np.testing.assert_allclose(got, expected.data, rtol=0, atol=TOL_FLOAT32, err_msg=mode)
    # queries 0 and 4 have no negative score: sig_queryl1k's grouped normalisation would then
    # leave every negative score raw (spec §13.4) -- CMap's GUTC output did not
    raw_neg = ncs(gutc_scores["cs"], groups, is_ref, mode="cmap")
    neg = gutc_scores["cs"] < 0
    np.testing.assert_allclose(raw_neg[neg], gutc_scores["cs"][neg])


def test_gutc_percentile_scores_from_cmap_tables(gutc):
    ns, ps, table = gutc["expected"]["ns"], gutc["expected"]["ps"], gutc["ns2ps"]
    assert list(table.rids) == list(ns.rids)
    centers = table.col_meta["bin_center"].to_numpy(dtype=np.float64)
    got = tau_from_table(ns.data, table.data, centers)
    np.testing.assert_allclose(got, ps.data, rtol=0, atol=1e-5)  # percentile points (0-100), float32


@pytest.fixture(scope="module")
def introspect(gutc):
    """Symmetrised introspect NCS of the 10 signatures: each one queried by its top/bottom 50 genes."""
    score = gutc["score"]
    sig_ids = list(gutc["ns2ps"].rids)
    genes = np.asarray(score.rids)
    queries = []
    for sig in sig_ids:
        v = score.data[:, list(score.cids).index(sig)]
        order = np.argsort(-v, kind="stable")
        queries.append((list(genes[order[:50]]), list(genes[order[-50:]])))
    cs = _query_scores(gutc, sig_ids, queries)["cs"]
    n = len(sig_ids)
    x = ncs(cs, np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), mode="gutc")
    return (x + x.T) / 2


def test_gutc_background_tables_rebuilt_exactly(gutc, introspect):
    background, counts = sorted_abs_background(introspect)
    table, centers = percentile_table(background, counts)
    expected = gutc["ns2ps"]
    np.testing.assert_allclose(centers, expected.col_meta["bin_center"].to_numpy(dtype=np.float64), atol=1e-6)
    np.testing.assert_array_equal(table, expected.data)


def test_gutc_tau_grid_and_exact_from_rebuilt_background(gutc, introspect):
    background, counts = sorted_abs_background(introspect)
    ns, ps = gutc["expected"]["ns"], gutc["expected"]["ps"]
    np.testing.assert_allclose(tau_grid(ns.data, background, counts), ps.data, rtol=0, atol=1e-5)
    exact = tau_exact(ns.data, background, counts)
    # the exact formula differs from the grid by at most one background count (10 here)
    assert np.nanmax(np.abs(exact - ps.data)) <= 10.0 + 1e-4
    assert np.array_equal(np.sign(exact), np.sign(ps.data))
