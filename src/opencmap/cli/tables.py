"""Printing connection tables: a compact table for people, TSV for programs.

``opencmap query`` prints, per query, its top connections ranked like the files' order of
columns (metadata, then the metrics) and sorted by the level's default metric (τ, else NCS, else
the raw score; ``rank`` 1 = strongest in the asked direction).

* On a terminal (or ``--format-stdout table``): a table drawn with :mod:`rich`, with a compact set
  of columns per level (:func:`default_columns`), numbers rounded for reading (never ``-0.0000``).
* Piped (or ``--format-stdout tsv``): tab-separated values with a ``# query: ...`` line before each
  query's table, every column unless ``--columns`` names some, 4 decimals.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click
import numpy as np
import pandas as pd

__all__ = ["default_columns", "print_connections", "select_columns"]

# first column of each group present is used
_NAME = ("pert_iname", "pcl_name", "id")
_DOSE = ("pert_idose", "pert_dose")
_TIME = ("pert_itime", "pert_time")
_AFTER = ("tau", "ncs")


def default_columns(table: pd.DataFrame, metric: str) -> list[str]:
    """The compact columns for ``table`` (a :meth:`QueryResult.top` table with ``rank`` added)."""
    cols = set(table.columns)

    def first(names: tuple[str, ...]) -> list[str]:
        return next(([n] for n in names if n in cols), [])

    picked = ["rank"] + first(_NAME)
    if picked[-1:] != ["id"] and "id" in cols and "pert_iname" not in cols:
        picked.append("id")
    picked += [c for c in ("pert_type", "cell_id") if c in cols]
    picked += first(_DOSE) + first(_TIME)
    picked += [c for c in _AFTER if c in cols]
    if metric in cols and metric not in picked:
        picked.append(metric)
    if "fdr_q" in cols:
        picked.append("fdr_q")
    return list(dict.fromkeys(picked))


def select_columns(table: pd.DataFrame, columns: str | None, metric: str, *, compact: bool) -> pd.DataFrame:
    """``table`` with the asked columns (comma-separated names, ``all``) or the defaults.

    Unknown names raise a :class:`click.UsageError` naming ``--columns`` and the columns there are.
    """
    if columns is None:
        return table[default_columns(table, metric)] if compact else table
    names = [c.strip() for c in columns.split(",") if c.strip()]
    if names == ["all"]:
        return table
    unknown = [c for c in names if c not in table.columns]
    if unknown:
        raise click.UsageError(
            f"--columns: no column {', '.join(unknown)} at this level; columns are: {', '.join(map(str, table.columns))}"
        )
    return table[names]


def _tidy_numbers(table: pd.DataFrame, decimals: int = 4) -> pd.DataFrame:
    """Round float columns to ``decimals`` and turn negative zeros into zeros (no ``-0.0000``)."""
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col].dtype):
            out[col] = out[col].round(decimals) + 0.0
    return out


def _cell(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if column == "tau":
            text = f"{v:.2f}"
        elif column.startswith("fdr_q") or column.startswith("fdr_p"):
            text = f"{v:.2g}" if v and abs(v) < 1e-3 else f"{v:.3f}"
        else:
            text = f"{v:.4f}"
        return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text
    return str(value)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def print_connections(tables: list[tuple[str, pd.DataFrame]], *, level: str, direction: str, metric: str,
                      columns: str | None = None, stdout_format: str = "auto", stream: TextIO | None = None,
                      console: Any = None) -> None:
    """Print each query's top table (see the module docs for ``stdout_format``)."""
    stream = sys.stdout if stream is None else stream
    if stdout_format == "auto":
        stdout_format = "table" if (console is not None and console.is_terminal) or _isatty(stream) else "tsv"
    if stdout_format == "tsv":
        for name, table in tables:
            shown = table
            if columns:
                ranked = table.copy()
                ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
                shown = select_columns(ranked, columns, metric, compact=False)
            stream.write(f"# {name}: top {len(table)} at level {level} ({direction})\n")
            stream.write(_tidy_numbers(shown).to_csv(sep="\t", index=False, float_format="%.4f"))
        stream.flush()
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if console is None:  # off a terminal (--format-stdout table piped): wide enough for every column
        console = Console(file=stream) if _isatty(stream) else Console(file=stream, width=240)
    for name, table in tables:
        ranked = table.copy()
        ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
        shown = select_columns(ranked, columns, metric, compact=True)
        console.print(f"[bold]{name}[/bold]: top {len(table)} at level {level} ({direction})", highlight=False,
                      soft_wrap=True)
        out = Table(
                    box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1), collapse_padding=True)
        for col in shown.columns:
            numeric = pd.api.types.is_numeric_dtype(shown[col].dtype) and not pd.api.types.is_bool_dtype(shown[col].dtype)
            width = max(len(str(col)), *(len(_cell(v, str(col))) for v in shown[col])) if len(shown) else len(str(col))
            # numbers keep their full width; text (names) is cut with "…" when the terminal is narrow
            out.add_column(str(col), justify="right" if numeric else "left", no_wrap=True, overflow="ellipsis",
                           min_width=width if numeric else min(len(str(col)), width))
        for row in shown.itertuples(index=False):
            out.add_row(*(_cell(v, str(c)) for v, c in zip(row, shown.columns)))
        console.print(out)
