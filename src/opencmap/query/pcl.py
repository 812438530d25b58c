"""Perturbagen classes (PCLs), checked against the perturbagens of a store before any query runs.

A PCL file is a GMT whose members are ``pert_id``s. :func:`load_pcls` reads it (or takes a
``{name: [pert_id, ...]}`` mapping) and compares the members with the store's perturbagens:

* no member is a perturbagen of the store -> :class:`~opencmap.errors.PCLError`, naming a few of
  the file's ids and a few of the store's (so a file of names, or of another id scheme, is caught
  at once instead of giving empty PCL levels);
* some members unknown, or classes with too few members in the store to be summarised -> a note
  per fact (returned, and warned as :class:`~opencmap.errors.PCLWarning`); the engine copies the
  notes into every result.

:func:`check_levels` refuses, before a query runs, a requested level that needs PCLs when none
were given.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opencmap.errors import PCLError, PCLWarning, QueryError

__all__ = ["PCL_LEVELS", "load_pcls", "check_levels"]

#: result levels that exist only when PCLs are given
PCL_LEVELS = ("pcl_cell", "pcl_summary")

_SHOWN = 5


def _examples(ids: Iterable[str], n: int = _SHOWN) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:n])
    return shown + (f" (+{len(ids) - n} more)" if len(ids) > n else "")


def load_pcls(
    pcl: Any,
    pert_ids: Iterable[Any],
    *,
    pert_names: Iterable[Any] = (),
    min_members: int = 2,
    warn: bool = True,
) -> tuple[dict[str, tuple[str, ...]] | None, list[str]]:
    """PCLs as ``{class: (pert_id, ...)}`` and notes on what of them the store lacks.

    Parameters
    ----------
    pcl:
        ``None``, a GMT path, or a mapping ``{class name: [pert_id, ...]}``.
    pert_ids:
        The store's perturbagen ids (``sig_info["pert_id"]``; repeats are fine).
    pert_names:
        The store's perturbagen names (``pert_iname``), only to say when members look like names.
    min_members:
        Members a class needs in the store to get a PCL summary (the summaries' rule).
    warn:
        Also warn each note as :class:`~opencmap.errors.PCLWarning`.

    Raises
    ------
    PCLError
        The PCLs have no class, or no member is a perturbagen of the store.
    """
    if pcl is None:
        return None, []
    if isinstance(pcl, Mapping):
        classes = {str(k): tuple(str(x).strip() for x in v) for k, v in pcl.items()}
        source = "the PCLs given"
    else:
        from opencmap.io import read_gmt

        classes = {s.name: tuple(str(x).strip() for x in s.genes) for s in read_gmt(pcl)}
        source = f"PCL file {os.fspath(pcl)}"
    if not classes:
        raise PCLError(f"{source} defines no perturbagen class; give a GMT of classes whose members are pert_ids")
    known = {str(p) for p in pert_ids}
    if not known:
        raise PCLError(f"{source} cannot be used: the store's signatures have no perturbagen ids (pert_id column)")
    members = list(dict.fromkeys(m for ms in classes.values() for m in ms if m))
    matched = [m for m in members if m in known]
    unmatched = [m for m in members if m not in known]
    if not matched:
        store_ids = sorted(known)
        hint = ""
        names = {str(n).upper() for n in pert_names}
        named = [m for m in unmatched if m.upper() in names]
        if named:
            hint = f" {len(named)} of them are perturbagen names (pert_iname), e.g. {_examples(named, 3)}: use pert_ids."
        raise PCLError(
            f"{source}: none of its {len(members)} member ids is a perturbagen of the store "
            f"(its ids: {_examples(unmatched)}; the store's pert_ids look like {_examples(store_ids, 3)}).{hint} "
            "PCL members must be the store's pert_ids."
        )
    notes: list[str] = []
    if unmatched:
        notes.append(
            f"PCLs: {len(matched)} of the {len(members)} member ids of {source} are perturbagens of the store; "
            f"{len(unmatched)} not, left out (e.g. {_examples(unmatched)})"
        )
    small = [name for name, ms in classes.items() if len({m for m in ms if m in known}) < min_members]
    if small:
        notes.append(
            f"PCLs: {len(small)} of the {len(classes)} classes of {source} have fewer than {min_members} member "
            f"perturbagens in the store and get no PCL summary (e.g. {_examples(small)})"
        )
    if warn:
        for note in notes:
            warnings.warn(note, PCLWarning, stacklevel=3)
    return classes, notes


def check_levels(levels: Sequence[str] | str | None, pcl: Mapping[str, Any] | None, *, summaries: bool = True) -> None:
    """Refuse, before a query runs, requested ``levels`` the result will not have: unknown names,
    PCL levels when no PCLs are given, and any level but ``sig`` when ``summaries`` is False (a
    non-connectivity metric, or summaries switched off)."""
    if levels is None:
        return
    from opencmap.errors import ConfigError
    from opencmap.query.result import LEVELS

    wanted = [levels] if isinstance(levels, str) else list(levels)
    unknown = [lv for lv in wanted if lv not in LEVELS]
    if unknown:
        raise ConfigError(f"unknown result level {unknown[0]!r}; levels are {', '.join(LEVELS)}")
    if not summaries and any(lv != "sig" for lv in wanted):
        other = next(lv for lv in wanted if lv != "sig")
        raise QueryError(f"level {other} needs a connectivity metric (wtcs, cs) with summaries; this query has only the sig level")
    needs = [lv for lv in wanted if lv in PCL_LEVELS]
    if needs and not pcl:
        raise QueryError(
            f"level {needs[0]} needs perturbagen classes (PCLs) and none were given: give a PCL GMT of "
            "pert_ids (--pcl FILE on the command line, pcl= in Python, OPENCMAP_PCL_PATH for the server)"
        )
