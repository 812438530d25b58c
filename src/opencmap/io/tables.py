"""Tab-separated annotation tables in GEO's layout (``inst_info``, ``sig_info``, ``gene_info``, ...).

One header line, one record per line, tab-separated, optionally gzip-compressed (``.gz``).
Columns are typed by content (numbers stay numbers, ``-666`` = missing, see
:mod:`opencmap.io.fields`) except id columns, which stay strings: the first column, any column
named ``id`` or ending in ``_id`` (``pr_gene_id`` Entrez ids, ``pert_id``, ``cell_id``, ...), and
any listed in ``text_columns``. Missing values are written back as ``-666``.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import pandas as pd

from opencmap.errors import FormatError, ValidationError
from opencmap.io.atomic import atomic_write_path
from opencmap.io.fields import text_column, typed_text_column

__all__ = ["read_table", "write_table", "is_id_column"]

logger = logging.getLogger(__name__)


def is_id_column(name: str) -> bool:
    """Whether a column holds ids (kept as strings): ``id`` or ``*_id``."""
    lower = str(name).lower()
    return lower == "id" or lower.endswith("_id")


def read_file_bytes(p: Path) -> bytes:
    """The bytes of ``p``, gunzipped when they start with the gzip magic; a :class:`FormatError` if missing or corrupt."""
    if not p.exists():
        raise FormatError("file not found; check the path", path=p)
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise FormatError(f"gzip-compressed but cannot be decompressed ({exc})", path=p) from exc
    return raw


def read_table(
    path: str | PathLike[str],
    *,
    index_col: str | int | None = None,
    text_columns: Iterable[str] = (),
) -> pd.DataFrame:
    """Read a GEO-style tab-separated table.

    Parameters
    ----------
    path:
        The table (``.txt``, ``.tsv``, optionally ``.gz``).
    index_col:
        Column (name or position) to use as the index (its values must be unique); default: none.
    text_columns:
        More columns to keep as strings.

    Raises
    ------
    FormatError
        Empty file, repeated header names, ragged lines (names the line).
    """
    p = Path(path)
    raw = read_file_bytes(p)
    if not raw.strip():
        raise FormatError("empty file; a table needs a header line", path=p, line=1)
    header_end = raw.find(b"\n")
    header = (raw if header_end < 0 else raw[:header_end]).decode("utf-8", "replace").rstrip("\r").split("\t")
    names = [h.strip() for h in header]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise FormatError(f"repeated column names {dup}; names must be unique", path=p, line=1)
    lines = raw.split(b"\n")
    width = len(names)
    for i, line in enumerate(lines[1:], start=2):
        n_tabs = line.rstrip(b"\r").count(b"\t")
        if line.strip() and n_tabs != width - 1:
            raise FormatError(
                f"{n_tabs + 1} tab-separated fields, expected {width} (as in the header)", path=p, line=i
            )
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep="\t",
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            skip_blank_lines=True,
            encoding="utf-8",
            encoding_errors="replace",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise FormatError(f"cannot parse the table ({exc})", path=p) from exc
    frame.columns = names
    keep_text = set(text_columns) | {names[0]}
    typed = {
        name: typed_text_column(frame[name].to_numpy(dtype=object), as_text=name in keep_text or is_id_column(name))
        for name in names
    }
    out = pd.DataFrame(typed)
    if index_col is not None:
        key = names[index_col] if isinstance(index_col, int) else index_col
        if key not in out.columns:
            raise FormatError(f"no column {key!r} to use as the index; columns are {names[:20]}", path=p)
        ids = out[key].astype(object)
        if ids.isna().any() or ids.duplicated().any():
            dup = ids[ids.duplicated()].unique()[:5].tolist()
            raise FormatError(f"index column {key!r} has missing or repeated values {dup}", path=p)
        out = out.drop(columns=[key])
        out.index = pd.Index(ids.to_numpy(), dtype=object, name=key)
    logger.debug("read %s: %d rows x %d columns", p, len(out), len(out.columns))
    return out


def write_table(frame: pd.DataFrame, path: str | PathLike[str], *, index: bool | None = None) -> None:
    """Write a DataFrame as a tab-separated table (atomically); missing values as ``-666``.

    ``index``: write the index as the first column (default: when it is named).
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"write_table needs a DataFrame, got {type(frame).__name__}")
    if index is None:
        index = frame.index.name is not None
    data = frame.reset_index() if index else frame
    names = [str(c) for c in data.columns]
    if len(set(names)) != len(names):
        raise ValidationError(f"column names must be unique: {names}")
    columns = [text_column(data[c]) for c in data.columns]
    for name, values in zip(names, columns):
        bad = [v for v in values if any(ch in v for ch in "\t\n\r")]
        if bad or any(ch in name for ch in "\t\n\r"):
            raise ValidationError(f"column {name!r} has tabs or newlines, which a table cannot store: {bad[:3]}")
    opener = gzip.open if str(path).endswith(".gz") else open
    with atomic_write_path(path) as tmp, opener(tmp, "wt", encoding="utf-8", newline="\n") as fh:  # type: ignore[operator]
        fh.write("\t".join(names) + "\n")
        for row in zip(*columns):
            fh.write("\t".join(row) + "\n")
