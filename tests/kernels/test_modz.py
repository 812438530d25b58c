"""MODZ kernel: spec §9.5/§9.6 worked examples, cmapPy variant, edge cases, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from opencmap.kernels.modz import clip_correlations, modz, modz_weights

Z95 = np.array(
    [[2.0, 1.8, 0.9], [1.0, 1.2, -0.2], [0.5, 0.2, 1.5], [-0.5, -0.4, 0.3], [-1.0, -1.5, -1.1], [-2.0, -1.9, -0.4]]
)
Z4 = np.array(
    [[3, 2.5, 2.8, -1], [2, 2.2, 1.0, 0.5], [1, 0.4, 1.9, 2], [0, -0.2, 0.1, -2], [-1, -1.3, -0.9, 1], [-2, -2.4, -1.7, 0.3]]
)


def test_spec_9_5_three_replicates() -> None:
    r = modz(Z95)
    np.testing.assert_allclose(r.weights, [0.358025, 0.358025, 0.283951], atol=1e-6)
    np.testing.assert_allclose(r.consensus, [1.616049, 0.730864, 0.676543, -0.237037, -1.207407, -1.509877], atol=1e-6)
    assert np.all(np.diag(r.corr) == 0)


def test_spec_9_6_outlier_floor() -> None:
    z = np.array([[3, 2, -2], [1, 1.5, -1], [0, 0.5, 0], [-1, -0.5, 1], [-2, -3, 2.5]], dtype=float)
    r = modz(z)
    np.testing.assert_allclose(r.weights, [0.495050, 0.495050, 0.009901], atol=1e-6)
    np.testing.assert_allclose(r.consensus, [2.455446, 1.227723, 0.247525, -0.732673, -2.450495], atol=1e-6)
    assert r.corr[0, 2] == 0 and r.corr[1, 2] == 0  # -1 clipped


def test_spec_9_6_two_negative_replicates_plain_mean() -> None:
    r = modz(np.array([[1, -1], [2, -2], [-1, 0.5], [0, 3]], dtype=float))
    np.testing.assert_allclose(r.weights, [0.5, 0.5])
    np.testing.assert_allclose(r.consensus, [0, 0, -0.25, 1.5])


def test_spec_9_6_clipping() -> None:
    r = modz(np.array([[14, 9, 8], [1, 2, 1.5], [0, -0.5, 0.2], [-3, -2, -2.5]], dtype=float))
    np.testing.assert_allclose(r.consensus, [9.0, 1.5, -0.1, -2.5], atol=1e-12)
    assert modz(np.array([[14.0, 9.0, 8.0]]).T, clip=None).consensus[0] == 14.0  # one column, no clip


def test_spec_9_6_n4_matlab_vs_cmappy() -> None:
    r = modz(Z4)
    np.testing.assert_allclose(r.weights, [0.333333, 0.333333, 0.328431, 0.004902], atol=1e-6)
    np.testing.assert_allclose(r.consensus, [2.748039, 1.730882, 1.100490, -0.043627, -1.057353, -2.023529], atol=1e-6)
    c = r.corr
    np.testing.assert_allclose([c[0, 1], c[0, 2], c[1, 2], c[2, 3]], [1, 0.942857, 0.942857, 0.028571], atol=1e-6)
    cm = modz(Z4, weight_method="mean")
    np.testing.assert_allclose(cm.weights, [0.333252, 0.333252, 0.328351, 0.005146], atol=1e-6)
    rounded = modz(Z4, weight_method="mean", round_weights=4)
    np.testing.assert_array_equal(rounded.weights, [0.3333, 0.3333, 0.3284, 0.0051])
    np.testing.assert_allclose(rounded.consensus, Z4 @ rounded.weights)


def test_n3_sum_and_mean_agree() -> None:
    np.testing.assert_allclose(modz(Z95, weight_method="mean").weights, modz(Z95).weights)


def test_single_replicate_passthrough_after_clip() -> None:
    r = modz(np.array([[12.0], [-3.0]]))
    np.testing.assert_array_equal(r.consensus, [10.0, -3.0])
    np.testing.assert_array_equal(r.weights, [1.0])


def test_constant_replicate_counts_as_zero_correlation() -> None:
    z = Z95.copy()
    z[:, 2] = 0.7
    r = modz(z)
    assert r.corr[0, 2] == 0 and r.corr[1, 2] == 0
    np.testing.assert_allclose(r.weights, np.array([0.5, 0.5, 0.01]) / 1.01)
    assert np.isfinite(r.consensus).all()


def test_landmark_rows_only_for_correlations() -> None:
    z = np.vstack([Z95, [[5.0, -5.0, 0.0]] * 4])  # non-landmark rows disagree strongly
    r_lm = modz(z, np.arange(6))
    np.testing.assert_allclose(r_lm.weights, modz(Z95).weights)
    assert r_lm.consensus.shape == (10,)
    assert not np.allclose(modz(z).weights, r_lm.weights)


def test_other_summaries() -> None:
    raw, w = modz_weights(clip_correlations(np.corrcoef(Z95.T)))
    st_ = modz(Z95, method="wt_stouffer")
    raw_s, _ = modz_weights(st_.corr)
    np.testing.assert_allclose(st_.consensus, Z95 @ raw_s / np.sqrt((raw_s**2).sum()))
    np.testing.assert_allclose(modz(Z95, method="avgz").consensus, Z95.mean(axis=1))
    np.testing.assert_allclose(modz(Z95, method="medianz").consensus, np.median(Z95, axis=1))
    np.testing.assert_allclose(modz(Z95, method="stoufz").consensus, Z95.sum(axis=1) / np.sqrt(3))
    with pytest.raises(ValueError):
        modz(Z95, method="nope")
    with pytest.raises(ValueError):
        modz(Z95, weight_method="nope")


def test_missing_values_renormalise() -> None:
    z = Z95.copy()
    z[0, 2] = np.nan
    z[1, :] = np.nan
    r = modz(z)
    full = modz(Z95[[0, 2, 3, 4, 5]])  # correlations on complete rows
    np.testing.assert_allclose(r.weights, full.weights)
    w = r.weights
    np.testing.assert_allclose(r.consensus[0], (z[0, :2] @ w[:2]) / w[:2].sum())
    assert np.isnan(r.consensus[1])


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(3, 15), st.integers(2, 6)), elements=st.floats(-15, 15, allow_nan=False)),
    st.sampled_from(["sum", "mean"]),
)
def test_weights_sum_to_one_and_permutation_equivariance(z: np.ndarray, wm: str) -> None:
    r = modz(z, weight_method=wm)
    assert np.isclose(r.weights.sum(), 1.0)
    assert (r.weights > 0).all()
    assert np.isfinite(r.consensus).all()
    # consensus lies within the clipped replicates' range, gene by gene
    zc = np.clip(z, -10, 10)
    assert (r.consensus <= zc.max(axis=1) + 1e-9).all() and (r.consensus >= zc.min(axis=1) - 1e-9).all()
    perm = np.arange(z.shape[1])[::-1]
    rp = modz(z[:, perm], weight_method=wm)
    np.testing.assert_allclose(rp.weights, r.weights[perm], atol=1e-12)
    np.testing.assert_allclose(rp.consensus, r.consensus, atol=1e-9)
    # gene (row) permutation permutes the consensus
    rows = np.arange(z.shape[0])[::-1]
    np.testing.assert_allclose(modz(z[rows], weight_method=wm).consensus, r.consensus[rows], atol=1e-9)
