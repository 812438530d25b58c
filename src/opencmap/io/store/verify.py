"""Checking a whole store (``opencmap store info --verify``, :meth:`Store.verify`).

Every 2-D data file (gene-major ``ranks.npy`` and ``scores.npy``, signature-major
``scores_by_sig.npy`` of every space and segment, and the ``values.npy`` of every tau background)
is read once, a block of rows at a time from its memory map, and checked two ways in that one
pass: each tile against its hash (format 3, ``<kind>.tiles.npy``; each chunk against its xxh3 in a
format-2 store) by the same check the readers use (:meth:`StoreSegment.first_mismatch`,
:func:`~opencmap.kernels.tilehash.check_tiles`), on the backend's threads, while the calling
thread adds the block to the file's whole-file checksum. Every other file of the manifest (tables,
gene lists, PCLs, hash files, background counts and ids) is checked against its whole-file
checksum. Memory stays bounded on a store larger than RAM: the next block is read ahead, and a
checked block's pages are unmapped and dropped from the page cache (as queries' pages are not:
pages other processes map stay).

The result is a :class:`VerifyReport`: counts per kind of file, and the problems found, each
naming the file and, for a tile, its row (gene or signature) and columns. :meth:`Store.verify`
raises it as a :class:`~opencmap.errors.StoreCorruptError` (CLI exit status 2) when there is one.
"""

from __future__ import annotations

import logging
import mmap
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from opencmap.errors import StoreCorruptError, StoreError
from opencmap.io.store.checksums import FileDigest, _file_checksum, drop_cached

if TYPE_CHECKING:
    from opencmap.backends.base import Backend
    from opencmap.io.store.reader import Store

__all__ = ["VerifyReport", "VerifyProblem", "KindTotals", "verify_store"]

log = logging.getLogger(__name__)

BLOCK_BYTES = 16 << 20  # bytes of rows per checked block (per thread in flight)
LOG_SECONDS = 30.0  # seconds between progress lines logged (INFO)
_ADVICE = ("rebuild the store (`opencmap store build --overwrite`, then `opencmap store background`) or restore the files named "
           "from a copy, then run `opencmap store info --verify` again; until then queries refuse what they read from them")


@dataclass(frozen=True)
class VerifyProblem:
    """A file that failed verification: its ``path``, ``what`` is wrong, its kind, and for a tile
    (or chunk) that does not match its hash, the ``row`` (gene row of a gene-major file, signature of
    a signature-major one, row of a background) and the ``columns`` (first, last) of the tile."""

    path: str
    what: str
    kind: str
    row: int | None = None
    columns: tuple[int, int] | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass(frozen=True)
class KindTotals:
    """What was checked of one kind of file: files, tiles (or chunks) hashed, bytes read."""

    kind: str
    files: int
    tiles: int
    bytes: int


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_store` (see the module docs)."""

    path: str
    format_version: int
    per_tile: str
    """``tile hashes`` (format 3), ``chunk checksums`` (format 2) or ``none`` (format 1)."""
    totals: tuple[KindTotals, ...]
    problems: tuple[VerifyProblem, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """One summary line per kind of file (and what a format-1 store cannot check)."""
        unit = "chunks" if self.per_tile == "chunk checksums" else "tiles"
        out = []
        for t in self.totals:
            hashed = f"{t.tiles:,} {unit} checked, " if t.tiles else ""
            whole = "" if t.tiles else " (whole-file checksums)"
            out.append(f"{t.kind}: {t.files} file{'s' * (t.files != 1)}, {hashed}{t.bytes / 1e6:,.1f} MB{whole}")
        if self.per_tile == "none":
            out.append(f"nothing to check per tile: a format-{self.format_version} store has no tile hashes or chunk checksums "
                       "(data files were checked whole; rebuild the store to have every read checked)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"per_tile": self.per_tile, "seconds": round(self.seconds, 3),
                "kinds": {t.kind: {"files": t.files, "tiles": t.tiles, "bytes": t.bytes} for t in self.totals},
                "problems": [str(p) for p in self.problems]}  # fmt: skip

    def error(self) -> StoreCorruptError:
        """The :class:`StoreCorruptError` of the problems (its ``report`` is this report)."""
        listed = "\n".join(f"  {p}" for p in self.problems)
        n = len({p.path for p in self.problems})
        err = StoreCorruptError(f"store {self.path} failed verification: {n} file{'s' * (n != 1)} damaged:\n{listed}\n{_ADVICE}",
                                path=self.problems[0].path)  # fmt: skip
        err.report = self
        return err


@dataclass
class _DataFile:
    """A 2-D data file checked block by block: its memory map, whole-file checksum, and the check
    of its tiles (``first_bad(r0, r1)``: ``(row, lo, hi)`` of the first bad tile of rows ``r0:r1``)."""

    path: Path
    kind: str
    expected: str | None
    side: Path | None  # its file of tile hashes or chunk checksums
    arr: np.ndarray | None = None
    first_bad: Callable[[int, int], tuple[int, int, int] | None] | None = None
    describe: Callable[[int, int, int], str] = lambda row, lo, hi: ""
    tiles: int = 0
    bad: tuple[int, int, int] | None = None
    got: str | None = None
    problem: str | None = None  # the file could not be checked per tile (damaged header, hash file)


def _segment_files(store: Store) -> Iterator[tuple[_DataFile | None, Path, str, str | None]]:
    """Data files of every segment (``(_DataFile, path, kind, checksum)``; None for other files)."""
    for meta, seg in zip(store.manifest["segments"], store.segments, strict=True):
        files = meta["files"]
        for rel, entry in files.items():
            path = seg.dir / rel
            if rel.endswith(".npy") and len(entry.get("shape", ())) == 2 and not rel.endswith((".tiles.npy", ".crc.npy")):
                space, kind = rel[: -len(".npy")].rsplit("/", 1)
                yield _segment_data(seg, space, kind, path, entry), path, kind, entry.get("checksum")
            else:
                yield None, path, _whole_kind(rel), entry.get("checksum")


def _segment_data(seg: Any, space: str, kind: str, path: Path, entry: dict[str, Any]) -> _DataFile:
    side = entry.get("tile_hashes") or entry.get("chunk_sums")
    item = _DataFile(path, kind, entry.get("checksum"), seg.dir / side["file"] if side else None)
    try:
        item.arr = seg.array(space, kind)
        tiles = seg.tiles(space, kind)
        if tiles is not None:
            seen: np.ndarray | None = np.zeros(tiles[0].shape, np.uint8)
            item.tiles = int(tiles[0].size)
        elif entry.get("chunk_sums"):
            sums = seg._chunk_table(f"{space}/{kind}")[0]
            seen, item.tiles = np.zeros(sums.shape, bool), int(sums.size)
        else:
            return item
        n = item.arr.shape[1]
        item.first_bad = lambda r0, r1: seg.first_mismatch(space, kind, np.arange(r0, r1), 0, n, seen=seen)
        item.describe = lambda row, lo, hi: seg.describe_mismatch(space, kind, row, lo, hi)
    except StoreError as exc:
        item.problem = _what(exc)
    return item


def _what(exc: Exception) -> str:
    """The message of a reader's error without the advice to run this check."""
    from opencmap.io.store.reader import _REFUSE

    return str(exc).removesuffix(f"; {_REFUSE}").removesuffix(f": {_REFUSE}")


def _background_files(store: Store) -> Iterator[tuple[_DataFile | None, Path, str, str | None]]:
    """Files of every tau background (``values.npy`` as a :class:`_DataFile`; None for other files)."""
    for key, entry in store.manifest.get("backgrounds", {}).items():
        folder = store.path / (entry.get("dir") or f"backgrounds/{key}")
        for rel, checksum in entry.get("checksums", {}).items():
            path = folder / rel
            if rel == "values.npy":
                yield _background_data(folder, key, path, checksum, entry.get("tile_hashes")), path, "background values", checksum
            else:
                yield None, path, _whole_kind(rel), checksum


def _background_data(folder: Path, key: str, path: Path, checksum: str | None, tiles: dict[str, Any] | None) -> _DataFile:
    from opencmap.io.store.backgrounds import value_tile_sums, values_first_mismatch, values_mismatch

    item = _DataFile(path, "background values", checksum, folder / tiles["file"] if tiles else None)
    try:
        values = item.arr = np.load(path, mmap_mode="r")
        if tiles:
            sums, cols = value_tile_sums(folder, values, tiles, key)
            seen, item.tiles = np.zeros(sums.shape, np.uint8), int(sums.size)
            item.first_bad = lambda r0, r1: values_first_mismatch(values, sums, seen, np.arange(r0, r1), cols)
            item.describe = lambda row, lo, hi: values_mismatch(values, row, lo, hi)
    except (OSError, ValueError, EOFError) as exc:
        item.problem = f"unreadable ({exc})"
    except StoreError as exc:
        item.problem = _what(exc)
    return item


def _whole_kind(rel: str) -> str:
    if rel.endswith(".tiles.npy"):
        return "tile hashes"
    if rel.endswith(".crc.npy"):
        return "chunk checksums"
    return "tables and lists"


def verify_store(store: Store, *, progress: Callable[[int, int], None] | None = None, backend: Backend | None = None) -> VerifyReport:
    """Check every file of ``store`` (see the module docs); the :class:`VerifyReport` (problems
    listed in it, not raised). ``progress(done, total)``: bytes checked so far, of all; INFO log
    lines every :data:`LOG_SECONDS` s. Tiles are checked on ``backend``'s threads (default: the
    local backend, every core)."""
    from opencmap.backends.local import resolve_backend

    t0 = time.perf_counter()
    whole: list[tuple[Path, str, str | None]] = [(store.path / store.manifest["genes"]["file"], "tables and lists",
                                                   store.manifest["genes"].get("checksum"))]  # fmt: skip
    if (store.manifest.get("pcl") or {}).get("checksum"):
        whole.append((store.path / store.manifest["pcl"]["file"], "tables and lists", store.manifest["pcl"]["checksum"]))
    data: list[_DataFile] = []
    problems: list[VerifyProblem] = []
    for item, path, kind, checksum in [*_segment_files(store), *_background_files(store)]:
        if item is not None:
            data.append(item)
        else:
            whole.append((path, kind, checksum))
    sizes = {p: p.stat().st_size for p, *_ in whole if p.exists()} | {d.path: d.path.stat().st_size for d in data if d.path.exists()}
    total = sum(sizes.values())
    clock = _Clock(store.path, total, progress)
    log.info("verifying store %s: %d files, %.2f GB", store.path, len(whole) + len(data), total / 1e9)

    for path, kind, expected in whole:
        if not path.exists():
            problems.append(VerifyProblem(str(path), "missing", kind))
            continue
        got = _file_checksum(path, expected) if expected else None
        if got != expected:
            problems.append(VerifyProblem(str(path), f"checksum mismatch: {got} != {expected} in the manifest", kind))
        clock.add(sizes[path])
    bk = resolve_backend(backend)
    threads = max(1, bk.pool_threads())
    pool = bk.executor() if threads > 1 else None
    for item in data:
        if not item.path.exists():
            problems.append(VerifyProblem(str(item.path), "missing", item.kind))
            continue
        _scan(item, pool, threads, clock)
        problems.extend(_diagnose(item))
    totals: dict[str, KindTotals] = {}
    for kind, tiles, path in [*((d.kind, d.tiles, d.path) for d in data), *((k, 0, p) for p, k, _ in whole)]:
        t = totals.get(kind) or KindTotals(kind, 0, 0, 0)
        totals[kind] = KindTotals(kind, t.files + 1, t.tiles + tiles, t.bytes + sizes.get(path, 0))
    per_tile = "tile hashes" if store.tile_checked else "chunk checksums" if store.checked else "none"
    report = VerifyReport(str(store.path), store.format_version, per_tile, tuple(totals.values()), _merged(problems), time.perf_counter() - t0)
    for line in report.lines():
        log.info("verified %s: %s", store.path, line)
    return report


class _Clock:
    """Bytes checked so far: the caller's progress callback, and an INFO line every LOG_SECONDS."""

    def __init__(self, path: Path, total: int, progress: Callable[[int, int], None] | None):
        self.path, self.total, self.progress = path, total, progress
        self.done, self.t0 = 0, time.perf_counter()
        self.last = self.t0

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)
        now = time.perf_counter()
        if now - self.last >= LOG_SECONDS:
            self.last = now
            log.info("verifying store %s: %.2f of %.2f GB (%.0f%%), %.2f GB/s", self.path, self.done / 1e9, self.total / 1e9,
                     100 * self.done / max(self.total, 1), self.done / 1e9 / (now - self.t0))  # fmt: skip


def _scan(item: _DataFile, pool: Any, threads: int, clock: _Clock) -> None:
    """One pass over a data file: its tiles checked on ``pool`` (``threads`` blocks in flight; in
    this thread without a pool) while this thread adds each block to the whole-file checksum."""
    digest = FileDigest(item.path, item.expected)
    with open(item.path, "rb") as fh:
        arr = item.arr
        if arr is not None and arr.ndim == 2 and arr.flags.c_contiguous:
            _scan_rows(item, arr, fh, digest, pool, threads, clock)
        # the rest: all of a file unreadable as an array, else the bytes after the array (none in a file numpy wrote)
        while chunk := fh.read(BLOCK_BYTES):
            digest.update(chunk)
            clock.add(len(chunk))
    item.got = digest.value()


def _scan_rows(item: _DataFile, arr: np.ndarray, fh: BinaryIO, digest: FileDigest, pool: Any, threads: int, clock: _Clock) -> None:
    """The header and rows of a data file's array (``fh`` left after them): the rows a block at a
    time, read ahead, checked, added to ``digest``, then dropped from memory (see :func:`_scan`)."""
    from opencmap.io.store.reader import _advise_willneed, _map_of

    header = fh.read(int(arr.offset))
    digest.update(header)
    plain = arr.view(np.ndarray)
    mm, base = _map_of(arr), int(arr.offset) % mmap.ALLOCATIONGRANULARITY  # the array's start inside the map
    row_bytes = arr.shape[1] * arr.dtype.itemsize
    step = max(1, BLOCK_BYTES // max(row_bytes, 1))
    blocks = [(r0, min(r0 + step, arr.shape[0])) for r0 in range(0, arr.shape[0], step)]
    pending: deque[tuple[int, int, Any]] = deque()

    def finish() -> None:
        r0, r1, fut = pending.popleft()
        try:
            bad = fut.result() if pool is not None and fut is not None else fut
        except StoreError as exc:
            bad, item.problem = None, item.problem or _what(exc)
        if bad is not None and item.bad is None:
            item.bad = bad
        if mm is not None:  # checked: unmap these pages, and drop them from the cache where nobody maps them
            lo = base + r0 * row_bytes
            lo -= lo % mmap.PAGESIZE
            mm.madvise(mmap.MADV_DONTNEED, lo, base + r1 * row_bytes - lo)
        drop_cached(fh.fileno(), int(arr.offset) + r0 * row_bytes, (r1 - r0) * row_bytes)
        clock.add((r1 - r0) * row_bytes + (len(header) if r0 == 0 else 0))

    def ahead(i: int) -> None:  # read block i ahead (a larger-than-RAM store's map reads no more than asked)
        if mm is not None and i < len(blocks):
            _advise_willneed(mm, np.array([base + blocks[i][0] * row_bytes]), np.array([base + blocks[i][1] * row_bytes]))

    ahead(0)
    for i, (r0, r1) in enumerate(blocks):
        ahead(i + 1)
        check = item.first_bad if item.bad is None and item.problem is None else None  # after a bad tile: the checksum only
        if check is None:
            fut = None
        elif pool is not None:
            fut = pool.submit(check, r0, r1)
        else:
            try:
                fut = check(r0, r1)
            except StoreError as exc:
                fut, item.problem = None, _what(exc)
        digest.update(plain[r0:r1])
        pending.append((r0, r1, fut))
        while len(pending) > (threads if pool is not None else 0):
            finish()
    while pending:
        finish()
    fh.seek(int(arr.offset) + arr.nbytes)


def _diagnose(item: _DataFile) -> list[VerifyProblem]:
    """The problems of a scanned data file: its tile that does not match (or its hash file, when
    the data match their own checksum but not their hashes), its whole-file checksum."""
    out = []
    whole_bad = bool(item.expected) and item.got != item.expected
    mismatch = f"checksum mismatch: {item.got} != {item.expected} in the manifest"
    if item.problem is not None:
        out.append(VerifyProblem(str(item.path), item.problem + (f"; {mismatch}" if whole_bad else ""), item.kind))
    elif item.bad is not None:
        row, lo, hi = item.bad
        last = min(hi, item.arr.shape[1]) - 1 if item.arr is not None else hi - 1
        what = item.describe(row, lo, hi)
        if item.side is not None and item.expected and not whole_bad:  # the data match the checksum they were written with: the hashes changed
            where = what.partition(" do not match ")[0]
            out.append(VerifyProblem(str(item.side), f"hashes damaged at {where} of {item.path.name}, which matches its own checksum "
                                     "(the data are intact)", "tile hashes", row, (lo, last)))  # fmt: skip
        else:
            out.append(VerifyProblem(str(item.path), what + (f"; {mismatch}" if whole_bad else ""), item.kind, row, (lo, last)))
    elif whole_bad:
        where = " (every tile matches its hash: the damage is outside the values, in the .npy header)" if item.first_bad else ""
        out.append(VerifyProblem(str(item.path), mismatch + where, item.kind))
    return out


def _merged(problems: list[VerifyProblem]) -> tuple[VerifyProblem, ...]:
    """One problem per file (what was found of a file twice joined; its first tile kept)."""
    by_path: dict[str, VerifyProblem] = {}
    for p in problems:
        first = by_path.get(p.path)
        if first is None:
            by_path[p.path] = p
        else:
            keep = first if first.row is not None or p.row is None else p
            by_path[p.path] = VerifyProblem(p.path, f"{keep.what}; {(p if keep is first else first).what}", keep.kind, keep.row, keep.columns)
    return tuple(sorted(by_path.values(), key=lambda p: p.path))
