"""The backend protocol: what an executor of opencmap's work provides (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from opencmap.backends.settings import Settings

__all__ = ["Backend", "BlockTask", "block_bounds"]

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
