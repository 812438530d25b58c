"""Rank kernels: average ranks equal scipy's rankdata (hypothesis), descending ranks unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import rankdata

from opencmap.kernels.ranks import average_ranks, descending_ranks, descending_ranks_rows, mutual_pair_ranks

# few distinct values so ties are common; NaN and -0.0 included
_values = st.sampled_from([0.0, -0.0, 1.0, -1.5, 2.25, 3.0, np.nan, 1e300, -np.inf, np.inf])


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 12), st.integers(0, 6)), elements=_values), st.sampled_from([0, 1, -1]))
def test_average_ranks_equal_scipy_2d(x: np.ndarray, axis: int) -> None:
    expected = rankdata(x, axis=axis, nan_policy="omit")
    got = average_ranks(x, axis=axis)
    assert got.shape == x.shape and got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(0, 30), elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_average_ranks_equal_scipy_1d(x: np.ndarray) -> None:
    np.testing.assert_array_equal(average_ranks(x), rankdata(x, nan_policy="omit"))


def test_average_ranks_examples() -> None:
    np.testing.assert_array_equal(average_ranks(np.array([1.0, np.nan, 2.0, 2.0, -0.0, 0.0])), [3, np.nan, 4.5, 4.5, 1.5, 1.5])
    x = np.random.default_rng(0).normal(size=(978, 40)).astype(np.float32)  # float32 input is ranked as float64
    np.testing.assert_array_equal(average_ranks(x), rankdata(x.astype(np.float64), axis=0))
    np.testing.assert_array_equal(average_ranks(np.zeros((3, 2, 2))), rankdata(np.zeros((3, 2, 2)), axis=0))


def test_average_ranks_bad_axis() -> None:
    with pytest.raises(np.exceptions.AxisError):
        average_ranks(np.zeros((3, 2)), axis=2)


def test_descending_ranks_unchanged() -> None:
    v = np.array([0.5, -1.0, 2.0, 0.5, np.nan, 3.0])
    np.testing.assert_array_equal(descending_ranks(v), [3, 5, 2, 4, 6, 1])
    x = np.random.default_rng(1).normal(size=(4, 50)).astype(np.float32)
    x[:, ::7] = 0.0
    np.testing.assert_array_equal(descending_ranks_rows(x, dtype=np.int32), descending_ranks(x, axis=1))


def _pair_ranks_reference(s: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Brute force: rank of b in a's stable descending order of similarities (self left out)."""
    k = s.shape[0]
    out = []
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            best = k + 1
            for a, b in ((cols[i], cols[j]), (cols[j], cols[i])):
                others = [c for c in range(k) if c != a]
                order = sorted(others, key=lambda c: -s[a, c])  # stable: ties keep instance order
                best = min(best, order.index(b) + 1)
            out.append(best)
    return np.array(out, dtype=np.float64)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(0, 2**32 - 1))
def test_mutual_pair_ranks_by_brute_force(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = np.round(rng.normal(size=(k, k)), 1)  # ties
    s[rng.random((k, k)) < 0.1] = -np.inf
    np.fill_diagonal(s, np.nan)
    perm = rng.permutation(k)
    groups = [perm[: max(2, k // 3)], perm[max(2, k // 3) : max(2, k // 3) + 1], perm[max(2, k // 3) + 1 :]]
    got = mutual_pair_ranks(s, groups)
    for g, ranks in zip(groups, got, strict=True):
        np.testing.assert_array_equal(ranks, _pair_ranks_reference(s, g))


def test_other_threads_use_one_thread_twins_with_equal_results() -> None:
    """Kernels called off the main thread run their 1-thread variants: same values."""
    import threading

    from opencmap.backends import LocalBackend
    from opencmap.kernels.zscore import robust_zscore

    rng = np.random.default_rng(2)
    x = np.round(rng.normal(size=(60, 25)), 1)
    x[4, 3] = np.nan
    z = np.asfortranarray(rng.normal(size=(50, 24)).astype(np.float32))
    s = np.round(rng.normal(size=(9, 9)), 1)
    np.fill_diagonal(s, np.nan)
    groups = [np.array([0, 3, 5]), np.array([1, 2])]
    got: dict = {}

    def work() -> None:
        threads = LocalBackend().numba_threads()  # 1 off the main thread: the one-thread kernels
        got["threads"] = threads
        got["ranks"] = average_ranks(x, threads=threads)
        got["z_f"] = robust_zscore(z, threads=threads)
        got["z_c"] = robust_zscore(np.ascontiguousarray(z), threads=threads)
        got["pairs"] = mutual_pair_ranks(s, groups, threads=threads)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    np.testing.assert_array_equal(got["ranks"], average_ranks(x))
    np.testing.assert_array_equal(got["z_f"], robust_zscore(z))
    np.testing.assert_array_equal(got["z_c"], robust_zscore(z))
    for a, b in zip(got["pairs"], mutual_pair_ranks(s, groups), strict=True):
        np.testing.assert_array_equal(a, b)
    # the multi-threaded (prange) variants give the same values
    assert got["threads"] == 1
    np.testing.assert_array_equal(got["ranks"], average_ranks(x, threads=2))
    np.testing.assert_array_equal(got["z_f"], robust_zscore(z, threads=2))
    np.testing.assert_array_equal(got["z_c"], robust_zscore(np.ascontiguousarray(z), threads=2))
    for a, b in zip(got["pairs"], mutual_pair_ranks(s, groups, threads=2), strict=True):
        np.testing.assert_array_equal(a, b)
