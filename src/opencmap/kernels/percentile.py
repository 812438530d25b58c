"""MATLAB-compatible percentiles and the max-quantile statistic.

CMap computes percentiles with MATLAB ``prctile``: the sorted sample is placed at percentiles
``100 (i - 0.5) / n`` and values in between are interpolated linearly, clamping outside. This is
numpy's ``method="hazen"`` (R ``quantile(type=5)``), *not* numpy's default.
"""

from __future__ import annotations

import numpy as np

__all__ = ["prctile", "maxq"]


def prctile(x: np.ndarray, p: float | np.ndarray, axis: int | None = None) -> np.ndarray:
    """MATLAB ``prctile`` of ``x`` at percentile(s) ``p`` (0-100), ignoring NaN.

    Shape contract: like ``np.nanpercentile(x, p, axis=axis)``. All-NaN slices give NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size and not np.isnan(x).any():  # fast path: nanpercentile loops over slices
        return np.percentile(x, p, axis=axis, method="hazen")
    if x.size and axis is not None:  # with NaN: vectorised, identical to nanpercentile
        return _nan_hazen(x, p, axis)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(x, p, axis=axis, method="hazen")


def _nan_hazen(x: np.ndarray, p: float | np.ndarray, axis: int) -> np.ndarray:
    """``np.nanpercentile(x, p, axis, method="hazen")`` without its per-slice Python loop.

    Sorts once (NaN last), then interpolates with numpy's own index and ``_lerp`` arithmetic,
    so results are bit-identical.
    """
    s = np.moveaxis(np.sort(x, axis=axis), axis, -1)
    n = np.count_nonzero(~np.isnan(s), axis=-1)
    top = np.maximum(n - 1, 0)
    out = []
    for q in np.atleast_1d(np.asarray(p, dtype=np.float64)) / 100.0:
        vi = n * q + (0.5 + q * (1 - 0.5 - 0.5)) - 1  # hazen virtual index (numpy's formula)
        prev = np.floor(vi)
        gamma = np.where((vi < 0) | (vi >= n - 1), 0.0, vi - prev)
        a = np.take_along_axis(s, np.clip(prev, 0, top).astype(np.intp)[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(s, np.clip(prev + 1, 0, top).astype(np.intp)[..., None], axis=-1)[..., 0]
        diff = b - a
        val = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
        out.append(np.where(n == 0, np.nan, val))
    res = np.stack(out)
    return res if np.ndim(p) else res[0]


def maxq(x: np.ndarray, lo: float = 33.0, hi: float = 67.0, axis: int | None = None) -> np.ndarray | float:
    """Maximum-quantile summary: ``prctile_hi(x)`` if ``|prctile_lo| < |prctile_hi|`` else ``prctile_lo``.

    Ties keep the low quantile (CMap-compat); a single value passes through; NaNs are ignored.
    """
    q = prctile(x, [lo, hi], axis=axis)
    qlo, qhi = q[0], q[1]
    return np.where(np.abs(qlo) < np.abs(qhi), qhi, qlo)[()]
