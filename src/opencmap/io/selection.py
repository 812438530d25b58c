"""Turning a subset request (ids, positions or a metadata filter) into positions along one axis.

Shared by the GCT text and GCTX readers so both accept exactly the same requests.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from opencmap.errors import ConfigError, FormatError, IdNotFoundError, OpenCMapWarning, ValidationError

__all__ = ["MetaFilter", "resolve_positions", "filter_fields"]

MetaFilter = Union[Callable[[pd.DataFrame], Any], Mapping[str, Any]]
"""A metadata filter: a callable taking the metadata DataFrame (indexed by id) and returning a
boolean mask (or a boolean Series), or a mapping ``field -> value or list of values`` (all fields
must match; numeric fields compare numerically, so ``{"pert_time": "24"}`` matches ``24``)."""


def filter_fields(meta_filter: MetaFilter | None) -> list[str] | None:
    """The fields a filter needs (``None`` means all: a callable may look at anything)."""
    if meta_filter is None or callable(meta_filter):
        return None
    return [str(k) for k in meta_filter]


def _dict_mask(meta: pd.DataFrame, wanted: Mapping[str, Any], where: str) -> np.ndarray:
    mask = np.ones(len(meta), dtype=bool)
    for field, values in wanted.items():
        if field not in meta.columns:
            raise IdNotFoundError(
                f"{where}: no metadata field {field!r}; fields are {list(meta.columns)[:20]}"
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            values = [values]
        values = list(values)
        column = meta[field]
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna()
            hit = column.isin(numbers.tolist()).to_numpy(dtype=bool, na_value=False)
        else:
            hit = column.astype(object).isin([str(v) for v in values]).to_numpy(dtype=bool, na_value=False)
        mask &= hit
    return mask


def _callable_mask(meta: pd.DataFrame, fn: Callable[[pd.DataFrame], Any], where: str) -> np.ndarray:
    result = fn(meta)
    if isinstance(result, pd.Series) and result.dtype != bool and not pd.api.types.is_bool_dtype(result.dtype):
        raise ConfigError(f"{where}: the metadata filter must return a boolean mask, got {result.dtype}")
    mask = np.asarray(result)
    if mask.dtype != bool or mask.shape != (len(meta),):
        raise ConfigError(
            f"{where}: the metadata filter must return a boolean mask of length {len(meta)}, "
            f"got dtype {mask.dtype} shape {mask.shape}"
        )
    return mask


def _arrow_positions(ids: pa.Array, wanted: pd.Index, where: str) -> np.ndarray:
    """Positions of ``wanted`` in ``ids`` (-1 if absent), hashing only the wanted ids.

    The file's ids are probed against the (usually small) wanted set, so no hash table of all
    ids is built; a wanted id found twice means the file repeats it.
    """
    hits = np.flatnonzero(pc.is_in(ids, value_set=pa.array(wanted.to_numpy(), type=pa.string())).to_numpy(zero_copy_only=False))
    found = pd.Index(ids.take(pa.array(hits, type=pa.int64())).to_numpy(zero_copy_only=False), dtype=object)
    if not found.is_unique:
        dup = found[found.duplicated()].unique()[:5].tolist()
        raise FormatError(f"{where}: the file repeats the ids {dup}; ids must be unique")
    local = found.get_indexer(wanted)
    return np.where(local >= 0, hits[np.maximum(local, 0)] if len(hits) else -1, -1).astype(np.intp)


def resolve_positions(
    ids: pd.Index | pa.Array,
    *,
    axis: str,
    where: str,
    wanted_ids: Iterable[Any] | None = None,
    positions: Iterable[int] | None = None,
    meta_filter: MetaFilter | None = None,
    meta: Callable[[list[str] | None], pd.DataFrame] | None = None,
    ignore_missing: bool = False,
) -> np.ndarray | None:
    """0-based positions along one axis for a subset request, in the order asked for.

    Parameters
    ----------
    ids:
        All ids of the axis, in file order (a pandas Index, or an Arrow string array: GCTX ids are
        looked up in Arrow without creating a Python string per id).
    axis:
        ``"row"`` or ``"column"`` (for messages).
    where:
        The file, for messages.
    wanted_ids, positions, meta_filter:
        At most one of them. ``None`` for all three means the whole axis (returns ``None``).
    meta:
        Called with the list of fields a filter needs (``None`` = all) to get the metadata.
    ignore_missing:
        Drop unknown ids with an :class:`OpenCMapWarning` instead of raising.

    Raises
    ------
    ConfigError
        More than one kind of request for the axis.
    IdNotFoundError
        Unknown ids or out-of-range positions.
    ValidationError
        Repeated ids or positions.
    """
    given = [x is not None for x in (wanted_ids, positions, meta_filter)]
    if sum(given) > 1:
        raise ConfigError(f"give at most one of ids, positions or a filter for the {axis}s")
    n = len(ids)
    if wanted_ids is not None:
        if isinstance(wanted_ids, (str, bytes)):
            wanted_ids = [wanted_ids]
        wanted = pd.Index([str(i) for i in wanted_ids], dtype=object)
        if wanted.has_duplicates:
            dup = wanted[wanted.duplicated()].unique()[:10].tolist()
            raise ValidationError(f"{where}: {axis} ids asked for more than once: {dup}; list each id once")
        if isinstance(ids, pa.Array):
            pos = _arrow_positions(ids, wanted, where)
        else:
            pos = ids.get_indexer(wanted)
        bad = pos < 0
        if bad.any():
            missing = wanted[bad]
            msg = (
                f"{where}: {int(bad.sum())} {axis} id(s) not in the file: {missing[:10].tolist()}"
                f"{' ...' if bad.sum() > 10 else ''}"
            )
            if not ignore_missing:
                raise IdNotFoundError(msg + ". Check the ids (compared as strings), or ignore unknown ids.")
            warnings.warn(msg + "; they were skipped.", OpenCMapWarning, stacklevel=4)
            pos = pos[~bad]
        return pos.astype(np.intp)
    if positions is not None:
        pos = np.asarray(list(positions) if not isinstance(positions, np.ndarray) else positions)
        if pos.dtype == bool:
            if pos.shape != (n,):
                raise ConfigError(f"{where}: a boolean {axis} mask must have length {n}")
            return np.flatnonzero(pos).astype(np.intp)
        if pos.size == 0:
            return np.zeros(0, dtype=np.intp)
        if not np.issubdtype(pos.dtype, np.integer):
            raise ConfigError(f"{where}: {axis} positions must be integers, got {pos.dtype}")
        pos = pos.astype(np.intp).ravel()
        out_of_range = (pos < 0) | (pos >= n)
        if out_of_range.any():
            raise IdNotFoundError(
                f"{where}: {axis} positions out of range 0..{n - 1}: {pos[out_of_range][:10].tolist()}"
            )
        if len(np.unique(pos)) != len(pos):
            raise ValidationError(f"{where}: {axis} positions repeated; list each position once")
        return pos
    if meta_filter is not None:
        if meta is None:  # pragma: no cover - programming error
            raise ConfigError("a metadata filter needs the metadata")
        frame = meta(filter_fields(meta_filter))
        label = f"{where} ({axis} metadata filter)"
        if callable(meta_filter):
            mask = _callable_mask(frame, meta_filter, label)
        elif isinstance(meta_filter, Mapping):
            mask = _dict_mask(frame, meta_filter, label)
        else:
            raise ConfigError(f"{label}: a filter is a callable or a dict field -> value(s)")
        return np.flatnonzero(mask).astype(np.intp)
    return None
