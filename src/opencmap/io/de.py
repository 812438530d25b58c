"""Differential-expression tables and pre-ranked gene lists, as the tools that make them write them.

:func:`read_de_table` reads the CSV / TSV / Excel exports of DESeq2 (``write.csv(results(dds))``:
an unnamed first column of gene ids, then ``baseMean log2FoldChange lfcSE stat pvalue padj``),
edgeR (``topTags``: row names, ``logFC logCPM F|LR PValue FDR``), limma (``topTable``: an ``ID``
column or row names, ``logFC AveExpr t P.Value adj.P.Val B``), Seurat (``FindMarkers``) and scanpy
(``sc.get.rank_genes_groups_df``: ``names scores logfoldchanges pvals pvals_adj``, with ``group``
when several groups). Every cell of a text file is read as text (ids stay exactly as written, ``0780`` or
``ENSG...`` alike; Excel cells keep the type the workbook stores); numbers are parsed by the query layer (:mod:`opencmap.query.de`), which also
detects the columns. R's row names become a column named ``""`` (the unnamed first column),
whether R wrote an empty header field for them (``write.csv``, ``col.names=NA``) or none at all
(``write.table`` defaults).

:func:`read_rnk` reads a pre-ranked list (GSEA ``.rnk``: gene and score, tab- or space-separated,
``#`` comment lines, an optional header line).

"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from os import PathLike
from pathlib import Path

import pandas as pd

from opencmap.errors import ConfigError, FormatError
from opencmap.io.tables import read_file_bytes

__all__ = ["read_de_table", "read_rnk", "ROW_NAMES"]

logger = logging.getLogger(__name__)

ROW_NAMES = ""  # name given to R's row-name column (the unnamed first column)
_EXCEL = (".xlsx", ".xlsm")
_TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}


def _raw_text(p: Path) -> str:
    text = read_file_bytes(p).decode("utf-8-sig", "replace")
    if not text.strip():
        raise FormatError("empty file; a DE table needs a header line and one row per gene", path=p, line=1)
    return text


def _sniff_separator(text: str, default: str | None = None) -> str:
    """Tab, comma or semicolon (spreadsheets in locales with a decimal comma), from the header line."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: first.count(sep) for sep in ("\t", ",", ";")}
    if default is not None and counts[default]:
        return default
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else (default or ",")


def _row_names_as_column(frame: pd.DataFrame) -> pd.DataFrame:
    """R row names (pandas index when the header is one field short, or an ``Unnamed: 0`` column) -> column ``""``."""
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(names=ROW_NAMES)
    renamed = {c: ROW_NAMES for c in frame.columns[:1] if str(c).startswith("Unnamed: 0") or str(c).strip() == ""}
    frame = frame.rename(columns=renamed)
    frame.columns = [str(c).strip() if str(c).strip() else ROW_NAMES for c in frame.columns]
    return frame


_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+([eE][+-]?\d+)?$")


def _decimal_commas(frame: pd.DataFrame) -> None:
    """In a semicolon-separated table, columns whose every value is a number written with a decimal
    comma (``2,5``) get a decimal point; their names go to ``frame.attrs["decimal_comma_columns"]``."""
    changed = []
    for col in frame.columns:
        values = frame[col].astype(str).str.strip()
        filled = values[~values.str.upper().isin(["", "NA", "NAN"])]
        if len(filled) and filled.str.match(_DECIMAL_COMMA).any() and filled.str.match(r"^[+-]?\d*(,\d+)?([eE][+-]?\d+)?$").all():
            frame[col] = values.str.replace(",", ".", regex=False)
            changed.append(str(col))
    frame.attrs["decimal_comma_columns"] = changed


def read_de_table(path: str | PathLike[str], *, sheet: str | int | None = None) -> pd.DataFrame:
    """Read a differential-expression table as text cells (see the module docstring).

    Parameters
    ----------
    path:
        ``.csv``, ``.tsv`` / ``.tab`` / ``.txt`` (the separator the name implies when the header
        line has it, else tab, comma or semicolon, whichever the header line has most),
        optionally ``.gz``; or ``.xlsx`` (needs the optional ``openpyxl`` package).
    sheet:
        Excel sheet name or 0-based position (default: the first sheet).

    Raises
    ------
    FormatError
        Missing or empty file, unparsable text, repeated column names.

    A semicolon-separated file (spreadsheets in locales with a decimal comma) has its decimal
    commas read as points in columns holding only such numbers; those columns are listed in
    ``frame.attrs["decimal_comma_columns"]``.
    ConfigError
        An Excel file without ``openpyxl`` installed.
    """
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in _EXCEL:
        if not p.exists():
            raise FormatError("file not found; check the path", path=p)
        try:
            import openpyxl  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"{p}: reading Excel files needs openpyxl; install it (pip install 'opencmap[excel]') "
                "or export the table as CSV/TSV"
            ) from exc
        try:
            frame = pd.read_excel(p, sheet_name=0 if sheet is None else sheet, dtype=object, keep_default_na=False)
        except (ValueError, KeyError, OSError) as exc:
            raise FormatError(f"cannot read the Excel table ({exc})", path=p) from exc
    else:
        if suffixes and suffixes[-1] in (".xls",):
            raise FormatError("legacy .xls workbooks are not read; save the sheet as .xlsx or CSV", path=p)
        text = _raw_text(p)
        core = suffixes[-2] if len(suffixes) > 1 and suffixes[-1] == ".gz" else (suffixes[-1] if suffixes else "")
        sep = _sniff_separator(text, _TEXT_SUFFIXES.get(core))
        header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=sep), [])
        named = [h.strip() for h in header if h.strip()]
        if len(set(named)) != len(named):
            dup = sorted({n for n in named if named.count(n) > 1})
            raise FormatError(f"repeated column names {dup}; names must be unique", path=p, line=1)
        try:
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=True)
        except (pd.errors.ParserError, ValueError) as exc:
            raise FormatError(f"cannot parse the table as {({chr(9): 'tab', ',': 'comma', ';': 'semicolon'})[sep]}-separated ({exc})", path=p) from exc
    frame = _row_names_as_column(frame)
    if not suffixes or suffixes[-1] not in _EXCEL:
        if sep == ";":
            _decimal_commas(frame)
    if frame.empty:
        raise FormatError(f"the table has a header ({list(frame.columns)[:10]}) but no rows", path=p)
    logger.debug("read DE table %s: %d rows, columns %s", p, len(frame), list(frame.columns))
    return frame


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_rnk(path: str | PathLike[str]) -> pd.Series:
    """Read a pre-ranked gene list: a float Series indexed by the gene tokens as written.

    Two fields per line (gene, score), separated by a tab (or spaces when no tab); ``#`` lines are
    comments; a first line whose score is not a number is a header. Order is kept; duplicates are
    kept (the query layer reports and resolves them).

    Raises
    ------
    FormatError
        Empty file, a line without two fields, a score that is not a number (names the line).
    """
    p = Path(path)
    text = _raw_text(p)
    genes: list[str] = []
    scores: list[float] = []
    first = True
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in (line.rstrip("\r").split("\t") if "\t" in line else stripped.split())]
        if len(fields) != 2 or not fields[0]:
            raise FormatError(f"expected 2 fields (gene, score), got {len(fields)}: {line[:80]!r}", path=p, line=number)
        if not _is_number(fields[1]):
            if first:
                first = False
                continue  # header line
            raise FormatError(f"score {fields[1]!r} of gene {fields[0]!r} is not a number", path=p, line=number)
        first = False
        value = float(fields[1])
        if math.isnan(value):
            raise FormatError(f"score of gene {fields[0]!r} is NaN; remove the line", path=p, line=number)
        genes.append(fields[0])
        scores.append(value)
    if not genes:
        raise FormatError("no gene lines (gene<TAB>score) in the ranked list", path=p)
    return pd.Series(scores, index=pd.Index(genes, dtype=object), name=p.name.split(".")[0], dtype="float64")
