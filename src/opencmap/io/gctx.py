"""GCTX: CMap's HDF5 layout for GCT matrices, read partially and written in streams.

Layout (as written by CMap's cmapM/cmapPy and read by their tools)::

    /                        attrs: version = b"GCTX1.0" (fixed-length bytes), src = file name
    /0/DATA/0/matrix         float32, shape (n_cols, n_rows): one HDF5 row per GCT column
    /0/META/ROW/id           row ids (fixed-length bytes; some files store integers)
    /0/META/ROW/<field>      one 1-D dataset per row metadata field (n_rows,)
    /0/META/COL/id           column ids
    /0/META/COL/<field>      one dataset per column metadata field (n_cols,)

Missing metadata values are stored as ``-666`` and read back as missing (see
:mod:`opencmap.io.fields`). Strings are stored fixed-length (UTF-8), numbers keep their dtype.

Reading: :func:`read_gctx` (or :class:`GCTXFile`, which keeps the file open and its row ids and
row metadata read for repeated reads) reads only what a subset needs. Positions along the stored first axis
(GCT columns) are sorted and grouped by chunk; each needed chunk is read once (raw, decoded here
when chunks hold whole columns and the filters are gzip/shuffle, as we and cmapPy write them;
otherwise as contiguous hyperslab spans into a small buffer) and its columns are scattered into
the output in the order asked for; the whole matrix is never loaded for a subset. Ids are looked
up in Arrow without making a Python string per id, and metadata of small subsets is read by
point selection. Row subsets of uncompressed files (which touch every column) are gathered
straight from the file through small read-only mmap windows. The returned matrix is the transpose of the stored block, so ``GCT.data`` is
column-contiguous (Fortran order) without a copy.

Writing: :class:`GCTXWriter` streams column blocks into a resizable chunked dataset (files larger
than memory), keeps the (small) column metadata in memory and writes it on close; the file appears
atomically at its final path only when the writer closes without error.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import shutil
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa

from opencmap.backends.settings import Settings
from opencmap.core.gct import GCT
from opencmap.errors import (
    ConfigError,
    FormatError,
    IdNotFoundError,
    OpenCMapWarning,
    ValidationError,
)
from opencmap.io.atomic import AtomicFile, atomic_write_path
from opencmap.io.fields import bytes_to_arrow, decode_bytes, encode_text, from_stored, to_stored
from opencmap.io.selection import MetaFilter, resolve_positions
from opencmap.io.versions import check_format_version

__all__ = [
    "GCTX_VERSION",
    "MATRIX_NODE",
    "ROW_META_NODE",
    "COL_META_NODE",
    "read_gctx",
    "read_gctx_meta",
    "GCTXFile",
    "write_gctx",
    "GCTXWriter",
    "GCTXSlots",
    "GCTFileInfo",
    "gctx_info",
    "default_chunks",
]

logger = logging.getLogger(__name__)

GCTX_VERSION = "GCTX1.0"
MATRIX_NODE = "/0/DATA/0/matrix"
ROW_META_NODE = "/0/META/ROW"
COL_META_NODE = "/0/META/COL"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

_CHUNK_TARGET_BYTES = 64 * 1024
_READ_BUFFER_BYTES = 8 * 1024 * 1024
_WRITE_BLOCK_BYTES = 64 * 1024 * 1024
_CONTIGUOUS_GAP = 8  # unchunked files: merge runs separated by at most this many columns


# ---------------------------------------------------------------------------------------- opening
def _open(path: str | PathLike[str]) -> h5py.File:
    p = Path(path)
    if not p.exists():
        raise FormatError("file not found; check the path", path=p)
    try:
        return h5py.File(p, "r")
    except OSError as exc:
        with open(p, "rb") as fh:
            head = fh.read(8)
        if head != HDF5_SIGNATURE:
            raise FormatError(
                "not an HDF5 file (no HDF5 signature); if it is GCT text, read it with read_gct, "
                "which detects the format by content",
                path=p,
            ) from exc
        raise FormatError(
            f"HDF5 file cannot be opened ({exc}); it is probably truncated or corrupt: "
            f"download or write it again",
            path=p,
        ) from exc


def _check_version(h5: h5py.File, path: Path) -> str:
    raw = h5.attrs.get("version")
    if raw is None:
        return ""
    if isinstance(raw, np.ndarray):
        raw = raw.ravel()[0] if raw.size else b""
    version = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, np.bytes_)) else str(raw)
    version = version.strip().strip("\x00")
    match = re.fullmatch(r"GCTX(\d+)(?:\.(\d+))?", version)
    if match:  # only the major version matters: GCTX1.x files all read alike
        check_format_version(
            (int(match.group(1)),), (1,), what="GCTX", path=path, node="/ (attribute version)", shown=(version, GCTX_VERSION)
        )
    return version


def _node(h5: h5py.File, name: str, path: Path) -> Any:
    try:
        return h5[name]
    except KeyError:
        raise FormatError(
            f"missing HDF5 node; a GCTX file has {MATRIX_NODE}, {ROW_META_NODE}/id and {COL_META_NODE}/id",
            path=path,
            node=name,
        ) from None
    except (OSError, RuntimeError) as exc:
        raise FormatError(f"cannot read HDF5 node ({exc}); the file is probably corrupt", path=path, node=name) from exc


def _read_dataset(ds: h5py.Dataset, path: Path) -> np.ndarray:
    try:
        if h5py.check_string_dtype(ds.dtype) is not None and ds.dtype.kind == "O":
            return np.asarray(ds.asstr()[()], dtype=object)
        return ds[()]
    except (OSError, RuntimeError, ValueError) as exc:
        raise FormatError(f"cannot read dataset ({exc}); the file is probably corrupt", path=path, node=ds.name) from exc


def _ids_from_stored(raw: np.ndarray) -> np.ndarray:
    """Stored ids (bytes, str or numbers) as an object array of ``str``."""
    raw = np.asarray(raw).ravel()
    kind = raw.dtype.kind
    if kind == "S":
        text = bytes_to_arrow(raw, strip=True)
        if text is not None:
            return text.to_numpy(zero_copy_only=False).astype(object, copy=False)
        uni = decode_bytes(raw)
        return np.char.strip(uni).astype(object) if uni.size else uni.astype(object)
    if kind in "iu":
        return raw.astype(str).astype(object)
    if kind == "f":
        integral = np.isfinite(raw) & (raw == np.round(raw))
        if integral.all():
            return raw.astype(np.int64).astype(str).astype(object)
        return raw.astype(str).astype(object)
    return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw], dtype=object)


def _read_ids(h5: h5py.File, group: str, n: int, path: Path) -> pa.Array:
    """All ids of one axis as an Arrow string array (no Python objects: cheap for 10^5-10^6 ids)."""
    node = f"{group}/id"
    ds = _node(h5, node, path)
    ids = _ids_to_arrow(np.asarray(_read_dataset(ds, path)).ravel())
    _check_id_count(len(ids), n, path, node)
    return ids


def _ids_to_arrow(raw: np.ndarray) -> pa.Array:
    """Stored ids (bytes, str or numbers) as an Arrow string array (bytes without Python objects)."""
    ids = bytes_to_arrow(raw, strip=True) if raw.dtype.kind == "S" else None
    return ids if ids is not None else pa.array(_ids_from_stored(raw), type=pa.string())


def _check_id_count(count: int, n: int, path: Path, node: str) -> None:
    if count != n:
        raise FormatError(
            f"{count} ids but the matrix has {n} along this axis; the file is inconsistent",
            path=path,
            node=node,
        )


def _check_unique_ids(index: pd.Index, group: str, path: Path) -> None:
    if not index.is_unique:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise FormatError(f"duplicated ids {dup}; ids must be unique", path=path, node=f"{group}/id")


_PARTIAL_META_FRACTION = 0.05  # read ids/metadata datasets by selection below this share


def _read_points(ds: h5py.Dataset, positions: np.ndarray, path: Path) -> np.ndarray:
    """Values of a 1-D dataset at ``positions`` (in that order) without reading the whole axis.

    Positions within a compact span (a plate's columns, usually) are read as one slice; scattered
    ones by point selection.
    """
    wanted, back = np.unique(positions, return_inverse=True)
    if not len(wanted):
        return ds[0:0]
    lo, hi = int(wanted[0]), int(wanted[-1]) + 1
    try:
        if hi - lo <= 8 * len(wanted):
            return np.asarray(ds[lo:hi])[wanted - lo][back]
        return np.asarray(ds[wanted])[back]  # point selection: only the values asked for
    except (OSError, RuntimeError, ValueError) as exc:
        raise FormatError(f"cannot read dataset ({exc}); the file is probably corrupt", path=path, node=ds.name) from exc


def _read_ids_at(h5: h5py.File, group: str, n: int, positions: np.ndarray, path: Path) -> pa.Array:
    """The ids at ``positions`` only (for subsets well below the axis length)."""
    node = f"{group}/id"
    ds = _node(h5, node, path)
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
        return _read_ids(h5, group, n, path).take(pa.array(positions, type=pa.int64()))
    _check_id_count(ds.shape[0], n, path, node)
    return _ids_to_arrow(_read_points(ds, positions, path))


def _read_meta(
    h5: h5py.File,
    group: str,
    n: int,
    path: Path,
    *,
    ids: pa.Array,
    positions: np.ndarray | None = None,
    fields: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Metadata of one axis of length ``n`` (only ``fields`` if given), restricted to ``positions``
    before decoding; ``ids`` are the ids of the rows returned (all ids, or those at ``positions``)."""
    grp = _node(h5, group, path)
    names = [k for k in grp.keys() if k != "id"]
    if fields is not None:
        unknown = [f for f in fields if f not in names]
        if unknown:
            raise IdNotFoundError(f"{path}: no metadata field(s) {unknown} under {group}; fields are {names[:20]}")
        names = list(fields)
    few = positions is not None and len(positions) < _PARTIAL_META_FRACTION * n
    columns: dict[str, pd.Series] = {}
    for name in names:
        ds = grp[name]
        if not isinstance(ds, h5py.Dataset):
            continue
        if ds.shape != (n,) and not (ds.ndim == 2 and ds.shape in ((n, 1), (1, n))):
            raise FormatError(
                f"metadata field has shape {ds.shape} but there are {n} ids; the file is inconsistent",
                path=path,
                node=ds.name,
            )
        if few and ds.ndim == 1 and len(positions):
            raw = _read_points(ds, positions, path)
            if raw.dtype.kind == "O":
                raw = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in raw], dtype=object)
            nullable = None
        else:
            raw = _read_dataset(ds, path).ravel()
            nullable = bool((raw == -666).any()) if raw.dtype.kind in "iu" else None
            if positions is not None:
                raw = raw[positions]
        columns[name] = from_stored(raw, nullable=nullable)
    index = pd.Index(ids.to_numpy(zero_copy_only=False), dtype=object, name="rid" if group == ROW_META_NODE else "cid")
    _check_unique_ids(index, group, path)
    frame = pd.DataFrame(columns, copy=False) if columns else pd.DataFrame(index=pd.RangeIndex(len(index)))
    frame.index = pd.Index(index, dtype=object, name="rid" if group == ROW_META_NODE else "cid")
    return frame


# ------------------------------------------------------------------------------------ matrix read
def _plan_blocks(
    sorted_pos: np.ndarray, chunk: int | None, max_span: int
) -> list[tuple[int, int]]:
    """Split sorted positions into index ranges ``[i, j)`` each read as one stored span.

    Chunked storage: positions in the same chunk always share a read; neighbouring chunks are
    merged while the span stays within ``max_span``. Unchunked storage: runs separated by small
    gaps are merged.
    """
    n = len(sorted_pos)
    if n == 0:
        return []
    if chunk is not None:
        key = sorted_pos // chunk
        breaks = np.flatnonzero(np.diff(key) > 1) + 1  # a gap of a whole chunk or more
    else:
        breaks = np.flatnonzero(np.diff(sorted_pos) > _CONTIGUOUS_GAP) + 1
    bounds = np.concatenate(([0], breaks, [n]))
    blocks: list[tuple[int, int]] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        a, b = int(a), int(b)
        # Cut runs whose span exceeds the buffer (at chunk boundaries when chunked).
        while a < b:
            start = int(sorted_pos[a])
            limit = start + max_span
            if chunk is not None:
                limit = max(((start // chunk) + 1) * chunk, (limit // chunk) * chunk)
            j = int(np.searchsorted(sorted_pos, limit, side="left", sorter=None))
            j = min(max(j, a + 1), b)
            blocks.append((a, j))
            a = j
    return blocks


@dataclass(frozen=True)
class _ChunkLayout:
    cols: int  # GCT columns per chunk (chunks span all rows)
    deflate: bool
    shuffle: bool


def _direct_chunk_layout(ds: h5py.Dataset) -> _ChunkLayout | None:
    """The chunk layout if chunks can be read raw and decoded here, else ``None``.

    That is: chunks hold whole GCT columns (chunk shape ``(c, n_rows)``), the dtype is a native
    number, and the only filters are deflate (gzip) and/or shuffle, as opencmap and cmapPy write.
    Reading chunks raw skips HDF5's selection machinery and chunk cache, which dominate when many
    scattered columns are asked for.
    """
    if ds.chunks is None or ds.chunks[1] != ds.shape[1] or ds.dtype.kind not in "fiu" or not ds.dtype.isnative:
        return None
    try:
        plist = ds.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    except Exception:  # noqa: BLE001 - any doubt: use the regular path
        return None
    if any(f not in (h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE) for f in filters):
        return None
    shuffle = h5py.h5z.FILTER_SHUFFLE in filters
    if shuffle and filters.index(h5py.h5z.FILTER_SHUFFLE) != 0:
        return None  # shuffle must run before deflate on write
    return _ChunkLayout(cols=int(ds.chunks[0]), deflate=h5py.h5z.FILTER_DEFLATE in filters, shuffle=shuffle)


def _chunk_values(ds: h5py.Dataset, first_col: int, layout: _ChunkLayout) -> np.ndarray:
    """One chunk as a (layout.cols, n_rows) array of the stored dtype."""
    mask, raw = ds.id.read_direct_chunk((first_col, 0))
    n_rows = ds.shape[1]
    if mask:  # some filter was skipped for this chunk: let HDF5 decode it
        stop = min(first_col + layout.cols, ds.shape[0])
        block = np.zeros((layout.cols, n_rows), dtype=ds.dtype)
        ds.read_direct(block, source_sel=np.s_[first_col:stop, :], dest_sel=np.s_[: stop - first_col, :])
        return block
    if layout.deflate:
        raw = zlib.decompress(raw)
    if layout.shuffle:
        size = ds.dtype.itemsize
        raw = np.frombuffer(raw, dtype=np.uint8).reshape(size, -1).T.tobytes()
    return np.frombuffer(raw, dtype=ds.dtype).reshape(layout.cols, n_rows)


def _column_offsets(ds: h5py.Dataset) -> tuple[np.ndarray, int] | None:
    """File byte offsets of the stored chunks, if the matrix can be read straight from the file.

    That is when values are stored raw (no filters), in native byte order, either contiguously
    (one "chunk" of all columns) or in chunks of whole columns, all allocated. Returns the offsets
    (one per chunk, in column order) and the columns per chunk, else ``None``.
    """
    n_cols, n_rows = ds.shape
    if ds.dtype.kind not in "fiu" or not ds.dtype.isnative or n_cols == 0:
        return None
    try:
        if ds.chunks is None:
            offset = ds.id.get_offset()
            return None if offset is None else (np.array([offset], dtype=np.int64), n_cols)
        layout = _direct_chunk_layout(ds)
        if layout is None or layout.deflate or layout.shuffle or not hasattr(ds.id, "chunk_iter"):
            return None
        per = layout.cols
        offsets = np.full(-(-n_cols // per), -1, dtype=np.int64)
        masked: list[int] = []

        def visit(info: Any) -> None:
            if info.filter_mask:
                masked.append(1)
            offsets[info.chunk_offset[0] // per] = info.byte_offset

        ds.id.chunk_iter(visit)
    except Exception:  # noqa: BLE001 - any doubt: HDF5 reads it
        return None
    if masked or (offsets < 0).any():
        return None
    return offsets, per


_GATHER_ELEMENTS = 1 << 20


def _read_rows_mapped(
    path: Path,
    ds: h5py.Dataset,
    out: np.ndarray,
    col_pos: np.ndarray | None,
    rows: np.ndarray,
    located: tuple[np.ndarray, int],
    settings: Settings,
) -> None:
    """Gather a few rows of many columns straight from the file through small mmap windows.

    Row subsets touch every stored column; HDF5 would copy whole chunks to pick a few values
    from each. Here each window of the file (at most ``settings.gctx_map_window_bytes``, 64 MiB
    by default, and a quarter of the output) is mapped read-only, the wanted values are gathered with numpy, and the window is unmapped, so
    memory stays near the size of the result.
    """
    offsets, per = located
    n_cols, n_rows = ds.shape
    itemsize = ds.dtype.itemsize
    col_bytes = n_rows * itemsize
    stored = -(-n_cols // per) if ds.chunks is not None else 1
    span = per * col_bytes if ds.chunks is not None else n_cols * col_bytes
    size = os.path.getsize(path)
    if stored and int(offsets.max()) + span > size:
        raise FormatError("the matrix extends past the end of the file: it is truncated", path=path, node=MATRIX_NODE)
    cols = np.arange(n_cols, dtype=np.intp) if col_pos is None else np.asarray(col_pos, dtype=np.intp)
    base = offsets[cols // per] + (cols % per).astype(np.int64) * col_bytes  # byte offset of each column
    order = np.argsort(base, kind="stable")
    window = max(settings.gctx_map_window_min, min(settings.gctx_map_window_bytes, out.nbytes // 4))
    granularity = mmap.ALLOCATIONGRANULARITY
    with open(path, "rb") as fh:
        i = 0
        while i < len(order):
            first = int(base[order[i]])
            start = first - first % granularity
            limit = start + max(window, first - start + col_bytes)
            j = int(np.searchsorted(base[order], limit - col_bytes, side="right"))
            j = max(j, i + 1)
            end = int(base[order[j - 1]]) + col_bytes
            _gather_window(fh.fileno(), start, end - start, base[order[i:j]] - start, order[i:j], rows, ds.dtype, out)
            i = j


def _gather_window(
    fd: int, start: int, length: int, rel: np.ndarray, dest: np.ndarray, rows: np.ndarray, dtype: np.dtype, out: np.ndarray
) -> None:
    """Copy ``rows`` of the columns starting at byte ``rel`` of the mapped window into ``out[dest]``."""
    itemsize = dtype.itemsize
    mapped = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=start)
    try:
        raw = np.frombuffer(mapped, dtype=np.uint8)
        shift = int(rel[0] % itemsize)
        if bool(np.all(rel % itemsize == shift)):
            values = raw[shift : shift + (length - shift) // itemsize * itemsize].view(dtype)
            first = (rel - shift) // itemsize
            step = max(1, _GATHER_ELEMENTS // max(1, len(rows)))
            for a in range(0, len(first), step):
                idx = first[a : a + step, None] + rows[None, :]
                out[dest[a : a + step]] = values[idx]
            del values
        else:  # columns not aligned alike: one column at a time
            for r, d in zip(rel.tolist(), dest.tolist()):
                out[d] = np.frombuffer(mapped, dtype=dtype, count=int(rows.max()) + 1, offset=r)[rows]
        del raw
    finally:
        mapped.close()


_DIRECT_MAX_CHUNKS = 4096  # uncompressed: above this many chunks, HDF5's C loop over spans wins


def _chunks_touched(col_pos: np.ndarray | None, n_cols: int, chunk_cols: int) -> int:
    if col_pos is None:
        return -(-n_cols // chunk_cols)
    return len(np.unique(np.asarray(col_pos) // chunk_cols))


def _read_by_chunks(
    ds: h5py.Dataset, out: np.ndarray, col_pos: np.ndarray | None, row_pos: np.ndarray | None, layout: _ChunkLayout
) -> None:
    """Fill ``out`` (k_cols × k_rows) chunk by chunk, visiting each needed chunk once."""
    n_cols = ds.shape[0]
    cols = np.arange(n_cols, dtype=np.intp) if col_pos is None else np.asarray(col_pos, dtype=np.intp)
    rows = None if row_pos is None else np.asarray(row_pos, dtype=np.intp)
    order = np.argsort(cols, kind="stable")
    sorted_cols = cols[order]
    chunk_of = sorted_cols // layout.cols
    starts = np.flatnonzero(np.diff(chunk_of)) + 1
    bounds = np.concatenate(([0], starts, [len(sorted_cols)]))
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        first = int(chunk_of[a]) * layout.cols
        values = _chunk_values(ds, first, layout)
        local = sorted_cols[a:b] - first
        dest = order[a:b]
        if b - a == layout.cols or (local[-1] - local[0] == b - a - 1 and b - a > 1):
            picked = values[local[0] : local[-1] + 1]
        else:
            picked = values[local]
        if rows is not None:
            picked = picked[:, rows]
        if dest[-1] - dest[0] == b - a - 1 and np.all(np.diff(dest) == 1):
            out[dest[0] : dest[-1] + 1] = picked
        else:
            out[dest] = picked


def _column_run(col_pos: np.ndarray | None) -> tuple[int, int] | None:
    """``(c0, c1)`` if ``col_pos`` is one ascending run of two or more columns (a plate), else ``None``."""
    if col_pos is None or len(col_pos) < 2:
        return None
    c0, c1 = int(col_pos[0]), int(col_pos[-1]) + 1
    return (c0, c1) if c1 - c0 == len(col_pos) and bool(np.all(np.diff(col_pos) == 1)) else None


def _read_matrix(
    ds: h5py.Dataset,
    col_pos: np.ndarray | None,
    row_pos: np.ndarray | None,
    path: Path,
    out: np.ndarray | None = None,
    settings: Settings | None = None,
) -> np.ndarray:
    """The (rows × cols) float32 matrix for the positions asked for, as a Fortran-ordered view
    (of ``out``, a C-contiguous float32 (cols × rows) buffer filled in place, when given);
    ``settings``: the read's tuning (default :class:`~opencmap.backends.Settings`)."""
    n_cols, n_rows = ds.shape
    k_c = n_cols if col_pos is None else len(col_pos)
    k_r = n_rows if row_pos is None else len(row_pos)
    if out is None:
        out = np.empty((k_c, k_r), dtype=np.float32)
    elif out.shape != (k_c, k_r) or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValidationError(
            f"{path}: out= must be a writeable C-contiguous float32 array of shape {(k_c, k_r)} "
            f"(columns x rows), not {out.dtype} {out.shape}"
        )
    if k_c == 0 or k_r == 0:
        return out.T
    try:
        if col_pos is None and row_pos is None:
            ds.read_direct(out)
            return out.T
        run = _column_run(col_pos) if row_pos is None else None
        if run is not None:  # one run of columns (a plate): HDF5 reads the hyperslab in one call, in C
            ds.read_direct(out, source_sel=np.s_[run[0] : run[1], :])
            return out.T
        if row_pos is not None:
            located = _column_offsets(ds)
            if located is not None:
                _read_rows_mapped(path, ds, out, col_pos, np.asarray(row_pos, dtype=np.intp), located, settings or _DEFAULT_SETTINGS)
                return out.T
        direct = _direct_chunk_layout(ds)
        if direct is not None and (
            direct.deflate or _chunks_touched(col_pos, n_cols, direct.cols) <= _DIRECT_MAX_CHUNKS
        ):
            _read_by_chunks(ds, out, col_pos, row_pos, direct)
            return out.T
        cols = np.arange(n_cols, dtype=np.intp) if col_pos is None else np.asarray(col_pos, dtype=np.intp)
        order = np.argsort(cols, kind="stable")
        sorted_cols = cols[order]
        if row_pos is None:
            r0, r1, row_take = 0, n_rows, None
        else:
            rows = np.asarray(row_pos, dtype=np.intp)
            r0, r1 = int(rows.min()), int(rows.max()) + 1
            row_take = rows - r0
            if r1 - r0 == k_r and np.array_equal(row_take, np.arange(k_r)):
                row_take = None
        span_rows = r1 - r0
        chunk = ds.chunks[0] if ds.chunks is not None else None
        budget = max(_READ_BUFFER_BYTES // 8, min(_READ_BUFFER_BYTES, out.nbytes // 4))
        max_span = max(1, budget // max(1, span_rows * 4))
        if chunk is not None:
            max_span = max(max_span, chunk)
        buffer: np.ndarray | None = None
        for a, b in _plan_blocks(sorted_cols, chunk, max_span):
            c0, c1 = int(sorted_cols[a]), int(sorted_cols[b - 1]) + 1
            dest = order[a:b]
            contiguous_src = c1 - c0 == b - a
            contiguous_dest = contiguous_src and dest[-1] - dest[0] == b - a - 1 and bool(np.all(np.diff(dest) == 1))
            if contiguous_dest and row_take is None:
                d0 = int(dest[0])
                ds.read_direct(out, source_sel=np.s_[c0:c1, r0:r1], dest_sel=np.s_[d0 : d0 + (b - a), :])
                continue
            need = (c1 - c0) * span_rows
            if buffer is None or buffer.size < need:
                buffer = np.empty(max(need, min(max_span, n_cols) * span_rows), dtype=np.float32)
            view = buffer[:need].reshape(c1 - c0, span_rows)
            ds.read_direct(view, source_sel=np.s_[c0:c1, r0:r1])
            local = sorted_cols[a:b] - c0
            block = view[local] if not contiguous_src else view
            out[dest] = block if row_take is None else block[:, row_take]
    except (OSError, RuntimeError, ValueError, zlib.error) as exc:
        raise FormatError(f"cannot read the matrix ({exc}); the file is probably corrupt", path=path, node=MATRIX_NODE) from exc
    return out.T


# ------------------------------------------------------------------------------------------ read
class _OpenH5:
    """Holder of one open ``h5py.File`` (``self._h5``): idempotent :meth:`close`, context manager."""

    _h5: h5py.File | None

    def close(self) -> None:
        """Close the file (idempotent); the file stays where it is."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


_DEFAULT_SETTINGS = Settings()


class GCTXFile(_OpenH5):
    """A GCTX file kept open for several partial reads (e.g. one plate's columns after another).

    The file is opened and checked once; row ids, the full row metadata and (when a read needs
    them) all column ids are read once and kept, so each :meth:`read` reads only its columns.
    Reads by position (``cidx``/``ridx``) never read the ids of the whole axis.

    Examples
    --------
    >>> with GCTXFile("level3.gctx") as f:  # doctest: +SKIP
    ...     for positions in plates:
    ...         plate = f.read(cidx=positions)

    ``settings``: how reads are done (:class:`~opencmap.backends.Settings`, e.g. its
    ``gctx_map_window_bytes``); no setting changes the values read.
    """

    def __init__(self, path: str | PathLike[str], *, settings: Settings | None = None) -> None:
        self.path = Path(path)
        self.settings = settings or _DEFAULT_SETTINGS
        self._h5: h5py.File | None = _open(self.path)
        try:
            _check_version(self._h5, self.path)
            ds = _node(self._h5, MATRIX_NODE, self.path)
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2:
                raise FormatError("the matrix must be a 2-D dataset", path=self.path, node=MATRIX_NODE)
        except BaseException:
            self.close()
            raise
        self._ds = ds
        n_cols, n_rows = ds.shape
        self._n = {ROW_META_NODE: int(n_rows), COL_META_NODE: int(n_cols)}
        self._ids: dict[str, pa.Array] = {}
        self._row_meta: pd.DataFrame | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the stored matrix."""
        return self._n[ROW_META_NODE], self._n[COL_META_NODE]

    def _file(self) -> h5py.File:
        if self._h5 is None:
            raise ConfigError(f"{self.path}: the GCTX file is closed")
        return self._h5

    def _all_ids(self, group: str) -> pa.Array:
        if group not in self._ids:
            self._ids[group] = _read_ids(self._file(), group, self._n[group], self.path)
        return self._ids[group]

    def _positions(
        self, group: str, axis: str, ids: Any, positions: Any, meta_filter: MetaFilter | None, ignore_missing: bool
    ) -> np.ndarray | None:
        n = self._n[group]
        if ids is None and meta_filter is None and group not in self._ids:
            every: pa.Array = pa.nulls(n)  # positions need only the axis length: no id read
        else:
            every = self._all_ids(group)
        return resolve_positions(
            every,
            axis=axis,
            where=str(self.path),
            wanted_ids=ids,
            positions=positions,
            meta_filter=meta_filter,
            meta=lambda fields: _read_meta(self._file(), group, n, self.path, ids=self._all_ids(group), fields=fields),
            ignore_missing=ignore_missing,
        )

    def _meta(self, group: str, positions: np.ndarray | None) -> pd.DataFrame:
        n = self._n[group]
        if positions is None:
            if group == ROW_META_NODE and self._row_meta is not None:
                return self._row_meta  # GCT copies its metadata: the cache stays unchanged
            frame = _read_meta(self._file(), group, n, self.path, ids=self._all_ids(group))
            if group == ROW_META_NODE:
                self._row_meta = frame
            return frame
        if group in self._ids or len(positions) >= _PARTIAL_META_FRACTION * n:
            selected = self._all_ids(group).take(pa.array(positions, type=pa.int64()))
        else:
            selected = _read_ids_at(self._file(), group, n, positions, self.path)
        return _read_meta(self._file(), group, n, self.path, ids=selected, positions=positions)

    def read(
        self,
        *,
        rid: Iterable[Any] | None = None,
        cid: Iterable[Any] | None = None,
        ridx: Iterable[int] | None = None,
        cidx: Iterable[int] | None = None,
        row_filter: MetaFilter | None = None,
        col_filter: MetaFilter | None = None,
        meta_only: bool = False,
        ignore_missing: bool = False,
    ) -> GCT:
        """Read the file, or only the part a subset asks for.

        Options, result and errors are those of :func:`read_gctx` (which opens the file, calls
        this once and closes it).
        """
        self._file()  # a closed handle refuses to read, even when everything needed is cached
        row_pos = self._positions(ROW_META_NODE, "row", rid, ridx, row_filter, ignore_missing)
        col_pos = self._positions(COL_META_NODE, "column", cid, cidx, col_filter, ignore_missing)
        row_meta = self._meta(ROW_META_NODE, row_pos)
        col_meta = self._meta(COL_META_NODE, col_pos)
        shape = (len(row_meta), len(col_meta))
        if meta_only:
            data: np.ndarray = np.broadcast_to(np.float32(np.nan), shape)
        else:
            data = _read_matrix(self._ds, col_pos, row_pos, self.path, settings=self.settings)
        logger.debug("read %s: %d x %d%s", self.path, shape[0], shape[1], " (metadata only)" if meta_only else "")
        return GCT(data, row_meta=row_meta, col_meta=col_meta)

    def read_matrix(
        self, cidx: Iterable[int] | None = None, ridx: Iterable[int] | None = None, *, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Only the values at these positions: ``(rows, cols)`` float32 (a Fortran-ordered array).

        No ids or metadata are read; positions are checked like :meth:`read`'s ``cidx``/``ridx``.
        ``out``: a writeable C-contiguous float32 buffer of shape ``(cols, rows)`` (signature-major,
        as stored) to read into instead of a new array; the result is then ``out.T``.
        """
        self._file()
        row_pos = self._positions(ROW_META_NODE, "row", None, ridx, None, False)
        col_pos = self._positions(COL_META_NODE, "column", None, cidx, None, False)
        return _read_matrix(self._ds, col_pos, row_pos, self.path, out, self.settings)

    def read_meta(self, axis: str = "col") -> pd.DataFrame:
        """Metadata of one axis (``"row"`` or ``"col"``) as a DataFrame indexed by id."""
        if _axis(axis) == "row":
            return self._meta(ROW_META_NODE, None).copy()  # the cached frame: callers may change theirs
        return self._meta(COL_META_NODE, None)  # read afresh on every call



def read_gctx(
    path: str | PathLike[str],
    *,
    rid: Iterable[Any] | None = None,
    cid: Iterable[Any] | None = None,
    ridx: Iterable[int] | None = None,
    cidx: Iterable[int] | None = None,
    row_filter: MetaFilter | None = None,
    col_filter: MetaFilter | None = None,
    meta_only: bool = False,
    ignore_missing: bool = False,
    settings: Settings | None = None,
) -> GCT:
    """Read a GCTX file, or only the part of it a subset asks for.

    Parameters
    ----------
    path:
        The ``.gctx`` file.
    rid, cid:
        Ids to keep, in the order wanted (compared as strings).
    ridx, cidx:
        0-based positions to keep, in the order wanted (or a boolean mask).
    row_filter, col_filter:
        A callable on the metadata DataFrame returning a boolean mask, or a dict
        ``field -> value(s)``; rows/columns are kept in file order.
    meta_only:
        Read ids and metadata only; ``data`` is then a read-only all-NaN view that takes no
        memory (``np.broadcast_to``).
    ignore_missing:
        Skip unknown ids with an :class:`~opencmap.errors.OpenCMapWarning` instead of raising.
    settings:
        How the file is read (:class:`~opencmap.backends.Settings`: ``gctx_map_window_bytes``,
        ``gctx_map_window_min``); default: today's. The values read are the same for any setting.

    At most one of ``rid``/``ridx``/``row_filter`` (and of the column equivalents) may be given.

    Returns
    -------
    GCT
        ``data`` is float32, shape (rows, cols), Fortran-ordered (a transposed view of the block
        read); metadata columns keep their stored dtype, ``-666`` read as missing.

    Raises
    ------
    FormatError
        Not HDF5, truncated/corrupt, nodes missing or inconsistent (names the node).
    VersionError
        A ``version`` attribute newer than GCTX1.0.
    IdNotFoundError
        Unknown ids or positions (unless ``ignore_missing``).
    """
    with GCTXFile(path, settings=settings) as gctx:
        return gctx.read(
            rid=rid,
            cid=cid,
            ridx=ridx,
            cidx=cidx,
            row_filter=row_filter,
            col_filter=col_filter,
            meta_only=meta_only,
            ignore_missing=ignore_missing,
        )


def read_gctx_meta(path: str | PathLike[str], axis: str = "col") -> pd.DataFrame:
    """Metadata of one axis (``"row"`` or ``"col"``) as a DataFrame indexed by id, without the matrix."""
    with GCTXFile(path) as gctx:
        return gctx.read_meta(axis)


def _axis(axis: str) -> str:
    a = str(axis).lower()
    if a in ("row", "rows", "rid", "0"):
        return "row"
    if a in ("col", "cols", "column", "columns", "cid", "1"):
        return "col"
    raise ConfigError(f"axis must be 'row' or 'col', got {axis!r}")


# ------------------------------------------------------------------------------------------- info
@dataclass(frozen=True)
class GCTFileInfo:
    """What ``opencmap gct info`` shows about a GCT or GCTX file: format, size, storage, fields."""

    path: str
    format: str
    n_rows: int
    n_cols: int
    dtype: str
    chunks: tuple[int, ...] | None
    compression: str | None
    row_fields: tuple[str, ...]
    col_fields: tuple[str, ...]


def gctx_info(path: str | PathLike[str]) -> GCTFileInfo:
    """Dimensions, storage layout and metadata fields of a GCTX file."""
    p = Path(path)
    with _open(p) as h5:
        version = _check_version(h5, p) or "GCTX (no version attribute)"
        ds = _node(h5, MATRIX_NODE, p)
        n_cols, n_rows = ds.shape
        row_group = _node(h5, ROW_META_NODE, p)
        col_group = _node(h5, COL_META_NODE, p)
        compression = ds.compression
        if compression is not None and ds.compression_opts is not None:
            compression = f"{compression} ({ds.compression_opts})"
        return GCTFileInfo(
            path=str(p),
            format=version,
            n_rows=int(n_rows),
            n_cols=int(n_cols),
            dtype=str(ds.dtype),
            chunks=None if ds.chunks is None else tuple(int(c) for c in ds.chunks),
            compression=compression,
            row_fields=tuple(k for k in row_group.keys() if k != "id"),
            col_fields=tuple(k for k in col_group.keys() if k != "id"),
        )


# ------------------------------------------------------------------------------------------ write
def default_chunks(n_rows: int) -> tuple[int, int]:
    """Default HDF5 chunk shape ``(columns, rows)``: whole columns, about 64 KiB a chunk.

    Whole-column chunks make column subsets (the common CMap access) read little beyond what they
    return, while keeping the chunk count of a full read modest.
    """
    rows = max(1, n_rows)
    return (max(1, _CHUNK_TARGET_BYTES // (4 * rows)), rows)


def _chunk_shape(chunks: int | tuple[int, int] | None, n_rows: int) -> tuple[int, int]:
    if chunks is None:
        return default_chunks(n_rows)
    if isinstance(chunks, (int, np.integer)):
        if chunks < 1:
            raise ConfigError(f"chunks must be >= 1 columns, got {chunks}")
        return (int(chunks), max(1, n_rows))
    try:
        c, r = (int(x) for x in chunks)
    except (TypeError, ValueError):
        raise ConfigError(f"chunks must be an int (columns per chunk) or a (columns, rows) pair, got {chunks!r}") from None
    if c < 1 or r < 1:
        raise ConfigError(f"chunk sizes must be >= 1, got {chunks!r}")
    return (c, min(r, max(1, n_rows)))


def _compression_args(compression: str | None, level: int | None) -> dict[str, Any]:
    if compression in (None, "none", "None", ""):
        return {}
    if compression == "gzip":
        lvl = 4 if level is None else int(level)
        if not 0 <= lvl <= 9:
            raise ConfigError(f"gzip level must be 0..9, got {lvl}")
        return {"compression": "gzip", "compression_opts": lvl, "shuffle": True}
    raise ConfigError(f"compression must be None or 'gzip' (readable by CMap's tools), got {compression!r}")


def _meta_index(meta: pd.DataFrame | pd.Index | Sequence[Any], what: str) -> pd.DataFrame:
    if isinstance(meta, pd.DataFrame):
        frame = meta
    else:
        frame = pd.DataFrame(index=pd.Index([str(i) for i in meta], dtype=object))
    ids = pd.Index([str(i) for i in frame.index], dtype=object)
    if ids.has_duplicates:
        dup = ids[ids.duplicated()].unique()[:5].tolist()
        raise ValidationError(f"{what} ids must be unique; duplicated: {dup}")
    frame = frame.copy()
    if "id" in frame.columns:
        same = frame["id"].astype(object).to_numpy() == ids.to_numpy()
        if not bool(np.all(same)):
            raise ValidationError(
                f"{what} metadata has a field named 'id' that differs from the {what} ids; GCTX stores the "
                f"ids under that name: rename the field"
            )
        warnings.warn(
            f"dropped the {what} metadata field 'id': it repeats the {what} ids, which GCTX stores as 'id'",
            OpenCMapWarning,
            stacklevel=4,
        )
        frame = frame.drop(columns=["id"])
    frame.index = ids
    return frame


# Text fields at least this wide (bytes) are always stored gzip-compressed: CMap's fixed-length
# strings take the width of the longest value, so one 2,159-byte distil_id list makes every row
# 2,159 bytes, nearly all zero padding, which deflate removes. Any HDF5 reader (cmapPy, cmapR's
# rhdf5, h5py) decompresses them transparently; narrow fields stay uncompressed for point reads.
_COMPRESS_TEXT_BYTES = 64


def _meta_options(values: np.ndarray, compress: bool) -> dict[str, Any]:
    if not len(values):
        return {}
    if compress:
        return {"compression": "gzip", "shuffle": False}
    if values.dtype.kind == "S" and values.dtype.itemsize >= _COMPRESS_TEXT_BYTES:
        return {"compression": "gzip", "compression_opts": 1, "shuffle": False}  # padding: level 1 is as small, faster
    return {}


def _write_meta(group: h5py.Group, frame: pd.DataFrame, *, compress: bool) -> None:
    """Ids and one dataset per field. Uncompressed unless asked: point reads of a few values then
    touch only those bytes (metadata is a few percent of a GCTX's size); text fields of
    ``_COMPRESS_TEXT_BYTES`` or wider are compressed always (their padding can dwarf the matrix)."""
    ids = encode_text(np.asarray(frame.index, dtype=object).astype(str))
    group.create_dataset("id", data=ids, **_meta_options(ids, compress))
    for name in frame.columns:
        key = str(name)
        if "/" in key or key == ".":
            raise ValidationError(f"metadata field {key!r} contains '/', which HDF5 cannot store; rename it")
        values = to_stored(frame[name])
        group.create_dataset(key, data=values, **_meta_options(values, compress))


class GCTXWriter:
    """Stream a GCTX file column block by column block (for matrices larger than memory).

    Parameters
    ----------
    path:
        Destination ``.gctx``. Nothing appears there until :meth:`close` succeeds.
    row_meta:
        Row metadata (DataFrame indexed by row id) or just the row ids.
    chunks:
        HDF5 chunk shape: columns per chunk (int) or ``(columns, rows)``; default
        :func:`default_chunks` (whole columns, ~64 KiB).
    compression:
        ``None`` (default, fastest to read) or ``"gzip"`` (matrix with the shuffle filter, and the
        metadata datasets too).
    compression_level:
        gzip level 0–9 (default 4).
    src:
        Value of the root ``src`` attribute (default: the file name).

    Examples
    --------
    >>> with GCTXWriter("big.gctx", row_meta) as w:  # doctest: +SKIP
    ...     for block, meta in blocks:           # block: (n_rows, k) float32, meta: k rows
    ...         w.append(block, meta)
    """

    def __init__(
        self,
        path: str | PathLike[str],
        row_meta: pd.DataFrame | pd.Index | Sequence[Any],
        *,
        chunks: int | tuple[int, int] | None = None,
        compression: str | None = None,
        compression_level: int | None = None,
        src: str | None = None,
    ) -> None:
        self.path = Path(path)
        self._row_meta = _meta_index(row_meta, "row")
        self._n_rows = len(self._row_meta)
        self._chunks = _chunk_shape(chunks, self._n_rows)
        self._compression = _compression_args(compression, compression_level)
        self._col_blocks: list[pd.DataFrame] = []
        self._seen_cids: set[str] = set()
        self._n_cols = 0
        self._target = AtomicFile(self.path)
        self._h5: h5py.File | None = None
        try:
            self._h5 = h5py.File(self._target.path, "w")
            self._h5.attrs["version"] = np.bytes_(GCTX_VERSION.encode())
            self._h5.attrs["src"] = src if src is not None else self.path.name
            maxshape = (None, self._n_rows) if self._n_rows else (None, None)
            self._ds = self._h5.create_dataset(
                MATRIX_NODE,
                shape=(0, self._n_rows),
                maxshape=maxshape,
                dtype=np.float32,
                chunks=self._chunks,
                **self._compression,
            )
            row_group = self._h5.create_group(ROW_META_NODE, track_order=True)
            _write_meta(row_group, self._row_meta, compress=bool(self._compression))
        except BaseException:
            self._abort()
            raise

    @property
    def n_cols(self) -> int:
        """Columns written so far."""
        return self._n_cols

    def append(self, block: Any, col_meta: pd.DataFrame | pd.Index | Sequence[Any]) -> None:
        """Append ``k`` columns: ``block`` is (n_rows × k), ``col_meta`` has k rows (or k ids)."""
        if self._h5 is None:
            raise ConfigError(f"{self.path}: the writer is closed")
        try:
            arr = np.asarray(block)
            if arr.ndim != 2 or arr.shape[0] != self._n_rows:
                raise ValidationError(
                    f"{self.path}: block must be (n_rows={self._n_rows}) x k, got shape {arr.shape}"
                )
            meta = _meta_index(col_meta, "column")
            k = arr.shape[1]
            if len(meta) != k:
                raise ValidationError(f"{self.path}: block has {k} columns but its metadata has {len(meta)} rows")
            clash = [c for c in meta.index if c in self._seen_cids]
            if clash:
                raise ValidationError(f"{self.path}: column ids already written: {clash[:5]}; ids must be unique")
            if self._col_blocks and list(meta.columns) != list(self._col_blocks[0].columns):
                raise ValidationError(
                    f"{self.path}: column metadata fields differ between blocks: "
                    f"{list(self._col_blocks[0].columns)} vs {list(meta.columns)}"
                )
            start = self._n_cols
            self._ds.resize((start + k, self._n_rows if self._n_rows else 0))
            step = max(1, _WRITE_BLOCK_BYTES // max(1, 4 * self._n_rows))
            for a in range(0, k, step):
                b = min(k, a + step)
                piece = np.ascontiguousarray(arr[:, a:b].T, dtype=np.float32)
                self._ds[start + a : start + b, :] = piece
            self._n_cols += k
            self._seen_cids.update(meta.index)
            self._col_blocks.append(meta)
        except BaseException:
            self._abort()
            raise

    def close(self) -> None:
        """Write the column metadata and move the file to its final path."""
        if self._h5 is None:
            return
        try:
            col_meta = (
                pd.concat(self._col_blocks, axis=0) if self._col_blocks else pd.DataFrame(index=pd.Index([], dtype=object))
            )
            col_group = self._h5.create_group(COL_META_NODE, track_order=True)
            _write_meta(col_group, col_meta, compress=bool(self._compression))
            self._h5.close()
            self._h5 = None
            self._target.commit()
        except BaseException:
            self._abort()
            raise
        logger.debug("wrote %s: %d x %d", self.path, self._n_rows, self._n_cols)

    def _abort(self) -> None:
        if self._h5 is not None:
            try:
                self._h5.close()
            except Exception:  # noqa: BLE001 - the file is discarded anyway
                pass
            self._h5 = None
        self._target.discard()

    def abort(self) -> None:
        """Give up: remove the temporary file; nothing is written at ``path``."""
        self._abort()

    def __enter__(self) -> GCTXWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()


def write_gctx(
    gct: GCT,
    path: str | PathLike[str],
    *,
    chunks: int | tuple[int, int] | None = None,
    compression: str | None = None,
    compression_level: int | None = None,
) -> None:
    """Write ``gct`` as GCTX (atomically). See :class:`GCTXWriter` for the options."""
    if not isinstance(gct, GCT):
        raise ValidationError(f"write_gctx needs a GCT, got {type(gct).__name__}")
    n_rows, n_cols = gct.shape
    step = max(1, _WRITE_BLOCK_BYTES // max(1, 4 * n_rows))
    with GCTXWriter(path, gct.row_meta, chunks=chunks, compression=compression, compression_level=compression_level) as writer:
        for a in range(0, n_cols, step):
            b = min(n_cols, a + step)
            writer.append(gct.data[:, a:b], gct.col_meta.iloc[a:b])
        if n_cols == 0:
            writer.append(np.zeros((n_rows, 0), dtype=np.float32), gct.col_meta)


class GCTXSlots(_OpenH5):
    """A GCTX file whose matrix is allocated up front and filled column range by column range.

    For long resumable jobs that know where each block goes (a pipeline writing plate after
    plate): :meth:`create` allocates the whole ``(n_rows x n_cols)`` float32 matrix (contiguous,
    or chunked with every chunk allocated when ``resizable``), so :meth:`write` only stores
    values and never changes the file's structure; after :meth:`flush`, the written columns
    survive an interruption of the process and :meth:`open` continues the same file. The
    column metadata is written last by :meth:`finish`, which moves the file to its final path;
    until then the file is a work file, not a complete GCTX.

    Examples
    --------
    >>> slots = GCTXSlots.create("work/level4.partial.gctx", row_meta, n_cols=100_000)  # doctest: +SKIP
    >>> slots.write(0, plate_block)                   # (n_rows, k) at columns 0..k-1
    >>> slots.flush()
    >>> slots.finish(col_meta, "out/level4.gctx")     # col_meta: n_cols rows, in column order
    """

    def __init__(self, h5: h5py.File, path: Path) -> None:
        self._h5: h5py.File | None = h5
        self.path = path
        self._ds = h5[MATRIX_NODE]

    @classmethod
    def create(
        cls,
        path: str | PathLike[str],
        row_meta: pd.DataFrame | pd.Index | Sequence[Any],
        n_cols: int,
        *,
        resizable: bool = False,
        src: str | None = None,
    ) -> GCTXSlots:
        """A new work file at ``path`` (replacing any) with an allocated, unwritten matrix.

        ``resizable``: chunked (whole columns, :func:`default_chunks`) so :meth:`resize` can add
        columns later; otherwise one contiguous block (fastest to write and read).
        """
        target = Path(path)
        rows = _meta_index(row_meta, "row")
        n_rows = len(rows)
        h5 = h5py.File(target, "w")
        try:
            h5.attrs["version"] = np.bytes_(GCTX_VERSION.encode())
            h5.attrs["src"] = src if src is not None else target.name
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # structure fixed now: writes only store values
            options: dict[str, Any] = {"dcpl": dcpl, "fill_time": "never"}
            if resizable:
                options.update(chunks=default_chunks(n_rows), maxshape=(None, max(1, n_rows)))
            shape = (int(n_cols), n_rows)
            if not resizable and 0 in shape:
                options = {}
            h5.create_dataset(MATRIX_NODE, shape=shape, dtype=np.float32, **options)
            _write_meta(h5.create_group(ROW_META_NODE, track_order=True), rows, compress=False)
            h5.flush()
        except BaseException:
            h5.close()
            target.unlink(missing_ok=True)
            raise
        return cls(h5, target)

    @classmethod
    def open(cls, path: str | PathLike[str], *, readonly: bool = False) -> GCTXSlots:
        """Reopen a work file made by :meth:`create` (to continue it; ``readonly``: only to
        :meth:`read` it, as several processes may at once); :class:`FormatError` if unreadable."""
        target = Path(path)
        try:
            h5 = h5py.File(target, "r" if readonly else "r+")
        except (OSError, RuntimeError) as exc:
            raise FormatError(f"cannot reopen the work file ({exc})", path=target) from exc
        if MATRIX_NODE not in h5 or not isinstance(h5[MATRIX_NODE], h5py.Dataset) or h5[MATRIX_NODE].ndim != 2:
            h5.close()
            raise FormatError("not a GCTXSlots work file (no 2-D matrix)", path=target, node=MATRIX_NODE)
        return cls(h5, target)

    def _open_ds(self) -> h5py.Dataset:
        if self._h5 is None:
            raise ConfigError(f"{self.path}: the work file is closed")
        return self._ds

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the allocated matrix."""
        n_cols, n_rows = self._open_ds().shape
        return int(n_rows), int(n_cols)

    def write(self, start: int, block: np.ndarray) -> None:
        """Store ``block`` (``n_rows x k``) as columns ``start .. start + k - 1``."""
        ds = self._open_ds()
        arr = np.asarray(block)
        if arr.ndim != 2 or arr.shape[0] != ds.shape[1] or not 0 <= start <= ds.shape[0] - arr.shape[1]:
            raise ValidationError(
                f"{self.path}: block of shape {arr.shape} does not fit at column {start} of a "
                f"{ds.shape[1]} x {ds.shape[0]} matrix"
            )
        if arr.shape[1]:
            ds.write_direct(np.ascontiguousarray(arr.T, dtype=np.float32), dest_sel=np.s_[start : start + arr.shape[1], :])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Columns ``start .. stop - 1`` as ``(n_rows, stop - start)`` float32 (Fortran-ordered)."""
        ds = self._open_ds()
        out = np.empty((max(0, stop - start), ds.shape[1]), dtype=np.float32)
        if out.size:
            ds.read_direct(out, source_sel=np.s_[start:stop, :])
        return out.T

    def resize(self, n_cols: int) -> None:
        """Change the number of columns (files created ``resizable`` only)."""
        ds = self._open_ds()
        if ds.chunks is None:
            raise ConfigError(f"{self.path}: the matrix is contiguous; create it with resizable=True to resize it")
        ds.resize((int(n_cols), ds.shape[1]))

    def flush(self) -> None:
        """Hand everything written so far to the operating system."""
        if self._h5 is not None:
            self._h5.flush()

    def finish(self, col_meta: pd.DataFrame | pd.Index | Sequence[Any], final_path: str | PathLike[str]) -> None:
        """Write the column metadata (one row per column, in order), close, and move to ``final_path``."""
        ds = self._open_ds()
        meta = _meta_index(col_meta, "column")
        if len(meta) != ds.shape[0]:
            raise ValidationError(f"{self.path}: {ds.shape[0]} columns but {len(meta)} rows of column metadata")
        h5 = self._h5  # open: _open_ds() raised otherwise
        if COL_META_NODE in h5:  # a finish interrupted before the move
            del h5[COL_META_NODE]
        _write_meta(h5.create_group(COL_META_NODE, track_order=True), meta, compress=False)
        h5.close()
        self._h5 = None
        final = Path(final_path)
        try:
            os.replace(self.path, final)
        except OSError:  # another file system: copy beside the destination, then rename
            with atomic_write_path(final) as tmp:
                shutil.copyfile(self.path, tmp)
            self.path.unlink()
        logger.debug("wrote %s: %d columns", final, len(meta))

