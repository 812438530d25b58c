"""Plate censoring after LISS: which wells are dropped from NORM, and why (algorithms.md §2.1).

CMap's ``liss_pipe`` (``censor_bad = true``) removes, in this order of reasons:

``liss_fail``
    the calibration curve failed in any bead set (``qc_pass`` False);
``qc_outlier``
    two or more *strikes* among three LISS QC metrics (``bad_samples``): calibration slope
    below 45 degrees or a left-tail outlier; F-test ``-log10 p`` below 4 or a left-tail outlier;
    linear-scale IQR below 5 or an outlier on either side. Without QC statistics the fallback is
    a single metric, ``2^IQR`` of each NORM column: below 2 or an outlier on either side;
``low_counts``
    ``count_mean < 20`` and ``count_cv > 30`` (bead counts, from the column metadata);
``count_outlier``
    a left-tail outlier in ``count_mean`` that is also a right-tail outlier in ``count_cv``;
``process_control``
    ``pert_type`` starting with ``LMA_`` (case-insensitive): process-control wells.

An *outlier* lies beyond ``cutoff`` (2) inter-quartile ranges below Q1 / above Q3 (MATLAB
percentiles, NaN ignored). Missing count fields skip the count rules (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import ConfigError
from opencmap.kernels.percentile import prctile

__all__ = ["CensorParams", "CENSOR_REASONS", "outliers_1d", "censor_plate"]

log = logging.getLogger(__name__)

#: Reasons a well can be censored, in report order.
CENSOR_REASONS = ("liss_fail", "qc_outlier", "low_counts", "count_outlier", "process_control")


@dataclass(frozen=True)
class CensorParams:
    """Censoring rules with CMap's defaults (``liss_pipe``, ``bad_samples``, ``outlier1d``)."""

    qc_metrics: tuple[tuple[str, float, str], ...] = (
        ("calib_slope_deg", 45.0, "left"),
        ("f_logpval", 4.0, "left"),
        ("iqr", 5.0, "both"),
    )
    """(QC column, minimum value, outlier tail) triples scored as strikes."""
    min_strikes: int = 2
    """A well with at least this many strikes is a QC outlier (CMap: more than half the metrics)."""
    outlier_cutoff: float = 2.0
    fallback_min_iqr: float = 2.0
    """Fallback rule (no QC table): minimum linear-scale IQR of a NORM column."""
    count_mean_min: float = 20.0
    count_cv_max: float = 30.0
    count_outlier_cutoff: float = 2.0
    process_control_prefix: str = "LMA_"
    drop: tuple[str, ...] = CENSOR_REASONS
    """Which reasons actually remove wells (all by default)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "qc_metrics", tuple((str(m), float(v), str(t)) for m, v, t in self.qc_metrics))
        object.__setattr__(self, "drop", tuple(self.drop))
        bad = [t for _, _, t in self.qc_metrics if t not in ("left", "right", "both")]
        if bad:
            raise ConfigError(f"censor qc_metrics tails must be left, right or both; got {bad}")
        unknown = sorted(set(self.drop) - set(CENSOR_REASONS))
        if unknown:
            raise ConfigError(f"unknown censor reason(s) {unknown}; known: {list(CENSOR_REASONS)}")
        if self.min_strikes < 1:
            raise ConfigError("censor min_strikes must be >= 1")

    def replace(self, **changes: Any) -> CensorParams:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown censor parameter(s) {unknown}; known: {sorted(known)}")
        return replace(self, **changes)


def outliers_1d(x: np.ndarray, *, cutoff: float = 1.5, tail: str = "both") -> np.ndarray:
    """Boolean mask of values beyond ``cutoff`` IQRs outside [Q1, Q3] (CMap ``outlier1d``).

    Quartiles are MATLAB percentiles over the finite values; NaN is never an outlier.
    """
    v = np.asarray(x, dtype=np.float64)
    if not np.isfinite(v).any():
        return np.zeros(v.shape, dtype=bool)
    q1, q3 = prctile(v, [25.0, 75.0])
    w = cutoff * (q3 - q1)
    with np.errstate(invalid="ignore"):
        low = v < q1 - w
        high = v > q3 + w
    if tail == "left":
        return low
    if tail == "right":
        return high
    if tail == "both":
        return low | high
    raise ConfigError(f"outlier tail must be left, right or both, got {tail!r}")


def _numeric(values: pd.Series) -> np.ndarray:
    out = pd.to_numeric(values.astype(object).where(values.astype(object) != "-666", np.nan), errors="coerce")
    return out.to_numpy(dtype=np.float64)


def censor_plate(
    norm: GCT,
    qc: pd.DataFrame | None = None,
    *,
    params: CensorParams = CensorParams(),
) -> tuple[GCT, pd.DataFrame]:
    """Drop failed and outlier wells from a NORM plate.

    Parameters
    ----------
    norm:
        NORM matrix of one plate (e.g. from :func:`opencmap.pipeline.liss.liss_plate`); its
        column metadata may hold ``count_mean``, ``count_cv`` and ``pert_type``.
    qc:
        The per-well QC table of ``liss_plate`` (``qc_pass`` and the ``params.qc_metrics``
        columns), indexed by the column ids. ``None`` uses the IQR fallback rule.

    Returns
    -------
    kept:
        ``norm`` without the censored wells (the order of the rest unchanged).
    report:
        One row per well of ``norm``: a bool column per reason, ``n_strikes``, ``censored`` and
        ``reason`` (the reasons that apply, ``;``-joined; empty when kept).
    """
    cids = norm.cids
    n = len(cids)
    flags = {r: np.zeros(n, dtype=bool) for r in CENSOR_REASONS}
    strikes = np.zeros(n, dtype=np.int64)
    meta = norm.col_meta

    if qc is not None and all(m in qc.columns for m, _, _ in params.qc_metrics):
        q = qc.reindex(cids)
        if q.index.isin(qc.index).sum() < n:
            missing = cids[~cids.isin(qc.index)][:5].tolist()
            raise ConfigError(f"QC table has no row for wells {missing}; pass the QC table of the same plate")
        if "qc_pass" in q.columns:
            flags["liss_fail"] = ~q["qc_pass"].astype(bool).to_numpy()
        for metric, minimum, tail in params.qc_metrics:
            x = q[metric].to_numpy(dtype=np.float64)
            with np.errstate(invalid="ignore"):
                strike = (x < minimum) | outliers_1d(x, cutoff=params.outlier_cutoff, tail=tail)
            strikes += strike
        flags["qc_outlier"] = strikes >= params.min_strikes
    else:
        if qc is not None and "qc_pass" in qc.columns:
            flags["liss_fail"] = ~qc.reindex(cids)["qc_pass"].fillna(False).astype(bool).to_numpy()
        log.info("censor: no LISS QC statistics, using the IQR fallback rule")
        q1, q3 = prctile(norm.data, [25.0, 75.0], axis=0)
        iqr = np.exp2(q3 - q1)
        strike = (iqr < params.fallback_min_iqr) | outliers_1d(iqr, cutoff=params.outlier_cutoff, tail="both")
        strikes += strike
        flags["qc_outlier"] = strike

    if "count_mean" in meta.columns and "count_cv" in meta.columns:
        mean = _numeric(meta["count_mean"])
        cv = _numeric(meta["count_cv"])
        with np.errstate(invalid="ignore"):
            flags["low_counts"] = (mean < params.count_mean_min) & (cv > params.count_cv_max)
        flags["count_outlier"] = outliers_1d(mean, cutoff=params.count_outlier_cutoff, tail="left") & outliers_1d(
            cv, cutoff=params.count_outlier_cutoff, tail="right"
        )
    else:
        log.info("censor: no count_mean/count_cv column metadata; bead-count rules skipped")

    if "pert_type" in meta.columns:
        prefix = params.process_control_prefix.lower()
        flags["process_control"] = meta["pert_type"].astype(str).str.lower().str.startswith(prefix).to_numpy()

    report = pd.DataFrame(flags, index=cids.copy())
    report["n_strikes"] = strikes
    active = report[list(params.drop)].to_numpy() if params.drop else np.zeros((n, 0), bool)
    report["censored"] = active.any(axis=1)
    report["reason"] = [
        ";".join(r for r in params.drop if report[r].iloc[i]) for i in range(n)
    ]
    keep = np.flatnonzero(~report["censored"].to_numpy())
    if len(keep) < n:
        log.info("censor: %d of %d wells removed: %s", n - len(keep), n, dict(report.loc[report["censored"], "reason"]))
    return norm.take(cols=keep), report
