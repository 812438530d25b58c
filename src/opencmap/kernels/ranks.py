"""Rank transforms used across the pipeline and the query engine.

* :func:`descending_ranks` -- CMap query ranks: 1 = largest, ties broken by row order (stable).
* :func:`average_ranks` -- ascending ranks with ties averaged (Spearman; ``scipy.stats.rankdata``).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["descending_ranks", "average_ranks"]


def descending_ranks(scores: np.ndarray, axis: int = 0, dtype: type = np.int32) -> np.ndarray:
    """1-based descending ranks along ``axis``; ties ranked in original order; NaN ranked last.

    Shape contract: output has the shape of ``scores``; dtype ``dtype``.
    """
    a = np.asarray(scores)
    # stable argsort of the negated values keeps row order among ties; NaN sorts to the end
    order = np.argsort(-a, axis=axis, kind="stable")
    ranks = np.empty(a.shape, dtype=dtype)
    idx = np.arange(1, a.shape[axis] + 1, dtype=dtype)
    shape = [1] * a.ndim
    shape[axis] = a.shape[axis]
    np.put_along_axis(ranks, order, np.broadcast_to(idx.reshape(shape), a.shape), axis=axis)
    return ranks


def average_ranks(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Ascending ranks with ties averaged (float64), along ``axis``; NaN stays NaN."""
    return rankdata(np.asarray(x, dtype=np.float64), axis=axis, nan_policy="omit")
