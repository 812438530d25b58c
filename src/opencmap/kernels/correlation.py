"""Column-by-column correlation matrices (Pearson and Spearman) for replicate comparisons.

Spearman correlation is Pearson correlation of the ranks, ties averaged (algorithms.md §0.3.3,
``scipy.stats.spearmanr``). Correlations are computed on the rows where every column is finite
(complete cases). A constant column has no defined correlation: its entries are NaN (callers
decide what NaN means; MODZ treats it as 0).
"""

from __future__ import annotations

import numpy as np

from opencmap.kernels.ranks import average_ranks

__all__ = ["standardize_columns", "pearson_matrix", "spearman_matrix", "spearman_standardized"]


def standardize_columns(x: np.ndarray) -> np.ndarray:
    """Centre each column and scale it to unit Euclidean norm (float64).

    Shape contract: ``(n_rows, k) -> (n_rows, k)``. Columns with zero variance (or no finite
    value) become all-NaN, so every correlation involving them is NaN. For standardized
    columns ``a``, ``a.T @ a`` is the Pearson correlation matrix.
    """
    a = np.array(x, dtype=np.float64, copy=True)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (rows x columns) array, got shape {a.shape}")
    n = a.shape[0]
    magnitude = np.abs(a).max(axis=0, initial=0.0)
    if n:
        a -= a.mean(axis=0)
    norm = np.sqrt(np.einsum("ij,ij->j", a, a))
    # relative test: a constant column may keep round-off residue after centring
    degenerate = ~(norm > 1e-12 * magnitude * np.sqrt(max(n, 1))) | (magnitude == 0)
    norm[degenerate] = np.nan
    return a / norm


def _complete_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` where every column is finite; float32 stays float32 (ranking it is exact), else float64."""
    a = np.asarray(x)
    if a.dtype != np.float32:
        a = a.astype(np.float64, copy=False)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (rows x columns) array, got shape {a.shape}")
    finite = np.isfinite(a).all(axis=1)
    return a if finite.all() else a[finite]


def pearson_matrix(x: np.ndarray) -> np.ndarray:
    """Pearson correlation between the columns of ``x``: ``(n_rows, k) -> (k, k)`` float64."""
    s = standardize_columns(_complete_rows(x))
    c = s.T @ s
    np.clip(c, -1.0, 1.0, out=c)
    return c


def spearman_standardized(x: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Average ranks of each column (complete rows), standardized: ``(m, k)`` float64.

    ``spearman_standardized(x).T @ spearman_standardized(x)`` is the Spearman matrix. Useful
    to rank a large block once and then correlate many small column groups. ``threads > 1``
    ranks the columns on numba's threads (:mod:`opencmap.kernels.threads`); same values.
    """
    a = _complete_rows(x)
    return standardize_columns(average_ranks(a, axis=0, threads=threads))


def spearman_matrix(x: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Spearman correlation between the columns of ``x``: ``(n_rows, k) -> (k, k)`` float64.

    Ties get averaged ranks; rows with any non-finite value are left out; a constant column
    gives NaN in its row and column (including the diagonal). ``threads``: as
    :func:`spearman_standardized`.
    """
    s = spearman_standardized(x, threads=threads)
    c = s.T @ s
    np.clip(c, -1.0, 1.0, out=c)
    return c
