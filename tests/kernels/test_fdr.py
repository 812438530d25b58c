"""FDR kernels: spec example 9.9 (sig_queryl1k q-values) and Benjamini-Hochberg."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ValidationError
from opencmap.kernels.fdr import bh, fdr_gsea, fdr_gsea_reference

NCS_99 = np.array([2.5, 1.8, 1.2, 0.9, 0.6, 0.3, 1.0, 0.5, 0.2, 0.8, -0.4, -1.1, -2.2, -0.7, -0.3, -0.9, -0.5])
NULL_99 = np.array([0] * 6 + [1] * 4 + [0] * 3 + [1] * 4, dtype=bool)
Q_99 = [0, 0.2692, 0.4116, 0.5776, 0.8048, 0.9167, 0.4116, 0.8437, 1.0, 0.6923, 0.9375, 0, 0, 0.4903, 1.0, 0, 0.8158]


def test_example_9_9():
    q = fdr_gsea(NCS_99, NULL_99)
    np.testing.assert_allclose(q, Q_99, atol=1e-4)
    assert np.all(q >= 0) and np.all(q <= 1)
    # as a column of a matrix, next to a copy
    np.testing.assert_array_equal(fdr_gsea(np.column_stack([NCS_99, NCS_99]), NULL_99)[:, 1], q)


def test_sides_need_three_treatment_and_three_null_scores():
    x = np.array([1.0, 2.0, 0.5, 0.7, -1.0, 0.0, np.nan])
    null = np.array([False, False, True, True, True, False, False])
    np.testing.assert_array_equal(fdr_gsea(x, null), np.ones(7))


def test_q_is_monotone_in_extremeness():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(400) * 1.5
    null = rng.random(400) < 0.3
    x[~null] += np.sign(x[~null]) * 0.5
    q = fdr_gsea(x, null)
    for side in (x > 0, x < 0):
        order = np.argsort(np.abs(x[side]), kind="stable")
        assert np.all(np.diff(q[side][order]) <= 1e-12)
    assert q[np.argmax(x)] == pytest.approx(0.0, abs=1e-12)


def test_shape_errors():
    with pytest.raises(ValidationError):
        fdr_gsea(NCS_99, NULL_99[:-1])


def test_bh_hand_example():
    p = np.array([0.01, 0.04, 0.03, 0.2, np.nan])
    np.testing.assert_allclose(bh(p), [0.04, 0.04 * 4 / 2 / 1.5, 0.04 * 4 / 3, 0.2, np.nan], rtol=1e-12)
    np.testing.assert_allclose(bh(np.array([[0.5, 0.01], [0.9, 0.02]]), axis=1), [[0.5, 0.02], [0.9, 0.04]])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_bh_matches_definition(pvalues):
    p = np.array(pvalues)
    m = p.size
    ranks = np.argsort(np.argsort(p, kind="stable"), kind="stable") + 1
    expected = np.array([min(1.0, min(p[j] * m / ranks[j] for j in range(m) if ranks[j] >= ranks[i])) for i in range(m)])
    np.testing.assert_allclose(bh(p), expected, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------- compiled kernel
def _random_scores(rng, n_sig, n_q, dtype, ties, zeros, nans):
    x = rng.standard_normal((n_sig, n_q)) * rng.uniform(0.2, 3.0)
    if ties:
        x = np.round(x, 1)
    x[rng.random(x.shape) < zeros] = 0.0
    x[rng.random(x.shape) < nans] = np.nan
    return x.astype(dtype)


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 250),
    st.integers(1, 4),
    st.sampled_from([np.float32, np.float64]),
    st.booleans(),
    st.sampled_from([0.0, 0.1]),
    st.sampled_from([0.0, 0.1]),
    st.floats(0.02, 0.7),
)
def test_compiled_matches_scipy_reference(seed, n_sig, n_q, dtype, ties, zeros, nans, null_frac):
    """The one-sort kernel equals the plain scipy-PCHIP implementation (ties, zeros, NaN, few nulls)."""
    rng = np.random.default_rng(seed)
    x = _random_scores(rng, n_sig, n_q, dtype, ties, zeros, nans)
    null = rng.random(n_sig) < null_frac
    got = fdr_gsea(x, null)
    ref = fdr_gsea_reference(x, null)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    # columns are independent: a batch equals its columns one by one
    for j in range(n_q):
        np.testing.assert_array_equal(fdr_gsea(x[:, j], null), got[:, j])


def test_compiled_matches_reference_large_and_not_float32():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((20_000, 3)) / 3.0  # float64 values that are not float32 numbers
    x[:, 1] = np.round(x[:, 1], 2)
    null = rng.random(20_000) < 0.05
    np.testing.assert_allclose(fdr_gsea(x, null), fdr_gsea_reference(x, null), rtol=0, atol=1e-12)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(fdr_gsea(x32, null), fdr_gsea_reference(x32, null), rtol=0, atol=1e-12)


def test_first_least_q_in_original_order():
    # several scores share the least q (beyond the null range); the null adjustment pivots on
    # the first of them in the input order, as MATLAB min / np.argmin
    x = np.array([3.0, 0.5, 2.0, 0.4, 0.3, 0.2, 0.1, 2.5, 0.45, 0.35, 0.25, 1.5])
    null = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    for perm in (np.arange(12), np.arange(12)[::-1], np.random.default_rng(2).permutation(12)):
        np.testing.assert_allclose(fdr_gsea(x[perm], null[perm]), fdr_gsea_reference(x[perm], null[perm]), rtol=0, atol=1e-12)
