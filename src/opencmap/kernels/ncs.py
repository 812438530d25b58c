"""NCS: connectivity scores normalised by signed means of reference scores per group (spec §6.4).

For each group of signatures ``c`` (the caller's codes, e.g. ``pert_type × cell_id``) and query
column, with ``R_c`` the group's reference signatures::

    mu+_c = max(mean{w_r > 0 : r in R_c}, floor)     mu-_c = max(|mean{w_r < 0 : r in R_c}|, floor)
    NCS = w / mu+_c (w > 0),  w / mu-_c (w < 0),  0 (w = 0)

Three modes differ only in the corner cases (a group or query lacking same-sign reference scores):

``cmap``
    CMap ``sig_queryl1k`` (``normalizeQueryRefGrouped``, spec §13.4), quirks included: a group is
    *processed* if its references have any positive or negative score in any query; if a group
    has no same-sign reference score in even one query column, that sign stays unnormalised for
    the whole group in every query; unprocessed groups use the median over processed groups of
    the per-column means (same quirk); finally NaN -> 0.
``gutc``
    CMap GUTC (``normalizeQueryRef``): per query column; a processed group lacking same-sign
    reference scores in a column gives NaN for that column's scores of that sign; unprocessed
    groups take the median over processed groups (CMap tries groups of the same pert_type, then
    cell line, then 10 random groups; pass ``fallback_keys`` for the first two, the random step
    is replaced by the median over all processed groups). NaN is kept.
``clean`` (documented alternative)
    Per group, query column and sign independently: the floored mean of the group's same-sign
    reference scores, else the median of those means over the groups that have one for that
    column and sign, else NaN. NaN scores stay NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numba
import numpy as np

from opencmap.errors import ConfigError, ValidationError
from opencmap.kernels.columns import as_columns, like_input
from opencmap.kernels.threads import PARALLEL_MIN

__all__ = ["ncs", "signed_any", "signed_group_means", "reference_order", "NCS_MODES"]

#: allowed values of ``mode``
NCS_MODES = ("cmap", "gutc", "clean")

# rows per parallel work item, and the scores (rows x queries) below which one thread is used
_ROW_BLOCK = 4096
# bytes of the gathered signed parts summed per chunk of query columns
_SUM_BYTES = 64 << 20


def _nanmedian(x: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=axis)


@numba.njit(cache=True, nogil=True)
def _signed_parts(scores, ref_order, groups, c0, c1, pos_part, neg_part, pos_count, neg_count):
    """``where(x > 0, x, 0)`` and ``where(x < 0, -x, 0)`` of ``scores[ref_order, c0:c1]`` (float64),
    and the per-group counts of positive and negative scores of those columns."""
    for k in range(ref_order.shape[0]):
        s = ref_order[k]
        g = groups[s]
        for c in range(c0, c1):
            v = np.float64(scores[s, c])
            pos_part[k, c - c0] = v if v > 0 else 0.0
            neg_part[k, c - c0] = -v if v < 0 else 0.0
            if v > 0:
                pos_count[g, c] += 1
            elif v < 0:
                neg_count[g, c] += 1


def reference_order(groups: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """Rows of the reference signatures ordered by group (stable): the grouping that
    :func:`signed_group_means` computes, to compute once and pass as ``ref_order``."""
    refs = np.flatnonzero(np.asarray(is_ref, dtype=bool))
    return refs[np.argsort(np.asarray(groups)[refs], kind="stable")]


def signed_any(scores: np.ndarray, groups: np.ndarray, is_ref: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group (n_groups,) bool: whether its reference signatures have a positive / a negative
    score in some column of ``scores`` (S, Q); OR them over column chunks for the whole set."""
    refs = np.flatnonzero(np.asarray(is_ref, dtype=bool))
    g = np.asarray(groups)[refs]
    x = np.asarray(scores)[refs]
    has_pos = np.zeros(n_groups, dtype=bool)
    has_neg = np.zeros(n_groups, dtype=bool)
    if x.size:
        has_pos[g[(x > 0).any(axis=1)]] = True
        has_neg[g[(x < 0).any(axis=1)]] = True
    return has_pos, has_neg


def signed_group_means(
    scores: np.ndarray, groups: np.ndarray, is_ref: np.ndarray, n_groups: int, *, ref_order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unfloored means of the positive and of the |negative| reference scores per group and column.

    Parameters: ``scores`` (S, Q) float; ``groups`` int (S,) in ``0..n_groups-1``;
    ``is_ref`` bool (S,); ``ref_order`` optionally :func:`reference_order` of the same groups.
    Returns ``pos_mean, neg_mean`` (n_groups, Q) float64 (NaN where a group has no such score in a
    column), ``pos_count, neg_count`` (n_groups, Q) int64.
    """
    if ref_order is None:
        ref_order = reference_order(groups, is_ref)
    ref_order = np.ascontiguousarray(ref_order, dtype=np.int64)
    g = groups[ref_order]
    n_q = scores.shape[1]
    pos_sum = np.zeros((n_groups, n_q))
    neg_sum = np.zeros((n_groups, n_q))
    pos_count = np.zeros((n_groups, n_q), dtype=np.int64)
    neg_count = np.zeros((n_groups, n_q), dtype=np.int64)
    if ref_order.size:
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        gid = g[starts]
        # the signed parts, gathered in group order, a few query columns at a time (bounded
        # memory); summed by numpy's reduceat, whose per-column order does not depend on the chunk
        step = max(1, _SUM_BYTES // (16 * ref_order.size))
        for c0 in range(0, n_q, step):
            c1 = min(c0 + step, n_q)
            pos_part = np.empty((ref_order.size, c1 - c0))
            neg_part = np.empty_like(pos_part)
            _signed_parts(scores, ref_order, groups, c0, c1, pos_part, neg_part, pos_count, neg_count)
            pos_sum[gid, c0:c1] = np.add.reduceat(pos_part, starts, axis=0)
            neg_sum[gid, c0:c1] = np.add.reduceat(neg_part, starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_mean = np.where(pos_count > 0, pos_sum / pos_count, np.nan)
        neg_mean = np.where(neg_count > 0, neg_sum / neg_count, np.nan)
    return pos_mean, neg_mean, pos_count, neg_count


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _apply_rows(x, groups, div_pos, div_neg, out, lo, hi):
    for s in range(lo, hi):
        g = groups[s]
        for q in range(x.shape[1]):
            v = x[s, q]
            if v > 0:
                out[s, q] = v / div_pos[g, q]
            elif v < 0:
                out[s, q] = v / div_neg[g, q]
            else:
                out[s, q] = v


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _apply_kernel(x, groups, div_pos, div_neg, out):
    n = x.shape[0]
    n_blocks = (n + _ROW_BLOCK - 1) // _ROW_BLOCK
    for b in numba.prange(n_blocks):
        _apply_rows(x, groups, div_pos, div_neg, out, b * _ROW_BLOCK, min((b + 1) * _ROW_BLOCK, n))


def _apply(x: np.ndarray, groups: np.ndarray, div_pos: np.ndarray, div_neg: np.ndarray, threads: int, parallel_min: int) -> np.ndarray:
    """Divide positive scores by ``div_pos[group]`` and negative ones by ``div_neg[group]`` (per column)."""
    out = np.empty(x.shape, dtype=np.float64)
    args = (x, groups, np.ascontiguousarray(div_pos, dtype=np.float64), np.ascontiguousarray(div_neg, dtype=np.float64), out)
    if threads > 1 and x.size >= parallel_min:
        _apply_kernel(*args)
    else:  # a parallel launch costs more than it saves for one query
        _apply_rows(*args, 0, x.shape[0])
    return out


def ncs(
    scores: np.ndarray,
    groups: np.ndarray,
    is_ref: np.ndarray,
    *,
    floor: float = 0.01,
    mode: str = "cmap",
    fallback_keys: Sequence[np.ndarray] = (),
    ref_order: np.ndarray | None = None,
    threads: int = 1,
    parallel_min: int = PARALLEL_MIN,
    group_signs: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Normalised connectivity scores (see the module docstring for the three modes).

    Parameters
    ----------
    scores:
        WTCS, float array (S,) or (S, Q) (signatures × query columns).
    groups:
        Integer group code per signature (S,), ``0..n_groups-1``; the caller maps e.g.
        ``pert_type × cell_id`` to codes.
    is_ref:
        Bool (S,): the reference population whose signed means normalise each group
        (``is_touchstone`` / ``is_ncs_sig``).
    floor:
        Lower bound of each signed mean (0.01 in CMap).
    mode:
        ``cmap`` (default), ``gutc`` or ``clean``.
    fallback_keys:
        ``gutc`` only: arrays (n_groups,) of integer keys per group (e.g. the group's pert_type
        code, then its cell-line code) tried in order for groups without references before the
        median over all processed groups.
    ref_order:
        Optional :func:`reference_order` of ``groups`` and ``is_ref`` (computed once by callers
        normalising many score matrices of the same signatures).
    threads, parallel_min:
        ``threads > 1`` divides on numba's threads when ``scores`` has at least ``parallel_min``
        values (see :mod:`opencmap.kernels.threads`).
    group_signs:
        ``gutc`` and ``clean`` only: bool arrays (n_groups,) telling whether each group's
        references have a positive / a negative score in *some* column of the whole query set
        (:func:`signed_any`), for normalising that set a few columns at a time: ``gutc`` decides
        per group over all columns (whether a sign is normalised, which groups donate), so a
        subset of columns gives the same values as the whole set only with the whole set's flags.
        Default: the flags of ``scores`` itself.

    Returns
    -------
    float64 array with the shape of ``scores``.
    """
    if mode not in NCS_MODES:
        raise ConfigError(f"NCS mode must be one of {NCS_MODES}, got {mode!r}")
    x, one_d = as_columns(scores, None, name="scores")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    groups = np.asarray(groups)
    is_ref = np.asarray(is_ref, dtype=bool)
    if groups.shape != (x.shape[0],) or is_ref.shape != (x.shape[0],):
        raise ValidationError(
            f"groups {groups.shape} and is_ref {is_ref.shape} must both have shape ({x.shape[0]},)"
        )
    if not np.issubdtype(groups.dtype, np.integer):
        raise ValidationError(f"groups must be integer codes, got dtype {groups.dtype}")
    groups = groups.astype(np.int64)
    if groups.size and groups.min() < 0:
        raise ValidationError("group codes must be >= 0 (give every signature a group)")
    n_groups = int(groups.max()) + 1 if groups.size else 0
    pos_mean, neg_mean, pos_count, neg_count = signed_group_means(x, groups, is_ref, n_groups, ref_order=ref_order)
    with np.errstate(invalid="ignore"):
        mu_pos = np.maximum(pos_mean, floor)  # NaN stays NaN
        mu_neg = np.maximum(neg_mean, floor)
    par = (int(threads), int(parallel_min))
    if mode == "cmap" and group_signs is not None:
        # cmap mode also decides per group over every column whether a mean is missing
        raise ConfigError("group_signs is supported by the gutc and clean NCS modes only")
    if mode == "cmap":
        out = _ncs_cmap(x, groups, mu_pos, mu_neg, pos_count, neg_count, par)
    elif mode == "gutc":
        if group_signs is None:
            has_pos, has_neg = pos_count.sum(axis=1) > 0, neg_count.sum(axis=1) > 0
        else:
            has_pos, has_neg = (np.asarray(a, dtype=bool) for a in group_signs)
            if has_pos.shape != (n_groups,) or has_neg.shape != (n_groups,):
                raise ValidationError(f"group_signs must be two bool arrays of shape ({n_groups},)")
        out = _ncs_gutc(x, groups, is_ref, mu_pos, mu_neg, has_pos, has_neg, fallback_keys, par)
    else:
        out = _ncs_clean(x, groups, mu_pos, mu_neg, par)
    return like_input(out, one_d)


def _ncs_cmap(x, groups, mu_pos, mu_neg, pos_count, neg_count, par):
    # a group is processed when its references have a positive or negative score in some column
    has_pos = pos_count.sum(axis=1) > 0
    has_neg = neg_count.sum(axis=1) > 0
    processed = has_pos | has_neg
    # a sign is applied only if its mean exists in every column (MATLAB ``if ~isnan(vector)``)
    use_pos = has_pos & ~np.isnan(mu_pos).any(axis=1)
    use_neg = has_neg & ~np.isnan(mu_neg).any(axis=1)
    eff_pos = np.where(use_pos[:, None], mu_pos, np.nan)
    eff_neg = np.where(use_neg[:, None], mu_neg, np.nan)
    if (~processed).any() and processed.any():
        # groups without usable references: median over processed groups (a group whose
        # references lack one sign contributes NaN for it, ignored by the median)
        grand_pos = _nanmedian(mu_pos[processed], axis=0)
        grand_neg = _nanmedian(mu_neg[processed], axis=0)
        unproc = ~processed
        if not np.isnan(grand_pos).any():
            eff_pos[unproc] = grand_pos
        if not np.isnan(grand_neg).any():
            eff_neg[unproc] = grand_neg
    # NaN divisor = sign left unnormalised
    out = _apply(x, groups, np.where(np.isnan(eff_pos), 1.0, eff_pos), np.where(np.isnan(eff_neg), 1.0, eff_neg), *par)
    out[np.isnan(out)] = 0.0
    return out


def _ncs_gutc(x, groups, is_ref, mu_pos, mu_neg, has_pos, has_neg, fallback_keys, par):
    n_groups = mu_pos.shape[0]
    has_ref = np.zeros(n_groups, dtype=bool)
    has_ref[groups[is_ref]] = True
    processed = has_ref & (has_pos | has_neg)
    # divisors applied to each group: raw (1) unless a mean is known; NaN mean -> NaN score
    div_pos = np.where(has_pos[:, None], mu_pos, 1.0)
    div_neg = np.where(has_neg[:, None], mu_neg, 1.0)
    # donor means as CMap keeps them (NaN where a group has no such reference score)
    mean_pos = np.where(processed[:, None], mu_pos, np.nan)
    mean_neg = np.where(processed[:, None], mu_neg, np.nan)
    keys = [np.asarray(k) for k in fallback_keys] + [np.zeros(n_groups, dtype=np.int64)]
    for key in keys:
        if key.shape != (n_groups,):
            raise ValidationError(f"each fallback key must have shape ({n_groups},), got {key.shape}")
        todo = np.flatnonzero(~processed)
        if todo.size == 0:
            break
        newly = np.zeros(n_groups, dtype=bool)
        for value in np.unique(key[todo]):
            donors = processed & (key == value)
            if not donors.any():
                continue
            members = todo[key[todo] == value]
            mean_pos[members] = _nanmedian(mean_pos[donors], axis=0)
            mean_neg[members] = _nanmedian(mean_neg[donors], axis=0)
            div_pos[members] = mean_pos[members]
            div_neg[members] = mean_neg[members]
            newly[members] = True
        processed |= newly
    return _apply(x, groups, div_pos, div_neg, *par)


def _ncs_clean(x, groups, mu_pos, mu_neg, par):
    grand_pos = _nanmedian(mu_pos, axis=0) if mu_pos.shape[0] else np.full(x.shape[1], np.nan)
    grand_neg = _nanmedian(mu_neg, axis=0) if mu_neg.shape[0] else np.full(x.shape[1], np.nan)
    eff_pos = np.where(np.isnan(mu_pos), grand_pos[None, :], mu_pos)
    eff_neg = np.where(np.isnan(mu_neg), grand_neg[None, :], mu_neg)
    return _apply(x, groups, eff_pos, eff_neg, *par)
