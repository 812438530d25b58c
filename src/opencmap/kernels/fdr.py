"""False discovery rates of connectivity scores.

* :func:`fdr_gsea` -- CMap ``sig_queryl1k`` q-values (``computeFDRGsea``; GSEA 2005 style,
  spec §6.5): treatment vs null-signature ECDFs by PCHIP, null adjustment, monotone smoothing.
* :func:`bh` -- Benjamini-Hochberg adjusted p-values (for p-values of random-query nulls).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns, like_input

__all__ = ["fdr_gsea", "bh", "EPS"]

#: float64 machine epsilon, as CMap's ``eps``
EPS = float(np.finfo(np.float64).eps)


def _ecdf_below(sample: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Fraction of ``sample`` strictly below ``x``: PCHIP through the ECDF knots (MATLAB ``cdfcalc``).

    Knots are the distinct sample values ``v_j`` with value ``#{sample < v_j}/n``; ``x`` is
    clipped to the sample range first.
    """
    vals, counts = np.unique(sample, return_counts=True)
    f = (np.cumsum(counts) - counts) / sample.size
    xc = np.clip(x, vals[0], vals[-1])
    if vals.size == 1:
        return np.full(x.shape, f[0])
    return PchipInterpolator(vals, f, extrapolate=True)(xc)


def _first_argmin(q: np.ndarray) -> int:
    return int(np.argmin(q))  # first occurrence, like MATLAB min


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
    x_star = xq[_first_argmin(q)]
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


def fdr_gsea(ncs: np.ndarray, is_null: np.ndarray) -> np.ndarray:
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
    or at most 2 null scores of that sign gets 1.
    """
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
