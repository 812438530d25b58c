"""Plate-level flip correction of duo analytes (CMap ``iterative_flip_adjust_2d``), spec §1.4.

For one analyte, the (expression, bead count) points of its high-proportion gene and of its
low-proportion gene across the ``W`` wells of a plate form two classes. A linear discriminant
(pooled within-class covariance, equal priors: MATLAB ``classify(..., 'linear')``) is fitted to
the ``2W`` points and each point's class posteriors computed. A well is *flipped* when its
high-gene point looks "low" **and** its low-gene point looks "high" (both posteriors above
``cutoff``): the two genes' (value, count) pairs are swapped. This repeats, refitting each time,
while some well flipped in this round has been flipped at most ``max_flips`` times, for at most
``max_iter`` rounds.

Our own small LDA kernel (2 classes x 2 features, closed-form 2x2 inverse), numba-compiled;
scikit-learn is not needed. Analytes whose pooled covariance is singular are left unchanged
(MATLAB would stop with an error).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["lda_posterior", "flip_adjust_analyte", "flip_adjust"]


@njit(cache=True, nogil=True)
def lda_posterior(x: np.ndarray, n_first: int) -> tuple[np.ndarray, bool]:
    """Posterior class probabilities of a 2-class, 2-feature linear discriminant.

    Parameters
    ----------
    x:
        ``(n, 2)`` float64 points; rows ``[:n_first]`` are class 0, the rest class 1.
    n_first:
        Size of class 0 (``1 <= n_first < n``).

    Returns
    -------
    posterior:
        ``(n, 2)`` probabilities of class 0 and 1 for every row (equal priors, pooled covariance
        with denominator ``n - 2``).
    ok:
        False when the pooled covariance is singular (posterior is then all NaN).
    """
    n = x.shape[0]
    post = np.full((n, 2), np.nan)
    mu = np.zeros((2, 2))
    for i in range(n):
        g = 0 if i < n_first else 1
        mu[g, 0] += x[i, 0]
        mu[g, 1] += x[i, 1]
    mu[0] /= n_first
    mu[1] /= n - n_first
    s00 = 0.0
    s01 = 0.0
    s11 = 0.0
    for i in range(n):
        g = 0 if i < n_first else 1
        d0 = x[i, 0] - mu[g, 0]
        d1 = x[i, 1] - mu[g, 1]
        s00 += d0 * d0
        s01 += d0 * d1
        s11 += d1 * d1
    dof = n - 2
    if dof <= 0:
        return post, False
    s00 /= dof
    s01 /= dof
    s11 /= dof
    det = s00 * s11 - s01 * s01
    if not (det > 1e-12 * max(s00 * s11, 1e-300)):
        return post, False
    i00 = s11 / det
    i01 = -s01 / det
    i11 = s00 / det
    for i in range(n):
        d = np.empty(2)
        for g in range(2):
            d0 = x[i, 0] - mu[g, 0]
            d1 = x[i, 1] - mu[g, 1]
            d[g] = -0.5 * (i00 * d0 * d0 + 2.0 * i01 * d0 * d1 + i11 * d1 * d1)
        top = max(d[0], d[1])
        e0 = np.exp(d[0] - top)
        e1 = np.exp(d[1] - top)
        post[i, 0] = e0 / (e0 + e1)
        post[i, 1] = e1 / (e0 + e1)
    return post, True


@njit(cache=True, nogil=True)
def _variance(v: np.ndarray) -> float:
    n = v.shape[0]
    m = 0.0
    for i in range(n):
        m += v[i]
    m /= n
    s = 0.0
    for i in range(n):
        s += (v[i] - m) ** 2
    return s / max(n - 1, 1)


@njit(cache=True, nogil=True)
def flip_adjust_analyte(
    value_hi: np.ndarray,
    value_lo: np.ndarray,
    count_hi: np.ndarray,
    count_lo: np.ndarray,
    cutoff: float = 0.4,
    max_iter: int = 10,
    max_flips: int = 3,
):
    """Iterative flip correction of one analyte over ``W`` wells.

    Parameters
    ----------
    value_hi, value_lo, count_hi, count_lo:
        ``(W,)`` float64 expression and bead count of the high / low gene per well.

    Returns
    -------
    value_hi, value_lo, count_hi, count_lo:
        ``(W,)`` adjusted copies.
    nflip:
        ``(W,)`` int64 times each well was swapped.
    post_hi, post_lo:
        ``(W,)`` last posterior of the high gene's point being "high", and of the low gene's
        point being "low" (NaN if the analyte was skipped).
    """
    w = value_hi.shape[0]
    x = np.empty((2 * w, 2))
    for i in range(w):
        x[i, 0] = value_hi[i]
        x[i, 1] = count_hi[i]
        x[w + i, 0] = value_lo[i]
        x[w + i, 1] = count_lo[i]
    nflip = np.zeros(w, dtype=np.int64)
    post_hi = np.full(w, np.nan)
    post_lo = np.full(w, np.nan)
    finite = True
    for i in range(2 * w):
        if not (np.isfinite(x[i, 0]) and np.isfinite(x[i, 1])):
            finite = False
    eps = 2.220446049250313e-16
    skip = w < 2 or not finite or _variance(x[:, 0].copy()) < eps or _variance(x[:, 1].copy()) < eps
    if not skip:
        change = True
        it = 1
        while change and it <= max_iter:
            post, ok = lda_posterior(x, w)
            if not ok:
                break
            for i in range(w):
                post_hi[i] = post[i, 0]
                post_lo[i] = post[w + i, 1]
            change = False
            for i in range(w):
                if post[i, 1] > cutoff and post[w + i, 0] > cutoff:
                    nflip[i] += 1
                    if nflip[i] <= max_flips:
                        change = True
                    for f in range(2):
                        tmp = x[i, f]
                        x[i, f] = x[w + i, f]
                        x[w + i, f] = tmp
            it += 1
    return x[:w, 0].copy(), x[w:, 0].copy(), x[:w, 1].copy(), x[w:, 1].copy(), nflip, post_hi, post_lo


@njit(cache=True, nogil=True)
def flip_adjust(
    value_hi: np.ndarray,
    value_lo: np.ndarray,
    count_hi: np.ndarray,
    count_lo: np.ndarray,
    skip: np.ndarray,
    cutoff: float = 0.4,
    max_iter: int = 10,
    max_flips: int = 3,
):
    """:func:`flip_adjust_analyte` for every analyte (row) of ``(A, W)`` matrices.

    ``skip`` is an ``(A,)`` bool mask of analytes to leave alone (not-duo analytes). Returns the
    four adjusted ``(A, W)`` matrices, ``nflip`` ``(A, W)`` int64 and the posteriors
    ``post_hi``, ``post_lo`` ``(A, W)`` (NaN where skipped).
    """
    a_count, w = value_hi.shape
    out_vh = value_hi.copy()
    out_vl = value_lo.copy()
    out_ch = count_hi.copy()
    out_cl = count_lo.copy()
    nflip = np.zeros((a_count, w), dtype=np.int64)
    post_hi = np.full((a_count, w), np.nan)
    post_lo = np.full((a_count, w), np.nan)
    for a in range(a_count):
        if skip[a]:
            continue
        vh, vl, ch, cl, nf, ph, pl = flip_adjust_analyte(
            value_hi[a].copy(),
            value_lo[a].copy(),
            count_hi[a].copy(),
            count_lo[a].copy(),
            cutoff,
            max_iter,
            max_flips,
        )
        out_vh[a] = vh
        out_vl[a] = vl
        out_ch[a] = ch
        out_cl[a] = cl
        nflip[a] = nf
        post_hi[a] = ph
        post_lo[a] = pl
    return out_vh, out_vl, out_ch, out_cl, nflip, post_hi, post_lo
