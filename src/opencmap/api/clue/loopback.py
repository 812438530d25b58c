"""LoopBack ``filter`` queries over pandas tables, as clue.io's API answers them.

clue.io's REST API is a LoopBack 3 application over MongoDB. Its collections are read with
``GET /api/<resource>?filter=<JSON>`` and counted with ``GET /api/<resource>/count?where=<JSON>``.
This module parses those JSON documents and applies them to a DataFrame (one row per record):

- ``where``: ``{field: value}`` (equality), ``{field: {op: value}}`` with ``op`` one of
  :data:`OPERATORS`, and ``{"and": [...]}`` / ``{"or": [...]}`` (nested freely). Fields holding
  lists (e.g. a perturbagen's ``moa``) match when any element matches, as in MongoDB; the negated
  operators (``neq``, ``nin``, ``nlike``, ``nilike``) match when no element does. Values are
  compared with the column's type (``{"entrez_id": "5720"}`` and ``{"entrez_id": 5720}`` agree).
  ``like`` / ``nlike`` / ``ilike`` / ``nilike`` take the MongoDB connector's meaning: the pattern
  is a regular expression searched in the value (``ilike``: case-insensitive), in which ``%`` also
  stands for any run of characters (SQL's wildcard); ``regexp`` takes ``"pattern"`` or
  ``"/pattern/flags"`` (flag ``i``).
- ``fields``: ``{"a": true, "b": true}`` (only these), ``{"a": false}`` (all but these) or
  ``["a", "b"]``; fields the collection does not have are left out of the records, as LoopBack
  does (the API lists them in the ``X-OpenCMap-Unknown-Fields`` response header).
- ``order``: ``"field ASC"`` / ``"field DESC"`` or a list of them (missing values last).
- ``limit`` / ``skip`` (alias ``offset``).

Anything else is refused with a :class:`LoopBackError` naming it and what is supported: an
unknown operator, an unknown field in ``where`` or ``order`` (LoopBack's MongoDB models would
silently match nothing),
``include`` (no relations here), ``near`` (no geo fields), malformed JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import ValidationError

__all__ = ["LoopBackError", "Filter", "OPERATORS", "parse_filter", "parse_where", "apply_where", "apply_filter", "unknown_fields"]

#: the ``where`` operators understood (``and``/``or`` combine clauses)
OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "between", "inq", "nin", "like", "nlike", "ilike", "nilike", "regexp")
_COMBINATORS = ("and", "or")
_NEGATED = {"neq": "eq", "nin": "inq", "nlike": "like", "nilike": "ilike"}
_FILTER_KEYS = ("where", "fields", "order", "limit", "skip", "offset")


class LoopBackError(ValidationError):
    """A LoopBack filter the server does not support or cannot read (HTTP 400)."""


@dataclass(frozen=True)
class Filter:
    """A parsed ``filter``: ``where`` clause, projected ``fields``, ``order``, ``limit``, ``skip``."""

    where: Mapping[str, Any]
    fields: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()  # (field, ascending)
    limit: int | None = None
    skip: int = 0


def _json(text: str | None, what: str) -> Any:
    if text is None or text == "":
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoopBackError(f"the {what} parameter is not valid JSON ({exc.msg} at character {exc.pos}): {text[:200]!r}") from None


def parse_where(text: str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A ``where`` clause from its JSON text (``/count?where=...``) or a mapping."""
    where = _json(text, "where") if isinstance(text, str) or text is None else text
    if not isinstance(where, Mapping):
        raise LoopBackError(f"where must be a JSON object, got {type(where).__name__}")
    return where


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise LoopBackError(f"filter {what} must be a non-negative integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise LoopBackError(f"filter {what} must be a non-negative integer, got {value!r}") from None
    if number < 0:
        raise LoopBackError(f"filter {what} must be a non-negative integer, got {value!r}")
    return number


def parse_filter(text: str | Mapping[str, Any] | None) -> Filter:
    """A :class:`Filter` from the JSON of ``?filter=`` (or a mapping); raises :class:`LoopBackError`."""
    raw = _json(text, "filter") if isinstance(text, str) or text is None else text
    if not isinstance(raw, Mapping):
        raise LoopBackError(f"filter must be a JSON object, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in _FILTER_KEYS]
    if unknown:
        raise LoopBackError(f"unsupported filter key(s) {unknown}; supported: {', '.join(_FILTER_KEYS)} (no 'include': these resources have no relations)")
    where = parse_where(raw.get("where") or {})
    fields: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    spec = raw.get("fields")
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        fields = tuple(str(f) for f in spec) or None
    elif isinstance(spec, Mapping):
        on = [str(k) for k, v in spec.items() if v in (True, 1, "true")]
        off = [str(k) for k, v in spec.items() if v in (False, 0, "false")]
        fields, exclude = (tuple(on) or None), (() if on else tuple(off))
    elif spec is not None:
        raise LoopBackError(f"filter fields must be an object {{field: true}} or a list, got {spec!r}")
    order_spec = raw.get("order") or ()
    if isinstance(order_spec, str):
        order_spec = [order_spec]
    order = []
    for item in order_spec:
        parts = str(item).split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC")):
            raise LoopBackError(f"filter order entries are 'field ASC' or 'field DESC', got {item!r}")
        order.append((parts[0], len(parts) == 1 or parts[1].upper() == "ASC"))
    limit = None if raw.get("limit") in (None, 0) else _int(raw["limit"], "limit")
    skip = _int(raw.get("skip", raw.get("offset", 0)) or 0, "skip")
    return Filter(where=where, fields=fields, exclude=exclude, order=tuple(order), limit=limit, skip=skip)


# ---------------------------------------------------------------------------------- evaluation
def _check_field(frame: pd.DataFrame, field: str, resource: str) -> None:
    if field not in frame.columns:
        raise LoopBackError(f"{resource} has no field {field!r}; its fields are {list(map(str, frame.columns))}")


def _is_list_column(series: pd.Series) -> bool:
    return series.dtype == object and any(isinstance(v, (list, tuple)) for v in series.head(50))


def _coerce(series: pd.Series, value: Any) -> Any:
    """``value`` as the column's type (numbers for numeric columns, text for text columns)."""
    if isinstance(value, (list, tuple)):
        return [_coerce(series, v) for v in value]
    if value is None:
        return None
    if pd.api.types.is_bool_dtype(series):
        return value in (True, 1, "true", "1")
    if pd.api.types.is_numeric_dtype(series):
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def _pattern(op: str, value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise LoopBackError(f"operator {op!r} needs a string pattern, got {value!r}")
    flags = re.IGNORECASE if op in ("ilike", "nilike") else 0
    text = value
    if op == "regexp":
        m = re.fullmatch(r"/(.*)/([a-z]*)", value, flags=re.DOTALL)
        if m:
            text = m.group(1)
            bad = set(m.group(2)) - {"i", "g", "m"}
            if bad:
                raise LoopBackError(f"regexp flags {sorted(bad)} are not supported (use i)")
            if "i" in m.group(2):
                flags |= re.IGNORECASE
    else:
        text = value.replace("%", ".*")
    try:
        return re.compile(text, flags)
    except re.error as exc:
        raise LoopBackError(f"operator {op!r}: {value!r} is not a valid regular expression ({exc})") from None


def _scalar_match(series: pd.Series, op: str, value: Any) -> np.ndarray:
    """Positive operators on a column of scalars (missing values never match)."""
    present = series.notna().to_numpy()
    if op in ("like", "ilike", "regexp"):
        pat = _pattern(op, value)
        values = series.to_numpy(dtype=object)  # plain objects: iterating arrow-backed strings boxes each one
        return np.array([bool(ok) and pat.search(v if isinstance(v, str) else str(v)) is not None
                         for v, ok in zip(values, present, strict=True)], dtype=bool)
    value = _coerce(series, value)
    if op == "eq":
        if value is None:
            return ~present
        return (series == value).to_numpy(dtype=bool) & present
    if op == "inq":
        if not isinstance(value, list):
            raise LoopBackError(f"operator 'inq' needs a list, got {value!r}")
        return series.isin(value).to_numpy(dtype=bool) & present
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise LoopBackError(f"operator 'between' needs a list of two values, got {value!r}")
        lo, hi = value
        return _compare(series, "gte", lo) & _compare(series, "lte", hi)
    return _compare(series, op, value)


def _compare(series: pd.Series, op: str, value: Any) -> np.ndarray:
    if value is None or isinstance(value, (list, dict)):
        raise LoopBackError(f"operator {op!r} needs a number or a string, got {value!r}")
    try:
        result = {"gt": series > value, "gte": series >= value, "lt": series < value, "lte": series <= value}[op]
    except TypeError:
        raise LoopBackError(f"operator {op!r}: cannot compare the field's values with {value!r}") from None
    return result.to_numpy(dtype=bool) & series.notna().to_numpy()


def _field_match(frame: pd.DataFrame, field: str, condition: Any, resource: str) -> np.ndarray:
    _check_field(frame, field, resource)
    series = frame[field]
    if isinstance(condition, Mapping):
        if len(condition) != 1:
            raise LoopBackError(f"field {field!r}: give one operator per condition object (combine with 'and'), got {list(condition)}")
        op, value = next(iter(condition.items()))
        if op not in OPERATORS:
            raise LoopBackError(f"unsupported LoopBack operator {op!r} on field {field!r}; supported: {', '.join(OPERATORS)}, and, or")
    else:
        op, value = "eq", condition
    positive = _NEGATED.get(op, op)
    if _is_list_column(series):
        exploded = series.map(lambda v: list(v) if isinstance(v, (list, tuple)) else [v]).explode()
        matched = pd.Series(_scalar_match(exploded, positive, value), index=exploded.index)
        hits = matched.groupby(level=0).any().reindex(series.index, fill_value=False).to_numpy(dtype=bool)
    else:
        hits = _scalar_match(series, positive, value)
    return ~hits if op in _NEGATED else hits


def apply_where(frame: pd.DataFrame, where: Mapping[str, Any], *, resource: str = "this resource") -> np.ndarray:
    """Boolean mask of the rows of ``frame`` matching ``where`` (see the module docstring)."""
    mask = np.ones(len(frame), dtype=bool)
    for key, condition in where.items():
        if key in _COMBINATORS:
            if not isinstance(condition, list) or not all(isinstance(c, Mapping) for c in condition):
                raise LoopBackError(f"'{key}' needs a list of where clauses, got {condition!r}")
            parts = [apply_where(frame, c, resource=resource) for c in condition]
            if parts:
                mask &= np.logical_and.reduce(parts) if key == "and" else np.logical_or.reduce(parts)
            elif key == "or":
                mask &= False
        else:
            mask &= _field_match(frame, str(key), condition, resource)
    return mask


def unknown_fields(frame: pd.DataFrame, flt: Filter) -> list[str]:
    """Fields named in ``fields`` that ``frame`` does not have (left out of the records, as LoopBack does)."""
    return [f for f in (*(flt.fields or ()), *flt.exclude) if f not in frame.columns]


def _json_ready(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def apply_filter(frame: pd.DataFrame, flt: Filter, *, resource: str = "this resource", max_rows: int | None = None) -> list[dict[str, Any]]:
    """The records of ``frame`` selected by ``flt`` (JSON-ready dicts).

    ``max_rows`` bounds one answer: a filter without ``limit`` matching more rows, or a larger
    ``limit``, raises :class:`LoopBackError` (page with ``limit`` and ``skip``), never truncates.
    """
    for field, _ in flt.order:
        _check_field(frame, field, resource)
    rows = frame[apply_where(frame, flt.where, resource=resource)]
    if max_rows is not None:
        if flt.limit is not None and flt.limit > max_rows:
            raise LoopBackError(f"limit {flt.limit} is above this server's maximum of {max_rows} records per request; page with limit and skip")
        if flt.limit is None and len(rows) - flt.skip > max_rows:
            raise LoopBackError(
                f"{len(rows)} {resource} match, more than this server returns at once ({max_rows}); "
                "page with \"limit\" and \"skip\" (count them with /count)"
            )
    if flt.order:
        by = [f for f, _ in flt.order]
        asc = [a for _, a in flt.order]
        sortable = rows.assign(**{f: rows[f].map(lambda v: "|".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for f in by if _is_list_column(rows[f])})
        rows = rows.loc[sortable.sort_values(by, ascending=asc, na_position="last", kind="stable").index]
    stop = None if flt.limit is None else flt.skip + flt.limit
    rows = rows.iloc[flt.skip:stop]
    if flt.fields:
        rows = rows[[f for f in flt.fields if f in rows.columns]]
    elif flt.exclude:
        rows = rows.drop(columns=[f for f in flt.exclude if f in rows.columns])
    columns = [str(c) for c in rows.columns]
    return [{c: _json_ready(v) for c, v in zip(columns, values, strict=True)} for values in rows.itertuples(index=False, name=None)]
