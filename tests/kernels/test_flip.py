"""Linear discriminant posterior and iterative flip correction kernels (spec §1.4)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from opencmap.kernels.flip import flip_adjust, flip_adjust_analyte, lda_posterior


def lda_reference(x: np.ndarray, n_first: int) -> np.ndarray:
    """Textbook LDA: class Gaussians with a pooled covariance (n - 2), equal priors."""
    groups = [x[:n_first], x[n_first:]]
    means = [g.mean(axis=0) for g in groups]
    pooled = sum((g - m).T @ (g - m) for g, m in zip(groups, means)) / (len(x) - 2)
    dens = np.column_stack([multivariate_normal(m, pooled).pdf(x) for m in means])
    return dens / dens.sum(axis=1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(w=st.integers(3, 40), seed=st.integers(0, 2**32 - 1))
def test_lda_posterior_matches_reference(w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    hi = np.column_stack([rng.normal(2000, 300, w), rng.normal(60, 8, w)])
    lo = np.column_stack([rng.normal(1500, 300, w), rng.normal(30, 6, w)])
    x = np.vstack([hi, lo])
    post, ok = lda_posterior(x, w)
    assert ok
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    np.testing.assert_allclose(post, lda_reference(x, w), atol=1e-9)


def test_singular_covariance_is_reported() -> None:
    x = np.column_stack([np.arange(8.0), 2 * np.arange(8.0)])  # features perfectly collinear
    post, ok = lda_posterior(x, 4)
    assert not ok and np.isnan(post).all()


def make_plate(rng: np.random.Generator, w: int) -> tuple[np.ndarray, ...]:
    vh = rng.normal(3000, 250, w)
    vl = rng.normal(800, 120, w)
    ch = rng.normal(60, 6, w).round()
    cl = rng.normal(30, 5, w).round()
    return vh, vl, ch, cl


def test_flipped_wells_are_swapped_back() -> None:
    rng = np.random.default_rng(0)
    vh, vl, ch, cl = make_plate(rng, 40)
    swapped = [3, 17, 29]
    bvh, bvl, bch, bcl = vh.copy(), vl.copy(), ch.copy(), cl.copy()
    bvh[swapped], bvl[swapped] = vl[swapped], vh[swapped]
    bch[swapped], bcl[swapped] = cl[swapped], ch[swapped]
    ovh, ovl, och, ocl, nflip, post_hi, post_lo = flip_adjust_analyte(bvh, bvl, bch, bcl)
    np.testing.assert_array_equal(ovh, vh)
    np.testing.assert_array_equal(ovl, vl)
    np.testing.assert_array_equal(och, ch)
    np.testing.assert_array_equal(ocl, cl)
    assert np.flatnonzero(nflip).tolist() == swapped and nflip[swapped].tolist() == [1, 1, 1]
    assert np.all(post_hi > 0.5) and np.all(post_lo > 0.5)


def test_skips_constant_and_masked_analytes() -> None:
    rng = np.random.default_rng(1)
    vh, vl, ch, cl = make_plate(rng, 20)
    const = np.full(20, 5.0)
    out = flip_adjust_analyte(const, const, const, const)
    assert out[4].sum() == 0 and np.isnan(out[5]).all()
    mats = [np.vstack([a, a]) for a in (vl, vh, cl, ch)]  # every well swapped
    res = flip_adjust(*mats, np.array([True, False]), 0.4, 10, 3)
    assert res[4][0].sum() == 0  # masked analyte untouched
    np.testing.assert_array_equal(res[0][0], vl)
    assert np.isnan(res[5][0]).all()


def test_iteration_stops_after_max_flips() -> None:
    # two identical clouds: every well looks flipped every round, so flips repeat until each
    # well has been flipped more than max_flips times (or max_iter rounds)
    v = np.array([1.0, 2.0, 3.0, 4.0])
    c = np.array([1.0, 3.0, 2.0, 5.0])
    out = flip_adjust_analyte(v, v.copy(), c, c.copy(), 0.4, 10, 3)
    assert out[4].tolist() == [4, 4, 4, 4]
    out = flip_adjust_analyte(v, v.copy(), c, c.copy(), 0.4, 2, 3)
    assert out[4].tolist() == [2, 2, 2, 2]
