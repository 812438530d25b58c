"""The reference index: built once per store generation and PCL set, shared, safe to read from threads."""

from __future__ import annotations

import runpy
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from opencmap.query.engine import Engine, run_query
from opencmap.query.genesets import Query
from opencmap.query.reference import ReferenceIndex, ncs_groups, reference_mask, shared_store
from opencmap.query.store import Store

PCL = runpy.run_path(str(Path(__file__).with_name("synthetic_level5.py")))["PCL"]


def test_one_index_per_store_generation_and_pcl_set(built_store):
    a = ReferenceIndex.of(built_store)
    assert ReferenceIndex.of(Store(built_store.path)) is a  # another handle on the same generation
    with_pcl = ReferenceIndex.of(built_store, {k: tuple(v) for k, v in PCL.items()})
    assert with_pcl is not a and with_pcl.pcl is not None
    assert with_pcl.lookup is a.lookup and with_pcl.groups is a.groups  # PCL-independent parts shared
    assert set(with_pcl.summary_plan.levels) > set(a.summary_plan.levels)  # PCL levels only with PCLs
    codes, labels = a.groups
    np.testing.assert_array_equal(codes, ncs_groups(built_store.sig_info)[0])
    np.testing.assert_array_equal(a.is_reference, reference_mask(built_store.sig_info))


def test_a_new_generation_gets_a_new_index(level5, tmp_path):
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    gct, info, prog = level5
    store = build_store(tmp_path / "s", gct, sig_info=info, block_size=50)
    engine = Engine(store)
    first = engine.index
    assert engine.index is first
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = engine.run(Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])))
    assert "tau" not in res.level("sig").metrics  # no background yet
    build_background(store)  # rewrites the manifest: a new generation
    assert engine.index is not first
    res = engine.run(Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])))
    assert "tau" in res.level("sig").metrics  # the new index reads the new background


def test_run_query_reuses_the_open_store_until_its_manifest_changes(level5, tmp_path):
    from opencmap.query.store import build_store

    gct, info, prog = level5
    build_store(tmp_path / "s", gct, sig_info=info, block_size=50)
    path = str(tmp_path / "s")
    assert shared_store(path) is shared_store(path)
    before = shared_store(path)
    shutil.rmtree(tmp_path / "s")
    build_store(tmp_path / "s", gct.subset(cids=list(gct.cids[:60])), sig_info=info.iloc[:60], block_size=50)
    after = shared_store(path)
    assert after is not before and after.n_signatures == 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_query(path, prog["A_up"][:20], prog["A_dn"][:20])
    assert res.level("sig").metrics["ncs"].shape == (60, 1)


def test_first_use_from_many_threads_equals_sequential_runs(level5, tmp_path):
    """No warm-up and no lock: threads racing on a cold index get the sequential results."""
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    gct, info, prog = level5
    path = tmp_path / "s"
    build_store(path, gct, sig_info=info, block_size=50)
    build_background(path, pcl=PCL)
    queries = [
        Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])),
        Query("B", up=tuple(prog["B_up"][:20])),
        Query("C", down=tuple(prog["A_dn"][:25])),
    ]
    kw = {"fdr_method": "cmap"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [Engine(Store(path), pcl=PCL).run([q], **kw) for q in queries]
        ReferenceIndex.forget()
        engine = Engine(Store(path), pcl=PCL)  # cold: its index is built by the racing threads
        out: list = [None] * 12
        barrier = threading.Barrier(6)

        def run(k: int) -> None:
            barrier.wait()
            for i in range(k, len(out), 6):
                out[i] = engine.run([queries[i % 3]], **kw)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, res in enumerate(out):
        ref = expected[i % 3]
        assert list(res.levels) == list(ref.levels)
        for level, lv in ref.levels.items():
            for metric, values in lv.metrics.items():
                np.testing.assert_array_equal(res.level(level).metrics[metric], values)


def test_parts_are_built_once(built_store):
    index = ReferenceIndex(built_store)
    calls = []

    def build():
        calls.append(1)
        return object()

    got = [index.memo("x", build) for _ in range(3)]
    assert len(calls) == 1 and got[0] is got[1] is got[2]
    with pytest.raises(AttributeError):
        index.missing  # noqa: B018 - parts are explicit properties
