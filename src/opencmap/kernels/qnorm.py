"""Quantile normalisation of the columns of a matrix (algorithms.md §2.2).

* :func:`quantile_normalize` -- MATLAB ``quantilenorm(x, 'median', true)`` as used by CMap: the
  target distribution is the per-rank **median** of the sorted columns, and tied values in a
  column all receive the target interpolated at their *average* rank (verified against CMap
  output, §13). NaN values stay NaN; a column with ``M < N`` finite values is stretched over the
  ``N`` target positions by linear interpolation (as MATLAB does).
* :func:`quantile_target` -- that target vector, to store and reuse.
* :func:`quantile_sketch_normalize` -- CMap's "quantile sketch" mode: assign a stored target
  (interpolated to the number of rows if its length differs) by sort order, no tie averaging.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["quantile_target", "quantile_normalize", "quantile_sketch_normalize", "resample_target"]


def _stretched_sorted(x: np.ndarray) -> np.ndarray:
    """Sorted columns, each stretched to ``N`` points over its finite values. ``(N, S)`` float64."""
    n, s = x.shape
    out = np.full((n, s), np.nan)
    srt = np.sort(x, axis=0)  # NaN last
    finite = np.isfinite(x).sum(axis=0)
    full = finite == n
    out[:, full] = srt[:, full]
    grid = np.arange(1, n + 1, dtype=np.float64)
    for j in np.flatnonzero(~full):
        m = int(finite[j])
        if m == 0:
            continue
        if m == 1:
            out[:, j] = srt[0, j]
            continue
        pos = 1.0 + (n - 1) * np.arange(m) / (m - 1)
        out[:, j] = np.interp(grid, pos, srt[:m, j])
    return out


def quantile_target(x: np.ndarray) -> np.ndarray:
    """Median (NaN-ignoring) of the sorted columns: the QNORM target, ``(N, S) -> (N,)`` float64."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (rows x columns) array, got shape {a.shape}")
    stretched = _stretched_sorted(a)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(stretched, axis=1)


def resample_target(target: np.ndarray, n: int) -> np.ndarray:
    """Interpolate a sorted target vector onto ``n`` evenly spaced positions (CMap sketch rule)."""
    t = np.asarray(target, dtype=np.float64).ravel()
    if t.size == n:
        return t.copy()
    if t.size == 1:
        return np.full(n, t[0])
    if n == 1:
        return t[[0]]
    return np.interp(np.arange(n) / (n - 1), np.arange(t.size) / (t.size - 1), t)


def quantile_normalize(x: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """Quantile-normalise the columns of ``x`` with CMap's tie rule.

    Parameters
    ----------
    x:
        ``(N, S)`` matrix; NaN marks missing values.
    target:
        Optional sorted target of length ``N`` (default: :func:`quantile_target` of ``x``).

    Returns
    -------
    np.ndarray
        ``(N, S)`` float64. Each finite value gets the target interpolated at position
        ``1 + (N - 1)(r - 1)/(M - 1)``, ``r`` its average (tied) rank among the column's ``M``
        finite values.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (rows x columns) array, got shape {a.shape}")
    n, s = a.shape
    t = quantile_target(a) if target is None else resample_target(target, n)
    out = np.full_like(a, np.nan)
    if n == 0:
        return out
    grid = np.arange(1, n + 1, dtype=np.float64)
    finite = np.isfinite(a)
    if finite.all():
        ranks = rankdata(a, method="average", axis=0)
        pos = ranks if n == 1 else 1.0 + (n - 1) * (ranks - 1.0) / (n - 1)
        return np.interp(pos.ravel(), grid, t).reshape(n, s)
    for j in range(s):
        ok = finite[:, j]
        m = int(ok.sum())
        if m == 0:
            continue
        r = rankdata(a[ok, j], method="average")
        pos = np.ones(m) if m == 1 else 1.0 + (n - 1) * (r - 1.0) / (m - 1)
        out[ok, j] = np.interp(pos, grid, t)
    return out


def quantile_sketch_normalize(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Assign a stored sorted ``target`` to each column by sort order (CMap ``use_sketch``).

    ``x``: ``(N, S)`` finite values; ``target`` is resampled to ``N`` values if needed
    (:func:`resample_target`). Ties are broken by row order (stable sort), as in CMap.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (rows x columns) array, got shape {a.shape}")
    n, s = a.shape
    t = resample_target(np.sort(np.asarray(target, dtype=np.float64).ravel()), n)
    order = np.argsort(a, axis=0, kind="stable")
    out = np.empty_like(a)
    np.put_along_axis(out, order, np.broadcast_to(t[:, None], (n, s)), axis=0)
    return out
