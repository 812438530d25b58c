"""Checksums of store files: whole-file xxh3 (crc32 in stores written before format 3; manifest
entries, ``store info --verify``, small files when first read), the per-row, per-tile hashes of 2-D data files (``<kind>.tiles.npy``,
format 3, :mod:`opencmap.kernels.tilehash`) that readers check where they read, and the per-chunk
xxh3 checksums of format-2 stores (``<kind>.crc.npy``), still checked when such stores are read.

Chunks are hashed by address through xxhash's native ``XXH3_64bits`` (ctypes: no slice or buffer
object per chunk, the GIL released while hashing), with the Python call per chunk as fallback and
for stores checksummed with ``crc32``.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from opencmap.errors import StoreError

log = logging.getLogger(__name__)

_CHUNK = 1 << 24


_FILE_ALGO = "xxh3_64"  # whole-file checksums written from store format 3 on (``crc32`` before; both are read)


class FileDigest:
    """A whole-file checksum computed piece by piece (``update`` with the file's bytes in order):
    xxh3 (64-bit), or the algorithm of the recorded checksum ``like`` it is compared with
    (``crc32:`` or ``xxh3_64:``). Both release the GIL on large buffers."""

    def __init__(self, path: Path, like: str | None = None):
        self.algo = like.split(":", 1)[0] if like else _FILE_ALGO
        if self.algo == "xxh3_64":
            import xxhash

            self._xxh = xxhash.xxh3_64()
        elif self.algo == "crc32":
            self._crc = 0
        else:
            raise StoreError(f"unknown checksum {like!r} recorded for {path}; upgrade opencmap")

    def update(self, data: Any) -> None:
        """Add the next bytes (bytes or a C-contiguous array, read as its bytes)."""
        if isinstance(data, np.ndarray):
            data = data.reshape(-1).view(np.uint8)
        if self.algo == "xxh3_64":
            self._xxh.update(data)
        else:
            self._crc = zlib.crc32(data, self._crc)

    def value(self) -> str:
        """``"<algo>:<hex digest>"`` of the bytes so far."""
        return f"xxh3_64:{self._xxh.intdigest():016x}" if self.algo == "xxh3_64" else f"crc32:{self._crc:08x}"


def drop_cached(fd: int, offset: int = 0, length: int = 0) -> None:
    """Drop bytes ``offset:offset + length`` (0: to the end) of an open file from the page cache
    where no process maps them: a checksum pass must not evict what queries use."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _file_checksum(path: Path, like: str | None = None) -> str:
    """``"<algo>:<hex digest>"`` of the file's bytes (:class:`FileDigest`)."""
    digest = FileDigest(path, like)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
        drop_cached(fh.fileno())
    return digest.value()


def _chunk_hasher(algo: str) -> Callable[[Any], int]:
    if algo == "crc32":
        return zlib.crc32
    if algo == "xxh3_64":
        import xxhash

        return xxhash.xxh3_64_intdigest
    raise StoreError(f"unknown chunk checksum {algo!r} in the store manifest; upgrade opencmap")


def _native_xxh3() -> Callable[[int, int], int] | None:
    """xxh3 called on a raw address (``XXH3_64bits`` of the ``xxhash`` extension through ctypes):
    no slicing, view or buffer object per chunk, and the GIL is released while it hashes. None when
    the symbol is not there or gives another digest than ``xxhash.xxh3_64_intdigest`` on a probe
    (the callers then use the Python call per chunk)."""
    global _NATIVE_XXH3
    if _NATIVE_XXH3 is not False:
        return _NATIVE_XXH3  # type: ignore[return-value]
    fn = None
    try:
        import ctypes

        import xxhash
        from xxhash import _xxhash

        lib = ctypes.CDLL(_xxhash.__file__)
        fn = getattr(lib, "XXH3_64bits_dispatch", None) or lib.XXH3_64bits
        fn.argtypes, fn.restype = (ctypes.c_void_p, ctypes.c_size_t), ctypes.c_uint64
        probe = np.arange(70_001, dtype=np.uint32).view(np.uint8)
        if any(fn(probe.ctypes.data + k, n) != xxhash.xxh3_64_intdigest(probe[k : k + n]) for k, n in ((0, 0), (3, 17), (5, 240), (1, 70_000))):
            log.warning("xxhash's native XXH3_64bits disagrees with xxhash.xxh3_64_intdigest; chunk checks use the Python call")
            fn = None
    except (ImportError, OSError, AttributeError):
        fn = None
    _NATIVE_XXH3 = fn
    return fn


_NATIVE_XXH3: Any = False  # not looked up yet


def _digest_chunks(arr: np.ndarray, rows: np.ndarray, chunks: np.ndarray, cols: int, algo: str) -> np.ndarray:
    """Checksums of chunk ``chunks[i]`` (``cols`` columns) of row ``rows[i]`` of a C-contiguous 2-D
    array (memory map), uint64: xxh3 by address in one pass (:func:`_native_xxh3`), else the
    Python digest per chunk. Callers make sure rows and chunks lie inside ``arr``."""
    n_cols, item = arr.shape[1], arr.dtype.itemsize
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(chunks, dtype=np.int64) * cols
    fast = _native_xxh3() if algo == "xxh3_64" and arr.flags.c_contiguous else None
    if fast is not None:
        addrs = arr.ctypes.data + (rows * n_cols + starts) * item
        lens = (np.minimum(starts + cols, n_cols) - starts) * item
        return np.fromiter(map(fast, addrs.tolist(), lens.tolist()), dtype=np.uint64, count=len(rows))
    digest = _chunk_hasher(algo)
    plain = arr.view(np.ndarray)  # plain view: slicing a memmap object per chunk is slow
    return np.fromiter(
        (digest(memoryview(np.ascontiguousarray(plain[r, c : c + cols])).cast("B")) for r, c in zip(rows.tolist(), starts.tolist(), strict=True)),
        dtype=np.uint64, count=len(rows),
    )


def _sidecar(rel: str) -> str:
    return rel[: -len(".npy")] + ".crc.npy"


def _tiles_sidecar(rel: str) -> str:
    return rel[: -len(".npy")] + ".tiles.npy"


def _tile_sums(path: Path) -> np.ndarray:
    """The tile hashes of the 2-D ``.npy`` file ``path`` (read once, sequentially; its pages then
    dropped from the cache: a checksum pass must not evict what queries use)."""
    from opencmap.kernels.tilehash import tile_hashes

    arr = np.load(path, mmap_mode="r")
    sums = tile_hashes(arr)
    del arr
    fd = os.open(path, os.O_RDONLY)
    try:
        drop_cached(fd)
    finally:
        os.close(fd)
    return sums


def _write_sidecar(path: Path, arr: np.ndarray) -> None:
    """Write a checksum sidecar durably, atomically (beside files of a generation being written)."""
    from opencmap.io.atomic import atomic_write_path

    with atomic_write_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def tile_entry(folder: Path, rel: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Write the tile hashes of the 2-D data file ``folder / rel`` beside it; returns the data
    file's ``tile_hashes`` manifest field, the sidecar's name and its manifest entry."""
    from opencmap.kernels.tilehash import TILE_COLS, TILE_HASH_ALGO

    side = _tiles_sidecar(rel)
    _write_sidecar(folder / side, _tile_sums(folder / rel))
    return {"file": side, "cols": TILE_COLS, "algo": TILE_HASH_ALGO}, side, {
        "bytes": (folder / side).stat().st_size, "checksum": _file_checksum(folder / side)}


def _file_sums(folder: Path, rel: str, entry: Mapping[str, Any]) -> tuple[str, np.ndarray | None]:
    """Whole-file checksum, and the tile hashes of a 2-D ``.npy`` data file (None otherwise)."""
    whole = _file_checksum(folder / rel)
    if not rel.endswith(".npy") or len(entry.get("shape", ())) != 2:
        return whole, None
    return whole, _tile_sums(folder / rel)


def _checksum_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Fill ``bytes`` and ``checksum`` of manifest file entries, and write the tile hashes of
    every 2-D data file beside it (``<kind>.tiles.npy``, entry ``tile_hashes``), which readers
    check where they read (files read in parallel threads: ``zlib.crc32`` and the hash kernel
    release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from opencmap.kernels.tilehash import TILE_COLS, TILE_HASH_ALGO

    rels = sorted(files, key=lambda rel: -(folder / rel).stat().st_size)
    with ThreadPoolExecutor(max_workers=min(len(rels), os.cpu_count() or 1) or 1) as pool:
        sums = dict(zip(rels, pool.map(lambda rel: _file_sums(folder, rel, files[rel]), rels), strict=True))
    for rel in list(files):
        entry = files[rel]
        entry["bytes"] = (folder / rel).stat().st_size
        whole, tiles = sums[rel]
        entry["checksum"] = whole
        if tiles is not None:
            side = _tiles_sidecar(rel)
            _write_sidecar(folder / side, tiles)
            entry["tile_hashes"] = {"file": side, "cols": TILE_COLS, "algo": TILE_HASH_ALGO}
            files[side] = {"bytes": (folder / side).stat().st_size, "checksum": _file_checksum(folder / side)}


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The JSON bytes of a store manifest with its own checksum (``manifest_checksum``: xxh3 of
    the JSON of every other field, as written), checked by readers (:func:`manifest_checksum_ok`)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_checksum"}
    return json.dumps({**body, "manifest_checksum": _json_checksum(body)}, indent=1, default=str).encode()


def manifest_checksum_ok(manifest: Mapping[str, Any]) -> bool:
    """True when a manifest read back carries no ``manifest_checksum`` (written before format 3)
    or the one of its other fields."""
    recorded = manifest.get("manifest_checksum")
    if recorded is None:
        return True
    return recorded == _json_checksum({k: v for k, v in manifest.items() if k != "manifest_checksum"})


def _json_checksum(body: Mapping[str, Any]) -> str:
    import xxhash

    return f"xxh3_64:{xxhash.xxh3_64_intdigest(json.dumps(body, indent=1, default=str).encode()):016x}"
