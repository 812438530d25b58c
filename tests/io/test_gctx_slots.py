"""GCTXSlots: a GCTX work file allocated up front, filled column range by column range, resumable."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from opencmap.errors import ConfigError, FormatError, ValidationError
from opencmap.io import read_gct
from opencmap.io.gctx import MATRIX_NODE, GCTXSlots

ROWS = pd.DataFrame({"pr_is_lm": [1, 0, 1, 1]}, index=pd.Index(["10", "20", "30", "40"], dtype=object))


def _meta(n: int) -> pd.DataFrame:
    return pd.DataFrame({"rna_plate": ["P1"] * n, "dose": np.arange(n, dtype=float)}, index=[f"c{i}" for i in range(n)])


@pytest.mark.parametrize("resizable", [False, True])
def test_fill_out_of_order_reopen_and_finish(tmp_path: Path, resizable: bool) -> None:
    x = np.arange(4 * 7, dtype=np.float32).reshape(4, 7)
    slots = GCTXSlots.create(tmp_path / "w.gctx", ROWS, 7, resizable=resizable)
    assert slots.shape == (4, 7)
    slots.write(4, x[:, 4:])  # a later block first
    slots.flush()
    slots.close()
    again = GCTXSlots.open(tmp_path / "w.gctx")  # an interrupted run continues the same file
    np.testing.assert_array_equal(again.read(4, 7), x[:, 4:])
    again.write(0, np.asfortranarray(x[:, :4]))
    again.finish(_meta(7), tmp_path / "final.gctx")
    assert not (tmp_path / "w.gctx").exists()
    g = read_gct(tmp_path / "final.gctx")
    np.testing.assert_array_equal(g.data, x)
    assert list(g.rids) == list(ROWS.index) and list(g.cids) == [f"c{i}" for i in range(7)]
    assert g.col_meta["dose"].tolist() == list(range(7)) and g.row_meta["pr_is_lm"].tolist() == [1, 0, 1, 1]
    with h5py.File(tmp_path / "final.gctx") as h5:
        assert (h5[MATRIX_NODE].chunks is None) != resizable  # contiguous unless resizable


def test_resize_only_when_resizable(tmp_path: Path) -> None:
    fixed = GCTXSlots.create(tmp_path / "a.gctx", ROWS, 3)
    with pytest.raises(ConfigError, match="contiguous"):
        fixed.resize(5)
    fixed.close()
    grow = GCTXSlots.create(tmp_path / "b.gctx", ROWS, 3, resizable=True)
    grow.resize(5)
    grow.write(3, np.ones((4, 2), dtype=np.float32))
    assert grow.shape == (4, 5)
    grow.close()


def test_bad_blocks_and_metadata(tmp_path: Path) -> None:
    slots = GCTXSlots.create(tmp_path / "w.gctx", ROWS, 3)
    with pytest.raises(ValidationError, match="does not fit"):
        slots.write(2, np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValidationError, match="does not fit"):
        slots.write(0, np.zeros((3, 1), dtype=np.float32))
    with pytest.raises(ValidationError, match="column metadata"):
        slots.finish(_meta(2), tmp_path / "final.gctx")
    slots.close()
    with pytest.raises(ConfigError, match="closed"):
        slots.write(0, np.zeros((4, 1), dtype=np.float32))


def test_unreadable_work_file(tmp_path: Path) -> None:
    (tmp_path / "broken.gctx").write_bytes(b"not hdf5")
    with pytest.raises(FormatError):
        GCTXSlots.open(tmp_path / "broken.gctx")


def test_gctxfile_read_matrix_values_only(tmp_path: Path) -> None:
    from opencmap.core.gct import GCT
    from opencmap.io import write_gctx
    from opencmap.io.gctx import GCTXFile

    x = np.random.default_rng(0).normal(size=(4, 9)).astype(np.float32)
    write_gctx(GCT(x, row_meta=ROWS, col_meta=_meta(9)), tmp_path / "m.gctx", chunks=2)
    with GCTXFile(tmp_path / "m.gctx") as f:
        for cols in (np.arange(2, 7), np.array([8, 0, 3]), np.arange(9)):
            got = f.read_matrix(cidx=cols)
            assert got.dtype == np.float32 and got.shape == (4, len(cols))
            np.testing.assert_array_equal(got, x[:, cols])
        np.testing.assert_array_equal(f.read_matrix(cidx=[1, 2], ridx=[3, 0]), x[np.ix_([3, 0], [1, 2])])
