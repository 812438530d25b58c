"""LISS -- L1000 Invariant Set Scaling of single samples (algorithms.md §2.1).

Per sample (a column of log2 expression ``x``):

1. calibration curve ``o`` (13 points): ``max(prctile_1(x), 1)``, the 10 invariant-level values,
   two zero placeholders; robust LOWESS against the reference (span 4, the zeros take part:
   CMap-compat); then ``o[-1] = max(prctile_99(x), o[-1])`` (white point, not fitted);
2. QC failure if ``o`` has NaN/inf or more than one zero: the sample is zeroed and flagged;
3. fit ``ref = a * o~^b + c`` on the first 11 points, ``o~ = max(o, 1)``, by non-linear least
   squares (grid start + Levenberg-Marquardt to convergence, vectorised over samples); a
   straight-line fit gives the QC slope (degrees) and its F-test. Where our calibration curve
   equals CMap's (cmapM level2to4 plate), 99 % of the scaled values agree to 1e-4 (max 6.5e-4):
   MATLAB's ``fit(..., 'power2')`` stops at TolFun/TolX 1e-6 from its own start point, which a
   trust-region fit with those tolerances from our start points does not reproduce any better.
   Fed CMap's *published* curves (4 decimals), agreement drops to 95-96 % within 1e-4, because
   the curves' rounding alone moves values by up to ~3e-4;
4. ``y = a * max(x, 1)^b + c``, clipped to ``[lo, hi]`` preserving rank order
   (:func:`rank_preserving_clip`).

All functions are pure numpy/scipy on float64 arrays shaped ``(genes, samples)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from opencmap.kernels.lowess import robust_lowess
from opencmap.kernels.percentile import prctile

__all__ = [
    "LissResult",
    "calibration_curves",
    "linear_fit_qc",
    "fit_power_curve",
    "rank_preserving_clip",
    "liss",
]

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class LissResult:
    """Output of :func:`liss` for ``S`` samples and ``G`` genes.

    Attributes
    ----------
    values:
        ``(G, S)`` float64 scaled log2 expression (failed samples are all 0).
    calibration:
        ``(S, L + 3)`` smoothed calibration curves (BASE, levels, two placeholders).
    passed:
        ``(S,)`` bool, False where the calibration curve failed QC.
    qc:
        Per-sample QC arrays (each ``(S,)`` float64): ``calib_slope``, ``calib_slope_deg``,
        ``calib_span``, ``calib_linfit_rsquare``, ``calib_linfit_logpval``, ``coef_a``, ``coef_b``,
        ``coef_c``, ``rsquare``, ``adjrsquare``, ``rmse``, ``f``, ``f_logpval``,
        ``truncated_genes``, ``median``, ``iqr`` (linear scale), ``iqr_raw``, ``q1``, ``q25``, ``q75``,
        ``q99`` (linear scale). NaN where not defined (failed samples).
    """

    values: np.ndarray
    calibration: np.ndarray
    passed: np.ndarray
    qc: dict[str, np.ndarray]


def calibration_curves(
    log_expr: np.ndarray,
    level_values: np.ndarray,
    reference: np.ndarray,
    *,
    span: int = 4,
    iterations: int = 5,
    black_pct: float = 1.0,
    white_pct: float = 99.0,
) -> np.ndarray:
    """Smoothed calibration curves, ``(S, L + 3)`` float64.

    ``log_expr``: ``(G, S)`` log2 expression of all genes (percentiles are taken over them);
    ``level_values``: ``(L, S)`` invariant-level values (log2, already floored at 0);
    ``reference``: ``(L + 3,)`` reference curve (BASE, L levels, two white-point slots).
    """
    x = np.asarray(log_expr, dtype=np.float64)
    lev = np.asarray(level_values, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    n_levels, n_samples = lev.shape
    if ref.shape != (n_levels + 3,):
        raise ValueError(f"reference must have {n_levels + 3} values (BASE, {n_levels} levels, 2 slots), got {ref.shape}")
    if x.shape[1] != n_samples:
        raise ValueError("log_expr and level_values must have the same number of samples")
    obs = np.zeros((n_samples, n_levels + 3))
    obs[:, 0] = np.maximum(prctile(x, black_pct, axis=0), 1.0)
    obs[:, 1 : n_levels + 1] = lev.T
    good = np.isfinite(obs).all(axis=1)
    smoothed = np.full_like(obs, np.nan)
    if good.any():
        smoothed[good] = robust_lowess(ref, obs[good], span=span, iterations=iterations)
    smoothed[~good] = obs[~good]
    smoothed[:, -1] = np.fmax(prctile(x, white_pct, axis=0), smoothed[:, -1])
    return smoothed


def linear_fit_qc(cobs: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
    """Straight-line fit ``ref = alpha + beta * cobs`` per sample (MATLAB ``regress``).

    ``cobs``: ``(S, K)``; ``ref``: ``(K,)``. Returns ``calib_slope``, ``calib_slope_deg``,
    ``calib_intercept``, ``calib_linfit_rsquare`` and ``calib_linfit_logpval`` (``-log10`` of the
    F-test p-value, 1 and ``K - 2`` degrees of freedom), each ``(S,)``.
    """
    c = np.asarray(cobs, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    k = r.size
    cm = c.mean(axis=1, keepdims=True)
    dc = c - cm
    sxx = (dc * dc).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (dc @ (r - r.mean())) / sxx
        intercept = r.mean() - slope * cm[:, 0]
        fitted = intercept[:, None] + slope[:, None] * c
        sse = ((r - fitted) ** 2).sum(axis=1)
        sst = ((r - r.mean()) ** 2).sum()
        rsq = 1.0 - sse / sst
        f = (sst - sse) / (sse / (k - 2))
        logp = -np.log10(stats.f.sf(f, 1, k - 2))
    return {
        "calib_slope": slope,
        "calib_slope_deg": np.degrees(np.arctan(slope)),
        "calib_intercept": intercept,
        "calib_linfit_rsquare": rsq,
        "calib_linfit_logpval": logp,
    }


_B_GRID = np.linspace(-3.0, 6.0, 91)


def _power_start(lx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Starting points ``(S, 3)`` by variable projection over a grid of exponents.

    For a fixed exponent ``b`` the best ``a`` and ``c`` are a straight-line fit of ``y`` on
    ``x^b``; the grid exponent with the smallest residual wins.
    """
    e = np.exp(_B_GRID[:, None, None] * lx[None, :, :])  # (G, S, K)
    ec = e - e.mean(axis=2, keepdims=True)
    yc = y - y.mean()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = (ec @ yc) / np.einsum("gsk,gsk->gs", ec, ec)
        sse = ((a[:, :, None] * ec - yc) ** 2).sum(axis=2)
    sse[~np.isfinite(sse)] = np.inf
    k = np.argmin(sse, axis=0)
    cols = np.arange(lx.shape[0])
    a0 = np.where(np.isfinite(a[k, cols]), a[k, cols], 1.0)
    c0 = y.mean() - a0 * e[k, cols].mean(axis=1)
    return np.column_stack([a0, _B_GRID[k], c0])


def _power_sse(q: np.ndarray, lx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residual sum of squares of ``a exp(b lx) + c`` for parameter rows ``q`` (inf if not finite)."""
    with np.errstate(over="ignore", invalid="ignore"):
        r = q[:, [0]] * np.exp(q[:, [1]] * lx) + q[:, [2]] - y
        out = (r * r).sum(axis=1)
    out[~np.isfinite(out)] = np.inf
    return out


def _power_lm(lx: np.ndarray, y: np.ndarray, p0: np.ndarray, *, max_iter: int = 500, tol: float = 1e-13) -> np.ndarray:
    """Levenberg-Marquardt refinement of ``y ~ a exp(b lx) + c``, vectorised over the rows of ``lx``."""
    p = p0.copy()
    sse = _power_sse(p, lx, y)
    lam = np.full(p.shape[0], 1e-3)
    active = np.isfinite(sse)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        q, lxi = p[idx], lx[idx]
        e = np.exp(q[:, [1]] * lxi)
        r = q[:, [0]] * e + q[:, [2]] - y
        jac = np.stack([e, q[:, [0]] * lxi * e, np.ones_like(e)], axis=2)  # (s, K, 3)
        jtj = np.einsum("ski,skj->sij", jac, jac)
        grad = np.einsum("ski,sk->si", jac, r)
        damped = jtj + lam[idx, None, None] * np.eye(3) * (np.diagonal(jtj, axis1=1, axis2=2)[:, :, None] + 1e-300)
        with np.errstate(all="ignore"):
            step = np.linalg.pinv(damped) @ -grad[:, :, None]
        step = step[:, :, 0]
        cand = q + step
        new_sse = _power_sse(cand, lxi, y)
        old = sse[idx]
        better = new_sse < old
        p[idx[better]] = cand[better]
        sse[idx[better]] = new_sse[better]
        lam[idx] = np.where(better, np.maximum(lam[idx] / 10.0, 1e-12), lam[idx] * 10.0)
        rel_step = np.abs(step).max(axis=1) / (np.abs(q).max(axis=1) + 1e-12)
        done = (better & (old - new_sse <= tol * old)) | (rel_step < 1e-14) | (lam[idx] > 1e12) | ~np.isfinite(rel_step)
        active[idx[done]] = False
    return p


def fit_power_curve(cobs: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fit ``ref = a * cobs^b + c`` per sample (MATLAB ``fit(..., 'power2')``).

    ``cobs``: ``(S, K)`` positive calibration values; ``ref``: ``(K,)``. Returns the coefficients
    ``(S, 3)`` (a, b, c) and goodness-of-fit arrays ``rsquare``, ``adjrsquare``, ``rmse``, ``f`` and
    ``f_logpval`` (``-log10(p + eps)`` of the model F-test, 2 and ``K - 3`` degrees of freedom,
    as CMap's ``gof_stats``). Samples with non-positive or non-finite values get NaN.
    """
    c = np.asarray(cobs, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    n_samples, k = c.shape
    coef = np.full((n_samples, 3), np.nan)
    ok = np.isfinite(c).all(axis=1) & (c > 0).all(axis=1)
    for start in range(0, n_samples, 4096):  # bounds the grid's memory
        rows = np.flatnonzero(ok[start : start + 4096]) + start
        if rows.size:
            lx = np.log(c[rows])
            coef[rows] = _power_lm(lx, r, _power_start(lx, r))
    fitted = coef[:, [0]] * c ** coef[:, [1]] + coef[:, [2]]
    sst = ((r - r.mean()) ** 2).sum()
    sse = ((r - fitted) ** 2).sum(axis=1)
    dfe, dfr = k - 3, 2
    with np.errstate(divide="ignore", invalid="ignore"):
        mse = sse / dfe
        f = ((sst - sse) / dfr) / mse
        gof = {
            "rsquare": 1.0 - sse / sst,
            "adjrsquare": 1.0 - mse / (sst / (k - 1)),
            "rmse": np.sqrt(mse),
            "f": f,
            "f_logpval": -np.log10(stats.f.sf(f, dfr, dfe) + _EPS),
        }
    return coef, gof


def _tied_ranks0(v: np.ndarray) -> np.ndarray:
    """0-based ascending ranks with ties averaged (MATLAB ``tiedrank - 1``)."""
    return stats.rankdata(v, method="average") - 1.0


def rank_preserving_clip(y: np.ndarray, lo: float = 0.0, hi: float = 15.0, *, step: float = 1e-4) -> np.ndarray:
    """Clip each column to ``[lo, hi]`` keeping the order of the clipped values.

    Values ``>= hi`` become ``hi + step * k`` with ``k`` their 0-based ascending rank among those
    values (ties share their average rank); values ``<= lo`` become ``lo - step * k`` with ``k``
    the 0-based *descending* rank. ``y``: ``(G,)`` or ``(G, S)``; returns float64 of that shape.
    """
    out = np.array(y, dtype=np.float64, copy=True)
    cols = out[:, None] if out.ndim == 1 else out
    for s in range(cols.shape[1]):
        v = cols[:, s]
        top = v >= hi
        bot = v <= lo
        if top.any():
            v[top] = hi + step * _tied_ranks0(v[top])
        if bot.any():
            v[bot] = lo - step * _tied_ranks0(-v[bot])
    return out


def liss(
    log_expr: np.ndarray,
    level_values: np.ndarray,
    reference: np.ndarray,
    *,
    span: int = 4,
    iterations: int = 5,
    black_pct: float = 1.0,
    white_pct: float = 99.0,
    minval: float = 0.0,
    maxval: float = 15.0,
    clip_step: float = 1e-4,
    percentile_rows: np.ndarray | None = None,
    calibration: np.ndarray | None = None,
) -> LissResult:
    """Scale ``(G, S)`` log2 expression by each sample's invariant-set calibration curve.

    ``level_values`` is ``(L, S)`` (median log2 value of each invariant level, floored at 0) and
    ``reference`` the ``(L + 3,)`` reference curve. See the module docstring for the steps.
    ``percentile_rows`` (bool ``(G,)``) restricts the rows whose 1st/99th percentiles give the BASE
    and white points (default: all rows). ``calibration`` (``(S, L + 3)``) bypasses the smoothing
    and uses the given curves instead (e.g. CMap's own, to check the fit alone).
    """
    x = np.asarray(log_expr, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    n_genes, n_samples = x.shape
    if calibration is not None:
        cal = np.array(calibration, dtype=np.float64, copy=True)
        if cal.shape != (n_samples, ref.size):
            raise ValueError(f"calibration must be (samples, {ref.size}), got {cal.shape}")
    else:
        x_pct = x if percentile_rows is None else x[np.asarray(percentile_rows, dtype=bool)]
        cal = calibration_curves(
            x_pct, level_values, ref, span=span, iterations=iterations, black_pct=black_pct, white_pct=white_pct
        )
    n_fit = ref.size - 2
    finite = np.isfinite(cal).all(axis=1)
    passed = finite & ((cal != 0).sum(axis=1) >= cal.shape[1] - 1)

    cobs = np.maximum(cal[:, :n_fit], 1.0)
    ref_fit = ref[:n_fit]
    qc: dict[str, np.ndarray] = {}
    lin = linear_fit_qc(cobs, ref_fit)
    qc.update({k: v for k, v in lin.items() if k != "calib_intercept"})
    # failed samples: CMap reports the end-to-end slope of the unfitted curve
    with np.errstate(divide="ignore", invalid="ignore"):
        qc["calib_slope"] = np.where(passed, lin["calib_slope"], cobs[:, -1] / cobs[:, 0])
    qc["calib_slope_deg"] = np.degrees(np.arctan(qc["calib_slope"]))
    qc["calib_span"] = cobs[:, -1] - cobs[:, 0]
    for k in ("calib_linfit_rsquare", "calib_linfit_logpval"):
        qc[k] = np.where(passed, qc[k], np.nan)

    coef = np.full((n_samples, 3), np.nan)
    gof = {k: np.full(n_samples, np.nan) for k in ("rsquare", "adjrsquare", "rmse", "f", "f_logpval")}
    if passed.any():
        coef_p, gof_p = fit_power_curve(cobs[passed], ref_fit)
        coef[passed] = coef_p
        for k in gof:
            gof[k][passed] = gof_p[k]
    qc["coef_a"], qc["coef_b"], qc["coef_c"] = coef[:, 0], coef[:, 1], coef[:, 2]
    qc.update(gof)
    qc["rsquare"] = np.where(passed, qc["rsquare"], 0.0)

    values = np.zeros((n_genes, n_samples))
    xs = np.maximum(x, 1.0)
    for name in ("truncated_genes", "median", "iqr", "iqr_raw", "q1", "q25", "q75", "q99"):
        qc[name] = np.full(n_samples, np.nan)
    if passed.any():
        p = np.flatnonzero(passed)
        y = coef[p, 0] * xs[:, p] ** coef[p, 1] + coef[p, 2]
        qc["truncated_genes"][p] = ((y >= maxval) | (y <= minval)).sum(axis=0)
        y = rank_preserving_clip(y, minval, maxval, step=clip_step)
        values[:, p] = y
        qc["median"][p] = np.median(y, axis=0)
        q = prctile(y, [1.0, 25.0, 75.0, 99.0], axis=0)
        qc["iqr"][p] = np.exp2(q[2] - q[1])
        qr = prctile(xs[:, p], [25.0, 75.0], axis=0)
        qc["iqr_raw"][p] = qr[1] - qr[0]
        qc["q1"][p], qc["q25"][p], qc["q75"][p], qc["q99"][p] = np.exp2(q)
    return LissResult(values=values, calibration=cal, passed=passed, qc=qc)
