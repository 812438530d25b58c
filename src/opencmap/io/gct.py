"""GCT text (versions 1.2 and 1.3), and the entry points that read any GCT flavour.

GCT 1.3::

    #1.3
    <n_rows> <n_cols> <n_row_fields> <n_col_fields>
    id  <row field 1> ... <row field R>  <cid 1> ... <cid C>
    <col field 1>  -666 (x R)  <value for cid 1> ... <value for cid C>     (one line per col field)
    <rid 1>  <row meta 1..R>  <value 1> ... <value C>                       (one line per row)

GCT 1.2 has a 2-number dimension line and exactly one row field, ``Description``.

Reading is by content, not extension: :func:`read_gct` reads GCT text or GCTX (HDF5), warns with
:class:`~opencmap.errors.OpenCMapWarning` when the extension says otherwise (e.g. cmapPy's
``test_l1000.gctx`` is GCT text), and reads the file anyway.

Ids are always strings. Metadata columns are typed by content (see :mod:`opencmap.io.fields`);
``-666`` is read as missing and missing values are written as ``-666``. Matrix values are written
with the shortest text that reads back to the same float32 (``precision=4`` writes CMap's 4
decimals), missing values as ``NaN``.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, FormatError, OpenCMapWarning, ValidationError
from opencmap.io.atomic import atomic_write_path
from opencmap.io.decompress import resolve_gzipped_gctx
from opencmap.io.fields import MISSING_TEXT, text_column, typed_text_column
from opencmap.io.gctx import HDF5_SIGNATURE, GCTFileInfo, _axis, gctx_info, read_gctx, read_gctx_meta, write_gctx
from opencmap.io.selection import MetaFilter, resolve_positions

__all__ = [
    "read_gct",
    "read_meta",
    "write_gct",
    "write",
    "is_gctx",
    "GCTFileInfo",
    "gct_info",
]

logger = logging.getLogger(__name__)

#: Missing-value tokens of the data matrix. cmapM's ``parse_gct`` reads values with MATLAB's
#: ``textscan('%f')``, which takes ``NaN`` in any letter case with an optional sign (``NaN``,
#: ``NAN``, ``nan``, ``-NaN``, ...), ``Inf``/``-Inf`` in any case (pandas parses those as numbers
#: already) and an empty field as NaN. The R/Excel/SQL spellings ``NA``, ``N/A``, ``#N/A``,
#: ``null``/``NULL`` (accepted by cmapM with ``--has_missing_data``) are read as NaN too.
_NAN_SPELLINGS = sorted(
    {sign + "".join(c) for sign in ("", "-", "+") for c in itertools.product("nN", "aA", "nN")}
)
_DATA_NA = ["", *_NAN_SPELLINGS, "NA", "N/A", "#N/A", "null", "NULL"]
_GZIP_MAGIC = b"\x1f\x8b"


# ------------------------------------------------------------------------------------- detection
def is_gctx(path: str | PathLike[str]) -> bool:
    """True if the file is HDF5 (GCTX), judged by its first bytes."""
    with open(path, "rb") as fh:
        return fh.read(8) == HDF5_SIGNATURE


def _sniff(path: Path) -> bool:
    """Whether ``path`` is HDF5; warns when the extension says otherwise."""
    if not path.exists():
        raise FormatError("file not found; check the path", path=path)
    if path.is_dir():
        raise FormatError("is a folder, not a GCT/GCTX file", path=path)
    hdf5 = is_gctx(path)
    suffix = path.suffix.lower()
    if hdf5 and suffix == ".gct":
        warnings.warn(
            f"{path} is GCTX (HDF5) despite its .gct extension; reading it as GCTX. Rename it to .gctx.",
            OpenCMapWarning,
            stacklevel=3,
        )
    elif not hdf5 and suffix == ".gctx":
        warnings.warn(
            f"{path} is GCT text despite its .gctx extension; reading it as GCT text. Rename it to .gct.",
            OpenCMapWarning,
            stacklevel=3,
        )
    return hdf5


# --------------------------------------------------------------------------------------- parsing
@dataclass
class _Parsed:
    rids: pd.Index
    cids: pd.Index
    row_meta: pd.DataFrame
    col_meta: pd.DataFrame
    data: np.ndarray | None
    version: str


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FormatError(f"gzip-compressed but cannot be decompressed ({exc})", path=path) from exc
    return raw


def _decode(line: bytes) -> str:
    """A text line: UTF-8, or Latin-1 for the few old files that are not UTF-8."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


def _split_lines(raw: bytes) -> list[bytes]:
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def _check_unique(ids: list[str], what: str, path: Path, line: int | None) -> pd.Index:
    index = pd.Index(ids, dtype=object)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise FormatError(f"duplicated {what} {dup}; ids must be unique. Rename or drop them.", path=path, line=line)
    return index


_FILLERS = frozenset({b"-666", b"na", b"NA", b"", b"nan", b"NaN"})


def _recover_col_fields(body: list[bytes], n_rf: int, n_cf: int, n_rows: int, path: Path) -> int:
    """Column-field count when the dimension line overstates it (seen in cmapR's modzs_n25x50.gct).

    Column-metadata lines carry filler cells (``-666``/``na``) under the row fields; if exactly
    ``k < n_cf`` leading lines do and ``k + n_rows`` lines remain, the file is read with ``k``
    column fields and an :class:`OpenCMapWarning`. Otherwise the count is left as it is.
    """
    k = 0
    while k < min(n_cf, len(body)):
        cells = body[k].split(b"\t", n_rf + 1)[1 : 1 + n_rf]
        if not all(c.strip() in _FILLERS for c in cells):
            break
        k += 1
    if k < n_cf and len(body) == k + n_rows:
        warnings.warn(
            f"{path}: the dimension line says {n_cf} column metadata fields but the file has {k}; "
            f"read {k}. Fix the dimension line.",
            OpenCMapWarning,
            stacklevel=4,
        )
        return k
    return n_cf


def _parse_text(path: Path, *, meta_only: bool = False) -> _Parsed:
    raw = _read_bytes(path)
    lines = _split_lines(raw)
    if not lines:
        raise FormatError("empty file; a GCT file starts with '#1.2' or '#1.3'", path=path, line=1)
    first = lines[0].strip()
    if first not in (b"#1.2", b"#1.3"):
        head = first[:20].decode("utf-8", "replace")
        raise FormatError(
            f"not a GCT file: the first line should be '#1.2' or '#1.3', found {head!r}", path=path, line=1
        )
    version = first[1:].decode()
    if len(lines) < 3:
        raise FormatError("truncated: no dimension line and header", path=path, line=len(lines) + 1)
    dims_tokens = lines[1].split()
    expected_dims = 2 if version == "1.2" else 4
    try:
        dims = [int(t) for t in dims_tokens]
    except ValueError:
        dims = []
    if len(dims) != expected_dims or any(d < 0 for d in dims):
        raise FormatError(
            f"GCT {version} dimension line must hold {expected_dims} non-negative integers "
            f"({'rows cols' if expected_dims == 2 else 'rows cols row-fields col-fields'}), "
            f"found {lines[1][:80].decode('utf-8', 'replace')!r}",
            path=path,
            line=2,
        )
    if version == "1.2":
        n_rows, n_cols = dims
        n_rf, n_cf = 1, 0
    else:
        n_rows, n_cols, n_rf, n_cf = dims
    width = 1 + n_rf + n_cols
    header = _decode(lines[2]).split("\t")
    if len(header) != width:
        raise FormatError(
            f"header has {len(header)} fields but the dimension line implies {width} "
            f"(1 id + {n_rf} row fields + {n_cols} columns); fix the dimension line or the header",
            path=path,
            line=3,
        )
    row_fields = [h.strip() for h in header[1 : 1 + n_rf]]
    cids = _check_unique([h.strip() for h in header[1 + n_rf :]], "column ids", path, 3)
    if len(set(row_fields)) != len(row_fields):
        raise FormatError(f"duplicated row metadata field names {row_fields}", path=path, line=3)

    expected_lines = 3 + n_cf + n_rows
    body = lines[3:]
    while len(body) > n_cf + n_rows and not body[-1].strip():
        body.pop()
    if len(body) != n_cf + n_rows and n_rf > 0:
        n_cf = _recover_col_fields(body, n_rf, n_cf, n_rows, path)
    if len(body) != n_cf + n_rows:
        found = len(body) - n_cf
        raise FormatError(
            f"the dimension line says {n_rows} rows and {n_cf} column fields "
            f"({expected_lines} lines) but the file has {3 + len(body)} lines ({found} data rows); "
            f"the file is truncated or the dimension line is wrong",
            path=path,
            line=min(3 + len(body) + 1, expected_lines) if len(body) < n_cf + n_rows else expected_lines + 1,
        )
    tabs = np.fromiter((ln.count(b"\t") for ln in body), dtype=np.int64, count=len(body))
    bad = np.flatnonzero(tabs != width - 1)
    if bad.size:
        i = int(bad[0])
        raise FormatError(
            f"ragged row: {tabs[i] + 1} tab-separated fields, expected {width} "
            f"(1 id + {n_rf} row fields + {n_cols} values); {bad.size} such line(s)",
            path=path,
            line=4 + i,
        )

    # Column metadata: one line per field.
    col_fields: list[str] = []
    col_values: list[list[str]] = []
    for j in range(n_cf):
        tokens = _decode(body[j]).split("\t")
        col_fields.append(tokens[0].strip())
        col_values.append(tokens[1 + n_rf :])
    if len(set(col_fields)) != len(col_fields):
        raise FormatError(f"duplicated column metadata field names {col_fields}", path=path, line=4)
    col_meta = pd.DataFrame(
        {name: typed_text_column(vals) for name, vals in zip(col_fields, col_values)},
        index=pd.RangeIndex(n_cols),
    )
    col_meta.index = pd.Index(cids, dtype=object, name="cid")

    data_lines = body[n_cf:]
    first_data_line = 4 + n_cf
    if n_rows == 0:
        rids = pd.Index([], dtype=object)
        row_meta = pd.DataFrame({f: pd.Series([], dtype="str") for f in row_fields})
        row_meta.index = pd.Index(rids, dtype=object, name="rid")
        data = np.zeros((0, n_cols), dtype=np.float32)
        return _Parsed(rids, cids, row_meta, col_meta, None if meta_only else data, version)

    n_lead = 1 + n_rf
    if meta_only:
        lead = [_decode(ln).split("\t", n_lead)[:n_lead] for ln in data_lines]
        lead_cols = list(zip(*lead))
        rid_list = [s.strip() for s in lead_cols[0]]
        row_values = [list(c) for c in lead_cols[1:]]
        data = None
    else:
        frame = _read_block(b"\n".join(data_lines), n_lead, width, path, first_data_line, cids)
        rid_list = [str(s).strip() for s in _restore_tokens(frame[0], data_lines, 0)]
        # na_values also hit the text columns: put the original tokens back (NaN -> "NaN" etc. is
        # ambiguous, so re-read those few cells from the lines).
        row_values = [_restore_tokens(frame[i], data_lines, i) for i in range(1, n_lead)]
        data = frame.iloc[:, n_lead:].to_numpy(dtype=np.float32) if n_cols else np.zeros((n_rows, 0), dtype=np.float32)
        del frame
    rids = _check_unique(rid_list, "row ids", path, None)
    row_meta = pd.DataFrame(
        {name: typed_text_column(vals) for name, vals in zip(row_fields, row_values)},
        index=pd.RangeIndex(n_rows),
    )
    row_meta.index = pd.Index(rids, dtype=object, name="rid")
    return _Parsed(rids, cids, row_meta, col_meta, data, version)


def _restore_tokens(column: pd.Series, lines: list[bytes], position: int) -> list[Any]:
    """A text column from the parsed block, with cells the parser turned into NaN re-read raw."""
    values = np.array(column.to_numpy(dtype=object), dtype=object, copy=True)
    lost = np.flatnonzero(pd.isna(values))
    for i in lost:
        values[i] = lines[i].split(b"\t", position + 1)[position].decode("utf-8", "replace")
    return list(values)


def _read_block(block: bytes, n_lead: int, width: int, path: Path, first_line: int, cids: pd.Index) -> pd.DataFrame:
    """Parse the data rows: leading id/metadata columns as text, the values as numbers."""
    try:
        frame = pd.read_csv(
            io.BytesIO(block),
            sep="\t",
            header=None,
            dtype={i: object for i in range(n_lead)},
            keep_default_na=False,
            na_values=_DATA_NA,
            quoting=csv.QUOTE_NONE,
            engine="c",
            encoding="utf-8",
            encoding_errors="replace",
            low_memory=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise FormatError(f"cannot parse the data rows ({exc})", path=path, line=first_line) from exc
    values = frame.iloc[:, n_lead:]
    non_numeric = [j for j, dt in enumerate(values.dtypes) if not pd.api.types.is_numeric_dtype(dt)]
    if non_numeric:
        j = non_numeric[0]
        column = values.iloc[:, j]
        parsed = pd.to_numeric(column, errors="coerce")
        i = int(np.flatnonzero(parsed.isna().to_numpy() & column.notna().to_numpy())[0])
        raise FormatError(
            f"non-numeric value {str(column.iloc[i])[:40]!r} in column {cids[j]!r} (field {n_lead + j + 1}); "
            f"matrix values must be numbers or NaN",
            path=path,
            line=first_line + i,
        )
    return frame


# ------------------------------------------------------------------------------------------ read
def read_gct(
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
) -> GCT:
    """Read a GCT 1.2/1.3 text file or a GCTX file (detected by content), whole or a subset.

    Parameters
    ----------
    path:
        ``.gct``, ``.gct.gz``, ``.gctx`` or ``.gctx.gz`` (decompressed once to a file next to it,
        see :mod:`opencmap.io.decompress`, then read as GCTX). A wrong extension gives an
        :class:`~opencmap.errors.OpenCMapWarning` and the file is read by its content.
    rid, cid:
        Ids to keep, in the order wanted (compared as strings).
    ridx, cidx:
        0-based positions (or a boolean mask) to keep, in the order wanted.
    row_filter, col_filter:
        Callable on the metadata DataFrame returning a boolean mask, or a dict
        ``field -> value(s)``; matching rows/columns are kept in file order.
    meta_only:
        Ids and metadata only: ``data`` is a read-only all-NaN view of the full shape that takes
        no memory (``np.broadcast_to``); nothing of the matrix is read (GCTX) or parsed (text).
    ignore_missing:
        Skip unknown ids with an :class:`~opencmap.errors.OpenCMapWarning` instead of raising.

    At most one of ``rid``/``ridx``/``row_filter`` (and of the column equivalents) may be given.
    GCTX subsets read only what they return (see :func:`opencmap.io.gctx.read_gctx`); text files
    are parsed whole, then subset.

    Raises
    ------
    FormatError
        The file does not follow the format (names file and line or HDF5 node).
    IdNotFoundError
        Unknown ids or positions in a subset.
    """
    p = resolve_gzipped_gctx(path)
    kwargs = dict(
        rid=rid, cid=cid, ridx=ridx, cidx=cidx, row_filter=row_filter, col_filter=col_filter,
        meta_only=meta_only, ignore_missing=ignore_missing,
    )
    if _sniff(p):
        return read_gctx(p, **kwargs)  # type: ignore[arg-type]
    parsed = _parse_text(p, meta_only=meta_only)
    where = str(p)
    row_pos = resolve_positions(
        parsed.rids, axis="row", where=where, wanted_ids=rid, positions=ridx, meta_filter=row_filter,
        meta=lambda fields: parsed.row_meta, ignore_missing=ignore_missing,
    )
    col_pos = resolve_positions(
        parsed.cids, axis="column", where=where, wanted_ids=cid, positions=cidx, meta_filter=col_filter,
        meta=lambda fields: parsed.col_meta, ignore_missing=ignore_missing,
    )
    row_meta = parsed.row_meta if row_pos is None else parsed.row_meta.iloc[row_pos]
    col_meta = parsed.col_meta if col_pos is None else parsed.col_meta.iloc[col_pos]
    shape = (len(row_meta), len(col_meta))
    if parsed.data is None:
        data: np.ndarray = np.broadcast_to(np.float32(np.nan), shape)
    else:
        data = parsed.data
        if row_pos is not None:
            data = data[row_pos]
        if col_pos is not None:
            data = data[:, col_pos]
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


def read_meta(path: str | PathLike[str], axis: str = "col") -> pd.DataFrame:
    """Row (``axis="row"``) or column (``"col"``) metadata of a GCT/GCTX file, indexed by id.

    GCTX: reads only that axis's ids and fields. Text: parses the ids and metadata, not the values.
    """
    a = _axis(axis)
    p = resolve_gzipped_gctx(path)
    if _sniff(p):
        return read_gctx_meta(p, a)
    parsed = _parse_text(p, meta_only=True)
    return parsed.row_meta if a == "row" else parsed.col_meta


# ------------------------------------------------------------------------------------------ write
def _data_lines(block: np.ndarray, precision: int | None) -> list[bytes]:
    """Matrix rows as tab-joined text lines (no newline), formatted in Arrow's C++ code.

    Values are written with the shortest text that reads back as the same float32 (or rounded
    to ``precision`` decimals); missing values as ``NaN``.
    """
    n_rows, n_cols = block.shape
    flat = pa.array(np.asarray(block, dtype=np.float32).ravel(order="F"))
    if precision is not None:
        flat = pc.round(flat, int(precision))
    text = pc.if_else(pc.is_nan(flat), "NaN", pc.cast(flat, pa.string()))
    columns = [text.slice(j * n_rows, n_rows) for j in range(n_cols)]
    table = pa.Table.from_arrays(columns, names=[str(j) for j in range(n_cols)])
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))
    lines = sink.getvalue().split(b"\n")
    return lines[:n_rows]


def _check_writable(gct: GCT) -> None:
    for what, ids in (("row", gct.rids), ("column", gct.cids)):
        bad = [i for i in ids if any(ch in i for ch in "\t\n\r")]
        if bad:
            raise ValidationError(f"{what} ids contain tabs or newlines, which GCT cannot store: {bad[:5]}")
    for what, frame in (("row", gct.row_meta), ("column", gct.col_meta)):
        names = [str(c) for c in frame.columns]
        if any(any(ch in n for ch in "\t\n\r") for n in names):
            raise ValidationError(f"{what} metadata field names contain tabs or newlines: {names}")


def write_gct(gct: GCT, path: str | PathLike[str], *, precision: int | None = None) -> None:
    """Write ``gct`` as GCT 1.3 text (atomically).

    Parameters
    ----------
    precision:
        ``None`` (default): the shortest text that reads back as the same float32 (exact round
        trip). An int: values rounded to that many decimals (CMap's files hold 4), written
        without trailing zeros.
    """
    if not isinstance(gct, GCT):
        raise ValidationError(f"write_gct needs a GCT, got {type(gct).__name__}")
    _check_writable(gct)
    n_rows, n_cols = gct.shape
    rf = [str(c) for c in gct.row_meta.columns]
    cf = [str(c) for c in gct.col_meta.columns]
    row_text = [text_column(gct.row_meta[c]) for c in gct.row_meta.columns]
    lead = np.array(gct.rids, dtype=object)
    if row_text:
        lead_rows = ["\t".join(parts) for parts in zip(lead, *row_text)]
    else:
        lead_rows = list(lead)
    for name, values in zip(rf + cf, row_text + [text_column(gct.col_meta[c]) for c in gct.col_meta.columns]):
        bad = [v for v in values if any(ch in v for ch in "\t\n\r")]
        if bad:
            raise ValidationError(f"metadata field {name!r} has values with tabs or newlines: {bad[:3]}")
    filler = [MISSING_TEXT] * len(rf)
    step = max(1, 2_000_000 // max(1, n_cols))
    with atomic_write_path(path) as tmp, open(tmp, "wb") as fh:
        head = ["#1.3", f"{n_rows}\t{n_cols}\t{len(rf)}\t{len(cf)}", "\t".join(["id", *rf, *gct.cids])]
        head += ["\t".join([str(name), *filler, *text_column(gct.col_meta[name])]) for name in gct.col_meta.columns]
        fh.write(("\n".join(head) + "\n").encode("utf-8"))
        for a in range(0, n_rows, step):
            b = min(n_rows, a + step)
            lead = [s.encode("utf-8") for s in lead_rows[a:b]]
            if n_cols:
                values = _data_lines(gct.data[a:b], precision)
                fh.write(b"".join(x + b"\t" + y + b"\n" for x, y in zip(lead, values)))
            else:
                fh.write(b"".join(x + b"\n" for x in lead))
    logger.debug("wrote %s: %d x %d", path, n_rows, n_cols)


def write(gct: GCT, path: str | PathLike[str], **options: Any) -> None:
    """Write GCTX for ``.gctx`` paths, GCT 1.3 text for ``.gct``; options go to that writer."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gctx":
        write_gctx(gct, path, **options)
    elif suffix == ".gct":
        write_gct(gct, path, **options)
    else:
        raise ConfigError(f"{path}: cannot tell the format from the extension; use .gct or .gctx")


# ------------------------------------------------------------------------------------------- info
def gct_info(path: str | PathLike[str]) -> GCTFileInfo:
    """Format, dimensions, storage layout and metadata fields of a GCT or GCTX file.

    GCTX: no matrix values are read. Text: the ids and metadata are parsed, not the values.
    """
    p = resolve_gzipped_gctx(path)
    if _sniff(p):
        return gctx_info(p)
    parsed = _parse_text(p, meta_only=True)
    return GCTFileInfo(
        path=str(p),
        format=f"GCT {parsed.version} (text)",
        n_rows=len(parsed.rids),
        n_cols=len(parsed.cids),
        dtype="text (read as float32)",
        chunks=None,
        compression="gzip" if p.read_bytes()[:2] == _GZIP_MAGIC else None,
        row_fields=tuple(str(c) for c in parsed.row_meta.columns),
        col_fields=tuple(str(c) for c in parsed.col_meta.columns),
    )
