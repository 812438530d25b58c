"""Every registered method runs through the engine and agrees with a plain reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from opencmap.errors import ConfigError, QueryError
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query, vector_queries
from opencmap.query.methods import METHOD_NAMES, get_method

SCORE_ONLY = {"ncs": False, "fdr": False, "tau": False, "summaries": False}


@pytest.fixture(scope="module")
def setup(built_store, level5):
    gct, _, prog = level5
    q = Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20]))
    bing = gct.data[:300].astype(np.float64)  # the store's default space = first 300 rows
    space = built_store.space()
    return Engine(built_store), q, bing, space.positions(q.up), space.positions(q.down)


def test_registry_metadata():
    for name in METHOD_NAMES:
        m = get_method(name)
        assert m.name == name and m.kind in ("geneset", "vector") and m.outputs[0] == "score" and m.reference


def _desc_ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(-x, axis=0, kind="stable"), axis=0, kind="stable") + 1


def test_lamb_matches_plain_ks(setup):
    engine, q, bing, up, dn = setup
    m = engine.run(q, metric="lamb", **SCORE_ONLY).level("sig").metrics
    ranks = _desc_ranks(bing)
    n = bing.shape[0]

    def ks(pos):
        v = np.sort(pos)
        t = len(v)
        j = np.arange(1, t + 1)
        a = np.max(j / t - v / n)
        b = np.max(v / n - (j - 1) / t)
        return a if a > b else -b

    s = np.array([0.0 if np.sign(ks(ranks[up, c])) == np.sign(ks(ranks[dn, c])) else ks(ranks[up, c]) - ks(ranks[dn, c]) for c in range(bing.shape[1])])
    expected = np.where(s > 0, s / s.max(), np.where(s < 0, -s / s.min(), 0.0))
    np.testing.assert_allclose(m["lamb"][:, 0], expected, atol=1e-6)
    np.testing.assert_allclose(m["instance_score"][:, 0], s, atol=1e-6)
    assert m["lamb"][:, 0].max() == pytest.approx(1.0)


def test_xsum_and_rankz(setup):
    engine, q, bing, up, dn = setup
    m = engine.run(q, metric="xsum", k=30, **SCORE_ONLY).level("sig").metrics
    ranks = _desc_ranks(bing)
    n = bing.shape[0]
    extreme = (ranks <= 30) | (ranks > n - 30)
    expected = (np.where(extreme, bing, 0)[up].sum(0)) - (np.where(extreme, bing, 0)[dn].sum(0))
    np.testing.assert_allclose(m["xsum"][:, 0], expected, rtol=1e-5, atol=1e-5)
    r = engine.run(q, metric="rankz", **SCORE_ONLY).level("sig").metrics
    asc = n + 1 - ranks
    n1, n2 = len(up), n - len(up)
    z_up = (asc[up].sum(0) - n1 * (n1 + 1) / 2 - n1 * n2 / 2) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    np.testing.assert_allclose(r["z_up"][:, 0], z_up, rtol=1e-5)
    assert {"fdr_up", "fdr_dn", "p_up"} <= set(r)
    # the planted program: compounds 0-3 are the strongest mimickers by every gene-set metric
    info = engine.store.sig_info
    for values in (m["xsum"][:, 0], r["rankz"][:, 0]):
        top = info["pert_id"].iloc[np.argsort(-values)[:12]]
        assert top.isin(["BRD-000", "BRD-001", "BRD-002", "BRD-003"]).all()


@pytest.mark.parametrize("metric", ["cosine", "pearson", "spearman"])
def test_vector_metrics(setup, metric, built_store):
    engine, _, bing, _, _ = setup
    rng = np.random.default_rng(0)
    genes = built_store.space().gene_ids
    keep = rng.choice(300, 120, replace=False)
    vec = pd.Series(rng.standard_normal(120), index=genes[keep])
    m = engine.run(Query("v", vector=vec), metric=metric, **SCORE_ONLY).level("sig").metrics[metric][:, 0]
    x = bing[keep]
    qv = vec.to_numpy()
    if metric == "cosine":
        expected = qv @ x / (np.linalg.norm(qv) * np.linalg.norm(x, axis=0))
    elif metric == "pearson":
        expected = np.array([np.corrcoef(qv, x[:, c])[0, 1] for c in range(x.shape[1])])
    else:
        expected = np.array([np.corrcoef(rankdata(qv), rankdata(x[:, c]))[0, 1] for c in range(x.shape[1])])
    np.testing.assert_allclose(m, expected, atol=1e-5)


def test_signature_vectors_find_themselves(setup, built_store):
    engine, _, _, _, _ = setup
    ids = list(built_store.sig_ids[[3, 50]])
    res = engine.run(vector_queries(built_store, ids), metric="cosine", **SCORE_ONLY)
    for j, sid in enumerate(ids):
        assert res.top(1, query=j, by="cosine")["sig_id"][0] == sid
        assert res.level("sig").metrics["cosine"][built_store.sig_positions([sid])[0], j] == pytest.approx(1.0, abs=1e-5)


def test_kind_mismatch(setup):
    engine, q, _, _, _ = setup
    with pytest.raises(QueryError, match="numeric vector"):
        engine.run(q, metric="cosine")


def test_method_names_by_kind_come_from_the_registry():
    from opencmap.query.methods import method_names

    assert method_names() == METHOD_NAMES
    genesets, vectors = method_names("geneset"), method_names("vector")
    assert genesets == ("wtcs", "cs", "lamb", "xsum", "rankz") and vectors == ("cosine", "pearson", "spearman")
    assert all(get_method(m).kind == "geneset" for m in genesets) and all(get_method(m).kind == "vector" for m in vectors)
    with pytest.raises(ConfigError, match="kind must be"):
        method_names("sets")  # type: ignore[arg-type]
