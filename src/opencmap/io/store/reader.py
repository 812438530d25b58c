"""Reading a reference store: :class:`Store` (memory-mapped, read-only), its segments, checked
reads and read-ahead.

Every file is an ``.npy`` opened with ``np.load(mmap_mode="r")``, so a store larger than RAM still
answers (the OS pages in what a query touches); on such stores (:attr:`Store.random_access`)
page faults read no more than asked and readers prefetch the next block (``MADV_WILLNEED`` on
exactly its extents). What is read of a 2-D data file is checked the first time it is read (per
open store): in a format-3 store against the hash of each tile of 512 columns of each row
(:mod:`opencmap.kernels.tilehash`), where the data are read: the fused WTCS kernel checks the tiles
of the query genes' rows it walks (:meth:`Store.read_check`), other readers call
:meth:`StoreSegment.check` for what they read (:meth:`Store.iter_blocks` does, for its blocks);
in a format-2 store against per-chunk xxh3 checksums (:meth:`Store.iter_blocks` checks each next
block on a checker thread while the caller scores the current one). A mismatch raises a
:class:`~opencmap.errors.StoreCorruptError` naming the file, the rows and columns, and what to do.
Small files (signature and gene tables, PCLs) are checked whole when first read. A long-running
reader picks up generations committed by other processes with :meth:`Store.current`.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from opencmap.backends.settings import Settings
from opencmap.errors import IdNotFoundError, StoreCorruptError, StoreError
from opencmap.io.store.checksums import _chunk_hasher, _digest_chunks, _file_checksum, manifest_bytes, manifest_checksum_ok
from opencmap.kernels.tilehash import TILE_HASH_ALGO, ReadCheck, check_tiles
from opencmap.io.store.format import _CHUNK_COLS, _MANIFEST, STORE_FORMAT, STORE_FORMAT_VERSION
from opencmap.io.versions import check_format_version

if TYPE_CHECKING:
    from opencmap.backends.base import Backend
    from opencmap.io.store.verify import VerifyReport

__all__ = ["Store", "FeatureSpace", "open_store", "prefetch_columns", "StoreSegment"]

log = logging.getLogger(__name__)

_CHECKED_FIRST_BLOCK = _CHUNK_COLS  # columns of the first block iter_blocks hands out of a checked store
_REFUSE = ("this store must not be queried; run `opencmap store info --verify` to check every file, "
           "then rebuild the store (`opencmap store build --overwrite`) or restore it from a copy")
_WILLNEED_CHUNK = 128 << 10  # bytes per MADV_WILLNEED call (the kernel caps each call at its readahead window)


@dataclass(frozen=True)
class FeatureSpace:
    """A feature space of the store: its name and gene ids (in store order)."""

    name: str
    gene_ids: pd.Index

    @property
    def n_features(self) -> int:
        return len(self.gene_ids)

    @cached_property
    def _row_of(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.gene_ids)}

    def positions(self, gene_ids: Sequence[str]) -> np.ndarray:
        """0-based rows of ``gene_ids`` in this space (-1 where absent)."""
        row_of = self._row_of
        return np.fromiter((row_of.get(str(g), -1) for g in gene_ids), dtype=np.intp, count=len(gene_ids))


def _pcl_sets(pcl: Any) -> dict[str, tuple[str, ...]] | None:
    """PCL definitions ``{name: pert_ids}`` from a GMT path or a mapping (None: none)."""
    if pcl is None:
        return None
    if isinstance(pcl, Mapping):
        return {str(k): tuple(str(x) for x in v) for k, v in pcl.items()}
    from opencmap.io import read_gmt

    return {s.name: tuple(s.genes) for s in read_gmt(pcl)}


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open an existing store (alias of ``Store(path)``)."""
    return Store(path)


# ---------------------------------------------------------------------------------- reading
def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _map_of(arr: np.ndarray) -> Any:
    mm = getattr(arr, "_mmap", None)
    return mm if mm is not None and hasattr(mmap, "MADV_WILLNEED") and arr.ndim == 2 else None


def _advise_willneed(mm: Any, begin: np.ndarray, end: np.ndarray) -> None:
    """``MADV_WILLNEED`` on the byte ranges ``begin..end`` (sorted by begin; page-aligned here,
    overlapping or touching ranges merged, then issued in pieces of :data:`_WILLNEED_CHUNK`:
    Linux reads at most one readahead window per call and drops the rest of a longer range)."""
    begin = begin - begin % mmap.PAGESIZE
    runs: list[tuple[int, int]] = []
    for b, e in zip(begin.tolist(), end.tolist(), strict=True):
        if runs and b <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], e))
        else:
            runs.append((b, e))
    for b, e in runs:
        for lo in range(b, e, _WILLNEED_CHUNK):
            mm.madvise(mmap.MADV_WILLNEED, lo, min(_WILLNEED_CHUNK, e - lo))


def prefetch_columns(arr: np.ndarray, rows: np.ndarray, lo: int, hi: int) -> None:
    """Ask the OS to read columns ``lo:hi`` of ``rows`` of a gene-major memory map ahead.

    Asynchronous (``MADV_WILLNEED`` on exactly those extents, merged where contiguous): the pages
    are being read while the caller computes, and nothing beyond them is read. A no-op for arrays
    that are not memory maps or where ``madvise`` is unavailable.
    """
    mm = _map_of(arr)
    if mm is None:
        return
    item, n = arr.dtype.itemsize, arr.shape[1]
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    rows = rows[(rows >= 0) & (rows < arr.shape[0])]
    lo, hi = max(int(lo), 0), min(int(hi), n)
    if hi <= lo or not len(rows):
        return
    begin = int(arr.offset) % mmap.ALLOCATIONGRANULARITY + (rows * n + lo) * item  # array start inside the map
    _advise_willneed(mm, begin, begin + (hi - lo) * item)


def _prefetch_cells(arr: np.ndarray, cols: np.ndarray) -> None:
    """Read ahead the pages holding columns ``cols`` of every row (whole signatures of a
    gene-major map: one page per gene and signature, fetched together instead of fault by fault)."""
    mm = _map_of(arr)
    if mm is None or not len(cols):
        return
    item, n = arr.dtype.itemsize, arr.shape[1]
    cols = np.unique(np.asarray(cols, dtype=np.int64))
    cols = cols[(cols >= 0) & (cols < n)]
    cells = (np.arange(arr.shape[0], dtype=np.int64)[:, None] * n + cols[None, :]).ravel() * item
    pages = np.unique((int(arr.offset) % mmap.ALLOCATIONGRANULARITY + cells) // mmap.PAGESIZE) * mmap.PAGESIZE
    _advise_willneed(mm, pages, pages + mmap.PAGESIZE)


class StoreSegment:
    """One segment of an open store: its memory-mapped data files and their chunk checks."""

    __slots__ = ("name", "offset", "n", "dir", "_arrays", "random_access", "files", "_sums", "_seen", "_tiles", "_lock")

    def __init__(self, name: str, offset: int, n: int, directory: Path, random_access: bool = False,
                 files: Mapping[str, Any] | None = None):
        self.name, self.offset, self.n, self.dir = name, offset, n, directory
        self.random_access = random_access
        self._arrays: dict[str, np.ndarray] = {}
        self.files: Mapping[str, Any] = files or {}
        self._sums: dict[str, tuple[np.ndarray, int, str] | None] = {}
        self._seen: dict[str, np.ndarray] = {}
        self._tiles: dict[str, tuple[np.ndarray, np.ndarray, int] | None] = {}
        self._lock = threading.Lock()

    def tiles(self, space: str, kind: str) -> tuple[np.ndarray, np.ndarray, int] | None:
        """``(hashes, seen, cols)`` of data file ``space/kind``: its tile hashes (memory-mapped,
        uint64 (rows, tiles)), the bitmap of tiles checked so far through this object (uint8,
        shared by every reader and thread of the open store) and the tile width; None for files
        written without tile hashes (format versions 1 and 2)."""
        key = f"{space}/{kind}"
        if key in self._tiles:
            return self._tiles[key]
        with self._lock:
            if key not in self._tiles:
                self._tiles[key] = self._load_tiles(key, space, kind)
        return self._tiles[key]

    def _load_tiles(self, key: str, space: str, kind: str) -> tuple[np.ndarray, np.ndarray, int] | None:
        entry = self.files.get(f"{key}.npy", {}).get("tile_hashes")
        if not entry:
            return None
        if entry.get("algo") != TILE_HASH_ALGO:
            raise StoreError(f"unknown tile hash {entry.get('algo')!r} in the manifest of {self.dir}; upgrade opencmap")
        side, cols = self.dir / entry["file"], int(entry["cols"])
        arr = self.array(space, kind)
        shape = (arr.shape[0], max(1, -(-arr.shape[1] // cols)))
        try:
            sums = np.load(side, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise StoreCorruptError(f"store file {side} (tile hashes of {self.dir / key}.npy) is unreadable ({exc}); {_REFUSE}", path=side) from exc
        if sums.shape != shape or sums.dtype != np.uint64:
            raise StoreCorruptError(
                f"store file {side} (tile hashes of {self.dir / key}.npy) holds {sums.dtype} {sums.shape}, not uint64 {shape}; {_REFUSE}", path=side
            )
        return sums, np.zeros(shape, dtype=np.uint8), cols

    def describe_mismatch(self, space: str, kind: str, row: int, lo: int, hi: int) -> str:
        """What does not match in data file ``space/kind``: row ``row``, columns ``lo:hi`` of this
        segment (a tile, or a chunk of a format-2 store), and the file of hashes it was checked against."""
        n = self.array(space, kind).shape[1]
        what, cols_of = ("signature", "genes") if kind == "scores_by_sig" else ("gene row", "signatures")
        if self.tiles(space, kind) is not None:
            against = f"their hash in {kind}.tiles.npy"
        else:
            against = f"their checksum in {self.files.get(f'{space}/{kind}.npy', {}).get('chunk_sums', {}).get('file', f'{kind}.crc.npy')}"
        return (f"{what} {row}, {cols_of} {lo}..{min(hi, n) - 1} of this segment (store positions from {self.offset}) "
                f"do not match {against}")

    def corrupt(self, space: str, kind: str, row: int, lo: int, hi: int) -> StoreCorruptError:
        """The error of columns ``lo:hi`` of row ``row`` of data file ``space/kind`` (a tile, or a
        format-2 chunk) that do not match their hash."""
        path = self.dir / space / f"{kind}.npy"
        return StoreCorruptError(f"store file {path} is corrupt: {self.describe_mismatch(space, kind, row, lo, hi)}; {_REFUSE}", path=path)

    def raise_bad(self, space: str, check: ReadCheck) -> None:
        """Raise the :class:`StoreCorruptError` of a mismatch a kernel reported in ``check.bad``
        (the tile is hashed again on its own to name the file that differs)."""
        _, row, tile = (int(x) for x in check.bad)
        lo, hi = tile * check.cols, (tile + 1) * check.cols
        for kind, part in (("ranks", check.ranks), ("scores", check.scores)):
            if part is not None and self.first_mismatch(space, kind, np.array([row]), lo, lo + 1, seen=False) is not None:
                raise self.corrupt(space, kind, row, lo, hi)
        raise self.corrupt(space, "scores" if check.bad[0] == 1 else "ranks", row, lo, hi)

    def _chunk_table(self, key: str) -> tuple[np.ndarray, int, str] | None:
        """The chunk checksums of data file ``key`` (``space/kind``), checked whole on first use;
        None for files written without them (format version 1)."""
        if key in self._sums:
            return self._sums[key]
        entry = self.files.get(f"{key}.npy", {}).get("chunk_sums")
        table = None
        if entry:
            side = self.dir / entry["file"]
            expected = self.files.get(entry["file"], {}).get("checksum")
            try:
                got = _file_checksum(side, expected)
                sums = np.load(side)
            except (OSError, ValueError) as exc:
                raise StoreError(f"store file {side} is unreadable ({exc}); run `opencmap store info --verify` and rebuild the store") from exc
            if got != expected:
                raise StoreCorruptError(
                    f"store file {side} (checksums of {self.dir / key}.npy) is corrupt: {got} != {expected} in the manifest; {_REFUSE}", path=side
                )
            algo = str(entry.get("algo", "crc32"))
            _chunk_hasher(algo)  # an unknown algorithm is refused here
            table = (sums, int(entry["cols"]), algo)
            self._seen[key] = np.zeros(sums.shape, dtype=bool)
        self._sums[key] = table
        return table

    def is_checked(self, space: str, kind: str, rows: np.ndarray | None, lo: int, hi: int) -> bool:
        """True when the tiles or chunks of ``rows`` (None: all) x columns ``lo:hi`` of a data file
        have been checked already (or the file has neither): :meth:`check` has nothing to do."""
        tiles = self.tiles(space, kind)
        if tiles is not None:
            if hi <= lo:
                return True
            seen, cols = tiles[1], tiles[2]
            t0, t1 = lo // cols, (hi - 1) // cols + 1
            return bool((seen[:, t0:t1] if rows is None else seen[rows, t0:t1]).all())
        table = self._chunk_table(f"{space}/{kind}")
        if table is None or hi <= lo:
            return True
        seen, cols = self._seen[f"{space}/{kind}"], table[1]
        c0, c1 = lo // cols, (hi - 1) // cols + 1
        return bool((seen[:, c0:c1] if rows is None else seen[rows, c0:c1]).all())

    def check(self, space: str, kind: str, rows: np.ndarray | None, lo: int, hi: int) -> None:
        """Check the tiles (format 3) or chunks (format 2) of ``rows`` (None: all) x columns
        ``lo:hi`` of a data file against their stored hashes the first time they are read (through
        this open store); :class:`StoreCorruptError` naming the file on a mismatch. Rows of
        signature-major files are signatures, their columns genes. Thread-safe."""
        bad = self.first_mismatch(space, kind, rows, lo, hi)
        if bad is not None:
            raise self.corrupt(space, kind, *bad)

    def first_mismatch(
        self, space: str, kind: str, rows: np.ndarray | None, lo: int, hi: int, *, seen: np.ndarray | bool | None = None
    ) -> tuple[int, int, int] | None:
        """The first tile (format 3) or chunk (format 2) of ``rows`` (None: all) x columns ``lo:hi``
        of a data file that does not match its stored hash, as ``(row, first column, end column)``;
        None when all match (or the file has neither). ``seen``: None, skip and mark tiles in the
        bitmap shared by the readers of this open store (:meth:`check`); a bitmap of the shape of
        the hashes (uint8 tiles / bool chunks), the caller's own (``store info --verify``: every
        tile hashed once whatever queries checked before); False, hash every tile, mark none."""
        tiles = self.tiles(space, kind)
        if tiles is not None:
            sums, shared, cols = tiles
            arr = self.array(space, kind)
            marks = shared if seen is None else np.zeros(sums.shape, np.uint8) if seen is False else seen
            picked = np.arange(arr.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
            bad = check_tiles(arr, sums, marks, picked, lo, hi, cols)
            return None if bad is None else (bad[0], bad[1] * cols, (bad[1] + 1) * cols)
        key = f"{space}/{kind}"
        table = self._chunk_table(key)
        if table is None or hi <= lo:
            return None
        sums, cols, algo = table
        marks = self._seen[key] if seen is None else np.zeros(sums.shape, bool) if seen is False else seen
        c0, c1 = lo // cols, (hi - 1) // cols + 1
        sub = marks[:, c0:c1] if rows is None else marks[rows, c0:c1]
        if sub.all():
            return None
        arr = self.array(space, kind)
        if sums.shape != (arr.shape[0], max(1, -(-arr.shape[1] // cols))):
            raise StoreError(
                f"store file {self.dir / key}.npy has shape {arr.shape} but its checksums cover {sums.shape} chunks of {cols} "
                "columns: the store is corrupt; run `opencmap store info --verify` and rebuild the store"
            )
        todo_r, todo_c = np.nonzero(~sub)
        row_ids = (np.arange(marks.shape[0])[todo_r] if rows is None else np.asarray(rows)[todo_r]).tolist()
        col_ids = (todo_c + c0).tolist()
        got = _digest_chunks(arr, np.asarray(row_ids, dtype=np.int64), np.asarray(col_ids, dtype=np.int64), cols, algo)
        bad = np.flatnonzero(got != sums[row_ids, col_ids])
        if len(bad):
            r, c = row_ids[int(bad[0])], col_ids[int(bad[0])]
            return r, c * cols, (c + 1) * cols
        marks[row_ids, col_ids] = True
        return None

    def array(self, space: str, kind: str) -> np.ndarray:
        key = f"{space}/{kind}"
        arr = self._arrays.get(key)
        if arr is None:
            path = self.dir / space / f"{kind}.npy"
            if not path.exists():
                raise StoreError(f"store file missing: {path}; rebuild the store")
            try:
                arr = np.load(path, mmap_mode="r")
            except (ValueError, EOFError) as exc:  # a damaged .npy header
                raise StoreCorruptError(f"store file {path} is unreadable ({exc}); {_REFUSE}", path=path) from exc
            entry = self.files.get(f"{key}.npy", {})
            if "shape" in entry and (list(arr.shape) != list(entry["shape"]) or str(arr.dtype) != entry.get("dtype", str(arr.dtype))):
                raise StoreCorruptError(
                    f"store file {path} holds {arr.dtype} {arr.shape}, the manifest says {entry.get('dtype')} {tuple(entry['shape'])}; {_REFUSE}",
                    path=path,
                )
            mm = getattr(arr, "_mmap", None)
            if self.random_access and mm is not None and hasattr(mmap, "MADV_RANDOM"):
                # larger than RAM: no read-around on page faults (with a large device readahead a
                # fault reads megabytes around it, which a pass over signature blocks evicts again
                # before use); reads are exact, ahead of use via Store.prefetch
                mm.madvise(mmap.MADV_RANDOM)
            self._arrays[key] = arr
        return arr


def _checked_file(path: Path, expected: str | None) -> Path:
    """``path``, once its whole-file checksum matches ``expected`` (the manifest's; None: not
    recorded); :class:`StoreCorruptError` otherwise. For small files read whole (tables, lists)."""
    if expected:
        try:
            got = _file_checksum(path, expected)
        except OSError as exc:
            raise StoreError(f"store file {path} is unreadable ({exc}); rebuild the store") from exc
        if got != expected:
            raise StoreCorruptError(f"store file {path} is corrupt: checksum {got}, the manifest says {expected}; {_REFUSE}", path=path)
    return path


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _check_block(seg: StoreSegment, space: str, kinds: Sequence[str], rows: np.ndarray, lo: int, hi: int, kernel_checks: bool = False) -> None:
    for kind in kinds:
        if not (kernel_checks and seg.tiles(space, kind) is not None):  # else the caller's kernel checks its reads
            seg.check(space, kind, rows, lo, hi)


_CHECKER: Any = None


def _checker() -> Any:
    """The thread that checks the next block's chunks while a reader scores the current one
    (hashing releases the GIL; its page faults are then off the reader's path too)."""
    global _CHECKER
    if _CHECKER is None:
        from concurrent.futures import ThreadPoolExecutor

        _CHECKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opencmap-store-check")
    return _CHECKER


class Store:
    """A reference store opened read-only (memory-mapped).

    Attributes
    ----------
    path : Path
    manifest : dict
    sig_info : DataFrame, one row per signature in store order (``sig_id`` column)
    genes : DataFrame, the gene table (``pr_gene_id`` column)
    spaces : dict of :class:`FeatureSpace`
    default_space : str
    """

    def __init__(self, path: str | os.PathLike[str], *, settings: Settings | None = None):
        #: tuning of reads and of builds on this store (:class:`opencmap.backends.Settings`)
        self.settings = settings or Settings()
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"no reference store at {self.path} (build one with `opencmap store build`)")
        self.manifest = self._read_manifest()
        m = self.manifest
        self.default_space: str = m["default_space"]
        self.spaces = {
            name: FeatureSpace(name, pd.Index([str(g) for g in entry["gene_ids"]], dtype=object))
            for name, entry in m["spaces"].items()
        }
        self._segments: list[StoreSegment] = []
        offset = 0
        for seg in m["segments"]:
            seg_dir = self.path / "segments" / seg["name"]
            for rel, entry in seg["files"].items():
                f = seg_dir / rel
                if not f.exists():
                    raise StoreError(f"store file missing: {f}; the store is incomplete, rebuild it")
                if f.stat().st_size != entry["bytes"]:
                    raise StoreError(
                        f"store file {f} has {f.stat().st_size} bytes, the manifest says {entry['bytes']}: "
                        "the store is corrupt or was modified; rebuild it"
                    )
            self._segments.append(StoreSegment(seg["name"], offset, int(seg["n_signatures"]), seg_dir, files=seg["files"]))
            offset += int(seg["n_signatures"])
        gene_major = sum(
            int(e["bytes"]) for seg in m["segments"] for rel, e in seg["files"].items() if not rel.endswith(("scores_by_sig.npy", ".parquet"))
        )
        memory = _physical_memory()
        #: True when the gene-major data exceed half the RAM: page faults read no more than asked,
        #: and readers should call :meth:`prefetch` ahead of each block
        self.random_access = bool(memory) and gene_major > self.settings.random_access_fraction * memory
        for s in self._segments:
            s.random_access = self.random_access
        if offset != int(m["n_signatures"]):
            raise StoreError(f"{self.path / _MANIFEST}: segment sizes add to {offset}, not n_signatures={m['n_signatures']}")
        data = [e for seg in m["segments"] for rel, e in seg["files"].items() if rel.endswith(".npy") and not rel.endswith((".crc.npy", ".tiles.npy"))]
        #: True when every data file carries chunk checksums (format 2) or tile hashes (format 3)
        #: that reads are checked against
        self.checked = all("chunk_sums" in e or "tile_hashes" in e for e in data)
        #: True when every data file carries tile hashes (format 3): checked where they are read
        self.tile_checked = all("tile_hashes" in e for e in data)
        if self.checked and not self.tile_checked:
            log.info(
                "store %s (format version %s) is checked per chunk of 16,384 signatures before each block is read; rebuild it "
                "(`opencmap store build --overwrite`) to have the data checked per tile where queries read them (cheaper)",
                self.path, m["format_version"],
            )  # fmt: skip
        if not self.checked:
            from opencmap.errors import UncheckedStoreWarning

            warnings.warn(
                f"the store {self.path} (format version {m['format_version']}) has no chunk checksums: queries cannot detect "
                "corrupted files in it; check it with `opencmap store info --verify`, or rebuild it to have every read checked",
                UncheckedStoreWarning,
                stacklevel=3,
            )
        self._sig_info: pd.DataFrame | None = None
        self._genes: pd.DataFrame | None = None

    def _read_manifest(self) -> dict[str, Any]:
        mpath = self.path / _MANIFEST
        if not mpath.exists():
            raise StoreError(f"{self.path} is not a reference store: {_MANIFEST} is missing")
        with open(mpath, "rb") as fh:  # stat and bytes of the same file (a writer renames a new one over it)
            self._manifest_stat = _stat_key(os.fstat(fh.fileno()))
            raw = fh.read()
        self._manifest_sum = f"crc32:{zlib.crc32(raw):08x}"
        try:
            m = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{mpath} is corrupt ({exc}); rebuild the store") from exc
        if not isinstance(m, dict) or m.get("format") != STORE_FORMAT:
            raise StoreError(f"{mpath} is not an opencmap reference store manifest (format={m.get('format') if isinstance(m, dict) else None!r})")
        version = m.get("format_version")
        if not isinstance(version, int):
            raise StoreError(f"{mpath}: format_version missing or not an integer; rebuild the store")
        check_format_version(version, STORE_FORMAT_VERSION, what="store", path=mpath)
        for key in ("n_signatures", "default_space", "spaces", "segments", "genes"):
            if key not in m:
                raise StoreError(f"{mpath}: field {key!r} is missing; the manifest is corrupt, rebuild the store")
        if not manifest_checksum_ok(m):
            raise StoreCorruptError(f"{mpath} is corrupt: its fields do not match its manifest_checksum; {_REFUSE}", path=mpath)
        return m

    # ------------------------------------------------------------------ generations
    @property
    def generation(self) -> dict[str, Any]:
        """The store generation this object reads: the manifest's ``generation`` counter (0 for a
        fresh build; +1 per append, compaction or background commit) and the checksum of the
        manifest it opened (tells apart two builds with the same counter). Recorded in query
        results' provenance (``store``)."""
        return {"generation": int(self.manifest.get("generation", 0)), "manifest": self._manifest_sum}

    def changed(self) -> bool:
        """True when another generation has been committed since this object opened the store
        (the manifest was replaced: ``store background``, append, compact, ``build --overwrite``)."""
        try:
            return _stat_key(os.stat(self.path / _MANIFEST)) != self._manifest_stat
        except OSError:  # an overwrite between its two renames: keep reading this generation
            return False

    def current(self) -> "Store":
        """This store, or the store reopened on the generation committed since (see
        :meth:`changed`). Queries already running on this object finish on its generation: the
        files it has mapped stay readable after a writer removes them. Call this before each
        new query in a long-running process (the API server does)."""
        if not self.changed():
            return self
        new = Store(self.path, settings=self.settings)
        log.info("store %s: generation %s -> %s", self.path, self.generation, new.generation)
        return new

    def segment_at(self, position: int) -> StoreSegment:
        """The segment holding store position ``position``."""
        for seg in self._segments:
            if seg.offset <= position < seg.offset + seg.n:
                return seg
        raise IdNotFoundError(f"signature position {position} out of range 0..{self.n_signatures - 1}")

    def read_check(self, position: int, space: str | None = None, *, with_scores: bool = True) -> ReadCheck | None:
        """What a kernel reading the gene-major ranks (and scores) of the segment holding store
        position ``position`` checks its reads against (:class:`~opencmap.kernels.tilehash.ReadCheck`,
        with a fresh ``bad``), or None when those files have no tile hashes. After the kernel,
        :meth:`StoreSegment.raise_bad` when ``check.bad[0] >= 0``."""
        seg = self.segment_at(position)
        sp = self.space(space).name
        ranks = seg.tiles(sp, "ranks")
        scores = seg.tiles(sp, "scores") if with_scores else None
        if ranks is None or (with_scores and scores is None):
            return None
        return ReadCheck(ranks[:2], None if scores is None else scores[:2], ranks[2], np.full(3, -1, dtype=np.int64))

    @property
    def segments(self) -> list[StoreSegment]:
        """The store's segments in store order (their ``offset``, ``n``, ``dir``, memory maps and checks)."""
        return self._segments

    # ------------------------------------------------------------------ metadata
    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {self.n_signatures} signatures, spaces {sorted(self.spaces)}, default {self.default_space!r})"

    @property
    def n_signatures(self) -> int:
        return int(self.manifest["n_signatures"])

    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    @property
    def sig_info(self) -> pd.DataFrame:
        if self._sig_info is None:
            parts = [pd.read_parquet(_checked_file(seg.dir / "sig_info.parquet", seg.files.get("sig_info.parquet", {}).get("checksum")))
                     for seg in self._segments]  # fmt: skip
            info = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"sig_id": []})
            info["sig_id"] = info["sig_id"].astype(str)
            self._sig_info = info
        return self._sig_info

    @property
    def sig_ids(self) -> pd.Index:
        return pd.Index(self.sig_info["sig_id"], dtype=object)

    @property
    def genes(self) -> pd.DataFrame:
        if self._genes is None:
            entry = self.manifest["genes"]
            self._genes = pd.read_parquet(_checked_file(self.path / entry["file"], entry.get("checksum")))
            self._genes["pr_gene_id"] = self._genes["pr_gene_id"].astype(str)
        return self._genes

    @property
    def pcl(self) -> dict[str, tuple[str, ...]] | None:
        """The perturbagen classes stored at build time (``{name: pert_ids}``), or None."""
        entry = self.manifest.get("pcl")
        if not entry:
            return None
        path = self.path / entry["file"]
        if not path.exists():
            raise StoreError(f"store file missing: {path}; rebuild the store")
        return _pcl_sets(_checked_file(path, entry.get("checksum")))

    def space(self, name: str | None = None) -> FeatureSpace:
        """The feature space ``name`` (default: the store's default space)."""
        key = self.default_space if name is None else name
        if key == "aig" and "aig" not in self.spaces and "full" in self.spaces:
            key = "full"
        if key not in self.spaces:
            raise StoreError(f"the store {self.path} has no feature space {key!r} (has {sorted(self.spaces)})")
        return self.spaces[key]

    @property
    def stale_backgrounds(self) -> dict[str, int]:
        """tau background levels built before signatures were appended: ``{level: n_appended}``.

        Those signatures have no tau until the backgrounds are rebuilt (``opencmap store background``);
        the other signatures' tau uses a reference that predates them.
        """
        return {
            level: int(entry["appended_since_built"])
            for level, entry in self.manifest.get("backgrounds", {}).items()
            if int(entry.get("appended_since_built", 0)) > 0
        }

    def sig_positions(self, sig_ids: Sequence[str]) -> np.ndarray:
        """0-based store positions of ``sig_ids``; :class:`IdNotFoundError` for unknown ids."""
        wanted = pd.Index([str(s) for s in sig_ids], dtype=object)
        pos = self.sig_ids.get_indexer(wanted)
        if (pos < 0).any():
            missing = wanted[pos < 0][:10].tolist()
            raise IdNotFoundError(f"{int((pos < 0).sum())} sig_ids are not in the store {self.path}: {missing}")
        return pos

    # ------------------------------------------------------------------ data access
    def iter_gene_rows(
        self,
        gene_rows: np.ndarray,
        *,
        space: str | None = None,
        block_size: int = 16384,
        with_ranks: bool = True,
        start: int = 0,
        stop: int | None = None,
    ) -> Iterator[tuple[int, int, np.ndarray | None, np.ndarray]]:
        """Yield ``(start, stop, ranks, scores)`` blocks of the signatures ``start:stop`` (default:
        all) for rows ``gene_rows``.

        ``gene_rows`` are 0-based rows of the space; ``ranks`` uint16 and ``scores`` float32 have
        shape ``(len(gene_rows), stop - start)``; only those rows are read from disk.
        """
        rows = np.asarray(gene_rows, dtype=np.intp)
        blocks = self.iter_blocks(rows, space=space, block_size=block_size, with_ranks=with_ranks, start=start, stop=stop)
        for start, stop, r_mm, s_mm, lo, hi in blocks:
            assert s_mm is not None
            yield start, stop, None if r_mm is None else r_mm[rows, lo:hi], s_mm[rows, lo:hi]

    def iter_blocks(
        self,
        gene_rows: np.ndarray,
        *,
        space: str | None = None,
        block_size: int = 16384,
        with_ranks: bool = True,
        with_scores: bool = True,
        start: int = 0,
        stop: int | None = None,
        kernel_checks: bool = False,
    ) -> Iterator[tuple[int, int, np.ndarray | None, np.ndarray | None, int, int]]:
        """Yield ``(start, stop, ranks, scores, lo, hi)``: blocks of at most ``block_size``
        signatures (store positions ``start:stop``) as the memory-mapped gene-major arrays of
        their segment and the block's columns ``lo:hi`` in them, for readers that read in place.
        The blocks cover the store positions ``start:stop`` given (default: every signature).

        On a store larger than RAM (:attr:`random_access`) the rows ``gene_rows`` of the next
        block are prefetched before each block is handed out, so the disk works while the caller
        computes.

        Blocks are checked before they are handed out (:meth:`StoreSegment.check`), except, with
        ``kernel_checks``, files with tile hashes: the caller's kernel checks what it reads
        (:meth:`read_check`).
        """
        sp = self.space(space).name
        rows = np.asarray(gene_rows, dtype=np.intp)
        kinds = tuple(kind for kind, on in (("ranks", with_ranks), ("scores", with_scores)) if on)
        stop = self.n_signatures if stop is None else min(int(stop), self.n_signatures)
        start = max(int(start), 0)
        # the first block is checked while the caller waits, every later one while it scores the one
        # before: while the store's data are unchecked the first block is one chunk column wide (less
        # to wait for); once checked (a reused store), the blocks are full and nothing is re-checked
        first = block_size
        # (not for a caller whose kernel checks the tile-hashed files it reads: nothing to wait for)
        if (self.checked and not (kernel_checks and self.tile_checked) and block_size > _CHECKED_FIRST_BLOCK
                and not self._blocks_checked(sp, kinds, rows, start, stop, block_size)):
            first = _CHECKED_FIRST_BLOCK
        # (segment, first column, end column, the segment's first and end column of this scan)
        blocks: list[tuple[StoreSegment, int, int, int, int]] = []
        for seg in self._segments:
            a, b = max(start - seg.offset, 0), min(stop - seg.offset, seg.n)
            lo = a
            while lo < b:
                blocks.append((seg, lo, min(lo + (block_size if blocks else first), b), a, b))
                lo = blocks[-1][2]
        pending: Any = None
        for i, (seg, lo, hi, a, b) in enumerate(blocks):
            if self.random_access:
                opts = {"space": sp, "with_ranks": with_ranks, "with_scores": with_scores}
                if lo == a:
                    self.prefetch(rows, seg.offset + a, seg.offset + hi, **opts)
                if hi < b:
                    self.prefetch(rows, seg.offset + hi, seg.offset + min(hi + block_size, b), **opts)
            # every block is checked before it is handed out: the first here, each next one on the
            # checker thread while the caller scores this one (its StoreError raised here)
            if pending is None:
                _check_block(seg, sp, kinds, rows, lo, hi, kernel_checks)
            else:
                pending.result()
            pending = None
            if self.checked and not (kernel_checks and self.tile_checked) and i + 1 < len(blocks):
                nxt = blocks[i + 1]
                if not all(nxt[0].is_checked(sp, kind, rows, nxt[1], nxt[2]) for kind in kinds):
                    pending = _checker().submit(_check_block, nxt[0], sp, kinds, rows, nxt[1], nxt[2], kernel_checks)
            r_mm = seg.array(sp, "ranks") if with_ranks else None
            s_mm = seg.array(sp, "scores") if with_scores else None
            yield seg.offset + lo, seg.offset + hi, r_mm, s_mm, lo, hi

    def _blocks_checked(self, space: str, kinds: Sequence[str], rows: np.ndarray, start: int, stop: int, size: int) -> bool:
        """True when the chunks of ``rows`` in the first ``size`` signatures of ``start:stop``
        (store positions) are all checked already (e.g. by an earlier scan of a reused store)."""
        end = min(start + size, stop)
        for seg in self._segments:
            lo, hi = max(start - seg.offset, 0), min(end - seg.offset, seg.n)
            if lo < hi and not all(seg.is_checked(space, kind, rows, lo, hi) for kind in kinds):
                return False
        return True

    def prefetch(
        self,
        gene_rows: np.ndarray,
        start: int,
        stop: int,
        *,
        space: str | None = None,
        with_ranks: bool = True,
        with_scores: bool = True,
    ) -> None:
        """Start reading the rank/score rows ``gene_rows`` of signatures ``start:stop`` (store
        positions) in the background (see :func:`prefetch_columns`).

        Readers of a store larger than RAM (:attr:`random_access`) call this for block ``b + 1``
        before computing block ``b``, so the disk works while the CPU does; harmless otherwise.
        """
        sp = self.space(space).name
        kinds = tuple(kind for kind, on in (("ranks", with_ranks), ("scores", with_scores)) if on)
        for seg in self._segments:
            lo, hi = max(start - seg.offset, 0), min(stop - seg.offset, seg.n)
            if lo < hi:
                for kind in kinds:
                    prefetch_columns(seg.array(sp, kind), gene_rows, lo, hi)

    def signature_scores(self, positions: Sequence[int] | np.ndarray, *, space: str | None = None) -> np.ndarray:
        """float32 ``(len(positions), n_features)`` scores of the signatures at store ``positions``."""
        sp = self.space(space)
        pos = np.asarray(positions, dtype=np.intp)
        out = np.empty((len(pos), sp.n_features), dtype=np.float32)
        if len(pos) and (pos.min() < 0 or pos.max() >= self.n_signatures):
            raise IdNotFoundError(f"signature positions out of range 0..{self.n_signatures - 1}")
        for seg in self._segments:
            sel = np.flatnonzero((pos >= seg.offset) & (pos < seg.offset + seg.n))
            if not len(sel):
                continue
            local = pos[sel] - seg.offset
            if self.manifest.get("signature_major", True):
                seg.check(sp.name, "scores_by_sig", local, 0, sp.n_features)
                out[sel] = seg.array(sp.name, "scores_by_sig")[local]
            else:
                scores = seg.array(sp.name, "scores")
                if self.random_access:
                    _prefetch_cells(scores, local)
                for c in local.tolist():
                    seg.check(sp.name, "scores", None, c, c + 1)
                out[sel] = scores[:, local].T
        return out

    def signature_ranks(self, positions: Sequence[int] | np.ndarray, *, space: str | None = None) -> np.ndarray:
        """uint16 ``(n_features, len(positions))`` stored ranks of the given signatures."""
        sp = self.space(space)
        pos = np.asarray(positions, dtype=np.intp)
        out = np.empty((sp.n_features, len(pos)), dtype=np.uint16)
        for seg in self._segments:
            sel = np.flatnonzero((pos >= seg.offset) & (pos < seg.offset + seg.n))
            if len(sel):
                ranks = seg.array(sp.name, "ranks")
                if self.random_access:
                    _prefetch_cells(ranks, pos[sel] - seg.offset)
                for c in (pos[sel] - seg.offset).tolist():
                    seg.check(sp.name, "ranks", None, c, c + 1)
                out[:, sel] = ranks[:, pos[sel] - seg.offset]
        return out

    # ------------------------------------------------------------------ integrity
    def verify(self, *, progress: Callable[[int, int], None] | None = None, backend: Backend | None = None) -> VerifyReport:
        """Check every file: each tile of every data file against its hash (chunks of a format-2
        store), every file against its whole-file checksum, in one streaming pass
        (:func:`opencmap.io.store.verify.verify_store`: ``progress(done, total)`` in bytes, tiles
        hashed on ``backend``'s threads). Returns the
        :class:`~opencmap.io.store.verify.VerifyReport`; raises it as a
        :class:`StoreCorruptError` naming every damaged file (and tile) when there is a problem."""
        from opencmap.io.store.verify import verify_store

        report = verify_store(self, progress=progress, backend=backend)
        if not report.ok:
            raise report.error()
        return report

    def info(self) -> dict[str, Any]:
        """A small summary (for ``opencmap store info``)."""
        m = self.manifest
        return {
            "path": str(self.path),
            "format_version": m["format_version"],
            "created": m.get("created"),
            "n_signatures": m["n_signatures"],
            "n_segments": len(m["segments"]),
            "default_space": m["default_space"],
            "spaces": {k: v["n_features"] for k, v in m["spaces"].items()},
            "signature_major": m.get("signature_major", True),
            "backgrounds": sorted(m.get("backgrounds", {})),
            "stale_backgrounds": self.stale_backgrounds,
            "releases": [r["release"] for r in m.get("provenance", {}).get("releases", [])],
            "pcl_classes": (m.get("pcl") or {}).get("n_classes", 0),
            "chunk_checksums": self.checked,
            "tile_hashes": self.tile_checked,
        }

    # ------------------------------------------------------------------ manifest updates
    def commit(self, **changes: Any) -> None:
        """Rewrite the manifest atomically with ``changes`` merged in (backgrounds, append, compact):
        the next generation of the store. Writers call it holding the store's writer lock."""
        from opencmap.io.store.writer import _disk_full, _fault, _is_disk_full, _write_bytes_atomic

        new = dict(self.manifest)
        new.update(changes)
        new["generation"] = int(self.manifest.get("generation", 0)) + 1
        try:
            _write_bytes_atomic(self.path / _MANIFEST, manifest_bytes(new))
        except OSError as exc:
            if _is_disk_full(exc):
                raise _disk_full(exc, f"writing {self.path / _MANIFEST}", self.path) from exc
            raise
        _fault("manifest:switched")
        self.manifest = new
        with open(self.path / _MANIFEST, "rb") as fh:
            self._manifest_stat = _stat_key(os.fstat(fh.fileno()))
            self._manifest_sum = f"crc32:{zlib.crc32(fh.read()):08x}"

    _update_manifest = commit  # the name before the store moved to opencmap.io.store


_Segment = StoreSegment  # the name before the store moved to opencmap.io.store
