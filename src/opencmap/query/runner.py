"""The block runner: score queries against every store signature with any registered method.

Every method of :mod:`opencmap.query.methods` declares how it reads the store (its ``access``);
:func:`run_blocks` is the one loop over blocks of signatures for all of them. Per block it
prepares each query's inputs the way the access pattern says, calls the method's ``score`` per
query and writes the outputs into ``(S, Q)`` float32 arrays (NaN where a query has no value)::

    fused_sets     every up and down set of every query in one pass of the method's
                   ``block_kernel``, straight from the memory-mapped gene-major store (no gathered
                   copies); ``score(up: SetStats | None, down: SetStats | None, **params)``
    gathered_sets  the union of the queries' genes gathered per block (ranks and scores);
                   ``score(up: SetBlock | None, down: SetBlock | None, *, n_features, **params)``
    vectors        the scores of the genes each vector query gives;
                   ``score(vector (g,), scores (g, k), **params)``

Memory is bounded by the block size: ``block_bytes`` of gathered rows per block, ``es_block_bytes``
of per-set outputs per block in the fused walk, at least ``tile_min`` signatures per fused block
(defaults: the backend's :class:`~opencmap.backends.Settings` ``query_block_bytes``,
``es_block_bytes``, ``es_block_min``). Kernel threads come from the backend
(:mod:`opencmap.backends`).

Where the blocks run is the backend's: :func:`run_blocks` splits the store's signatures into
tasks (:class:`~opencmap.backends.BlockTask`: the store path, a signature range and picklable
parameters; one task over the whole store unless ``Settings.task_signatures`` says otherwise) and
hands them to :meth:`Backend.map_blocks <opencmap.backends.Backend.map_blocks>` with the
module-level kernel :func:`score_block_task`, which streams its range block by block (read-ahead
and checksum checks overlapped with scoring) and returns that range's outputs. In this process a
task reuses the caller's open store, backend and progress callback; in another process (a Dask
worker, :class:`~opencmap.backends.DaskBackend`) it takes the store from that process's cache of
open stores (:func:`task_store`, reopened when the store's manifest changed) and returns its
range, which the caller writes into its arrays in task order (the progress callback is then
called as each task's result arrives). The task size is the backend's
(:func:`~opencmap.backends.task_signatures`: one task locally, a few per worker thread on a
cluster). Every column is scored on its own, so the split never changes a result.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from opencmap.backends import Backend, BlockTask, LocalBackend, Settings, block_bounds, ordered_results, resolve_backend, task_signatures
from opencmap.errors import StoreError
from opencmap.kernels.tilehash import TILE_COLS as _HASH_TILE
from opencmap.query.genesets import ValidatedQuery
from opencmap.query.methods import Method, SetBlock, SetStats, get_method
from opencmap.query.store import Store

__all__ = ["run_blocks", "score_block_task", "task_store", "BLOCK_BYTES", "ES_BLOCK_BYTES", "TILE_MIN", "DEFAULT_BLOCK_SIZE"]

Progress = Callable[[int, int], None]

#: bytes of gathered rows per block of signatures (ranks uint16 + scores float32), by default
BLOCK_BYTES = Settings.query_block_bytes
#: bytes of per-block ES + leading-edge outputs (float64, every set) in the fused set walk, by default
ES_BLOCK_BYTES = Settings.es_block_bytes
#: fewest signatures per block of the fused set walk, by default
TILE_MIN = Settings.es_block_min
#: most signatures per block
DEFAULT_BLOCK_SIZE = 65536

# one block: (first signature, end, per query (positional args of score))
_Block = tuple[int, int, list[tuple[Any, ...]]]


def run_blocks(
    store: Store,
    method: Method,
    valid: Sequence[ValidatedQuery],
    options: Mapping[str, Any],
    *,
    space: str,
    n_features: int,
    tails: Sequence[str | None] = (),
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: Progress | None = None,
    block_bytes: int | None = None,
    es_block_bytes: int | None = None,
    tile_min: int | None = None,
    backend: Backend | None = None,
) -> dict[str, np.ndarray]:
    """Outputs ``{name: (S, Q) float32}`` of ``method`` for the validated queries ``valid``.

    ``options`` are the method's parameters; for a method with an ``es_tail`` parameter, query
    ``j`` is scored on ``tails[j]`` when given. Outputs no query produced are left out, except
    ``score``. ``progress(done, total)`` is called after each block, in signatures. ``backend``
    (default: this process) gives the kernels' threads and the block budgets that
    ``block_bytes``, ``es_block_bytes`` and ``tile_min`` do not override.
    """
    backend = resolve_backend(backend)
    settings = backend.settings
    per_query = [dict(options) for _ in valid]
    if "es_tail" in method.params and tails:
        for opts, tail in zip(per_query, tails, strict=True):
            opts["es_tail"] = tail or "both"
    n_sig = store.n_signatures
    params = {
        "method": method.name, "valid": tuple(valid), "per_query": per_query, "space": space, "n_features": n_features,
        "block_size": block_size, "n_signatures": n_sig, "settings": settings, "data": scan_identity(store),
        "block_bytes": settings.query_block_bytes if block_bytes is None else block_bytes,
        "es_block_bytes": settings.es_block_bytes if es_block_bytes is None else es_block_bytes,
        "tile_min": settings.es_block_min if tile_min is None else tile_min,
    }  # fmt: skip
    outputs = {name: np.full((n_sig, len(valid)), np.nan, dtype=np.float32) for name in method.outputs}
    token = _register(store, backend, progress, method, outputs)
    try:
        tasks = [
            BlockTask(str(store.path), lo, hi, {**params, "local": token})
            for lo, hi in block_bounds(n_sig, task_signatures(backend, n_sig))
        ]
        for task, part in ordered_results(backend, score_block_task, tasks):
            for name, values in part.items():
                outputs[name][task.start : task.stop] = values
            if part and progress is not None:  # a task run elsewhere: its progress is its arrival
                progress(task.stop, n_sig)
    finally:
        _unregister(token)
    return {name: arr for name, arr in outputs.items() if not np.isnan(arr).all() or name == "score"}


def score_block_task(task: BlockTask) -> dict[str, np.ndarray]:
    """The outputs ``{name: (stop - start, Q) float32}`` of one task of :func:`run_blocks`: the
    store's signatures ``task.start:task.stop`` scored for every query (a module-level function,
    so a backend can send it to another process; there it opens the store at ``task.path``
    read-only, with ``task.params["settings"]``). A task run in the process of its
    :func:`run_blocks` writes into that run's arrays and returns ``{}``."""
    p = task.params
    local = _LOCAL.get(p.get("local", ""))
    if local is not None:  # this process's run: its open store, backend, progress, method and outputs
        store, backend, progress, method, into = local
    else:
        store = task_store(task.path, p["settings"], p.get("data"))
        backend, progress, method, into = LocalBackend(p["settings"]), None, get_method(p["method"]), None
    settings = backend.settings
    valid, per_query, space, n_features = p["valid"], p["per_query"], p["space"], p["n_features"]
    block_size, start, stop = p["block_size"], task.start, task.stop
    if method.access == "fused_sets":
        kernel = {"threads": backend.pool_threads(), "executor": backend.executor(),
                  **settings.kernel_options("wtcs_network_max", "wtcs_min_thread_work")}  # fmt: skip
        blocks = _fused_sets(store, method, valid, space, n_features, block_size, p["es_block_bytes"], p["tile_min"], kernel, start, stop)
    elif method.access == "gathered_sets":
        blocks = _gathered_sets(store, valid, space, block_size, p["block_bytes"], start, stop)
        per_query = [{"n_features": n_features, **opts} for opts in per_query]
    else:
        blocks = _vectors(store, valid, space, block_size, p["block_bytes"], start, stop)
        if method.threaded:
            per_query = [{**opts, "threads": backend.numba_threads()} for opts in per_query]
    # in this process the run's own (S, Q) arrays are filled in place (nothing to send back)
    outputs = {name: np.full((stop - start, len(valid)), np.nan, dtype=np.float32) for name in method.outputs} if into is None else into
    offset = start if into is None else 0
    for lo, hi, inputs in blocks:
        for j, args in enumerate(inputs):
            for name, values in method.score(*args, **per_query[j]).items():
                if name in outputs:
                    outputs[name][lo - offset : hi - offset, j] = values
        if progress is not None:
            progress(hi, p["n_signatures"])
    return {} if into is not None else outputs


# stores open in this process for tasks of other processes' runs: (path, settings) -> Store
_STORES: OrderedDict[tuple[str, Settings], Store] = OrderedDict()
_STORES_LOCK = threading.Lock()
_STORES_KEEP = 4


def task_store(path: str, settings: Settings, data: str | None = None) -> Store:
    """The store at ``path`` opened read-only with ``settings``, kept open in this process for the
    next tasks (a worker scores many tasks of a store; its memory maps and tables are reused).

    A store whose manifest was replaced since (a rebuild, an append, new backgrounds) is reopened
    (:meth:`Store.current <opencmap.io.store.Store.current>`). ``data``: the
    :func:`scan_identity` of the store the task's run read; a store whose scanned data are now
    others (rebuilt, appended to, compacted) raises :class:`~opencmap.errors.StoreError`, since
    a result mixing two versions of the store would be wrong. New backgrounds change no scanned
    data and are no reason to refuse."""
    key = (str(path), settings)
    with _STORES_LOCK:
        store = _STORES.get(key)
    store = Store(path, settings=settings) if store is None else store.current()
    with _STORES_LOCK:
        _STORES[key] = store
        _STORES.move_to_end(key)
        while len(_STORES) > _STORES_KEEP:
            _STORES.popitem(last=False)
    if data is not None and scan_identity(store) != data:
        raise StoreError(f"the store {path} was rebuilt or changed (signatures appended or compacted) while a query ran on it; run it again")
    return store


def scan_identity(store: Store) -> str | None:
    """A digest of what a scan reads from ``store``: its segments (names, sizes, file checksums)
    and feature spaces (``None`` for an object without a manifest). Computed once per open store."""
    manifest = getattr(store, "manifest", None)
    if not isinstance(manifest, Mapping):
        return None
    key = id(manifest)
    with _STORES_LOCK:
        hit = _IDENTITY.get(key)
        if hit is not None and hit[0] is manifest:
            return hit[1]
    what = {k: manifest.get(k) for k in ("n_signatures", "segments", "spaces")}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]
    with _STORES_LOCK:
        _IDENTITY[key] = (manifest, digest)
        while len(_IDENTITY) > 4 * _STORES_KEEP:
            _IDENTITY.pop(next(iter(_IDENTITY)))
    return digest


# digests of the manifests of stores seen in this process: id(manifest) -> (manifest, digest)
_IDENTITY: dict[int, tuple[Mapping[str, Any], str]] = {}


# runs of this process by token: (store, backend, progress, method, outputs), for their tasks run here
_LOCAL: dict[str, tuple[Store, Backend, Progress | None, Method, dict[str, np.ndarray]]] = {}
_LOCAL_LOCK = threading.Lock()


def _register(store: Store, backend: Backend, progress: Progress | None, method: Method, outputs: dict[str, np.ndarray]) -> str:
    token = uuid.uuid4().hex
    with _LOCAL_LOCK:
        _LOCAL[token] = (store, backend, progress, method, outputs)
    return token


def _unregister(token: str) -> None:
    with _LOCAL_LOCK:
        _LOCAL.pop(token, None)


# ---------------------------------------------------------------------------------- access patterns
def _fused_sets(
    store: Store, method: Method, valid: Sequence[ValidatedQuery], space: str, n_features: int,
    block_size: int, es_block_bytes: int, tile_min: int, kernel: Mapping[str, Any], start: int = 0, stop: int | None = None,
) -> Iterator[_Block]:  # fmt: skip
    """Every set of every query through the method's block kernel, read in place."""
    assert method.block_kernel is not None, f"method {method.name} declares fused_sets without a block_kernel"
    sets = [rows for v in valid for rows in (v.up_rows, v.down_rows)]
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for r in sets])
    bounds = np.concatenate([[0], np.cumsum([len(r) for r in sets])]).astype(np.int64)
    # per-set outputs for a block of signatures: bounded memory
    k = int(max(tile_min, min(block_size, es_block_bytes // (16 * len(sets)))))
    k = max(k // _HASH_TILE * _HASH_TILE, min(k, _HASH_TILE))  # blocks on tile boundaries: the kernel hashes what it reads
    stat = np.empty((len(sets), k), dtype=np.float64)
    leadf = np.empty_like(stat)
    # a store larger than RAM faults in exactly the pages asked for (Store.random_access):
    # iter_blocks asks for the next block's rows while the kernel computes this one. Files with
    # tile hashes are checked by the kernel as it reads them (store.read_check), others by iter_blocks
    blocks = store.iter_blocks(rows, space=space, block_size=k, with_scores=method.reads_scores, start=start, stop=stop, kernel_checks=True)
    for first, end, r_mm, s_mm, lo, hi in blocks:
        e, lf = stat[:, : hi - lo], leadf[:, : hi - lo]
        check = store.read_check(first, space, with_scores=method.reads_scores)  # None: nothing to hash here
        method.block_kernel(r_mm, s_mm, rows, bounds, n_features, columns=(lo, hi), out=(e, lf), verify=check, **kernel)
        if check is not None and check.bad[0] >= 0:
            store.segment_at(first).raise_bad(space, check)
        inputs = []
        for j, v in enumerate(valid):
            up = SetStats(e[2 * j], lf[2 * j]) if len(v.up_rows) else None
            dn = SetStats(e[2 * j + 1], lf[2 * j + 1]) if len(v.down_rows) else None
            inputs.append((up, dn))
        yield first, end, inputs


def _pick(order: Mapping[int, int], rows: np.ndarray) -> slice | np.ndarray | None:
    if len(rows) == 0:
        return None
    idx = np.fromiter((order[int(r)] for r in rows), dtype=np.intp, count=len(rows))
    if np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def _block_columns(n_rows: int, block_size: int, block_bytes: int = BLOCK_BYTES) -> int:
    per_col = max(n_rows, 1) * 6
    return int(max(256, min(block_size, block_bytes // per_col)))


def _gathered_sets(
    store: Store, valid: Sequence[ValidatedQuery], space: str, block_size: int, block_bytes: int, start: int = 0, stop: int | None = None
) -> Iterator[_Block]:
    """The union of the queries' rows gathered per block; each query's sets picked from it."""
    # union of rows, ordered query by query so a lone query reads its rows as two slices
    order: dict[int, int] = {}
    for v in valid:
        for r in (*v.up_rows.tolist(), *v.down_rows.tolist()):
            order.setdefault(int(r), len(order))
    union = np.fromiter(order, dtype=np.intp, count=len(order))
    picks = [(_pick(order, v.up_rows), _pick(order, v.down_rows)) for v in valid]
    k = _block_columns(len(union), block_size, block_bytes)
    for first, end, ranks, scores in store.iter_gene_rows(union, space=space, block_size=k, start=start, stop=stop):
        assert ranks is not None
        inputs = []
        for pu, pd_ in picks:
            up = None if pu is None else SetBlock(ranks[pu], scores[pu])
            dn = None if pd_ is None else SetBlock(ranks[pd_], scores[pd_])
            inputs.append((up, dn))
        yield first, end, inputs


def _vectors(
    store: Store, valid: Sequence[ValidatedQuery], space: str, block_size: int, block_bytes: int, start: int = 0, stop: int | None = None
) -> Iterator[_Block]:
    """The scores of the genes the vector queries give; each query gets its own genes."""
    masks = [np.isfinite(v.vector) for v in valid]  # type: ignore[arg-type]
    rows = np.flatnonzero(np.logical_or.reduce(masks))
    sels = [np.flatnonzero(m[rows]) for m in masks]
    vectors = [v.vector[rows[sel]] for v, sel in zip(valid, sels, strict=True)]  # type: ignore[index]
    k = _block_columns(len(rows), block_size, block_bytes)
    for first, end, _, scores in store.iter_gene_rows(rows, space=space, block_size=k, with_ranks=False, start=start, stop=stop):
        yield first, end, [(vec, scores[sel]) for vec, sel in zip(vectors, sels, strict=True)]
