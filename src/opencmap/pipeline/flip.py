"""Plate-level flip correction of Level 2 duo analytes (spec §1.4, CMap ``flipadjust_pipe``).

Peak calling assigns the bigger peak of an analyte to the gene on the high-proportion (2x) bead
set. When the two genes' expression is close or the counts are noisy, a well's two values can
come out swapped. Across a plate each analyte's (value, count) points of the two genes form two
clouds; a linear discriminant fitted to them flags wells whose two points each sit in the other
gene's cloud, and swaps them (see :mod:`opencmap.kernels.flip`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from opencmap.errors import ConfigError, ValidationError
from opencmap.kernels.flip import flip_adjust

__all__ = ["FlipParams", "FlipResult", "flip_correct"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlipParams:
    """Flip-correction options (CMap ``iterative_flip_adjust_2d`` defaults).

    Attributes
    ----------
    cutoff:
        Posterior both points must exceed for the other gene's class (``flip_cutoff``).
    max_iter:
        Maximum refit rounds per analyte (``maxiter``).
    max_flips:
        Iteration continues while a well flipped this round has been flipped at most this
        often (``flip_freq``).
    """

    cutoff: float = 0.4
    max_iter: int = 10
    max_flips: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.cutoff < 1.0:
            raise ConfigError(f"flip cutoff must be in (0, 1), got {self.cutoff}")
        if self.max_iter < 1 or self.max_flips < 1:
            raise ConfigError(f"max_iter and max_flips must be >= 1, got {self.max_iter}, {self.max_flips}")


@dataclass(frozen=True)
class FlipResult:
    """Flip-corrected ``(A, W)`` matrices (analytes x wells) and diagnostics.

    ``nflip[a, w]`` counts the swaps of analyte ``a`` in well ``w``; ``posterior_hi`` /
    ``posterior_lo`` are the final discriminant posteriors of each gene's point belonging to its
    own gene (NaN for skipped analytes).
    """

    value_hi: np.ndarray
    value_lo: np.ndarray
    count_hi: np.ndarray
    count_lo: np.ndarray
    nflip: np.ndarray
    posterior_hi: np.ndarray
    posterior_lo: np.ndarray


def flip_correct(
    value_hi: np.ndarray,
    value_lo: np.ndarray,
    count_hi: np.ndarray,
    count_lo: np.ndarray,
    *,
    not_duo: Iterable[int] = (),
    params: FlipParams | None = None,
) -> FlipResult:
    """Swap mis-assigned gene pairs, analyte by analyte, over the wells of one plate.

    Parameters
    ----------
    value_hi, value_lo:
        ``(A, W)`` Level 2 expression (linear) of the high- / low-proportion gene of each analyte
        (row ``a`` = analyte ``a + 1``) in each well.
    count_hi, count_lo:
        ``(A, W)`` bead support of those values.
    not_duo:
        1-based analyte numbers to leave alone (single-gene / control analytes).
    params:
        :class:`FlipParams` (CMap defaults when omitted).

    Returns
    -------
    FlipResult
    """
    params = params or FlipParams()
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (value_hi, value_lo, count_hi, count_lo)]
    shape = arrays[0].shape
    if len(shape) != 2 or any(a.shape != shape for a in arrays):
        raise ValidationError(
            f"flip_correct needs four (analytes x wells) matrices of one shape, got {[a.shape for a in arrays]}"
        )
    skip = np.zeros(shape[0], dtype=np.bool_)
    for a in not_duo:
        if 1 <= a <= shape[0]:
            skip[a - 1] = True
    vh, vl, ch, cl, nflip, ph, pl = flip_adjust(
        *arrays, skip, params.cutoff, params.max_iter, params.max_flips
    )
    log.debug("flip correction: %d swaps in %d analyte/well pairs", int(nflip.sum()), int((nflip > 0).sum()))
    return FlipResult(vh, vl, ch, cl, nflip, ph, pl)
