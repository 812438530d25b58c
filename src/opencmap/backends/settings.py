"""Tuning settings of a run: threads, memory budgets and block sizes, in one frozen object.

Every number that decides *how* work runs (never *what* it computes) lives here, with today's
value as its default, instead of private module constants patched by tests. A
:class:`Settings` is handed to a backend (:class:`opencmap.backends.LocalBackend`), and the
engine, the store build and the pipeline read it from there::

    from opencmap.backends import LocalBackend, Settings
    backend = LocalBackend(Settings(threads=1, query_block_bytes=16 << 20))

The kernels' tuning thresholds (``wtcs_network_max``, ``wtcs_min_thread_work``,
``parallel_min``) default to ``None``: the kernel's own default (its one place, e.g.
:data:`opencmap.kernels.wtcs.NETWORK_MAX`), so importing the settings imports no numba. No
setting changes a result: scores, stores and Level 4/5 outputs are bit-identical for any value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from opencmap.errors import ConfigError

__all__ = ["Settings"]

# kernel settings -> the keyword of the kernels that take them (None leaves the kernel's default)
_KERNEL_DEFAULTS = {"wtcs_network_max": "network_max", "wtcs_min_thread_work": "min_thread_work", "parallel_min": "parallel_min"}


@dataclass(frozen=True)
class Settings:
    """Threads, memory budgets and block sizes (defaults: what opencmap has always used)."""

    threads: int | None = None
    """Kernel threads; ``None``: numba's thread count (``NUMBA_NUM_THREADS``, default the cores).
    ``1`` runs every kernel on the calling thread; numba ``prange`` kernels given more use numba's
    pool (at most ``NUMBA_NUM_THREADS``), the WTCS kernel splits its work into that many units."""

    # -- queries (opencmap.query.engine)
    query_block_bytes: int = 48 << 20
    """Bytes of gathered rows (ranks uint16 + scores float32) per block of signatures."""
    es_block_bytes: int = 32 << 20
    """Bytes of per-block ES + leading-edge outputs (float64, every set) of the fused WTCS/CS path."""
    es_block_min: int = 1024
    """Fewest signatures per block of the fused WTCS/CS path, whatever ``es_block_bytes`` says."""
    task_signatures: int | None = None
    """Signatures per task a store scan is split into (:meth:`Backend.map_blocks`): ``None``, one
    task over the whole store (a local run streams it with read-ahead); a cluster gives each
    worker tasks of this size. Results are the same for any value."""

    # -- store build (opencmap.query.store)
    build_memory: int = 2 << 30
    """Buffer budget of a store build; sets its default block size (signatures per block)."""
    build_sync_bytes: int = 1 << 28
    """Build: write out and drop written pages every this many bytes, when releasing (below)."""
    build_release_fraction: float | None = None
    """Build: release written pages when a segment exceeds this share of RAM (``None``: never)."""
    random_access_fraction: float = 0.5
    """Stores whose gene-major data exceed this share of RAM are read without read-around."""

    # -- tau backgrounds (opencmap.query.background)
    background_memory: int = 2 << 30
    """Client memory budget of a tau background build. A build that needs more (about 64 bytes
    per store signature x background query) scores, normalises and summarises its queries a
    chunk of columns at a time into temporary float32 files (S x Q per level, on the store's
    disk) and sorts them a block of rows at a time; the backgrounds are the same bytes."""

    # -- pipeline (opencmap.pipeline.run)
    checkpoint_seconds: float = 30.0
    """Seconds between durable checkpoints of a pipeline run (fsync of the partial outputs, then
    of the done-list); ``0`` checkpoints after every replicate set."""

    # -- GCTX reads (opencmap.io.gctx)
    gctx_map_window_bytes: int = 64 << 20
    """Most bytes of a GCTX file mapped at once when gathering a few rows of many columns (each
    window is also at most a quarter of the output)."""
    gctx_map_window_min: int = 4 << 20
    """Fewest bytes of a GCTX file mapped at once by that gather, whatever the output's size."""

    # -- kernels (None: the kernel's own default)
    wtcs_network_max: int | None = None
    """Sets of more genes than this are ordered per signature with a rank bitmap (WTCS kernel;
    default :data:`opencmap.kernels.wtcs.NETWORK_MAX`)."""
    wtcs_min_thread_work: int | None = None
    """(signatures x set genes) per extra WTCS thread; less work runs on one thread (default
    :data:`opencmap.kernels.wtcs.MIN_THREAD_WORK`)."""
    parallel_min: int | None = None
    """Values (rows x columns) below which NCS, tau and summaries run on one thread (default
    :data:`opencmap.kernels.threads.PARALLEL_MIN`)."""

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"setting threads={self.threads!r} is invalid: expected None or an integer >= 1")
        for name in ("query_block_bytes", "es_block_bytes", "es_block_min", "task_signatures", "build_memory", "build_sync_bytes",
                     "background_memory", "gctx_map_window_bytes", "gctx_map_window_min", "wtcs_network_max", "wtcs_min_thread_work",
                     "parallel_min"):  # fmt: skip
            value = getattr(self, name)
            if value is None and (name in _KERNEL_DEFAULTS or name == "task_signatures"):
                continue
            if not isinstance(value, int) or value < (1 if name == "task_signatures" else 0):
                raise ConfigError(f"setting {name}={value!r} is invalid: expected an integer >= {1 if name == 'task_signatures' else 0}")
        for name in ("build_release_fraction", "random_access_fraction", "checkpoint_seconds"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value >= 0):
                raise ConfigError(f"setting {name}={value!r} is invalid: expected a number >= 0")

    def kernel_options(self, *names: str) -> dict[str, int]:
        """``{kernel keyword: value}`` of the named kernel settings that are set (not ``None``),
        e.g. ``kernel_options("parallel_min")`` -> ``{"parallel_min": 0}`` or ``{}``."""
        return {_KERNEL_DEFAULTS[n]: getattr(self, n) for n in names if getattr(self, n) is not None}

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (unknown names raise :class:`~opencmap.errors.ConfigError`)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)
