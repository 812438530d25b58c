"""1-D k-means on sorted data vs plain reference implementations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ValidationError
from opencmap.kernels.kmeans1d import kmeans1d, kmeans1d_best, kmeans1d_sorted, prefix_sums


def plusplus_reference(x: np.ndarray, k: int, u: np.ndarray) -> np.ndarray:
    """k-means++ seeding written plainly (same use of the uniforms as the kernel)."""
    n = x.size
    centres = [x[min(int(u[0] * n), n - 1)]]
    for j in range(1, k):
        d2 = np.min((x[:, None] - np.array(centres)[None, :]) ** 2, axis=1)
        total = d2.sum()
        if total <= 0:
            centres.append(x[min(int(u[j] * n), n - 1)])
        else:
            cum = np.cumsum(d2)
            centres.append(x[min(int(np.searchsorted(cum, u[j] * total, side="right")), n - 1)])
    return np.sort(np.array(centres))


def lloyd_reference(x: np.ndarray, centres: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, float]:
    """Plain O(n k) Lloyd iterations with empty clusters dropped; returns (centroids, inertia)."""
    c = centres.copy()
    labels = None
    for _ in range(max_iter + 1):
        d = (x[:, None] - c[None, :]) ** 2
        new = np.argmin(d, axis=1)
        keep = np.unique(new)
        if labels is not None and keep.size == c.size and np.array_equal(new, labels):
            break
        remap = {old: i for i, old in enumerate(keep)}
        labels = np.array([remap[v] for v in new])
        c = np.array([x[labels == j].mean() for j in range(keep.size)])
    inertia = float(sum(((x[labels == j] - c[j]) ** 2).sum() for j in range(c.size)))
    return c, inertia


def optimal_inertia(x: np.ndarray, k: int) -> float:
    """Global optimum by trying every contiguous split of the sorted data (small n only)."""
    best = np.inf
    n = x.size
    for cuts in itertools.combinations(range(1, n), k - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(((p - p.mean()) ** 2).sum() for p in parts))
    return best


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(4, 15, allow_nan=False), min_size=3, max_size=40),
    k=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_lloyd_phase_matches_plain_lloyd(values: list[float], k: int, seed: int) -> None:
    x = np.sort(np.round(np.array(values), 3))  # rounding creates ties, like integer intensities
    u = np.random.default_rng(seed).random(k)
    s, s2 = prefix_sums(x)
    bounds, centroids, inertia = kmeans1d_sorted(x, s, s2, k, u, 100, False)
    ref_c, ref_inertia = lloyd_reference(x, plusplus_reference(x, k, u))
    assert bounds[0] == 0 and bounds[-1] == x.size and np.all(np.diff(bounds) > 0)
    # same seeds, same Lloyd steps: same result, unless a point sits (within rounding) exactly
    # between two centroids, where summation order may break the tie differently
    mids = (ref_c[1:] + ref_c[:-1]) / 2
    near_tie = mids.size > 0 and np.min(np.abs(x[:, None] - mids[None, :])) < 1e-9
    if not near_tie:
        assert centroids.size == ref_c.size
        np.testing.assert_allclose(inertia, ref_inertia, rtol=1e-9, atol=1e-9)
    # always a Lloyd fixed point: every point is (within rounding) nearest to its own centroid
    labels = np.repeat(np.arange(centroids.size), np.diff(bounds))
    d = (x[:, None] - centroids[None, :]) ** 2
    assert np.all(d[np.arange(x.size), labels] <= d.min(axis=1) + 1e-9)
    assert np.all(np.diff(centroids) >= 0)
    seg = np.split(x, bounds[1:-1])
    np.testing.assert_allclose(centroids, [p.mean() for p in seg], rtol=1e-12)
    np.testing.assert_allclose(inertia, sum(((p - p.mean()) ** 2).sum() for p in seg), rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(4, 15, allow_nan=False), min_size=4, max_size=14),
    k=st.integers(2, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_online_phase_never_worse_and_near_optimal(values: list[float], k: int, seed: int) -> None:
    x = np.sort(np.array(values))
    u = np.random.default_rng(seed).random((5, k))
    s, s2 = prefix_sums(x)
    _, _, batch = kmeans1d_best(x, s, s2, k, u, 100, False)
    _, _, online = kmeans1d_best(x, s, s2, k, u, 100, True)
    best = optimal_inertia(x, k)
    assert online <= batch + 1e-9
    assert online >= best - 1e-9


def test_well_separated_clusters_are_found() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(7, 0.2, 50), rng.normal(10, 0.2, 25), rng.normal(12.5, 0.1, 10)])
    labels, centroids, inertia = kmeans1d(x, 3, rng)
    np.testing.assert_allclose(centroids, [7, 10, 12.5], atol=0.15)
    assert np.bincount(labels).tolist() == [50, 25, 10]
    assert np.array_equal(labels[:50], np.zeros(50))  # input order is kept
    assert inertia == pytest.approx(sum(((x[labels == j] - centroids[j]) ** 2).sum() for j in range(3)))


def test_reproducible_and_empty_clusters_dropped() -> None:
    x = np.array([5.0, 5.0, 5.0, 9.0])
    a = kmeans1d(x, 4, np.random.default_rng(1))
    b = kmeans1d(x, 4, np.random.default_rng(1))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[1].tolist() == [5.0, 9.0]  # only two distinct values: two clusters survive
    assert a[2] == 0.0


def test_bad_input() -> None:
    with pytest.raises(ValidationError):
        kmeans1d(np.array([]), 2, np.random.default_rng(0))
    with pytest.raises(ValidationError):
        kmeans1d(np.array([1.0]), 0, np.random.default_rng(0))
