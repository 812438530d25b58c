"""τ kernels: spec example 9.8 (exact and CMap grid), table vs on-the-fly grid, plain formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import ValidationError
from opencmap.kernels.tau import (
    GRID_BINS,
    grid_centers,
    percentile_table,
    sorted_abs_background,
    tau_exact,
    tau_from_table,
    tau_grid,
)

BG_98 = np.array([0.1, -0.5, 0.9, 1.4, -2.0, 0.0, 0.3, -0.7, 1.1, 0.05])


def _one(values, mask=None):
    return sorted_abs_background(np.asarray(values, dtype=np.float64)[None, :], None if mask is None else mask[None, :])


def test_sorted_abs_background_layout():
    matrix = np.array([[0.5, -0.1, np.nan, 2.0], [-3.0, 1.0, 0.2, 0.0]])
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    bg, counts = sorted_abs_background(matrix, mask)
    assert bg.dtype == np.float32 and counts.tolist() == [2, 3]
    np.testing.assert_allclose(bg[0, :2], [0.1, 0.5], rtol=1e-7)
    assert np.isnan(bg[0, 2])
    np.testing.assert_allclose(bg[1], [0.0, 0.2, 3.0], rtol=1e-7)
    with pytest.raises(ValidationError):
        sorted_abs_background(matrix, mask[:, :2])


def test_example_9_8_exact():
    bg, counts = _one(BG_98)
    x = np.array([1.0, -0.6, 2.5, 0.95, -0.58, 0.02, 0.0, np.nan])
    got = tau_exact(x[None, :], bg, counts)[0]
    np.testing.assert_allclose(got[:7], [70, -50, 100, 70, -50, 10, 0], atol=1e-9)
    assert np.isnan(got[7])


def test_example_9_8_grid():
    bg, counts = _one(BG_98)
    x = np.array([[0.95, -0.58, 2.5, 0.02, -6.0]])
    got = tau_grid(x, bg, counts)[0]
    np.testing.assert_allclose(got[:3], [60, -40, 100], atol=1e-6)
    assert got[3] == pytest.approx(4.03, abs=0.01)  # the straight line through the origin
    assert got[4] == -100
    # the grid never exceeds the exact value by more than rounding here
    assert np.all(np.abs(got[:3]) <= np.abs(tau_exact(x[:, :3], bg, counts)[0]) + 1e-9)


def test_grid_is_the_interpolated_table():
    rng = np.random.default_rng(2)
    raw = np.round(rng.standard_normal((6, 40)) * 1.5, 2)
    raw[0, :] = np.round(raw[0], 0)  # heavy ties
    raw[1, 5:] = np.nan  # short background
    raw[2, 0] = 5.5  # beyond the grid
    bg, counts = sorted_abs_background(raw)
    table, centers = percentile_table(bg, counts)
    assert table.shape == (6, GRID_BINS) and centers[0] == -4 and centers[-1] == 4
    assert table[:, GRID_BINS // 2].tolist() == [0.0] * 6
    x = rng.uniform(-5, 5, (6, 300))
    knots = centers.astype(np.float32)
    np.testing.assert_allclose(tau_grid(x, bg, counts), tau_from_table(x, table, knots), atol=2e-5)
    # tables are odd-symmetric away from midpoint ties, monotone on each side and in [-100, 100]
    assert np.nanmax(np.abs(table)) <= 100
    pos = table[:, GRID_BINS // 2 :]
    assert np.all(np.diff(pos, axis=1)[~np.isnan(np.diff(pos, axis=1))] >= -1e-4)


def test_no_background_gives_nan():
    bg = np.full((2, 3), np.nan, dtype=np.float32)
    bg[1] = [0.1, 0.2, 0.3]
    counts = np.array([0, 3])
    x = np.array([0.5, 0.25])
    got = tau_exact(x, bg, counts)
    assert np.isnan(got[0]) and got[1] == pytest.approx(200 / 3)
    assert np.isnan(tau_grid(x, bg, counts)[0])
    with pytest.raises(ValidationError):
        tau_exact(x, bg, np.array([0, 4]))


def test_from_table_default_centres():
    table = np.tile(np.linspace(-100, 100, 5), (2, 1))
    np.testing.assert_allclose(tau_from_table(np.array([1.0, -9.0]), table), [25.0, -100.0])
    np.testing.assert_array_equal(grid_centers(-4, 4, 5), [-4, -2, 0, 2, 4])


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(1, 5))
def test_exact_matches_plain_formula(seed, n_bg, n_sig):
    rng = np.random.default_rng(seed)
    raw = np.round(rng.standard_normal((n_sig, n_bg)), 1)  # ties and zeros
    mask = rng.random(raw.shape) < 0.8
    bg, counts = sorted_abs_background(raw, mask)
    x = np.round(rng.standard_normal((n_sig, 7)), 1).astype(np.float32)
    got = tau_exact(x, bg, counts)
    for s in range(n_sig):
        ref = np.abs(raw[s][mask[s]]).astype(np.float32)
        for j in range(7):
            if ref.size == 0:
                assert np.isnan(got[s, j])
                continue
            expected = np.sign(x[s, j]) * 100.0 * np.count_nonzero(ref < abs(x[s, j])) / ref.size
            assert got[s, j] == pytest.approx(expected, abs=1e-9)


def test_parallel_and_serial_exact_agree():
    rng = np.random.default_rng(5)
    raw = np.round(rng.standard_normal((9000, 40)), 1)
    bg, counts = sorted_abs_background(raw, rng.random(raw.shape) < 0.9)
    x = np.round(rng.standard_normal((9000, 3)), 1).astype(np.float32)
    serial = tau_exact(x, bg, counts)
    np.testing.assert_array_equal(tau_exact(x, bg, counts, threads=2, parallel_min=0), serial)
