"""Engine-level golden: a store built from CMap's custom_gutc build files reproduces CMap's query.

Reference: /work/shared/data/query/custom_gutc (10 Touchstone A375 signatures in BING space, 10
up/down queries; CMap's WTCS, ES, leading edge and NCS). Tolerance 1e-4 (README).
"""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.query.engine import Engine
from opencmap.query.genesets import queries_from_gmt
from opencmap.query.store import build_store

TOL = 1e-4


@pytest.fixture(scope="module")
def gutc(shared_data, tmp_path_factory):
    from opencmap.io import read_gct, read_table

    d = shared_data / "query" / "custom_gutc"
    store = build_store(
        tmp_path_factory.mktemp("gutc") / "store",
        d / "build" / "modzs_n10x10174.gctx",
        sig_info=read_table(d / "build" / "siginfo.txt"),
    )
    queries = queries_from_gmt(d / "queries" / "contest_query_ezid_up_n10.gmt", d / "queries" / "contest_query_ezid_down_n10.gmt")
    result = Engine(store).run(queries, max_genes=500, tau=False, fdr=False, summaries=False)
    expected = {
        name: read_gct(d / "gutc_result" / "matrices" / rel)
        for name, rel in {
            "wtcs": "query/cs_n10x10.gctx",
            "es_up": "query/cs_up_n10x10.gctx",
            "es_dn": "query/cs_dn_n10x10.gctx",
            "leadf_up": "query/leadf_up_n10x10.gctx",
            "leadf_dn": "query/leadf_dn_n10x10.gctx",
            "ncs": "gutc/ns_sig.gctx",
        }.items()
    }
    return d, store, result, expected


def _ours(result, store, expected_gct, metric):
    rows = store.sig_positions(list(expected_gct.rids))
    cols = [result.query_names.index(c) for c in expected_gct.cids]
    return result.level("sig").metrics[metric][np.ix_(rows, cols)]


def test_store_ranks_equal_cmap_rank_matrix(gutc):
    from opencmap.io import read_gct

    d, store, _, _ = gutc
    ranks = read_gct(d / "build" / "rank_bing_n10x10174.gctx")
    assert list(store.space().gene_ids) == list(ranks.rids)
    ours = store.signature_ranks(store.sig_positions(list(ranks.cids)))
    np.testing.assert_array_equal(ours, ranks.data.astype(np.uint16))


@pytest.mark.parametrize("metric", ["wtcs", "es_up", "es_dn", "leadf_up", "leadf_dn"])
def test_query_scores_equal_cmap(gutc, metric):
    _, store, result, expected = gutc
    np.testing.assert_allclose(_ours(result, store, expected[metric], metric), expected[metric].data, atol=TOL)


def test_ncs_equals_cmap(gutc):
    _, store, result, expected = gutc
    np.testing.assert_allclose(_ours(result, store, expected["ncs"], "ncs"), expected["ncs"].data, atol=TOL)


def test_probe_space_store_accepts_entrez_ids(shared_data, tmp_path):
    """A real landmark Level 5 in probe space (modzs_n272x978): Entrez ids map to probe rows and
    a signature queried against the store finds its own compound in other cell lines first."""
    store = build_store(tmp_path / "probe", shared_data / "query" / "modzs_n272x978.gctx")
    genes = store.genes
    assert genes["pr_gene_id"].iloc[0].endswith("_at") and "entrez_id" in genes.columns
    sid = store.sig_ids[0]
    from opencmap.query.genesets import Query, signature_queries

    (q,) = signature_queries(store, [sid], n_genes=30)
    entrez = dict(zip(genes["pr_gene_id"], genes["entrez_id"], strict=True))
    by_entrez = Query("ez", up=tuple(entrez[g] for g in q.up), down=tuple(entrez[g] for g in q.down))
    a = Engine(store).run(q, fdr=False, tau=False, summaries=False, max_genes=500).level("sig").metrics["wtcs"]
    b = Engine(store).run(by_entrez, fdr=False, tau=False, summaries=False).level("sig").metrics["wtcs"]
    np.testing.assert_array_equal(a, b)
    pert = store.sig_info["pert_id"].to_numpy()
    top = np.argsort(-a[:, 0])[:3]
    assert top[0] == 0 and (pert[top] == pert[0]).sum() >= 2
