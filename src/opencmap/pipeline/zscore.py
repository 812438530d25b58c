"""Level 3 → Level 4: robust z-scores of one plate (algorithms.md §3).

ZSPC (default) scores every well against the whole plate; ZSVC against the plate's vehicle
wells (``pert_type`` in ``params.vehicle_pert_types``, by default ``ctl_vehicle``). The wells a
plate is scored against are its *reference wells* (:func:`reference_columns`; "background" is
kept for the query's null distribution, :mod:`opencmap.query.background`). Values are
not clipped here (the ±10 clip happens at Level 5). The kernel is
:func:`opencmap.kernels.zscore.robust_zscore`.
"""

from __future__ import annotations

import numpy as np

from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.kernels.zscore import robust_zscore
from opencmap.pipeline.params import PipelineParams

__all__ = ["zscore_plate", "reference_columns", "background_columns", "check_finite"]


def _plate_label(plate: GCT, plate_id: str | None) -> str:
    if plate_id is not None:
        return plate_id
    if "rna_plate" in plate.col_meta.columns and len(plate.col_meta):
        return str(plate.col_meta["rna_plate"].iloc[0])
    return "<unnamed plate>"


def reference_columns(plate: GCT, params: PipelineParams, *, plate_id: str | None = None) -> np.ndarray | None:
    """Column positions of the reference wells of the z-scores: ``None`` (every well) for ZSPC,
    the vehicle wells for ZSVC.

    Raises :class:`PipelineError` naming the plate when ZSVC finds no vehicle wells.
    """
    if params.zscore_method == "zspc":
        return None
    label = _plate_label(plate, plate_id)
    if "pert_type" not in plate.col_meta.columns:
        raise PipelineError(
            f"plate {label}: ZSVC needs the column field 'pert_type' to find vehicle wells; "
            "add it to the instance table or use --zscore zspc"
        )
    is_vehicle = plate.col_meta["pert_type"].astype("str").isin(params.vehicle_pert_types).to_numpy()
    if not is_vehicle.any():
        raise PipelineError(
            f"plate {label} has no vehicle-control wells (pert_type in {list(params.vehicle_pert_types)}) "
            f"among its {plate.shape[1]} wells, so ZSVC cannot score it; use ZSPC (--zscore zspc) "
            "or annotate its vehicle wells"
        )
    return np.flatnonzero(is_vehicle)


def check_finite(gct: GCT, params: PipelineParams, *, what: str) -> int:
    """Raise :class:`PipelineError` on NaN/inf values unless ``params.nan_policy == "omit"``.

    Returns the number of missing values (infinite values are always an error).
    """
    data = gct.data
    if np.isfinite(data).all():  # the common case: one pass, no index arrays
        return 0
    inf = np.isinf(data)
    if inf.any():
        g, s = np.argwhere(inf)[0]
        raise PipelineError(f"{what}: infinite value at gene {gct.rids[g]}, sample {gct.cids[s]}; fix the input")
    nan = np.isnan(data)
    n_nan = int(nan.sum())
    if n_nan and params.nan_policy == "raise":
        g, s = np.argwhere(nan)[0]
        raise PipelineError(
            f"{what}: {n_nan} missing (NaN) values, first at gene {gct.rids[g]}, sample {gct.cids[s]}; "
            "remove those samples/genes or run with nan_policy='omit' (--nan-policy omit) to ignore them"
        )
    return n_nan


def zscore_plate(
    plate: GCT, params: PipelineParams | None = None, *, plate_id: str | None = None, out: np.ndarray | None = None, threads: int = 1
) -> GCT:
    """Robust z-scores of one Level 3 plate (genes × wells) → Level 4 GCT (float32).

    Metadata are kept. NaN inputs (only with ``nan_policy='omit'``) are ignored by the
    medians and stay NaN. ``out``: a contiguous float32 ``(genes, wells)`` array to hold the
    z-scores (e.g. a slice of a buffer reused plate after plate). ``threads``: of the z-score
    kernel (given by the backend, :mod:`opencmap.backends`); same values.
    """
    params = params or PipelineParams()
    label = _plate_label(plate, plate_id)
    if plate.shape[1] == 0:
        raise PipelineError(f"plate {label} has no samples")
    n_missing = check_finite(plate, params, what=f"plate {label}")
    reference = reference_columns(plate, params, plate_id=label)
    z = robust_zscore(
        plate.data.astype(np.float32, copy=False),
        reference,  # the kernel's `background` argument
        min_mad=params.min_mad,
        var_adjustment=params.var_adjustment,
        estimate_prct=params.estimate_prct,
        out=out,
        threads=threads,
    )
    bad = None if n_missing == 0 and np.isfinite(z).all() else ~np.isfinite(z) & np.isfinite(plate.data)
    if bad is not None and bad.any():
        g = int(np.argwhere(bad)[0][0])
        raise PipelineError(
            f"plate {label}: gene {plate.rids[g]} has a zero MAD (or no values) over the reference wells, so its z-scores "
            f"are undefined with var_adjustment={params.var_adjustment!r}; use 'fixed' (the default) or 'estimate'"
        )
    return GCT(z, row_meta=plate.row_meta, col_meta=plate.col_meta)


#: Former name of :func:`reference_columns` (kept importable).
background_columns = reference_columns
