"""The local backend: work runs in this process, exactly as opencmap has always run it.

* Blocks run one after another in the calling thread (each block's kernels use the threads below).
* numba ``prange`` kernels get numba's thread count (or ``Settings.threads``) when launched from
  the main thread, one thread otherwise: not every numba threading layer accepts launches from
  two threads at once (``workqueue`` aborts), and the pipeline's reader thread and the API's job
  threads run kernels beside the main thread. The one-thread variants compute the same values.
* Kernels that split one block into work units (the fused WTCS/CS kernel) run them on one
  process-wide pool of ``os.cpu_count()`` threads, from any thread (the kernel releases the GIL).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from opencmap.backends.base import Backend, BlockTask
from opencmap.backends.settings import Settings

__all__ = ["LocalBackend", "default_backend", "resolve_backend", "in_main_thread"]

R = TypeVar("R")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_DEFAULT: LocalBackend | None = None


def in_main_thread() -> bool:
    """True in the main thread, where the multi-threaded (``prange``) kernels may be launched."""
    return threading.current_thread() is threading.main_thread()


def _shared_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is not None:  # made once: no lock taken on every run
        return _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1), thread_name_prefix="opencmap-wtcs")
        return _POOL


class LocalBackend:
    """Runs everything in this process (the default backend).

    Parameters
    ----------
    settings:
        Threads, memory budgets and block sizes (default :class:`Settings`: today's values).
    """

    distributed = False  # map_blocks runs tasks here, in the calling thread

    def __init__(self, settings: Settings | None = None):
        self.settings = Settings() if settings is None else settings

    def __repr__(self) -> str:
        return f"LocalBackend({self.settings!r})"

    def _threads(self) -> int:
        if self.settings.threads is not None:
            return self.settings.threads
        import numba  # on first use: opening a store or an engine imports no numba

        return numba.get_num_threads()

    def numba_threads(self) -> int:
        """Kernel threads from the main thread, 1 from any other (see the module docstring)."""
        return self._threads() if in_main_thread() else 1

    def pool_threads(self) -> int:
        """Threads of a kernel split over :meth:`executor` (from any thread)."""
        return self._threads()

    def executor(self) -> Executor:
        """The process-wide pool of ``os.cpu_count()`` threads (created on first use)."""
        return _shared_pool()

    def map_blocks(self, kernel: Callable[[BlockTask], R], tasks: Iterable[BlockTask]) -> Iterator[R]:
        """Run the tasks one after another in the calling thread, yielding each result."""
        for task in tasks:
            yield kernel(task)


def default_backend() -> LocalBackend:
    """The process-wide :class:`LocalBackend` with default :class:`Settings`."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = LocalBackend()
    return _DEFAULT


def resolve_backend(backend: Any) -> Backend:
    """The backend meant by ``backend``: itself for a backend, the default backend for ``None``,
    a :class:`~opencmap.backends.DaskBackend` for a scheduler address (``"tcp://HOST:8786"``;
    one per address in this process) or for a :class:`distributed.Client`."""
    if backend is None:
        return default_backend()
    if isinstance(backend, str):
        from opencmap.backends.dask import DaskBackend

        with _POOL_LOCK:
            hit = _BY_ADDRESS.get(backend)
        if hit is None:
            hit = DaskBackend.from_scheduler(backend)
            with _POOL_LOCK:
                hit = _BY_ADDRESS.setdefault(backend, hit)
        return hit
    if type(backend).__module__.split(".")[0] == "distributed" and type(backend).__name__ == "Client":
        from opencmap.backends.dask import DaskBackend

        return DaskBackend(backend)
    return backend  # type: ignore[no-any-return]


# backends made for scheduler addresses given to resolve_backend, by address
_BY_ADDRESS: dict[str, Backend] = {}
