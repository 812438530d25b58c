"""tau backgrounds: reference distributions of |NCS| built by querying the store with itself.

:func:`build_background` turns the store's exemplar signatures into queries (top/bottom 50
genes, WTCS, spec §6.6 "introspect"), scores them against every signature, normalises (NCS),
symmetrises the exemplar x exemplar block (average with its transpose) and drops each
signature's connection to itself. For every row of every level (signature, perturbagen x cell,
perturbagen, PCL x cell, PCL; summaries built exactly as a query's) it stores the sorted |NCS|
of the background queries - only queries from the same cell line for the cell-specific levels
(``sig``, ``pert_cell``, ``pcl_cell``).

Backgrounds have a *kind*: the tail of their queries (``both``: up and down sets, WTCS; ``up``:
the top genes alone, score ES_up; ``down``: the bottom genes alone, score -ES_dn; cmapM
``es_tail``) and the metric (``wtcs``). A query's tau is read only from a background of its own
kind (:mod:`opencmap.query.tau`). All three tails come from one scoring pass (ES_up and ES_dn
of the two-sided queries; a one-sided query's ES is the same set's ES). Stored per level in
``<store>/backgrounds/<level>/`` (tail ``both``) or ``<store>/backgrounds/<tail>/<level>/``, the
manifest entry (key ``<level>`` or ``<tail>/<level>``) recording ``tail`` and ``metric``::

    values.npy   float32 (n_rows, width) sorted |ncs| per row, NaN-padded
    counts.npy   int32 (n_rows,) number of background values per row
    ids.parquet  the level's row ids (``id``)

Client memory: one pass holds about 57 bytes per (store signature, background query) (scores,
NCS, summaries, masks, sorted copies; 680 GB for 10,000 queries over LINCS 2020's 1.2 M
signatures). A build needing more than :attr:`Settings.background_memory
<opencmap.backends.Settings.background_memory>` (default 2 GiB; :func:`query_chunk`) scores,
normalises and summarises a chunk of query columns at a time into temporary float32 arrays on
disk (signatures x queries per level, in ``backgrounds/.scratch-g<N>.tmp``, removed when the build
ends, fails or - if killed - by the store's next cleanup; the free disk is checked first:
:class:`~opencmap.errors.DiskSpaceError` with the bytes needed), keeps the queries' own (Q, Q)
rows for the symmetric step and sorts each level a block of rows at a time. Every column is
computed as in one pass (NCS per chunk with the whole query set's per-group sign flags), so the
backgrounds are the same bytes.

tau of a query NCS x at row r = sign(x) * 100 * #{|bg_r| < |x|} / n_r (exact, default), or the
CMap 10,001-point grid (``method="cmap"``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.schema import CELL_LEVELS, exemplar_mask
from opencmap.errors import ConfigError, StoreError
from opencmap.io.store.backgrounds import (
    BACKGROUND_FORMAT_VERSION,
    commit_backgrounds,
    entry_tail,
    next_generation,
    read_background_files,
    write_background,
    write_background_queries,
)
from opencmap.io.versions import check_format_version
from opencmap.query.store import Store

__all__ = [
    "Background",
    "build_background",
    "load_background",
    "background_key",
    "background_kinds",
    "exemplar_mask",
    "BACKGROUND_TAILS",
]

log = logging.getLogger(__name__)

#: tails a background can be built for (the ``es_tail`` of its queries, spec §6.1)
BACKGROUND_TAILS = ("both", "up", "down")
#: the metric every background is built with
BACKGROUND_METRIC = "wtcs"


def background_key(level: str, tail: str = "both") -> str:
    """Manifest key and folder (under ``backgrounds/``) of a level's background of one tail:
    ``<level>`` for ``both`` (stores built before tails existed), ``<tail>/<level>`` otherwise."""
    if tail not in BACKGROUND_TAILS:
        raise ConfigError(f"background tail must be one of {BACKGROUND_TAILS}, got {tail!r}")
    return level if tail == "both" else f"{tail}/{level}"


_entry_tail = entry_tail


def background_kinds(store: Store) -> dict[str, dict[str, Any]]:
    """Backgrounds of a store by kind: ``{tail: {"metric", "n_queries", "levels", "stale"}}``."""
    kinds: dict[str, dict[str, Any]] = {}
    for key, entry in store.manifest.get("backgrounds", {}).items():
        tail = _entry_tail(key, entry)
        kind = kinds.setdefault(
            tail, {"metric": entry.get("metric", BACKGROUND_METRIC), "n_queries": entry.get("n_queries"), "levels": [], "stale": {}}
        )
        level = key.split("/", 1)[1] if "/" in key else key
        kind["levels"].append(level)
        if int(entry.get("appended_since_built", 0)):
            kind["stale"][level] = int(entry["appended_since_built"])
    return kinds


def _parse_tails(tail: str | Sequence[str]) -> list[str]:
    items = [tail] if isinstance(tail, str) else list(tail)
    out: list[str] = []
    for t in items:
        for one in BACKGROUND_TAILS if t == "all" else (t,):
            if one not in BACKGROUND_TAILS:
                raise ConfigError(f"background tail must be one of {(*BACKGROUND_TAILS, 'all')}, got {one!r}")
            if one not in out:
                out.append(one)
    if not out:
        raise ConfigError("give at least one background tail (both, up, down or all)")
    return out


@dataclass
class Background:
    """One level's background: row ids, sorted |ncs| per row (NaN-padded) and counts."""

    level: str
    ids: pd.Index
    values: np.ndarray
    counts: np.ndarray
    #: the kind: tail of the background queries (``both``, ``up``, ``down``) and their metric
    tail: str = "both"
    metric: str = BACKGROUND_METRIC
    #: the manifest entry (n_queries, params, appended_since_built, ...)
    entry: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # last (rows, (have, values, counts)) given by aligned()
    _aligned: tuple[np.ndarray, tuple[np.ndarray, ...]] | None = field(default=None, repr=False, compare=False)

    def keys_for(self, index: pd.DataFrame) -> np.ndarray:
        """Background row of each row of a level index (first column = id; -1 if absent)."""
        col = "sig_id" if "sig_id" in index.columns else index.columns[0]
        return self.ids.get_indexer(pd.Index(index[col].astype(str), dtype=object))

    def aligned(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(have, values, counts)`` for a level whose rows map to background rows ``rows``:
        the positions with a background and their sorted values / counts, in that order.

        When ``rows`` is the identity (a level in the background's own order, e.g. the store's
        signatures) the stored (memory-mapped) arrays are returned as they are, without a copy.
        The result is cached for the last ``rows`` seen (pass the same array to reuse it).
        """
        rows = np.asarray(rows)
        cached = self._aligned
        if cached is not None and (cached[0] is rows or np.array_equal(cached[0], rows)):
            return cached[1]
        have = np.flatnonzero(rows >= 0)
        if len(have) == len(self.counts) and np.array_equal(rows, np.arange(len(self.counts))):
            out = (have, self.values, np.asarray(self.counts))
        else:
            picked = rows[have]
            out = (have, np.ascontiguousarray(self.values[picked]), np.asarray(self.counts[picked]))
        self._aligned = (rows, out)
        return out

    def tau(
        self, ncs: np.ndarray, rows: np.ndarray, *, method: str = "exact", threads: int = 1, parallel_min: int | None = None
    ) -> np.ndarray:
        """tau (n, Q) of ``ncs`` (n, Q) whose background rows are ``rows`` (-1 -> NaN); ``threads``
        and ``parallel_min`` of the exact kernel (given by the backend, :mod:`opencmap.backends`)."""
        from opencmap.kernels import tau as tau_kernel

        values = np.asarray(ncs, dtype=np.float32)
        have, bg, counts = self.aligned(rows)
        if not len(have):
            return np.full(values.shape, np.nan, dtype=np.float32)
        full = len(have) == len(values)
        sub = values if full else values[have]
        if method == "exact":
            par = {} if parallel_min is None else {"parallel_min": parallel_min}
            res = tau_kernel.tau_exact(sub, bg, counts, threads=threads, **par)
        elif method == "cmap":
            res = tau_kernel.tau_grid(sub, bg, counts)
        else:
            raise ConfigError(f"tau method must be 'exact' or 'cmap', got {method!r}")
        # counts == 0 already gives NaN in both kernels; + 0.0 turns -0.0 into 0.0
        res = res.astype(np.float32) + np.float32(0.0)
        if full:
            return res
        out = np.full(values.shape, np.nan, dtype=np.float32)
        out[have] = res
        return out


def load_background(store: Store, level: str, tail: str = "both") -> Background | None:
    """The stored background of ``level`` built from queries of ``tail``, or None if the store
    has none of that kind."""
    key = background_key(level, tail)
    entry = store.manifest.get("backgrounds", {}).get(key)
    if entry is None:
        return None
    if _entry_tail(key, entry) != tail:
        raise StoreError(f"background {key!r} of {store.path} records tail {entry.get('tail')!r}, not {tail!r}; rebuild it")
    check_format_version(
        entry.get("format_version", 1), BACKGROUND_FORMAT_VERSION, what=f"τ background {key!r}", path=store.path / "manifest.json"
    )
    ids, values, counts = read_background_files(store, key, entry)
    return Background(
        level, pd.Index(ids, dtype=object), values, counts, tail=tail, metric=str(entry.get("metric", BACKGROUND_METRIC)), entry=dict(entry)
    )


def _sorted_abs(matrix: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    from opencmap.kernels.tau import sorted_abs_background

    m = np.asarray(matrix, dtype=np.float32)
    valid = np.isfinite(m) if mask is None else (mask & np.isfinite(m))
    values, counts = sorted_abs_background(m, valid)
    return np.asarray(values, dtype=np.float32), np.asarray(counts, dtype=np.int32)


def _cell_mask(row_cells: np.ndarray, query_cells: np.ndarray) -> np.ndarray:
    return row_cells[:, None] == query_cells[None, :]


def build_background(
    store: Store | str,
    *,
    query_sigs: Sequence[str] | None = None,
    n_genes: int = 50,
    query_space: str | None = None,
    space: str | None = None,
    symmetric: bool = True,
    same_cell: bool = True,
    pcl: Any = None,
    tail: str | Sequence[str] = "both",
    progress: Callable[[int, int], None] | None = None,
    backend: Any = None,
) -> dict[str, Any]:
    """Build and store the tau backgrounds of every level; returns the manifest entries.

    Parameters
    ----------
    store:
        The store (opened or a path); its manifest gains a ``backgrounds`` entry.
    query_sigs:
        Signatures used as background queries (default: exemplars, ``is_exemplar_sig``; all if
        the store has no exemplar flag).
    n_genes:
        Top/bottom genes per background query (50, cmapM introspect).
    query_space, space:
        Space the query genes are picked from (default ``lm`` if present) and the scoring space.
    symmetric:
        Average the exemplar x exemplar block with its transpose.
    same_cell:
        Cell-specific levels use only background queries of the row's cell line (CMap).
    pcl:
        PCL definitions (GMT path or dict) for the ``pcl_cell`` / ``pcl_summary`` backgrounds.
    tail:
        Kind(s) of background: ``both`` (default; two-sided queries, WTCS), ``up`` (the top
        genes alone, ES_up), ``down`` (the bottom genes alone, -ES_dn), a list of them or
        ``all``. One-sided queries get tau only from a background of their tail. The tails
        built replace the store's backgrounds of those tails; other tails are kept.
    backend:
        Where the scoring runs (:mod:`opencmap.backends`; default: this process).

    Returns
    -------
    ``{key: manifest entry}``; keys are level names for ``both`` and ``<tail>/<level>`` otherwise
    (:func:`background_key`).
    """
    from opencmap.backends import resolve_backend
    from opencmap.query.introspect import signature_scores
    from opencmap.query.reference import ReferenceIndex, resolve_pcl

    tails = _parse_tails(tail)
    st = store if isinstance(store, Store) else Store(store)
    info = st.sig_info
    if query_sigs is None:
        qpos = np.flatnonzero(exemplar_mask(info))
    else:
        qpos = st.sig_positions(query_sigs)
    if len(qpos) < 2:
        raise StoreError(f"a background needs at least 2 query signatures, got {len(qpos)}")
    index = ReferenceIndex.of(st, resolve_pcl(pcl, st)[0])
    backend = resolve_backend(backend)
    kernel = {"threads": backend.numba_threads(), **backend.settings.kernel_options("parallel_min")}

    def score(positions: np.ndarray, report: Callable[[int, int], None] | None) -> dict[str, np.ndarray]:
        # WTCS and the ES of each set (a one-sided query's score is its set's ES)
        return signature_scores(
            st, positions=positions, n_genes=n_genes, query_space=query_space, space=space, metric=BACKGROUND_METRIC,
            min_genes=1, max_genes=max(n_genes, 150), index=index, progress=report, backend=backend,
        )  # fmt: skip

    cfg = backend.settings
    chunk = query_chunk(len(info), len(qpos), cfg.background_memory, fixed=cfg.query_block_bytes + cfg.es_block_bytes)
    options = (symmetric, same_cell, n_genes, query_space, space)
    # one scoring pass of every query, or (over the memory budget) one per chunk of queries, in the lock
    raw = score(qpos, progress) if chunk >= len(qpos) else None
    created = datetime.now(UTC).isoformat(timespec="seconds")
    from opencmap.io.store.writer import _cleanup_locked, _disk_full, _is_disk_full, store_writer

    # one atomic step: every file goes into new folders (named by the manifest's next generation)
    # that the manifest, rewritten last with one rename, switches to; the old folders are removed
    # afterwards (or, if killed, by the next run / `store info --verify`)
    with store_writer(st.path):
        current = Store(st.path)
        if current.manifest.get("generation", 0) != st.manifest.get("generation", 0) or current.n_signatures != st.n_signatures:
            raise StoreError(f"the store {st.path} changed while its backgrounds were computed; run `opencmap store background` again")
        try:
            if raw is not None:
                entries_all = _write_backgrounds(st, tails, raw, index, info, qpos, *options, created, kernel)
            else:
                log.info("tau backgrounds of %d queries x %d signatures: %d queries at a time (background_memory=%d)",
                         len(qpos), len(info), chunk, backend.settings.background_memory)  # fmt: skip
                entries_all = _write_backgrounds_chunked(
                    st, tails, score, chunk, index, info, qpos, options, created, kernel, backend.settings.background_memory, progress
                )  # fmt: skip
        except BaseException as exc:
            _cleanup_locked(st.path)  # the new folders are not in the manifest
            if _is_disk_full(exc):
                raise _disk_full(exc, f"writing the tau backgrounds of {st.path}", st.path) from exc  # type: ignore[arg-type]
            raise
    log.info("built tau backgrounds %s from %d queries", sorted(entries_all), len(qpos))
    return entries_all


def _write_backgrounds(st: Store, tails: Any, raw: Any, engine: Any, info: pd.DataFrame, qpos: np.ndarray, symmetric: bool,
                       same_cell: bool, n_genes: int, query_space: str | None, space: str | None, created: str,
                       kernel: dict[str, int]) -> dict[str, Any]:
    cells = info["cell_id"].astype(str).to_numpy(dtype=object) if "cell_id" in info.columns else np.full(len(info), "", dtype=object)
    qcells = cells[qpos]
    cols = np.arange(len(qpos))
    gen = next_generation(st)
    root = st.path / "backgrounds"
    root.mkdir(exist_ok=True)
    entries_all: dict[str, Any] = {}
    for t in tails:
        score = _tail_score(raw, t)
        ncs = np.array(engine.normalise(score, **kernel), dtype=np.float32)  # (S, Qb), the engine's default NCS
        if symmetric:
            block = ncs[qpos]
            ncs[qpos] = 0.5 * (block + block.T)
        ncs[qpos, cols] = np.nan  # a signature's connection to itself is not background
        levels: dict[str, tuple[pd.Index, np.ndarray, np.ndarray | None]] = {
            "sig": (pd.Index(info["sig_id"].astype(str), dtype=object), ncs, _cell_mask(cells, qcells) if same_cell else None)
        }
        for level, (index, values) in engine.summary_plan.apply(ncs, **kernel).items():
            mask = None
            if same_cell and level in CELL_LEVELS:
                mask = _cell_mask(index["cell_id"].astype(str).to_numpy(dtype=object), qcells)
            levels[level] = (pd.Index(index["id"].astype(str), dtype=object), values, mask)
        tail_root = root if t == "both" else root / t
        tail_root.mkdir(exist_ok=True)
        params = _params(st, t, (symmetric, same_cell, n_genes, query_space, space), created)
        for level, (ids, values, mask) in levels.items():
            sorted_vals, counts = _sorted_abs(values, mask)
            key = background_key(level, t)
            entries_all[key] = write_background(
                st, key, gen, ids, sorted_vals, counts, tail=t, metric=BACKGROUND_METRIC, n_queries=len(qpos), params=params
            )
        write_background_queries(tail_root, params, info["sig_id"].iloc[qpos])
    # the tails built replace every earlier background of those tails; other tails stay
    commit_backgrounds(st, entries_all, replace_tails=tails)
    return entries_all


#: client bytes per (store signature, background query) of a build done in one pass (scores of
#: three kinds, NCS, summaries, masks and sorted copies; ~57 measured, benchmarks/bench_background_memory.py)
BYTES_PER_PAIR = 64


def query_chunk(n_sigs: int, n_queries: int, budget: int, fixed: int = 0) -> int:
    """Background queries scored at a time within ``budget`` bytes (:attr:`Settings.background_memory`):
    all of them when the whole build fits, else as many as fit beside ``fixed`` bytes (the
    scorer's block buffers) and the (Q, Q) block of the queries' own rows kept for the symmetric
    step (at least one)."""
    if fixed + n_sigs * n_queries * BYTES_PER_PAIR <= budget:
        return n_queries
    room = budget - fixed - 4 * n_queries * n_queries
    return int(max(1, min(n_queries - 1, room // (BYTES_PER_PAIR * max(n_sigs, 1)))))


def _tail_score(raw: dict[str, np.ndarray], t: str) -> np.ndarray:
    if t == "both":
        return raw[BACKGROUND_METRIC]
    if t == "up":
        return raw["es_up"]
    return -np.asarray(raw["es_dn"])


def _params(st: Store, t: str, options: tuple[Any, ...], created: str) -> dict[str, Any]:
    symmetric, same_cell, n_genes, query_space, space = options
    return {
        "created": created,
        "n_genes": n_genes,
        "query_space": query_space or ("lm" if "lm" in st.spaces else st.default_space),
        "space": st.space(space).name,
        "symmetric": symmetric,
        "same_cell": same_cell,
        "tail": t,
        "metric": BACKGROUND_METRIC,
    }


def _write_backgrounds_chunked(st: Store, tails: list[str], score: Callable[..., dict[str, np.ndarray]], chunk: int, engine: Any,
                               info: pd.DataFrame, qpos: np.ndarray, options: tuple[Any, ...], created: str,
                               kernel: dict[str, int], budget: int, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """:func:`_write_backgrounds` a chunk of query columns at a time, the same bytes.

    Column independence: scores, summaries (``maxq`` per column) and sorting (per row) are per
    column / row; NCS (``gutc``) is per column except each group's "has a positive / negative
    reference score in some column" flags, OR-ed over the chunks first (:meth:`ReferenceIndex.group_signs`)
    and given to every chunk's normalisation. Passes: score every chunk (raw scores to disk, the
    flags), then per tail: NCS per chunk (to disk; the (Q, Q) rows of the queries kept), the
    symmetric block, summaries per chunk (to disk), and each level's sorted |NCS| a block of rows
    at a time."""
    from opencmap.io.store.backgrounds import background_scratch, load_scratch, save_scratch

    symmetric, same_cell = options[0], options[1]
    cells = info["cell_id"].astype(str).to_numpy(dtype=object) if "cell_id" in info.columns else np.full(len(info), "", dtype=object)
    qcells = cells[qpos]
    n_s, n_q = len(info), len(qpos)
    cols = np.arange(n_q)
    spans = [(c0, min(c0 + chunk, n_q)) for c0 in range(0, n_q, chunk)]
    plan = engine.summary_plan
    levels: dict[str, tuple[pd.Index, np.ndarray | None]] = {
        "sig": (pd.Index(info["sig_id"].astype(str), dtype=object), cells if same_cell else None)
    }
    for level, lv in plan.levels.items():
        row_cells = None
        if same_cell and level in CELL_LEVELS:
            row_cells = lv.index["cell_id"].astype(str).to_numpy(dtype=object)
        levels[level] = (pd.Index(lv.index["id"].astype(str), dtype=object), row_cells)
    rows = sum(len(ids) for ids, _ in levels.values())
    # at most at once: raw scores of every tail, one tail's level columns, two sorted copies of
    # its largest level, and the backgrounds written
    needed = 4 * n_q * (n_s * len(tails) + rows + 2 * max(len(ids) for ids, _ in levels.values()) + rows * len(tails))
    gen = next_generation(st)
    root = st.path / "backgrounds"
    root.mkdir(exist_ok=True)
    entries_all: dict[str, Any] = {}
    with background_scratch(st, gen, needed) as tmp:
        signs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for k, (c0, c1) in enumerate(spans):
            report = None if progress is None else (lambda done, total, k=k: progress(k * total + done, len(spans) * total))
            raw = score(qpos[c0:c1], report)
            for t in tails:
                values = _tail_score(raw, t)
                save_scratch(tmp / f"raw-{t}-{k}.npy", values)
                pos, neg = engine.group_signs(values)
                signs[t] = (pos, neg) if t not in signs else (signs[t][0] | pos, signs[t][1] | neg)
            del raw, values
        for t in tails:
            block = np.empty((n_q, n_q), dtype=np.float32)  # NCS of the queries' own rows
            for k, (c0, c1) in enumerate(spans):
                ncs = np.array(engine.normalise(load_scratch(tmp / f"raw-{t}-{k}.npy"), group_signs=signs[t], **kernel), dtype=np.float32)
                (tmp / f"raw-{t}-{k}.npy").unlink()
                block[:, c0:c1] = ncs[qpos]
                save_scratch(tmp / f"sig-{k}.npy", ncs)
                del ncs
            if symmetric:
                block = 0.5 * (block + block.T)
            block[cols, cols] = np.nan  # a signature's connection to itself is not background
            for k, (c0, c1) in enumerate(spans):
                ncs = load_scratch(tmp / f"sig-{k}.npy")
                ncs[qpos] = block[:, c0:c1]
                save_scratch(tmp / f"sig-{k}.npy", ncs)
                for level, (_, values) in plan.apply(ncs, **kernel).items():
                    save_scratch(tmp / f"{level}-{k}.npy", values)
                del ncs
            del block
            tail_root = root if t == "both" else root / t
            tail_root.mkdir(exist_ok=True)
            params = _params(st, t, options, created)
            for level, (ids, row_cells) in levels.items():
                parts = [tmp / f"{level}-{k}.npy" for k in range(len(spans))]
                mask_cells = None if row_cells is None else (row_cells, qcells)
                sorted_vals, counts = _sorted_abs_blocks(parts, len(ids), n_q, mask_cells, budget, tmp / f"{level}-sorted")
                key = background_key(level, t)
                entries_all[key] = write_background(
                    st, key, gen, ids, sorted_vals, counts, tail=t, metric=BACKGROUND_METRIC, n_queries=n_q, params=params
                )
                for part in (*parts, sorted_vals):
                    part.unlink()
            write_background_queries(tail_root, params, info["sig_id"].iloc[qpos])
    commit_backgrounds(st, entries_all, replace_tails=tails)
    return entries_all


def _sorted_abs_blocks(parts: list[Any], n_rows: int, n_q: int, mask_cells: tuple[np.ndarray, np.ndarray] | None,
                       budget: int, stem: Any) -> tuple[Any, np.ndarray]:
    """:func:`_sorted_abs` of the column chunks ``parts`` (files (n_rows, chunk)) read a block of
    rows at a time; returns the sorted values as a ``.npy`` file (n_rows, width) holding the bytes
    of the in-memory result, and the counts."""
    from opencmap.io.store.backgrounds import new_scratch, read_scratch_rows, write_scratch_rows

    step = max(1, budget // max(BYTES_PER_PAIR * n_q, 1))  # rows per block, each value read, copied, masked, sorted
    wide, out = stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + "-w.npy")
    new_scratch(wide, (n_rows, n_q))
    counts = np.zeros(n_rows, dtype=np.int32)
    width = 0
    for r0 in range(0, n_rows, step):
        r1 = min(r0 + step, n_rows)
        m = np.concatenate([read_scratch_rows(p, r0, r1) for p in parts], axis=1)
        mask = None if mask_cells is None else _cell_mask(mask_cells[0][r0:r1], mask_cells[1])
        vals, counts[r0:r1] = _sorted_abs(m, mask)
        padded = np.full((r1 - r0, n_q), np.nan, dtype=np.float32)
        padded[:, : vals.shape[1]] = vals
        write_scratch_rows(wide, r0, padded)
        width = max(width, vals.shape[1])
    new_scratch(out, (n_rows, width))  # the width is known once every row is sorted
    for r0 in range(0, n_rows, step):
        write_scratch_rows(out, r0, read_scratch_rows(wide, r0, min(r0 + step, n_rows))[:, :width])
    wide.unlink()
    return out, counts
