"""The job runner and its SQLite persistence, in-process: shutdown mid-job, re-queue, results."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from opencmap.api.jobs import DB_FORMAT_VERSION, JobDB, JobRunner


@pytest.fixture(scope="module")
def result_and_store(test_store):
    from opencmap.query.engine import run_query
    from opencmap.query.store import Store

    store, pcl, programs = test_store
    res = run_query(store, programs["A_up"][:20], programs["A_dn"][:20], name="A", pcl=pcl)
    return res, Store(store)


def _wait(db, job_id, states, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = db.get(job_id)
        if job["status"] in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stuck in {db.get(job_id)['status']}")


def test_shutdown_requeues_a_running_job_and_the_next_start_finishes_it(tmp_path, result_and_store):
    result, store = result_and_store
    started = threading.Event()

    def slow(request, progress):
        started.set()
        for i in range(10_000):
            progress(i, 10_000)
            time.sleep(0.01)
        raise AssertionError("not stopped")

    db = JobDB(tmp_path / "jobs.sqlite")
    runner = JobRunner(db, slow, sig_info=lambda: store.sig_info)
    runner.start()
    job_id = runner.submit({"queries": []}, n_queries=1)
    assert started.wait(10)
    assert _wait(db, job_id, {"running"})["progress"] >= 0
    runner.stop()
    job = db.get(job_id)
    assert job["status"] == "queued" and "shutdown" in job["error"]
    db.close()

    db = JobDB(tmp_path / "jobs.sqlite")
    runner = JobRunner(db, lambda request, progress: result, sig_info=lambda: store.sig_info)
    assert runner.start() == [job_id]
    job = _wait(db, job_id, {"done", "failed"})
    assert job["status"] == "done" and job["attempts"] == 2 and job["error"] is None
    runner.stop()
    db.close()

    # the stored result rebuilds the library's QueryResult exactly
    loaded = JobDB(tmp_path / "jobs.sqlite").load_result(job_id, store_sig_info=store.sig_info)
    assert loaded.query_names == ["A"] and loaded.method == result.method and list(loaded.levels) == list(result.levels)
    for name, lv in result.levels.items():
        assert list(loaded.level(name).metrics) == list(lv.metrics)
        for metric, values in lv.metrics.items():
            np.testing.assert_array_equal(loaded.level(name).metrics[metric], values)
    assert loaded.top(5, level="pert_summary").equals(result.top(5, level="pert_summary"))
    assert loaded.query_table().equals(result.query_table())


def test_failing_job_is_reported_not_lost(tmp_path, result_and_store):
    from opencmap.errors import QueryError

    _, store = result_and_store

    def broken(request, progress):
        raise QueryError("no valid query left to run")

    db = JobDB(tmp_path / "jobs.sqlite")
    runner = JobRunner(db, broken, sig_info=lambda: store.sig_info)
    runner.start()
    job_id = runner.submit({}, n_queries=1)
    job = _wait(db, job_id, {"failed"})
    assert job["error"] == "no valid query left to run" and job["finished"] is not None
    runner.stop()


def test_newer_database_is_refused(tmp_path):
    from opencmap.errors import StoreError

    db = JobDB(tmp_path / "jobs.sqlite")
    db._conn.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        JobDB(tmp_path / "jobs.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="unusable"):
        JobDB(tmp_path / "junk.sqlite")


def test_version_1_database_is_upgraded_and_its_results_reported_lost(tmp_path, result_and_store):
    result, store = result_and_store
    db = JobDB(tmp_path / "jobs.sqlite")
    job_id = db.create({"queries": []}, n_queries=1, mode="sync", status="running")
    db.save_result(job_id, result, store_sig_info=store.sig_info)
    db._conn.executescript(
        "UPDATE meta SET value = '1' WHERE key = 'format_version';"
        "CREATE TABLE result_levels (job_id TEXT); CREATE TABLE result_metrics (job_id TEXT);"
    )
    db.close()
    db = JobDB(tmp_path / "jobs.sqlite")
    job = db.get(job_id)
    assert job["status"] == "failed" and "older opencmap" in job["error"]
    tables = {r[0] for r in db._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "result_levels" not in tables and "results" in tables
    assert db._conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0] == str(DB_FORMAT_VERSION)
    db.close()


def test_retention_keeps_the_newest_results_and_never_touches_unfinished_jobs(tmp_path, result_and_store):
    from opencmap.api.jobs import EXPIRED_MESSAGE
    from opencmap.errors import StoreError

    result, store = result_and_store
    db = JobDB(tmp_path / "jobs.sqlite", max_results=2)
    queued = db.create({"queries": []}, n_queries=1, mode="batch")
    done = []
    for _ in range(5):
        job_id = db.create({"queries": []}, n_queries=1, mode="sync", status="running")
        expired = db.save_result(job_id, result, store_sig_info=store.sig_info)
        assert job_id not in expired
        done.append(job_id)
    assert [db.get(j)["status"] for j in done] == ["expired"] * 3 + ["done"] * 2
    assert db.get(done[0])["error"] == EXPIRED_MESSAGE and db.get(queued)["status"] == "queued"
    assert db._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2
    kept = db.load_result(done[-1], store_sig_info=store.sig_info)
    np.testing.assert_array_equal(kept.level("sig").metrics["ncs"], result.level("sig").metrics["ncs"])
    with pytest.raises(StoreError, match="no result"):
        db.load_result(done[0], store_sig_info=store.sig_info)
    assert db.list()[0] == 6
    assert db._conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    db.close()


def test_retention_by_age_at_start_up_and_a_lowered_limit_vacuums(tmp_path, result_and_store):
    result, store = result_and_store
    db = JobDB(tmp_path / "jobs.sqlite")
    ids = []
    for _ in range(6):
        job_id = db.create({"queries": []}, n_queries=1, mode="sync", status="running")
        db.save_result(job_id, result, store_sig_info=store.sig_info)
        ids.append(job_id)
    db._conn.execute("UPDATE jobs SET finished = finished - 7200 WHERE id = ?", (ids[0],))
    db.close()
    size = (tmp_path / "jobs.sqlite").stat().st_size
    db = JobDB(tmp_path / "jobs.sqlite", result_ttl=3600)
    assert [db.get(j)["status"] for j in ids] == ["expired"] + ["done"] * 5
    db.close()
    db = JobDB(tmp_path / "jobs.sqlite", max_results=1)  # 4 more expire: most of the file is free
    assert [db.get(j)["status"] for j in ids] == ["expired"] * 5 + ["done"]
    db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db._conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    # results are files since format 4: the expired ones' folders are gone, the database holds rows only
    assert sorted(p.name for p in db.results_dir.iterdir()) == [ids[-1]]
    assert (tmp_path / "jobs.sqlite").stat().st_size <= size
    db.close()


def test_a_version_2_database_is_converted_to_incremental_vacuum(tmp_path):
    import sqlite3

    from opencmap.api.jobs import _SCHEMA

    conn = sqlite3.connect(tmp_path / "jobs.sqlite")
    conn.executescript(_SCHEMA + "INSERT INTO meta VALUES ('format_version', '2');")
    conn.commit()
    conn.close()
    db = JobDB(tmp_path / "jobs.sqlite", max_results=3)
    assert db._conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert db._conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0] == str(DB_FORMAT_VERSION)
    db.close()


def test_job_states_are_defined_once():
    from typing import get_args

    from opencmap.api.jobs import JOB_STATES, JobState

    assert JOB_STATES == get_args(JobState) == ("queued", "running", "done", "failed", "expired")


def test_retention_logs_one_line_per_expiry_and_deletes_every_expired_result(tmp_path, result_and_store, caplog):
    import logging

    result, store = result_and_store
    db = JobDB(tmp_path / "jobs.sqlite")
    ids = []
    for _ in range(4):
        ids.append(db.create({"queries": []}, n_queries=1, mode="sync", status="running"))
        db.save_result(ids[-1], result, store_sig_info=store.sig_info)
    db.close()
    with caplog.at_level(logging.INFO, logger="opencmap.api.jobs"):
        db = JobDB(tmp_path / "jobs.sqlite", max_results=1)  # 3 expire at once, at start-up
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention:")]
        assert lines == ["retention: 3 stored result(s) expired"]
        caplog.clear()
        ids.append(db.create({"queries": []}, n_queries=1, mode="sync", status="running"))
        assert db.save_result(ids[-1], result, store_sig_info=store.sig_info) == [ids[3]]
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention:")]
        assert lines == ["retention: 1 stored result(s) expired"]
    kept = [r[0] for r in db._conn.execute("SELECT job_id FROM results")]
    assert kept == [ids[4]]
    assert [db.get(i)["status"] for i in ids] == ["expired"] * 4 + ["done"]
    db.close()


def _clue_rows(path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT job_id FROM clue_jobs ORDER BY job_id")]


def test_clue_rows_go_with_their_jobs_deleted_by_the_user_or_by_retention(tmp_path):
    from opencmap.api.clue.jobs import ClueJobs

    path = tmp_path / "jobs.sqlite"
    db = JobDB(path, max_rows=1, expired_row_grace=0)
    clue = ClueJobs(path)
    ids = [db.create({"q": i}, n_queries=1, mode="batch") for i in range(3)]
    for job_id in ids:
        clue.add(job_id, {"name": job_id, "tool_id": "sig_gutc_tool"})
    assert _clue_rows(path) == sorted(ids)
    assert db.delete(ids[0])  # deleted by its user
    assert clue.get(ids[0]) is None and _clue_rows(path) == sorted(ids[1:])
    for job_id in ids[1:]:
        db.set_status(job_id, "failed", finished=time.time(), error="x")
    db.enforce_retention()  # max_rows=1: the older finished row is deleted (tombstone), the newer kept
    assert db.get(ids[1]) is None and db.deleted(ids[1])
    assert clue.get(ids[1]) is None and clue.get(ids[2]) == {"name": ids[2], "tool_id": "sig_gutc_tool"}
    assert _clue_rows(path) == [ids[2]]
    clue.close()
    db.close()


def test_an_older_clue_table_is_rebuilt_keeping_live_jobs_only(tmp_path, caplog):
    import logging
    import sqlite3

    from opencmap.api.clue.jobs import ClueJobs

    path = tmp_path / "jobs.sqlite"
    db = JobDB(path)
    live = db.create({"q": 1}, n_queries=1, mode="batch")
    with sqlite3.connect(path) as conn:  # the table as servers before the reference made it, with an orphan row
        conn.execute("CREATE TABLE clue_jobs (job_id TEXT PRIMARY KEY, params TEXT NOT NULL, created REAL NOT NULL)")
        conn.executemany("INSERT INTO clue_jobs VALUES (?, ?, ?)", [(live, '{"name": "a"}', 1.0), ("gone", '{"name": "b"}', 2.0)])
    with caplog.at_level(logging.INFO, logger="opencmap.api.clue.jobs"):
        clue = ClueJobs(path)
    assert "1 row(s) kept, 1 of jobs already deleted dropped" in caplog.text
    assert _clue_rows(path) == [live] and clue.get(live) == {"name": "a"}
    assert db.delete(live) and _clue_rows(path) == []
    clue.close()
    ClueJobs(path).close()  # reopening an up-to-date table changes nothing
    db.close()
