"""Robust LOWESS as computed by MATLAB's ``malowess(x, y, 'span', k, 'robust', true)``.

LISS smooths each sample's 13-point calibration curve with it (algorithms.md §2.1 step 2). No
library reproduces MATLAB's variant (statsmodels/R ``lowess`` use one global residual scale),
so it is written out here. For point ``i`` of the x-sorted data:

1. **Window.** Among the points ``i-k+1 .. i+k-1``, keep those whose distance to ``x[i]`` is at
   most the ``k``-th smallest distance (ties kept); ``dmax`` = the largest kept distance.
2. **Local fit.** Weighted least squares of ``y`` on ``x - x[i]`` with tricube weights
   ``(1 - (d/dmax)^3)^3``; the smoothed value is the intercept.
3. **Robust passes** (5 by default). Residuals ``r = y - c`` of the previous pass; for each
   window, ``s`` = median of ``|r|`` over the window (*local* and *uncentred*); every point gets the
   bisquare weight ``(1 - (r / 6s)^2)^2`` (0 beyond ``6s``) times its tricube weight and the
   local fit is redone. A window whose ``s`` is 0 keeps plain tricube weights.
4. Rank-deficient local fits follow MATLAB's ``\\`` (pivoted QR, basic solution): with a single
   weighted point the result is its ``y`` (or 0 when that point's column ``|x - x[i]|`` exceeds 1,
   as the pivot then picks the slope column); with none it is 0.

Which MATLAB variant this is (checked against CMap's smoothed calibration curves, test plate
``liss/calib_*``; these files hold the *smoothed* curves, while level2to4 ``cal_n376x10`` holds the
raw invariant-probe input). ``malowess`` hands over to the Bioinformatics Toolbox helper
``masmooth`` (a fork of the Curve Fitting Toolbox ``smooth``, robust = 5 passes, linear local
fit). Its published versions differ in the robust scale; only the one above reproduces CMap:

* local window, *uncentred* median of ``|r|`` over all window points (this module): 20/26;
* local window, centred MAD ``median|r - median r|`` (masmooth 2004): 0/26;
* the same restricted to points of positive tricube weight (later ``smooth``): 0/26;
* one *global* median of ``|r|``, windows re-chosen among positive-weight points (current
  ``smooth``): 0/26.

The window is the span points nearest ``x[i]`` among ``i-k+1..i+k-1`` (ties kept), stored from the
first pass together with ``dmax``; x is strictly increasing here, so tie handling never applies.

Reproducibility limit: with 4-point windows and the two zero placeholders, the third robust pass
usually meets windows where three of the four residuals are round-off (|r| ~ 1e-15, exactly 0 when
a fit went through two points). MATLAB reweights such a window iff ``median|r| > max|y| * eps``
(~2.7e-15), i.e. the outcome is decided by the last bits of MKL's QR solves (the fit at the
zero placeholder, ``c ~ 1e-15``, is typical). Residuals below ``64 * eps * max|y|`` are snapped to
0 here (never reweight), the best deterministic rule found: snapping below 4 eps, no snapping
(18/26) and pure-Python emulations of reference-LAPACK ``\\`` (QR with/without pivoting, 16
variants: 10-18/26) did worse; larger snapping thresholds (up to 1e6 eps) give the same 20/26.
For *every* sample where we differ (6 of 26 per test-plate bead set, 71 of 376 level2to4 wells),
some choice of "reweight / don't" per (pass, window) among the windows whose scale is below
1e-12 reproduces CMap's output to 1e-4 (curve) or 5e-4 (scaled values); tests/kernels/
test_lowess.py shows two. The choices needed differ between samples whose round-off residuals
have the same magnitudes to the last bit here (test plate A03 vs B11: MATLAB did not reweight
the top window in one and did in the other), and 4 wells need a window reweighted whose scale
is exactly 0 here, so no deterministic rule on our numbers can recover them: the remaining gap
is MATLAB's round-off, not a different algorithm, and closing it would need MATLAB's own
floating-point arithmetic. Measured:
20 of 26 samples per bead set on the l1ktools test plate, 81 % of wells on the cmapM level2to4
plate; the others differ in the upper part of the curve (up to ~1.1 on one calibration point).
(The two test-plate bead sets carry the same calibrator rows and differ only in BASE, so this is
one set of 26 curves in the part of the curve that matters.)

Single precision does not explain it (checked; algorithms.md §13.9 says GCT matrices are read
as single). ``liss.m`` builds the curve in a double vector, so only a single reference curve or
single data can make ``masmooth`` compute in single; every such combination was emulated with
MATLAB's mixed-class rules (single ``\\`` by pivoted single QR ``sgeqp3``/``sormqr``/``strtrs``,
single ``prctile``/``median``/``log2``): 2-6 of 26 curves, 78-85 of 376 level2to4 wells to
1e-4, against 20 and 266 here (kernel values); with ``eps('single')`` in the test 17-19 and 242-260; hybrids
(double solves rounded to single) 8-19 and 107-261. The reason is structural: in single, the
round-off residuals are ~1e-7, far above ``max|y| * eps``, so MATLAB would reweight every such
window, yet CMap's curves need *no* reweighting of the top window in the third pass for 8 wells
(A03, A07, A08, B02, B03, B04, B07, B19) and reweighting for 5 (A04, B05, B11, B13, B15); the
round-off scales of those windows interleave (0.5-1.9e-15 vs 0.8-1.8e-15 with reference-LAPACK QR,
0.4-1.8e-15 vs 0.4-2.7e-15 with Intel MKL 2026's ``dgeqp3``/``dormqr``/``dtrtrs`` in any
``MKL_CBWR`` mode), so no threshold separates them. Also tried without gain: ``log2`` as
``log(x)/log(2)`` and variants, the power fit and its evaluation in single, MKL's own QR for
``\\`` (15/26, 231/376).
"""

from __future__ import annotations

import numpy as np

__all__ = ["lowess_windows", "robust_lowess"]

_EPS = np.finfo(np.float64).eps


def lowess_windows(x: np.ndarray, span: int) -> list[np.ndarray]:
    """Window indices (into sorted ``x``) of MATLAB's lowess for every point.

    Shape contract: ``x`` is 1-D, strictly increasing; returns ``len(x)`` integer arrays, each the
    contiguous range ``lbound..rbound`` of points used for that position.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    span = min(int(span), n)
    windows = []
    for i in range(n):
        left, right = max(0, i - span + 1), min(n - 1, i + span - 1)
        dist = np.abs(x[left : right + 1] - x[i])
        kth = np.sort(dist)[span - 1]
        kept = np.flatnonzero(dist <= kth) + left
        windows.append(np.arange(kept.min(), kept.max() + 1))
    return windows


def _local_intercept(w: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
    """Intercept of the weighted line fit, vectorised over samples.

    ``w``: square-root weights, ``(S, m)``; ``x1``: centred x, ``(m,)``; ``y1``: ``(S, m)``.
    """
    W = w * w
    sw = W.sum(axis=1)
    sx = W @ x1
    sy = (W * y1).sum(axis=1)
    sxx = W @ (x1 * x1)
    sxy = (W * y1) @ x1
    det = sw * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (sxx * sy - sx * sxy) / det
    positive = w > 0
    n_pos = positive.sum(axis=1)
    # full rank needs two weighted points at different x; x is strictly increasing, so two suffice
    degenerate = (n_pos < 2) | ~np.isfinite(out) | ~(det > 1e-12 * sw * sxx)
    if degenerate.any():
        for s in np.flatnonzero(degenerate):
            pts = np.flatnonzero(positive[s])
            if pts.size == 0:
                out[s] = 0.0
            elif pts.size == 1:
                j = pts[0]
                out[s] = 0.0 if abs(x1[j]) > 1.0 else y1[s, j]
            else:  # numerically rank-1: weighted mean of the points
                out[s] = sy[s] / sw[s]
    return out


def robust_lowess(x: np.ndarray, y: np.ndarray, *, span: int, iterations: int = 5) -> np.ndarray:
    """MATLAB ``malowess(x, y, 'span', span, 'robust', true)`` for many curves sharing ``x``.

    Parameters
    ----------
    x:
        Shared abscissa, 1-D of length ``n``, finite and without duplicates (any order).
    y:
        ``(n,)`` or ``(S, n)``: one curve per row.
    span:
        Number of neighbouring points in each local fit (an integer >= 1).
    iterations:
        Robust re-weighting passes (MATLAB uses 5; 0 gives the non-robust LOWESS).

    Returns
    -------
    np.ndarray
        Smoothed values, float64, same shape as ``y`` and in the original order of ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    y_in = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise ValueError("x must be a finite 1-D array")
    one = y_in.ndim == 1
    y2 = np.atleast_2d(y_in)
    if y2.shape[1] != x.size:
        raise ValueError(f"y has {y2.shape[1]} points per curve but x has {x.size}")
    if int(span) < 1:
        raise ValueError("span must be >= 1")
    order = np.argsort(x, kind="stable")
    xs = x[order]
    if np.any(np.diff(xs) == 0):
        raise ValueError("x must not contain duplicate values")
    ys = y2[:, order]
    n_curves, n = ys.shape
    if min(int(span), n) == 1 or n == 0:
        return y_in.copy()

    windows = lowess_windows(xs, span)
    geometry = []
    for i, idx in enumerate(windows):
        x1 = xs[idx] - xs[i]
        d = np.abs(x1)
        dmax = d.max() if d.max() > 0 else 1.0
        tricube_sqrt = (1.0 - (d / dmax) ** 3) ** 1.5
        geometry.append((idx, x1, tricube_sqrt))

    c = np.empty_like(ys)
    for i, (idx, x1, wt) in enumerate(geometry):
        c[:, i] = _local_intercept(np.broadcast_to(wt, (n_curves, idx.size)), x1, ys[:, idx])

    tiny = np.abs(ys).max(axis=1, initial=0.0) * _EPS  # MATLAB: max(abs(y)) * eps
    for _ in range(int(iterations)):
        r = ys - c
        r[np.abs(r) <= 64.0 * tiny[:, None]] = 0.0
        new = np.empty_like(c)
        for i, (idx, x1, wt) in enumerate(geometry):
            r1 = np.abs(r[:, idx])
            scale = np.median(r1, axis=1)
            use = scale > tiny
            with np.errstate(divide="ignore", invalid="ignore"):
                u = r1 / (6.0 * scale[:, None])
            robust = np.where(u <= 1.0, 1.0 - u * u, 0.0)  # square root of the bisquare weight
            robust[~use] = 1.0
            new[:, i] = _local_intercept(wt[None, :] * robust, x1, ys[:, idx])
        c = new

    out = np.empty_like(c)
    out[:, order] = c
    return out[0] if one else out
