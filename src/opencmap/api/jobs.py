"""Query jobs: SQLite persistence of jobs and their results, and the thread pool that runs them.

A job is a batch of queries submitted through the API. Its row in the ``jobs`` table holds the
request, status (``queued`` -> ``running`` -> ``done`` | ``failed``; ``done`` -> ``expired``),
progress, and timestamps;
its result is stored in the same database (``results``: the bytes of the library's
:meth:`QueryResult.to_bytes <opencmap.query.result.QueryResult.to_bytes>`, without the ``sig``
index, which is the store's ``sig_info``), so a restarted server loses nothing and rebuilds the
:class:`~opencmap.query.result.QueryResult` exactly.

Jobs that were ``queued`` or ``running`` when the server stopped (cleanly or not) are re-queued
on start-up, up to ``max_retries`` times; after that they are marked ``failed`` with a message
saying so - never silently lost.

Retention: results take space (megabytes each for a large store), so :class:`JobDB` keeps at most
``max_results`` finished results and none older than ``result_ttl`` seconds (both optional). When
a result is stored (and at start-up) the oldest finished results beyond those bounds are deleted;
their job rows stay, with status ``expired`` and an error saying to resubmit. Queued and running
jobs are never touched. Freed pages are reused by later results; they are returned to the file
system (incremental vacuum) only when more than a quarter of the file is free, not on every insert.
"""

from __future__ import annotations

import contextlib
import concurrent.futures
import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from opencmap.errors import OpenCMapError, StoreError, ValidationError
from opencmap.query.result import QueryResult

__all__ = ["JobDB", "JobRunner", "JobState", "JOB_STATES", "EXPIRED_MESSAGE", "ShutdownRequested"]

log = logging.getLogger(__name__)

#: the status of a job (see the module docstring for the transitions)
JobState = Literal["queued", "running", "done", "failed", "expired"]
JOB_STATES: tuple[str, ...] = get_args(JobState)

#: error message of a job whose result was deleted by the retention policy
EXPIRED_MESSAGE = "the result of this job was deleted by the server's retention policy (expired); resubmit the query"
#: vacuum once more than this fraction of the database pages is free
_VACUUM_FREE_FRACTION = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    mode TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    n_queries INTEGER NOT NULL,
    request TEXT NOT NULL,
    info TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
"""
DB_FORMAT_VERSION = 3  # 3: status 'expired' (older servers cannot show it)


class ShutdownRequested(Exception):
    """Raised inside a running job when the server stops; the job is re-queued."""


class JobDB:
    """Jobs and results in one SQLite file (WAL mode; safe to use from several threads).

    ``max_results`` (number of stored results) and ``result_ttl`` (seconds since a job finished)
    bound the stored results; ``None`` means no bound (see the module docstring).
    """

    def __init__(self, path: str | Path, *, max_results: int | None = None, result_ttl: float | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_results = max_results
        self.result_ttl = result_ttl
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file (else at VACUUM)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"job database {self.path} is unusable ({exc}); move it away or set OPENCMAP_DB_PATH") from exc
        row = self._conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
        if row is None:
            self._conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(DB_FORMAT_VERSION),))
        elif int(row[0]) > DB_FORMAT_VERSION:
            raise StoreError(
                f"job database {self.path} has format version {row[0]}, newer than this opencmap "
                f"supports ({DB_FORMAT_VERSION}); upgrade opencmap or use another OPENCMAP_DB_PATH"
            )
        elif int(row[0]) < 2:  # version 1 kept results in per-level tables: not read any more
            self._conn.execute(
                "UPDATE jobs SET status = 'failed', error = ? WHERE status = 'done'",
                ("this result was stored by an older opencmap and cannot be read; resubmit the job",),
            )
            self._conn.executescript("DROP TABLE IF EXISTS result_levels; DROP TABLE IF EXISTS result_metrics;")
        if row is not None and int(row[0]) < DB_FORMAT_VERSION:
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(DB_FORMAT_VERSION),))
        with self._transaction():
            self._expire()
        if self._conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # a file made before auto_vacuum was set
            log.info("converting job database %s to incremental vacuum (one full VACUUM)", self.path)
            self._conn.execute("VACUUM")
        else:
            self._vacuum_if_sparse()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction under the lock: committed, or rolled back on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ jobs
    def create(self, request: dict[str, Any], *, n_queries: int, mode: str, status: str = "queued") -> str:
        job_id = uuid.uuid4().hex
        with self._lock:
            self._conn.execute(
                "INSERT INTO jobs (id, status, mode, created, n_queries, request) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, status, mode, time.time(), n_queries, json.dumps(request)),
            )
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            cur = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
            row = cur.fetchone()
            cols = [c[0] for c in cur.description]
        return None if row is None else self._row(dict(zip(cols, row, strict=True)))

    def list(self, *, status: str | None = None, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM jobs {where}", args).fetchone()[0]
            cur = self._conn.execute(
                f"SELECT * FROM jobs {where} ORDER BY created DESC LIMIT ? OFFSET ?", [*args, limit, offset]
            )
            cols = [c[0] for c in cur.description]
            rows = [self._row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]
        return int(total), rows

    @staticmethod
    def _row(d: dict[str, Any]) -> dict[str, Any]:
        d["request"] = json.loads(d["request"])
        d["info"] = json.loads(d["info"]) if d.get("info") else None
        return d

    def set_status(self, job_id: str, status: str, **fields: Any) -> None:
        sets = ["status = ?"]
        args: list[Any] = [status]
        for key, value in fields.items():
            if key not in ("started", "finished", "progress", "error", "attempts", "info"):
                raise KeyError(key)
            sets.append(f"{key} = ?")
            args.append(json.dumps(value) if key == "info" else value)
        with self._lock:
            self._conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*args, job_id])

    def set_progress(self, job_id: str, progress: float) -> None:
        with self._lock:
            self._conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (float(progress), job_id))

    def unfinished(self) -> list[dict[str, Any]]:
        """Jobs left queued or running (by a previous server), oldest first."""
        with self._lock:
            cur = self._conn.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created")
            cols = [c[0] for c in cur.description]
            return [self._row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    # ------------------------------------------------------------------ results
    def save_result(self, job_id: str, result: QueryResult, *, store_sig_info: pd.DataFrame, only_if_done: bool = False) -> list[str]:
        """Store ``result`` (the ``sig`` index is the store's, so it is not copied) and mark the job done.

        Applies the retention bounds first; returns the ids of the jobs whose results expired.
        ``only_if_done``: store nothing unless the job is ``done`` (a deferred save after
        :meth:`mark_done`; the job may have expired meanwhile).
        """
        sig = result.levels.get("sig")
        omit = ("sig",) if sig is not None and len(sig.index) == len(store_sig_info) else ()
        data = result.to_bytes(omit_index=omit)
        info = result.describe()
        with self._lock:
            with self._transaction():
                if only_if_done:
                    row = self._conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
                    if row is None or row[0] != "done":
                        return []
                expired = self._expire(keep=job_id)  # first, so the insert can reuse the freed pages
                self._conn.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (job_id, data))
                self._conn.execute(
                    "UPDATE jobs SET status = 'done', progress = 1, finished = ?, info = ?, error = NULL WHERE id = ?",
                    (time.time(), json.dumps(info), job_id),
                )
            if expired:
                self._vacuum_if_sparse()
        return expired

    def mark_done(self, job_id: str, info: dict[str, Any]) -> list[str]:
        """Mark a job done before its result is stored (a deferred :meth:`save_result` follows).

        Applies the retention bounds now, as :meth:`save_result` would; returns the expired ids.
        """
        with self._lock:
            with self._transaction():
                expired = self._expire(keep=job_id)
                self._conn.execute(
                    "UPDATE jobs SET status = 'done', progress = 1, finished = ?, info = ?, error = NULL WHERE id = ?",
                    (time.time(), json.dumps(info), job_id),
                )
            if expired:
                self._vacuum_if_sparse()
        return expired

    def _expire(self, *, keep: str | None = None) -> list[str]:
        """Mark finished results beyond the bounds ``expired`` and delete them (inside a transaction).

        ``keep`` is a job about to be stored: it counts towards ``max_results`` and is never expired.
        """
        ids: set[str] = set()
        if self.result_ttl is not None:
            cutoff = time.time() - self.result_ttl
            cur = self._conn.execute("SELECT id FROM jobs WHERE status = 'done' AND finished < ?", (cutoff,))
            ids.update(r[0] for r in cur.fetchall())
        if self.max_results is not None:
            room = self.max_results - (keep is not None)
            cur = self._conn.execute(
                "SELECT id FROM jobs WHERE status = 'done' AND id != ? ORDER BY finished DESC, created DESC LIMIT -1 OFFSET ?",
                (keep or "", max(room, 0)),
            )
            ids.update(r[0] for r in cur.fetchall())
        ids.discard(keep or "")
        expired = sorted(ids)
        if expired:
            self._conn.executemany("DELETE FROM results WHERE job_id = ?", [(job_id,) for job_id in expired])
            self._conn.executemany(
                "UPDATE jobs SET status = 'expired', error = ? WHERE id = ? AND status = 'done'",
                [(EXPIRED_MESSAGE, job_id) for job_id in expired],
            )
            log.info("retention: %d stored result(s) expired", len(expired))
        return expired

    def _vacuum_if_sparse(self) -> None:
        """Give free pages back to the file system when more than a quarter of the file is free."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if pages and free > _VACUUM_FREE_FRACTION * pages:
            self._conn.executescript("PRAGMA incremental_vacuum;")  # frees one page per step: run it to the end
            log.info("job database %s: vacuumed %d free page(s) of %d", self.path, free, pages)

    def load_result(self, job_id: str, *, store_sig_info: pd.DataFrame) -> QueryResult:
        """Rebuild the :class:`QueryResult` of a finished job."""
        with self._lock:
            row = self._conn.execute(
                "SELECT r.data FROM results r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ? AND j.status = 'done'",
                (job_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"job {job_id} has no result")
        try:
            return QueryResult.from_bytes(row[0], index={"sig": store_sig_info})
        except ValidationError as exc:
            raise StoreError(
                f"job {job_id} was run on a different store than the one served now ({exc}): re-run the query"
            ) from exc


Execute = Callable[[dict[str, Any], Callable[[int, int], None]], QueryResult]


class JobRunner:
    """Runs queued jobs on ``workers`` threads; results go to the :class:`JobDB`.

    ``execute(request, progress)`` runs one job's request and returns its result; ``progress``
    raises :class:`ShutdownRequested` once :meth:`stop` was called, which ends the job early and
    leaves it queued for the next start.
    """

    def __init__(
        self,
        db: JobDB,
        execute: Execute,
        *,
        sig_info: Callable[[], pd.DataFrame],
        workers: int = 1,
        max_retries: int = 2,
        cache_size: int = 8,
        defer_sync_save: bool = True,
    ):
        self.db = db
        self._execute = execute
        self._sig_info = sig_info
        self._workers = workers
        self._max_retries = max_retries
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._cache: OrderedDict[str, QueryResult] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        # deferred saving of synchronous results (see run_now): the job is answered first, its
        # result serialised and stored by one background thread, in submission order
        self._defer_sync_save = defer_sync_save
        self._pending: dict[str, QueryResult] = {}
        self._saver: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> list[str]:
        """Re-queue unfinished jobs of a previous run and start the workers; returns re-queued ids."""
        requeued = []
        for job in self.db.unfinished():
            if job["attempts"] > self._max_retries:
                self.db.set_status(
                    job["id"],
                    "failed",
                    finished=time.time(),
                    error=f"the server stopped while this job ran {job['attempts']} times; giving up (resubmit it)",
                )
                log.warning("job %s interrupted too often; marked failed", job["id"])
                continue
            self.db.set_status(job["id"], "queued", progress=0.0)
            self._queue.put(job["id"])
            requeued.append(job["id"])
        if requeued:
            log.warning("re-queued %d job(s) left unfinished by the previous server: %s", len(requeued), requeued)
        for i in range(self._workers):
            t = threading.Thread(target=self._work, name=f"opencmap-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return requeued

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers; a job still running is left queued (it re-runs on the next start)."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.flush()

    def submit(self, request: dict[str, Any], *, n_queries: int) -> str:
        job_id = self.db.create(request, n_queries=n_queries, mode="batch")
        self._queue.put(job_id)
        return job_id

    # ------------------------------------------------------------------ results
    def result(self, job_id: str) -> QueryResult:
        """The result of a finished job (cached in memory, LRU)."""
        with self._cache_lock:
            res = self._cache.get(job_id) or self._pending.get(job_id)
            if res is not None and job_id in self._cache:
                self._cache.move_to_end(job_id)
            if res is not None:
                return res
        res = self.db.load_result(job_id, store_sig_info=self._sig_info())
        self.remember(job_id, res)
        return res

    def remember(self, job_id: str, result: QueryResult) -> None:
        with self._cache_lock:
            self._cache[job_id] = result
            self._cache.move_to_end(job_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _forget(self, job_ids: list[str]) -> None:
        """Drop results that expired from the memory cache."""
        with self._cache_lock:
            for job_id in job_ids:
                self._cache.pop(job_id, None)

    def run_now(self, request: dict[str, Any], *, n_queries: int) -> tuple[str, QueryResult]:
        """Run a request in the calling thread and store it as a finished job (synchronous queries)."""
        job_id = self.db.create(request, n_queries=n_queries, mode="sync", status="running")
        self.db.set_status(job_id, "running", started=time.time(), attempts=1)
        try:
            result = self._execute(request, lambda done, total: None)
        except BaseException as exc:
            self.db.set_status(job_id, "failed", finished=time.time(), error=str(exc) or type(exc).__name__)
            raise
        if not self._defer_sync_save:
            self._forget(self.db.save_result(job_id, result, store_sig_info=self._sig_info()))
            self.remember(job_id, result)
            return job_id, result
        # Saving the full result costs about as much as a query at 100k signatures: the job is
        # marked done now (retention applied now, so later requests see the same state) and the
        # result is served from memory until the background save has stored it.
        with self._cache_lock:
            self._pending[job_id] = result
            if self._saver is None:
                self._saver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="opencmap-save")
        self._forget(self.db.mark_done(job_id, result.describe()))
        self.remember(job_id, result)
        self._saver.submit(self._save_pending, job_id, result)
        return job_id, result

    def _save_pending(self, job_id: str, result: QueryResult) -> None:
        try:
            # only_if_done: a job expired by retention meanwhile is not stored (nor marked done again)
            self._forget(self.db.save_result(job_id, result, store_sig_info=self._sig_info(), only_if_done=True))
        except Exception:  # noqa: BLE001 - a failed save must not be silent
            log.exception("job %s: saving the result failed", job_id)
            self.db.set_status(job_id, "failed", error="the server could not store this result; resubmit the query")
        finally:
            with self._cache_lock:
                self._pending.pop(job_id, None)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every deferred result is stored."""
        with self._cache_lock:
            saver = self._saver
        if saver is not None:
            saver.submit(lambda: None).result(timeout=timeout)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run_one(job_id)
            except Exception:  # never let a worker thread die
                log.exception("job %s: unexpected error", job_id)

    def _run_one(self, job_id: str) -> None:
        job = self.db.get(job_id)
        if job is None or job["status"] != "queued":
            return
        self.db.set_status(job_id, "running", started=time.time(), attempts=job["attempts"] + 1, error=None)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self._stopping.is_set():
                raise ShutdownRequested(job_id)
            now = time.monotonic()
            if now - last[0] > 0.25 or done >= total:
                last[0] = now
                self.db.set_progress(job_id, 0.99 * done / max(total, 1))

        try:
            result = self._execute(job["request"], progress)
        except ShutdownRequested:
            self.db.set_status(job_id, "queued", progress=0.0, error="interrupted by a server shutdown; will re-run")
            log.warning("job %s interrupted by shutdown; it re-runs on the next start", job_id)
            return
        except OpenCMapError as exc:
            self.db.set_status(job_id, "failed", finished=time.time(), error=str(exc))
            return
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self.db.set_status(job_id, "failed", finished=time.time(), error=f"internal error: {type(exc).__name__}: {exc}")
            return
        self._forget(self.db.save_result(job_id, result, store_sig_info=self._sig_info()))
        self.remember(job_id, result)
