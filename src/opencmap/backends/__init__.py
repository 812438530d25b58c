"""Where work runs: the backend seam between opencmap's steps and the machines that run them.

The engine (queries, backgrounds), the store build and the pipeline never decide themselves how
many threads a kernel uses, how large a block is or where a block runs: they ask a backend.

* :class:`Settings` -- threads, memory budgets, block sizes and the kernels' tuning thresholds,
  a frozen object passed in explicitly (defaults: the values opencmap has always used). No
  setting changes a result.
* :class:`Backend` -- the protocol. :class:`LocalBackend` (the default, :func:`default_backend`)
  runs everything in this process exactly as before: blocks one after another, numba kernels
  multi-threaded from the main thread only, the WTCS kernel's work units on one thread pool.

What another backend (e.g. ``dask.distributed``) must implement
---------------------------------------------------------------
``settings``
    A :class:`Settings`; the block sizes and budgets apply per worker.
``distributed``
    True when ``map_blocks`` runs tasks in other processes (:func:`is_distributed`): the store
    build (:func:`opencmap.io.store.writer.build_block_task`) and the pipeline
    (:mod:`opencmap.pipeline.tasks`) then send their per-block work as tasks, and the driver
    only writes and commits; False keeps their in-process threads.
``numba_threads()`` / ``pool_threads()``
    The thread count of a kernel launched now in this process (numba ``prange`` kernels / kernels
    split over :meth:`Backend.executor`). A distributed backend gives the driver's local count;
    its workers run tasks with the settings they are sent.
``executor()``
    A :class:`concurrent.futures.Executor` for shared-memory work units *inside* one block (the
    WTCS kernel writes into one output array); it stays local.
``map_blocks(kernel, tasks)``
    Run ``kernel(task)`` for every :class:`BlockTask`, yielding the results **in task order**
    (a reduction is written as chunk → combine → aggregate by its caller, so the order of
    completion never changes a result). A failed task is retried or raises; it never yields a
    partial result.
``task_signatures(n)`` / ``describe()`` (optional)
    Signatures per task of a scan of ``n`` when ``Settings.task_signatures`` is unset
    (:func:`task_signatures`), and what a result's provenance records (:func:`describe_backend`).

What a task must be
-------------------
A :class:`BlockTask`: the store path (on a filesystem the workers share), block bounds
(signature positions ``start:stop``, or replicate sets ``start:stop`` of a pipeline plan) and
picklable parameters (``params["settings"]``, when present, the :class:`Settings` the task runs
with). The kernel is a module-level function (pickled by reference) that opens the store
read-only, computes its block with pure kernels (:mod:`opencmap.kernels`) and returns arrays; it
writes nothing the driver does not commit. :func:`ordered_results` pairs each task with its
result and refuses a backend that drops or adds one (:class:`~opencmap.errors.BackendError`).

Backends that send tasks to other processes or machines (:class:`DaskBackend`, the optional
``dask`` extra) say so with ``distributed = True`` (:func:`is_distributed`); a scan asks
:func:`task_signatures` how large its tasks are, and a result's provenance records
:func:`describe_backend`.
"""

from __future__ import annotations

from typing import Any

from opencmap.backends.base import Backend, BlockTask, block_bounds, is_distributed, ordered_results
from opencmap.backends.dask import DaskBackend
from opencmap.backends.local import LocalBackend, default_backend, resolve_backend
from opencmap.backends.settings import Settings

__all__ = [
    "Backend",
    "BlockTask",
    "DaskBackend",
    "LocalBackend",
    "Settings",
    "block_bounds",
    "default_backend",
    "describe_backend",
    "is_distributed",
    "ordered_results",
    "resolve_backend",
    "task_signatures",
]


def task_signatures(backend: Backend, n: int) -> int:
    """Signatures per task of a scan of ``n`` signatures on ``backend``: ``Settings.task_signatures``
    if set; else the backend's choice (a distributed backend: a few tasks per worker thread), or
    one task over the whole scan."""
    choose = getattr(backend, "task_signatures", None)
    if callable(choose):
        return max(int(choose(n)), 1)
    return backend.settings.task_signatures or max(int(n), 1)


def describe_backend(backend: Backend) -> dict[str, Any]:
    """What a result's provenance records of the backend: ``{"kind": "local"}`` or, for a
    cluster, its kind, scheduler address, workers and threads (:meth:`DaskBackend.describe`)."""
    describe = getattr(backend, "describe", None)
    if callable(describe):
        return dict(describe())
    return {"kind": "local" if isinstance(backend, LocalBackend) else type(backend).__name__}
