"""Query jobs: SQLite persistence of jobs and their results, and the thread pool that runs them.

A job is a batch of queries submitted through the API. Its row in the ``jobs`` table holds the
request, status (``queued`` -> ``running`` -> ``done`` | ``failed``), progress, and timestamps;
its result is stored in the same database (``result_levels`` / ``result_metrics``: each level's
index table as Parquet and each metric matrix as ``.npy`` bytes), so a restarted server loses
nothing and can rebuild the library's :class:`~opencmap.query.result.QueryResult` exactly.

Jobs that were ``queued`` or ``running`` when the server stopped (cleanly or not) are re-queued
on start-up, up to ``max_retries`` times; after that they are marked ``failed`` with a message
saying so - never silently lost.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import OpenCMapError, StoreError
from opencmap.query.result import LevelResult, QueryResult

__all__ = ["JobDB", "JobRunner", "StoredQuery", "JOB_STATES", "ShutdownRequested"]

log = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "done", "failed")

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
CREATE TABLE IF NOT EXISTS result_levels (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    level TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    index_parquet BLOB,
    PRIMARY KEY (job_id, level)
);
CREATE TABLE IF NOT EXISTS result_metrics (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    level TEXT NOT NULL,
    metric TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, level, metric)
);
"""
DB_FORMAT_VERSION = 1


class ShutdownRequested(Exception):
    """Raised inside a running job when the server stops; the job is re-queued."""


@dataclass(frozen=True)
class StoredQuery:
    """A validated query as kept with a job result (what :class:`QueryResult` needs of it)."""

    name: str
    up_genes: tuple[str, ...] = ()
    down_genes: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    suggestions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "query": self.name,
            "n_up": len(self.up_genes),
            "n_down": len(self.down_genes),
            "unknown": ",".join(self.unknown),
            "dropped": ",".join(self.dropped),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "up_genes": list(self.up_genes),
            "down_genes": list(self.down_genes),
            "unknown": list(self.unknown),
            "dropped": list(self.dropped),
            "suggestions": {k: list(v) for k, v in self.suggestions.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StoredQuery:
        return cls(
            name=d["name"],
            up_genes=tuple(d.get("up_genes", ())),
            down_genes=tuple(d.get("down_genes", ())),
            unknown=tuple(d.get("unknown", ())),
            dropped=tuple(d.get("dropped", ())),
            suggestions={k: tuple(v) for k, v in d.get("suggestions", {}).items()},
        )

    @classmethod
    def from_validated(cls, q: Any) -> StoredQuery:
        return cls(
            name=q.name,
            up_genes=tuple(q.up_genes),
            down_genes=tuple(q.down_genes),
            unknown=tuple(q.unknown),
            dropped=tuple(q.dropped),
            suggestions={k: tuple(v) for k, v in dict(q.suggestions).items()},
        )


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


class JobDB:
    """Jobs and results in one SQLite file (WAL mode; safe to use from several threads)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
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
    def save_result(self, job_id: str, result: QueryResult, *, store_sig_info: pd.DataFrame) -> None:
        """Store every level of ``result`` (the ``sig`` index is the store's, so it is not copied)."""
        levels: list[tuple[Any, ...]] = []
        metrics: list[tuple[Any, ...]] = []
        for name, lv in result.levels.items():
            same_index = name == "sig" and len(lv.index) == len(store_sig_info)
            blob = None if same_index else _parquet_bytes(lv.index.reset_index(drop=True))
            levels.append((job_id, name, len(lv.index), blob))
            for metric, values in lv.metrics.items():
                metrics.append((job_id, name, metric, _npy_bytes(np.asarray(values))))
        info = {
            "method": result.method,
            "space": result.space,
            "params": dict(result.params),
            "notes": list(result.notes),
            "queries": [StoredQuery.from_validated(q).to_json() for q in result.queries],
            "levels": list(result.levels),
            "metrics": {name: list(lv.metrics) for name, lv in result.levels.items()},
        }
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.execute("DELETE FROM result_levels WHERE job_id = ?", (job_id,))
                self._conn.execute("DELETE FROM result_metrics WHERE job_id = ?", (job_id,))
                self._conn.executemany("INSERT INTO result_levels VALUES (?, ?, ?, ?)", levels)
                self._conn.executemany("INSERT INTO result_metrics VALUES (?, ?, ?, ?)", metrics)
                self._conn.execute(
                    "UPDATE jobs SET status = 'done', progress = 1, finished = ?, info = ?, error = NULL WHERE id = ?",
                    (time.time(), json.dumps(info), job_id),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def load_result(self, job_id: str, *, store_sig_info: pd.DataFrame) -> QueryResult:
        """Rebuild the :class:`QueryResult` of a finished job."""
        job = self.get(job_id)
        if job is None or job["status"] != "done" or not job["info"]:
            raise StoreError(f"job {job_id} has no result")
        info = job["info"]
        with self._lock:
            lv_rows = self._conn.execute(
                "SELECT level, n_rows, index_parquet FROM result_levels WHERE job_id = ?", (job_id,)
            ).fetchall()
            m_rows = self._conn.execute(
                "SELECT level, metric, data FROM result_metrics WHERE job_id = ?", (job_id,)
            ).fetchall()
        metrics: dict[str, dict[str, np.ndarray]] = {}
        for level, metric, data in m_rows:
            metrics.setdefault(level, {})[metric] = np.load(io.BytesIO(data), allow_pickle=False)
        levels: dict[str, LevelResult] = {}
        by_name = {r[0]: r for r in lv_rows}
        for name in info["levels"]:
            _, n_rows, blob = by_name[name]
            if blob is None:
                if len(store_sig_info) != n_rows:
                    raise StoreError(
                        f"job {job_id} was run on a store with {n_rows} signatures; the store served now has "
                        f"{len(store_sig_info)}: re-run the query"
                    )
                index = store_sig_info
            else:
                index = pd.read_parquet(io.BytesIO(blob))
            stored = metrics.get(name, {})
            order = info.get("metrics", {}).get(name, list(stored))
            levels[name] = LevelResult(name, index, {m: stored[m] for m in order})
        return QueryResult(
            queries=[StoredQuery.from_json(q) for q in info["queries"]],
            levels=levels,
            method=info["method"],
            space=info["space"],
            params=info["params"],
            notes=info["notes"],
        )


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

    def submit(self, request: dict[str, Any], *, n_queries: int) -> str:
        job_id = self.db.create(request, n_queries=n_queries, mode="batch")
        self._queue.put(job_id)
        return job_id

    # ------------------------------------------------------------------ results
    def result(self, job_id: str) -> QueryResult:
        """The result of a finished job (cached in memory, LRU)."""
        with self._cache_lock:
            res = self._cache.get(job_id)
            if res is not None:
                self._cache.move_to_end(job_id)
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

    def run_now(self, request: dict[str, Any], *, n_queries: int) -> tuple[str, QueryResult]:
        """Run a request in the calling thread and store it as a finished job (synchronous queries)."""
        job_id = self.db.create(request, n_queries=n_queries, mode="sync", status="running")
        self.db.set_status(job_id, "running", started=time.time(), attempts=1)
        try:
            result = self._execute(request, lambda done, total: None)
        except BaseException as exc:
            self.db.set_status(job_id, "failed", finished=time.time(), error=str(exc) or type(exc).__name__)
            raise
        self.db.save_result(job_id, result, store_sig_info=self._sig_info())
        self.remember(job_id, result)
        return job_id, result

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
        self.db.save_result(job_id, result, store_sig_info=self._sig_info())
        self.remember(job_id, result)
