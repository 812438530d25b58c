"""τ (tau): NCS as a signed percentile of each reference signature's background (spec §6.6, §13.5).

For a reference signature ``r`` with background NCS values ``X_r`` (its scores against the
reference queries, e.g. Touchstone introspect, same cell line)::

    tau(x) = sign(x) * 100 * #{|X_r| < |x|} / #X_r          in [-100, 100]

* :func:`sorted_abs_background` turns a raw background NCS matrix (+ mask) into the compact form
  used here: per signature the ascending ``|X_r|`` values, NaN-padded, and their counts.
* :func:`tau_exact` evaluates the formula with a binary search (our default).
* CMap-compat mode: :func:`percentile_table` builds CMap's lookup tables
  (``scoreToPercentileTransform``, method ``symmetric``: 10,001 bins over [-4, 4]);
  :func:`tau_from_table` applies tables (``scoreToPercentile``: linear interpolation at
  ``clip(x, -4, 4)``), e.g. CMap's own ``ns2ps`` files; :func:`tau_grid` gives the same numbers
  straight from the sorted background without building the tables.
"""

from __future__ import annotations

import numba
import numpy as np

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns, like_input
from opencmap.kernels.threads import PARALLEL_MIN

__all__ = [
    "sorted_abs_background",
    "tau_exact",
    "percentile_table",
    "tau_grid",
    "tau_from_table",
    "grid_centers",
    "GRID_MIN",
    "GRID_MAX",
    "GRID_BINS",
]

#: CMap's NCS range and number of bins of the percentile lookup tables
GRID_MIN = -4.0
GRID_MAX = 4.0
GRID_BINS = 10001
# rows per parallel work item, and the scores (rows x queries) below which one thread is used
_ROW_BLOCK = 4096
# backgrounds up to this many values per row are counted linearly (SIMD), longer ones bisected
_LINEAR_MAX = 256


def sorted_abs_background(ncs_matrix: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-signature sorted ``|NCS|`` background from a raw background matrix.

    Parameters
    ----------
    ncs_matrix:
        Float (S, B): row ``s`` holds the NCS of reference signature ``s`` against each of ``B``
        background queries (e.g. an introspect matrix). NaN entries are ignored.
    mask:
        Optional bool (S, B): entries to use (e.g. query from the same cell line as ``s``).

    Returns
    -------
    background, counts:
        float32 (S, M) with each row's used ``|NCS|`` values ascending and NaN after them
        (``M`` = the largest count), and int64 (S,) counts of used values.
    """
    x = np.abs(np.asarray(ncs_matrix, dtype=np.float32))
    if x.ndim != 2:
        raise ValidationError(f"ncs_matrix must be 2-D (signatures x background queries), got shape {x.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise ValidationError(f"mask shape {mask.shape} differs from ncs_matrix shape {x.shape}")
        x = np.where(mask, x, np.float32(np.nan))
    counts = np.count_nonzero(~np.isnan(x), axis=1).astype(np.int64)
    x.sort(axis=1)  # NaN sorts last
    width = int(counts.max()) if counts.size else 0
    return np.ascontiguousarray(x[:, :width]), counts


@numba.njit(cache=True, nogil=True)
def _count_below(row, n, a):
    """``#{row[i] < a : i < n}`` of ascending ``row`` (``searchsorted(row[:n], a, "left")``):
    a branch-free vectorised count for short rows, a binary search for long ones."""
    if n <= _LINEAR_MAX:
        below = 0
        for i in range(n):
            below += 1 if row[i] < a else 0
        return below
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if row[mid] < a:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _tau_exact_rows(x, background, counts, out, lo, hi):
    n_q = x.shape[1]
    for s in range(lo, hi):
        n = counts[s]
        row = background[s]
        for q in range(n_q):
            v = x[s, q]
            if np.isnan(v) or n == 0:
                out[s, q] = np.nan
                continue
            a = abs(v)
            if a == 0:
                out[s, q] = 0.0
                continue
            below = _count_below(row, n, a)  # #{|X| < |x|}
            t = 100.0 * below / n
            out[s, q] = t if v > 0 else -t


@numba.njit(parallel=True, cache=True, nogil=True)
def _tau_exact_kernel(x, background, counts, out):
    n_sig = x.shape[0]
    n_blocks = (n_sig + _ROW_BLOCK - 1) // _ROW_BLOCK
    for b in numba.prange(n_blocks):
        _tau_exact_rows(x, background, counts, out, b * _ROW_BLOCK, min((b + 1) * _ROW_BLOCK, n_sig))


def tau_exact(
    ncs_q: np.ndarray,
    background: np.ndarray,
    background_counts: np.ndarray,
    *,
    threads: int = 1,
    parallel_min: int = PARALLEL_MIN,
) -> np.ndarray:
    """Exact τ of each query score against its signature's background (spec §6.6 formula).

    Parameters
    ----------
    ncs_q:
        Float (S,) or (S, Q): query NCS per reference signature (rows aligned with ``background``).
    background, background_counts:
        As returned by :func:`sorted_abs_background`: float (S, M) ascending ``|NCS|`` per row,
        NaN-padded, and int (S,) number of valid values per row.

    Returns
    -------
    float64 with the shape of ``ncs_q``, in [-100, 100]; NaN where the score is NaN or the
    signature has no background. Comparisons happen in the background's precision (a float32
    background is compared with float32-rounded scores, so equal stored values tie exactly).
    ``threads > 1`` splits the rows over numba's threads when ``ncs_q`` has at least
    ``parallel_min`` values (:mod:`opencmap.kernels.threads`).
    """
    x, one_d = as_columns(ncs_q, None, name="ncs_q")
    bg = np.asarray(background)
    counts = np.asarray(background_counts, dtype=np.int64)
    if bg.ndim != 2 or bg.shape[0] != x.shape[0] or counts.shape != (x.shape[0],):
        raise ValidationError(
            f"shapes disagree: ncs_q {np.shape(ncs_q)}, background {bg.shape}, counts {counts.shape}"
        )
    if counts.size and (counts.min() < 0 or counts.max() > bg.shape[1]):
        raise ValidationError("background_counts must lie in 0..background.shape[1]")
    if not np.issubdtype(bg.dtype, np.floating):
        bg = bg.astype(np.float64)
    x = x.astype(bg.dtype)
    out = np.empty(x.shape, dtype=np.float64)
    if threads > 1 and x.size >= parallel_min:
        _tau_exact_kernel(x, bg, counts, out)
    else:  # one query against ~1e5 signatures: a parallel launch costs more than it saves
        _tau_exact_rows(x, bg, counts, out, 0, x.shape[0])
    return like_input(out, one_d)


def grid_centers(lo: float = GRID_MIN, hi: float = GRID_MAX, n_bins: int = GRID_BINS) -> np.ndarray:
    """Bin centres of CMap's lookup tables: ``linspace(lo, hi, n_bins)`` (float64)."""
    return np.linspace(lo, hi, n_bins)


@numba.njit(cache=True)
def _lookup_value(row, n, c):
    """``sign(c) * 100 * P(|X| < u)`` with ``u`` the distinct ``|X|`` nearest to ``|c|`` (CMap table)."""
    if c == 0.0:
        return 0.0
    a = abs(c)
    if a > row[n - 1]:
        return 100.0 if c > 0 else -100.0
    if a < row[0]:
        return np.nan
    above = np.searchsorted(row[:n], a, side="right")  # first value > a (or n)
    u = row[above - 1]  # largest value <= a
    if a > u:
        upper = row[above]  # exists because a <= max
        d0 = a - u
        d1 = upper - a
        # nearest distinct value; MATLAB interp1 'nearest' sends midpoint ties to the larger
        # signed x: up on the positive side, towards zero on the negative side
        if d1 < d0 or (d1 == d0 and c > 0):
            u = upper
    below = np.searchsorted(row[:n], u, side="left")  # #{|X| < u}
    t = 100.0 * below / n
    return t if c > 0 else -t


@numba.njit(cache=True)
def _table_value(row, n, centers, k_null, i):
    """Value of the CMap lookup table of one signature at bin ``i`` (spec §13.5).

    ``row[:n]``: ascending ``|X|`` (duplicates allowed); ``k_null``: last bin whose centre is
    below the second-smallest distinct ``|X|`` (-1 if none / single distinct value).
    """
    c = centers[i]
    if k_null >= 0 and abs(c) < centers[k_null]:
        # straight line through the origin and the table value at bin k_null
        ck = centers[k_null]
        return c * (_lookup_value(row, n, ck) / ck)
    return _lookup_value(row, n, c)


@numba.njit(cache=True)
def _null_bin(row, n, centers):
    """Last bin with centre below the second-smallest distinct value of ``row[:n]`` (-1 if none)."""
    j = np.searchsorted(row[:n], row[0], side="right")
    if j >= n:
        return -1
    return np.searchsorted(centers, row[j], side="left") - 1


@numba.njit(parallel=True, cache=True)
def _table_kernel(background, counts, centers, out):
    for s in numba.prange(background.shape[0]):
        n = counts[s]
        if n == 0:
            continue
        row = background[s]
        k = _null_bin(row, n, centers)
        for i in range(centers.shape[0]):
            out[s, i] = _table_value(row, n, centers, k, i)


@numba.njit(parallel=True, cache=True)
def _tau_grid_kernel(x, background, counts, centers, knots, lo, hi, out):
    n_sig, n_q = x.shape
    n_bins = centers.shape[0]
    for s in numba.prange(n_sig):
        n = counts[s]
        row = background[s]
        k = _null_bin(row, n, centers) if n > 0 else -1
        for q in range(n_q):
            v = x[s, q]
            if n == 0 or np.isnan(v):
                out[s, q] = np.nan
                continue
            v = min(max(v, lo), hi)
            i = np.searchsorted(knots, v, side="right") - 1
            i = min(max(i, 0), n_bins - 2)
            y0 = _table_value(row, n, centers, k, i)
            y1 = _table_value(row, n, centers, k, i + 1)
            t = (v - knots[i]) / (knots[i + 1] - knots[i])
            out[s, q] = y0 + t * (y1 - y0) if t != 0.0 else y0


def _check_background(background: np.ndarray, background_counts: np.ndarray, n_rows: int | None = None):
    bg = np.asarray(background, dtype=np.float64)
    counts = np.asarray(background_counts, dtype=np.int64)
    if bg.ndim != 2 or counts.shape != (bg.shape[0],) or (n_rows is not None and bg.shape[0] != n_rows):
        raise ValidationError(f"shapes disagree: background {bg.shape}, counts {counts.shape}, rows {n_rows}")
    if counts.size and (counts.min() < 0 or counts.max() > bg.shape[1]):
        raise ValidationError("background_counts must lie in 0..background.shape[1]")
    return np.ascontiguousarray(bg), counts


def percentile_table(
    background: np.ndarray,
    background_counts: np.ndarray,
    *,
    lo: float = GRID_MIN,
    hi: float = GRID_MAX,
    n_bins: int = GRID_BINS,
) -> tuple[np.ndarray, np.ndarray]:
    """CMap's NCS -> percentile lookup table per signature (``symmetric`` method, spec §13.5).

    For bin centre ``v`` with ``0 < |v| <= max|X|`` the value is ``sign(v) * 100 * P(|X| < u)``
    where ``u`` is the distinct ``|X|`` value nearest to ``|v|`` (midpoint ties go to the larger
    signed neighbour, as MATLAB's ``interp1(..., 'nearest')``); beyond ``max|X|`` it is ±100; for
    ``|v|`` below the largest bin centre that is smaller than the second-smallest distinct
    ``|X|`` the table is the straight line through 0 and that bin's value. Reproduces CMap's
    ``ns2ps`` files exactly.

    Parameters are the outputs of :func:`sorted_abs_background`. Returns ``table`` float32
    (S, n_bins) (NaN rows for signatures without background) and ``bin_centers`` float64
    (n_bins,).
    """
    bg, counts = _check_background(background, background_counts)
    centers = grid_centers(lo, hi, n_bins)
    table = np.full((bg.shape[0], n_bins), np.nan, dtype=np.float64)
    _table_kernel(bg, counts, centers, table)
    return table.astype(np.float32), centers


def tau_grid(
    ncs_q: np.ndarray,
    background: np.ndarray,
    background_counts: np.ndarray,
    *,
    lo: float = GRID_MIN,
    hi: float = GRID_MAX,
    n_bins: int = GRID_BINS,
) -> np.ndarray:
    """CMap-compat τ: the lookup table of :func:`percentile_table` interpolated at ``clip(x, lo, hi)``.

    Same inputs and output as :func:`tau_exact`; the table is never materialised (only the two
    bins around each score are evaluated), so this works for any number of signatures. As in
    CMap, interpolation uses the float32-rounded bin centres.
    """
    x, one_d = as_columns(ncs_q, name="ncs_q")
    bg, counts = _check_background(background, background_counts, x.shape[0])
    out = np.empty(x.shape, dtype=np.float64)
    centers = grid_centers(lo, hi, n_bins)
    # CMap builds the tables on float64 centres but interpolates on the float32 centres stored
    # in its ns2ps files; do the same
    knots = centers.astype(np.float32).astype(np.float64)
    _tau_grid_kernel(x, bg, counts, centers, knots, float(lo), float(hi), out)
    return like_input(out, one_d)


@numba.njit(cache=True)
def _interp_rows(x, table, centers, out):
    n_sig, n_q = x.shape
    for s in range(n_sig):
        for q in range(n_q):
            out[s, q] = np.interp(x[s, q], centers, table[s])


def tau_from_table(
    ncs_q: np.ndarray,
    table: np.ndarray,
    bin_centers: np.ndarray | None = None,
    *,
    lo: float = GRID_MIN,
    hi: float = GRID_MAX,
) -> np.ndarray:
    """τ from precomputed lookup tables (CMap ``scoreToPercentile``): interpolate at ``clip(x, lo, hi)``.

    Parameters
    ----------
    ncs_q:
        Float (S,) or (S, Q), rows aligned with ``table``.
    table:
        Float (S, n_bins) lookup tables (:func:`percentile_table`, or CMap's ``ns2ps`` matrix).
    bin_centers:
        Float (n_bins,) ascending; default ``linspace(lo, hi, n_bins)``.

    Returns float64 with the shape of ``ncs_q``; NaN scores stay NaN.
    """
    x, one_d = as_columns(ncs_q, name="ncs_q")
    tab = np.asarray(table, dtype=np.float64)
    if tab.ndim != 2 or tab.shape[0] != x.shape[0]:
        raise ValidationError(f"shapes disagree: ncs_q {np.shape(ncs_q)}, table {tab.shape}")
    centers = grid_centers(lo, hi, tab.shape[1]) if bin_centers is None else np.asarray(bin_centers, dtype=np.float64)
    if centers.shape != (tab.shape[1],):
        raise ValidationError(f"bin_centers must have shape ({tab.shape[1]},), got {centers.shape}")
    out = np.empty(x.shape, dtype=np.float64)
    _interp_rows(np.clip(x, lo, hi), tab, centers, out)
    return like_input(out, one_d)
