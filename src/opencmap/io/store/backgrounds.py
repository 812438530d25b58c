"""The tau background files of a store and their manifest entries.

Each level's background (of one tail) is a folder named by the store generation that commits it::

    backgrounds/<key>.g<N>/values.npy    float32 (n_rows, width) sorted |ncs| per row, NaN-padded
    backgrounds/<key>.g<N>/values.tiles.npy  its tile hashes (store format 3; checked when loaded)
    backgrounds/<key>.g<N>/counts.npy    int32 (n_rows,) number of background values per row
    backgrounds/<key>.g<N>/ids.parquet   the level's row ids (``id``)
    backgrounds/[<tail>/]queries.json    the build parameters and the background queries' sig_ids

``<key>`` is ``<level>`` for tail ``both`` and ``<tail>/<level>`` otherwise (stores written before
folders were named by generation use ``backgrounds/<key>``). The manifest's ``backgrounds``
maps each key to ``{dir, format_version, tail, metric, n_rows, width, n_queries, checksums,
params}`` (+ ``appended_since_built`` after an append). Files are written aside (new folders) and
:func:`commit_backgrounds` switches to them with the one manifest rename, then removes the folders
it replaced. Building the backgrounds and reading tau from them is
:mod:`opencmap.query.background`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opencmap.errors import StoreError
from opencmap.io.store.checksums import _file_checksum, tile_entry
from opencmap.io.store.writer import _fault

if TYPE_CHECKING:
    from opencmap.io.store.reader import Store

__all__ = ["BACKGROUND_FORMAT_VERSION", "entry_tail", "next_generation", "write_background", "write_background_queries",
           "commit_backgrounds", "read_background_files", "value_tile_sums", "values_first_mismatch", "values_mismatch", "background_scratch", "save_scratch", "load_scratch", "new_scratch", "read_scratch_rows", "write_scratch_rows"]

BACKGROUND_FORMAT_VERSION = 1


def entry_tail(key: str, entry: Mapping[str, Any]) -> str:
    """The tail of a manifest background entry (entries written before tails existed: from the key)."""
    return str(entry.get("tail") or (key.split("/", 1)[0] if "/" in key else "both"))


def next_generation(store: Store) -> int:
    """The generation the next commit of ``store`` will have (names the new background folders)."""
    return int(store.manifest.get("generation", 0)) + 1


@contextmanager
def background_scratch(store: Store, generation: int, needed: int) -> Iterator[Path]:
    """A temporary folder for the disk arrays of a background build done in chunks of queries,
    ``backgrounds/.scratch-g<generation>.tmp``, removed on exit (a killed build's is removed by the
    store's cleanup, like every ``.*.tmp``). :class:`~opencmap.errors.DiskSpaceError` first if the
    disk lacks ``needed`` bytes."""
    from opencmap.io.store.writer import check_disk

    folder = store.path / "backgrounds" / f".scratch-g{generation}.tmp"
    check_disk(
        folder, needed, what=f"building the tau backgrounds of {store.path} in chunks of queries (temporary files)",
        advice="free space, build fewer tails or background queries, or raise Settings.background_memory",
    )  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def save_scratch(path: Path, array: np.ndarray) -> None:
    """Write a temporary array of a chunked background build (``.npy``, not made durable)."""
    np.save(path, np.asarray(array), allow_pickle=False)


def load_scratch(path: Path) -> np.ndarray:
    """A temporary array written by :func:`save_scratch`, read into memory."""
    return np.load(path, allow_pickle=False)


def _layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)  # header only: no page is read
    layout = (tuple(mapped.shape), mapped.dtype, int(mapped.offset))
    del mapped
    return layout


def read_scratch_rows(path: Path, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of a temporary 2-D array (read from the file, not mapped: the pages read
    are not held by this process)."""
    shape, dtype, offset = _layout(path)
    width = int(np.prod(shape[1:], dtype=np.int64))
    with open(path, "rb") as fh:
        fh.seek(offset + r0 * width * dtype.itemsize)
        out = np.fromfile(fh, dtype=dtype, count=(r1 - r0) * width)
    return out.reshape((r1 - r0, *shape[1:]))


def new_scratch(path: Path, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
    """A new temporary ``.npy`` array of ``shape`` (its header as :func:`numpy.save` writes it),
    filled by :func:`write_scratch_rows`."""
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    del mapped


def write_scratch_rows(path: Path, r0: int, rows: np.ndarray) -> None:
    """Write ``rows`` at row ``r0`` of a temporary array made by :func:`new_scratch`."""
    shape, dtype, offset = _layout(path)
    width = int(np.prod(shape[1:], dtype=np.int64))
    with open(path, "r+b") as fh:
        fh.seek(offset + r0 * width * dtype.itemsize)
        np.ascontiguousarray(rows, dtype=dtype).tofile(fh)


def write_background(
    store: Store, key: str, generation: int, ids: Sequence[str], values: np.ndarray | Path, counts: np.ndarray, *,
    tail: str, metric: str, n_queries: int, params: Mapping[str, Any],
) -> dict[str, Any]:
    """Write one level's background files, durable, into ``backgrounds/<key>.g<generation>`` (a new
    folder); returns its manifest entry (not committed: see :func:`commit_backgrounds`).
    ``values`` may be a ``.npy`` file already written (a temporary array of a chunked build), copied."""
    from opencmap.io.atomic import atomic_write_path

    rel = f"backgrounds/{key}.g{generation}"
    folder = store.path / rel
    folder.mkdir(parents=True, exist_ok=False)
    for fname, arr in (("values.npy", values), ("counts.npy", counts)):
        with atomic_write_path(folder / fname) as tmp, open(tmp, "wb") as fh:
            if isinstance(arr, Path):
                with open(arr, "rb") as src:
                    shutil.copyfileobj(src, fh, 1 << 24)
            else:
                np.save(fh, arr, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        _fault("background:file-written")
    with atomic_write_path(folder / "ids.parquet") as tmp:
        pd.DataFrame({"id": list(ids)}).to_parquet(tmp, index=False)
    tiles, side, _ = tile_entry(folder, "values.npy")
    return {
        "dir": rel,
        "format_version": BACKGROUND_FORMAT_VERSION,
        "tail": tail,
        "metric": metric,
        "n_rows": int(len(ids)),
        "width": int((_layout(values)[0] if isinstance(values, Path) else values.shape)[1]),
        "n_queries": int(n_queries),
        "checksums": {f: _file_checksum(folder / f) for f in ("values.npy", "counts.npy", "ids.parquet", side)},
        "tile_hashes": tiles,
        "params": dict(params),
    }


def write_background_queries(folder: Path, params: Mapping[str, Any], query_sigs: Sequence[str]) -> None:
    """``queries.json`` of one tail's backgrounds: the build parameters and the queries' sig_ids."""
    from opencmap.io.atomic import atomic_write_path

    with atomic_write_path(folder / "queries.json") as tmp:
        tmp.write_text(json.dumps({**params, "query_sigs": [str(s) for s in query_sigs]}))


def commit_backgrounds(store: Store, entries: Mapping[str, Any], *, replace_tails: Collection[str]) -> None:
    """Commit written backgrounds (one atomic manifest switch): ``entries`` replace every earlier
    background of the tails ``replace_tails``, other tails stay; the replaced folders are removed
    afterwards (if killed before, by the next writer / ``store info --verify``). Call it holding
    the store's writer lock (:class:`~opencmap.io.store.writer.store_writer`)."""
    old = store.manifest.get("backgrounds", {})
    kept = {k: e for k, e in old.items() if entry_tail(k, e) not in replace_tails}
    _fault("background:before-switch")
    store.commit(backgrounds={**kept, **entries})
    for key, entry in old.items():
        if key not in kept:
            shutil.rmtree(store.path / (entry.get("dir") or f"backgrounds/{key}"), ignore_errors=True)


def read_background_files(store: Store, key: str, entry: Mapping[str, Any]) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """``(ids, values, counts)`` of a committed background (values memory-mapped); a
    :class:`StoreError` when they are unreadable or inconsistent."""
    from opencmap.io.store.reader import _checked_file

    folder = store.path / (entry.get("dir") or f"backgrounds/{key}")
    sums = entry.get("checksums", {})
    try:
        ids = pd.read_parquet(_checked_file(folder / "ids.parquet", sums.get("ids.parquet")))["id"].astype(str)
        values = np.load(folder / "values.npy", mmap_mode="r")
        counts = np.load(_checked_file(folder / "counts.npy", sums.get("counts.npy")))
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise StoreError(f"background {key!r} of {store.path} is unreadable ({exc}); rebuild it") from exc
    if values.shape[0] != len(ids) or counts.shape[0] != len(ids):
        raise StoreError(f"background {key!r} of {store.path} is inconsistent; rebuild it")
    if entry.get("tile_hashes"):
        _check_values(folder, values, entry["tile_hashes"], key)
    return ids, values, counts


def _check_values(folder: Path, values: np.ndarray, tiles: Mapping[str, Any], key: str) -> None:
    """Every tile of a background's values against its hashes (tau reads a few values of every
    row: the whole file is checked once, when the background is loaded for an open store)."""
    from opencmap.errors import StoreCorruptError
    from opencmap.io.store.reader import _REFUSE

    sums, cols = value_tile_sums(folder, values, tiles, key)
    bad = values_first_mismatch(values, sums, np.zeros(sums.shape, np.uint8), np.arange(values.shape[0]), cols)
    if bad is not None:
        path = folder / "values.npy"
        raise StoreCorruptError(f"store file {path} (τ background {key!r}) is corrupt: {values_mismatch(values, *bad)}; {_REFUSE}", path=path)


def value_tile_sums(folder: Path, values: np.ndarray, tiles: Mapping[str, Any], key: str) -> tuple[np.ndarray, int]:
    """``(hashes, cols)``: the tile hashes of a background's values (memory-mapped) and the tile
    width, from its manifest field ``tile_hashes``; :class:`StoreCorruptError` when the hash file
    is unreadable or does not fit ``values``."""
    from opencmap.errors import StoreCorruptError
    from opencmap.io.store.reader import _REFUSE
    from opencmap.kernels.tilehash import TILE_HASH_ALGO

    if tiles.get("algo") != TILE_HASH_ALGO:
        raise StoreError(f"unknown tile hash {tiles.get('algo')!r} of background {key!r} in {folder}; upgrade opencmap")
    side, cols = folder / tiles["file"], int(tiles["cols"])
    try:
        sums = np.load(side, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise StoreCorruptError(f"store file {side} (tile hashes of a τ background) is unreadable ({exc}); {_REFUSE}", path=side) from exc
    n_tiles = max(1, -(-values.shape[1] // cols))
    if sums.shape != (values.shape[0], n_tiles) or sums.dtype != np.uint64:
        raise StoreCorruptError(f"store file {side} holds hashes {sums.dtype} {sums.shape}, not uint64 {(values.shape[0], n_tiles)}; {_REFUSE}",
                                path=side)  # fmt: skip
    return sums, cols


def values_first_mismatch(values: np.ndarray, sums: np.ndarray, seen: np.ndarray, rows: np.ndarray, cols: int) -> tuple[int, int, int] | None:
    """The first tile of ``rows`` of a background's values that does not match its hash in
    ``sums`` (of :func:`value_tile_sums`), as ``(row, first column, end column)``; None when all
    match. Tiles checked are marked in ``seen`` (uint8, the shape of ``sums``) and skipped."""
    from opencmap.kernels.tilehash import check_tiles

    bad = check_tiles(values, sums, seen, rows, 0, values.shape[1], cols)
    return None if bad is None else (bad[0], bad[1] * cols, (bad[1] + 1) * cols)


def values_mismatch(values: np.ndarray, row: int, lo: int, hi: int) -> str:
    """What does not match in a background's values: row ``row``, values ``lo:hi`` (a tile)."""
    return f"row {row}, values {lo}..{min(hi, values.shape[1]) - 1} do not match their hash in values.tiles.npy"
