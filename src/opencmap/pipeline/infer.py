"""Level 3 inference: landmark → inferred genes with a linear model (algorithms.md §2.3).

CMap predicts ~11,350 genes (21,290 probe sets) from the 978 landmarks with an OLS model trained
on a GEO compendium; its weights are not public. :func:`train_inference` fits the same kind of
model on any compendium the user supplies (a GCT whose rows hold the landmarks and the genes to
infer, columns the training profiles, log2 scale), measures each gene's quality on held-out
profiles, and returns an :class:`InferenceModel`; :func:`apply_inference` applies it to Level 3
data. Models are saved/loaded by :mod:`opencmap.io.infer_model`.

Inference works sample by sample (no plate dependence), in blocks of columns, and needs every
landmark of the model (a clear error lists the missing ones). Output rows are the landmarks (model
order) then the inferred genes, with ``pr_is_lm`` (1/0) and, when a quality threshold is given,
``pr_is_bing`` ("best inferred": landmarks plus genes whose held-out correlation reaches it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.core.schema import LANDMARK_FLAGS, parse_flags
from opencmap.errors import ConfigError, PipelineError
from opencmap.io.infer_model import read_inference_model, write_inference_model
from opencmap.kernels.ols import fit_ols, pearson_rows, predict_ols

__all__ = [
    "INFER_CLIP",
    "InferenceModel",
    "train_inference",
    "apply_inference",
    "landmark_rows",
    "save_inference_model",
    "load_inference_model",
]

log = logging.getLogger(__name__)

#: CMap clips inferred values to this range (``infer_tool``).
INFER_CLIP: tuple[float, float] = (0.0, 15.0)

_LANDMARK_FIELDS = LANDMARK_FLAGS


@dataclass(frozen=True, eq=False)
class InferenceModel:
    """A trained landmark → gene linear model.

    Attributes
    ----------
    landmark_ids, dependent_ids:
        Row ids of the predictors (in weight-column order) and of the inferred genes.
    weights:
        ``(n_dependent, 1 + n_landmark)``; column 0 is the intercept.
    fit_quality:
        Indexed by ``dependent_ids``: ``r_holdout`` (Pearson correlation of predicted vs actual
        over the held-out profiles), ``rmse_holdout``, ``r_train``; NaN when not measured.
    landmark_meta, dependent_meta:
        Row metadata of the training compendium for those rows (may have no columns).
    clip:
        Range predictions are clipped to.
    info:
        Provenance: ``n_train``, ``n_holdout``, ``seed``, ``description``, ``refit_all``, ...
    """

    landmark_ids: tuple[str, ...]
    dependent_ids: tuple[str, ...]
    weights: np.ndarray
    fit_quality: pd.DataFrame
    landmark_meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    dependent_meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    clip: tuple[float, float] = INFER_CLIP
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lm = tuple(str(i) for i in self.landmark_ids)
        dep = tuple(str(i) for i in self.dependent_ids)
        object.__setattr__(self, "landmark_ids", lm)
        object.__setattr__(self, "dependent_ids", dep)
        w = np.asarray(self.weights)
        if w.shape != (len(dep), len(lm) + 1):
            raise ConfigError(
                f"inference weights have shape {w.shape}; expected ({len(dep)} genes, 1 + {len(lm)} landmarks)"
            )
        if len(set(lm)) != len(lm) or len(set(dep)) != len(dep) or set(lm) & set(dep):
            raise ConfigError("inference model ids must be unique and landmarks distinct from inferred genes")
        object.__setattr__(self, "weights", w)
        lo, hi = (float(v) for v in self.clip)
        if not lo < hi:
            raise ConfigError(f"inference clip range must be increasing, got {self.clip}")
        object.__setattr__(self, "clip", (lo, hi))

    @property
    def n_landmarks(self) -> int:
        return len(self.landmark_ids)

    @property
    def n_dependents(self) -> int:
        return len(self.dependent_ids)

    def well_inferred(self, min_r: float) -> list[str]:
        """Inferred genes whose held-out correlation is at least ``min_r`` (a BING-like subset)."""
        if "r_holdout" not in self.fit_quality.columns or self.fit_quality["r_holdout"].isna().all():
            raise PipelineError(
                "this inference model has no held-out quality (trained with holdout_fraction=0); "
                "retrain with a held-out fraction to choose well-inferred genes"
            )
        r = self.fit_quality["r_holdout"].reindex(list(self.dependent_ids))
        return [g for g, v in zip(self.dependent_ids, r.to_numpy()) if v >= min_r]


def landmark_rows(gct: GCT) -> list[str]:
    """Row ids flagged as landmarks (``pr_is_lm`` or ``pr_is_lmark`` equal to 1)."""
    for name in _LANDMARK_FIELDS:
        if name in gct.row_meta.columns:
            flag = parse_flags(gct.row_meta[name])
            return [rid for rid, f in zip(gct.rids, flag, strict=True) if f]
    raise PipelineError(
        "the compendium has no pr_is_lm (or pr_is_lmark) row field; pass landmark_ids= explicitly"
    )


def _rng(rng: np.random.Generator | int | None) -> tuple[np.random.Generator, int | None]:
    if isinstance(rng, np.random.Generator):
        return rng, None
    seed = 0 if rng is None else int(rng)
    return np.random.default_rng(seed), seed


def train_inference(
    compendium: GCT,
    *,
    landmark_ids: Sequence[str] | None = None,
    dependent_ids: Sequence[str] | None = None,
    holdout_fraction: float = 0.2,
    rng: np.random.Generator | int | None = None,
    refit_all: bool = True,
    clip: tuple[float, float] = INFER_CLIP,
    description: str = "",
    block_size: int = 4096,
) -> InferenceModel:
    """Train an OLS-with-intercept model predicting ``dependent_ids`` from ``landmark_ids``.

    Parameters
    ----------
    compendium:
        Training profiles: rows = landmarks + genes to infer, columns = profiles (log2, finite).
    landmark_ids:
        Predictor rows (default: rows flagged ``pr_is_lm``/``pr_is_lmark`` = 1).
    dependent_ids:
        Rows to infer (default: every other row).
    holdout_fraction:
        Share of profiles held out to measure per-gene quality (0 = no quality measurement).
    rng:
        ``np.random.Generator`` or integer seed (default 0) choosing the held-out profiles.
    refit_all:
        After measuring quality, refit on all profiles (default) rather than the training part.
    clip, description:
        Stored in the model.

    Returns
    -------
    InferenceModel
    """
    lm = [str(i) for i in (landmark_ids if landmark_ids is not None else landmark_rows(compendium))]
    if not lm:
        raise PipelineError("no landmark rows to train on")
    lm_set = set(lm)
    dep = [str(i) for i in dependent_ids] if dependent_ids is not None else [r for r in compendium.rids if r not in lm_set]
    if not dep:
        raise PipelineError("no genes to infer: every row of the compendium is a landmark")
    if lm_set & set(dep):
        raise ConfigError(f"genes both landmark and inferred: {sorted(lm_set & set(dep))[:5]}")
    lm_pos = compendium.row_positions(lm)
    dep_pos = compendium.row_positions(dep)
    if not 0 <= holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    n = compendium.shape[1]
    x_all = compendium.data[lm_pos].astype(np.float64)
    bad_cols = ~np.isfinite(x_all).all(axis=0) | ~np.isfinite(compendium.data[dep_pos]).all(axis=0)
    if bad_cols.any():
        raise PipelineError(
            f"{int(bad_cols.sum())} training profiles have missing values (e.g. {list(compendium.cids[bad_cols][:3])}); "
            "drop or impute them before training"
        )
    gen, seed = _rng(rng)
    n_hold = int(round(holdout_fraction * n))
    if holdout_fraction > 0 and (n_hold < 3 or n - n_hold < 2):
        raise PipelineError(
            f"{n} training profiles are too few to hold out {holdout_fraction:.0%} (need >= 3 held-out and >= 2 training)"
        )
    order = gen.permutation(n)
    hold, train = np.sort(order[:n_hold]), np.sort(order[n_hold:])

    def fit(cols: np.ndarray) -> np.ndarray:
        y = compendium.data[dep_pos][:, cols].T  # (n_cols, D) float32
        return fit_ols(x_all[:, cols].T, y, block_size=block_size)

    weights = fit(train)
    quality = pd.DataFrame(index=pd.Index(dep, dtype=object, name="rid"))
    y_train_pred = predict_ols(weights, x_all[:, train])
    quality["r_train"] = pearson_rows(y_train_pred, compendium.data[dep_pos][:, train])
    if n_hold:
        pred = predict_ols(weights, x_all[:, hold])
        actual = compendium.data[dep_pos][:, hold].astype(np.float64)
        quality["r_holdout"] = pearson_rows(pred, actual)
        quality["rmse_holdout"] = np.sqrt(((pred - actual) ** 2).mean(axis=1))
    else:
        quality["r_holdout"] = np.nan
        quality["rmse_holdout"] = np.nan
    if refit_all and n_hold:
        weights = fit(np.arange(n))
    info = {
        "n_train": int(n if (refit_all or not n_hold) else len(train)),
        "n_holdout": int(n_hold),
        "holdout_fraction": float(holdout_fraction),
        "seed": seed,
        "refit_all": bool(refit_all),
        "description": description,
    }
    log.info("inference model: %d landmarks -> %d genes from %d profiles (%d held out)", len(lm), len(dep), n, n_hold)
    return InferenceModel(
        landmark_ids=tuple(lm),
        dependent_ids=tuple(dep),
        weights=weights,
        fit_quality=quality,
        landmark_meta=compendium.row_meta.iloc[lm_pos].copy(),
        dependent_meta=compendium.row_meta.iloc[dep_pos].copy(),
        clip=clip,
        info=info,
    )


def apply_inference(
    gct: GCT,
    model: InferenceModel,
    *,
    block_size: int = 10_000,
    min_r: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GCT:
    """Infer the model's genes for every column of a Level 3 (QNORM) matrix.

    Parameters
    ----------
    gct:
        Landmark values (log2), genes x samples; must contain every landmark of the model.
        Other rows are ignored.
    model:
        A trained :class:`InferenceModel`.
    block_size:
        Columns processed at a time (bounds memory for large inputs).
    min_r:
        If given, add ``pr_is_bing``: 1 for landmarks and for genes with held-out ``r >= min_r``.
    progress:
        Optional callback ``(columns_done, columns_total)``.

    Returns
    -------
    GCT
        Rows: the landmarks (model order, values as given) then the inferred genes (clipped to
        ``model.clip``), float32; row metadata with ``pr_is_lm``; column metadata of ``gct``.
        A sample with a missing landmark value gets NaN for every inferred gene.
    """
    present = gct.rids
    missing = [g for g in model.landmark_ids if g not in present]
    if missing:
        raise PipelineError(
            f"inference needs all {model.n_landmarks} landmarks of the model; {len(missing)} are missing "
            f"from the input rows: {missing[:20]}{' ...' if len(missing) > 20 else ''}. "
            "Check that the input is in the model's gene space (same row ids)"
        )
    lm_pos = gct.row_positions(list(model.landmark_ids))
    n_cols = gct.shape[1]
    out = np.empty((model.n_landmarks + model.n_dependents, n_cols), dtype=np.float32)
    out[: model.n_landmarks] = gct.data[lm_pos]
    lo, hi = model.clip
    step = max(1, int(block_size))
    for start in range(0, n_cols, step):
        x = gct.data[lm_pos, start : start + step]
        pred = predict_ols(model.weights, x)
        np.clip(pred, lo, hi, out=pred)
        out[model.n_landmarks :, start : start + x.shape[1]] = pred
        if progress is not None:
            progress(min(start + step, n_cols), n_cols)
    rids = list(model.landmark_ids) + list(model.dependent_ids)
    lm_meta = gct.row_meta.iloc[lm_pos]
    row_meta = pd.concat([lm_meta, model.dependent_meta.reindex(list(model.dependent_ids))], axis=0, sort=False)
    row_meta.index = pd.Index(rids, dtype=object, name=gct.row_meta.index.name)
    row_meta = row_meta.drop(columns=[c for c in _LANDMARK_FIELDS + ("pr_is_bing",) if c in row_meta.columns])
    row_meta["pr_is_lm"] = np.r_[np.ones(model.n_landmarks, int), np.zeros(model.n_dependents, int)]
    if min_r is not None:
        good = set(model.well_inferred(min_r))
        row_meta["pr_is_bing"] = [1] * model.n_landmarks + [int(g in good) for g in model.dependent_ids]
    log.info("inference: %d landmarks -> %d genes for %d samples", model.n_landmarks, model.n_dependents, n_cols)
    return GCT(out, row_meta=row_meta, col_meta=gct.col_meta)


def save_inference_model(model: InferenceModel, path: str | PathLike[str], *, weights_dtype: str = "float32") -> Path:
    """Save ``model`` atomically (HDF5, format ``opencmap.inference_model`` v1, see
    :mod:`opencmap.io.infer_model`); ``weights_dtype`` float32 (default) or float64."""
    return write_inference_model(
        path,
        landmark_ids=model.landmark_ids,
        dependent_ids=model.dependent_ids,
        weights=model.weights,
        fit_quality=model.fit_quality,
        landmark_meta=model.landmark_meta,
        dependent_meta=model.dependent_meta,
        clip=model.clip,
        info=model.info,
        weights_dtype=weights_dtype,
    )


def load_inference_model(path: str | PathLike[str]) -> InferenceModel:
    """Load a model saved by :func:`save_inference_model`."""
    return InferenceModel(**read_inference_model(path))
