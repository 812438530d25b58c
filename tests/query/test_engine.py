"""End to end: store -> query -> WTCS / NCS / FDR / tau / summaries on planted connections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import ConfigError, GeneSetError, QueryError
from opencmap.query.engine import Engine, connectivity_matrix, ncs_groups, null_mask, reference_mask, run_query
from opencmap.query.genesets import Query
from opencmap.query.store import build_store



def plain_es(values: np.ndarray, members: np.ndarray, weighted: bool = True) -> float:
    """Textbook ES: walk the whole descending list, keep the largest deviation (spec §6.3)."""
    order = np.argsort(-values, kind="stable")
    hit = np.isin(order, members)
    w = np.abs(values[order]) if weighted else np.ones(len(values))
    step_hit = np.where(hit, w / w[hit].sum(), 0.0)
    step_miss = np.where(hit, 0.0, 1.0 / (len(values) - hit.sum()))
    walk = np.cumsum(step_hit - step_miss)
    before = walk - step_hit + step_miss * (~hit)  # value before each step
    cand = np.concatenate([walk, before])
    return float(cand[np.argmax(np.abs(cand))])


def plain_wtcs(es_up: float, es_dn: float) -> float:
    return 0.0 if np.sign(es_up) == np.sign(es_dn) else (es_up - es_dn) / 2


@pytest.fixture(scope="module")
def query_a(level5):
    _, _, prog = level5
    return Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20]))


def test_wtcs_matches_plain_implementation(built_store, level5, query_a):
    gct, _, _ = level5
    res = Engine(built_store).run(query_a, fdr=False, tau=False, summaries=False)
    sig = res.level("sig").metrics
    bing = np.arange(300)
    up = np.searchsorted(gct.rids[:300].to_numpy(dtype=object), np.array(query_a.up, dtype=object))
    dn = np.searchsorted(gct.rids[:300].to_numpy(dtype=object), np.array(query_a.down, dtype=object))
    for s in (0, 7, 40, 89):
        v = gct.data[bing, s].astype(np.float64)
        eu, ed = plain_es(v, up), plain_es(v, dn)
        assert sig["es_up"][s, 0] == pytest.approx(eu, abs=1e-5)
        assert sig["es_dn"][s, 0] == pytest.approx(ed, abs=1e-5)
        assert sig["wtcs"][s, 0] == pytest.approx(plain_wtcs(eu, ed), abs=1e-5)


def test_planted_mechanism_ranks_first(built_store, query_a, pcl):
    res = run_query(built_store, queries=[query_a], pcl=pcl)
    top = res.top(4, level="pert_summary", by="ncs")
    assert set(top["id"]) == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}
    top_tau = res.top(4, level="pert_summary")
    assert set(top_tau["id"]) == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}
    assert res.top(1, level="pcl_summary")["id"][0] == "PCL_A"
    sig = res.top(24, level="sig", by="ncs")
    assert set(sig["pert_id"]) == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}
    lv = res.level("sig").metrics
    assert np.nanmax(np.abs(lv["tau"])) <= 100
    assert ((lv["fdr_q"] >= 0) & (lv["fdr_q"] <= 1)).all()
    # the reversed query finds the same compounds as reversers
    rev = run_query(built_store, up=query_a.down, down=query_a.up, pcl=pcl)
    neg = rev.top(4, level="pert_summary", by="ncs", direction="negative")
    assert set(neg["id"]) == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}
    np.testing.assert_allclose(rev.level("sig").metrics["wtcs"], -res.level("sig").metrics["wtcs"], atol=1e-6)


def test_batch_equals_single_and_block_size_irrelevant(built_store, level5, query_a):
    _, _, prog = level5
    qb = Query("B", up=tuple(prog["B_up"][:15]), down=tuple(prog["B_dn"][5:25]))
    qc = Query("C", up=tuple(prog["A_up"][10:30]), down=tuple(prog["B_dn"][:12]))  # overlaps A and B
    engine = Engine(built_store)
    batch = engine.run([query_a, qb, qc], block_size=300)
    for j, q in enumerate([query_a, qb, qc]):
        single = engine.run(q, block_size=7)
        for name, values in single.level("sig").metrics.items():
            np.testing.assert_array_equal(values[:, 0], batch.level("sig").metrics[name][:, j], err_msg=name)
    assert batch.top(2, query="B", level="pert_summary", by="ncs")["id"].isin(["BRD-004", "BRD-005", "BRD-006", "BRD-007"]).all()


def test_es_tail_and_one_sided_queries(built_store, query_a):
    engine = Engine(built_store)
    both = engine.run(query_a, fdr=False, tau=False, summaries=False).level("sig").metrics
    up = engine.run(query_a, es_tail="up", fdr=False, tau=False, summaries=False).level("sig").metrics
    np.testing.assert_array_equal(up["wtcs"], both["es_up"])
    only_down = engine.run(Query("d", down=query_a.down), fdr=False, tau=False, summaries=False).level("sig").metrics
    np.testing.assert_allclose(only_down["wtcs"], -both["es_dn"])
    assert "es_up" not in only_down
    cs = engine.run(query_a, metric="cs", fdr=False, tau=False, summaries=False).level("sig").metrics
    assert not np.allclose(cs["cs"], both["wtcs"])


def test_invalid_queries_raise_or_skip(built_store, query_a):
    engine = Engine(built_store)
    bad = Query("bad", up=("1000", "1001"), down=("1002",))
    with pytest.raises(GeneSetError):
        engine.run([query_a, bad])
    with pytest.warns(UserWarning, match="skipped"):
        res = engine.run([query_a, bad], on_invalid="skip", tau=False, summaries=False)
    assert res.query_names == ["A"]
    with pytest.raises(QueryError, match="unique"):
        engine.run([query_a, query_a])
    with pytest.raises(ConfigError, match="unknown metric"):
        engine.run(query_a, metric="nope")
    with pytest.raises(ConfigError, match="no option"):
        engine.run(query_a, k=3)


def test_signature_roles():
    info = pd.DataFrame(
        {
            "pert_type": ["trt_cp", "trt_poscon", "ctl_vehicle", "trt_sh", "ctl_untrt"],
            "cell_id": ["A", "A", "A", "A", "B"],
        }
    )
    codes, labels = ncs_groups(info)
    assert codes[0] == codes[1] == codes[2] != codes[3]
    assert "trt_cp:A" in labels
    np.testing.assert_array_equal(null_mask(info), [False, False, True, False, True])
    assert reference_mask(info).all()
    info["is_null_sig"] = [0, 0, 0, 1, 0]
    np.testing.assert_array_equal(null_mask(info), [False, False, False, True, False])
    info["is_touchstone"] = [1, 0, 1, 0, 0]
    np.testing.assert_array_equal(reference_mask(info), [True, False, True, False, False])


def test_connectivity_matrix_symmetric(built_store):
    ids = list(built_store.sig_ids[:6])
    m = connectivity_matrix(built_store, ids, n_genes=10)
    assert m.shape == (6, 6)
    np.testing.assert_allclose(m.data, m.data.T, atol=1e-6)
    assert (np.diag(m.data) > 0).all()  # a signature connects to itself
    raw = connectivity_matrix(built_store, ids, references=list(built_store.sig_ids[:3]), normalise=False, n_genes=10)
    assert raw.shape == (3, 6)


def test_engine_on_appended_store_matches(level5, tmp_path, query_a):
    from opencmap.query.store import append_store

    gct, info, _ = level5
    full = build_store(tmp_path / "full", gct, sig_info=info)
    part = build_store(tmp_path / "part", gct.take(cols=np.arange(50)), sig_info=info.iloc[:50])
    part = append_store(part.path, gct.take(cols=np.arange(50, gct.shape[1])), sig_info=info.iloc[50:])
    a = run_query(full, queries=[query_a], tau=False).level("sig").metrics
    b = run_query(part, queries=[query_a], tau=False).level("sig").metrics
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_gathered_blocks_are_bounded():
    """Memory per block stays ~48 MB however large the store or the batch (larger-than-RAM design)."""
    from opencmap.query.runner import _block_columns

    for n_rows in (20, 300, 10_174):
        k = _block_columns(n_rows, 65536)
        assert 256 <= k <= 65536
        assert n_rows * k * 6 <= max(48 << 20, n_rows * 256 * 6)
