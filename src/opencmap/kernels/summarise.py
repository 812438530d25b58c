"""Max-quantile summaries of scores over groups (spec §6.7: GUTC ``pert_cell``, ``pert_summary``,
``pcl_cell``, ``pcl_summary`` levels).

``maxq(x) = prctile_67(x)`` if ``|prctile_33(x)| < |prctile_67(x)|`` else ``prctile_33(x)``, with
MATLAB percentiles (:mod:`opencmap.kernels.percentile`); NaN members are ignored.
"""

from __future__ import annotations

import numpy as np

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns, like_input
from opencmap.kernels.percentile import maxq

__all__ = ["group_maxq"]


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
    float64 (n_groups,) or (n_groups, Q); NaN for empty groups.
    """
    v, one_d = as_columns(values)
    codes = np.asarray(group_codes)
    if codes.shape != (v.shape[0],):
        raise ValidationError(f"values {np.shape(values)} and group_codes {codes.shape} do not match")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValidationError(f"group_codes must be integers, got dtype {codes.dtype}")
    n_groups = int(n_groups)
    if codes.size and codes.max() >= n_groups:
        raise ValidationError(f"group code {int(codes.max())} is out of range for n_groups={n_groups}")
    out = np.full((n_groups, v.shape[1]), np.nan)
    keep = np.flatnonzero(codes >= 0)
    if keep.size:
        order = keep[np.argsort(codes[keep], kind="stable")]
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        sizes = np.diff(np.r_[starts, order.size])
        gids = sorted_codes[starts]
        # groups of equal size are stacked and summarised in one vectorised call
        for size in np.unique(sizes):
            which = np.flatnonzero(sizes == size)
            rows = order[starts[which][:, None] + np.arange(size)[None, :]]  # (n_which, size)
            block = v[rows]  # (n_which, size, Q)
            out[gids[which]] = maxq(block, lo, hi, axis=1)
            if min_members > 1:
                present = np.count_nonzero(~np.isnan(block), axis=1)
                out[gids[which]] = np.where(present >= min_members, out[gids[which]], np.nan)
    return like_input(out, one_d)
