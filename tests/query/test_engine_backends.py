"""Query results do not depend on the backend's settings (threads, block budgets, kernel paths)."""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.backends import LocalBackend, Settings
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query

_VARIANTS = {
    # one thread everywhere, tiny blocks of the fused path, the per-signature bitmap sort
    "serial-small-blocks": Settings(threads=1, es_block_bytes=1, es_block_min=16, query_block_bytes=1, wtcs_network_max=0),
    # the multi-threaded kernels even for tiny inputs
    "parallel-always": Settings(threads=2, parallel_min=0, wtcs_min_thread_work=1),
    # the store scan split into tasks of 23 signatures (Backend.map_blocks gets several)
    "split-tasks": Settings(task_signatures=23),
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
@pytest.mark.parametrize("metric", ["wtcs", "cs", "xsum"])
def test_results_are_bit_identical_under_any_settings(built_store, level5, pcl, variant, metric):
    _, _, prog = level5
    queries = [
        Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])),
        Query("B", up=tuple(prog["B_up"][:15]), down=tuple(prog["B_dn"][:25])),
        Query("A_up_only", up=tuple(prog["A_up"][:12])),
    ]
    options = {"metric": metric, "fdr_method": "cmap"} if metric != "xsum" else {"metric": metric}
    want = Engine(built_store, pcl=pcl).run(queries, **options)
    got = Engine(built_store, pcl=pcl, backend=LocalBackend(_VARIANTS[variant])).run(queries, block_size=37, **options)
    assert set(got.levels) == set(want.levels)
    for level in want.levels:
        w, g = want.level(level).metrics, got.level(level).metrics
        assert set(g) == set(w)
        for name in w:
            np.testing.assert_array_equal(g[name], w[name], err_msg=f"{level} {name}")


@pytest.mark.parametrize("metric", ["spearman", "pearson"])
def test_vector_results_are_bit_identical_under_any_settings(built_store, metric):
    import pandas as pd

    rng = np.random.default_rng(3)
    genes = built_store.space().gene_ids
    keep = rng.choice(len(genes), 120, replace=False)
    query = Query("v", vector=pd.Series(rng.standard_normal(120), index=genes[keep]))
    want = Engine(built_store).run(query, metric=metric).level("sig").metrics
    for settings in _VARIANTS.values():
        got = Engine(built_store, backend=LocalBackend(settings)).run(query, metric=metric, block_size=37).level("sig").metrics
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_random_query_fdr_is_bit_identical_under_any_settings(built_store, level5):
    """Random-query nulls scored under other settings, and the p-values from them, equal the default's."""
    from opencmap.query.fdr_null import load_or_build_null

    _, _, prog = level5
    query = Query("A", up=tuple(prog["A_up"][:9]), down=tuple(prog["A_dn"][:8]))
    options = {"fdr_method": "random_query", "fdr_null_size": 25, "fdr_seed": 5, "summaries": False, "min_genes": 5}
    want = Engine(built_store).run(query, **options).level("sig").metrics
    null = {"n_up": 9, "n_down": 8, "n_random": 25, "seed": 5, "values": True, "cache": False}
    want_null = load_or_build_null(built_store, **null)
    for settings in _VARIANTS.values():
        backend = LocalBackend(settings)
        got = Engine(built_store, backend=backend).run(query, **options).level("sig").metrics
        for name in ("fdr_p", "fdr_q"):
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        got_null = load_or_build_null(built_store, **null, backend=backend)  # scored under these settings
        np.testing.assert_array_equal(got_null.values, want_null.values)
        np.testing.assert_array_equal(got_null.counts, want_null.counts)


class _OtherProcesses(LocalBackend):
    """A backend whose tasks run in other processes (spawned: nothing inherited), each task
    pickled on the way there and its result on the way back: what a cluster backend does."""

    def map_blocks(self, kernel, tasks):
        import multiprocessing
        import pickle
        from concurrent.futures import ProcessPoolExecutor

        tasks = [pickle.loads(pickle.dumps(t)) for t in tasks]  # nothing unpicklable in a task
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from pool.map(kernel, tasks)


def test_tasks_run_in_other_processes_give_the_same_scores(built_store, level5):
    """The block runner's tasks are plain data: run in spawned processes that open the store from
    its path, they give the scores of the local run, bit for bit (the seam a Dask backend uses)."""
    from opencmap.query.runner import score_block_task

    _, _, prog = level5
    queries = [Query("A", up=tuple(prog["A_up"][:20]), down=tuple(prog["A_dn"][:20])), Query("u", up=tuple(prog["B_up"][:10]))]
    for metric in ("wtcs", "xsum"):
        want = Engine(built_store).run(queries, metric=metric, ncs=False, summaries=False).level("sig").metrics
        backend = _OtherProcesses(Settings(task_signatures=31))
        got = Engine(built_store, backend=backend).run(queries, metric=metric, ncs=False, summaries=False).level("sig").metrics
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{metric} {name}")
    assert score_block_task.__module__ == "opencmap.query.runner"  # pickled by reference


def test_a_task_covers_exactly_its_signature_range(built_store):
    """Store.iter_blocks(start=, stop=) hands out exactly the positions asked for, in order."""
    rows = np.arange(5)
    n = built_store.n_signatures
    for start, stop in ((0, n), (7, 41), (n - 3, n), (10, 10)):
        covered = [(a, b) for a, b, *_ in built_store.iter_blocks(rows, block_size=9, start=start, stop=stop)]
        flat = [p for a, b in covered for p in range(a, b)]
        assert flat == list(range(start, stop))


def test_a_process_keeps_its_task_stores_open_and_refuses_a_changed_store(level5, tmp_path):
    """task_store: the same open store for the next task; a store whose manifest changed is
    reopened; a store whose scanned data changed since the run read it is refused."""
    from opencmap.errors import StoreError
    from opencmap.query.background import build_background
    from opencmap.query.runner import scan_identity, task_store
    from opencmap.query.store import Store, build_store

    gct, info, _ = level5
    path = tmp_path / "store"
    build_store(path, gct, sig_info=info)
    settings = Settings(task_signatures=10)
    first = task_store(str(path), settings)
    identity = scan_identity(first)
    assert task_store(str(path), settings, identity) is first  # kept open
    assert task_store(str(path), Settings()) is not first  # per settings
    build_background(path, tail="up")  # a new manifest, the same scanned data
    again = task_store(str(path), settings, identity)
    assert again is not first and again.manifest.get("generation") != first.manifest.get("generation")
    assert scan_identity(again) == identity
    sub = gct.subset(cids=list(gct.cids[:40]))
    build_store(path, sub, sig_info=info[info["sig_id"].isin(sub.cids)], overwrite=True)  # rebuilt: other signatures
    with pytest.raises(StoreError, match="rebuilt or changed"):
        task_store(str(path), settings, identity)
    assert task_store(str(path), settings).n_signatures == 40 == Store(path).n_signatures
