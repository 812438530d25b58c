"""NORM → Level 3 (QNORM): quantile normalisation of one plate (algorithms.md §2.2).

Default: CMap's ``quantilenorm(x, 'median', true)`` over the plate's wells, tied values getting
the target at their average rank (:func:`opencmap.kernels.qnorm.quantile_normalize`).

Quantile-sketch mode (``sketch_target=...``): every well is mapped onto a stored sorted target
vector (e.g. built once with :func:`qnorm_target` from a reference compendium), interpolated
when its length differs from the number of genes. Each well is then normalised on its own, so
single samples and streams can be processed consistently.
"""

from __future__ import annotations

import logging

import numpy as np

from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.kernels.qnorm import quantile_normalize, quantile_sketch_normalize, quantile_target

__all__ = ["qnorm_plate", "qnorm_target"]

log = logging.getLogger(__name__)


def qnorm_target(gct: GCT) -> np.ndarray:
    """The QNORM target of ``gct`` (per-rank median of its sorted columns), ``(n_genes,)`` float64."""
    if gct.shape[1] == 0:
        raise PipelineError("cannot build a quantile target from a matrix with no columns")
    return quantile_target(gct.data)


def qnorm_plate(gct: GCT, *, sketch_target: np.ndarray | None = None) -> GCT:
    """Quantile-normalise the wells (columns) of one plate; metadata are kept.

    Parameters
    ----------
    gct:
        NORM matrix (genes x wells), log2. NaN values stay NaN and are left out of the target.
    sketch_target:
        Optional sorted target vector: quantile-sketch mode (no dependence on the other wells;
        ties broken by row order as in CMap's sketch mode).

    Returns
    -------
    GCT
        Level 3 matrix, float32, same ids and metadata.
    """
    if gct.shape[1] == 0:
        raise PipelineError("QNORM: the plate has no wells left (were they all censored?)")
    if sketch_target is not None:
        target = np.asarray(sketch_target, dtype=np.float64).ravel()
        if target.size == 0 or not np.isfinite(target).all():
            raise PipelineError("QNORM sketch target must be a non-empty vector of finite values")
        if not np.isfinite(gct.data).all():
            raise PipelineError("QNORM sketch mode needs finite values; the matrix has NaN/inf")
        values = quantile_sketch_normalize(gct.data, target)
        log.info("QNORM (sketch, target of %d values): %d genes x %d wells", target.size, *gct.shape)
    else:
        if np.isinf(gct.data).any():
            raise PipelineError("QNORM: the matrix has infinite values")
        values = quantile_normalize(gct.data)
        log.info("QNORM: %d genes x %d wells", *gct.shape)
    return GCT(values, row_meta=gct.row_meta, col_meta=gct.col_meta)
