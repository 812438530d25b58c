"""The backend protocol: what an executor of opencmap's work provides (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from opencmap.backends.settings import Settings

__all__ = ["Backend", "BlockTask", "block_bounds", "is_distributed", "ordered_results"]

R = TypeVar("R")


@dataclass(frozen=True)
class BlockTask:
    """One unit of distributable work: a block of a store (or of a pipeline run) and parameters.

    Everything in it is plain data, so it pickles and can run in another process or on another
    machine that sees ``path`` (a store on a shared filesystem):

    ``path``
        The store (or run output folder) the kernel opens read-only.
    ``start``, ``stop``
        Block bounds: signature positions ``start:stop`` of the store, or replicate sets
        ``start:stop`` of a pipeline run's plan.
    ``params``
        Picklable keyword arguments of the kernel (query rows, options, the settings...).
    """

    path: str
    start: int
    stop: int
    params: Mapping[str, Any] = field(default_factory=dict)


def block_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most ``size`` items covering ``0..n``."""
    size = max(int(size), 1)
    return [(lo, min(lo + size, n)) for lo in range(0, int(n), size)]


@runtime_checkable
class Backend(Protocol):
    """Where opencmap's work runs. :class:`~opencmap.backends.LocalBackend` is the default."""

    settings: Settings
    distributed: bool
    """True when :meth:`map_blocks` runs tasks in other processes (or machines): the store build
    and the pipeline then hand their per-block work to it as module-level task functions; False
    (the local backend) keeps their in-process threads and read-ahead."""

    def numba_threads(self) -> int:
        """Threads a numba ``prange`` kernel launched now, from the calling thread, may use
        (``1``: launch the one-thread variant)."""
        ...

    def pool_threads(self) -> int:
        """Threads a kernel that splits its work over :meth:`executor` may use."""
        ...

    def executor(self) -> Executor:
        """Shared-memory worker threads for a kernel's split of one block (e.g. WTCS work units
        writing into one output array). Never used for work that leaves the process."""
        ...

    def map_blocks(self, kernel: Callable[[BlockTask], R], tasks: Iterable[BlockTask]) -> Iterator[R]:
        """``kernel(task)`` for every task, results yielded in task order."""
        ...


def is_distributed(backend: Backend) -> bool:
    """True when ``backend`` runs :meth:`Backend.map_blocks` tasks in other processes (its
    ``distributed`` attribute; a backend without one is local)."""
    return bool(getattr(backend, "distributed", False))


def ordered_results(
    backend: Backend, kernel: Callable[[BlockTask], R], tasks: Iterable[BlockTask]
) -> Iterator[tuple[BlockTask, R]]:
    """``(task, kernel(task))`` for every task, in task order, run by ``backend.map_blocks``.

    Raises :class:`~opencmap.errors.BackendError` when the backend yields fewer or more results
    than it was given tasks (a backend must never drop a task silently)."""
    from opencmap.errors import BackendError

    tasks = list(tasks)
    n = 0
    for n, result in enumerate(backend.map_blocks(kernel, tasks), start=1):
        if n > len(tasks):
            raise BackendError(f"backend {backend!r} yielded more results than the {len(tasks)} tasks it was given")
        yield tasks[n - 1], result
    if n != len(tasks):
        raise BackendError(f"backend {backend!r} yielded {n} results for {len(tasks)} tasks (a task was lost)")
