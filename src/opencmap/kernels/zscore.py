"""Robust z-scores: centre on the median, scale by the (floored) median absolute deviation.

For each row ``g`` (a gene) of a ``(genes x samples)`` matrix ``x`` and a background set ``B``
of sample columns (algorithms.md §3, §13.6)::

    mu_g  = median_{s in B} x[g, s]
    mad_g = median_{s in B} |x[g, s] - mu_g|                  (raw, unscaled)
    z[g, s] = (x[g, s] - mu_g) / (1.4826 * max(mad_g, floor))

``floor`` depends on ``var_adjustment``:

* ``"fixed"`` (L1000 pipeline default): ``floor = min_mad`` (0.1 log2 units);
* ``"estimate"``: ``floor = max(prctile_{estimate_prct}(all rows' raw MADs), min_mad)``
  (MATLAB percentile; CMap's ``robust_zscore`` default with ``estimate_prct = 1``);
* ``"none"``: no floor (a zero MAD gives ``inf``/``nan``, as in the reference).

The arithmetic is done in the input's floating dtype (float32 for CMap-sized data, which is
what the reference computes in; float64 input stays float64). NaN values are ignored when
estimating medians and MADs and stay NaN in the output.
"""

from __future__ import annotations

import numba
import numpy as np

from opencmap.kernels.percentile import prctile

__all__ = ["MAD_SCALE", "VAR_ADJUSTMENTS", "robust_center_scale", "robust_zscore"]

#: Consistency constant turning a MAD into a normal-distribution standard deviation.
MAD_SCALE = 1.4826

#: Allowed values of ``var_adjustment``.
VAR_ADJUSTMENTS = ("fixed", "estimate", "none")


def _float_array(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (genes x samples) array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return a


@numba.njit(cache=True, nogil=True, inline="always")
def _kth_deviation(row, m, k, n, t):  # pragma: no cover - compiled
    """The ``t``-th smallest (0-based) of ``|row - m|`` for a sorted ``row`` with median ``m``.

    Left of the middle, ``L[p] = |row[k - 1 - p] - m|`` (``p < k``) grows with ``p``; right of it,
    ``R[q] = |row[k + q] - m|`` (``q < n - k``) grows with ``q`` (``row[:k] <= m <= row[k:]``,
    and rounding is monotone). The ``t``-th smallest of the two sorted runs is found by bisecting
    how many of the ``t + 1`` smallest come from ``L``.
    """
    n_left, n_right = k, n - k
    lo = max(0, t + 1 - n_right)
    hi = min(t + 1, n_left)
    while lo < hi:
        p = (lo + hi) >> 1
        q = t + 1 - p
        if abs(row[k - 1 - p] - m) < abs(row[k + q - 1] - m):
            lo = p + 1  # L[p] is below the (q-1)-th of R: take more from L
        else:
            hi = p
    p = lo
    q = t + 1 - p
    if p == 0:
        return abs(row[k + q - 1] - m)
    left = abs(row[k - p] - m)
    if q == 0:
        return left
    right = abs(row[k + q - 1] - m)
    return left if left > right else right


@numba.njit(cache=True, nogil=True, inline="always")
def _median_mad_row(row, n, k, med, mad, r):  # pragma: no cover - compiled
    """``med[r]``, ``mad[r]``: median and raw MAD of one sorted row (no NaN), ``np.median``'s values.

    The median is ``row[k]`` (odd ``n``) or ``(row[k - 1] + row[k]) / 2`` (even; the sum rounded
    to the dtype, then halved exactly). The MAD is the median of the absolute deviations, which
    form two sorted runs around the middle (:func:`_kth_deviation`): no second sort or selection.
    """
    if n % 2:
        med[r] = row[k]
    else:
        med[r] = (row[k - 1] + row[k]) / 2
    m = med[r]  # rounded to the dtype, as np.median's result is
    if n % 2:
        mad[r] = _kth_deviation(row, m, k, n, k)
    else:
        mad[r] = (_kth_deviation(row, m, k, n, k - 1) + _kth_deviation(row, m, k, n, k)) / 2


@numba.njit(parallel=True, cache=True, nogil=True)
def _median_mad_sorted(s, med, mad):  # pragma: no cover - compiled
    """:func:`_median_mad_row` of each row of ``s`` (rows sorted ascending), multi-threaded."""
    n_rows, n = s.shape
    for r in numba.prange(n_rows):
        _median_mad_row(s[r], n, n // 2, med, mad, r)


@numba.njit(cache=True, nogil=True)
def _median_mad_sorted_1t(s, med, mad):  # pragma: no cover - compiled
    """:func:`_median_mad_sorted` in the calling thread only."""
    n_rows, n = s.shape
    for r in range(n_rows):
        _median_mad_row(s[r], n, n // 2, med, mad, r)


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _apply_rows(a, med, denom, out):  # pragma: no cover - compiled
    """``out[g, s] = (a[g, s] - med[g]) / denom[g]`` (C-ordered ``a``/``out``), numpy's arithmetic."""
    n_rows, n = a.shape
    for g in numba.prange(n_rows):
        m = med[g]
        d = denom[g]
        for s in range(n):
            out[g, s] = (a[g, s] - m) / d


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _apply_rows_1t(a, med, denom, out):  # pragma: no cover - compiled
    """:func:`_apply_rows` in the calling thread only."""
    n_rows, n = a.shape
    for g in range(n_rows):
        m = med[g]
        d = denom[g]
        for s in range(n):
            out[g, s] = (a[g, s] - m) / d


@numba.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _apply_cols(at, med, denom, out_t):  # pragma: no cover - compiled
    """:func:`_apply_rows` on transposed (C-ordered) views of a column-major matrix."""
    n, n_rows = at.shape
    for s in numba.prange(n):
        for g in range(n_rows):
            out_t[s, g] = (at[s, g] - med[g]) / denom[g]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _apply_cols_1t(at, med, denom, out_t):  # pragma: no cover - compiled
    """:func:`_apply_cols` in the calling thread only."""
    n, n_rows = at.shape
    for s in range(n):
        for g in range(n_rows):
            out_t[s, g] = (at[s, g] - med[g]) / denom[g]


def _median_rows(a: np.ndarray) -> np.ndarray:
    """Row medians, ignoring NaN (``np.nanmedian``); only used when there is NaN."""
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan, dtype=a.dtype)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN, on purpose
        return np.nanmedian(a, axis=1)


def _median_mad(ref: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Row medians and raw MADs of a 2-D float array (NaN ignored)."""
    rows = None
    if ref.shape[1]:
        # sort each row (numpy's vectorised sort; NaN sort last, so the last column tells)
        rows = np.array(ref, order="C", copy=True)
        rows.sort(axis=1)
    if rows is None or np.isnan(rows[:, -1]).any():
        med = _median_rows(ref)
        return med, _median_rows(np.abs(ref - med[:, None]))
    # no NaN: read the median and merge the two runs of deviations around it: the same values
    # as np.median (float32 stays float32)
    med = np.empty(rows.shape[0], dtype=rows.dtype)
    mad = np.empty(rows.shape[0], dtype=rows.dtype)
    (_median_mad_sorted if threads > 1 else _median_mad_sorted_1t)(rows, med, mad)
    return med, mad


def robust_center_scale(
    x: np.ndarray,
    background: np.ndarray | None = None,
    *,
    min_mad: float = 0.1,
    var_adjustment: str = "fixed",
    estimate_prct: float = 1.0,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row median and floored raw MAD of ``x`` over the ``background`` columns.

    Parameters
    ----------
    x:
        ``(n_genes, n_samples)`` float array.
    background:
        Column positions (int array) or boolean mask of length ``n_samples`` giving the
        background set ``B``; ``None`` = all columns (ZSPC).
    min_mad, var_adjustment, estimate_prct:
        MAD floor rule (see the module docstring).
    threads:
        ``> 1``: rows on numba's threads (see :mod:`opencmap.kernels.threads`); same values.

    Returns
    -------
    (median, mad):
        Two ``(n_genes,)`` arrays in the dtype of ``x``; ``mad`` is the raw MAD after the
        floor (not yet multiplied by 1.4826).
    """
    a = _float_array(x)
    if var_adjustment not in VAR_ADJUSTMENTS:
        raise ValueError(f"var_adjustment must be one of {VAR_ADJUSTMENTS}, got {var_adjustment!r}")
    ref = a if background is None else a[:, np.asarray(background)]
    med, mad = _median_mad(ref, threads)
    if var_adjustment == "fixed":
        floor = min_mad
    elif var_adjustment == "estimate":
        est = float(prctile(mad, estimate_prct)) if mad.size else np.nan
        floor = max(est, min_mad) if np.isfinite(est) else min_mad
    else:
        floor = None
    if floor is not None:
        mad = np.maximum(mad, a.dtype.type(floor))  # an all-NaN row stays NaN
    return med.astype(a.dtype, copy=False), mad.astype(a.dtype, copy=False)


def robust_zscore(
    x: np.ndarray,
    background: np.ndarray | None = None,
    *,
    min_mad: float = 0.1,
    var_adjustment: str = "fixed",
    estimate_prct: float = 1.0,
    scale: float = MAD_SCALE,
    out: np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Robust z-scores of every column of ``x`` against the ``background`` columns, row by row.

    Shape contract: ``x`` is ``(n_genes, n_samples)``; the result has the same shape and the
    floating dtype of ``x`` (integers are promoted to float64). Rows whose background is all
    NaN give NaN. ``background=None`` is ZSPC (whole plate); pass the vehicle columns for ZSVC.
    To z-score columns instead of rows, call it on ``x.T``. ``out``: an array of the result's
    shape and dtype (C- or Fortran-contiguous, not overlapping ``x``) to write into and return.
    ``threads > 1`` runs the rows on numba's threads (:mod:`opencmap.kernels.threads`); same values.
    """
    a = _float_array(x)
    med, mad = robust_center_scale(
        a, background, min_mad=min_mad, var_adjustment=var_adjustment, estimate_prct=estimate_prct, threads=threads
    )
    denom = a.dtype.type(scale) * mad  # in the input's dtype, as numpy broadcasting computes it
    if out is not None:
        if out.shape != a.shape or out.dtype != a.dtype or not (out.flags.c_contiguous or out.flags.f_contiguous):
            raise ValueError(f"out must be a contiguous {a.dtype} array of shape {a.shape}, got {out.dtype} {out.shape}")
    compiled = a.dtype in (np.float32, np.float64) and (a.flags.c_contiguous or a.flags.f_contiguous)
    if a.size and compiled and (out is None or out.flags.c_contiguous == a.flags.c_contiguous):
        # one compiled pass in the input's memory order; the same arithmetic as the line below
        if a.flags.c_contiguous:
            res = np.empty(a.shape, dtype=a.dtype) if out is None else out
            (_apply_rows if threads > 1 else _apply_rows_1t)(a, med, denom, res)
            return res
        res = np.empty(a.shape, dtype=a.dtype, order="F") if out is None else out
        (_apply_cols if threads > 1 else _apply_cols_1t)(a.T, med, denom, res.T)
        return res
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (a - med[:, None]) / denom[:, None]
    if out is None:
        return z
    out[...] = z
    return out
