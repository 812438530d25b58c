"""Rank transforms used across the pipeline and the query engine.

* :func:`descending_ranks` -- CMap query ranks: 1 = largest, ties broken by row order (stable).
* :func:`average_ranks` -- ascending ranks with ties averaged (Spearman; equals
  ``scipy.stats.rankdata(..., nan_policy="omit")``; numpy's vectorised argsort + a compiled tie pass).
* :func:`mutual_pair_ranks` -- the better of the two mutual neighbour ranks of replicate pairs.
* :func:`descending_ranks_rows` -- :func:`descending_ranks` per row of a float32 matrix, fast.

Multi-threaded kernels are launched from the main thread only (:mod:`opencmap.kernels.threads`);
other threads run their 1-thread twins.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.stats import rankdata

from opencmap.kernels.radix import radix_argsort_f32

__all__ = ["descending_ranks", "average_ranks", "descending_ranks_rows", "mutual_pair_ranks"]


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


@numba.njit(cache=True, nogil=True, inline="always")
def _average_ranks_row(row, o, res):  # pragma: no cover - compiled
    """Average ranks of one row given its argsort ``o`` (NaN last, left out: NaN out)."""
    m = row.shape[0]
    n = 0
    for i in range(m):
        if row[i] == row[i]:
            n += 1
        else:
            res[i] = np.nan
    i = 0
    while i < n:
        j = i + 1
        v = row[o[i]]
        while j < n and row[o[j]] == v:
            j += 1
        rank = 0.5 * (i + 1 + j)  # mean of the 1-based ranks i+1 .. j; equal values are adjacent in o
        for t in range(i, j):
            res[o[t]] = rank
        i = j


@numba.njit(parallel=True, cache=True, nogil=True)
def _average_ranks_sorted(x, order, out):  # pragma: no cover - compiled
    """:func:`_average_ranks_row` of each row of ``x`` (k, m; float32 or float64), ``order = argsort(x, axis=1)``."""
    for r in numba.prange(x.shape[0]):
        _average_ranks_row(x[r], order[r], out[r])


@numba.njit(cache=True, nogil=True)
def _average_ranks_sorted_1t(x, order, out):  # pragma: no cover - compiled
    """:func:`_average_ranks_sorted` in the calling thread only."""
    for r in range(x.shape[0]):
        _average_ranks_row(x[r], order[r], out[r])


def average_ranks(x: np.ndarray, axis: int = 0, *, threads: int = 1) -> np.ndarray:
    """Ascending ranks with ties averaged (float64), along ``axis``; NaN stays NaN.

    Same values as ``scipy.stats.rankdata(x, axis=axis, nan_policy="omit")`` (NaN are left out of
    the ranking and stay NaN; ``-0.0`` ties with ``0.0``). Shape contract: output has the shape of
    ``x``, dtype float64. ``threads > 1`` ranks the slices on numba's threads (same values).
    """
    a = np.asarray(x)
    if a.dtype != np.float32:  # float32 is ranked as is: converting it to float64 is exact
        a = a.astype(np.float64, copy=False)
    if a.ndim == 0 or a.size == 0 or a.ndim > 2:
        return rankdata(a, axis=axis, nan_policy="omit")
    if a.ndim == 1:
        if axis not in (0, -1):
            raise np.exceptions.AxisError(axis, 1)
        return _average_ranks_2d(a.reshape(1, -1), 1)[0]
    if axis not in (0, 1, -1, -2):
        raise np.exceptions.AxisError(axis, 2)
    if axis in (0, -2):
        return _average_ranks_2d(np.ascontiguousarray(a.T), threads).T  # each slice contiguous
    return _average_ranks_2d(np.ascontiguousarray(a), threads)


def _average_ranks_2d(rows: np.ndarray, threads: int) -> np.ndarray:
    """Average ranks (float64) along axis 1 of a C-ordered float32/float64 array (numpy's vectorised argsort)."""
    out = np.empty(rows.shape, dtype=np.float64)
    (_average_ranks_sorted if threads > 1 else _average_ranks_sorted_1t)(rows, np.argsort(rows, axis=1), out)
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _radix_descending_ranks(x, out):  # pragma: no cover - compiled
    k, n = x.shape
    for r in numba.prange(k):
        buf = np.empty(n, dtype=np.float32)
        for i in range(n):
            buf[i] = np.float32(-x[r, i]) + np.float32(0.0)  # -0.0 -> +0.0 (ties with 0.0)
        idx = np.empty(n, dtype=np.int64)
        radix_argsort_f32(  # NaN last
            buf, idx, np.empty(n, dtype=np.uint32), np.empty(n, dtype=np.uint32), np.empty(n, dtype=np.int64),
            np.empty((3, 2048), dtype=np.int64),
        )
        for p in range(n):
            out[r, idx[p]] = p + 1


def descending_ranks_rows(scores: np.ndarray, dtype: type = np.uint16) -> np.ndarray:
    """:func:`descending_ranks` along ``axis=1`` of a 2-D float32 array, by a parallel radix sort.

    Identical output (1 = largest, ties in original order, NaN last, -0.0 ties with 0.0), several
    times faster on wide rows (used to build reference stores). Shape contract: (k, n) float32
    -> (k, n) ``dtype`` (an integer type holding ``n``).
    """
    x = np.ascontiguousarray(scores, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {x.shape}")
    out = np.empty(x.shape, dtype=dtype)
    if x.size:
        _radix_descending_ranks(x, out)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _pair_ranks_group(s, members, a0, a1, out, o):  # pragma: no cover - compiled
    k = s.shape[0]
    for i in range(a0, a1):
        for j in range(i + 1, a1):
            best = k + 1
            for side in range(2):  # rank of b in a's order, then of a in b's
                a = members[i] if side == 0 else members[j]
                b = members[j] if side == 0 else members[i]
                t = s[a, b]
                rank = 1
                for c in range(k):
                    v = s[a, c]
                    if v > t or (v == t and c < b):
                        rank += 1
                if rank < best:
                    best = rank
            out[o] = best
            o += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def _pair_ranks(s, members, starts, out_starts, out):  # pragma: no cover - compiled
    for g in numba.prange(len(starts) - 1):
        _pair_ranks_group(s, members, starts[g], starts[g + 1], out, out_starts[g])


@numba.njit(cache=True, nogil=True)
def _pair_ranks_1t(s, members, starts, out_starts, out):  # pragma: no cover - compiled
    for g in range(len(starts) - 1):
        _pair_ranks_group(s, members, starts[g], starts[g + 1], out, out_starts[g])


def mutual_pair_ranks(similarity: np.ndarray, groups: list[np.ndarray], *, threads: int = 1) -> list[np.ndarray]:
    """For each group, the better of the two mutual ranks of each pair of its members.

    ``similarity`` is ``(k, k)`` float64 with NaN on the diagonal (self never ranks) and no other
    NaN. The rank of ``b`` among ``a``'s neighbours is ``1 + #{c: s[a, c] > s[a, b]} +
    #{c < b: s[a, c] == s[a, b]}`` (descending, ties in instance order). Returns one array per
    group: ``min(rank_a(b), rank_b(a))`` for its pairs ``i < j`` in ``np.triu_indices`` order
    (float64; empty for groups of fewer than two). ``threads > 1``: groups on numba's threads.
    """
    s = np.ascontiguousarray(similarity, dtype=np.float64)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    starts = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    pairs = sizes * (sizes - 1) // 2
    out_starts = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum(pairs, out=out_starts[1:])
    members = np.concatenate([np.asarray(g, dtype=np.int64) for g in groups]) if len(groups) else np.zeros(0, np.int64)
    out = np.empty(int(out_starts[-1]), dtype=np.float64)
    if len(groups):
        (_pair_ranks if threads > 1 else _pair_ranks_1t)(s, members, starts, out_starts, out)
    return [out[out_starts[g] : out_starts[g + 1]] for g in range(len(groups))]
