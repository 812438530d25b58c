"""NCS kernel: spec example 9.8, the three modes' corner cases, and a plain per-column loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ConfigError, ValidationError
from opencmap.kernels.ncs import ncs

WTCS_98 = np.array([0.4, 0.2, -0.3, 0.0, -0.1, 0.6, -0.5, 0.3])
GROUPS_98 = np.array([0, 0, 0, 0, 1, 1, 1, 1])
REF_98 = np.array([True] * 7 + [False])
NCS_98 = [1.333333, 0.666667, -1.0, 0.0, -0.333333, 1.0, -1.666667, 0.5]


@pytest.mark.parametrize("mode", ["cmap", "gutc", "clean"])
def test_example_9_8(mode):
    np.testing.assert_allclose(ncs(WTCS_98, GROUPS_98, REF_98, mode=mode), NCS_98, atol=1e-6)
    # the same column twice as a matrix
    both = ncs(np.column_stack([WTCS_98, WTCS_98]), GROUPS_98, REF_98, mode=mode)
    np.testing.assert_allclose(both, np.column_stack([NCS_98, NCS_98]), atol=1e-6)


def test_floor():
    out = ncs(np.array([0.001, -0.002, 0.5]), np.zeros(3, dtype=int), np.array([True, True, False]))
    np.testing.assert_allclose(out, [0.1, -0.2, 50.0])


def _quirk_case():
    # group 0: refs lack negative scores in query column 0 but have them in column 1
    scores = np.array(
        [
            [0.4, 0.4],
            [0.2, -0.2],
            [-0.3, -0.6],  # not a reference
            [0.6, 0.3],  # group 1, no references at all
            [-0.2, -0.2],
        ]
    )
    groups = np.array([0, 0, 0, 1, 1])
    is_ref = np.array([True, True, False, False, False])
    return scores, groups, is_ref


def test_cmap_mode_quirks():
    scores, groups, is_ref = _quirk_case()
    out = ncs(scores, groups, is_ref, mode="cmap")
    # positives normalised per column by the group's positive mean
    np.testing.assert_allclose(out[:2, 0], [0.4 / 0.3, 0.2 / 0.3])
    np.testing.assert_allclose(out[0, 1], 0.4 / 0.4)
    # negatives: column 0 has no negative reference -> the sign stays raw in *every* column
    np.testing.assert_allclose(out[2], [-0.3, -0.6])
    np.testing.assert_allclose(out[1, 1], -0.2)
    # group 1 (no references): median over processed groups; negative mean NaN -> raw
    np.testing.assert_allclose(out[3], [0.6 / 0.3, 0.3 / 0.4])
    np.testing.assert_allclose(out[4], [-0.2, -0.2])
    # NaN -> 0
    nan_in = scores.copy()
    nan_in[0, 0] = np.nan
    assert ncs(nan_in, groups, is_ref, mode="cmap")[0, 0] == 0.0


def test_gutc_mode_per_column_nan():
    scores, groups, is_ref = _quirk_case()
    out = ncs(scores, groups, is_ref, mode="gutc")
    assert np.isnan(out[2, 0])  # no negative reference score in column 0
    np.testing.assert_allclose(out[2, 1], -0.6 / 0.2)
    np.testing.assert_allclose(out[1, 1], -1.0)
    # group 1 borrows the median of processed groups, per column
    np.testing.assert_allclose(out[3], [0.6 / 0.3, 0.3 / 0.4])
    assert np.isnan(out[4, 0])
    np.testing.assert_allclose(out[4, 1], -0.2 / 0.2)


def test_gutc_fallback_keys_pick_similar_groups():
    # groups 0 and 1 are processed (refs); group 2 (no refs) shares key 7 with group 1 only
    scores = np.array([[0.2], [0.8], [0.5]])
    groups = np.array([0, 1, 2])
    is_ref = np.array([True, True, False])
    keyed = ncs(scores, groups, is_ref, mode="gutc", fallback_keys=[np.array([3, 7, 7])])
    np.testing.assert_allclose(keyed[2, 0], 0.5 / 0.8)
    plain = ncs(scores, groups, is_ref, mode="gutc")
    np.testing.assert_allclose(plain[2, 0], 0.5 / 0.5)  # median of 0.2 and 0.8


def test_clean_mode_borrows_per_column_and_sign():
    scores, groups, is_ref = _quirk_case()
    out = ncs(scores, groups, is_ref, mode="clean")
    assert np.isnan(out[2, 0])  # no group has a negative reference score in column 0
    np.testing.assert_allclose(out[2, 1], -0.6 / 0.2)
    np.testing.assert_allclose(out[4, 1], -0.2 / 0.2)
    np.testing.assert_allclose(out[3], [0.6 / 0.3, 0.3 / 0.4])


def test_bad_inputs():
    with pytest.raises(ConfigError):
        ncs(WTCS_98, GROUPS_98, REF_98, mode="mean")
    with pytest.raises(ValidationError):
        ncs(WTCS_98, GROUPS_98[:-1], REF_98)
    with pytest.raises(ValidationError):
        ncs(WTCS_98, GROUPS_98 - 1, REF_98)


def plain_ncs(scores, groups, is_ref, floor=0.01):
    """Per column, group and sign: divide by the floored mean of that group's same-sign refs."""
    out = np.full(scores.shape, np.nan)
    for j in range(scores.shape[1]):
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            ref = scores[rows[is_ref[rows]], j]
            for i in rows:
                x = scores[i, j]
                if x == 0:
                    out[i, j] = 0.0
                    continue
                same = ref[ref > 0] if x > 0 else -ref[ref < 0]
                if same.size:
                    out[i, j] = x / max(same.mean(), floor)
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 30), st.integers(1, 4), st.integers(1, 3))
def test_all_modes_agree_with_plain_loop_when_every_group_has_both_signs(seed, n, n_groups, n_q):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), 2)
    groups = np.concatenate([groups, rng.integers(0, n_groups, n)])
    scores = np.round(rng.standard_normal((groups.size, n_q)), 2)
    is_ref = rng.random(groups.size) < 0.7
    # make sure every group has a positive and a negative reference score in every column
    scores[: 2 * n_groups : 2] = np.abs(scores[: 2 * n_groups : 2]) + 0.05
    scores[1 : 2 * n_groups : 2] = -np.abs(scores[1 : 2 * n_groups : 2]) - 0.05
    is_ref[: 2 * n_groups] = True
    expected = plain_ncs(scores, groups, is_ref)
    for mode in ("cmap", "gutc", "clean"):
        np.testing.assert_allclose(ncs(scores, groups, is_ref, mode=mode), expected, rtol=1e-12, err_msg=mode)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["cmap", "gutc", "clean"]), st.booleans())
def test_precomputed_reference_order_and_parallel_path(seed, mode, parallel):
    """``ref_order`` computed once gives the same NCS; the parallel division kernel equals the
    serial one and the plain elementwise division."""
    import opencmap.kernels.ncs as ncs_mod

    rng = np.random.default_rng(seed)
    n, q, g = 120, 3, 7
    x = np.round(rng.standard_normal((n, q)), 1)
    x[rng.random(x.shape) < 0.05] = np.nan
    groups = rng.integers(0, g, n)
    is_ref = rng.random(n) < 0.6
    base = ncs(x, groups, is_ref, mode=mode)
    par = {"threads": 2, "parallel_min": 0} if parallel else {}  # the parallel path even for tiny inputs
    got = ncs(x, groups, is_ref, mode=mode, ref_order=ncs_mod.reference_order(groups, is_ref), **par)
    np.testing.assert_array_equal(got, base)
    div_pos = rng.uniform(0.1, 2, (g, q))
    div_neg = rng.uniform(0.1, 2, (g, q))
    expected = np.where(x > 0, x / div_pos[groups], np.where(x < 0, x / div_neg[groups], x))
    np.testing.assert_array_equal(ncs_mod._apply(x, groups, div_pos, div_neg, 1, 0), expected)
