"""Ordinary least squares with an intercept, for inferring genes from landmarks (algorithms.md §2.3).

The model is ``y_hat = W @ [1; x]`` with ``W`` of shape ``(n_dependent, 1 + n_landmark)``
(column 0 the intercept). It is fitted by the Moore-Penrose pseudo-inverse of the centred
landmark matrix (minimum-norm solution when the landmarks are collinear or outnumber the
samples), which is computed once and applied to the dependent genes in blocks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_ols", "predict_ols", "pearson_rows"]


def fit_ols(x: np.ndarray, y: np.ndarray, *, block_size: int = 4096, rcond: float = 1e-10) -> np.ndarray:
    """Least-squares weights with intercept.

    Parameters
    ----------
    x:
        ``(n_samples, n_landmark)`` predictors (finite).
    y:
        ``(n_samples, n_dependent)`` responses (finite); any float dtype, converted block by block.
    block_size:
        Dependent genes solved per block (bounds the float64 working memory).
    rcond:
        Relative singular-value cut-off of the pseudo-inverse.

    Returns
    -------
    np.ndarray
        ``(n_dependent, 1 + n_landmark)`` float64; column 0 is the intercept.
    """
    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim != 2 or np.ndim(y) != 2 or xa.shape[0] != np.shape(y)[0]:
        raise ValueError(f"x (samples x landmarks) and y (samples x genes) must share rows: {xa.shape}, {np.shape(y)}")
    if xa.shape[0] < 1:
        raise ValueError("need at least one training sample")
    x_mean = xa.mean(axis=0)
    pinv = np.linalg.pinv(xa - x_mean, rcond=rcond)  # (L, n)
    n_dep = np.shape(y)[1]
    weights = np.empty((n_dep, 1 + xa.shape[1]))
    for start in range(0, n_dep, max(1, int(block_size))):
        yb = np.asarray(y[:, start : start + block_size], dtype=np.float64)
        y_mean = yb.mean(axis=0)
        coef = pinv @ (yb - y_mean)  # (L, b)
        weights[start : start + yb.shape[1], 1:] = coef.T
        weights[start : start + yb.shape[1], 0] = y_mean - x_mean @ coef
    return weights


def predict_ols(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``weights[:, 0] + weights[:, 1:] @ x``: ``(D, 1 + L)``, ``(L, S)`` -> ``(D, S)`` float64."""
    w = np.asarray(weights, dtype=np.float64)
    xa = np.asarray(x, dtype=np.float64)
    if w.ndim != 2 or xa.ndim != 2 or w.shape[1] != xa.shape[0] + 1:
        raise ValueError(f"weights {w.shape} do not match landmarks x samples {xa.shape}")
    return w[:, 1:] @ xa + w[:, [0]]


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``: ``(D, S), (D, S) -> (D,)``.

    Rows with zero variance in either input give NaN.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"inputs must be 2-D with the same shape, got {x.shape} and {y.shape}")
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", xc, yc)
    den = np.sqrt(np.einsum("ij,ij->i", xc, xc) * np.einsum("ij,ij->i", yc, yc))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num / den
    r[~(den > 0)] = np.nan
    return r
