"""Durability of the server (issue 15): every job ends, results as files beside the database,
bounded retention, a sync lane beside jobs, safe exposure defaults, full disks as 507, and the
smaller fixes. Faults are injected (monkeypatched saves and ``ENOSPC``, kill -9 of a real server)."""

from __future__ import annotations

import errno
import json
import os
import random
import runpy
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from opencmap.api import Settings
from opencmap.api.jobs import RESULT_FILE, SYNC_INTERRUPTED, JobDB, JobRunner, result_nbytes

httpx = pytest.importorskip("httpx")
_SERVER = runpy.run_path(str(Path(__file__).with_name("server.py")))
Server = _SERVER["Server"]


@pytest.fixture(scope="module")
def engine(test_store):
    from opencmap.query.engine import Engine

    store, pcl, _ = test_store
    return Engine(store, pcl=pcl)


@pytest.fixture(scope="module")
def small_result(engine, programs):
    from opencmap.query.genesets import Query

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.run([Query("A", up=tuple(programs["A_up"][:20]), down=tuple(programs["A_dn"][:20]))])


def _queries(engine, n, seed=0):
    from opencmap.query.genesets import Query

    genes = [str(g) for g in engine.store.space(None).gene_ids]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        g = rng.sample(genes, 30)
        out.append(Query(f"q{i}", up=tuple(g[:15]), down=tuple(g[15:])))
    return out


def _wait(db, job_id, states, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = db.get(job_id)
        if job is not None and job["status"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck in {db.get(job_id)['status']}")


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------- jobs always end
def test_a_job_whose_save_raises_ends_failed_with_the_message(tmp_path, engine, small_result, monkeypatch):
    db = JobDB(tmp_path / "jobs.sqlite")
    runner = JobRunner(db, lambda request, progress: small_result, sig_info=lambda: engine.store.sig_info)

    def broken_save(*args, **kwargs):
        raise sqlite3.DataError("string or blob too big")

    monkeypatch.setattr(db, "save_result", broken_save)
    runner.start()
    try:
        job = _wait(db, runner.submit({}, n_queries=1), {"done", "failed"})
        assert job["status"] == "failed" and "string or blob too big" in job["error"] and job["finished"] is not None
        with pytest.raises(sqlite3.DataError):  # the sync lane too: failed, and the error reaches the caller
            runner.run_now({}, n_queries=1)
        (row,) = [j for j in db.list()[1] if j["mode"] == "sync"]
        assert row["status"] == "failed" and "blob too big" in row["error"]
    finally:
        runner.stop()
        db.close()


def test_a_full_disk_while_saving_ends_the_job_failed_and_leaves_no_file(tmp_path, engine, small_result, monkeypatch):
    import opencmap.api.jobs.store as jobstore

    db = JobDB(tmp_path / "jobs.sqlite")
    runner = JobRunner(db, lambda request, progress: small_result, sig_info=lambda: engine.store.sig_info)
    real_replace = os.replace

    def full(src, dst, *a, **k):
        if RESULT_FILE in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(jobstore.os, "replace", full)
    runner.start()
    try:
        job = _wait(db, runner.submit({}, n_queries=1), {"done", "failed"})
        assert job["status"] == "failed" and "disk is full" in job["error"]
        assert _files(db.results_dir) == []  # neither the partial file nor the folder stayed
    finally:
        runner.stop()
        db.close()


def test_a_4000_query_job_beyond_sqlites_blob_limit_ends_done_with_its_files(tmp_path, engine):
    """SQLite's largest string/blob is lowered below the result's size (as a 4,000-query job on a
    store above ~25,000 signatures exceeds the default 1 GB): the old blob path cannot store it,
    the file path does."""
    queries = _queries(engine, 4000)
    db = JobDB(tmp_path / "jobs.sqlite")
    limit = 4_000_000
    db._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
    with pytest.raises(sqlite3.DataError, match="too big"):  # what the old design did with it
        db._conn.execute("SELECT ?", (b"\0" * (limit + 1),))

    def execute(request, progress):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return engine.run(queries, progress=progress)

    runner = JobRunner(db, execute, sig_info=lambda: engine.store.sig_info)
    runner.start()
    try:
        job = _wait(db, runner.submit({}, n_queries=4000), {"done", "failed"}, timeout=300)
    finally:
        runner.stop()
    assert job["status"] == "done", job["error"]
    path = db.job_dir(job["id"]) / RESULT_FILE
    assert path.stat().st_size > limit
    loaded = db.load_result(job["id"], store_sig_info=engine.store.sig_info)
    assert len(loaded.queries) == 4000 and loaded.level("sig").metrics["ncs"].shape == (engine.store.n_signatures, 4000)
    db.close()


def test_sync_queries_cut_off_by_a_stop_are_not_rerun(tmp_path, engine, small_result):
    db = JobDB(tmp_path / "jobs.sqlite")
    sync = db.create({}, n_queries=1, mode="sync", status="running")
    batch = db.create({}, n_queries=1, mode="batch", status="running")
    db.set_status(batch, "running", attempts=1)
    runs = []

    def execute(request, progress):
        runs.append(request)
        return small_result

    runner = JobRunner(db, execute, sig_info=lambda: engine.store.sig_info)
    assert runner.start() == [batch]
    try:
        assert _wait(db, batch, {"done"})["attempts"] == 2
        job = db.get(sync)
        assert job["status"] == "failed" and job["error"] == SYNC_INTERRUPTED
        assert len(runs) == 1
    finally:
        runner.stop()
        db.close()


def test_an_old_database_with_blob_results_is_still_read(tmp_path, engine, small_result):
    """Format 3 kept results as blobs in ``results.data``: they stay readable in place (not migrated)."""
    from opencmap.api.jobs import _SCHEMA

    conn = sqlite3.connect(tmp_path / "jobs.sqlite")
    conn.executescript(_SCHEMA + "INSERT INTO meta VALUES ('format_version', '3');")
    conn.execute(
        "INSERT INTO jobs (id, status, mode, created, finished, progress, n_queries, request, info) VALUES (?, 'done', 'sync', ?, ?, 1, 1, '{}', ?)",
        ("a" * 32, time.time(), time.time(), json.dumps(small_result.describe())),
    )
    conn.execute("INSERT INTO results VALUES (?, ?)", ("a" * 32, small_result.to_bytes(omit_index=("sig",))))
    conn.commit()
    conn.close()
    db = JobDB(tmp_path / "jobs.sqlite")
    loaded = db.load_result("a" * 32, store_sig_info=engine.store.sig_info)
    np.testing.assert_array_equal(loaded.level("sig").metrics["ncs"], small_result.level("sig").metrics["ncs"])
    assert db.stored_bytes() == len(small_result.to_bytes(omit_index=("sig",)))
    db.close()


# ---------------------------------------------------------------------------------- kill -9
def test_kill_9_mid_job_then_restart_ends_every_job_once(test_store, tmp_path):
    store, pcl, _ = test_store
    db = tmp_path / "jobs.sqlite"
    from opencmap.query.store import Store

    genes = [str(g) for g in Store(store).space(None).gene_ids]
    rng = random.Random(1)
    queries = []
    for i in range(1000):
        g = rng.sample(genes, 30)
        queries.append({"name": f"q{i}", "up": g[:15], "down": g[15:]})
    srv = Server(store, db, pcl)
    try:
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60) as c:
            job_id = c.post("/jobs", json={"queries": queries}).json()["id"]
            deadline = time.monotonic() + 60
            while c.get(f"/jobs/{job_id}").json()["status"] == "queued" and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        srv.stop(kill=True)  # SIGKILL: no shutdown handler runs
    jobs = JobDB(db)  # a sync query the dead server was answering
    sync = jobs.create({"queries": queries[:1]}, n_queries=1, mode="sync", status="running")
    jobs.close()
    srv = Server(store, db, pcl)
    try:
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60) as c:
            deadline = time.monotonic() + 240
            while c.get(f"/jobs/{job_id}").json()["status"] not in ("done", "failed") and time.monotonic() < deadline:
                time.sleep(0.2)
            job = c.get(f"/jobs/{job_id}").json()
            assert job["status"] in ("done", "failed"), job
            if job["status"] == "done":
                assert c.get(f"/jobs/{job_id}/results", params={"query": "q999", "limit": 1}).status_code == 200
            s = c.get(f"/jobs/{sync}").json()
            assert s["status"] == "failed" and "not re-run" in s["error"]
            listed = c.get("/jobs", params={"limit": 500}).json()
            assert listed["total"] == 2 and sorted(j["id"] for j in listed["items"]) == sorted([job_id, sync])
    finally:
        srv.stop()
    assert sorted(p.name for p in (tmp_path / "jobs-results").iterdir()) == ([job_id] if job["status"] == "done" else [])


# ---------------------------------------------------------------------------------- full disk in the API
def _sync_body(programs, name="q"):
    return {"queries": [{"name": name, "up": programs["A_up"][:20], "down": programs["A_dn"][:20]}]}


def test_a_full_disk_answers_507_with_the_error_format_and_the_job_failed(make_client, programs, monkeypatch, tmp_path):
    import opencmap.api.jobs.store as jobstore

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_replace = os.replace
    with make_client() as c:
        monkeypatch.setattr(jobstore.os, "replace", full)
        r = c.post("/api/v1/queries", json=_sync_body(programs))
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage" and "disk is full" in r.json()["error"]["message"]
        (job,) = c.get("/api/v1/jobs").json()["items"]
        assert job["status"] == "failed" and "disk is full" in job["error"]
        assert _files(tmp_path / "jobs-results") == []
        monkeypatch.setattr(jobstore.os, "replace", real_replace)
        assert c.post("/api/v1/queries", json=_sync_body(programs)).status_code == 200  # space freed: works again


def test_other_os_errors_answer_503(make_client, programs, monkeypatch):
    import opencmap.api.jobs.store as jobstore

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    with make_client() as c:
        monkeypatch.setattr(jobstore.os, "replace", denied)
        r = c.post("/api/v1/queries", json=_sync_body(programs))
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert "Permission denied" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------------- retention
def test_retention_bounds_database_and_results_folder_after_a_thousand_results(tmp_path, engine, small_result, monkeypatch):
    import opencmap.api.jobs.store as jobstore

    monkeypatch.setattr(jobstore.os, "fsync", lambda fd: None)  # sizes are the point here, not durability: CI time
    size = len(small_result.to_bytes(omit_index=("sig",)))
    db = JobDB(tmp_path / "jobs.sqlite", max_results=20, max_result_bytes=10 * size, max_rows=100)
    request = {"queries": [{"name": "q", "up": ["1"] * 100, "down": ["2"] * 100}]}  # ~1 KB rows

    def usage():
        db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.disk_usage()

    for i in range(1200):  # ~30 ms per save on a busy CI machine
        job_id = db.create(request, n_queries=1, mode="sync", status="running")
        db.save_result(job_id, small_result, store_sig_info=engine.store.sig_info)
        if i == 199:
            early = usage()
    late = usage()
    assert db._conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 100
    assert db._conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'done'").fetchone()[0] == 10  # the byte bound
    assert len(list(db.results_dir.iterdir())) == 10 and db.stored_bytes() == 10 * size
    assert late["results_bytes"] == 10 * size
    assert late["database_bytes"] <= early["database_bytes"] * 1.1, (early, late)
    db.close()


def test_expired_rows_are_deleted_after_the_grace_and_leave_tombstones(tmp_path, engine, small_result, monkeypatch):
    """Many small jobs: with grace 0 an expiring result takes its row (a tombstone is kept, so
    :meth:`JobDB.deleted` says so); rows are compact (compressed) and the file stays bounded."""
    import opencmap.api.jobs.store as jobstore

    monkeypatch.setattr(jobstore.os, "fsync", lambda fd: None)  # sizes are the point here, not durability: CI time
    db = JobDB(tmp_path / "jobs.sqlite", max_results=5, max_rows=40, expired_row_grace=0)
    request = {"queries": [{"name": "q", "up": [str(1000 + i) for i in range(100)], "down": [str(5000 + i) for i in range(100)]}]}

    def size():
        db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return db.disk_usage()["database_bytes"]

    ids = []
    for i in range(400):
        ids.append(db.create(request, n_queries=1, mode="sync", status="running"))
        db.save_result(ids[-1], small_result, store_sig_info=engine.store.sig_info)
        if i == 99:
            early = size()
    late = size()
    assert db._conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 5  # the 5 kept results; expired rows gone at once
    assert db.get(ids[-6]) is None and db.deleted(ids[-6]) and not db.deleted(ids[-1]) and not db.deleted("f" * 32)
    assert 40 <= db._conn.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0] <= 40 + 10  # newest max_rows (+ a quarter)
    assert db.get(ids[0]) is None and not db.deleted(ids[0])  # the oldest tombstones were trimmed
    stored, text = db._conn.execute("SELECT request, typeof(request) FROM jobs WHERE id = ?", (ids[-1],)).fetchone()
    assert text == "blob" and len(stored) < len(json.dumps(request)) / 3  # compressed
    assert db.get(ids[-1])["request"] == request
    assert late <= early * 1.1, (early, late)
    db.close()


def test_expired_rows_stay_listed_for_the_grace_then_go(tmp_path, engine, small_result):
    db = JobDB(tmp_path / "jobs.sqlite", max_results=1, tombstone_ttl=3600)
    a = db.create({"queries": []}, n_queries=1, mode="sync", status="running")
    db.save_result(a, small_result, store_sig_info=engine.store.sig_info)
    b = db.create({"queries": []}, n_queries=1, mode="sync", status="running")
    db.save_result(b, small_result, store_sig_info=engine.store.sig_info)
    assert db.get(a)["status"] == "expired" and not db.deleted(a)  # default grace: 24 hours
    db._conn.execute("UPDATE jobs SET expired_at = expired_at - 25 * 3600 WHERE id = ?", (a,))
    assert db.enforce_retention() == [a]
    assert db.get(a) is None and db.deleted(a) and db.get(b)["status"] == "done"
    db._conn.execute("UPDATE tombstones SET deleted = deleted - 7200")
    db.close()
    db = JobDB(tmp_path / "jobs.sqlite", max_results=1, tombstone_ttl=3600)  # the tombstone is older than its TTL
    assert not db.deleted(a)
    db.close()


def test_a_format_4_database_with_text_rows_is_read_and_rewritten_compactly(tmp_path, engine, small_result):
    from opencmap.api.jobs import DB_FORMAT_VERSION, _SCHEMA

    request = {"queries": [{"name": "q", "up": ["1"] * 50, "down": ["2"] * 50}]}
    conn = sqlite3.connect(tmp_path / "jobs.sqlite")
    conn.executescript(_SCHEMA.replace("CREATE TABLE IF NOT EXISTS tombstones", "CREATE TABLE IF NOT EXISTS unused")
                       + "INSERT INTO meta VALUES ('format_version', '4');")  # fmt: skip
    conn.execute("ALTER TABLE results ADD COLUMN nbytes INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE jobs ADD COLUMN expired_at REAL")
    info = small_result.describe()
    conn.execute(
        "INSERT INTO jobs (id, status, mode, created, finished, progress, n_queries, request, info) VALUES (?, 'failed', 'job', ?, ?, 1, 1, ?, ?)",
        ("b" * 32, time.time(), time.time(), json.dumps(request), json.dumps(info)),
    )
    conn.execute(
        "INSERT INTO jobs (id, status, mode, created, n_queries, request) VALUES (?, 'queued', 'job', ?, 1, ?)",
        ("c" * 32, time.time(), json.dumps(request)),
    )
    conn.commit()
    conn.close()
    db = JobDB(tmp_path / "jobs.sqlite")
    assert db._conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0] == str(DB_FORMAT_VERSION) == "5"
    assert db.get("b" * 32)["request"] == request and db.get("b" * 32)["info"] == json.loads(json.dumps(info))
    assert db.get("c" * 32)["request"] == request and db.get("c" * 32)["info"] is None
    assert {t for (t,) in db._conn.execute("SELECT typeof(request) FROM jobs")} == {"blob"}
    assert [j["id"] for j in db.unfinished()] == ["c" * 32]
    db.close()


def test_retention_runs_on_a_timer_without_new_results(tmp_path, engine, small_result):
    db = JobDB(tmp_path / "jobs.sqlite", result_ttl=0.3, expired_row_grace=0.3)
    runner = JobRunner(db, lambda r, p: small_result, sig_info=lambda: engine.store.sig_info, retention_interval=0.1)
    runner.start()
    try:
        job_id, _ = runner.run_now({}, n_queries=1)
        assert runner.cache_usage()[0] == 1
        _wait(db, job_id, {"expired"}, timeout=10)
        assert not db.job_dir(job_id).exists()
        deadline = time.monotonic() + 10
        while db.get(job_id) is not None and time.monotonic() < deadline:  # the row goes one grace later
            time.sleep(0.05)
        assert db.get(job_id) is None and runner.cache_usage() == (0, 0)
    finally:
        runner.stop()
        db.close()


def test_the_result_cache_is_bounded_in_bytes(tmp_path, engine, small_result):
    each = result_nbytes(small_result)
    db = JobDB(tmp_path / "jobs.sqlite")
    runner = JobRunner(db, lambda r, p: small_result, sig_info=lambda: engine.store.sig_info, cache_size=1000, cache_bytes=3 * each + 1)
    for i in range(10):
        runner.remember(f"{i:032x}", small_result)
    assert runner.cache_usage() == (3, 3 * each)
    tiny = JobRunner(db, lambda r, p: small_result, sig_info=lambda: engine.store.sig_info, cache_bytes=each - 1)
    tiny.remember("f" * 32, small_result)
    assert tiny.cache_usage() == (0, 0)  # larger than the whole cache: not kept
    db.close()


# ---------------------------------------------------------------------------------- concurrency
def test_concurrent_runs_after_warm_up_equal_sequential_runs(engine, test_store):
    from opencmap.api.catalogue import Catalogue
    from opencmap.api.execution import QueryService
    from opencmap.query.engine import Engine

    store, pcl, _ = test_store
    fresh = Engine(store, pcl=pcl)  # cold caches
    service = QueryService(fresh, Catalogue.build(fresh.store, pcl=fresh.pcl), Settings(store_path=store))
    assert service.warm()
    queries = _queries(engine, 16, seed=5)
    requests = [
        {"queries": [{"name": q.name, "up": list(q.up), "down": list(q.down if i % 3 else ())}], "metric": "wtcs" if i % 2 else "cs"}
        for i, q in enumerate(queries)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sequential = [service.execute(r, lambda d, t: None) for r in requests]
        out: list = [None] * len(requests)
        barrier = threading.Barrier(8)

        def run(k):
            barrier.wait()
            for i in range(k, len(requests), 8):
                out[i] = service.execute(requests[i], lambda d, t: None)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for a, b in zip(sequential, out, strict=True):
        assert list(a.levels) == list(b.levels)
        for level, lv in a.levels.items():
            for metric, values in lv.metrics.items():
                np.testing.assert_array_equal(values, b.level(level).metrics[metric])


def test_jobs_reserve_memory_from_the_budget(tmp_path, engine, small_result):
    db = JobDB(tmp_path / "jobs.sqlite")
    running, peak = [0], [0]
    lock = threading.Lock()

    def execute(request, progress):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return small_result

    runner = JobRunner(
        db, execute, sig_info=lambda: engine.store.sig_info, workers=4, memory_budget=100, estimate=lambda r: r["need"]
    )
    runner.start()
    try:
        ids = [runner.submit({"need": 50}, n_queries=1) for _ in range(4)]  # two fit at once
        ids.append(runner.submit({"need": 1000}, n_queries=1))  # larger than the budget: runs alone
        for j in ids:
            assert _wait(db, j, {"done", "failed"})["status"] == "done"
        assert peak[0] == 2 and runner.budget.used == 0
    finally:
        runner.stop()
        db.close()


# ---------------------------------------------------------------------------------- exposure
def test_open_binding_without_a_token_is_refused_unless_allowed(test_store, tmp_path):
    import subprocess
    import sys

    from opencmap.errors import ConfigError

    store, pcl, _ = test_store
    with pytest.raises(ConfigError, match="--allow-open"):
        Settings(store_path=store, host="0.0.0.0").check_exposure()
    Settings(store_path=store, host="0.0.0.0", allow_open=True).check_exposure()
    Settings(store_path=store, host="0.0.0.0", api_token="t").check_exposure()
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        Settings(store_path=store, host=host).check_exposure()
    base = [sys.executable, "-c", "from opencmap.cli import main; main()", "serve", "--store", str(store), "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCMAP_")}
    out = subprocess.run([*base, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: refusing to listen on 0.0.0.0") and "--allow-open" in out.stderr
    out = subprocess.run([*base, "--token", ""], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "token is empty" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "empty").write_text("\n")
    out = subprocess.run([*base, "--token-file", str(tmp_path / "empty")], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "is empty" in out.stderr


def test_token_from_a_file_or_the_environment_and_declared_in_openapi(make_client, tmp_path, monkeypatch):
    (tmp_path / "token").write_text("from-file\n")
    with make_client(token_file=tmp_path / "token") as c:
        assert c.get("/api/v1/info").status_code == 401
        assert c.get("/api/v1/info", headers={"Authorization": "Bearer from-file"}).status_code == 200
        assert c.get("/api/v1/info", headers={"X-API-Token": "from-file"}).status_code == 200
        schema = c.get("/api/v1/openapi.json", headers={"X-API-Token": "from-file"}).json()
        schemes = schema["components"]["securitySchemes"]
        assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>"}
        assert schemes["apiToken"]["in"] == "header" and schemes["apiToken"]["name"] == "X-API-Token"
        assert schema["paths"]["/api/v1/info"]["get"]["security"] == [{"bearer": []}, {"apiToken": []}]
        assert "security" not in schema["paths"]["/api/v1/health"]["get"]
    monkeypatch.setenv("OPENCMAP_TOKEN", "from-env")
    assert Settings().api_token == "from-env"
    with make_client() as c:
        assert c.get("/api/v1/info", headers={"Authorization": "Bearer from-env"}).status_code == 200
    monkeypatch.delenv("OPENCMAP_TOKEN")
    with make_client() as c:  # no token: nothing declared, nothing required
        assert "securitySchemes" not in c.get("/api/v1/openapi.json").json().get("components", {})


# ---------------------------------------------------------------------------------- smaller (item 9)
def test_download_names_with_a_final_newline_are_refused(client, programs):
    job_id = client.post("/queries", json=_sync_body(programs, "nl")).json()["job"]["id"]
    assert client.get(f"/jobs/{job_id}/downloads/sig.tsv").status_code == 200
    for bad in ("sig.tsv%0A", "queries.tsv%0A", "sig__ncs.gctx%0A"):
        r = client.get(f"/jobs/{job_id}/downloads/{bad}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", bad


def test_every_listed_download_answers_200_even_for_odd_genes(client, programs):
    body = _sync_body(programs, "odd")
    body["queries"][0]["up"] = [*body["queries"][0]["up"], "NOT A GENE", "x;y"]
    r = client.post("/queries", json={**body, "on_invalid": "skip"})
    assert r.status_code == 200, r.text
    job_id = r.json()["job"]["id"]
    for f in client.get(f"/jobs/{job_id}/downloads").json()["files"]:
        assert client.get(f"/jobs/{job_id}/downloads/{f['name']}").status_code == 200, f["name"]
    tab = _sync_body(programs, "tab")
    tab["queries"][0]["up"][0] += "\t"
    r = client.post("/queries", json=tab)  # a gene no table could hold is refused at the door
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_store_conflicts_do_not_show_the_servers_paths(client, programs, test_store):
    store, _, _ = test_store
    r = client.post("/queries", json={**_sync_body(programs), "space": "nosuchspace"})
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert "nosuchspace" in message and str(store) not in message and str(Path(store).resolve()) not in message
    assert "the served store" in message


# ---------------------------------------------------------------------------------- CLI
def test_os_errors_in_the_cli_are_one_line_exit_2(monkeypatch, capsys):
    import click

    from opencmap.cli import cli, main

    @cli.command("durserve-boom", hidden=True)
    def boom() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/sig.tsv")

    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["durserve-boom"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err == "error: disk full: /data/out/sig.tsv (No space left on device); free space (or write elsewhere) and run the command again"
    finally:
        cli.commands.pop("durserve-boom", None)
    assert isinstance(cli, click.Group)


def test_query_out_on_a_full_disk_is_one_line_exit_2(test_store, programs, tmp_path, monkeypatch, capsys):
    from opencmap.cli import main

    store, pcl, _ = test_store
    real_replace = os.replace

    def full(src, dst, *a, **k):
        if str(tmp_path / "out") in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", full)
    up, down = ",".join(programs["A_up"][:20]), ",".join(programs["A_dn"][:20])
    args = ["query", str(store), "--up-genes", up, "--down-genes", down, "--pcl", str(pcl), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: disk full") and "Traceback" not in "\n".join(err)


# ---------------------------------------------------------------------------------- a new store generation
def test_a_running_server_answers_with_backgrounds_rebuilt_by_another_process(test_store, tmp_path):
    """`opencmap store background` (other parameters) in another process while a server holds the
    store open: the next query uses the new backgrounds (its describe names the new generation),
    no StoreError; the answers equal a fresh library run on the new generation."""
    import shutil
    import subprocess
    import sys

    from opencmap.query.engine import Engine
    from opencmap.query.genesets import Query
    from opencmap.query.store import Store

    src, pcl, programs = test_store
    store = tmp_path / "store"
    shutil.copytree(src, store)
    q = {"name": "A", "up": programs["A_up"][:30], "down": programs["A_dn"][:30]}

    def library_tau() -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = Engine(Store(store), pcl=pcl).run(Query("A", up=tuple(q["up"]), down=tuple(q["down"])), fdr=False)
        frame = res.to_frame("sig", query="A")
        return frame.set_index("sig_id")["tau"].sort_index().to_numpy()

    def served(c: httpx.Client) -> tuple[np.ndarray, dict]:
        r = c.post("/queries", json={"queries": [q]})
        assert r.status_code == 200, r.text
        jid = r.json()["job"]["id"]
        rows = c.get(f"/jobs/{jid}/results", params={"query": "A", "level": "sig", "limit": 1000}).json()["items"]
        tau = np.array([row["tau"] if row["tau"] is not None else np.nan for row in sorted(rows, key=lambda row: row["sig_id"])], dtype=float)
        return tau, c.get(f"/jobs/{jid}/downloads/describe.json").json()

    before_lib = library_tau()
    srv = Server(store, tmp_path / "jobs.sqlite", pcl)
    try:
        with httpx.Client(base_url=f"{srv.url}/api/v1", timeout=60) as c:
            tau0, desc0 = served(c)
            np.testing.assert_allclose(tau0, before_lib, rtol=0, atol=1e-4, equal_nan=True)
            gen0 = desc0["provenance"]["store"]
            proc = subprocess.run(
                [sys.executable, "-c", "from opencmap.cli import main; main()", "store", "background", str(store),
                 "--all-cells", "--n-genes", "20", "--pcl", str(pcl)],
                capture_output=True, text=True, timeout=600, env={**os.environ},
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-2000:]
            after_lib = library_tau()
            assert not np.allclose(after_lib, before_lib, equal_nan=True)
            tau1, desc1 = served(c)
            np.testing.assert_allclose(tau1, after_lib, rtol=0, atol=1e-4, equal_nan=True)
            assert desc1["provenance"]["store"]["generation"] == gen0["generation"] + 1
            assert c.get("/health").json()["status"] == "ok"
    finally:
        srv.stop()
    assert "StoreError" not in srv.log.read_text()


# ---------------------------------------------------------------------------------- corrupt store files
def _corrupt_ranks_copy(store: Path, dest: Path) -> Path:
    """A copy of ``store`` whose default space's ranks have one flipped value in every gene row."""
    import shutil

    from opencmap.query.store import Store

    shutil.copytree(store, dest)
    st = Store(dest)
    f = dest / "segments" / st.segments[0].name / st.default_space / "ranks.npy"
    arr = np.load(f, mmap_mode="r+")
    arr[:, 1] ^= np.uint16(0x0F0F)
    arr.flush()
    del arr
    return f


def test_a_corrupt_store_file_answers_503_store_corrupt_naming_the_file(test_store, programs, tmp_path):
    import warnings

    from opencmap.api import Settings, create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    store, pcl, _ = test_store
    bad = _corrupt_ranks_copy(Path(store), tmp_path / "store")
    with TestClient(create_app(Settings(store_path=tmp_path / "store", pcl_path=pcl, db_path=tmp_path / "jobs.sqlite"))) as c:
        r = c.post("/api/v1/queries", json=_sync_body(programs))
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "store_corrupt"
    assert f"{bad.parent.name}/ranks.npy is corrupt" in err["message"] and "store info --verify" in err["message"]
    assert str(tmp_path) not in err["message"] and "the served store" in err["message"]
