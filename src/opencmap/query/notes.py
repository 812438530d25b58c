"""What a query result used, as short readable lines (the CLI notes block, the API ``notes``).

:func:`result_notes` renders :meth:`QueryResult.describe() <opencmap.query.result.QueryResult.describe>`
(or the same dict stored with an API job) generically: every top-level provenance key and every
key of each query's entry is shown, including keys this module does not know, so a field added to
``describe()`` reaches every interface without changes here. Known keys get a readable label; gene
lists that were *used* are shown as counts, lists of genes left out or changed are shown with their
first items. The engine's own notes are appended verbatim, one line each, so none is lost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["result_notes"]

#: top-level keys of describe() shown in their own way (or not at all)
_TOP_SPECIAL = ("method", "space", "params", "notes", "queries", "levels", "metrics")
#: per-query keys whose lists are shown as counts (the genes used)
_COUNTED = {"up_genes": "up genes used", "down_genes": "down genes used", "up_rows": "up rows", "down_rows": "down rows"}
#: readable labels of known per-query keys; {space} is replaced by the result's feature space
_LABELS = {
    "unknown": "unknown (no gene of the store; not used)",
    "dropped": "dropped (outside feature space {space}; not used)",
    "mapped": "mapped (alias/previous symbol -> current)",
    "ambiguous": "ambiguous (several genes; not used)",
    "suggestions": "suggestions for unknown genes",
}
_MAX_ITEMS = 10


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.6g}"
    if value is None:
        return "none"
    return str(value)


def _compact(value: Any, *, pairs: bool = False) -> str:
    """One-line text of any JSON-like value; ``pairs`` shows 2-item lists and dicts as ``a -> b``."""
    if isinstance(value, Mapping):
        if pairs:
            return ", ".join(f"{k} -> {' or '.join(map(_scalar, v)) if _is_list(v) else _nested(v)}" for k, v in value.items())
        return ", ".join(f"{k}={_nested(v)}" for k, v in value.items())
    if _is_list(value):
        items = list(value)
        if pairs and items and all(_is_list(i) and len(i) == 2 for i in items):
            shown = [f"{_scalar(a)} -> {_scalar(b)}" for a, b in items[:_MAX_ITEMS]]
        else:
            shown = [_nested(i) for i in items[:_MAX_ITEMS]]
        more = f" (+{len(items) - _MAX_ITEMS} more)" if len(items) > _MAX_ITEMS else ""
        return ", ".join(shown) + more
    return _scalar(value)


def _nested(value: Any) -> str:
    if isinstance(value, Mapping) or _is_list(value):
        return f"({_compact(value)})"
    return _scalar(value)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _empty(value: Any) -> bool:
    return value is None or value == "" or ((isinstance(value, Mapping) or _is_list(value)) and len(value) == 0)


def _query_lines(entry: Mapping[str, Any], space: str) -> list[str]:
    name = entry.get("name", entry.get("query", "?"))
    head = f"query {name}"
    counts = [f"{label} {len(entry[k]) if _is_list(entry[k]) else _scalar(entry[k])}" for k, label in _COUNTED.items() if k in entry]
    lines = [f"{head}: " + ", ".join(counts)] if counts else []
    for key, value in entry.items():
        if key in ("name", "query") or key in _COUNTED or _empty(value):
            continue
        label = _LABELS[key].format(space=space) if key in _LABELS else key.replace("_", " ")
        if _is_list(value):
            text = f"{len(value)}: {_compact(value, pairs=key == 'mapped')}"
        elif isinstance(value, Mapping):
            text = _compact(value, pairs=key in ("mapped", "suggestions", "ambiguous"))
        else:
            text = _scalar(value)
        lines.append(f"{head}: {label}: {text}")
    return lines


def result_notes(description: Mapping[str, Any]) -> list[str]:
    """Readable lines of a result description (see the module docstring).

    Parameters
    ----------
    description:
        :meth:`QueryResult.describe` output (keys ``method``, ``space``, ``params``, ``notes``,
        ``queries``, ``levels`` and any others).

    Returns
    -------
    list of str
        First the method, space and parameters; then any other top-level provenance; then per
        query the genes used per side and everything left out, mapped or flagged; last the
        engine's notes verbatim.
    """
    space = str(description.get("space", "?"))
    lines = []
    head = f"method {description.get('method', '?')}, feature space {space}"
    params = {k: v for k, v in dict(description.get("params") or {}).items() if k not in ("metric", "space")}
    if params:
        head += "; " + _compact(params)
    lines.append(head)
    if description.get("levels"):
        lines.append("levels: " + ", ".join(map(str, description["levels"])))
    for key, value in description.items():
        if key in _TOP_SPECIAL or _empty(value):
            continue
        lines.append(f"{key.replace('_', ' ')}: {_compact(value)}")
    for entry in description.get("queries") or []:
        lines += _query_lines(entry, space)
    lines += [str(n) for n in description.get("notes") or []]
    return lines
