"""Persistence of query jobs: one SQLite file of job rows, and each job's result as a file.

A job's row in the ``jobs`` table holds the request, status (``queued`` -> ``running`` -> ``done``
| ``failed``; ``done`` -> ``expired``), progress and timestamps. Its result (the bytes of the
library's :meth:`QueryResult.to_bytes <opencmap.query.result.QueryResult.to_bytes>`, without the
``sig`` index, which is the store's ``sig_info``) is a file in the job's own folder beside the
database (``<db stem>-results/<job id>/result.bin``), so its size is bounded by the disk, not by
SQLite's largest blob. The file is written aside (``.result.bin.tmp-*``), flushed to disk and
renamed into place before the row says ``done``; a crash in between leaves a folder without a
``done`` row, which the next start removes (one log line). The ``results`` table keeps one row per
stored result (``job_id``, ``nbytes``); databases of format 3 kept the bytes in its ``data`` column:
those old results are still read from there (not migrated; they expire like the others).

Retention (:meth:`JobDB.enforce_retention`, run at start-up, after each save and on the runner's
timer): finished results beyond ``max_results`` (count), ``max_result_bytes`` (bytes of the
result files) or older than ``result_ttl`` seconds expire oldest first: their files are deleted
and their rows say ``expired`` (HTTP 410, resubmit). Rows of jobs that expired more than
``expired_row_grace`` seconds ago (default 24 hours; 0: at once) or failed more than
``result_ttl`` ago are deleted, and the oldest beyond ``max_rows`` finished rows, so the database
stays bounded too. A row deleted by retention leaves a tombstone (its id as 16 bytes and the
time, in ``tombstones``; kept ``tombstone_ttl`` seconds, default 30 days, the newest ``max_rows``
at most) so a client polling it
learns it is gone (:meth:`JobDB.deleted`: HTTP 410), not that it never existed (404); a job its
user deleted leaves none. Queued and running jobs are never touched. Free pages go back to the
file system (incremental vacuum) when more than a quarter of the file is free.

Rows are stored compactly: since format 5 a job's ``request`` and ``info`` are zlib-compressed
JSON (a request of 100 + 100 gene ids shrinks ~4x); rows of older databases are rewritten so at
their first opening (then one ``VACUUM`` gives the space back).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from opencmap.errors import StoreError, ValidationError
from opencmap.io.versions import check_format_version
from opencmap.query.result import QueryResult

__all__ = [
    "JobDB", "JobState", "JOB_STATES", "EXPIRED_MESSAGE", "CANCELLED_MESSAGE", "DB_FORMAT_VERSION", "RESULT_FILE", "SAVING_FILE",
]  # fmt: skip

log = logging.getLogger(__name__)

#: the status of a job (see the module docstring for the transitions)
JobState = Literal["queued", "running", "done", "failed", "expired"]
JOB_STATES: tuple[str, ...] = get_args(JobState)

#: error message of a job whose result was deleted by the retention policy
EXPIRED_MESSAGE = "the result of this job was deleted by the server's retention policy (expired); resubmit the query"
#: error message of a job cancelled by its user
CANCELLED_MESSAGE = "cancelled by the user"
#: vacuum once more than this fraction of the database pages is free
_VACUUM_FREE_FRACTION = 0.25
#: name of a job's result file inside its folder
RESULT_FILE = "result.bin"
#: marker of a result being saved (written by :meth:`JobDB.prepare_result`, removed once saved)
SAVING_FILE = ".saving"

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
CREATE TABLE IF NOT EXISTS tombstones (id BLOB PRIMARY KEY, deleted REAL NOT NULL) WITHOUT ROWID;
"""
# 3: status 'expired'; 4: results as files (results.data empty, results.nbytes their size);
# 5: jobs.request and jobs.info zlib-compressed JSON (BLOB), tombstones of rows deleted by retention
DB_FORMAT_VERSION = 5
#: seconds an expired job's row is kept (then deleted, leaving a tombstone), by default
EXPIRED_ROW_GRACE = 24 * 3600.0
#: seconds a tombstone of a deleted job row is kept, by default
TOMBSTONE_TTL = 30 * 86400.0


def _pack(value: Any) -> bytes:
    """A JSON value as stored in a job row since format 5 (zlib-compressed JSON)."""
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 6)


def _unpack(stored: bytes | str | None) -> Any:
    """A JSON value of a job row: compressed (format 5) or JSON text (older rows)."""
    if stored is None or stored == "" or stored == b"":
        return None
    if isinstance(stored, bytes):
        stored = zlib.decompress(stored).decode()
    return json.loads(stored)


def _tomb_id(job_id: str) -> bytes | str:
    """A job id as kept in a tombstone: 16 bytes for the server's hex ids, the text otherwise."""
    try:
        return bytes.fromhex(job_id) if len(job_id) == 32 else job_id
    except ValueError:
        return job_id


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened/synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` aside, flush it to disk and rename it into place.

    On any error (a full disk: ``ENOSPC``) the partial file is removed and the error re-raised;
    ``path`` is then either absent or a previous complete file, never half written. ``sync=False``
    skips the two fsyncs (a marker whose loss in a power cut does not matter; they cost ~40 ms).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync:
        _fsync_dir(path.parent)


class JobDB:
    """Jobs in one SQLite file (WAL mode; safe to use from several threads), results as files.

    ``max_results`` (number of stored results), ``max_result_bytes`` (their total size),
    ``result_ttl`` (seconds since a job finished) bound the stored results and ``max_rows`` the
    finished job rows; ``None`` means no bound (see the module docstring). ``expired_row_grace``:
    seconds an expired job's row is kept (``0``: deleted at once; ``None``: kept until
    ``max_rows``); ``tombstone_ttl``: seconds the tombstone of a deleted row is kept (``None``:
    always). ``results_dir`` is where the job folders go (default: ``<db stem>-results`` beside
    the database).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_results: int | None = None,
        result_ttl: float | None = None,
        max_result_bytes: int | None = None,
        max_rows: int | None = None,
        results_dir: str | Path | None = None,
        expired_row_grace: float | None = EXPIRED_ROW_GRACE,
        tombstone_ttl: float | None = TOMBSTONE_TTL,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.results_dir = Path(results_dir) if results_dir is not None else self.path.with_name(f"{self.path.stem}-results")
        self.max_results = max_results
        self.result_ttl = result_ttl
        self.max_result_bytes = max_result_bytes
        self.max_rows = max_rows
        self.expired_row_grace = expired_row_grace
        self.tombstone_ttl = tombstone_ttl
        self._tombs_due: float | None = None  # when the oldest tombstone is due to go (read on first use)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file (else at VACUUM)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a killed server loses nothing committed; a power cut may lose the last
            # commits (never corrupts): a job then re-runs, a result file without its row is swept
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"job database {self.path} is unusable ({exc}); move it away or set OPENCMAP_DB_PATH") from exc
        rewritten = self._migrate()
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        self.enforce_retention()
        if self._conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # a file made before auto_vacuum was set
            log.info("converting job database %s to incremental vacuum (one full VACUUM)", self.path)
            self._conn.execute("VACUUM")
        elif rewritten:  # rows rewritten compactly: give the space they took back at once
            self._conn.execute("VACUUM")

    def _migrate(self) -> int:
        """Bring an older database to :data:`DB_FORMAT_VERSION`; returns the job rows rewritten."""
        row = self._conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
        if row is None:
            self._conn.execute("INSERT INTO meta VALUES ('format_version', ?)", (str(DB_FORMAT_VERSION),))
        elif check_format_version(
            row[0], DB_FORMAT_VERSION, what="job database", path=self.path,
            fix="upgrade opencmap or use another OPENCMAP_DB_PATH", also=StoreError,
        ) < 2:  # fmt: skip  # version 1 kept results in per-level tables: not read any more
            self._conn.execute(
                "UPDATE jobs SET status = 'failed', error = ? WHERE status = 'done'",
                ("this result was stored by an older opencmap and cannot be read; resubmit the job",),
            )
            self._conn.executescript("DROP TABLE IF EXISTS result_levels; DROP TABLE IF EXISTS result_metrics;")
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(results)")}
        if "nbytes" not in columns:  # formats <= 3: the blob is the result; its size counts for retention
            self._conn.executescript(
                "ALTER TABLE results ADD COLUMN nbytes INTEGER NOT NULL DEFAULT 0;"
                "UPDATE results SET nbytes = length(data);"
            )
        if "expired_at" not in {r[1] for r in self._conn.execute("PRAGMA table_info(jobs)")}:
            self._conn.execute("ALTER TABLE jobs ADD COLUMN expired_at REAL")  # when the result expired
        rewritten = 0
        if row is not None and int(row[0]) < DB_FORMAT_VERSION:
            with self._transaction():  # formats <= 4: request and info as JSON text -> compressed
                texts = self._conn.execute(
                    "SELECT id, request, info FROM jobs WHERE typeof(request) = 'text' OR typeof(info) = 'text'"
                ).fetchall()
                self._conn.executemany(
                    "UPDATE jobs SET request = ?, info = ? WHERE id = ?",
                    [(_pack(_unpack(req)), None if not info else _pack(_unpack(info)), job_id) for job_id, req, info in texts],
                )
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(DB_FORMAT_VERSION),))
            rewritten = len(texts)
            if rewritten:
                log.info("job database %s: %d job row(s) rewritten compactly (format %s -> %d)", self.path, rewritten, row[0], DB_FORMAT_VERSION)
        return rewritten

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
                (job_id, status, mode, time.time(), n_queries, _pack(request)),
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
        d["request"] = _unpack(d["request"])
        d["info"] = _unpack(d.get("info"))
        return d

    def deleted(self, job_id: str) -> bool:
        """True when the job's row was deleted by the retention policy (a tombstone is kept):
        the job existed and is gone (HTTP 410), unlike an id never seen or deleted by its user."""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM tombstones WHERE id = ?", (_tomb_id(job_id),)).fetchone() is not None

    def set_status(self, job_id: str, status: str, **fields: Any) -> None:
        sets = ["status = ?"]
        args: list[Any] = [status]
        for key, value in fields.items():
            if key not in ("started", "finished", "progress", "error", "attempts", "info"):
                raise KeyError(key)
            sets.append(f"{key} = ?")
            args.append(_pack(value) if key == "info" else value)
        with self._lock:
            self._conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [*args, job_id])

    def set_progress(self, job_id: str, progress: float) -> None:
        with self._lock:
            self._conn.execute("UPDATE jobs SET progress = ? WHERE id = ?", (float(progress), job_id))

    def delete(self, job_id: str) -> bool:
        """Remove a job, its stored result and its result folder; False if there was no such job."""
        with self._lock:
            with self._transaction():
                self._conn.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
                cur = self._conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return cur.rowcount > 0

    def unfinished(self) -> list[dict[str, Any]]:
        """Jobs left queued or running (by a previous server), oldest first."""
        with self._lock:
            cur = self._conn.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created")
            cols = [c[0] for c in cur.description]
            return [self._row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    # ------------------------------------------------------------------ results
    def job_dir(self, job_id: str) -> Path:
        """The folder of a job's files."""
        return self.results_dir / job_id

    def prepare_result(self, job_id: str, info: dict[str, Any]) -> None:
        """Create the job's folder with a small :data:`SAVING_FILE` marker (``info``: the result's
        :meth:`~opencmap.query.result.QueryResult.describe`), written atomically: it fails as the
        result file would on a full disk or an unwritable folder, so a caller can report that
        before the result itself is saved (later, by :meth:`save_result` with ``prepared=True``,
        which removes the marker). On error no folder is left behind and the error is re-raised.
        A marker left by a crash goes with its folder at the next start (no result row)."""
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(folder / SAVING_FILE, json.dumps(info).encode(), sync=False)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def save_result(
        self, job_id: str, result: QueryResult, *, store_sig_info: pd.DataFrame, info: dict[str, Any] | None = None,
        prepared: bool = False,
    ) -> list[str]:  # fmt: skip
        """Write ``result`` to the job's folder (the ``sig`` index is the store's, so it is not
        copied) and mark the job done; returns the ids of the jobs whose results expired.
        ``info``: ``result.describe()`` if already computed; ``prepared``: :meth:`prepare_result`
        made the folder (its marker is removed once the result is stored).

        Any error (a full disk, an unwritable folder) leaves the job as it was and no file behind.
        """
        sig = result.levels.get("sig")
        omit = ("sig",) if sig is not None and len(sig.index) == len(store_sig_info) else ()
        data = result.to_bytes(omit_index=omit)
        info = result.describe() if info is None else info
        folder = self.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(folder / RESULT_FILE, data)
            with self._transaction():
                self._conn.execute("INSERT OR REPLACE INTO results (job_id, data, nbytes) VALUES (?, x'', ?)", (job_id, len(data)))
                self._conn.execute(
                    "UPDATE jobs SET status = 'done', progress = 1, finished = ?, info = ?, error = NULL WHERE id = ?",
                    (time.time(), _pack(info), job_id),
                )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if prepared:
            with contextlib.suppress(OSError):  # a marker left behind is swept at the next start
                (folder / SAVING_FILE).unlink(missing_ok=True)
        return self.enforce_retention(keep=job_id)

    def load_result(self, job_id: str, *, store_sig_info: pd.DataFrame) -> QueryResult:
        """Rebuild the :class:`QueryResult` of a finished job."""
        with self._lock:
            row = self._conn.execute(
                "SELECT r.data FROM results r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ? AND j.status = 'done'",
                (job_id,),
            ).fetchone()
        if row is None:
            raise StoreError(f"job {job_id} has no result")
        data = row[0]
        if not data:  # format 4: the result is a file
            try:
                data = (self.job_dir(job_id) / RESULT_FILE).read_bytes()
            except FileNotFoundError as exc:
                raise StoreError(f"the result file of job {job_id} is missing (deleted outside the server?); resubmit the query") from exc
        try:
            return QueryResult.from_bytes(data, index={"sig": store_sig_info})
        except ValidationError as exc:
            raise StoreError(
                f"job {job_id} was run on a different store than the one served now ({exc}): re-run the query"
            ) from exc

    # ------------------------------------------------------------------ retention
    def stored_bytes(self) -> int:
        """Total size of the stored results (bytes)."""
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(SUM(nbytes), 0) FROM results").fetchone()[0])

    def enforce_retention(self, *, keep: str | None = None) -> list[str]:
        """Expire results and delete rows beyond the bounds (see the module docstring); returns the
        ids of the jobs whose results expired or whose rows were deleted. ``keep`` (a result just
        saved) is never expired. Only reads when nothing is beyond the bounds (the common case)."""
        with self._lock:
            expired, deleted = self._expired_ids(keep), self._old_row_ids()
            deleted = [j for j in deleted if j not in expired]
            if self.expired_row_grace == 0:  # no grace: an expiring result takes its row with it
                deleted += expired
            now = time.time()
            if self._tombs_due is None and self.tombstone_ttl is not None:  # first call: when the oldest tombstone goes
                oldest = self._conn.execute("SELECT MIN(deleted) FROM tombstones").fetchone()[0]
                self._tombs_due = math.inf if oldest is None else oldest + self.tombstone_ttl
            old_tombs = self._tombs_due is not None and now >= self._tombs_due
            if not expired and not deleted and not old_tombs:
                return []
            with self._transaction():
                if expired:
                    self._conn.executemany("DELETE FROM results WHERE job_id = ?", [(j,) for j in expired])
                    self._conn.executemany(
                        "UPDATE jobs SET status = 'expired', error = ?, expired_at = ? WHERE id = ? AND status = 'done'",
                        [(EXPIRED_MESSAGE, time.time(), j) for j in expired],
                    )
                    log.info("retention: %d stored result(s) expired", len(expired))
                if deleted:
                    self._conn.executemany("DELETE FROM results WHERE job_id = ?", [(j,) for j in deleted])
                    gone = []
                    for j in deleted:
                        cur = self._conn.execute("DELETE FROM jobs WHERE id = ? AND status IN ('done', 'failed', 'expired')", (j,))
                        if cur.rowcount:
                            gone.append((_tomb_id(j), now))
                    self._conn.executemany("INSERT OR REPLACE INTO tombstones (id, deleted) VALUES (?, ?)", gone)
                    log.info("retention: %d old job row(s) deleted", len(gone))
                    self._trim_tombstones()
                if old_tombs and self.tombstone_ttl is not None:
                    self._conn.execute("DELETE FROM tombstones WHERE deleted < ?", (now - self.tombstone_ttl,))
                    oldest = self._conn.execute("SELECT MIN(deleted) FROM tombstones").fetchone()[0]
                    self._tombs_due = math.inf if oldest is None else oldest + self.tombstone_ttl
                elif deleted and self.tombstone_ttl is not None and self._tombs_due is not None:
                    self._tombs_due = min(self._tombs_due, now + self.tombstone_ttl)
        for job_id in dict.fromkeys(expired + deleted):  # after the commit: a crash in between leaves only folders to sweep
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        with self._lock:
            self._vacuum_if_sparse()
        return list(dict.fromkeys(expired + deleted))

    def _trim_tombstones(self) -> None:
        """Keep the newest ``max_rows`` tombstones (trimmed once a quarter more have gathered, so
        not on every save): the database holds at most ``max_rows`` finished rows and as many
        tombstones."""
        if self.max_rows is None:
            return
        (n,) = self._conn.execute("SELECT COUNT(*) FROM tombstones").fetchone()
        if n > self.max_rows + max(self.max_rows // 4, 1):
            self._conn.execute(
                "DELETE FROM tombstones WHERE id IN (SELECT id FROM tombstones ORDER BY deleted DESC LIMIT -1 OFFSET ?)",
                (self.max_rows,),
            )

    def _expired_ids(self, keep: str | None) -> list[str]:
        """Finished results beyond the count, byte or age bound (oldest first to go)."""
        ids: set[str] = set()
        if self.result_ttl is not None:
            cutoff = time.time() - self.result_ttl
            cur = self._conn.execute("SELECT id FROM jobs WHERE status = 'done' AND finished < ?", (cutoff,))
            ids.update(r[0] for r in cur.fetchall())
        if self.max_results is not None:
            cur = self._conn.execute(
                "SELECT id FROM jobs WHERE status = 'done' ORDER BY id = ? DESC, finished DESC, created DESC LIMIT -1 OFFSET ?",
                (keep or "", self.max_results),
            )
            ids.update(r[0] for r in cur.fetchall())
        if self.max_result_bytes is not None:
            (total,) = self._conn.execute(
                "SELECT COALESCE(SUM(r.nbytes), 0) FROM results r JOIN jobs j ON j.id = r.job_id WHERE j.status = 'done'"
            ).fetchone()
            if total > self.max_result_bytes:
                cur = self._conn.execute(
                    "SELECT j.id, r.nbytes FROM jobs j JOIN results r ON r.job_id = j.id WHERE j.status = 'done' "
                    "ORDER BY j.id = ? DESC, j.finished DESC, j.created DESC",
                    (keep or "",),
                )
                running = 0
                for job_id, nbytes in cur.fetchall():
                    running += int(nbytes)
                    if running > self.max_result_bytes and job_id != keep:
                        ids.add(job_id)
        ids.discard(keep or "")
        return sorted(ids)

    def _old_row_ids(self) -> list[str]:
        """Rows of jobs failed longer than the TTL ago, or expired longer than the grace ago, and
        finished rows beyond ``max_rows`` (failed and expired first)."""
        ids: set[str] = set()
        now = time.time()
        if self.result_ttl is not None:
            cur = self._conn.execute(
                "SELECT id FROM jobs WHERE status = 'failed' AND COALESCE(finished, created) < ?", (now - self.result_ttl,)
            )
            ids.update(r[0] for r in cur.fetchall())
        if self.expired_row_grace is not None:
            cur = self._conn.execute(
                "SELECT id FROM jobs WHERE status = 'expired' AND COALESCE(expired_at, finished, created) <= ?",
                (now - self.expired_row_grace,),
            )
            ids.update(r[0] for r in cur.fetchall())
        if self.max_rows is not None:
            cur = self._conn.execute(
                "SELECT id FROM jobs WHERE status IN ('done', 'failed', 'expired') "
                "ORDER BY status = 'done' DESC, COALESCE(finished, created) DESC LIMIT -1 OFFSET ?",
                (self.max_rows,),
            )
            ids.update(r[0] for r in cur.fetchall())
        return sorted(ids)

    def _vacuum_if_sparse(self) -> None:
        """Give free pages back to the file system when more than a quarter of the file is free."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if pages and free > _VACUUM_FREE_FRACTION * pages:
            self._conn.executescript("PRAGMA incremental_vacuum;")  # frees one page per step: run it to the end
            log.info("job database %s: vacuumed %d free page(s) of %d", self.path, free, pages)

    def _remove_leftovers(self) -> None:
        """Remove job folders without a stored result and partial files (a crash while saving or
        expiring); one log line when there were any."""
        with self._lock:
            stored = {r[0] for r in self._conn.execute("SELECT job_id FROM results WHERE length(data) = 0")}
        removed = 0
        for entry in self.results_dir.iterdir():
            if entry.is_dir() and entry.name not in stored:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            elif entry.is_dir():
                for tmp in [*entry.glob(f".{RESULT_FILE}.tmp-*"), *entry.glob(SAVING_FILE)]:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                        removed += 1
        if removed:
            log.warning("job results: removed %d leftover folder(s)/partial file(s) of interrupted saves in %s", removed, self.results_dir)

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk: the database (with its WAL) and the results folder."""
        db = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        res = sum(p.stat().st_size for p in self.results_dir.rglob("*") if p.is_file())
        return {"database_bytes": db, "results_bytes": res}


def is_disk_full(exc: BaseException) -> bool:
    """True for a full disk (``ENOSPC``/``EDQUOT``, or SQLite's "database or disk is full")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)
