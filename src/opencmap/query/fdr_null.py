"""FDR q-values of connectivity scores: the CMap method (diagnosed) and random-query nulls with BH.

Two methods, named in every result (``params["fdr_method"]``, :attr:`QueryResult.fdr`):

``cmap``
    cmapM's ``computeFDRGsea`` (spec §6.5; :func:`opencmap.kernels.fdr.fdr_gsea`), bit for bit:
    treatment vs null-signature (``is_null_sig`` / ``ctl_*``) ECDFs of the NCS per side. It rests
    on the null signatures of each side; :func:`cmap_fdr` reports their number per query and side
    and flags a side where the method says nothing (too few nulls, a degenerate line, tied nulls,
    a cut point that depends on the row order) in the ``fdr_flag`` metric and in notes.

``random_query``
    The nominal p-value of each signature's score against the scores of ``n_random`` random
    queries of the query's sizes (up and down genes drawn uniformly without replacement from the
    scoring space, disjoint) on that same signature, ``p = (1 + #{|null| >= |x|}) / (1 + n)``,
    then Benjamini-Hochberg across the signatures of each query (spec §6.5, signatureSearch's
    approach). It depends neither on the row order nor on the store's null signatures.

``random_query_pooled``
    The same random-query nulls, with a finer tail than ``1 / (1 + n_random)``: each signature
    keeps its own share of non-zero null scores and their mean (scale); the shape of the non-zero
    |score| / scale is pooled over all signatures (as GSEA pools normalised scores), so p-values
    reach ~1 / (n_signatures * n_random) (:func:`opencmap.kernels.fdr.random_query_pooled_pvalues`).

The random-query nulls depend only on the store, the scoring space and metric (and its options)
and the query's sizes ``(n_up, n_down)``, so they are cached per size in the store folder::

    <store>/fdr_null/<key>/counts.npy   int32 (n_signatures,) finite null values per signature
    <store>/fdr_null/<key>/nonzero.npy  int (n_signatures,) non-zero null values per signature
    <store>/fdr_null/<key>/scale.npy    float (n_signatures,) mean non-zero |score| per signature
    <store>/fdr_null/<key>/pool.npy     float (<= 4M,) sorted non-zero |score| / scale, pooled
    <store>/fdr_null/<key>/values.npy   float32 (n_signatures, n_random) sorted |score|, NaN last
                                        (kept only for the ``random_query`` method)
    <store>/fdr_null/<key>/values.tiles.npy  their tile hashes (:mod:`opencmap.kernels.tilehash`)
    <store>/fdr_null/<key>/meta.json    key, seed, the store fingerprint it was built against,
                                        checksums of the summary files

The summary files are checked against their checksums, and the values against their tile hashes,
when a cache is loaded (once per open store); a cache that does not match is rebuilt (logged).

built on first use (logged) or ahead of time with :func:`build_fdr_nulls`
(``opencmap store background --fdr-null UP,DOWN``). A cache built before the store changed
(appended or compacted signatures) is rebuilt. Randomness: ``np.random.default_rng([seed, n_up,
n_down])`` with the recorded ``seed``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opencmap.errors import ConfigError, OpenCMapWarning, StoreCorruptError
from opencmap.io.store.checksums import _file_checksum, tile_entry
from opencmap.io.versions import check_format_version
from opencmap.query.store import Store

__all__ = [
    "FDR_METHODS",
    "DEFAULT_FDR_METHOD",
    "DEFAULT_NULL_SIZE",
    "DEFAULT_FDR_SEED",
    "FDRWarning",
    "FdrNull",
    "FdrOutcome",
    "cmap_fdr",
    "random_query_fdr",
    "load_or_build_null",
    "build_fdr_nulls",
    "random_queries",
]

log = logging.getLogger(__name__)

FDR_METHODS = ("cmap", "random_query", "random_query_pooled")
#: chosen on the synthetic compendium's calibration (benchmarks/bench_fdr_calibration.py): at q < 0.05
#: false-discovery proportion 0.014-0.03 among zero-effect signatures, power ~0.7 (random_query:
#: power 0.29 on the demo store, limited by its 1/(1+n) resolution; cmap: FDP 0.6-0.8)
DEFAULT_FDR_METHOD = "random_query_pooled"
DEFAULT_NULL_SIZE = 1000
DEFAULT_FDR_SEED = 0
NULL_FORMAT_VERSION = 1
_NULL_DIR = "fdr_null"
# random queries scored per engine pass (bounds the (S, chunk) score matrix)
_CHUNK = 250


class FDRWarning(OpenCMapWarning):
    """The FDR of a query side says nothing (CMap method: too few / tied nulls, a degenerate line,
    a row-order-dependent cut point), or its resolution is limited (random-query nulls)."""


# ---------------------------------------------------------------------------------- outcome
@dataclass
class FdrOutcome:
    """What an FDR step adds to a result: sig-level metrics, per-query records and notes."""

    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # JSON-ready, QueryResult.fdr
    notes: list[str] = field(default_factory=list)


def _nlog10(q: np.ndarray) -> np.ndarray:
    return (-np.log10(q.astype(np.float64) + np.finfo(np.float64).eps)).astype(np.float32)


# ---------------------------------------------------------------------------------- cmap
def cmap_fdr(ncs_values: np.ndarray, is_null: np.ndarray, query_names: Sequence[str], *, threads: int = 1) -> FdrOutcome:
    """cmapM q-values (unchanged) with the side diagnostics of :func:`~opencmap.kernels.fdr.fdr_gsea_sides`.

    Metrics: ``fdr_q``, ``fdr_q_nlog10`` and ``fdr_flag`` (per signature: the flag bits of the side
    its score falls on -- ``row_order_dependent`` only on the scores whose q can move with the row
    order; 0 where the method has something to say, and for zero / NaN scores). ``threads``: of
    the q-value kernel (given by the backend).
    """
    from opencmap.kernels.fdr import FLAG_NAMES, FLAG_ORDER, fdr_gsea, fdr_gsea_sides, flag_names

    q = np.asarray(fdr_gsea(ncs_values, is_null, threads=threads), dtype=np.float32)
    diag = fdr_gsea_sides(ncs_values, is_null)
    x = np.asarray(ncs_values)
    flags = np.zeros(x.shape, dtype=np.uint8)
    for s, side in enumerate((x > 0, x < 0)):
        code = np.broadcast_to(diag["flag"][s], x.shape)
        bound = np.broadcast_to(diag["order_bound"][s], x.shape)
        with np.errstate(invalid="ignore"):
            beyond = (x >= bound) if s == 0 else (x <= bound)
        # the side's flags, except row-order dependence: only where the q can move with the order
        per_sig = np.where(beyond, code, code & ~FLAG_ORDER).astype(np.uint8)
        flags[side] = per_sig[side]
    out = FdrOutcome(metrics={"fdr_q": q, "fdr_q_nlog10": _nlog10(q), "fdr_flag": flags})
    per_query = {}
    flagged: dict[str, list[str]] = {}
    for j, name in enumerate(query_names):
        rec = {}
        for s, side in enumerate(("positive", "negative")):
            code = int(diag["flag"][s, j])
            rec[side] = {
                "n_null": int(diag["n_null"][s, j]),
                "n_treatment": int(diag["n_treatment"][s, j]),
                "n_null_distinct": int(diag["n_null_distinct"][s, j]),
                "flag": flag_names(code),
            }
            for bit, fname in FLAG_NAMES.items():
                if code & bit:
                    flagged.setdefault(fname, []).append(f"{name} ({side}, {rec[side]['n_null']} nulls)")
        per_query[name] = rec
    n_null = int(np.count_nonzero(is_null))
    out.info = {"method": "cmap", "null": "null signatures (is_null_sig / ctl_*)", "n_null_signatures": n_null, "queries": per_query}
    out.notes.append(
        f"fdr_q: cmap method (cmapM computeFDRGsea) against {n_null} null signatures; null scores per query "
        "and side in the result's fdr record; fdr_flag marks the sides where it says nothing"
    )
    meaning = {
        "too_few_nulls": "<= 2 null (or treatment) scores: every q there is 1 by rule, not evidence",
        "degenerate_line": "3-4 null scores: q is a straight line from ~1 to 0, not evidence",
        "tied_nulls": "tied null scores: cmapM itself fails here, q is not evidence",
        "row_order_dependent": "the cut point depends on the row order: other q-values for the same scores in another order",
    }
    for fname, where in flagged.items():
        more = f" and {len(where) - 5} more" if len(where) > 5 else ""
        note = f"fdr_q ({fname}): {meaning[fname]} -- {', '.join(where[:5])}{more}"
        out.notes.append(note)
        warnings.warn(note, FDRWarning, stacklevel=4)
    return out


# ---------------------------------------------------------------------------------- random nulls
@dataclass
class FdrNull:
    """The random-query null of one query size: per signature the number of finite and of non-zero
    |scores| of ``n_random`` random queries and the mean non-zero |score| (scale), the pooled
    sorted non-zero |score| / scale (:func:`~opencmap.kernels.fdr.pooled_null`), and -- when kept
    (``random_query``) -- every signature's sorted |scores| (``values``, (S, n_random), NaN last)."""

    key: str
    params: dict[str, Any]
    counts: np.ndarray  # (S,) int
    scale: np.ndarray  # (S,) float
    nonzero: np.ndarray  # (S,) int
    pool: np.ndarray  # (P,) sorted
    values: np.ndarray | None = None
    path: Path | None = None
    cached: bool = False  # read from the store folder rather than computed now

    def pooled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(scale, n_nonzero, pooled)`` for :func:`~opencmap.kernels.fdr.random_query_pooled_pvalues`."""
        return self.scale, self.nonzero, self.pool


def store_fingerprint(store: Store) -> str:
    """Identifies the store's signatures (segments, their sizes and checksums)."""
    segs = [
        (seg["name"], int(seg["n_signatures"]), sorted((k, str(v.get("checksum", ""))) for k, v in seg["files"].items()))
        for seg in store.manifest["segments"]
    ]
    text = json.dumps([store.manifest.get("created"), int(store.n_signatures), segs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _null_params(metric: str, space: str, options: dict[str, Any], n_up: int, n_down: int, n_random: int, seed: int) -> dict[str, Any]:
    from opencmap.query.methods import get_method

    options = get_method(metric).options(dict(options))  # defaults filled in: one key per setting
    if "es_tail" in options and (n_up == 0 or n_down == 0):
        options["es_tail"] = "up" if n_down == 0 else "down"  # one-sided: the tail its sides give (engine rule)
    return {
        "format_version": NULL_FORMAT_VERSION,
        "metric": metric,
        "space": space,
        "options": {k: options[k] for k in sorted(options)},
        "n_up": int(n_up),
        "n_down": int(n_down),
        "n_random": int(n_random),
        "seed": int(seed),
        "rng": f"numpy.random.default_rng([{int(seed)}, {int(n_up)}, {int(n_down)}]), genes drawn with Generator.choice(replace=False)",
    }


def _key(params: dict[str, Any]) -> str:
    opt = hashlib.sha256(json.dumps(params["options"], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{params['metric']}-{params['space']}-up{params['n_up']}-dn{params['n_down']}-n{params['n_random']}-seed{params['seed']}-{opt}"


def random_queries(gene_ids: Sequence[str], n_up: int, n_down: int, n_random: int, rng: np.random.Generator) -> list[Any]:
    """``n_random`` queries of ``n_up`` up and ``n_down`` down genes (disjoint) drawn from ``gene_ids``."""
    from opencmap.query.genesets import Query

    ids = np.asarray(list(gene_ids), dtype=object)
    if n_up + n_down > len(ids):
        raise ConfigError(f"random queries of {n_up} + {n_down} genes need that many genes; the space has {len(ids)}")
    out = []
    for r in range(n_random):
        pick = ids[rng.choice(len(ids), n_up + n_down, replace=False)]
        out.append(Query(f"random_{r}", up=tuple(pick[:n_up]), down=tuple(pick[n_up:])))
    return out


def _compute_null(
    store: Store, params: dict[str, Any], out: np.ndarray, progress: Callable[[int, int], None] | None = None, backend: Any = None
) -> np.ndarray:
    """Score the random queries into ``out`` (S, n_random) as |score|, then sort each row."""
    from opencmap.query.reference import ReferenceIndex
    from opencmap.query.scoring import score_only

    sp = store.space(params["space"])
    rng = np.random.default_rng([params["seed"], params["n_up"], params["n_down"]])
    queries = random_queries(list(sp.gene_ids), params["n_up"], params["n_down"], params["n_random"], rng)
    index = ReferenceIndex.of(store)
    n = len(queries)
    for c0 in range(0, n, _CHUNK):
        chunk = queries[c0 : c0 + _CHUNK]
        with warnings.catch_warnings():  # the random queries' own notes (e.g. one-sided) are expected
            warnings.simplefilter("ignore", OpenCMapWarning)
            scores = score_only(
                store,
                chunk,
                metric=params["metric"],
                space=params["space"],
                min_genes=1,
                max_genes=max(params["n_up"], params["n_down"], 1),
                index=index,
                backend=backend,
                **params["options"],
            )
        out[:, c0 : c0 + len(chunk)] = np.abs(scores[params["metric"]])
        if progress is not None:
            progress(min(c0 + _CHUNK, n), n)
    step = max(1, (64 << 20) // max(1, out.shape[1] * 4))
    for r0 in range(0, out.shape[0], step):  # sort in row blocks (NaN last)
        out[r0 : r0 + step] = np.sort(out[r0 : r0 + step], axis=1)
    return np.asarray(np.count_nonzero(np.isfinite(out), axis=1), dtype=np.int32)


_SUMMARY = ("counts", "scale", "nonzero", "pool")


def _meta_ok(meta: dict[str, Any], params: dict[str, Any], fingerprint: str, values: bool) -> bool:
    return (
        meta.get("params") == json.loads(json.dumps(params))
        and meta.get("store_fingerprint") == fingerprint
        and (meta.get("has_values", False) or not values)
    )


def _checked_cache_file(folder: Path, name: str, meta: dict[str, Any]) -> Path:
    """``folder / name`` once its checksum matches the cache's ``meta.json`` (caches written before
    checksums: as they are)."""
    from opencmap.io.store.reader import _checked_file

    return _checked_file(folder / name, (meta.get("checksums") or {}).get(name))


def _check_cache_values(folder: Path, vals: np.ndarray, meta: dict[str, Any]) -> None:
    """Every tile of the cached per-signature null values against their hashes (read whole by the
    ``random_query`` method; checked once per load)."""
    from opencmap.kernels.tilehash import TILE_HASH_ALGO, check_tiles

    tiles = meta.get("tile_hashes")
    if not tiles:
        return
    if tiles.get("algo") != TILE_HASH_ALGO:
        raise StoreCorruptError(f"{folder / 'meta.json'} names an unknown tile hash {tiles.get('algo')!r}", path=folder / "meta.json")
    sums = np.load(folder / tiles["file"], mmap_mode="r")
    cols = int(tiles["cols"])
    if sums.shape != (vals.shape[0], max(1, -(-vals.shape[1] // cols))):
        raise StoreCorruptError(f"{folder / tiles['file']} does not fit {folder / 'values.npy'}", path=folder / tiles["file"])
    bad = check_tiles(vals, sums, np.zeros(sums.shape, np.uint8), np.arange(vals.shape[0]), 0, vals.shape[1], cols)
    if bad is not None:
        raise StoreCorruptError(f"{folder / 'values.npy'} is corrupt: signature {bad[0]}, tile {bad[1]} does not match its hash",
                                path=folder / "values.npy")  # fmt: skip


def load_or_build_null(
    store: Store,
    *,
    n_up: int,
    n_down: int,
    metric: str = "wtcs",
    space: str | None = None,
    options: dict[str, Any] | None = None,
    n_random: int = DEFAULT_NULL_SIZE,
    seed: int = DEFAULT_FDR_SEED,
    values: bool = False,
    cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    backend: Any = None,
) -> FdrNull:
    """The random-query null of one query size: read from the store's cache, else computed (and
    cached when the store folder is writable; otherwise kept in memory with a log line).

    ``values``: also keep every signature's sorted null (``n_signatures x n_random`` float32, the
    ``random_query`` method); the pooled method needs only the per-signature summary.
    ``backend``: where the random queries are scored (:mod:`opencmap.backends`; default: here).
    """
    if n_random < 1:
        raise ConfigError(f"the random-query null needs at least 1 random query, got {n_random}")
    sp = store.space(space)
    params = _null_params(metric, sp.name, dict(options or {}), n_up, n_down, n_random, seed)
    key = _key(params)
    folder = store.path / _NULL_DIR / key
    fingerprint = store_fingerprint(store)
    meta_path = folder / "meta.json"
    if cache and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            stored = meta.get("params") if isinstance(meta, dict) else None
            check_format_version(
                (stored or {}).get("format_version", NULL_FORMAT_VERSION) if isinstance(stored, dict) else NULL_FORMAT_VERSION,
                NULL_FORMAT_VERSION, what="FDR null cache", path=meta_path, fix="upgrade opencmap or delete that folder",
            )  # fmt: skip
            if _meta_ok(meta, params, fingerprint, values):
                parts = {name: np.load(_checked_cache_file(folder, f"{name}.npy", meta)) for name in _SUMMARY}
                vals = np.load(folder / "values.npy", mmap_mode="r") if meta.get("has_values") else None
                if vals is not None:
                    _check_cache_values(folder, vals, meta)
                if parts["counts"].shape == (store.n_signatures,) and (vals is None or vals.shape == (store.n_signatures, n_random)):
                    log.debug("random-query null %s read from %s", key, folder)
                    return FdrNull(key, params, values=vals, path=folder, cached=True, **parts)
            log.info(
                "random-query null %s in %s was built for another store state or settings (or without per-signature values); rebuilding it",
                key, folder,
            )  # fmt: skip
        except StoreCorruptError as exc:
            log.warning("random-query null cache %s is corrupt (%s); rebuilding it", folder, exc)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("random-query null cache %s is unreadable (%s); rebuilding it", folder, exc)
    log.info(
        "computing the random-query FDR null for %d up / %d down genes: %d random queries (seed %d) against %d signatures%s",
        n_up, n_down, n_random, seed, store.n_signatures, f"; caching it in {folder}" if cache else "",
    )  # fmt: skip
    if cache:
        try:
            return _build_cached(store, params, key, folder, fingerprint, values, progress, backend)
        except OSError as exc:
            log.warning("cannot cache the random-query null in %s (%s); computing it in memory", folder, exc)
    from opencmap.kernels.fdr import pooled_null

    vals = np.empty((store.n_signatures, n_random), dtype=np.float32)
    counts = _compute_null(store, params, vals, progress, backend)
    scale, nonzero, pool = pooled_null(vals, counts)
    return FdrNull(key, params, counts, scale, nonzero, pool, values=vals if values else None, cached=False)


def _build_cached(
    store: Store,
    params: dict[str, Any],
    key: str,
    folder: Path,
    fingerprint: str,
    keep_values: bool,
    progress: Callable[[int, int], None] | None,
    backend: Any = None,
) -> FdrNull:
    from opencmap.kernels.fdr import pooled_null

    from opencmap.io.store.writer import _cleanup_fdr_null

    root = folder.parent
    root.mkdir(exist_ok=True)
    _cleanup_fdr_null(root, [])  # what killed builds left
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.pid{os.getpid()}-", dir=root))
    try:
        vals = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np.float32, shape=(store.n_signatures, params["n_random"]))
        counts = _compute_null(store, params, vals, progress, backend)
        vals.flush()
        scale, nonzero, pool = pooled_null(vals, counts)
        del vals
        if not keep_values:
            (tmp / "values.npy").unlink()
        for name, arr in zip(_SUMMARY, (counts, scale, nonzero, pool), strict=True):
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        meta = {"params": params, "store_fingerprint": fingerprint, "n_signatures": store.n_signatures, "has_values": keep_values,
                "checksums": {f"{name}.npy": _file_checksum(tmp / f"{name}.npy") for name in _SUMMARY}}  # fmt: skip
        if keep_values:
            meta["tile_hashes"] = tile_entry(tmp, "values.npy")[0]
        (tmp / "meta.json").write_text(json.dumps(meta))
        from opencmap.io.store.writer import _exchange, _fault

        _fault("fdr_null:before-switch")
        if folder.exists() and _exchange(tmp, folder):  # one atomic step; tmp now holds the old cache
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("cached the random-query null %s in %s", key, folder)
    vals = np.load(folder / "values.npy", mmap_mode="r") if keep_values else None
    return FdrNull(key, params, counts, scale, nonzero, pool, values=vals, path=folder, cached=False)


def build_fdr_nulls(
    store: Store | str,
    sizes: Sequence[tuple[int, int]],
    *,
    metric: str = "wtcs",
    space: str | None = None,
    options: dict[str, Any] | None = None,
    n_random: int = DEFAULT_NULL_SIZE,
    seed: int = DEFAULT_FDR_SEED,
    values: bool = False,
    progress: Callable[[int, int], None] | None = None,
    backend: Any = None,
) -> list[FdrNull]:
    """Compute and cache the random-query nulls of the given ``(n_up, n_down)`` sizes ahead of time
    (``values``: also every signature's full null, for the ``random_query`` method; ``backend``:
    where they are scored, :mod:`opencmap.backends`)."""
    tail = (options or {}).get("es_tail")
    for u, d in sizes:
        need = tail is None or u + d == 0 or {"both": u > 0 and d > 0, "up": u > 0, "down": d > 0}.get(tail, True)
        if not need:
            raise ConfigError(
                f"es_tail={tail!r} needs {'up and down' if tail == 'both' else tail} genes but the size {u},{d} has "
                f"{'only up' if d == 0 else 'only down'}: queries of that size are scored on "
                f"their {'up' if d == 0 else 'down'} tail, so give --es-tail {'up' if d == 0 else 'down'} or leave --es-tail out"
            )
    st = store if isinstance(store, Store) else Store(store)
    return [
        load_or_build_null(
            st, n_up=u, n_down=d, metric=metric, space=space, options=options, n_random=n_random, seed=seed, values=values, progress=progress,
            backend=backend,
        )  # fmt: skip
        for u, d in sizes
    ]


def random_query_fdr(
    store: Store,
    scores: np.ndarray,
    queries: Sequence[Any],
    *,
    metric: str,
    space: str,
    options: dict[str, Any],
    n_random: int = DEFAULT_NULL_SIZE,
    seed: int = DEFAULT_FDR_SEED,
    pooled: bool = False,
    nulls: dict[str, FdrNull] | None = None,
    backend: Any = None,
) -> FdrOutcome:
    """Random-query nominal p-values and BH q-values of raw ``scores`` (S, Q) of validated ``queries``.

    Metrics: ``fdr_p`` (nominal p), ``fdr_q`` (BH across the signatures of each query) and
    ``fdr_q_nlog10``. ``nulls`` is an in-memory cache by key (an engine's, reused across runs).
    ``backend``: where the nulls are built and the p-value kernel's threads (:mod:`opencmap.backends`).
    """
    from opencmap.backends import resolve_backend

    backend = resolve_backend(backend)
    from opencmap.kernels.fdr import bh, random_query_pooled_pvalues, random_query_pvalues

    x = np.asarray(scores)
    p = np.full(x.shape, np.nan, dtype=np.float64)
    per_query: dict[str, Any] = {}
    sizes: dict[tuple[int, int], list[int]] = {}
    for j, v in enumerate(queries):
        sizes.setdefault((len(v.up_rows), len(v.down_rows)), []).append(j)
    built = []
    for (n_up, n_down), cols in sizes.items():
        params = _null_params(metric, space, options, n_up, n_down, n_random, seed)
        key = _key(params)
        null = None if nulls is None else nulls.get(key)
        if null is None or (not pooled and null.values is None):
            null = load_or_build_null(
                store, n_up=n_up, n_down=n_down, metric=metric, space=space, options=options, n_random=n_random, seed=seed, values=not pooled,
                backend=backend,
            )  # fmt: skip
            if nulls is not None:
                nulls[key] = null
            if not null.cached:
                where = "" if null.path is not None else " (kept in memory: the store folder is not writable)"
                built.append(f"{n_up} up / {n_down} down{where}")
        if pooled:
            scale, nonzero, pool = null.pooled()
            p[:, cols] = random_query_pooled_pvalues(x[:, cols], null.counts, scale, nonzero, pool)
        else:
            assert null.values is not None
            p[:, cols] = random_query_pvalues(x[:, cols], null.values, null.counts, threads=backend.numba_threads())
        for j in cols:
            per_query[queries[j].name] = {
                "n_up": n_up,
                "n_down": n_down,
                "n_random": n_random,
                "seed": seed,
                "null_key": null.key,
                "min_p": (1.0 / (1.0 + n_random)) if not pooled else None,
            }
    q = bh(p, axis=0)
    out = FdrOutcome(metrics={"fdr_p": p.astype(np.float32), "fdr_q": q.astype(np.float32), "fdr_q_nlog10": _nlog10(q)})
    m = int(np.count_nonzero(np.isfinite(p[:, 0]))) if x.shape[1] else 0
    need = int(np.ceil(0.05 ** -1 * m / (1.0 + n_random)))
    name = "random_query_pooled" if pooled else "random_query"
    out.info = {
        "method": name,
        "null": f"{n_random} random queries of the query's sizes per signature (seed {seed})"
        + ("; non-zero |score| / scale pooled over signatures" if pooled else ""),
        "n_random": n_random,
        "seed": seed,
        "queries": per_query,
    }
    out.notes.append(
        f"fdr_q: {name} method -- nominal p of each signature's |{metric}| against {n_random} random queries "
        f"of the query's sizes (seed {seed}){', tail pooled over signatures' if pooled else ''}, Benjamini-Hochberg across {m} signatures"
    )
    if built:  # a cache event, not part of what the result used: identical results say the same
        log.info("random-query FDR nulls computed now (and cached in the store) for %s", ", ".join(built))
    if need > 1 and not pooled:
        note = (
            f"fdr_q resolution: the least p is 1/{n_random + 1}, so q < 0.05 needs at least {need} signatures at that p "
            f"among {m}; more random queries (fdr_null_size) or the random_query_pooled method give finer q"
        )
        out.notes.append(note)
        warnings.warn(note, FDRWarning, stacklevel=4)
    return out
