"""One-sided queries (cmapM ``es_tail``), tau per tail, all-zero weights -> NaN, result provenance.

Issue 12 items 2 and 5. References: spec §6.1 (``es_tail``: ``up`` = ES_up, ``down`` = -ES_dn),
§6.3 / §9.1 (hand-computed ES of a 10-gene signature), §13.2-13.3 (cmapM: a set whose weights
are all 0 gives NaN; NaN propagates into WTCS), cmapM ``cmapScoreCore.m`` (one-sided cases).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import (
    OneSidedQueryWarning,
    QueryError,
    TauUnavailableWarning,
    UndefinedScoreWarning,
)
from opencmap.query.background import background_kinds, build_background, load_background
from opencmap.query.engine import Engine, run_query
from opencmap.query.genesets import Query
from opencmap.query.result import QueryResult
from opencmap.query.store import Store, build_store

TOL = 1e-6

# spec §9.1: one signature already in descending order, N = 10
V91 = [3.0, 2.5, 2.0, 1.0, 0.5, -0.2, -0.8, -1.5, -2.0, -3.0]
UP91 = ("g1", "g3", "g5")
DN91 = ("g7", "g9", "g10")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """Signatures over g1..g10: §9.1's, its reverse, one whose up genes all weigh 0, a control."""
    genes = [f"g{i}" for i in range(1, 11)]
    zero_up = [0.0, 2.5, 0.0, 1.0, 0.0, -0.2, -0.8, -1.5, -2.0, -3.0]  # g1, g3, g5 weigh 0
    ctl = [0.3, -1.0, 0.8, -0.4, 1.2, 0.1, -0.7, 0.5, -1.3, 0.9]
    data = np.array([V91, V91[::-1], zero_up, ctl], dtype=np.float32).T
    info = pd.DataFrame(
        {
            "sig_id": ["s91", "s91_rev", "s_zero_up", "s_ctl"],
            "pert_id": ["P1", "P2", "P3", "DMSO"],
            "pert_type": ["trt_cp"] * 3 + ["ctl_vehicle"],
            "cell_id": ["A375"] * 4,
        }
    )
    gene_info = pd.DataFrame({"pr_gene_id": genes, "pr_gene_symbol": genes})
    gct = GCT(data, rids=genes, cids=list(info["sig_id"]))
    return build_store(tmp_path_factory.mktemp("tiny") / "store", gct, sig_info=info, gene_info=gene_info)


def _run(store, queries, **kw):
    kw = {"min_genes": 1, "fdr": False, "tau": False, "summaries": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OneSidedQueryWarning)
        warnings.simplefilter("ignore", UndefinedScoreWarning)
        return Engine(store).run(queries, **kw)


# ---------------------------------------------------------------------------------- cmapM equivalence
def test_one_sided_scores_are_cmapm_es_tail_on_the_hand_computed_example(tiny_store):
    both = _run(tiny_store, Query("q", up=UP91, down=DN91)).level("sig").metrics["wtcs"][:, 0]
    up = _run(tiny_store, Query("q", up=UP91)).level("sig").metrics["wtcs"][:, 0]
    down = _run(tiny_store, Query("q", down=DN91)).level("sig").metrics["wtcs"][:, 0]
    assert both[0] == pytest.approx(0.814151, abs=TOL)  # §9.1 WTCS
    assert up[0] == pytest.approx(0.766234, abs=TOL)  # es_tail up: ES_up
    assert down[0] == pytest.approx(0.862069, abs=TOL)  # es_tail down: -ES_dn = +0.862069
    # the reversed signature: up set at the bottom, down set at the top
    assert up[1] < 0 and down[1] < 0
    cs_up = _run(tiny_store, Query("q", up=UP91), metric="cs").level("sig").metrics["cs"][:, 0]
    cs_dn = _run(tiny_store, Query("q", down=DN91), metric="cs").level("sig").metrics["cs"][:, 0]
    assert cs_up[0] == pytest.approx(0.714286, abs=TOL) and cs_dn[0] == pytest.approx(0.857143, abs=TOL)


def test_es_tail_forces_one_tail_and_refuses_a_missing_side(tiny_store):
    res = _run(tiny_store, Query("q", up=UP91, down=DN91), es_tail="down")
    m = res.level("sig").metrics
    np.testing.assert_array_equal(m["wtcs"][:, 0], -m["es_dn"][:, 0])
    assert res.tails == ["down"] and res.params["es_tail"] == "down"
    with pytest.raises(QueryError, match="only up genes.*es_tail='down'"):
        _run(tiny_store, Query("q", up=UP91), es_tail="down")
    with pytest.raises(QueryError, match="es_tail='both'"):
        _run(tiny_store, Query("q", up=UP91), es_tail="both")


def test_mixed_batch_scores_each_query_on_its_own_tail(tiny_store):
    qs = [Query("b", up=UP91, down=DN91), Query("u", up=UP91), Query("d", down=DN91)]
    batch = _run(tiny_store, qs)
    assert batch.tails == ["both", "up", "down"]
    assert batch.params["es_tail"] == "per query"
    for j, q in enumerate(qs):
        single = _run(tiny_store, q).level("sig").metrics["wtcs"][:, 0]
        np.testing.assert_array_equal(batch.level("sig").metrics["wtcs"][:, j], single)
    d = batch.describe()
    assert [q["tail"] for q in d["queries"]] == ["both", "up", "down"]
    assert d["queries"][1]["provenance"]["score"] == "ES_up"
    assert d["queries"][2]["provenance"]["score"] == "-ES_dn"
    assert batch.query_table()["tail"].tolist() == ["both", "up", "down"]


def test_one_sided_query_warns_and_notes(tiny_store):
    with pytest.warns(OneSidedQueryWarning, match="up tail only"):
        res = Engine(tiny_store).run(Query("u", up=UP91), min_genes=1, fdr=False, tau=False, summaries=False)
    assert any("up tail only" in n and "ES_up" in n for n in res.notes)
    assert res.describe()["params"]["es_tail"] == "up"  # not "both"


# ---------------------------------------------------------------------------------- all-zero weights
def test_all_zero_weights_give_nan_and_downstream_skips_them(tiny_store):
    with pytest.warns(UndefinedScoreWarning, match="q: 1"):
        res = Engine(tiny_store).run(Query("q", up=UP91, down=DN91), min_genes=1, tau=False)
    m = res.level("sig").metrics
    # signature 3: g1, g3, g5 all weigh 0 -> ES_up NaN (cmapM), WTCS NaN although ES_dn is defined
    assert np.isnan(m["es_up"][2, 0]) and np.isnan(m["leadf_up"][2, 0])
    assert np.isfinite(m["es_dn"][2, 0])
    assert np.isnan(m["wtcs"][2, 0]) and np.isnan(m["ncs"][2, 0])
    assert np.isnan(m["fdr_q"][2, 0])  # no connection to assess: not q = 1
    assert np.isfinite(m["wtcs"][[0, 1, 3], 0]).all() and np.isfinite(m["fdr_q"][[0, 1, 3], 0]).all()
    assert res.query_provenance(0)["n_undefined"] == 1
    assert any("undefined (NaN)" in n for n in res.notes)
    # the perturbagen summary of P3 has no defined member: NaN, not 0
    ps = res.level("pert_summary")
    p3 = ps.ids.get_loc("P3")
    assert np.isnan(ps.metrics["ncs"][p3, 0])
    assert "s_zero_up" not in res.top(5, by="wtcs", direction="both")["sig_id"].tolist()


def test_nan_scores_are_skipped_by_ncs_means_and_summaries():
    from opencmap.kernels.ncs import ncs
    from opencmap.kernels.summarise import group_maxq
    from opencmap.kernels.tau import tau_exact

    w = np.array([[0.4], [np.nan], [0.2], [-0.3]])
    groups = np.zeros(4, dtype=np.int64)
    with_nan = ncs(w, groups, np.ones(4, bool), mode="gutc")
    without = ncs(w[[0, 2, 3]], groups[:3], np.ones(3, bool), mode="gutc")
    assert np.isnan(with_nan[1, 0])
    np.testing.assert_array_equal(with_nan[[0, 2, 3]], without)  # NaN is not a 0 in the means
    np.testing.assert_allclose(group_maxq(np.array([1.0, np.nan, 2.0]), np.zeros(3, np.int64), 1), group_maxq(np.array([1.0, 2.0]), np.zeros(2, np.int64), 1))
    bg = np.array([[0.1, 0.5, 0.9]], dtype=np.float32)
    t = tau_exact(np.array([[np.nan, 0.6]], dtype=np.float32), bg, np.array([3]))
    assert np.isnan(t[0, 0]) and t[0, 1] == pytest.approx(200 / 3)


# ---------------------------------------------------------------------------------- tau per tail
@pytest.fixture(scope="module")
def tail_store(level5, tmp_path_factory):
    """The synthetic compendium with a two-sided background only (as stores built before tails)."""
    gct, info, _ = level5
    store = build_store(tmp_path_factory.mktemp("tails") / "s", gct, sig_info=info, block_size=50)
    build_background(store)
    return Store(store.path)


def test_one_sided_query_gets_no_tau_from_a_two_sided_background(tail_store, level5):
    _, _, prog = level5
    with pytest.warns(TauUnavailableWarning, match="--tail up"):
        res = run_query(tail_store, up=prog["A_up"][:20], name="u")
    assert "tau" not in res.level("sig").metrics and "tau" not in res.level("pert_summary").metrics
    assert any("no background of up-only queries" in n and "--tail up" in n for n in res.notes)
    tau = res.query_provenance(0)["tau"]
    assert tau["available"] is False and tau["kind"] == {"tail": "up", "metric": "wtcs"} and tau["matches_query"] is False
    # a mixed batch: the two-sided query keeps its tau, the one-sided one is NaN (not a wrong number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixed = run_query(tail_store, queries=[Query("b", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])), Query("u", up=tuple(prog["A_up"][:20]))])
        alone = run_query(tail_store, up=prog["A_up"][:20], down=prog["A_dn"][:20], name="b")
    t = mixed.level("sig").metrics["tau"]
    np.testing.assert_array_equal(t[:, 0], alone.level("sig").metrics["tau"][:, 0])
    assert np.isnan(t[:, 1]).all()
    assert mixed.query_provenance("b")["tau"]["available"] and mixed.query_provenance("b")["tau"]["matches_query"]


def test_backgrounds_per_tail_give_one_sided_queries_their_own_tau(level5, tmp_path):
    gct, info, prog = level5
    store = build_store(tmp_path / "s", gct, sig_info=info, block_size=50)
    entries = build_background(store, tail="both")
    two_sided_sig = np.asarray(load_background(Store(store.path), "sig").values).copy()
    entries = build_background(store, tail=["up", "down"])
    assert set(entries) >= {"up/sig", "down/sig", "up/pert_summary"} and all(e["tail"] in ("up", "down") for e in entries.values())
    store = Store(store.path)
    store.verify()
    kinds = background_kinds(store)
    assert set(kinds) == {"both", "up", "down"}  # building up/down kept the two-sided one
    np.testing.assert_array_equal(np.asarray(load_background(store, "sig").values), two_sided_sig)
    # the up background equals an introspection with up-only queries (independent route)
    from opencmap.query.genesets import signature_queries

    ex = np.flatnonzero(info["is_exemplar_sig"].to_numpy() == 1) if "is_exemplar_sig" in info else np.arange(len(info))
    qs = [Query(q.name, up=q.up) for q in signature_queries(store, positions=ex, n_genes=50)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = Engine(store).run(qs, min_genes=1, fdr=False, tau=False, summaries=False).level("sig").metrics["ncs"]
    bg_up = load_background(store, "sig", "up")
    nc = np.array(direct, dtype=np.float32)
    block = nc[ex]
    nc[ex] = 0.5 * (block + block.T)  # symmetrised exemplar block, self-connections dropped
    nc[ex, np.arange(len(ex))] = np.nan
    cells = info["cell_id"].to_numpy()
    non_ex = np.setdiff1d(np.arange(len(info)), ex)
    for r in [ex[3], *non_ex[:1]]:
        row = nc[r]
        expected = np.sort(np.abs(row[(cells[ex] == cells[r]) & np.isfinite(row)]))
        np.testing.assert_allclose(np.asarray(bg_up.values[r, : bg_up.counts[r]]), expected, atol=1e-6)
    # queries get tau from their own kind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        up = run_query(store, up=prog["A_up"][:20], name="u")
        dn = run_query(store, down=prog["A_dn"][:20], name="d")
    for res, kind in ((up, "up"), (dn, "down")):
        t = res.level("sig").metrics["tau"][:, 0]
        bg = load_background(store, "sig", kind)
        x = res.level("sig").metrics["ncs"][:, 0]
        for s in range(0, store.n_signatures, 17):
            ref = np.asarray(bg.values[s, : bg.counts[s]])
            assert t[s] == pytest.approx(np.sign(x[s]) * 100.0 * np.sum(ref < abs(x[s])) / len(ref), abs=1e-4)
        prov = res.query_provenance(0)["tau"]
        assert prov["available"] and prov["matches_query"] and prov["kind"]["tail"] == kind
        assert prov["n_background_queries"] == bg.entry["n_queries"] and prov["stale"] is False
        assert "pert_summary" in prov["levels"]
        assert not any("tau not computed" in n for n in res.notes)
    # the planted program A still comes first with one side only
    assert set(up.top(4, level="pert_summary")["id"]) == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}


def test_cs_queries_get_no_tau_from_a_wtcs_background(tail_store, level5):
    _, _, prog = level5
    with pytest.warns(TauUnavailableWarning, match="built with wtcs, not cs"):
        res = run_query(tail_store, up=prog["A_up"][:20], down=prog["A_dn"][:20], metric="cs")
    assert "tau" not in res.level("sig").metrics
    assert res.query_provenance(0)["tau"]["background"]["metric"] == "wtcs"


# ---------------------------------------------------------------------------------- archives
def test_provenance_round_trips_and_old_archives_still_load(tail_store, level5):
    _, _, prog = level5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_query(tail_store, queries=[Query("b", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])), Query("u", up=tuple(prog["A_up"][:20]))])
    json.dumps(res.describe())  # JSON-ready
    back = QueryResult.from_bytes(res.to_bytes())
    assert back.provenance == res.provenance and back.tails == ["both", "up"]
    assert back.describe() == res.describe()
    # an archive written before provenance existed: header without it
    import io
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(res.to_bytes()))
    header = json.loads(src.read("header.json"))
    header.pop("provenance")
    for q in header["queries"]:
        q.pop("provenance")
        q.pop("tail")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for name in src.namelist():
            out.writestr(name, json.dumps(header) if name == "header.json" else src.read(name))
    old = QueryResult.from_bytes(buf.getvalue())
    assert old.provenance == {} and old.tails == [None, None]
    assert old.describe()["queries"][0]["tail"] is None and "tail" not in old.query_table()


# ---------------------------------------------------------------------------------- cmapM outputs
def test_one_sided_queries_reproduce_cmapm_up_and_down_scores_on_custom_gutc(shared_data, tmp_path):
    """cmapM ``cmapScoreCore`` with es_tail up returns the up set's ES as the score, with
    es_tail down the negated down-set ES: CMap's own ``cs_up`` / ``cs_dn`` matrices of the
    custom_gutc run (10 Touchstone signatures x 10 queries) give both (tolerance 1e-4, README)."""
    from opencmap.io import read_gct, read_table
    from opencmap.query.genesets import queries_from_gmt

    d = shared_data / "query" / "custom_gutc"
    store = build_store(tmp_path / "store", d / "build" / "modzs_n10x10174.gctx", sig_info=read_table(d / "build" / "siginfo.txt"))
    two_sided = queries_from_gmt(d / "queries" / "contest_query_ezid_up_n10.gmt", d / "queries" / "contest_query_ezid_down_n10.gmt")
    ups = [Query(q.name, up=q.up) for q in two_sided]
    downs = [Query(q.name, down=q.down) for q in two_sided]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res_up = Engine(store).run(ups, max_genes=500, fdr=False, tau=False, summaries=False)
        res_dn = Engine(store).run(downs, max_genes=500, fdr=False, tau=False, summaries=False)
    assert set(res_up.tails) == {"up"} and set(res_dn.tails) == {"down"}
    for res, rel, sign in ((res_up, "query/cs_up_n10x10.gctx", 1.0), (res_dn, "query/cs_dn_n10x10.gctx", -1.0)):
        expected = read_gct(d / "gutc_result" / "matrices" / rel)
        rows = store.sig_positions(list(expected.rids))
        cols = [res.query_names.index(c) for c in expected.cids]
        got = res.level("sig").metrics["wtcs"][np.ix_(rows, cols)]
        np.testing.assert_allclose(got, sign * expected.data, atol=1e-4)


def test_undefined_scores_stay_nan_in_every_ncs_mode(tiny_store):
    for mode in ("gutc", "cmap", "clean"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = Engine(tiny_store).run(Query("q", up=UP91, down=DN91), min_genes=1, tau=False, ncs_mode=mode).level("sig").metrics
        assert np.isnan(m["ncs"][2, 0]) and np.isfinite(m["ncs"][[0, 1, 3], 0]).all(), mode
