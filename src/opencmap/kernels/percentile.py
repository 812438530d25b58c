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
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(x, p, axis=axis, method="hazen")


def maxq(x: np.ndarray, lo: float = 33.0, hi: float = 67.0, axis: int | None = None) -> np.ndarray | float:
    """Maximum-quantile summary: ``prctile_hi(x)`` if ``|prctile_lo| < |prctile_hi|`` else ``prctile_lo``.

    Ties keep the low quantile (CMap-compat); a single value passes through; NaNs are ignored.
    """
    q = prctile(x, [lo, hi], axis=axis)
    qlo, qhi = q[0], q[1]
    return np.where(np.abs(qlo) < np.abs(qhi), qhi, qlo)[()]
