"""Max-quantile summaries of scores over groups (spec §6.7: GUTC ``pert_cell``, ``pert_summary``,
``pcl_cell``, ``pcl_summary`` levels).

``maxq(x) = prctile_67(x)`` if ``|prctile_33(x)| < |prctile_67(x)|`` else ``prctile_33(x)``, with
MATLAB percentiles (:mod:`opencmap.kernels.percentile`); NaN members are ignored.

The grouping is a :class:`GroupLayout` (members of each group, contiguous), built once per set of
group codes and reused for any number of score matrices; the compiled kernel then sorts each
group's members per column and interpolates with numpy's ``hazen`` arithmetic (results equal
``np.percentile(..., method="hazen")``), groups in parallel.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns, like_input
from opencmap.kernels.threads import PARALLEL_MIN

__all__ = ["group_maxq", "group_layout", "group_maxq_layout", "GroupLayout"]

# groups per parallel work item, and the members x columns below which one thread is used
_GROUP_BLOCK = 1024
# groups of at most this many members are sorted by insertion (faster than a sort call)
_INSERTION_MAX = 32


class GroupLayout(NamedTuple):
    """Rows of each group, contiguous: group ``gids[k]`` has rows ``rows[starts[k]:starts[k + 1]]``."""

    rows: np.ndarray  # int64 (n_members,)
    starts: np.ndarray  # int64 (n_present + 1,)
    gids: np.ndarray  # int64 (n_present,)
    n_groups: int


def group_layout(group_codes: np.ndarray, n_groups: int, rows: np.ndarray | None = None) -> GroupLayout:
    """The :class:`GroupLayout` of ``group_codes`` (int (S,), ``0..n_groups-1``; negative = left out).

    ``rows`` (S,) optionally maps each coded entry to the row of the value matrix it reads
    (default: entry ``i`` reads row ``i``).
    """
    codes = np.asarray(group_codes)
    if codes.ndim != 1:
        raise ValidationError(f"group_codes must be 1-D, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValidationError(f"group_codes must be integers, got dtype {codes.dtype}")
    n_groups = int(n_groups)
    if codes.size and codes.max() >= n_groups:
        raise ValidationError(f"group code {int(codes.max())} is out of range for n_groups={n_groups}")
    keep = np.flatnonzero(codes >= 0)
    order = keep[np.argsort(codes[keep], kind="stable")]
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if order.size else np.empty(0, np.int64)
    gids = sorted_codes[starts].astype(np.int64)
    starts = np.r_[starts, order.size].astype(np.int64)
    src = order if rows is None else np.asarray(rows, dtype=np.int64)[order]
    return GroupLayout(np.ascontiguousarray(src, dtype=np.int64), starts, gids, n_groups)


@numba.njit(cache=True, nogil=True)
def _hazen(buf, n, q):
    """numpy ``percentile(buf[:n], 100 q, method="hazen")`` of sorted ``buf`` (numpy's arithmetic)."""
    vi = n * q + (0.5 + q * (1 - 0.5 - 0.5)) - 1
    prev = np.floor(vi)
    top = n - 1
    gamma = 0.0 if (vi < 0 or vi >= n - 1) else vi - prev
    ia = min(max(prev, 0.0), top)
    ib = min(max(prev + 1.0, 0.0), top)
    a = buf[int(ia)]
    b = buf[int(ib)]
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1 - gamma)
    return a + diff * gamma


@numba.njit(cache=True, nogil=True)
def _maxq_groups(values, rows, starts, gids, q_lo, q_hi, min_members, out, k0, k1):
    n_cols = values.shape[1]
    for k in range(k0, k1):
        a = starts[k]
        b = starts[k + 1]
        buf = np.empty(b - a)
        small = b - a <= _INSERTION_MAX
        g = gids[k]
        for c in range(n_cols):
            n = 0
            for i in range(a, b):
                x = np.float64(values[rows[i], c])
                if np.isnan(x):
                    continue
                j = n
                if small:  # insertion keeps buf[:n] ascending
                    while j > 0 and buf[j - 1] > x:
                        buf[j] = buf[j - 1]
                        j -= 1
                buf[j] = x
                n += 1
            if not small:  # groups can hold thousands (controls): no quadratic insertion
                buf[:n].sort()
            if n == 0 or n < min_members:
                out[g, c] = np.nan
                continue
            lo = _hazen(buf, n, q_lo)
            hi = _hazen(buf, n, q_hi)
            out[g, c] = hi if abs(lo) < abs(hi) else lo


@numba.njit(cache=True, nogil=True, parallel=True)
def _maxq_kernel(values, rows, starts, gids, q_lo, q_hi, min_members, out):
    n = gids.shape[0]
    n_blocks = (n + _GROUP_BLOCK - 1) // _GROUP_BLOCK
    for b in numba.prange(n_blocks):
        _maxq_groups(values, rows, starts, gids, q_lo, q_hi, min_members, out, b * _GROUP_BLOCK, min((b + 1) * _GROUP_BLOCK, n))


def group_maxq_layout(
    values: np.ndarray,
    layout: GroupLayout,
    *,
    min_members: int = 1,
    lo: float = 33.0,
    hi: float = 67.0,
    out_dtype: type = np.float64,
    threads: int = 1,
    parallel_min: int = PARALLEL_MIN,
) -> np.ndarray:
    """Max-quantile of ``values`` (S, Q) within each group of ``layout`` (rows index ``values``).

    ``threads > 1`` splits the groups over numba's threads when the layout's members x columns
    reach ``parallel_min`` (see :mod:`opencmap.kernels.threads`).

    Returns ``out_dtype`` (n_groups, Q); NaN for empty groups and groups with fewer than
    ``min_members`` non-NaN members in a column.
    """
    v = np.asarray(values)
    if v.ndim != 2:
        raise ValidationError(f"values must be 2-D, got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    if layout.rows.size and layout.rows.max() >= v.shape[0]:
        raise ValidationError(f"layout reads row {int(layout.rows.max())} of values with {v.shape[0]} rows")
    out = np.full((layout.n_groups, v.shape[1]), np.nan, dtype=out_dtype)
    if layout.gids.size:
        args = (v, layout.rows, layout.starts, layout.gids, np.float64(lo) / 100, np.float64(hi) / 100, int(min_members), out)
        if threads > 1 and layout.rows.size * v.shape[1] >= parallel_min:
            _maxq_kernel(*args)
        else:  # a parallel launch costs more than it saves for one query
            _maxq_groups(*args, 0, layout.gids.size)
    return out


def group_maxq(
    values: np.ndarray,
    group_codes: np.ndarray,
    n_groups: int,
    *,
    min_members: int = 1,
    lo: float = 33.0,
    hi: float = 67.0,
) -> np.ndarray:
    """Max-quantile of ``values`` within each group, per column.

    Parameters
    ----------
    values:
        Float (S,) or (S, Q).
    group_codes:
        Int (S,): group of each row in ``0..n_groups-1``; a negative code leaves the row out.
    n_groups:
        Number of groups (output rows).
    min_members:
        Groups with fewer non-NaN members than this (per column) give NaN (e.g. 2 for PCLs).
    lo, hi:
        The two percentiles compared (33 and 67 in CMap).

    Returns
    -------
    float64 (n_groups,) or (n_groups, Q); NaN for empty groups. To summarise many matrices with
    the same groups, build :func:`group_layout` once and call :func:`group_maxq_layout`.
    """
    v, one_d = as_columns(values)
    codes = np.asarray(group_codes)
    if codes.shape != (v.shape[0],):
        raise ValidationError(f"values {np.shape(values)} and group_codes {codes.shape} do not match")
    layout = group_layout(codes, n_groups)
    return like_input(group_maxq_layout(v, layout, min_members=min_members, lo=lo, hi=hi), one_d)
