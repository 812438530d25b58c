"""The Level 4 -> 5 collapse step and landmark selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.kernels.modz import modz
from opencmap.pipeline.modz import collapse_replicates, landmark_positions, landmark_rank_block
from opencmap.pipeline.params import PipelineParams


def _level4(seed: int = 0, n_genes: int = 30, n_cols: int = 9) -> GCT:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"pr_is_lm": [1] * 20 + [0] * (n_genes - 20)}, index=[str(i) for i in range(n_genes)])
    return GCT(rng.normal(0, 3, size=(n_genes, n_cols)), row_meta=rows)


def test_landmark_positions() -> None:
    g = _level4()
    np.testing.assert_array_equal(landmark_positions(g.row_meta), np.arange(20))
    lmark = g.row_meta.rename(columns={"pr_is_lm": "pr_is_lmark"}).astype({"pr_is_lmark": str})
    np.testing.assert_array_equal(landmark_positions(lmark), np.arange(20))
    np.testing.assert_array_equal(landmark_positions(pd.DataFrame(index=range(978))), np.arange(978))
    with pytest.raises(PipelineError, match="cannot tell which of the 1000 rows are landmark"):
        landmark_positions(pd.DataFrame(index=range(1000)))
    with pytest.raises(PipelineError, match="marks 0 landmark"):
        landmark_positions(pd.DataFrame({"pr_is_lm": [0] * 5}))


def test_collapse_equals_kernel_per_group() -> None:
    g = _level4()
    groups = [np.array([0, 3, 6]), np.array([1, 4]), np.array([2]), np.array([5, 7, 8])]
    res = collapse_replicates(g, groups, np.arange(20))
    assert res.consensus.shape == (30, 4) and res.consensus.dtype == np.float32
    for k, cols in enumerate(groups):
        ref = modz(g.data[:, cols], np.arange(20))
        np.testing.assert_allclose(res.consensus[:, k], ref.consensus, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(res.weights[k], ref.weights, rtol=1e-12)


def test_shared_ranks_equal_per_group_ranks() -> None:
    g = _level4(1)
    ranks = landmark_rank_block(g, np.arange(20), PipelineParams())
    groups = [np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7, 8])]
    with_ranks = collapse_replicates(g, groups, np.arange(20), ranks=ranks)
    data = g.data.copy()
    data[25, 0] = np.nan  # a NaN outside the landmarks is fine; within them ranks are per group
    data[3, 8] = np.nan
    g_nan = GCT(data, row_meta=g.row_meta)
    assert landmark_rank_block(g_nan, np.arange(20), PipelineParams()) is None
    res_nan = collapse_replicates(g_nan, groups, np.arange(20))
    np.testing.assert_allclose(res_nan.weights[0], with_ranks.weights[0])
    np.testing.assert_allclose(res_nan.weights[1], modz(data[:, 4:9][[i for i in range(20) if i != 3]]).weights)


def test_cmappy_variant_and_other_consensus() -> None:
    g = _level4(2)
    groups = [np.arange(4)]
    params = PipelineParams(weight_method="mean", round_weights=4)
    res = collapse_replicates(g, groups, np.arange(20), params)
    assert all(len(f"{w:.10f}".rstrip("0").split(".")[1]) <= 4 for w in res.weights[0])
    avg = collapse_replicates(g, groups, np.arange(20), PipelineParams(consensus="avgz"))
    np.testing.assert_allclose(avg.consensus[:, 0], np.clip(g.data[:, :4], -10, 10).mean(axis=1), rtol=1e-6)


def test_empty_group_is_an_error() -> None:
    with pytest.raises(PipelineError, match="empty"):
        collapse_replicates(_level4(), [np.array([], dtype=int)], np.arange(20))
