"""Original Connectivity Map score (Lamb et al. 2006; spec §6.2, example 9.4).

For a tag set at sorted 1-based positions ``V(1) < ... < V(t)`` in a list of length ``n``::

    a = max_j [ j/t - V(j)/n ],   b = max_j [ V(j)/n - (j-1)/t ],   ks = a if a > b else -b

Instance score ``s = 0`` if ``sign(ks_up) == sign(ks_dn)`` else ``ks_up - ks_dn``; connectivity
score across the instances of one query ``S = s / max(s)`` for ``s > 0``, ``-s / min(s)`` for
``s < 0``, else 0 (range [-1, 1]).
"""

from __future__ import annotations

import numba
import numpy as np

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns

__all__ = ["ks_score", "instance_scores", "connectivity_scores"]


@numba.njit(cache=True)
def _ks_kernel(positions, n, out):
    t_max, n_sig = positions.shape
    buf = np.empty(t_max, dtype=np.int64)
    for s in range(n_sig):
        t = 0
        for i in range(t_max):
            p = positions[i, s]
            if p > 0:
                buf[t] = p
                t += 1
        if t == 0:
            out[s] = np.nan
            continue
        v = np.sort(buf[:t])
        a = -np.inf
        b = -np.inf
        for j in range(t):
            a = max(a, (j + 1) / t - v[j] / n)
            b = max(b, v[j] / n - j / t)
        out[s] = a if a > b else -b


def ks_score(positions: np.ndarray, n: int) -> np.ndarray:
    """Lamb 2006 KS statistic of a tag set in one or many ranked lists.

    Parameters
    ----------
    positions:
        Int (t,) or (t, S): 1-based positions of the tags in each list (any order); 0 marks a
        tag absent from that list (dropped, ``t`` counted per list).
    n:
        Length of each ranked list.

    Returns
    -------
    float64 scalar (1-D input) or (S,); NaN where no tag is present.
    """
    pos, one_d = as_columns(positions, None, name="positions")
    if not np.issubdtype(pos.dtype, np.integer):
        raise ValidationError(f"positions must be integers, got dtype {pos.dtype}")
    if pos.size and (pos.max() > n or pos.min() < 0):
        raise ValidationError(f"positions must lie in 1..{n} (0 = absent)")
    out = np.empty(pos.shape[1], dtype=np.float64)
    _ks_kernel(pos.astype(np.int64), float(n), out)
    return out[0] if one_d else out


def instance_scores(ks_up: np.ndarray, ks_dn: np.ndarray) -> np.ndarray:
    """``ks_up - ks_dn``, or 0 where both have the same sign (NaN propagates)."""
    up = np.asarray(ks_up, dtype=np.float64)
    dn = np.asarray(ks_dn, dtype=np.float64)
    return np.where(np.sign(up) == np.sign(dn), 0.0, up - dn)[()]


def connectivity_scores(scores: np.ndarray, axis: int = 0) -> np.ndarray:
    """Scale instance scores to [-1, 1] along ``axis``: positives by the maximum, negatives by |minimum|.

    NaN scores are ignored for the extremes and stay NaN.
    """
    s = np.asarray(scores, dtype=np.float64)
    p = np.max(s, axis=axis, where=s > 0, initial=-np.inf, keepdims=True)
    q = np.min(s, axis=axis, where=s < 0, initial=np.inf, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(s > 0, s / p, np.where(s < 0, -s / q, np.where(np.isnan(s), np.nan, 0.0)))
    return out[()]
