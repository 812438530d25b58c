"""Gzip-compressed GCTX (``.gctx.gz``, as GEO serves CMap's matrices): streamed to a plain file.

HDF5 needs random access, so a compressed GCTX cannot be read in place. :func:`gunzip_file`
streams it to an uncompressed copy in bounded memory (a few MiB, whatever the file's size), with
progress, and :func:`resolve_gzipped_gctx` is the one place the readers ask: given any path it
returns the path to read — the path itself, or for a gzip file holding HDF5 (judged by the first
decompressed bytes, never the extension) its decompressed copy, made once and reused.

Where the copy goes: next to the compressed file, with the ``.gz`` removed (``X.gctx.gz`` →
``X.gctx``); when that folder is not writable, under ``$OPENCMAP_CACHE_DIR`` (default
``~/.cache/opencmap``) in ``decompressed/``. An existing copy is reused when it is HDF5, no older
than the compressed file and its size agrees with the gzip trailer (ISIZE, the size modulo 2**32);
a different file already at that path is never overwritten (:class:`~opencmap.errors.FormatError`).
The copy is written to ``<name>.part`` and renamed when complete, so an interrupted decompression
never leaves a file that looks finished. Before writing, the space needed (the HDF5 superblock's
end-of-file address) is checked against the free space (:class:`~opencmap.errors.DiskSpaceError`).

Decompression uses ISA-L (python-isal, ``isal.igzip``), with :mod:`gzip` as the fallback when
isal is not installed. Measured here on a 148 MB float32 GCTX (gzip level 1) on the shared 2-core
machine: 1.13 s wall against 2.48 s for :mod:`gzip` when quiet; CPU 0.57 s against 0.80 s under
load, when wall time is bound by writing the copy (ISA-L's threaded reader: 1.96 s, slower on 2
cores). ``benchmarks/bench_fetch.py`` prints both for its matrix.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import IO, Any

from opencmap.errors import DiskSpaceError, FormatError

__all__ = [
    "gunzip_file",
    "resolve_gzipped_gctx",
    "is_gzip",
    "gzip_holds_hdf5",
    "decompressed_path",
    "hdf5_end_of_file",
    "set_progress_factory",
    "StreamingGunzip",
    "is_decompressed_copy",
]

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CHUNK = 4 << 20  # bytes per read: memory stays at a few MiB whatever the file size
#: Free space kept on top of the decompressed size.
DISK_MARGIN = 64 << 20

ProgressCallback = Callable[[int, int], None]
"""``progress(compressed bytes read, compressed size)``."""

_progress_factory: Callable[[Path], ProgressCallback] | None = None


def set_progress_factory(factory: Callable[[Path], ProgressCallback] | None) -> None:
    """Install how decompressions made on the readers' behalf report progress.

    ``factory(source)`` returns a ``progress(done, total)`` callback (the CLI installs progress
    bars); ``None`` restores the default, a log line (INFO) every 10 seconds.
    """
    global _progress_factory
    _progress_factory = factory


def _log_progress(source: Path, every: float = 10.0) -> ProgressCallback:
    state = {"last": time.perf_counter()}

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - state["last"] >= every and total:
            state["last"] = now
            log.info("decompressing %s: %.0f%% (%.2f of %.2f GB read)", source.name, 100 * done / total, done / 1e9, total / 1e9)

    return report


def _open_gzip(path: Path) -> IO[bytes]:
    try:
        from isal import igzip

        return igzip.open(path, "rb")  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover - isal is a dependency; the fallback keeps working without it
        import gzip

        return gzip.open(path, "rb")


def is_gzip(path: str | PathLike[str]) -> bool:
    """True if the file starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def gzip_holds_hdf5(path: str | PathLike[str]) -> bool:
    """True if ``path`` is gzip whose first decompressed bytes are the HDF5 signature."""
    p = Path(path)
    if not p.is_file() or not is_gzip(p):
        return False
    try:
        with _open_gzip(p) as fh:
            return fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except (OSError, EOFError) as exc:
        raise FormatError(f"gzip-compressed but cannot be decompressed ({exc}); download it again", path=p) from exc


def hdf5_end_of_file(head: bytes) -> int | None:
    """The end-of-file address (= file size) from an HDF5 superblock at the start of ``head``, or None."""
    if head[:8] != HDF5_SIGNATURE or len(head) < 64:
        return None
    version = head[8]
    if version in (0, 1):
        size_offsets = head[13]
        start = 24 + (4 if version == 1 else 0)
        field = 2  # base address, free-space address, end-of-file address
    elif version in (2, 3):
        size_offsets = head[9]
        start = 12
        field = 2  # base address, superblock extension address, end-of-file address
    else:
        return None
    if size_offsets not in (4, 8):
        return None
    fmt = "<Q" if size_offsets == 8 else "<I"
    at = start + field * size_offsets
    if len(head) < at + size_offsets:
        return None
    (eof,) = struct.unpack_from(fmt, head, at)
    return int(eof)


def _gzip_isize(path: Path) -> int:
    """The gzip trailer's ISIZE: the uncompressed size modulo 2**32 (last member)."""
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return int(struct.unpack("<I", fh.read(4))[0])


def _cache_root() -> Path:
    env = os.environ.get("OPENCMAP_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "opencmap"


def decompressed_path(path: str | PathLike[str]) -> Path:
    """Where the decompressed copy of ``path`` goes: next to it, or in the cache when the folder is read-only."""
    p = Path(path)
    name = p.name[:-3] if p.name.lower().endswith(".gz") else p.name + ".decompressed"
    if os.access(p.parent, os.W_OK):
        return p.with_name(name)
    key = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:16]
    return _cache_root() / "decompressed" / key / name


def _is_copy_of(copy: Path, source: Path) -> bool:
    """Whether ``copy`` is a complete decompressed copy of ``source`` (HDF5, not older, ISIZE agrees)."""
    try:
        st = copy.stat()
        with open(copy, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return (
        head == HDF5_SIGNATURE
        and st.st_mtime >= source.stat().st_mtime
        and st.st_size % (1 << 32) == _gzip_isize(source)
    )


def is_decompressed_copy(copy: str | PathLike[str], source: str | PathLike[str]) -> bool:
    """Whether ``copy`` is a complete decompressed copy of the gzip file ``source`` (see the module docstring)."""
    return _is_copy_of(Path(copy), Path(source))


class StreamingGunzip:
    """Decompress a gzip stream as it arrives (e.g. while downloading) into ``dest``, in a worker thread.

    :meth:`feed` compressed chunks in order, then :meth:`finish` (renames ``dest.part`` to ``dest``;
    :class:`~opencmap.errors.FormatError` if the stream is corrupt or incomplete) or :meth:`abort`.
    Memory is bounded by the queue (64 chunks).
    """

    def __init__(self, dest: str | PathLike[str], *, name: str = "") -> None:
        import queue
        import threading

        self.dest = Path(dest)
        self.part = self.dest.with_name(self.dest.name + ".part")
        self.name = name or self.dest.name
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._error: BaseException | None = None
        self._eof = False
        self._fh = open(self.part, "wb")  # noqa: SIM115 - closed by finish/abort
        self._thread = threading.Thread(target=self._run, name="opencmap-gunzip", daemon=True)
        self._thread.start()

    @staticmethod
    def _decompressor() -> Any:
        try:
            from isal import igzip_lib

            return igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
        except ImportError:  # pragma: no cover
            import zlib

            return zlib.decompressobj(wbits=31)

    def _run(self) -> None:
        d = self._decompressor()
        try:
            while (chunk := self._queue.get()) is not None:
                if self._error is not None:
                    continue  # drain
                while chunk:
                    self._fh.write(d.decompress(chunk))
                    chunk = b""
                    if d.eof:  # a member ended: another may follow (multi-member gzip)
                        chunk = d.unused_data
                        self._eof = not chunk
                        if chunk:
                            d = self._decompressor()
                    else:
                        self._eof = False
        except BaseException as exc:  # reported by finish()
            self._error = exc
            while self._queue.get() is not None:
                pass

    def feed(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._fh.close()

    def finish(self) -> Path:
        self._stop()
        if self._error is not None or not self._eof:
            self.part.unlink(missing_ok=True)
            why = f"({self._error})" if self._error is not None else "(the stream ended early)"
            raise FormatError(f"gzip stream cannot be decompressed {why}; the file is truncated or corrupt", path=self.name)
        os.replace(self.part, self.dest)
        return self.dest

    def abort(self) -> None:
        self._stop()
        self.part.unlink(missing_ok=True)


def _check_space(folder: Path, needed: int, what: Path) -> None:
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN > free:
        raise DiskSpaceError(
            f"decompressing {what.name} needs {needed / 1e9:.2f} GB but {folder} has {free / 1e9:.2f} GB free; "
            f"free some space, or decompress it elsewhere (gunzip -c {what.name} > OTHER_DISK/{what.name[:-3]}) and give that path"
        )


def gunzip_file(
    source: str | PathLike[str],
    dest: str | PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    expected_size: int | None = None,
) -> Path:
    """Decompress ``source`` (gzip) into ``dest`` in bounded memory; atomic (``dest.part``, then renamed).

    ``expected_size`` (bytes) is checked against the free space first. ``progress(done, total)``
    gets compressed bytes read. A truncated or corrupt gzip stream raises
    :class:`~opencmap.errors.FormatError` naming the file; nothing is left at ``dest``.
    """
    src, out = Path(source), Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    if expected_size is not None:
        _check_space(out.parent, expected_size, src)
    part = out.with_name(out.name + ".part")
    total = src.stat().st_size
    report = progress or (lambda done, tot: None)
    started = time.perf_counter()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with open(src, "rb") as raw, _wrap(raw) as gz, open(part, "wb") as fh:
            report(0, total)
            last = 0.0
            while True:
                n = gz.readinto(view)
                if not n:
                    break
                fh.write(view[:n])
                now = time.perf_counter()
                if now - last > 0.2:
                    report(raw.tell(), total)
                    last = now
            report(total, total)
    except (OSError, EOFError) as exc:
        part.unlink(missing_ok=True)
        raise FormatError(
            f"gzip stream cannot be decompressed ({exc}); the file is truncated or corrupt: download it again",
            path=src,
        ) from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    seconds = time.perf_counter() - started
    log.info("decompressed %s -> %s (%.1f MB in %.1f s)", src, out, out.stat().st_size / 1e6, seconds)
    return out


def _wrap(raw: IO[bytes]) -> Any:
    try:
        from isal import igzip

        return igzip.GzipFile(fileobj=raw, mode="rb")
    except ImportError:  # pragma: no cover
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")


def resolve_gzipped_gctx(
    path: str | PathLike[str],
    *,
    progress: ProgressCallback | None = None,
) -> Path:
    """The file to read for ``path``: itself, or for gzip-compressed HDF5 (``.gctx.gz``) its decompressed copy.

    Text GCT in gzip (``.gct.gz``) is returned unchanged (the text reader decompresses it).
    The copy is made once (see the module docstring for where) and reused afterwards.
    """
    p = Path(path)
    if not gzip_holds_hdf5(p):
        return p
    target = decompressed_path(p)
    if target.exists():
        if _is_copy_of(target, p):
            log.info("reading %s, the decompressed copy of %s", target, p)
            return target
        raise FormatError(
            f"{target.name} exists next to it but is not its complete decompressed copy (older, or a different size); "
            f"move or delete {target} and try again",
            path=p,
        )
    with _open_gzip(p) as fh:
        head = fh.read(4096)
    size = hdf5_end_of_file(head)
    log.info("decompressing %s to %s (%s)", p, target, f"{size / 1e9:.2f} GB" if size else "size unknown")
    if progress is None:
        progress = _progress_factory(p) if _progress_factory is not None else _log_progress(p)
    gunzip_file(p, target, progress=progress, expected_size=size)
    if size is not None and target.stat().st_size < size:
        got = target.stat().st_size
        target.unlink(missing_ok=True)
        raise FormatError(
            f"decompressed to {got} bytes where its HDF5 superblock says {size}; the download is truncated: fetch it again",
            path=p,
        )
    return target
