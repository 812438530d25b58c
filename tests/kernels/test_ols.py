"""OLS-with-intercept kernel vs numpy lstsq; collinearity; row-wise Pearson."""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.kernels.ols import fit_ols, pearson_rows, predict_ols


def test_exact_recovery_and_lstsq_agreement() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(8, 2, size=(60, 5))
    w_true = rng.normal(0, 1, size=(7, 6))
    y = (w_true[:, 1:] @ x.T + w_true[:, [0]]).T
    w = fit_ols(x, y, block_size=3)
    np.testing.assert_allclose(w, w_true, atol=1e-9)
    noisy = y + rng.normal(0, 0.1, y.shape)
    design = np.column_stack([np.ones(60), x])
    ref = np.linalg.lstsq(design, noisy, rcond=None)[0].T
    np.testing.assert_allclose(fit_ols(x, noisy), ref, atol=1e-9)
    np.testing.assert_allclose(predict_ols(w, x.T), y.T, atol=1e-9)


def test_collinear_landmarks_still_predict() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 2))
    x = np.column_stack([a, a[:, 0] + a[:, 1]])  # rank 2
    y = (1.0 + 2 * a[:, 0] - a[:, 1])[:, None]
    w = fit_ols(x, y)
    np.testing.assert_allclose(predict_ols(w, x.T)[0], y[:, 0], atol=1e-9)
    # minimum-norm: the collinear direction (1, 1, -1) carries no weight
    assert abs(w[0, 1:] @ np.array([1, 1, -1])) < 1e-9


def test_pearson_rows() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 20)), rng.normal(size=(4, 20))
    b[3] = 1.0
    r = pearson_rows(a, b)
    for i in range(3):
        assert r[i] == pytest.approx(np.corrcoef(a[i], b[i])[0, 1])
    assert np.isnan(r[3])


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        fit_ols(np.zeros((3, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError):
        predict_ols(np.zeros((2, 3)), np.zeros((3, 4)))
