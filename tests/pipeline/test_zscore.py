"""The Level 3 -> 4 step on a plate: ZSPC/ZSVC backgrounds, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.kernels.zscore import robust_zscore
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.zscore import zscore_plate


def _plate(n_genes: int = 8, types: tuple[str, ...] = ("ctl_vehicle",) * 3 + ("trt_cp",) * 7) -> GCT:
    rng = np.random.default_rng(4)
    cids = [f"P1_X1:A{i:02d}" for i in range(len(types))]
    meta = pd.DataFrame({"rna_plate": "P1_X1", "pert_type": list(types)}, index=cids)
    return GCT(rng.normal(8, 1, size=(n_genes, len(types))), col_meta=meta)


def test_zspc_is_the_kernel_on_the_whole_plate() -> None:
    plate = _plate()
    out = zscore_plate(plate)
    assert out.data.dtype == np.float32
    np.testing.assert_allclose(out.data, robust_zscore(plate.data.astype(np.float32)), rtol=1e-6)
    assert out.col_meta.equals(plate.col_meta) and out.rids.equals(plate.rids)


def test_zsvc_uses_vehicle_wells_only() -> None:
    plate = _plate()
    out = zscore_plate(plate, PipelineParams(zscore_method="zsvc"))
    np.testing.assert_allclose(out.data, robust_zscore(plate.data.astype(np.float32), np.arange(3)), rtol=1e-6)
    # the vehicles' median is 0 in each gene (3 vehicles: the middle one)
    assert np.allclose(np.median(out.data[:, :3], axis=1), 0, atol=1e-6)


def test_zsvc_without_vehicles_names_the_plate() -> None:
    plate = _plate(types=("trt_cp",) * 6)
    with pytest.raises(PipelineError, match=r"plate P1_X1 has no vehicle-control wells"):
        zscore_plate(plate, PipelineParams(zscore_method="zsvc"))
    no_field = GCT(plate.data, col_meta=plate.col_meta.drop(columns=["pert_type"]))
    with pytest.raises(PipelineError, match="pert_type"):
        zscore_plate(no_field, PipelineParams(zscore_method="zsvc"))


def test_nan_raises_by_default_and_is_ignored_with_omit() -> None:
    plate = _plate()
    data = plate.data.copy()
    data[2, 5] = np.nan
    bad = GCT(data, row_meta=plate.row_meta, col_meta=plate.col_meta)
    with pytest.raises(PipelineError, match=r"1 missing \(NaN\) values, first at gene 2, sample P1_X1:A05"):
        zscore_plate(bad)
    out = zscore_plate(bad, PipelineParams(nan_policy="omit"))
    assert np.isnan(out.data[2, 5]) and np.isfinite(np.delete(out.data.ravel(), 2 * 10 + 5)).all()
    data[0, 0] = np.inf
    with pytest.raises(PipelineError, match="infinite"):
        zscore_plate(GCT(data, col_meta=plate.col_meta), PipelineParams(nan_policy="omit"))


def test_zero_mad_without_floor_is_an_error_not_nan() -> None:
    plate = _plate()
    data = plate.data.copy()
    data[1] = 5.0
    with pytest.raises(PipelineError, match="zero MAD"):
        zscore_plate(GCT(data, col_meta=plate.col_meta), PipelineParams(var_adjustment="none"))
    out = zscore_plate(GCT(data, col_meta=plate.col_meta))  # default floor: constant gene -> 0
    assert (out.data[1] == 0).all()


def test_empty_plate() -> None:
    with pytest.raises(PipelineError, match="no samples"):
        zscore_plate(GCT(np.zeros((3, 0))), plate_id="P0")
