"""Correlation kernels against scipy/numpy and on degenerate input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr

from opencmap.kernels.correlation import pearson_matrix, spearman_matrix, spearman_standardized


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=(50, 5)), 1)  # many ties
    np.testing.assert_allclose(spearman_matrix(x), spearmanr(x).statistic, atol=1e-12)


def test_spec_9_5_spearman() -> None:
    z = np.array([[2.0, 1.8, 0.9], [1.0, 1.2, -0.2], [0.5, 0.2, 1.5], [-0.5, -0.4, 0.3], [-1, -1.5, -1.1], [-2, -1.9, -0.4]])
    c = spearman_matrix(z)
    np.testing.assert_allclose(c[0, 1], 1.0)
    np.testing.assert_allclose([c[0, 2], c[1, 2]], 1 - 6 * 12 / (6 * 35))


def test_pearson_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4))
    np.testing.assert_allclose(pearson_matrix(x), np.corrcoef(x.T), atol=1e-12)


def test_constant_column_gives_nan_and_complete_rows() -> None:
    x = np.array([[1.0, 3.0, 0.1], [2.0, 3.0, 0.1], [3.0, 3.0, 0.1], [4.0, 3.0, 0.1]], dtype=np.float32)
    c = spearman_matrix(x)
    assert np.isnan(c[1]).all() and np.isnan(c[:, 2]).all()
    assert np.isnan(pearson_matrix(x)[0, 2])
    y = np.array([[1.0, 2.0], [np.nan, 5.0], [2.0, 1.0], [3.0, 3.0]])
    np.testing.assert_allclose(spearman_matrix(y)[0, 1], spearmanr(y[[0, 2, 3]]).statistic)


def test_standardized_ranks_give_the_matrix() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 6))
    s = spearman_standardized(x)
    np.testing.assert_allclose(s[:, [1, 4]].T @ s[:, [1, 4]], spearman_matrix(x[:, [1, 4]]), atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(3, 12), st.integers(2, 5)), elements=st.integers(-5, 5).map(float)))
def test_symmetric_bounded_permutation_equivariant(x: np.ndarray) -> None:
    c = spearman_matrix(x)
    np.testing.assert_allclose(c, c.T, equal_nan=True)
    finite = c[np.isfinite(c)]
    assert ((finite >= -1) & (finite <= 1)).all()
    perm = np.arange(x.shape[1])[::-1]
    np.testing.assert_allclose(spearman_matrix(x[:, perm]), c[np.ix_(perm, perm)], equal_nan=True, atol=1e-12)
    ok = ~np.isnan(np.diag(c))
    np.testing.assert_allclose(np.diag(c)[ok], 1.0)

