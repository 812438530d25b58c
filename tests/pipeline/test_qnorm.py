"""QNORM step on GCTs: metadata kept, sketch mode, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.kernels.qnorm import quantile_normalize
from opencmap.pipeline.qnorm import qnorm_plate, qnorm_target


def _gct(rng: np.random.Generator, n_genes: int = 40, n_wells: int = 6) -> GCT:
    data = np.round(rng.normal(8, 2, (n_genes, n_wells)), 1)  # rounded: plenty of ties
    rows = pd.DataFrame({"pr_gene_symbol": [f"S{i}" for i in range(n_genes)]}, index=[str(1000 + i) for i in range(n_genes)])
    cols = pd.DataFrame({"pert_type": ["trt_cp"] * n_wells}, index=[f"P:A{i:02d}" for i in range(n_wells)])
    return GCT(data, row_meta=rows, col_meta=cols)


def test_plate_qnorm_keeps_ids_and_metadata() -> None:
    g = _gct(np.random.default_rng(0))
    out = qnorm_plate(g)
    assert out.rids.equals(g.rids) and out.cids.equals(g.cids)
    assert out.row_meta.equals(g.row_meta) and out.col_meta.equals(g.col_meta)
    np.testing.assert_allclose(out.data, quantile_normalize(g.data.astype(np.float64)), atol=1e-6)
    assert out.data.dtype == np.float32


def test_sketch_mode_is_per_sample() -> None:
    rng = np.random.default_rng(1)
    ref = _gct(rng, n_wells=20)
    target = qnorm_target(ref)
    g = _gct(rng)
    whole = qnorm_plate(g, sketch_target=target)
    alone = qnorm_plate(g.take(cols=[2]), sketch_target=target)
    np.testing.assert_array_equal(whole.data[:, [2]], alone.data)
    np.testing.assert_allclose(np.sort(whole.data[:, 0]), np.sort(target), atol=1e-5)


def test_errors() -> None:
    g = _gct(np.random.default_rng(2))
    with pytest.raises(PipelineError, match="no wells"):
        qnorm_plate(g.take(cols=[]))
    with pytest.raises(PipelineError, match="finite"):
        qnorm_plate(g, sketch_target=np.array([1.0, np.nan]))
