"""Fused rank + transpose kernel of the store build against ``descending_ranks`` (NaN -> 0)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opencmap.kernels.ranks import descending_ranks
from opencmap.kernels.store_ranks import gene_major_block

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 2.0, np.nan, np.inf, -np.inf, 1e-40, -1e-40], dtype=np.float32)


def reference_arrays(data: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain gene-major ranks (uint16, NaN -> 0) and scores of ``rows`` of a genes x sigs matrix."""
    scores = np.asarray(data[rows], dtype=np.float32)
    ranks = descending_ranks(scores, axis=0, dtype=np.uint16)
    ranks[np.isnan(scores)] = 0
    return ranks, scores


@settings(max_examples=80, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.tuples(st.integers(1, 70), st.integers(1, 90)), elements=st.sampled_from(SPECIAL)),
    seed=st.integers(0, 2**31),
    by_sig=st.booleans(),
    strided=st.booleans(),
)
def test_kernel_equals_descending_ranks(x, seed, by_sig, strided):
    rng = np.random.default_rng(seed)
    if strided:  # signatures as a transposed view (an in-memory GCT's columns)
        x = np.asfortranarray(x)
    g = int(rng.integers(1, x.shape[1] + 1))
    cols = rng.permutation(x.shape[1])[:g]
    k = x.shape[0]
    extra = int(rng.integers(0, 3))  # outputs wider than the block: only columns < k are written
    r = np.full((g, k + extra), 999, dtype=np.uint16)
    s = np.full((g, k + extra), -7, dtype=np.float32)
    b = np.full((k + extra, g), -7, dtype=np.float32) if by_sig else None
    gene_major_block(x, cols, r, s, b)
    exp_r, exp_s = reference_arrays(x.T, cols)
    np.testing.assert_array_equal(r[:, :k], exp_r)
    np.testing.assert_array_equal(s[:, :k], exp_s)
    assert (r[:, k:] == 999).all() and (s[:, k:] == -7).all()
    if by_sig:
        np.testing.assert_array_equal(b[:k], exp_s.T)


def test_kernel_wide_random_rows_and_large_ties():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((130, 3000)).astype(np.float32)  # > one tile of signatures
    x[:, ::7] = 0.5  # many ties, broken by gene order
    x[5, 100:200] = np.nan
    cols = np.arange(2999, -1, -2)  # a reversed subset: ties follow the space's order, not the file's
    r = np.empty((len(cols), 130), np.uint16)
    s = np.empty((len(cols), 130), np.float32)
    gene_major_block(x, cols, r, s)
    exp_r, exp_s = reference_arrays(x.T, cols)
    np.testing.assert_array_equal(r, exp_r)
    np.testing.assert_array_equal(s, exp_s)


def test_kernel_rejects_bad_shapes():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="float32"):
        gene_major_block(x.astype(np.float64), np.arange(5), np.empty((5, 4), np.uint16), np.empty((5, 4), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        gene_major_block(x, np.array([0, 5]), np.empty((2, 4), np.uint16), np.empty((2, 4), np.float32))
    with pytest.raises(ValueError, match="outputs"):
        gene_major_block(x, np.arange(5), np.empty((5, 3), np.uint16), np.empty((5, 3), np.float32))
