"""One-dimensional k-means (Lloyd's algorithm, k-means++ seeding) on sorted data.

In one dimension every k-means cluster is a contiguous run of the sorted values: with sorted
centroids, cluster ``j`` is exactly the points between the midpoints to its neighbours. So an
assignment step is ``k - 1`` binary searches and an update step is ``k`` differences of prefix
sums: ``O(k log n)`` per iteration instead of ``O(n k)``.

Behaviour follows MATLAB ``kmeans(x, k, 'emptyaction', 'drop', 'replicates', r)`` as used by
CMap's dpeak: k-means++ seeding, batch (Lloyd) updates until no assignment changes (at most
``max_iter``), then the online phase (single-point moves), clusters that become empty are
dropped, and the replicate with the smallest total within-cluster sum of squares wins (the first
one on ties).

Randomness comes in as an explicit array of uniforms in ``[0, 1)`` (``k`` per replicate: one
for the first centre, one for each k-means++ draw), so results are reproducible and independent
of threading. All functions are numba-compiled and pure.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from opencmap.errors import ValidationError

__all__ = ["prefix_sums", "kmeans1d_sorted", "kmeans1d_best", "kmeans1d"]


@njit(cache=True, nogil=True)
def prefix_sums(x_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix sums ``S[i] = sum(x[:i])`` and ``S2[i] = sum(x[:i]**2)``, each shape ``(n + 1,)``."""
    n = x_sorted.shape[0]
    s = np.zeros(n + 1)
    s2 = np.zeros(n + 1)
    for i in range(n):
        s[i + 1] = s[i] + x_sorted[i]
        s2[i + 1] = s2[i] + x_sorted[i] * x_sorted[i]
    return s, s2


@njit(cache=True, nogil=True)
def _upper_bound(x: np.ndarray, lo: int, hi: int, value: float) -> int:
    """First index in ``x[lo:hi]`` whose value is > ``value`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if x[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _seed_plusplus(x: np.ndarray, k: int, u: np.ndarray, centres: np.ndarray) -> None:
    """k-means++ seeding: first centre uniform, then each with probability ~ squared distance."""
    n = x.shape[0]
    first = min(int(u[0] * n), n - 1)
    centres[0] = x[first]
    d2 = np.empty(n)
    for i in range(n):
        d = x[i] - centres[0]
        d2[i] = d * d
    for j in range(1, k):
        total = 0.0
        for i in range(n):
            total += d2[i]
        if total <= 0.0:
            pick = min(int(u[j] * n), n - 1)
        else:
            target = u[j] * total
            acc = 0.0
            pick = n - 1
            for i in range(n):
                acc += d2[i]
                if acc > target:
                    pick = i
                    break
        centres[j] = x[pick]
        for i in range(n):
            d = x[i] - centres[j]
            d = d * d
            if d < d2[i]:
                d2[i] = d


@njit(cache=True, nogil=True)
def _online_phase(x: np.ndarray, s: np.ndarray, bounds: np.ndarray, m: int, max_moves: int) -> None:
    """Move single boundary points between neighbouring clusters while that lowers the total SS.

    Moving point ``v`` from cluster A (size ``na``, mean ``ca``) to B changes the SS by
    ``nb/(nb+1) (v-cb)^2 - na/(na-1) (v-ca)^2``; for neighbours the boundary point gains most.
    """
    moves = 0
    improved = True
    while improved and moves < max_moves:
        improved = False
        for j in range(m - 1):
            a = bounds[j]
            b = bounds[j + 1]
            c = bounds[j + 2]
            na = b - a
            nb = c - b
            ca = (s[b] - s[a]) / na
            cb = (s[c] - s[b]) / nb
            if na > 1:
                v = x[b - 1]
                gain = na / (na - 1.0) * (v - ca) ** 2 - nb / (nb + 1.0) * (v - cb) ** 2
                if gain > 1e-12:
                    bounds[j + 1] = b - 1
                    improved = True
                    moves += 1
                    continue
            if nb > 1:
                v = x[b]
                gain = nb / (nb - 1.0) * (v - cb) ** 2 - na / (na + 1.0) * (v - ca) ** 2
                if gain > 1e-12:
                    bounds[j + 1] = b + 1
                    improved = True
                    moves += 1


@njit(cache=True, nogil=True)
def kmeans1d_sorted(
    x_sorted: np.ndarray,
    s: np.ndarray,
    s2: np.ndarray,
    k: int,
    u: np.ndarray,
    max_iter: int = 100,
    online: bool = True,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One k-means run (k-means++ seed, Lloyd iterations) on sorted 1-D data.

    Parameters
    ----------
    x_sorted:
        ``(n,)`` float64, ascending, ``n >= 1``.
    s, s2:
        Prefix sums of ``x_sorted`` and of its squares, from :func:`prefix_sums`.
    k:
        Number of clusters asked for (``1 <= k``).
    u:
        ``(k,)`` uniforms in ``[0, 1)`` for the seeding.
    max_iter:
        Maximum Lloyd iterations.
    online:
        Follow the batch phase with MATLAB's online phase (single-point moves that lower the
        total sum of squares; in 1-D only boundary points can gain). This finds better local
        optima: it raised agreement with CMap's own peak calls from 90 % to 96 % of values.

    Returns
    -------
    bounds:
        ``(m + 1,)`` int64 cluster boundaries: cluster ``j`` is ``x_sorted[bounds[j]:bounds[j+1]]``;
        ``m <= k`` non-empty clusters in ascending centroid order (empty clusters are dropped).
    centroids:
        ``(m,)`` float64 cluster means.
    inertia:
        Total within-cluster sum of squared distances.
    """
    n = x_sorted.shape[0]
    c = np.empty(k)
    _seed_plusplus(x_sorted, k, u, c)
    c.sort()
    m = k
    bounds = np.zeros(k + 1, dtype=np.int64)
    new_bounds = np.zeros(k + 1, dtype=np.int64)
    for it in range(max_iter + 1):
        # assignment: cluster j takes points up to the midpoint to centre j+1 (ties go lower)
        new_bounds[0] = 0
        for j in range(m - 1):
            mid = 0.5 * (c[j] + c[j + 1])
            new_bounds[j + 1] = _upper_bound(x_sorted, new_bounds[j], n, mid)
        new_bounds[m] = n
        # drop empty clusters
        kept = 0
        for j in range(m):
            if new_bounds[j + 1] > new_bounds[j]:
                new_bounds[kept] = new_bounds[j]
                kept += 1
        new_bounds[kept] = n
        changed = kept != m or it == 0
        if not changed:
            for j in range(m + 1):
                if new_bounds[j] != bounds[j]:
                    changed = True
                    break
        m = kept
        for j in range(m + 1):
            bounds[j] = new_bounds[j]
        # update step
        for j in range(m):
            a = bounds[j]
            b = bounds[j + 1]
            c[j] = (s[b] - s[a]) / (b - a)
        if not changed or it == max_iter:
            break
    if online:
        _online_phase(x_sorted, s, bounds, m, 100 * n)
        for j in range(m):
            a = bounds[j]
            b = bounds[j + 1]
            c[j] = (s[b] - s[a]) / (b - a)
    inertia = 0.0
    for j in range(m):
        a = bounds[j]
        b = bounds[j + 1]
        ss = (s2[b] - s2[a]) - (s[b] - s[a]) * (s[b] - s[a]) / (b - a)
        if ss > 0.0:
            inertia += ss
    return bounds[: m + 1].copy(), c[:m].copy(), inertia


@njit(cache=True, nogil=True)
def kmeans1d_best(
    x_sorted: np.ndarray,
    s: np.ndarray,
    s2: np.ndarray,
    k: int,
    u: np.ndarray,
    max_iter: int = 100,
    online: bool = True,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Best of ``r`` k-means runs (``u`` has shape ``(r, >= k)``); same outputs as
    :func:`kmeans1d_sorted`. The run with the smallest inertia wins (first one on ties)."""
    best_bounds, best_c, best_inertia = kmeans1d_sorted(x_sorted, s, s2, k, u[0], max_iter, online)
    for r in range(1, u.shape[0]):
        bounds, c, inertia = kmeans1d_sorted(x_sorted, s, s2, k, u[r], max_iter, online)
        if inertia < best_inertia:
            best_bounds, best_c, best_inertia = bounds, c, inertia
    return best_bounds, best_c, best_inertia


def kmeans1d(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    n_init: int = 5,
    max_iter: int = 100,
    online: bool = True,
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means of 1-D data (any order): labels, centroids, inertia.

    Parameters
    ----------
    x:
        ``(n,)`` values, ``n >= 1``.
    k:
        Number of clusters (empty ones are dropped, so fewer may come back).
    rng:
        Source of the seeding randomness.
    n_init:
        Number of replicates (best inertia wins).

    Returns
    -------
    labels:
        ``(n,)`` int64 cluster index per point, clusters numbered by ascending centroid.
    centroids:
        ``(m,)`` float64, ascending, ``m <= k``.
    inertia:
        Total within-cluster sum of squares.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValidationError(f"x must be a non-empty 1-D array, got shape {x.shape}")
    if k < 1:
        raise ValidationError(f"k must be >= 1, got {k}")
    order = np.argsort(x, kind="stable")
    xs = x[order]
    s, s2 = prefix_sums(xs)
    bounds, centroids, inertia = kmeans1d_best(xs, s, s2, k, rng.random((n_init, k)), max_iter, online)
    labels = np.empty(x.size, dtype=np.int64)
    labels[order] = np.repeat(np.arange(centroids.size), np.diff(bounds))
    return labels, centroids, inertia
