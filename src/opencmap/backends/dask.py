"""The Dask backend: a store scan's tasks run on the workers of a ``dask.distributed`` cluster.

Optional (``pip install 'opencmap[dask]'``); ``dask.distributed`` is imported only when a
:class:`DaskBackend` is made. Choose it with a :class:`distributed.Client` or a scheduler address::

    from opencmap.backends import DaskBackend, Settings
    from opencmap.query import run_query

    backend = DaskBackend.from_scheduler("tcp://10.0.0.5:8786")   # or DaskBackend(client)
    result = run_query("/shared/store", up=..., down=..., backend=backend)

What runs where
---------------
:meth:`DaskBackend.map_blocks` sends each :class:`~opencmap.backends.BlockTask` to the cluster:
the kernel (a module-level function, pickled by reference: every worker has opencmap installed)
and the task's bounds go in the task; parameters that tasks share (query rows, options, the
:class:`~opencmap.backends.Settings`) go to the cluster **once**, as one small task whose result
every block task depends on. Unlike scattered data, that result is recomputed from the
scheduler's copy if the worker holding it dies, so a killed worker never fails the job. Every
task is retried (``retries``, default 3) when it raises, and the scheduler re-runs the tasks of a
worker that died; a task that still fails raises (its own error, or
:class:`~opencmap.errors.BackendError` when it kept killing workers). Results are yielded **in
task order** whatever order they complete in, so a caller's reduction is the same as the local
backend's.

Tasks read the store from its path: the store must be on a filesystem every worker sees at the
same path. A worker keeps its open stores (:func:`opencmap.query.runner.task_store`), reopening a
store whose manifest changed. A worker thread runs one task at a time and its kernels on that
thread (``Settings.threads`` unset means 1 on a worker: the cluster's parallelism is its worker
threads); the block budgets of :class:`~opencmap.backends.Settings` apply per task.

What stays on the client
------------------------
Everything after the scan -- NCS, FDR, tau, summaries, writing results -- runs in the client
process on the (S, Q) arrays assembled in task order: those steps sum, sort and rank whole
columns, and a sum split into partial sums computed on workers and combined in another order
would change the last bits of a float32/float64 result. Keeping them whole keeps every result
**bit-identical** to the local backend. :meth:`numba_threads`, :meth:`pool_threads` and
:meth:`executor` are therefore the client's local ones (a :class:`LocalBackend` with the same
settings).

Progress: a plain log line (``logging``, logger ``opencmap.backends.dask``) every
``progress_interval`` seconds while tasks run (tasks done / total), and the scheduler's
dashboard link once when the backend connects.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar

from opencmap.backends.base import BlockTask
from opencmap.backends.local import LocalBackend
from opencmap.backends.settings import Settings
from opencmap.errors import BackendError, SchedulerUnreachableError

__all__ = ["DaskBackend", "INSTALL_HINT", "DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "TASKS_PER_THREAD"]

log = logging.getLogger(__name__)

R = TypeVar("R")

#: how to install what the Dask backend needs
INSTALL_HINT = "pip install 'opencmap[dask]'"
#: retries of a task that raised (a task of a worker that died is re-run by the scheduler anyway)
DEFAULT_RETRIES = 3
#: seconds to wait for a scheduler to answer
DEFAULT_TIMEOUT = 10.0
#: tasks per worker thread a scan is split into when ``Settings.task_signatures`` is unset
TASKS_PER_THREAD = 4
#: fewest signatures per task when the size is chosen here (unless the store is smaller)
MIN_TASK_SIGNATURES = 256


def _distributed() -> Any:
    """The ``distributed`` module, or a :class:`BackendError` saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise BackendError(f"the Dask backend needs dask.distributed, which is not installed: {INSTALL_HINT}") from exc
    return distributed


def _unreachable(address: str, why: str) -> SchedulerUnreachableError:
    return SchedulerUnreachableError(
        f"no Dask scheduler reachable at {address} ({why}): start one (`dask scheduler`) or give its address "
        "(--scheduler / OPENCMAP_SCHEDULER, e.g. tcp://HOST:8786)",
        address=address,
    )


def _connect(address: str, timeout: float) -> Any:
    """A :class:`distributed.Client` of the scheduler at ``address`` (not made the default client)."""
    distributed = _distributed()
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:  # refuse a malformed address before a Client is made (a half-made Client complains when collected)
        protocol, location = parse_address(address)
        if protocol in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except ValueError as exc:
        raise _unreachable(address, f"not a scheduler address: {exc}") from None
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise _unreachable(address, f"no answer within {timeout:g} s") from exc


class DaskBackend:
    """Runs a store scan's block tasks on a ``dask.distributed`` cluster (see the module docstring).

    Parameters
    ----------
    client:
        A :class:`distributed.Client`, or a scheduler address (``tcp://HOST:8786``) to connect to
        (the backend then owns the client: :meth:`close` closes it).
    settings:
        Threads, memory budgets and block sizes (default :class:`Settings`); the budgets apply per
        task on a worker. ``task_signatures`` unset: :data:`TASKS_PER_THREAD` tasks per worker thread.
    retries:
        Retries of a task that raised.
    timeout:
        Seconds to wait for the scheduler when connecting to an address.
    progress_interval:
        Seconds between progress log lines while tasks run.
    """

    #: work leaves this process (tasks run on the cluster's workers)
    distributed = True

    def __init__(
        self,
        client: Any,
        settings: Settings | None = None,
        *,
        retries: int = DEFAULT_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        progress_interval: float = 10.0,
    ):
        distributed = _distributed()
        self.settings = Settings() if settings is None else settings
        self.retries = int(retries)
        self.progress_interval = float(progress_interval)
        self._owns_client = isinstance(client, str)
        if isinstance(client, str):
            client = _connect(client, timeout)
        elif not isinstance(client, distributed.Client):
            raise BackendError(f"DaskBackend needs a distributed.Client or a scheduler address, got {type(client).__name__}")
        self.client = client
        self._local = LocalBackend(self.settings)
        self.address: str = str(client.scheduler.address)
        self.dashboard_link: str | None = self._dashboard()
        info = self.workers()
        log.info(
            "Dask scheduler %s: %d workers, %d threads%s", self.address, info["workers"], info["threads"],
            f"; dashboard {self.dashboard_link}" if self.dashboard_link else "",
        )  # fmt: skip

    @classmethod
    def from_scheduler(cls, address: str, settings: Settings | None = None, *, timeout: float = DEFAULT_TIMEOUT, **options: Any) -> DaskBackend:
        """Connect to the scheduler at ``address``; one that does not answer within ``timeout``
        seconds raises :class:`~opencmap.errors.SchedulerUnreachableError` naming the address."""
        return cls(str(address), settings, timeout=timeout, **options)

    def __repr__(self) -> str:
        return f"DaskBackend({self.address!r}, {self.settings!r})"

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client if this backend made it (a client given to it is the caller's)."""
        if self._owns_client:
            self.client.close()

    def _dashboard(self) -> str | None:
        try:
            link = self.client.dashboard_link
        except (KeyError, AttributeError, OSError):  # no dashboard service (e.g. dashboard_address=None)
            return None
        return str(link) if link else None

    # ------------------------------------------------------------------ the cluster
    def workers(self) -> dict[str, int]:
        """``{"workers": n, "threads": total}`` connected now."""
        nthreads = self.client.nthreads()
        return {"workers": len(nthreads), "threads": int(sum(nthreads.values()))}

    def describe(self) -> dict[str, Any]:
        """What a result's provenance records: kind, scheduler address, workers and threads."""
        return {"kind": "dask", "scheduler": self.address, **self.workers()}

    def task_signatures(self, n: int) -> int:
        """Signatures per task for a scan of ``n``: ``Settings.task_signatures`` if set, else
        about :data:`TASKS_PER_THREAD` tasks per worker thread (at least
        :data:`MIN_TASK_SIGNATURES` signatures per task), never one task for a whole large store."""
        if self.settings.task_signatures is not None:
            return self.settings.task_signatures
        threads = max(self.workers()["threads"], 1)
        return max(min(int(n), MIN_TASK_SIGNATURES), math.ceil(int(n) / (TASKS_PER_THREAD * threads)), 1)

    # ------------------------------------------------------------------ client-side threads
    def numba_threads(self) -> int:
        """The client's (the local backend's rule): NCS, FDR, tau and summaries run here."""
        return self._local.numba_threads()

    def pool_threads(self) -> int:
        """The client's pool threads (the local backend's)."""
        return self._local.pool_threads()

    def executor(self) -> Executor:
        """The client's process-wide thread pool (work inside one block never leaves the process)."""
        return self._local.executor()

    # ------------------------------------------------------------------ tasks
    def map_blocks(self, kernel: Callable[[BlockTask], R], tasks: Iterable[BlockTask]) -> Iterator[R]:
        """``kernel(task)`` of every task on the cluster, results yielded in task order.

        Parameters shared by tasks (the same objects in their ``params``) are sent once; a task
        that raised is retried ``retries`` times; pending tasks are cancelled when the caller stops
        early or a task fails."""
        tasks = list(tasks)
        if not tasks:
            return
        distributed = _distributed()
        client = self.client
        if not client.nthreads():
            log.warning("no worker is connected to the Dask scheduler %s: the tasks wait until one connects", self.address)
        run = uuid.uuid4().hex[:12]
        name = getattr(kernel, "__name__", "kernel")
        # tasks sharing their parameters (the same objects): one group, one params task, one map
        groups: dict[tuple[tuple[str, int], ...], list[int]] = {}
        for i, task in enumerate(tasks):
            groups.setdefault(tuple((k, id(v)) for k, v in task.params.items()), []).append(i)
        futures: list[Any] = [None] * len(tasks)
        shared: list[Any] = []
        try:
            for g, members in enumerate(groups.values()):
                blob = pickle.dumps(dict(tasks[members[0]].params), protocol=5)  # an opaque blob dask does not walk
                params = client.submit(_shared_params, blob, key=f"opencmap-params-{run}-{g}", pure=False, retries=self.retries)
                shared.append(params)
                mapped = client.map(
                    _run_task, [tasks[i].path for i in members], [tasks[i].start for i in members], [tasks[i].stop for i in members],
                    kernel=kernel, params=params, key=[f"opencmap-{name}-{run}-{i}" for i in members], pure=False, retries=self.retries,
                )  # fmt: skip
                for i, future in zip(members, mapped, strict=True):
                    futures[i] = future
            total = len(futures)
            log.info("%s: %d tasks sent to the Dask scheduler %s", name, total, self.address)
            position = {f.key: i for i, f in enumerate(futures)}
            ready: dict[int, Any] = {}
            nxt, done, last = 0, 0, time.monotonic()
            for future in distributed.as_completed(futures, loop=client.loop):
                ready[position[future.key]] = future
                done += 1
                now = time.monotonic()
                if done == total or now - last >= self.progress_interval:
                    log.info("%s: %d/%d tasks done", name, done, total)
                    last = now
                while nxt in ready:
                    result = self._result(ready.pop(nxt), tasks[nxt])
                    futures[nxt] = None  # the worker may drop it
                    nxt += 1
                    yield result
        finally:
            pending = [f for f in (*futures, *shared) if f is not None and not f.done()]
            if pending:
                client.cancel(pending)

    def _result(self, future: Any, task: BlockTask) -> Any:
        from distributed import KilledWorker

        try:
            return future.result()
        except KilledWorker as exc:
            raise BackendError(
                f"the task for {task.path} [{task.start}:{task.stop}] was running on workers that died each time it ran ({exc}); "
                "check the workers' memory limit against Settings' block budgets"
            ) from exc


def _shared_params(blob: bytes) -> Mapping[str, Any]:
    """The parameters tasks share, unpickled on the worker that computes them."""
    params: Mapping[str, Any] = pickle.loads(blob)
    return params


def _run_task(path: str, start: int, stop: int, *, kernel: Callable[[BlockTask], Any], params: Mapping[str, Any]) -> Any:
    """One block task on a worker: its kernels run on the worker thread unless the settings say
    how many threads (a worker's parallelism is its threads, each running a task)."""
    settings = params.get("settings")
    if isinstance(settings, Settings) and settings.threads is None:
        params = {**params, "settings": settings.replace(threads=1)}
    return kernel(BlockTask(path, start, stop, params))
