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
def _select(buf, n, k):  # pragma: no cover - compiled
    """Move the k-th smallest of ``buf[:n]`` to ``buf[k]`` (no larger value before, no smaller after).

    Hoare-partition quickselect with a median-of-three pivot (Wirth's/Floyd's scheme).
    """
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        if buf[mid] < buf[lo]:
            buf[mid], buf[lo] = buf[lo], buf[mid]
        if buf[hi] < buf[lo]:
            buf[hi], buf[lo] = buf[lo], buf[hi]
        if buf[hi] < buf[mid]:
            buf[hi], buf[mid] = buf[mid], buf[hi]
        pivot = buf[mid]
        i, j = lo, hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while pivot < buf[j]:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        # now buf[lo..j] <= pivot <= buf[i..hi], and anything strictly between equals pivot
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@numba.njit(cache=True, nogil=True, inline="always")
def _kth_pair(buf, n, k):  # pragma: no cover - compiled
    """``(buf[k-1], buf[k])`` of sorted ``buf[:n]`` (``k >= 1``); reorders ``buf``.

    Quickselect of ``k``; the (k-1)-th smallest is then the largest value left of it.
    """
    _select(buf, n, k)
    low = buf[0]
    for j in range(1, k):
        if buf[j] > low:
            low = buf[j]
    return low, buf[k]


#: Rows at least this long bracket the median with a sample first (see ``_median_buf``).
_BRACKET_MIN = 64
_SAMPLE = 40
_HALF_WIDTH = 8


@numba.njit(cache=True, nogil=True, inline="always")
def _median_buf(buf, mid, sample, n):  # pragma: no cover - compiled
    """Median of ``buf[:n]`` with ``np.median``'s arithmetic (``(lower + upper) / 2`` for even ``n``).

    Long rows: sort a strided sample, take two sample values ``lo <= hi`` likely to bracket the
    median, copy the values in ``[lo, hi]`` to ``mid`` in one branch-free pass, and select there
    (about a third of the row); when the median is not bracketed, select in the whole row. Both
    paths pick the exact order statistics, so the result does not depend on the path.
    """
    k = n // 2
    if n >= _BRACKET_MIN:
        step = n // _SAMPLE
        for i in range(_SAMPLE):  # insertion sort of the sample
            v = buf[i * step]
            j = i
            while j > 0 and sample[j - 1] > v:
                sample[j] = sample[j - 1]
                j -= 1
            sample[j] = v
        lo = sample[max(0, _SAMPLE // 2 - _HALF_WIDTH)]
        hi = sample[min(_SAMPLE - 1, _SAMPLE // 2 + _HALF_WIDTH)]
        below = 0
        m = 0
        for j in range(n):
            v = buf[j]
            mid[m] = v
            m += (v >= lo) & (v <= hi)
            below += v < lo
        need = k if n % 2 else k - 1  # smallest order statistic needed
        if below <= need and k < below + m:
            if n % 2:
                _select(mid, m, k - below)
                return mid[k - below]
            a, b = _kth_pair(mid, m, k - below)
            return (a + b) / 2  # exact halving; callers store it in the input's dtype
    if n % 2:
        _select(buf, n, k)
        return buf[k]
    a, b = _kth_pair(buf, n, k)
    return (a + b) / 2


@numba.njit(parallel=True, cache=True, nogil=True)
def _median_mad_rows(a, med, mad):  # pragma: no cover - compiled
    n_rows, n = a.shape
    for r in numba.prange(n_rows):
        buf = np.empty(n, dtype=a.dtype)
        mid = np.empty(n, dtype=a.dtype)
        sample = np.empty(_SAMPLE, dtype=a.dtype)
        for j in range(n):  # a copy of the row, whatever the memory order of ``a``
            buf[j] = a[r, j]
        med[r] = _median_buf(buf, mid, sample, n)
        m = med[r]  # rounded to the input dtype, as np.median's result is
        for j in range(n):
            buf[j] = abs(a[r, j] - m)
        mad[r] = _median_buf(buf, mid, sample, n)


def _median_rows(a: np.ndarray) -> np.ndarray:
    """Row medians, ignoring NaN (``np.nanmedian``); only used when there is NaN."""
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan, dtype=a.dtype)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN, on purpose
        return np.nanmedian(a, axis=1)


def _median_mad(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row medians and raw MADs of a 2-D float array (NaN ignored)."""
    if ref.shape[1] == 0 or np.isnan(ref).any():
        med = _median_rows(ref)
        return med, _median_rows(np.abs(ref - med[:, None]))
    # no NaN: a compiled quickselect per row, same values as np.median (float32 stays float32)
    a = ref if ref.flags.c_contiguous or ref.flags.f_contiguous else np.ascontiguousarray(ref)
    med = np.empty(a.shape[0], dtype=a.dtype)
    mad = np.empty(a.shape[0], dtype=a.dtype)
    _median_mad_rows(a, med, mad)
    return med, mad


def robust_center_scale(
    x: np.ndarray,
    background: np.ndarray | None = None,
    *,
    min_mad: float = 0.1,
    var_adjustment: str = "fixed",
    estimate_prct: float = 1.0,
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
    med, mad = _median_mad(ref)
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
) -> np.ndarray:
    """Robust z-scores of every column of ``x`` against the ``background`` columns, row by row.

    Shape contract: ``x`` is ``(n_genes, n_samples)``; the result has the same shape and the
    floating dtype of ``x`` (integers are promoted to float64). Rows whose background is all
    NaN give NaN. ``background=None`` is ZSPC (whole plate); pass the vehicle columns for ZSVC.
    To z-score columns instead of rows, call it on ``x.T``.
    """
    a = _float_array(x)
    med, mad = robust_center_scale(
        a, background, min_mad=min_mad, var_adjustment=var_adjustment, estimate_prct=estimate_prct
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a - med[:, None]) / (a.dtype.type(scale) * mad[:, None])
