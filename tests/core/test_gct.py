"""The in-memory GCT container (opencmap.core.gct)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import IdNotFoundError, ValidationError


def _gct() -> GCT:
    data = np.arange(12, dtype=np.float64).reshape(3, 4)
    row_meta = pd.DataFrame({"sym": ["A", "B", "C"]}, index=[780, 5720, 7849])
    col_meta = pd.DataFrame({"dose": [0.1, 1.0, 10.0, np.nan]}, index=["s1", "s2", "s3", "s4"])
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


def test_ids_are_strings_and_data_float32():
    g = _gct()
    assert list(g.rids) == ["780", "5720", "7849"] and g.rids.dtype == object
    assert g.data.dtype == np.float32 and g.shape == (3, 4)
    assert g.row_meta.loc["5720", "sym"] == "B"
    assert GCT(np.zeros((2, 2))).rids.tolist() == ["0", "1"]


def test_validation_errors():
    with pytest.raises(ValidationError, match="2-D"):
        GCT(np.zeros(3))
    with pytest.raises(ValidationError, match="does not match"):
        GCT(np.zeros((2, 2)), rids=["a", "b", "c"])
    with pytest.raises(ValidationError, match="unique"):
        GCT(np.zeros((2, 1)), rids=["a", "a"])
    with pytest.raises(ValidationError, match="metadata does not match"):
        GCT(np.zeros((2, 1)), rids=["a", "b"], row_meta=pd.DataFrame(index=["a", "c"]))
    with pytest.raises(ValidationError, match="DataFrame"):
        GCT(np.zeros((1, 1)), rids=["a"], row_meta={"x": [1]})  # type: ignore[arg-type]


def test_take_subset_positions_and_order():
    g = _gct()
    s = g.subset(rids=[7849, "780"], cids=["s4", "s1"])
    np.testing.assert_array_equal(s.data, np.array([[11, 8], [3, 0]], dtype=np.float32))
    assert list(s.rids) == ["7849", "780"] and list(s.cids) == ["s4", "s1"]
    assert s.col_meta["dose"].isna().tolist() == [True, False]
    assert g.row_positions(["5720"]).tolist() == [1] and g.col_positions(["s3"]).tolist() == [2]
    with pytest.raises(IdNotFoundError, match="nope"):
        g.subset(cids=["nope"])
    with pytest.raises(KeyError):
        g.row_positions(["1"])
    t = g.take([2], None)
    assert t.shape == (1, 4) and t.data is not g.data


def test_equals_and_copy():
    g = _gct()
    c = g.copy()
    assert g.equals(c) and c.data is not g.data
    c.data[0, 0] = 0.5
    assert not g.equals(c) and g.equals(c, atol=1.0)
    n = GCT(np.array([[np.nan]]), rids=["a"], cids=["b"])
    assert n.equals(n.copy())
    other = GCT(g.data, row_meta=g.row_meta.assign(sym=["A", "B", "D"]), col_meta=g.col_meta)
    assert not g.equals(other) and g.equals(other, check_meta=False)
    assert not g.equals("not a gct")  # type: ignore[arg-type]


def test_to_frame_and_repr():
    g = _gct()
    frame = g.to_frame()
    assert frame.shape == (3, 4) and frame.loc["5720", "s2"] == 5
    assert "3 rows x 4 columns" in repr(g)
