"""Which processing level a matrix holds: Level 4 (robust z-scores) told apart from Level 3 (log2 expression).

Level 4 values are robust z-scores against their plate (ZSPC): within a plate every gene's median
is 0 and its scaled MAD (1.4826 x MAD) is 1, except where the MAD floor applied (smaller then).
Level 3 values are log2 expression: gene medians of 4-15 and MADs of 0.1-0.9. Given to the
pipeline as Level 3, a Level 4 matrix would be z-scored a second time, silently; this module is
the check that refuses it.

Thresholds (measured on the real files under ``shared/data/pipeline``): a matrix *looks like
Level 4* when at least 90 % of its genes have ``|median| < 0.1`` and the median of the genes'
scaled MADs lies in [0.5, 1.5]. Real Level 3 (``level2to4/level3_n376x490``,
``plate_qnorm_zscore/gctv13_01``, the TEST plate's QNORM, cmapPy's ``test_l1000``, cmapM's
``gctv13_02``): 0 % of genes centred, MADs 0.21-0.40. Real Level 4 (``level2to4/level4_n376x490``,
``gctv13_01_zs``, the TEST plate's ZSPCQNORM): 100 % centred, MAD 1.00. Real Level 5 (MODZ,
``query/modzs_n272x978``) is not flagged (55 % centred). The check is made on one whole plate, the
population Level 4 was z-scored against (a handful of replicate columns would not be centred).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from opencmap.errors import OpenCMapWarning, PipelineError

__all__ = ["LevelEvidence", "level4_evidence", "check_input_level", "CENTRED_TOL", "CENTRED_FRACTION", "MAD_RANGE"]

#: A gene counts as centred when ``|median| <`` this.
CENTRED_TOL = 0.1
#: Fraction of centred genes from which a matrix looks like Level 4.
CENTRED_FRACTION = 0.9
#: Range of the median scaled MAD (1.4826 x MAD) of a Level 4 matrix.
MAD_RANGE = (0.5, 1.5)
#: Fewer columns than this say nothing reliable about the level.
MIN_COLUMNS = 5


@dataclass(frozen=True)
class LevelEvidence:
    """Per-gene location and spread of a (genes x samples) block."""

    n_genes: int
    n_samples: int
    centred_fraction: float
    """Fraction of genes whose median over the samples is within :data:`CENTRED_TOL` of 0."""
    median_mad: float
    """Median over genes of the scaled MAD (1.4826 x MAD) over the samples."""

    @property
    def looks_like_level4(self) -> bool:
        return (
            self.n_samples >= MIN_COLUMNS
            and self.centred_fraction >= CENTRED_FRACTION
            and MAD_RANGE[0] <= self.median_mad <= MAD_RANGE[1]
        )

    def describe(self) -> str:
        return (f"{100 * self.centred_fraction:.0f}% of {self.n_genes} genes have |median| < {CENTRED_TOL} and their "
                f"median scaled MAD is {self.median_mad:.2f}, over {self.n_samples} samples")


def level4_evidence(data: np.ndarray) -> LevelEvidence:
    """Evidence from ``data`` (genes x samples, one whole plate); NaN values are ignored."""
    x = np.asarray(data, dtype=np.float64)
    n_genes, n_samples = x.shape
    if n_genes == 0 or n_samples == 0:
        return LevelEvidence(n_genes, n_samples, 0.0, float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN genes
        med = np.nanmedian(x, axis=1)
        mad = 1.4826 * np.nanmedian(np.abs(x - med[:, None]), axis=1)
        centred = float(np.mean(np.abs(med) < CENTRED_TOL))
        median_mad = float(np.nanmedian(mad)) if np.isfinite(mad).any() else float("nan")
    return LevelEvidence(n_genes, n_samples, centred, median_mad)


def check_input_level(data: np.ndarray, start_level: int, *, where: str) -> LevelEvidence:
    """Refuse Level 4 given as Level 3 (:class:`~opencmap.errors.PipelineError`); warn on Level 4 input that does not look it.

    ``data`` is one whole plate of the input (genes x wells); ``where`` names the file and plate.
    """
    evidence = level4_evidence(data)
    if start_level == 3 and evidence.looks_like_level4:
        raise PipelineError(
            f"{where}: this looks like Level 4 (robust z-scores), not Level 3: {evidence.describe()}, "
            f"as z-scores against the plate have (Level 3 log2 expression has medians of 4-15). "
            f"Processing it as Level 3 would z-score it twice; run it with --level 4 (params.start_level=4) "
            f"for Level 4 -> 5, or give the Level 3 matrix"
        )
    if start_level == 4 and evidence.n_samples >= MIN_COLUMNS and not evidence.looks_like_level4:
        warnings.warn(
            f"{where}: given as Level 4 but does not look like plate z-scores ({evidence.describe()}); "
            f"if it is Level 3, run it without --level 4 so it is z-scored",
            OpenCMapWarning,
            stacklevel=3,
        )
    return evidence
