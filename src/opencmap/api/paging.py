"""Filtering, sorting and paging of tables for the API, and their JSON-safe records."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import ConfigError, IdNotFoundError

__all__ = ["page_frame", "records", "json_value", "rows_matching", "one_record"]


def json_value(v: Any) -> Any:
    """A JSON-safe scalar: numpy types -> Python, NaN/inf -> None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``frame`` as JSON-safe dicts."""
    cols = [str(c) for c in frame.columns]
    return [
        {c: json_value(v) for c, v in zip(cols, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def rows_matching(frame: pd.DataFrame, column: str, value: str) -> pd.DataFrame:
    """Rows of ``frame`` whose ``column`` (compared as text) equals ``value``."""
    return frame[frame[column].astype(str) == value]


def one_record(frame: pd.DataFrame, column: str, value: str, *, missing: str) -> dict[str, Any]:
    """The first row whose ``column`` equals ``value``, as a JSON-safe dict; raises
    :class:`~opencmap.errors.IdNotFoundError` with the message ``missing`` when there is none."""
    hit = rows_matching(frame, column, value)
    if hit.empty:
        raise IdNotFoundError(missing)
    return records(hit.iloc[:1])[0]


def page_frame(
    frame: pd.DataFrame,
    *,
    equals: Mapping[str, str | None] | None = None,
    search: str | None = None,
    search_columns: Iterable[str] = (),
    maximum: Mapping[str, float | None] | None = None,
    sort: str | None = None,
    descending: bool = False,
    by_magnitude: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, pd.DataFrame]:
    """Filter (exact ``equals``, case-insensitive substring ``search``, ``maximum`` bounds), sort
    (NaN last; ``by_magnitude`` sorts by absolute value) and page ``frame``; returns (total, page).
    """
    keep = np.ones(len(frame), dtype=bool)
    for col, value in (equals or {}).items():
        if value is None or value == "":
            continue
        if col not in frame.columns:
            raise ConfigError(f"cannot filter on {col!r}: no such column (columns: {list(frame.columns)})")
        keep &= frame[col].astype(str).to_numpy() == str(value)
    if search:
        needle = search.lower()
        hit = np.zeros(len(frame), dtype=bool)
        for col in search_columns:
            if col in frame.columns:
                hit |= frame[col].astype(str).str.lower().str.contains(needle, regex=False).to_numpy()
        keep &= hit
    for col, bound in (maximum or {}).items():
        if bound is None:
            continue
        if col not in frame.columns:
            raise ConfigError(f"cannot filter on {col!r}: this table has no such column")
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        keep &= np.nan_to_num(values, nan=np.inf) <= bound
    out = frame[keep]
    if sort:
        if sort not in out.columns:
            raise ConfigError(f"cannot sort by {sort!r}: no such column (columns: {list(out.columns)})")
        col = out[sort]
        if pd.api.types.is_numeric_dtype(col):
            key = col.to_numpy(dtype=np.float64)
            key = np.abs(key) if by_magnitude else key
            key = -key if descending else key
            order = np.argsort(np.nan_to_num(key, nan=np.inf), kind="stable")
            out = out.iloc[order]
        else:
            out = out.sort_values(sort, ascending=not descending, kind="stable", key=lambda s: s.astype(str).str.lower())
    return len(out), out.iloc[offset : offset + limit]
