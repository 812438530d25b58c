"""False discovery rates of connectivity scores.

* :func:`fdr_gsea` -- CMap ``sig_queryl1k`` q-values (``computeFDRGsea``; GSEA 2005 style,
  spec §6.5): treatment vs null-signature ECDFs by PCHIP, null adjustment, monotone smoothing.
  Compiled: one sort per query column, then linear passes (the PCHIP interpolants of both ECDFs
  are evaluated by a merge walk over the sorted scores); columns run in parallel.
* :func:`fdr_gsea_reference` -- the same q-values with scipy's ``PchipInterpolator``, one query
  column and side at a time (the plain reference the compiled kernel is tested against).
* :func:`fdr_gsea_sides` -- what the CMap method can say on each side of each query column: the
  number of treatment and null scores, distinct null values, and the flags of a side where the
  method says nothing (too few nulls, a degenerate line, tied nulls, a row-order-dependent cut).
* :func:`random_query_pvalues` -- nominal p-values of scores against per-signature nulls of
  random queries (signatureSearch's approach, spec §6.5), ``(1 + #null >= |x|) / (1 + n)``.
* :func:`pooled_null` / :func:`random_query_pooled_pvalues` -- the same nulls with a finer tail:
  each signature keeps its own share of non-zero null scores and their scale (mean), while the
  shape of the non-zero |score| / scale is pooled over the signatures (GSEA's NES idea).
* :func:`bh` -- Benjamini-Hochberg adjusted p-values (for p-values of random-query nulls).
"""

from __future__ import annotations

import numba
import numpy as np

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns, like_input
from opencmap.kernels.radix import radix_argsort_f32

__all__ = [
    "fdr_gsea",
    "fdr_gsea_reference",
    "fdr_gsea_sides",
    "random_query_pvalues",
    "pooled_null",
    "random_query_pooled_pvalues",
    "bh",
    "EPS",
    "FLAG_TOO_FEW",
    "FLAG_LINE",
    "FLAG_TIED",
    "FLAG_ORDER",
    "FLAG_NAMES",
    "flag_names",
]

#: float64 machine epsilon, as CMap's ``eps``
EPS = float(np.finfo(np.float64).eps)

#: side flags of the CMap method (bits; a side can carry several)
FLAG_TOO_FEW = 1  # <= 2 null or <= 2 treatment scores on the side: every q there is 1 by rule
FLAG_LINE = 2  # 3-4 null scores: q is (mostly) a straight line between ~1 and 0
FLAG_TIED = 4  # fewer than 2 distinct null values (cmapM's interpolation fails; q meaningless)
FLAG_ORDER = 8  # the cut point of the null adjustment depends on the row order of the scores
FLAG_NAMES = {FLAG_TOO_FEW: "too_few_nulls", FLAG_LINE: "degenerate_line", FLAG_TIED: "tied_nulls", FLAG_ORDER: "row_order_dependent"}
#: a side with fewer null scores than this is flagged ``degenerate_line`` (3 or 4 nulls)
LINE_MAX_NULLS = 4

# query columns sorted per call of the compiled kernel (bounds the (Q, S) index buffer)
_CHUNK = 32


# ---------------------------------------------------------------------------------- compiled
@numba.njit(cache=True, nogil=True)
def _pchip_edge(h0, h1, m0, m1):
    """scipy ``PchipInterpolator._edge_case``: one-sided three-point end derivative."""
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > 3.0 * abs(m0):
        return 3.0 * m0
    return d


@numba.njit(cache=True, nogil=True)
def _pchip_slope(xk, yk, n, k):
    """scipy ``PchipInterpolator._find_derivatives`` at knot ``k`` of ``xk[:n], yk[:n]`` (n >= 2);
    each derivative depends only on its neighbours, so only the needed ones are computed."""
    if n == 2:
        return (yk[1] - yk[0]) / (xk[1] - xk[0])
    if k == 0:
        h0 = xk[1] - xk[0]
        h1 = xk[2] - xk[1]
        return _pchip_edge(h0, h1, (yk[1] - yk[0]) / h0, (yk[2] - yk[1]) / h1)
    if k == n - 1:
        h0 = xk[n - 1] - xk[n - 2]
        h1 = xk[n - 2] - xk[n - 3]
        return _pchip_edge(h0, h1, (yk[n - 1] - yk[n - 2]) / h0, (yk[n - 2] - yk[n - 3]) / h1)
    h0 = xk[k] - xk[k - 1]
    h1 = xk[k + 1] - xk[k]
    m0 = (yk[k] - yk[k - 1]) / h0
    m1 = (yk[k + 1] - yk[k]) / h1
    if np.sign(m1) != np.sign(m0) or m1 == 0.0 or m0 == 0.0:
        return 0.0
    w1 = 2.0 * h1 + h0
    w2 = h1 + 2.0 * h0
    return 1.0 / ((w1 / m0 + w2 / m1) / (w1 + w2))


@numba.njit(cache=True, nogil=True)
def _ecdf_sorted(vals, sel, lo, hi, want, xk, yk):
    """Knots of the "fraction strictly below" ECDF of ``vals[lo:hi]`` (ascending) where
    ``sel == want``; returns the number of distinct values."""
    n_all = 0
    for p in range(lo, hi):
        if sel[p] == want:
            n_all += 1
    n = 0
    seen = 0
    for p in range(lo, hi):
        if sel[p] != want:
            continue
        v = vals[p]
        if n == 0 or v != xk[n - 1]:
            xk[n] = v
            yk[n] = seen / n_all
            n += 1
        seen += 1
    return n


@numba.njit(cache=True, nogil=True)
def _ecdf_eval(vals, lo, hi, xk, yk, n, out):
    """PCHIP ECDF (knots from :func:`_ecdf_sorted`) at the ascending ``vals[lo:hi]``, clipped to
    the knot range (MATLAB ``cdfcalc`` + ``interp1 pchip``). scipy's interval rules, ``PPoly``
    coefficients and evaluation order, so the values are scipy's; only pieces that hold a
    non-knot value are built."""
    i = 0
    cur = -1
    d0 = 0.0
    c0 = 0.0
    c1 = 0.0
    for p in range(lo, hi):
        if n == 1:
            out[p] = yk[0]
            continue
        v = min(max(vals[p], xk[0]), xk[n - 1])
        if v == xk[n - 1]:
            i = n - 2
        else:
            while xk[i + 1] <= v:
                i += 1
        s = v - xk[i]
        if s == 0.0:  # at a knot the polynomial is its value
            out[p] = yk[i]
            continue
        if i != cur:  # CubicHermiteSpline coefficients of piece i
            d0 = _pchip_slope(xk, yk, n, i)
            d1 = _pchip_slope(xk, yk, n, i + 1)
            dx = xk[i + 1] - xk[i]
            slope = (yk[i + 1] - yk[i]) / dx
            t = (d0 + d1 - 2.0 * slope) / dx
            c0 = t / dx
            c1 = (slope - d0) / dx - t
            cur = i
        res = 0.0 + yk[i]
        res = res + d0 * s
        z = s * s
        res = res + c1 * z
        z = z * s
        out[p] = res + c0 * z


@numba.njit(cache=True, nogil=True)
def _fdr_side(vals, pos, nul, lo, hi, right, eps, q, tq, nq, xk, yk):
    """q-values of the scores ``vals[lo:hi]`` (ascending; original positions ``pos``) of one tail."""
    n_null = 0
    for p in range(lo, hi):
        if nul[p]:
            n_null += 1
    if hi - lo - n_null <= 2 or n_null <= 2:
        for p in range(lo, hi):
            q[p] = 1.0
        return
    n = _ecdf_sorted(vals, nul, lo, hi, False, xk, yk)
    _ecdf_eval(vals, lo, hi, xk, yk, n, tq)
    n = _ecdf_sorted(vals, nul, lo, hi, True, xk, yk)
    _ecdf_eval(vals, lo, hi, xk, yk, n, nq)
    best = np.inf
    first = -1
    for p in range(lo, hi):
        if right:
            r = (1.0 - nq[p]) / ((1.0 - tq[p]) + eps)
        else:
            r = nq[p] / (tq[p] + eps)
        r = min(max(r, eps), 1.0)
        q[p] = r
        # np.argmin: the first least q in the original order
        if r < best or (r == best and pos[p] < pos[first]):
            best = r
            first = p
    x_star = vals[first]
    # null adjustment: from the least-extreme score beyond x_star, fall linearly to 0
    if right:
        b = first
        while b < hi and vals[b] <= x_star:
            b += 1
        if b < hi:
            x0 = vals[b]
            y0 = q[b]
            x1 = vals[hi - 1]
            m = (eps - y0) / (eps + (x1 - x0))
            c = -m * x1
            for p in range(b, hi):
                q[p] = m * vals[p] + c
        run = np.inf
        for p in range(lo, hi):  # non-increasing towards the extreme
            run = min(run, q[p])
            q[p] = run
    else:
        b = first
        while b >= lo and vals[b] >= x_star:
            b -= 1
        if b >= lo:
            x0 = vals[b]
            y0 = q[b]
            x1 = vals[lo]
            m = (eps - y0) / (eps + (x1 - x0))
            c = -m * x1
            for p in range(lo, b + 1):
                q[p] = m * vals[p] + c
        run = np.inf
        for p in range(hi - 1, lo - 1, -1):
            run = min(run, q[p])
            q[p] = run


@numba.njit(cache=True, nogil=True)
def _fdr_column(vals, o, is_null, eps, out):
    """q-values of one column: ``vals`` ascending (NaN last) at original positions ``o``."""
    n_sig = vals.shape[0]
    nul = np.empty(n_sig, dtype=np.bool_)
    for p in range(n_sig):
        nul[p] = is_null[o[p]]
    q = np.ones(n_sig)
    tq = np.empty(n_sig)
    nq = np.empty(n_sig)
    xk = np.empty(n_sig)
    yk = np.empty(n_sig)
    neg_end = 0
    while neg_end < n_sig and vals[neg_end] < 0.0:
        neg_end += 1
    pos_lo = neg_end
    while pos_lo < n_sig and vals[pos_lo] == 0.0:
        pos_lo += 1
    pos_hi = pos_lo
    while pos_hi < n_sig and vals[pos_hi] > 0.0:
        pos_hi += 1
    if neg_end > 0:
        _fdr_side(vals, o, nul, 0, neg_end, False, eps, q, tq, nq, xk, yk)
    if pos_hi > pos_lo:
        _fdr_side(vals, o, nul, pos_lo, pos_hi, True, eps, q, tq, nq, xk, yk)
    for p in range(n_sig):
        out[o[p]] = q[p]


@numba.njit(cache=True, nogil=True)
def _fdr_col_f32(x, c, is_null, eps, out):
    """q-values of column ``x[:, c]`` (float32 scores) into ``out[:, c]``; sorts by radix."""
    n_sig = x.shape[0]
    row = np.empty(n_sig, dtype=np.float32)
    for p in range(n_sig):
        row[p] = x[p, c]
    o = np.empty(n_sig, dtype=np.int64)
    radix_argsort_f32(
        row, o, np.empty(n_sig, np.uint32), np.empty(n_sig, np.uint32), np.empty(n_sig, np.int64), np.empty((3, 2048), np.int64)
    )
    vals = np.empty(n_sig)
    for p in range(n_sig):
        vals[p] = row[o[p]]
    _fdr_column(vals, o, is_null, eps, out[:, c])


@numba.njit(cache=True, nogil=True)
def _fdr_col_sorted(x, order, c, is_null, eps, out):
    """q-values of column ``x[:, c]`` (float64) given its argsort ``order[c]``."""
    o = order[c]
    vals = np.empty(x.shape[0])
    for p in range(x.shape[0]):
        vals[p] = x[o[p], c]
    _fdr_column(vals, o, is_null, eps, out[:, c])


@numba.njit(cache=True, nogil=True)
def _fdr_cols_f32(x, is_null, eps, out):
    for c in range(x.shape[1]):
        _fdr_col_f32(x, c, is_null, eps, out)


@numba.njit(cache=True, nogil=True, parallel=True)
def _fdr_cols_f32_par(x, is_null, eps, out):
    for c in numba.prange(x.shape[1]):
        _fdr_col_f32(x, c, is_null, eps, out)


@numba.njit(cache=True, nogil=True)
def _fdr_cols_sorted(x, order, is_null, eps, out):
    for c in range(x.shape[1]):
        _fdr_col_sorted(x, order, c, is_null, eps, out)


@numba.njit(cache=True, nogil=True, parallel=True)
def _fdr_cols_sorted_par(x, order, is_null, eps, out):
    for c in numba.prange(x.shape[1]):
        _fdr_col_sorted(x, order, c, is_null, eps, out)


def fdr_gsea(ncs: np.ndarray, is_null: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """CMap ``sig_queryl1k`` FDR q-values of one or more query columns (spec §6.5, example 9.9).

    Parameters
    ----------
    ncs:
        Float (S,) or (S, Q): NCS of every signature (treatment and null) per query column.
    is_null:
        Bool (S,): null signatures (``is_null_sig``).

    Returns
    -------
    float64 with the shape of ``ncs``: q-values in [0, 1] (the most extreme score of a side maps
    to ~0 after the null adjustment). Zero and NaN scores get 1; a side with at most 2 treatment
    or at most 2 null scores of that sign gets 1. Equal to :func:`fdr_gsea_reference` (scipy
    PCHIP); one sort per column (a radix sort for float32 scores), columns on numba's threads
    with ``threads > 1`` (:mod:`opencmap.kernels.threads`).
    """
    x, one_d = as_columns(ncs, dtype=None, name="ncs")
    is_null = np.ascontiguousarray(is_null, dtype=bool)
    if is_null.shape != (x.shape[0],):
        raise ValidationError(f"ncs {np.shape(ncs)} and is_null {is_null.shape} do not match")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    out = np.empty(x.shape, dtype=np.float64)
    # one column: a parallel launch only adds latency
    parallel = x.shape[1] > 1 and threads > 1
    if x.dtype == np.float32:
        (_fdr_cols_f32_par if parallel else _fdr_cols_f32)(x, is_null, EPS, out)
        return like_input(out, one_d)
    for c0 in range(0, x.shape[1], _CHUNK):  # argsort per chunk bounds the (chunk, S) index buffer
        block = np.asarray(x[:, c0 : c0 + _CHUNK], dtype=np.float64)
        order = np.argsort(block.T, axis=1)
        (_fdr_cols_sorted_par if parallel else _fdr_cols_sorted)(block, order, is_null, EPS, out[:, c0 : c0 + _CHUNK])
    return like_input(out, one_d)


# ---------------------------------------------------------------------------------- reference
def _ecdf_below(sample: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Fraction of ``sample`` strictly below ``x``: PCHIP through the ECDF knots (MATLAB ``cdfcalc``).

    Knots are the distinct sample values ``v_j`` with value ``#{sample < v_j}/n``; ``x`` is
    clipped to the sample range first.
    """
    from scipy.interpolate import PchipInterpolator

    vals, counts = np.unique(sample, return_counts=True)
    f = (np.cumsum(counts) - counts) / sample.size
    xc = np.clip(x, vals[0], vals[-1])
    if vals.size == 1:
        return np.full(x.shape, f[0])
    return PchipInterpolator(vals, f, extrapolate=True)(xc)


def _fdr_tail(x_trt: np.ndarray, x_null: np.ndarray, xq: np.ndarray, right: bool) -> np.ndarray:
    """q-values of the scores ``xq`` of one tail (``computeFDRGsea/fdr_core``)."""
    trt_q = _ecdf_below(x_trt, xq)
    null_q = _ecdf_below(x_null, xq)
    with np.errstate(divide="ignore", invalid="ignore"):
        if right:
            q = np.clip((1.0 - null_q) / ((1.0 - trt_q) + EPS), EPS, 1.0)
        else:
            q = np.clip(null_q / (trt_q + EPS), EPS, 1.0)
    # null adjustment: scores beyond the least q fall linearly from the nearest one to 0
    x_star = xq[int(np.argmin(q))]  # first occurrence, like MATLAB min
    edge = xq > x_star if right else xq < x_star
    if edge.any():
        ex = xq[edge]
        i0 = int(np.argmin(ex)) if right else int(np.argmax(ex))
        x0 = ex[i0]
        y0 = q[edge][i0]
        x1 = xq.max() if right else xq.min()
        m = (EPS - y0) / (EPS + (x1 - x0))
        c = -m * x1
        fix = xq >= x0 if right else xq <= x0
        q[fix] = m * xq[fix] + c
    # smoothing: q non-increasing from least to most extreme score (stable order)
    order = np.argsort(xq if right else -xq, kind="stable")
    q[order] = np.minimum.accumulate(q[order])
    return q


def fdr_gsea_reference(ncs: np.ndarray, is_null: np.ndarray) -> np.ndarray:
    """:func:`fdr_gsea` written plainly (scipy PCHIP per query column and side); for tests."""
    x, one_d = as_columns(ncs, name="ncs")
    is_null = np.asarray(is_null, dtype=bool)
    if is_null.shape != (x.shape[0],):
        raise ValidationError(f"ncs {np.shape(ncs)} and is_null {is_null.shape} do not match")
    out = np.ones(x.shape, dtype=np.float64)
    for j in range(x.shape[1]):
        col = x[:, j]
        for right in (True, False):
            side = col > 0 if right else col < 0
            trt = side & ~is_null
            null = side & is_null
            if np.count_nonzero(trt) > 2 and np.count_nonzero(null) > 2:
                out[side, j] = _fdr_tail(col[trt], col[null], col[side], right)
    return like_input(out, one_d)


def bh(pvalues: np.ndarray, axis: int = 0) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values along ``axis`` (NaN ignored and kept).

    ``q_(i) = min_{k >= i} p_(k) * m / k`` over the ``m`` non-NaN p-values, capped at 1.
    """
    p = np.moveaxis(np.asarray(pvalues, dtype=np.float64), axis, -1)
    out = np.full(p.shape, np.nan)
    flat_p = p.reshape(-1, p.shape[-1]) if p.ndim else p.reshape(1, 1)
    flat_out = out.reshape(flat_p.shape)
    for i in range(flat_p.shape[0]):
        row = flat_p[i]
        ok = np.flatnonzero(~np.isnan(row))
        m = ok.size
        if m == 0:
            continue
        order = ok[np.argsort(row[ok], kind="stable")]
        scaled = row[order] * m / np.arange(1, m + 1)
        adj = np.minimum.accumulate(scaled[::-1])[::-1]
        flat_out[i, order] = np.minimum(adj, 1.0)
    return np.moveaxis(flat_out.reshape(p.shape), -1, axis)[()]


# ---------------------------------------------------------------------------------- diagnostics
def flag_names(code: int) -> str:
    """The flag bits of :func:`fdr_gsea_sides` as ``"name|name"`` ("" for none)."""
    return "|".join(name for bit, name in FLAG_NAMES.items() if int(code) & bit)


def _side_diagnostics(col: np.ndarray, is_null: np.ndarray, right: bool) -> tuple[int, int, int, int, float]:
    side = col > 0 if right else col < 0
    trt = col[side & ~is_null]
    nul = col[side & is_null]
    n_null, n_trt = int(nul.size), int(trt.size)
    distinct = int(np.unique(nul).size)
    flag = 0
    bound = np.nan
    if n_null <= 2 or n_trt <= 2:
        flag |= FLAG_TOO_FEW
    else:
        if n_null <= LINE_MAX_NULLS:
            flag |= FLAG_LINE
        if distinct < 2:
            flag |= FLAG_TIED
        # the cut point x* of the null adjustment is the first score of least raw q in row order
        # (np.argmin / MATLAB min): when two or more distinct scores share the least raw q, the same
        # scores in another row order give other q-values. On the negative side F_0 is 0 at and
        # below the most negative null, so all those scores have the floor q (eps); on the
        # positive side 1 - F_0 >= 1/n_null, so a tie there needs equal interpolated values.
        xs = col[side]
        with np.errstate(divide="ignore", invalid="ignore"):
            if right:
                raw = np.clip((1.0 - _ecdf_below(nul, xs)) / ((1.0 - _ecdf_below(trt, xs)) + EPS), EPS, 1.0)
            else:
                raw = np.clip(_ecdf_below(nul, xs) / (_ecdf_below(trt, xs) + EPS), EPS, 1.0)
        tied = np.unique(xs[raw == raw.min()])
        if tied.size >= 2:
            flag |= FLAG_ORDER
            # only scores at or beyond the least extreme of them can change with the row order
            bound = float(tied.min() if right else tied.max())
    return n_null, n_trt, distinct, flag, bound


def fdr_gsea_sides(ncs: np.ndarray, is_null: np.ndarray) -> dict[str, np.ndarray]:
    """What :func:`fdr_gsea` rests on, per query column and side (0 = positive, 1 = negative).

    Returns int arrays of shape (2, Q): ``n_null`` and ``n_treatment`` (scores of that sign),
    ``n_null_distinct`` (distinct null values) and ``flag`` (bits ``FLAG_*``), and the float
    ``order_bound`` (2, Q): for a ``FLAG_ORDER`` side, the least extreme score whose q can change
    with the row order (the scores at or beyond it; NaN elsewhere):

    * ``FLAG_TOO_FEW`` -- at most 2 null or 2 treatment scores: every q of the side is 1 by rule,
      which says nothing (a WTCS = 1 self-match included);
    * ``FLAG_LINE`` -- 3 or 4 null scores: the null adjustment turns most of the side into a
      straight line from ~1 to 0, whatever the raw q-values were;
    * ``FLAG_TIED`` -- fewer than 2 distinct null values (cmapM's ``interp1`` fails there);
    * ``FLAG_ORDER`` -- two or more distinct scores share the least raw q, and the first of them
      in row order becomes the cut point of the null adjustment; the same scores in another row
      order give other q-values. On the negative side this happens whenever a treatment score
      lies below the most negative null (all of them get the floor q, eps); on the positive side
      ``1 - F_0`` stays >= 1/n_null, so only equal interpolated values tie.
    """
    x, _ = as_columns(ncs, name="ncs")
    is_null = np.asarray(is_null, dtype=bool)
    if is_null.shape != (x.shape[0],):
        raise ValidationError(f"ncs {np.shape(ncs)} and is_null {is_null.shape} do not match")
    out = {k: np.zeros((2, x.shape[1]), dtype=np.int64) for k in ("n_null", "n_treatment", "n_null_distinct", "flag")}
    out["order_bound"] = np.full((2, x.shape[1]), np.nan)
    for j in range(x.shape[1]):
        col = np.asarray(x[:, j], dtype=np.float64)
        for s, right in enumerate((True, False)):
            n_null, n_trt, distinct, flag, bound = _side_diagnostics(col, is_null, right)
            out["order_bound"][s, j] = bound
            out["n_null"][s, j] = n_null
            out["n_treatment"][s, j] = n_trt
            out["n_null_distinct"][s, j] = distinct
            out["flag"][s, j] = flag
    return out


# ---------------------------------------------------------------------------------- random queries
@numba.njit(cache=True, nogil=True)
def _rq_row(x, null, counts, out, i):
    n = counts[i]
    row = null[i]
    for j in range(x.shape[1]):
        v = x[i, j]
        if np.isnan(v) or n == 0:
            out[i, j] = np.nan
            continue
        a = abs(v)
        lo = 0  # first position with null >= a (left bisection over the sorted finite part)
        hi = n
        while lo < hi:
            mid = (lo + hi) // 2
            if row[mid] < a:
                lo = mid + 1
            else:
                hi = mid
        out[i, j] = (1.0 + (n - lo)) / (1.0 + n)


@numba.njit(cache=True, nogil=True)
def _rq_pvalues(x, null, counts, out):
    for i in range(x.shape[0]):
        _rq_row(x, null, counts, out, i)


@numba.njit(cache=True, nogil=True, parallel=True)
def _rq_pvalues_par(x, null, counts, out):
    for i in numba.prange(x.shape[0]):
        _rq_row(x, null, counts, out, i)


def random_query_pvalues(scores: np.ndarray, null_sorted: np.ndarray, counts: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Nominal p-values of ``scores`` (S,) or (S, Q) against per-signature random-query nulls.

    ``null_sorted`` (S, R): each signature's |score| under R random queries, ascending, NaN-padded
    after the first ``counts[s]`` finite values. ``p = (1 + #{null >= |x|}) / (1 + n)``: two-sided
    on |score| (signatureSearch), with the observed query counted among the random ones so that
    p is a valid p-value (never 0; at least ``1 / (1 + n)``). NaN scores and signatures without
    null values get NaN. ``threads > 1``: signatures on numba's threads (above 4,096 of them).
    """
    x, one_d = as_columns(scores, name="scores")
    x = np.ascontiguousarray(x, dtype=np.float64)
    null = np.asarray(null_sorted)  # a memory-mapped null stays mapped (a plain ndarray view)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if null.ndim != 2 or null.shape[0] != x.shape[0] or counts.shape != (x.shape[0],):
        raise ValidationError(f"scores {np.shape(scores)}, null {null.shape} and counts {counts.shape} do not match")
    if np.any(counts > null.shape[1]) or np.any(counts < 0):
        raise ValidationError("null counts out of range")
    out = np.empty(x.shape, dtype=np.float64)
    (_rq_pvalues_par if x.shape[0] > 4096 and threads > 1 else _rq_pvalues)(x, null, counts, out)
    return like_input(out, one_d)


#: most pooled values kept by :func:`pooled_null` (rows taken at a stride above it)
POOL_MAX = 4_000_000


def pooled_null(null_sorted: np.ndarray, counts: np.ndarray, *, max_values: int = POOL_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-signature scale and non-zero count of random-query nulls, and the pooled shape.

    Returns ``(scale, n_nonzero, pooled)``: ``scale[s]`` = mean of the non-zero |null| values of
    signature ``s`` (NaN if none), ``n_nonzero[s]`` their number, and ``pooled`` the sorted
    non-zero values divided by their signature's scale, over all signatures (rows taken at a
    stride so that at most ``max_values`` are kept).
    """
    v = np.asarray(null_sorted)
    counts = np.asarray(counts, dtype=np.int64)
    n_sig = v.shape[0]
    scale = np.full(n_sig, np.nan)
    nonzero = np.zeros(n_sig, dtype=np.int64)
    step = max(1, (64 << 20) // max(1, v.shape[1] * 8))
    stride = max(1, int(np.ceil(n_sig * v.shape[1] / max_values)))
    parts = []
    for r0 in range(0, n_sig, step):
        block = np.asarray(v[r0 : r0 + step], dtype=np.float64)
        pos = block > 0  # NaN padding is not > 0
        nz = pos.sum(axis=1)
        nonzero[r0 : r0 + step] = nz
        with np.errstate(invalid="ignore", divide="ignore"):
            sc = np.where(pos, block, 0.0).sum(axis=1) / nz
        sc[nz == 0] = np.nan
        scale[r0 : r0 + step] = sc
        take = np.arange(r0, min(r0 + step, n_sig))
        take = take[(take % stride) == 0] - r0
        if take.size:
            b = block[take]
            parts.append((b[pos[take]] / np.repeat(sc[take], pos[take].sum(axis=1))).astype(np.float64))
    pooled = np.sort(np.concatenate(parts)) if parts else np.empty(0)
    return scale, nonzero, pooled


def random_query_pooled_pvalues(
    scores: np.ndarray, counts: np.ndarray, scale: np.ndarray, nonzero: np.ndarray, pooled: np.ndarray
) -> np.ndarray:
    """Nominal p-values with a pooled tail (see :func:`pooled_null`).

    For a score ``x`` of signature ``s`` with ``n`` random-query values, ``k`` of them non-zero:
    ``p = (1 + k) / (1 + n) * (1 + #{pooled >= |x| / scale_s}) / (1 + len(pooled))`` -- the
    signature's own share of non-zero null scores times the pooled tail of the normalised non-zero
    scores; ``p = 1`` for ``x == 0``; a signature whose null scores are all 0 gets ``1 / (1 + n)``
    for any non-zero ``x``. NaN scores and signatures without null values get NaN.
    """
    x, one_d = as_columns(scores, name="scores")
    x = np.abs(np.asarray(x, dtype=np.float64))
    counts = np.asarray(counts, dtype=np.float64)[:, None]
    k = np.asarray(nonzero, dtype=np.float64)[:, None]
    sc = np.asarray(scale, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = x / sc
        z_idx = np.where(np.isfinite(z), z, 0.0)
        tail = (1.0 + (pooled.size - np.searchsorted(pooled, z_idx, side="left"))) / (1.0 + pooled.size)
        p = np.minimum((1.0 + k) / (1.0 + counts) * tail, 1.0)
        p = np.where(k == 0, 1.0 / (1.0 + counts), p)
    p = np.where(x == 0, 1.0, p)
    p = np.where(np.isnan(x) | (counts == 0), np.nan, p)
    return like_input(p, one_d)
