"""Concatenating GCT/GCTX files (opencmap.io.concat)."""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import ValidationError
from opencmap.io import concat_files, read_gct, write_gct, write_gctx


def test_columns_with_different_fields_and_row_order(tmp_path, small_gct):
    a = small_gct.take(None, [0, 1])
    b = small_gct.take([6, 5, 4, 3, 2, 1, 0], [2, 3, 4])
    b = GCT(b.data, row_meta=b.row_meta, col_meta=b.col_meta.drop(columns=["pert_time"]).assign(extra=["u", "v", "w"]))
    write_gctx(a, tmp_path / "a.gctx")
    write_gct(b, tmp_path / "b.gct")
    seen = []
    concat_files([tmp_path / "a.gctx", tmp_path / "b.gct"], tmp_path / "c.gctx", progress=lambda d, t: seen.append((d, t)))
    c = read_gct(tmp_path / "c.gctx")
    assert seen == [(1, 2), (2, 2)]
    assert c.rids.equals(small_gct.rids) and c.cids.equals(small_gct.cids)
    np.testing.assert_array_equal(c.data, small_gct.data)
    assert c.col_meta["extra"].isna().tolist() == [True, True, False, False, False]
    assert c.col_meta["pert_time"].isna().tolist() == [False, False, True, True, True]


def test_rows_in_memory_to_text(tmp_path, small_gct):
    write_gctx(small_gct.take([0, 1, 2], None), tmp_path / "a.gctx")
    write_gctx(small_gct.take([3, 4, 5, 6], [4, 3, 2, 1, 0]), tmp_path / "b.gctx")
    out = concat_files([tmp_path / "a.gctx", tmp_path / "b.gctx"], tmp_path / "r.gct", axis="row")
    assert out is not None and out.equals(small_gct, check_meta=False)
    assert read_gct(tmp_path / "r.gct").equals(out)


def test_mismatches_are_errors(tmp_path, small_gct):
    write_gctx(small_gct, tmp_path / "a.gctx")
    write_gctx(small_gct.take([0, 1], None), tmp_path / "b.gctx")
    with pytest.raises(ValidationError, match="row ids differ"):
        concat_files([tmp_path / "a.gctx", tmp_path / "b.gctx"], tmp_path / "c.gctx")
    with pytest.raises(ValidationError, match="repeated across the inputs"):
        concat_files([tmp_path / "a.gctx", tmp_path / "a.gctx"], tmp_path / "c.gctx")
    assert not (tmp_path / "c.gctx").exists()
