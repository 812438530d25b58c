"""Synchronous results are answered first and stored afterwards (JobRunner(defer_sync_save=True)):
served from memory meanwhile, stored with the same values, and never resurrected once expired."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from opencmap.api.jobs import JobDB, JobRunner


@pytest.fixture(scope="module")
def result_and_store(test_store):
    from opencmap.query.engine import run_query
    from opencmap.query.store import Store

    store, pcl, programs = test_store
    res = run_query(store, programs["A_up"][:20], programs["A_dn"][:20], name="A", pcl=pcl)
    return res, Store(store)


def test_sync_result_is_served_before_it_is_stored(tmp_path, result_and_store):
    result, store = result_and_store
    db = JobDB(tmp_path / "jobs.sqlite")
    gate = threading.Event()
    save = db.save_result

    def slow_save(*args, **kwargs):
        gate.wait(30)
        return save(*args, **kwargs)

    db.save_result = slow_save  # type: ignore[method-assign]
    runner = JobRunner(db, lambda request, progress: result, sig_info=lambda: store.sig_info, cache_size=1)
    job_id, got = runner.run_now({"queries": []}, n_queries=1)
    assert got is result
    job = db.get(job_id)
    assert job["status"] == "done" and job["info"]["params"] == result.describe()["params"]
    assert db._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0  # not stored yet
    other, _ = runner.run_now({"queries": []}, n_queries=1)  # pushes job_id out of the 1-entry cache
    assert runner.result(job_id) is result  # still served from the pending saves
    gate.set()
    runner.flush(timeout=30)
    stored = db.load_result(job_id, store_sig_info=store.sig_info)
    for name, level in result.levels.items():
        for metric, values in level.metrics.items():
            np.testing.assert_array_equal(stored.levels[name].metrics[metric], values)
    runner.stop()
    db.close()


def test_result_expired_before_its_save_is_not_stored(tmp_path, result_and_store):
    result, store = result_and_store
    db = JobDB(tmp_path / "jobs.sqlite", max_results=1)
    gate = threading.Event()
    save = db.save_result
    db.save_result = lambda *a, **k: (gate.wait(30), save(*a, **k))[1]  # type: ignore[method-assign]
    runner = JobRunner(db, lambda request, progress: result, sig_info=lambda: store.sig_info)
    first, _ = runner.run_now({"queries": []}, n_queries=1)
    second, _ = runner.run_now({"queries": []}, n_queries=1)  # retention (1 result) expires the first now
    assert db.get(first)["status"] == "expired"
    gate.set()
    runner.flush(timeout=30)
    assert db.get(first)["status"] == "expired" and db.get(second)["status"] == "done"
    ids = {r[0] for r in db._conn.execute("SELECT job_id FROM results")}
    assert ids == {second}
    runner.stop()
    db.close()
