"""maxq summaries per perturbagen x cell, perturbagen and PCL (spec §6.7-6.8, example 9.8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.query.summaries import summarise

INFO = pd.DataFrame(
    {
        "sig_id": [f"s{i}" for i in range(9)],
        "pert_id": ["p1", "p1", "p1", "p1", "p2", "p2", "p3", "p3", "p4"],
        "cell_id": ["A", "A", "A", "A", "A", "B", "A", "B", "A"],
        "pert_iname": ["one", "one", "one", "one", "two", "two", "three", "three", "four"],
    }
)
# p1 in cell A: [-1.2, 0.3, 0.8, 1.5] -> maxq 0.926 (example 9.8)
NCS = np.array([[-1.2], [0.3], [0.8], [1.5], [-2.0], [0.4], [1.0], [2.0], [0.7]], dtype=np.float32)


def test_pert_cell_and_pert_summary():
    out = summarise(NCS, INFO)
    pc_index, pc = out["pert_cell"]
    assert list(pc_index["id"]) == ["p1:A", "p2:A", "p2:B", "p3:A", "p3:B", "p4:A"]
    assert list(pc_index["n_sigs"]) == [4, 1, 1, 1, 1, 1]
    assert pc[0, 0] == pytest.approx(0.926, abs=1e-5)
    assert pc[1, 0] == pytest.approx(-2.0)
    ps_index, ps = out["pert_summary"]
    assert list(ps_index["id"]) == ["p1", "p2", "p3", "p4"]
    assert list(ps_index["n_cells"]) == [1, 2, 2, 1]
    assert ps_index["pert_iname"].tolist() == ["one", "two", "three", "four"]
    # p2 over cells [-2.0, 0.4]: q33 = -2 + (0.33*2+... ) -> compare with the percentile kernel
    from opencmap.kernels.percentile import maxq

    assert ps[1, 0] == pytest.approx(float(maxq(np.array([-2.0, 0.4]))), abs=1e-6)
    assert ps[0, 0] == pytest.approx(0.926, abs=1e-5)


def test_pcl_levels_need_two_members():
    pcl = {"X": ["p1", "p2", "zzz"], "Y": ["p3", "nobody"], "Z": ["p2", "p3", "p4"]}
    out = summarise(NCS, INFO, pcl=pcl)
    idx, vals = out["pcl_summary"]
    assert list(idx["id"]) == ["X", "Z"]  # Y has one member present
    ps_idx, ps = out["pert_summary"]
    from opencmap.kernels.percentile import maxq

    members = ps[[0, 1], 0]
    assert vals[0, 0] == pytest.approx(float(maxq(members)), abs=1e-6)
    cell_idx, _ = out["pcl_cell"]
    assert list(cell_idx["id"]) == ["X:A", "Z:A", "Z:B"]
    assert list(cell_idx["n_members"]) == [2, 3, 2]


def test_several_queries_are_columns():
    two = np.hstack([NCS, -NCS])
    out = summarise(two, INFO)
    _, pc = out["pert_cell"]
    assert pc.shape == (6, 2)
    np.testing.assert_allclose(pc[1:, 1], -pc[1:, 0])


def test_nan_aware_percentiles_match_numpy():
    """Summaries of NaN-holding matrices (backgrounds) use the vectorised NaN path of prctile."""
    import warnings

    from opencmap.kernels.percentile import prctile

    rng = np.random.default_rng(11)
    for _ in range(50):
        x = np.round(rng.standard_normal((4, 7, 3)), 1)
        x[rng.random(x.shape) < 0.4] = np.nan
        axis = int(rng.integers(0, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.nanpercentile(x, [33, 67], axis=axis, method="hazen")
        np.testing.assert_array_equal(prctile(x, [33, 67], axis=axis), ref)
