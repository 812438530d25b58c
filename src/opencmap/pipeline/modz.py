"""Level 4 → Level 5: collapse replicate profiles into consensus signatures (algorithms.md §4).

:func:`collapse_replicates` runs the MODZ kernel (:func:`opencmap.kernels.modz.modz`) on every
replicate group of a Level 4 block. The landmark rows are ranked once for the whole block, so a
group costs one tiny matrix product instead of a re-ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.core.schema import parse_flags
from opencmap.errors import PipelineError
from opencmap.kernels.correlation import spearman_standardized
from opencmap.kernels.modz import modz
from opencmap.pipeline.params import PipelineParams

__all__ = ["ReplicateCollapse", "landmark_positions", "landmark_rank_block", "collapse_replicates"]

#: A matrix of at most this many rows without landmark annotation is taken to be all landmarks.
N_LANDMARKS = 978


def landmark_positions(row_meta: pd.DataFrame, params: PipelineParams | None = None) -> np.ndarray:
    """Row positions of the landmark genes, from the first of ``params.landmark_fields`` present.

    Without such a field, a matrix of at most 978 rows (a landmark-space Level 3/4 file) is taken
    to be all landmarks; a larger one is an error (MODZ weights must use landmark space).
    """
    params = params or PipelineParams()
    for name in params.landmark_fields:
        if name in row_meta.columns:
            pos = np.flatnonzero(parse_flags(row_meta[name]))
            if pos.size < 2:
                raise PipelineError(
                    f"row field {name!r} marks {pos.size} landmark genes; MODZ needs the landmark "
                    "rows (978 in L1000) to correlate replicates. Fix the gene annotation"
                )
            return pos
    if len(row_meta) <= N_LANDMARKS:
        return np.arange(len(row_meta))
    raise PipelineError(
        f"cannot tell which of the {len(row_meta)} rows are landmark genes: the row metadata has none "
        f"of the fields {list(params.landmark_fields)}. Add a 0/1 'pr_is_lm' row field (or pass a "
        "gene table with one) so replicate correlations use the 978 landmarks"
    )


def landmark_rank_block(level4: GCT, landmark_rows: np.ndarray, params: PipelineParams, *, threads: int = 1) -> np.ndarray | None:
    """Standardized Spearman ranks of the clipped landmark rows of every column, ``(n_lm, k)``.

    ``S[:, a].T @ S[:, b]`` is then the Spearman correlation of columns ``a`` and ``b``.
    Returns ``None`` when the landmark block has missing values (correlations then use each
    group's complete rows instead). ``threads``: of the ranking kernel (given by the backend).
    """
    data = level4.data
    bound = np.float32(params.clip)
    if data.dtype == np.float32 and float(bound) == params.clip:
        # float32 values clipped at a float32-exact bound rank exactly as their float64 copies
        # do (the conversion is exact and keeps order and ties), at half the sorting cost
        lm = np.clip(data[landmark_rows], -bound, bound)
    else:
        lm = np.clip(data[landmark_rows].astype(np.float64), -params.clip, params.clip)
    if np.isnan(lm).any():
        return None
    return spearman_standardized(lm, threads=threads)


@dataclass(frozen=True)
class ReplicateCollapse:
    """Consensus signatures of the replicate groups of one Level 4 block.

    consensus : ``(n_genes, n_groups)`` float32 matrix (one column per group).
    weights   : per group, its normalised replicate weights.
    corr      : per group, the clipped replicate correlation matrix (landmark Spearman).
    """

    consensus: np.ndarray
    weights: list[np.ndarray]
    corr: list[np.ndarray]


def collapse_replicates(
    level4: GCT,
    groups: Sequence[np.ndarray],
    landmark_rows: np.ndarray,
    params: PipelineParams | None = None,
    *,
    ranks: np.ndarray | None = None,
    threads: int = 1,
) -> ReplicateCollapse:
    """MODZ (or ``params.consensus``) of each group of Level 4 columns.

    Parameters
    ----------
    level4:
        Level 4 z-scores, genes × instances.
    groups:
        Column positions of each group's replicates (a group of one passes through).
    landmark_rows:
        Row positions of the landmark genes (correlations use only these rows).
    ranks:
        Optional result of :func:`landmark_rank_block` for ``level4`` (computed if omitted).
    threads:
        Of the ranking kernels (given by the backend, :mod:`opencmap.backends`); same values.
    """
    params = params or PipelineParams()
    if ranks is None:
        ranks = landmark_rank_block(level4, landmark_rows, params, threads=threads)
    data = level4.data
    out = np.empty((data.shape[0], len(groups)), dtype=np.float32, order="F")  # one contiguous column per group
    weights: list[np.ndarray] = []
    corrs: list[np.ndarray] = []
    for gi, cols in enumerate(groups):
        cols = np.asarray(cols, dtype=np.intp)
        if cols.size == 0:
            raise PipelineError(f"replicate group {gi} is empty")
        corr = None
        if ranks is not None and cols.size > 1:
            s = ranks[:, cols]
            corr = s.T @ s
        result = modz(
            data[:, cols],
            landmark_rows,
            clip=params.clip,
            low_weight=params.low_weight,
            clip_low_cc=params.clip_low_cc,
            weight_method=params.weight_method,
            round_weights=params.round_weights,
            method=params.consensus,
            corr=corr,
            threads=threads,
        )
        out[:, gi] = result.consensus
        weights.append(result.weights)
        corrs.append(result.corr)
    return ReplicateCollapse(out, weights, corrs)
