"""FDR methods through the engine and the result (issue 12, item 3): named, sized, flagged, cached."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ConfigError
from opencmap.kernels.fdr import bh, fdr_gsea, pooled_null, random_query_pooled_pvalues, random_query_pvalues
from opencmap.query import Engine, Query
from opencmap.query.engine import null_mask
from opencmap.query.fdr_null import DEFAULT_FDR_METHOD, FDRWarning, cmap_fdr, load_or_build_null
from opencmap.query.result import QueryResult


@pytest.fixture(scope="module")
def query_a(level5):
    _, _, prog = level5
    return Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20]))


@pytest.fixture(scope="module")
def engine(built_store):
    return Engine(built_store)


def test_cmap_method_is_unchanged_named_and_sized(engine, built_store, query_a):
    res = engine.run(query_a, fdr_method="cmap", tau=False, summaries=False)
    sig = res.level("sig").metrics
    is_null = null_mask(built_store.sig_info)
    np.testing.assert_array_equal(sig["fdr_q"], np.asarray(fdr_gsea(sig["ncs"], is_null), dtype=np.float32))
    assert res.params["fdr_method"] == "cmap"
    assert res.fdr["method"] == "cmap" and res.fdr["n_null_signatures"] == int(is_null.sum())
    sides = res.fdr["queries"]["A"]
    ncs = sig["ncs"][:, 0]
    assert sides["positive"]["n_null"] == int(((ncs > 0) & is_null).sum())
    assert sides["negative"]["n_null"] == int(((ncs < 0) & is_null).sum())
    assert any("cmap method" in n for n in res.notes)
    assert "fdr_flag" in sig
    frame = res.to_frame("sig")
    assert frame["fdr_flag"].map(type).eq(str).all()  # names, "" where the method has something to say
    # the record survives describe() and a round trip
    assert res.describe()["fdr"]["queries"]["A"]["positive"]["n_null"] == sides["positive"]["n_null"]
    back = QueryResult.from_bytes(res.to_bytes())
    assert back.fdr == json.loads(json.dumps(res.fdr))
    # and it is in the query table (queries.tsv of every written result)
    table = res.query_table().set_index("query")
    assert table.at["A", "fdr_method"] == "cmap"
    assert table.at["A", "fdr_positive_n_null"] == sides["positive"]["n_null"]
    assert table.at["A", "fdr_negative_n_null"] == sides["negative"]["n_null"]


def test_cmap_silent_sides_warn_and_note():
    rng = np.random.default_rng(0)
    ncs = rng.standard_normal((60, 2))
    is_null = np.zeros(60, dtype=bool)
    is_null[np.flatnonzero(ncs[:, 0] > 0)[:2]] = True  # 2 positive nulls in query 0
    with pytest.warns(FDRWarning, match="too_few_nulls"):
        out = cmap_fdr(ncs, is_null, ["q0", "q1"])
    assert out.info["queries"]["q0"]["positive"]["flag"].startswith("too_few_nulls")
    assert (out.metrics["fdr_flag"][ncs[:, 0] > 0, 0] & 1).all()
    assert any("not evidence" in n and "q0 (positive" in n for n in out.notes)


def test_cmap_row_order_flag_marks_only_the_scores_that_can_move():
    rng = np.random.default_rng(2)
    ncs = np.concatenate([rng.uniform(0.1, 2, 40), rng.uniform(0.1, 1.5, 8), -rng.uniform(0.1, 1.5, 8), [-3.0, -2.5, -2.0], -rng.uniform(0.05, 1, 30)])
    is_null = np.zeros(ncs.size, dtype=bool)
    is_null[40:56] = True
    with pytest.warns(FDRWarning, match="row_order_dependent"):
        out = cmap_fdr(ncs, is_null, ["q"])
    flag = out.metrics["fdr_flag"]
    beyond = ncs <= ncs[48:56].min()
    assert (flag[beyond] & 8).all() and not (flag[~beyond] & 8).any()
    assert out.info["queries"]["q"]["negative"]["flag"] == "row_order_dependent"


def test_default_method_is_random_query_pooled_with_its_null(engine, built_store, query_a):
    res = engine.run(query_a, tau=False, summaries=False)
    assert DEFAULT_FDR_METHOD == "random_query_pooled"
    assert res.params["fdr_method"] == "random_query_pooled"
    assert res.params["fdr_null_size"] == 1000 and res.params["fdr_seed"] == 0
    rec = res.fdr["queries"]["A"]
    assert (rec["n_up"], rec["n_down"], rec["n_random"], rec["seed"]) == (20, 20, 1000, 0)
    row = res.query_table().iloc[0]
    assert row["fdr_method"] == "random_query_pooled" and row["fdr_n_random"] == 1000
    sig = res.level("sig").metrics
    assert {"fdr_p", "fdr_q", "fdr_q_nlog10"} <= set(sig) and "fdr_flag" not in sig
    finite = np.isfinite(sig["fdr_q"])
    assert ((sig["fdr_q"][finite] >= 0) & (sig["fdr_q"][finite] <= 1)).all()
    np.testing.assert_allclose(sig["fdr_q"], bh(sig["fdr_p"].astype(np.float64), axis=0), rtol=1e-6)
    # the planted mechanism is found, with the cache written in the store folder
    top = res.top(12, by="ncs")
    assert (top["fdr_q"] < 0.05).all()
    assert (built_store.path / "fdr_null" / rec["null_key"] / "meta.json").exists()


def test_null_is_cached_per_size_and_rebuilt_when_settings_change(built_store, caplog):
    caplog.set_level(logging.INFO, logger="opencmap.query.fdr_null")
    a = load_or_build_null(built_store, n_up=7, n_down=5, n_random=50, seed=3)
    assert not a.cached and any("computing the random-query FDR null" in r.message for r in caplog.records)
    assert a.values is None and not (a.path / "values.npy").exists()  # the pooled method keeps the summary only
    b = load_or_build_null(built_store, n_up=7, n_down=5, n_random=50, seed=3)
    assert b.cached
    for x, y in zip(a.pooled(), b.pooled(), strict=True):
        np.testing.assert_array_equal(x, y)
    c = load_or_build_null(built_store, n_up=7, n_down=5, n_random=50, seed=4)
    assert not c.cached and c.key != a.key
    assert a.params["seed"] == 3 and "default_rng([3, 7, 5])" in a.params["rng"]
    # asking for per-signature values rebuilds once with them, then reads them
    d = load_or_build_null(built_store, n_up=7, n_down=5, n_random=50, seed=3, values=True)
    assert not d.cached and d.values is not None
    e = load_or_build_null(built_store, n_up=7, n_down=5, n_random=50, seed=3)
    assert e.cached and e.values is not None
    for x, y in zip(a.pooled(), e.pooled(), strict=True):
        np.testing.assert_array_equal(x, y)  # the same random queries: the same null
    # sorted |score| per signature, NaN last; the summary agrees with the values
    v = np.asarray(d.values)
    assert np.all(np.diff(np.nan_to_num(v, nan=np.inf), axis=1) >= 0) and np.nanmin(v) >= 0
    np.testing.assert_array_equal(d.nonzero, (v > 0).sum(axis=1))


def test_random_query_method_and_options(engine, query_a):
    res = engine.run(query_a, fdr_method="random_query", fdr_null_size=99, fdr_seed=5, tau=False, summaries=False)
    assert res.params["fdr_method"] == "random_query" and res.params["fdr_null_size"] == 99
    p = res.level("sig").metrics["fdr_p"]
    assert np.nanmin(p) >= 1 / 100 - 1e-7
    with pytest.raises(ConfigError, match="fdr_method"):
        engine.run(query_a, fdr_method="storey")
    with pytest.raises(ConfigError, match="random-query"):
        engine.run(query_a, fdr_method="cmap", fdr_null_size=10)


def test_random_query_fdr_does_not_depend_on_signature_order(level5, tmp_path, query_a):
    """The same signatures stored in another order give the same q-values, permuted."""
    from opencmap.query.store import build_store

    gct, info, _ = level5
    perm = np.random.default_rng(1).permutation(gct.data.shape[1])
    a = build_store(tmp_path / "a", gct, sig_info=info)
    b = build_store(tmp_path / "b", gct.subset(cids=list(gct.cids[perm])), sig_info=info.iloc[perm].reset_index(drop=True))
    for method in ("random_query_pooled", "random_query"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qa = Engine(a).run(query_a, fdr_method=method, fdr_null_size=200, tau=False, summaries=False).level("sig").metrics["fdr_q"]
            qb = Engine(b).run(query_a, fdr_method=method, fdr_null_size=200, tau=False, summaries=False).level("sig").metrics["fdr_q"]
        np.testing.assert_allclose(qb[:, 0], qa[perm, 0], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 80), st.booleans())
def test_random_query_q_permutes_with_the_signatures(seed, n_sig, pooled):
    rng = np.random.default_rng(seed)
    null = np.sort(np.round(np.abs(rng.standard_normal((n_sig, 40))) * rng.uniform(0.1, 1, (n_sig, 1)), 2), axis=1)
    null[rng.random(null.shape) < 0.4] = 0.0
    null = np.sort(null, axis=1)
    counts = np.full(n_sig, 40)
    x = np.round(rng.standard_normal((n_sig, 2)), 2)
    perm = rng.permutation(n_sig)

    def q_of(x, null, counts):
        if pooled:
            scale, nz, pool = pooled_null(null, counts)
            return bh(random_query_pooled_pvalues(x, counts, scale, nz, pool), axis=0)
        return bh(random_query_pvalues(x, null, counts), axis=0)

    np.testing.assert_allclose(q_of(x[perm], null[perm], counts[perm]), q_of(x, null, counts)[perm], rtol=1e-12)


def test_null_is_rebuilt_after_signatures_are_appended(level5, tmp_path):
    from opencmap.query.store import Store, append_store, build_store

    gct, info, _ = level5
    n = gct.data.shape[1]
    first = build_store(tmp_path / "s", gct.subset(cids=list(gct.cids[: n - 20])), sig_info=info.iloc[: n - 20].reset_index(drop=True))
    a = load_or_build_null(first, n_up=5, n_down=5, n_random=30)
    assert a.counts.shape == (n - 20,)
    append_store(tmp_path / "s", gct.subset(cids=list(gct.cids[n - 20 :])), sig_info=info.iloc[n - 20 :].reset_index(drop=True))
    b = load_or_build_null(Store(tmp_path / "s"), n_up=5, n_down=5, n_random=30)
    assert not b.cached and b.counts.shape == (n,)
    # the old signatures' null is the same random queries' (same seed): unchanged
    np.testing.assert_array_equal(b.counts[: n - 20], a.counts)
    np.testing.assert_array_equal(b.nonzero[: n - 20], a.nonzero)


@pytest.mark.parametrize("name", ["scale.npy", "values.npy"])
def test_a_corrupt_null_cache_is_rebuilt_not_used(level5, tmp_path, caplog, name):
    from opencmap.query.store import build_store

    gct, info, _ = level5
    store = build_store(tmp_path / "ref", gct, sig_info=info)
    a = load_or_build_null(store, n_up=7, n_down=5, n_random=30, seed=1, values=True)
    assert (a.path / "values.tiles.npy").exists()
    assert load_or_build_null(store, n_up=7, n_down=5, n_random=30, seed=1, values=True).cached
    expected = np.array(a.values)  # (a's values are a map of the file changed below)
    f = a.path / name
    arr = np.load(f, mmap_mode="r+")
    flat = arr.reshape(-1)
    flat[1] = flat[1] + 1 if np.isfinite(flat[1]) else 1.0  # one changed value
    arr.flush()
    del arr, flat
    caplog.set_level(logging.WARNING, logger="opencmap.query.fdr_null")
    b = load_or_build_null(store, n_up=7, n_down=5, n_random=30, seed=1, values=True)
    assert not b.cached
    assert any("is corrupt" in r.message and name in r.message for r in caplog.records)
    for x, y in zip(a.pooled(), b.pooled(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(expected, np.asarray(b.values))
