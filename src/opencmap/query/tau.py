"""tau lookup: each query's tau read from the store's backgrounds of its kind, with provenance.

A query's NCS at a level (signatures, perturbagen x cell, perturbagen, PCL x cell, PCL) gets tau
from the store's background of that level built from queries of the same tail (``both``, ``up``,
``down``) and metric (:mod:`opencmap.query.background` builds and stores them); without one, tau
stays NaN for that query with a note. Each level's background and its rows for the level are
kept in the store's :class:`~opencmap.query.reference.ReferenceIndex` (read once, aligned once).
:func:`finish_tau_provenance` records per query what was used (kind, size, match, staleness).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import BackgroundMismatchWarning, TauUnavailableWarning
from opencmap.query.background import Background, load_background
from opencmap.query.reference import ReferenceIndex

__all__ = ["level_background", "level_tau", "finish_tau_provenance"]


def level_background(ref: ReferenceIndex, level: str, tail: str, index: pd.DataFrame | None) -> tuple[Background | None, np.ndarray | None]:
    """The store's background of ``level`` and ``tail`` and the level's rows in it (kept in the
    reference index, aligned once)."""

    def build() -> tuple[Background | None, np.ndarray | None]:
        bg = load_background(ref.store, level, tail)
        if bg is None:
            return None, None
        rows = bg.keys_for(ref.store.sig_info if index is None else index)
        bg.aligned(rows)  # the level's background rows, picked once
        return bg, rows

    return ref.memo(("background", level, tail), build)


def level_tau(
    ref: ReferenceIndex,
    level: str,
    values: np.ndarray,
    tau_method: str,
    notes: list[str],
    *,
    index: pd.DataFrame | None = None,
    tails: Sequence[str | None] = (),
    metric: str = "wtcs",
    log_to: dict[str, Any] | None = None,
    kernel: Mapping[str, Any] | None = None,
) -> np.ndarray | None:
    """tau (n, Q) of ``values`` at ``level``: each query column against the background of its
    tail (``tails``, default ``both``) and ``metric``; NaN columns where the store has none.
    None when no column has a background. What was used goes to ``log_to["levels"][level]``;
    ``kernel``: thread options of the exact tau kernel (given by the backend)."""
    tails = list(tails) or ["both"] * values.shape[1]
    out: np.ndarray | None = None
    used: dict[str, Any] = {}
    for tail in dict.fromkeys(tails):
        cols = [j for j, t in enumerate(tails) if t == tail]
        kind = tail or "both"
        bg, rows = level_background(ref, level, kind, index)
        record: dict[str, Any] = {"tail": kind, "metric": metric, "available": False}
        used[kind] = record
        if bg is None or rows is None:
            record["reason"] = "no background of this kind"
            continue
        record["background"] = {"tail": bg.tail, "metric": bg.metric, "n_queries": bg.entry.get("n_queries")}
        if bg.metric != metric:
            record["reason"] = f"the background was built with {bg.metric}, not {metric}"
            continue
        stale = int(bg.entry.get("appended_since_built", 0))
        record.update(available=True, stale=bool(stale), appended_since_built=stale)
        if stale:
            note = (
                f"tau ({level}{'' if kind == 'both' else f', tail {kind}'}) uses a background built before {stale} "
                "signatures were appended; they have no tau until it is rebuilt (run `opencmap store background`)"
            )
            if note not in notes:
                notes.append(note)
        sub = values if len(cols) == values.shape[1] else values[:, cols]
        t = bg.tau(sub, rows, method=tau_method, **(kernel or {}))
        if len(cols) == values.shape[1]:
            out = t
        else:
            if out is None:
                out = np.full(values.shape, np.nan, dtype=np.float32)
            out[:, cols] = t
    if log_to is not None:
        log_to["levels"][level] = used
    return out


def finish_tau_provenance(
    tau_log: dict[str, Any],
    names: Sequence[str],
    tails: Sequence[str | None],
    metric: str,
    notes: list[str],
    provenance: dict[str, Any],
) -> None:
    """Per query: the tau background used (kind, size, match, staleness); notes and warnings for
    queries left without tau."""
    levels: dict[str, dict[str, Any]] = tau_log["levels"]
    provenance["tau"] = {"method": tau_log["method"], "levels": levels}
    for j, tail in enumerate(tails):
        kind = tail or "both"
        sig = levels.get("sig", {}).get(kind, {})
        entry: dict[str, Any] = {
            "available": bool(sig.get("available")),
            "kind": {"tail": kind, "metric": metric},
            "levels": [lv for lv, used in levels.items() if used.get(kind, {}).get("available")],
        }
        if "background" in sig:
            bg = sig["background"]
            entry["background"] = bg
            entry["n_background_queries"] = bg.get("n_queries")
            entry["matches_query"] = bg.get("tail") == kind and bg.get("metric") == metric
        else:
            entry["background"] = None
            entry["matches_query"] = False
        entry["stale"] = bool(sig.get("stale", False))
        entry["appended_since_built"] = int(sig.get("appended_since_built", 0))
        if not entry["available"]:
            entry["reason"] = sig.get("reason", "no background of this kind")
        provenance["queries"][j]["tau"] = entry
    for kind in dict.fromkeys(t or "both" for t in tails):
        sig = levels.get("sig", {}).get(kind, {})
        kind_names = [name for name, t in zip(names, tails, strict=True) if (t or "both") == kind]
        if sig.get("available"):
            missing = [lv for lv, used in levels.items() if lv != "sig" and not used.get(kind, {}).get("available")]
            if missing:
                notes.append(
                    f"tau ({', '.join(missing)}) not computed for the {kind}-tail queries: the store's {kind} "
                    f"background has no such level (rebuild it with `opencmap store background --tail {kind}`"
                    f"{' --pcl PCL.gmt' if any(m.startswith('pcl') for m in missing) else ''})"
                )
            if sig.get("stale"):
                warnings.warn(
                    f"tau of the {kind}-tail queries uses a background built before {sig['appended_since_built']} "
                    "signatures were appended (they get no tau); rebuild it with `opencmap store background`",
                    BackgroundMismatchWarning,
                    stacklevel=3,
                )
            continue
        shown = ", ".join(kind_names[:5]) + (f" and {len(kind_names) - 5} more" if len(kind_names) > 5 else "")
        if "background" in sig:
            note = (
                f"tau not computed for {shown} (tail {kind}, {metric}): {sig.get('reason')}; "
                f"tau is only read from a background of the query's own kind"
            )
        elif kind == "both":
            note = f"tau not computed for {shown}: the store has no background (run `opencmap store background`)"
        else:
            note = (
                f"tau not computed for {shown}: the store has no background of {kind}-only queries, and a "
                f"two-sided one would misstate a one-sided score (run `opencmap store background --tail {kind}`)"
            )
        notes.append(note)
        warnings.warn(note, TauUnavailableWarning, stacklevel=3)
