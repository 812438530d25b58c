"""MODZ: the moderated z-score consensus of replicate profiles (algorithms.md §4, §13.7).

For ``Z`` = the ``(n_genes, n)`` level-4 z-scores of the ``n`` replicates of one experiment:

1. clip ``Z`` to ``[-clip, clip]`` (10);
2. ``n == 1``: the (clipped) column is the consensus, weight 1;
3. ``C`` = Spearman correlation of the replicates on the landmark rows only;
4. NaN correlations (constant replicates) -> 0, diagonal -> 0, ``C < clip_low_cc`` -> 0;
5. raw weight ``w~_i = 1/2 sum_j C_ij`` (MATLAB ``modzs``; ``weight_method="sum"``) or the mean
   off-diagonal correlation ``sum_j C_ij / (n - 1)`` (cmapPy ``agg_wt_avg``; ``"mean"``);
6. floor ``w~_i = max(w~_i, low_weight)`` (0.01), normalise ``w = w~ / sum|w~|``;
7. consensus ``modz_g = sum_i w_i Z_gi`` for **all** rows.

cmapPy also rounds the normalised weights to 4 decimals before using them: ``round_weights=4``.
Other consensus summaries from CMap's ``distil``: ``wt_stouffer`` (``sum w~ z / sqrt(sum w~^2)``),
``avgz`` (mean), ``medianz`` (median), ``stoufz`` (``sum z / sqrt(n)``).

NaN in ``Z`` (only if the caller allows missing values): correlations use the landmark rows
finite in every replicate; each gene's consensus uses the replicates finite for that gene, with
their weights renormalised; a gene missing in every replicate stays NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from opencmap.kernels.correlation import spearman_matrix

__all__ = [
    "CONSENSUS_METHODS",
    "WEIGHT_METHODS",
    "ModzResult",
    "clip_correlations",
    "modz_weights",
    "modz",
]

#: Consensus summaries ``modz`` can compute.
CONSENSUS_METHODS = ("modz", "wt_stouffer", "avgz", "medianz", "stoufz")
#: Raw-weight definitions: MATLAB half-sum or cmapPy mean.
WEIGHT_METHODS = ("sum", "mean")


class ModzResult(NamedTuple):
    """What :func:`modz` returns.

    consensus : ``(n_genes,)`` float64 consensus profile.
    weights   : ``(n,)`` normalised weights (``[1.0]`` for one replicate; equal weights for the
                unweighted summaries).
    corr      : ``(n, n)`` clipped correlation matrix used for the weights (diagonal 0,
                NaN and values below ``clip_low_cc`` set to 0); ``(1, 1)`` zero for one replicate.
    """

    consensus: np.ndarray
    weights: np.ndarray
    corr: np.ndarray


def clip_correlations(corr: np.ndarray, *, clip_low_cc: float = 0.0) -> np.ndarray:
    """Copy of a ``(n, n)`` correlation matrix with NaN -> 0, diagonal -> 0, ``< clip_low_cc`` -> 0."""
    c = np.array(corr, dtype=np.float64, copy=True)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"expected a square correlation matrix, got shape {c.shape}")
    c[~np.isfinite(c)] = 0.0
    np.fill_diagonal(c, 0.0)
    c[c < clip_low_cc] = 0.0
    return c


def modz_weights(
    corr: np.ndarray,
    *,
    low_weight: float = 0.01,
    weight_method: str = "sum",
    round_weights: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (floored) and normalised MODZ weights from a *clipped* ``(n, n)`` correlation matrix.

    Returns ``(raw, weights)``, both ``(n,)`` float64; ``weights`` sum to 1 (up to rounding
    when ``round_weights`` is given). ``n == 1`` gives ``([1.0], [1.0])``.
    """
    c = np.asarray(corr, dtype=np.float64)
    n = c.shape[0]
    if n == 1:
        return np.ones(1), np.ones(1)
    if weight_method == "sum":
        raw = 0.5 * c.sum(axis=1)
    elif weight_method == "mean":
        raw = c.sum(axis=1) / (n - 1)
    else:
        raise ValueError(f"weight_method must be one of {WEIGHT_METHODS}, got {weight_method!r}")
    raw = np.maximum(raw, low_weight)
    weights = raw / np.abs(raw).sum()
    if round_weights is not None:
        weights = np.round(weights, round_weights)
    return raw, weights


def _weighted_sum(z: np.ndarray, w: np.ndarray, missing: np.ndarray | None) -> np.ndarray:
    if missing is None:
        return z @ w
    present = ~missing
    num = np.where(present, z, 0.0) @ w
    den = present @ w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present.any(axis=1), num / den * w.sum(), np.nan)


def modz(
    z: np.ndarray,
    landmark_rows: np.ndarray | None = None,
    *,
    clip: float | None = 10.0,
    low_weight: float = 0.01,
    clip_low_cc: float = 0.0,
    weight_method: str = "sum",
    round_weights: int | None = None,
    method: str = "modz",
    corr: np.ndarray | None = None,
    threads: int = 1,
) -> ModzResult:
    """Consensus of the replicate columns of ``z`` (see the module docstring).

    Parameters
    ----------
    z:
        ``(n_genes, n)`` level-4 z-scores of the ``n >= 1`` replicates.
    landmark_rows:
        Row positions (or boolean mask) used for the correlations; ``None`` = all rows.
    clip:
        Clip ``z`` to ``[-clip, clip]`` first; ``None`` = no clipping.
    low_weight, clip_low_cc, weight_method, round_weights:
        Weight rules (MATLAB defaults; ``weight_method="mean", round_weights=4`` is cmapPy).
    method:
        One of :data:`CONSENSUS_METHODS`.
    corr:
        Optional precomputed *unclipped* ``(n, n)`` Spearman matrix of the clipped landmark
        rows (lets a caller rank a large block once); computed here when ``None``.
    threads:
        Threads of the ranking behind ``corr`` (:mod:`opencmap.kernels.threads`); same values.

    Shape contract: returns a :class:`ModzResult` with a ``(n_genes,)`` float64 consensus.
    """
    a = np.asarray(z, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"expected a (genes x replicates) array with >= 1 column, got shape {a.shape}")
    if method not in CONSENSUS_METHODS:
        raise ValueError(f"method must be one of {CONSENSUS_METHODS}, got {method!r}")
    if clip is not None:
        a = np.clip(a, -clip, clip)
    n = a.shape[1]
    missing = np.isnan(a)
    has_missing = bool(missing.any())
    if n == 1:
        return ModzResult(a[:, 0].copy(), np.ones(1), np.zeros((1, 1)))
    if corr is None:
        lm = a if landmark_rows is None else a[np.asarray(landmark_rows)]
        corr = spearman_matrix(lm, threads=threads)
    c = clip_correlations(corr, clip_low_cc=clip_low_cc)

    if method in ("modz", "wt_stouffer"):
        raw, weights = modz_weights(c, low_weight=low_weight, weight_method=weight_method, round_weights=round_weights)
        if method == "modz":
            cons = _weighted_sum(a, weights, missing if has_missing else None)
        else:
            num = np.where(missing, 0.0, a) @ raw
            den = np.sqrt((~missing) @ (raw**2))
            with np.errstate(invalid="ignore", divide="ignore"):
                cons = num / den
        return ModzResult(cons, weights, c)

    weights = np.full(n, 1.0 / n)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN genes -> NaN, on purpose
        if method == "avgz":
            cons = np.nanmean(a, axis=1) if has_missing else a.mean(axis=1)
        elif method == "medianz":
            cons = np.nanmedian(a, axis=1) if has_missing else np.median(a, axis=1)
        else:  # stoufz
            count = (~missing).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                cons = np.where(missing, 0.0, a).sum(axis=1) / np.sqrt(count)
            cons[count == 0] = np.nan
    return ModzResult(cons, weights, c)
