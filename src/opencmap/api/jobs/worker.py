"""Execution of query jobs: worker threads for batches, a separate lane for synchronous queries.

:class:`JobRunner` runs queued jobs on ``workers`` threads, at most as many at once as the
``memory_budget`` allows (each job reserves its estimated memory, see
:meth:`QueryService.estimate_bytes <opencmap.api.execution.QueryService.estimate_bytes>`; a job
larger than the whole budget runs alone). Synchronous queries (:meth:`JobRunner.run_now`) never
enter that queue: they run in the request's thread, at most ``sync_lanes`` at a time, so their
latency does not depend on queued jobs; and running jobs yield to them between signature blocks
(their progress callback waits, up to :data:`YIELD_SECONDS` per block, while a synchronous query
runs), so they share the cores with as little batch work as possible.

Every job ends: an error while running *or while saving* (a full disk, SQLite refusing) ends it
``failed`` with the message. Jobs that were ``queued`` or ``running`` when the server stopped
(cleanly or not) are re-queued on start-up, up to ``max_retries`` times; after that they are
marked ``failed`` with a message saying so. Synchronous queries cut off by a stop are marked
``failed`` and never re-run (no client waits for them any more).

With ``defer_sync_save=True`` (as the server runs it) a synchronous query is answered as soon as
its result is computed: :meth:`JobRunner.run_now` writes only the job folder's small ``.saving``
marker (so a full or unwritable disk still fails the request, 507/503), and one saver
thread stores ``result.bin`` and marks the job ``done`` afterwards, in submission order. Until then
the job's row says ``running`` and its result is served from memory (:meth:`JobRunner.pending`);
:meth:`JobRunner.job` waits for the save, so a client reading the job right after the response sees
it ``done`` (or ``failed`` with the message, if the save failed: a save never leaves a job
``running``). A server killed during the save leaves the row ``running`` and no result file (atomic
writes): the next start marks it ``failed`` (:data:`SYNC_INTERRUPTED`) without re-running it. At
most :data:`MAX_PENDING_SAVES` results wait to be saved; beyond that a synchronous query waits.

Retention (:meth:`JobDB.enforce_retention <opencmap.api.jobs.store.JobDB.enforce_retention>`) also
runs on a timer every ``retention_interval`` seconds, so an idle server drops expired results too.
Finished results are cached in memory up to ``cache_bytes`` (estimated array bytes).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from opencmap.api.jobs.store import CANCELLED_MESSAGE, JobDB, is_disk_full
from opencmap.errors import OpenCMapError, QueryError
from opencmap.query.result import QueryResult

__all__ = ["JobRunner", "MemoryBudget", "ShutdownRequested", "result_nbytes", "SYNC_INTERRUPTED", "MAX_PENDING_SAVES"]

log = logging.getLogger(__name__)

#: longest a batch job waits for running synchronous queries at one signature block
YIELD_SECONDS = 2.0
#: synchronous results held in memory while they wait for the saver thread
MAX_PENDING_SAVES = 4
#: longest :meth:`JobRunner.job` waits for a pending save (then it answers with the row as it is)
SAVE_WAIT_SECONDS = 600.0
#: error of a synchronous query that a server stop cut off
SYNC_INTERRUPTED = "the server stopped while this synchronous query ran; it is not re-run (resubmit it)"


class ShutdownRequested(Exception):
    """Raised inside a running job when the server stops; the job is re-queued."""


Execute = Callable[[dict[str, Any], Callable[[int, int], None]], QueryResult]


def result_nbytes(result: QueryResult) -> int:
    """Estimated memory of a result: its metric arrays and the index tables it owns."""
    total = 0
    for name, lv in result.levels.items():
        total += sum(int(getattr(v, "nbytes", 0)) for v in lv.metrics.values())
        if name != "sig":  # the sig index is the store's sig_info, shared by every result
            total += int(lv.index.memory_usage(index=True, deep=False).sum())
    return total


class MemoryBudget:
    """A counting budget of bytes: :meth:`reserve` waits until ``n`` bytes fit (``n`` larger than
    the whole budget waits until nothing else holds any, then runs alone)."""

    def __init__(self, total: int | None):
        self.total = total
        self.used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, n: int, stopping: threading.Event | None = None) -> Iterator[None]:
        if self.total is None:
            yield
            return
        n = max(0, min(int(n), self.total))
        with self._cond:
            while self.used and self.used + n > self.total:
                if stopping is not None and stopping.is_set():
                    raise ShutdownRequested("stopping")
                self._cond.wait(0.2)
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


class JobRunner:
    """Runs queued jobs on ``workers`` threads; results go to the :class:`JobDB`.

    ``execute(request, progress)`` runs one job's request and returns its result (``execute_batch``,
    if given, runs the queued jobs instead, e.g. on a Dask cluster; ``execute`` the synchronous
    lane); ``progress``
    raises :class:`ShutdownRequested` once :meth:`stop` was called, which ends the job early and
    leaves it queued for the next start. ``estimate(request)`` is a job's memory in bytes (for
    ``memory_budget``; default 0).
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
        cache_bytes: int | None = 512 * 2**20,
        memory_budget: int | None = None,
        estimate: Callable[[dict[str, Any]], int] | None = None,
        sync_lanes: int = 2,
        retention_interval: float | None = 60.0,
        defer_sync_save: bool = False,
        execute_batch: Execute | None = None,
    ):
        self.db = db
        self._execute = execute
        self._execute_batch = execute if execute_batch is None else execute_batch
        self._sig_info = sig_info
        self._workers = workers
        self._max_retries = max_retries
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._cache: OrderedDict[str, tuple[QueryResult, int]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._cache_lock = threading.Lock()
        self.budget = MemoryBudget(memory_budget)
        self._estimate = estimate or (lambda request: 0)
        self._sync = threading.BoundedSemaphore(max(1, sync_lanes))
        self._sync_active = 0
        self._sync_cond = threading.Condition()
        self._retention_interval = retention_interval
        self._cancelled: set[str] = set()
        # synchronous results answered before they are saved (see the module docstring)
        self._defer_sync_save = defer_sync_save
        self._pending: dict[str, tuple[QueryResult, dict[str, Any], threading.Event]] = {}
        self._pending_lock = threading.Lock()
        self._pending_slots = threading.BoundedSemaphore(MAX_PENDING_SAVES)
        self._saver: concurrent.futures.ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> list[str]:
        """Re-queue unfinished jobs of a previous run and start the workers; returns re-queued ids."""
        requeued = []
        for job in self.db.unfinished():
            if job["mode"] == "sync":
                self.db.set_status(job["id"], "failed", finished=time.time(), error=SYNC_INTERRUPTED)
                log.warning("synchronous query %s was cut off by a server stop; marked failed (not re-run)", job["id"])
                continue
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
        if self._retention_interval:
            t = threading.Thread(target=self._retention_loop, name="opencmap-retention", daemon=True)
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
        self.flush(max(0.0, deadline - time.monotonic()) + SAVE_WAIT_SECONDS)  # answered sync results get saved
        with self._pending_lock:
            saver, self._saver = self._saver, None
        if saver is not None:
            saver.shutdown(wait=False)

    def submit(self, request: dict[str, Any], *, n_queries: int) -> str:
        job_id = self.db.create(request, n_queries=n_queries, mode="batch")
        self._queue.put(job_id)
        return job_id

    def cancel(self, job_id: str) -> None:
        """Cancel a queued or running batch job: it ends as ``failed`` with the error "cancelled"."""
        self._cancelled.add(job_id)
        job = self.db.get(job_id)
        if job is not None and job["status"] == "queued":
            self.db.set_status(job_id, "failed", finished=time.time(), error=CANCELLED_MESSAGE)

    def forget(self, job_id: str) -> None:
        """Drop a (deleted) job from the memory cache."""
        self._forget([job_id])
        self._cancelled.discard(job_id)

    def _retention_loop(self) -> None:
        assert self._retention_interval
        while not self._stopping.wait(self._retention_interval):
            try:
                self._forget(self.db.enforce_retention())
            except Exception:  # a full disk or a locked database: try again at the next tick
                log.exception("retention: enforcing the bounds failed; retrying in %g s", self._retention_interval)

    # ------------------------------------------------------------------ results
    def result(self, job_id: str) -> QueryResult:
        """The result of a finished job (cached in memory, LRU, bounded in bytes), or of a
        synchronous query whose save is pending."""
        hit_pending = self.pending(job_id)
        if hit_pending is not None:
            return hit_pending
        with self._cache_lock:
            hit = self._cache.get(job_id)
            if hit is not None:
                self._cache.move_to_end(job_id)
                return hit[0]
        res = self.db.load_result(job_id, store_sig_info=self._sig_info())
        self.remember(job_id, res)
        return res

    def remember(self, job_id: str, result: QueryResult) -> None:
        size = result_nbytes(result)
        if self._cache_bytes is not None and size > self._cache_bytes:
            return  # larger than the whole cache: read from its file each time
        with self._cache_lock:
            old = self._cache.pop(job_id, None)
            if old is not None:
                self._cached_bytes -= old[1]
            self._cache[job_id] = (result, size)
            self._cached_bytes += size
            while len(self._cache) > self._cache_size or (
                self._cache_bytes is not None and self._cached_bytes > self._cache_bytes
            ):
                _, (_, dropped) = self._cache.popitem(last=False)
                self._cached_bytes -= dropped

    def cache_usage(self) -> tuple[int, int]:
        """(results, estimated bytes) held in the memory cache."""
        with self._cache_lock:
            return len(self._cache), self._cached_bytes

    def _forget(self, job_ids: list[str]) -> None:
        """Drop results that expired from the memory cache."""
        with self._cache_lock:
            for job_id in job_ids:
                hit = self._cache.pop(job_id, None)
                if hit is not None:
                    self._cached_bytes -= hit[1]

    def run_now(self, request: dict[str, Any], *, n_queries: int) -> tuple[str, QueryResult]:
        """Run a request in the calling thread (the synchronous lane) and store it as a finished job.

        Any error, including saving the result, marks the job ``failed`` and is re-raised.
        """
        job_id = self.db.create(request, n_queries=n_queries, mode="sync", status="running")
        self.db.set_status(job_id, "running", started=time.time(), attempts=1)
        with self._sync_cond:
            self._sync_active += 1
        try:
            with self._sync:
                result = self._execute(request, lambda done, total: None)
            if self._defer_sync_save:
                self._defer_save(job_id, result)
                return job_id, result
            self._forget(self.db.save_result(job_id, result, store_sig_info=self._sig_info()))
        except BaseException as exc:
            self._fail(job_id, exc)
            raise
        finally:
            with self._sync_cond:
                self._sync_active -= 1
                self._sync_cond.notify_all()
        self.remember(job_id, result)
        return job_id, result

    # ------------------------------------------------------------------ deferred saves (sync lane)
    def _defer_save(self, job_id: str, result: QueryResult) -> None:
        """Write the job folder's marker now (a full disk fails the request) and queue the
        result's save; the result is served from memory meanwhile."""
        info = result.describe()
        self.db.prepare_result(job_id, info)
        self._pending_slots.acquire()  # back-pressure: at most MAX_PENDING_SAVES results in memory
        try:
            with self._pending_lock:
                self._pending[job_id] = (result, info, threading.Event())
                if self._saver is None:
                    self._saver = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="opencmap-save")
                self._saver.submit(self._save_pending, job_id, result, info)
        except BaseException:
            with self._pending_lock:
                self._pending.pop(job_id, None)
            self._pending_slots.release()
            shutil.rmtree(self.db.job_dir(job_id), ignore_errors=True)
            raise

    def _save_pending(self, job_id: str, result: QueryResult, info: dict[str, Any]) -> None:
        try:
            self._forget(self.db.save_result(job_id, result, store_sig_info=self._sig_info(), info=info, prepared=True))
            self.remember(job_id, result)
        except BaseException as exc:  # never silent: the job ends failed with the message
            log.exception("job %s: saving the synchronous result failed", job_id)
            shutil.rmtree(self.db.job_dir(job_id), ignore_errors=True)  # its marker, any partial file
            self._fail(job_id, exc)
            self._forget([job_id])
        finally:
            with self._pending_lock:
                _, _, saved = self._pending.pop(job_id, (None, None, None))
            self._pending_slots.release()
            if saved is not None:
                saved.set()

    def pending(self, job_id: str) -> QueryResult | None:
        """The result of a synchronous query answered but not saved yet (else None)."""
        with self._pending_lock:
            hit = self._pending.get(job_id)
        return None if hit is None else hit[0]

    def job(self, job_id: str, *, timeout: float = SAVE_WAIT_SECONDS) -> dict[str, Any] | None:
        """The job's row, once a pending save of its result has finished (``done`` or ``failed``)."""
        with self._pending_lock:
            hit = self._pending.get(job_id)
        if hit is not None:
            hit[2].wait(timeout)
        return self.db.get(job_id)

    def answered(self, job_id: str) -> dict[str, Any] | None:
        """The row a synchronous query is answered with: ``done`` with the result's ``describe()``
        even while its save is pending (its result is served from memory until then); the saver
        updates the row before it drops the pending entry, so a row read after that is final."""
        with self._pending_lock:
            hit = self._pending.get(job_id)
        job = self.db.get(job_id)
        if job is not None and hit is not None and job["status"] == "running":
            job.update(status="done", progress=1.0, finished=time.time(), info=hit[1], error=None)
        return job

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every pending save has finished; False if ``timeout`` passed first."""
        with self._pending_lock:
            events = [e for _, _, e in self._pending.values()]
        deadline = None if timeout is None else time.monotonic() + timeout
        return all(e.wait(None if deadline is None else max(0.0, deadline - time.monotonic())) for e in events)

    def _fail(self, job_id: str, exc: BaseException) -> None:
        """Mark a job failed with the message of ``exc`` (logged if even that cannot be stored)."""
        if isinstance(exc, OpenCMapError):
            message = str(exc)
        elif is_disk_full(exc):
            message = f"the server's disk is full; the result could not be saved ({exc}); free space and resubmit"
        elif isinstance(exc, OSError):
            message = f"the server could not write the result ({exc}); resubmit later"
        else:
            message = f"internal error: {type(exc).__name__}: {exc}" if str(exc) else f"internal error: {type(exc).__name__}"
        try:
            self.db.set_status(job_id, "failed", finished=time.time(), error=message)
        except Exception:
            log.exception("job %s: could not even record its failure (%s)", job_id, message)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run_one(job_id)
            except Exception as exc:  # never let a worker thread die; the job still ends
                log.exception("job %s: unexpected error", job_id)
                self._fail(job_id, exc)

    def _run_one(self, job_id: str) -> None:
        job = self.db.get(job_id)
        if job is None or job["status"] != "queued":
            return
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if self._stopping.is_set():
                raise ShutdownRequested(job_id)
            if job_id in self._cancelled:  # reported by the OpenCMapError branch: status failed
                raise QueryError(CANCELLED_MESSAGE)
            with self._sync_cond:  # yield to synchronous queries (bounded, so a job never starves)
                self._sync_cond.wait_for(lambda: self._sync_active == 0 or self._stopping.is_set(), timeout=YIELD_SECONDS)
            now = time.monotonic()
            if now - last[0] > 0.25 or done >= total:
                last[0] = now
                self.db.set_progress(job_id, 0.99 * done / max(total, 1))

        try:
            need = int(self._estimate(job["request"]))
        except Exception:  # an invalid request fails in execute, with its message
            need = 0
        try:
            with self.budget.reserve(need, self._stopping):
                self.db.set_status(job_id, "running", started=time.time(), attempts=job["attempts"] + 1, error=None)
                result = self._execute_batch(job["request"], progress)
                self._forget(self.db.save_result(job_id, result, store_sig_info=self._sig_info()))
        except ShutdownRequested:
            self.db.set_status(job_id, "queued", progress=0.0, error="interrupted by a server shutdown; will re-run")
            log.warning("job %s interrupted by shutdown; it re-runs on the next start", job_id)
            return
        except OpenCMapError as exc:
            self._fail(job_id, exc)
            return
        except Exception as exc:
            log.exception("job %s failed", job_id)
            self._fail(job_id, exc)
            return
        self.remember(job_id, result)
