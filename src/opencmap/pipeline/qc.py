"""Signature quality metrics (algorithms.md §5).

* ``distil_cc_q75`` / ``distil_cc_max`` / ``distil_cc_median``: MATLAB 75th percentile, max and
  median of the upper-triangle replicate Spearman correlations (landmark space) after negatives
  were clipped to 0 -- the MODZ ``C`` matrix; undefined for a single replicate.
* ``distil_ss``: mean of the 100 largest minus mean of the 100 smallest landmark MODZ values.
* ``distil_ss_ngene``: landmarks with ``|modz * sqrt(n)| >= 2``.
* ``tas``: ``sqrt(max(ss_ngene, 1e-3) * max(min(max(cc_q75, 0), 1), 1e-3)) / sqrt(n_landmarks)``;
  undefined for a single replicate.
* ``pct_self_rank_q25``: within a replicate set (the "brew"), each instance ranks all other
  instances by landmark Spearman similarity (1 = most similar, self excluded); for each replicate
  pair the better of the two ranks counts; ``q25`` = MATLAB 25th percentile of those ranks and
  ``pct = 100 (q25 - 1) / (n_instances - 1)`` (percent, lower is better); undefined for one
  replicate. The similarity metric is not documented by CMap (§11.10); we use Spearman.
* ``is_gold``: ``cc_q75 >= 0.2`` and ``pct_self_rank_q25 <= 5`` (percent).
* ``is_exemplar_sig``: the highest-TAS signature of each ``pert_id x cell_id`` (ties: first).

Undefined values are NaN in memory (:data:`MISSING`) and ``-666`` in files. These are small pure
functions on arrays (plus :func:`exemplar_flags` on the signature table).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from opencmap.kernels.percentile import prctile
from opencmap.kernels.ranks import mutual_pair_ranks

__all__ = [
    "MISSING",
    "cc_summary",
    "cc_summaries",
    "ss_ngene",
    "distil_ss",
    "distil_ss_columns",
    "tas",
    "self_rank_pct_q25",
    "is_gold",
    "exemplar_flags",
]

#: Undefined metrics (e.g. correlations of one replicate) are NaN in memory; files store them as
#: CMap's ``-666`` (the :mod:`opencmap.io` writers do that, and the readers turn ``-666`` back to NaN).
MISSING = float("nan")


def _prctile_each(vectors: list[np.ndarray], p: float) -> np.ndarray:
    """MATLAB percentile ``p`` of each vector (one vectorised call per distinct length)."""
    out = np.full(len(vectors), MISSING)
    by_size: dict[int, list[int]] = {}
    for i, v in enumerate(vectors):
        if len(v):
            by_size.setdefault(len(v), []).append(i)
    for idx in by_size.values():
        out[idx] = prctile(np.stack([vectors[i] for i in idx]).astype(np.float64), p, axis=1)
    return out


def cc_summaries(corrs: list[np.ndarray]) -> np.ndarray:
    """:func:`cc_summary` of many clipped correlation matrices: ``(len(corrs), 3)`` array."""
    upper_of: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # triangle indices per matrix size
    uppers = []
    for c in corrs:
        n = c.shape[0]
        if n not in upper_of:
            upper_of[n] = np.triu_indices(n, k=1)
        uppers.append(np.asarray(c, dtype=np.float64)[upper_of[n]])
    out = np.full((len(corrs), 3), MISSING)
    out[:, 0] = _prctile_each(uppers, 75)
    out[:, 1] = [u.max() if u.size else MISSING for u in uppers]
    out[:, 2] = _prctile_each(uppers, 50)  # the median is the 50th percentile for any rule
    return out


def cc_summary(corr: np.ndarray) -> tuple[float, float, float]:
    """``(q75, max, median)`` of the upper triangle of a clipped ``(n, n)`` correlation matrix.

    The q75 is MATLAB ``prctile`` (Hazen); ``n == 1`` gives NaN for all three.
    """
    c = np.asarray(corr, dtype=np.float64)
    n = c.shape[0]
    if n < 2:
        return (MISSING, MISSING, MISSING)
    upper = c[np.triu_indices(n, k=1)]
    return (float(prctile(upper, 75)), float(upper.max()), float(np.median(upper)))


def ss_ngene(modz_landmarks: np.ndarray, n_replicates: int | np.ndarray, *, threshold: float = 2.0) -> int | np.ndarray:
    """Number of landmark genes with ``|modz * sqrt(n)| >= threshold`` (NaN never counts).

    ``modz_landmarks`` is one signature ``(n_lm,)`` (returns an int) or several ``(n_lm, k)``
    with ``n_replicates`` of length ``k`` (returns ``(k,)`` ints).
    """
    adjusted = np.abs(np.asarray(modz_landmarks, dtype=np.float64)) * np.sqrt(np.asarray(n_replicates, dtype=np.float64))
    counts = np.count_nonzero(adjusted >= threshold, axis=0)
    return int(counts) if np.ndim(counts) == 0 else counts.astype(np.int64)


def distil_ss(modz_landmarks: np.ndarray, *, n_extreme: int = 100) -> float:
    """Legacy signature strength: mean of the ``n_extreme`` largest minus mean of the smallest values.

    With fewer than ``2 * n_extreme`` values, each tail takes half of them (so the tails never overlap).
    """
    v = np.sort(np.asarray(modz_landmarks, dtype=np.float64)[~np.isnan(modz_landmarks)])
    if v.size == 0:
        return MISSING
    k = max(1, min(n_extreme, v.size // 2))
    return float(v[-k:].mean() - v[:k].mean())


def distil_ss_columns(modz_landmarks: np.ndarray, *, n_extreme: int = 100) -> np.ndarray:
    """:func:`distil_ss` of every column of ``(n_lm, k)`` landmark MODZ values: ``(k,)`` float64.

    Columns without NaN are sorted together (same values as :func:`distil_ss`, whose means run
    over the same contiguous slices); columns with NaN go through :func:`distil_ss` one by one.
    """
    v = np.asarray(modz_landmarks, dtype=np.float64)
    out = np.full(v.shape[1], MISSING)
    clean = ~np.isnan(v).any(axis=0)
    n = v.shape[0]
    if n and clean.any():
        rows = np.sort(v[:, clean].T, axis=1)  # one signature per row, contiguous
        k = max(1, min(n_extreme, n // 2))
        out[clean] = rows[:, -k:].mean(axis=1) - rows[:, :k].mean(axis=1)
    for g in np.flatnonzero(~clean):
        out[g] = distil_ss(v[:, g], n_extreme=n_extreme)
    return out


def tas(ss_ngene_: np.ndarray | float, cc_q75: np.ndarray | float, *, n_landmarks: int = 978) -> np.ndarray:
    """Transcriptional activity score (vectorised); NaN where ``cc_q75`` is undefined (NaN or ``-666``)."""
    ss = np.asarray(ss_ngene_, dtype=np.float64)
    cc = np.asarray(cc_q75, dtype=np.float64)
    value = np.sqrt(np.maximum(ss, 1e-3) * np.maximum(np.clip(cc, 0.0, 1.0), 1e-3)) / np.sqrt(n_landmarks)
    return np.where(np.isnan(cc) | (cc == -666), MISSING, value)[()]


def self_rank_pct_q25(similarity: np.ndarray, groups: list[np.ndarray], *, threads: int = 1) -> np.ndarray:
    """``pct_self_rank_q25`` of each replicate group within one brew (see the module docstring).

    Parameters
    ----------
    similarity:
        ``(k, k)`` similarity of all ``k`` instances of the brew (NaN = least similar).
    groups:
        Column positions (into ``similarity``) of each group's replicates.
    threads:
        Of the pair-rank kernel (given by the backend, :mod:`opencmap.backends`); same values.

    Returns
    -------
    ``(len(groups),)`` float64, NaN for groups of one (or a brew of one instance).
    """
    s = np.array(similarity, dtype=np.float64, copy=True)
    k = s.shape[0]
    out = np.full(len(groups), MISSING)
    if k < 2:
        return out
    s[np.isnan(s)] = -np.inf  # unknown similarity ranks last (before self)
    np.fill_diagonal(s, np.nan)  # self never counts as more similar
    # rank of b in a's descending order, ties broken by instance order (a stable sort):
    # 1 + #{more similar} + #{equally similar and earlier}; the better of the two ranks counts
    best = mutual_pair_ranks(s, [np.asarray(cols) for cols in groups], threads=threads)
    q25 = _prctile_each(best, 25)
    return np.where(np.isnan(q25), MISSING, 100.0 * (q25 - 1.0) / (k - 1))


def is_gold(
    cc_q75: np.ndarray, pct_self_rank_q25: np.ndarray, *, min_cc_q75: float = 0.2, max_self_rank: float = 5.0
) -> np.ndarray:
    """GSE92742 ``is_gold`` (int 0/1): replicates correlate and recognise each other."""
    cc = np.asarray(cc_q75, dtype=np.float64)
    sr = np.asarray(pct_self_rank_q25, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = (cc >= min_cc_q75) & (sr >= 0) & (sr <= max_self_rank)  # NaN/-666 never qualify
    return ok.astype(np.int64)


def exemplar_flags(sig_info: pd.DataFrame, *, by: tuple[str, ...] = ("pert_id", "cell_id"), score: str = "tas") -> pd.Series:
    """1 for the highest-``score`` signature of each ``by`` group, else 0 (first wins ties).

    A missing score (NaN, ``-666``) ranks below every real score, so a group of single-replicate
    signatures still gets one exemplar (its first).
    """
    if len(sig_info) == 0:
        return pd.Series([], dtype=np.int64, index=sig_info.index)
    values = pd.to_numeric(sig_info[score], errors="coerce").to_numpy(dtype=np.float64, copy=True)
    values[np.isnan(values) | (values == -666)] = -np.inf
    keys = sig_info[list(by)].astype("str").fillna("-666")
    frame = pd.DataFrame({"_score": values, "_pos": np.arange(len(sig_info))})
    for col in by:
        frame[col] = keys[col].to_numpy()
    # sort by score descending, then original order; first row of each group wins
    frame = frame.sort_values(["_score", "_pos"], ascending=[False, True], kind="stable")
    winners = frame.drop_duplicates(subset=list(by), keep="first")["_pos"].to_numpy()
    flags = np.zeros(len(sig_info), dtype=np.int64)
    flags[winners] = 1
    return pd.Series(flags, index=sig_info.index, name="is_exemplar_sig")
