"""GCTXFile.read_matrix (one strategy with read(), out= buffers) and read_meta copies."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from opencmap.errors import FormatError, ValidationError
from opencmap.io import GCTXFile, read_gctx
from opencmap.io.gctx import MATRIX_NODE

N_COLS, N_ROWS = 30, 9


def _file(path, *, chunks=None, filters=None, dtype=np.float32):
    """A GCTX written directly with h5py; returns the path and the (cols, rows) stored matrix."""
    stored = np.random.default_rng(5).normal(size=(N_COLS, N_ROWS)).astype(dtype)
    with h5py.File(path, "w") as h5:
        h5.attrs["version"] = np.bytes_(b"GCTX1.0")
        h5.create_dataset(MATRIX_NODE, data=stored, chunks=chunks, **(filters or {}))
        h5.create_dataset("/0/META/ROW/id", data=np.array([f"r{i}".encode() for i in range(N_ROWS)]))
        h5.create_dataset("/0/META/COL/id", data=np.array([f"c{i}".encode() for i in range(N_COLS)]))
        h5.create_dataset("/0/META/COL/grp", data=np.array([b"a", b"b", b"c"] * (N_COLS // 3)))
    return path, stored


LAYOUTS = [
    ({}, np.float32),
    ({"chunks": (4, N_ROWS)}, np.float32),
    ({"chunks": (4, N_ROWS), "filters": {"compression": "gzip", "shuffle": True}}, np.float32),
    ({"chunks": (7, N_ROWS), "filters": {"compression": "gzip"}}, np.float64),
    ({"chunks": (3, N_ROWS), "filters": {"fletcher32": True}}, np.float32),
]
COLUMNS = [np.arange(5, 19), np.arange(0, N_COLS), np.array([7]), np.array([20, 3, 4, 11]), np.arange(19, 5, -1)]


@pytest.mark.parametrize(("layout", "dtype"), LAYOUTS)
def test_read_matrix_and_read_agree_with_numpy(tmp_path, layout, dtype):
    path, stored = _file(tmp_path / "m.gctx", dtype=dtype, **layout)
    reference = stored.T.astype(np.float32)
    with GCTXFile(path) as f:
        for cols in COLUMNS:
            for rows in (None, np.array([8, 0, 3])):
                got = f.read_matrix(cidx=cols, ridx=rows)
                want = reference[:, cols] if rows is None else reference[np.ix_(rows, cols)]
                assert got.dtype == np.float32 and got.flags.f_contiguous
                np.testing.assert_array_equal(got, want)
                whole = f.read(cidx=cols, ridx=rows)
                assert whole.data.flags.f_contiguous
                np.testing.assert_array_equal(whole.data, want)
        np.testing.assert_array_equal(f.read_matrix(), reference)


@pytest.mark.parametrize(("layout", "dtype"), LAYOUTS[:3])
def test_read_matrix_into_a_buffer(tmp_path, layout, dtype):
    path, stored = _file(tmp_path / "m.gctx", dtype=dtype, **layout)
    buf = np.full((12, N_ROWS), -1.0, dtype=np.float32)
    with GCTXFile(path) as f:
        for cols in (np.arange(10, 20), np.array([29, 0, 13]), np.array([4])):
            out = buf[: len(cols)]
            got = f.read_matrix(cidx=cols, out=out)
            assert np.shares_memory(got, buf) and got.base is not None
            np.testing.assert_array_equal(out, stored[cols])  # signature-major, as stored
            np.testing.assert_array_equal(got, stored[cols].T)
        assert (buf[10:] == -1.0).all()  # nothing written past the block asked for
        got = f.read_matrix(cidx=[2, 3], ridx=[1, 5], out=np.empty((2, 2), np.float32))
        np.testing.assert_array_equal(got, stored[np.ix_([2, 3], [1, 5])].T)
        for bad in (
            np.empty((3, N_ROWS), np.float32),  # wrong number of columns
            np.empty((2, N_ROWS), np.float64),  # wrong dtype
            np.empty((N_ROWS, 2), np.float32).T,  # not C-contiguous
        ):
            with pytest.raises(ValidationError, match="out="):
                f.read_matrix(cidx=[0, 1], out=bad)


def test_read_matrix_of_a_corrupt_chunk_is_a_format_error(tmp_path):
    path, _ = _file(tmp_path / "m.gctx", chunks=(N_COLS, N_ROWS), filters={"compression": "gzip"})
    with h5py.File(path, "r") as h5:
        offset = h5[MATRIX_NODE].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:  # garble the deflate stream of the only chunk
        fh.seek(offset)
        fh.write(b"\xff" * 64)
    with GCTXFile(path) as f:
        with pytest.raises(FormatError, match="cannot read the matrix"):
            f.read_matrix(cidx=np.arange(3, 9))  # one run of columns
        with pytest.raises(FormatError, match="cannot read the matrix"):
            f.read_matrix(cidx=[9, 2])


def test_read_meta_returns_frames_the_caller_may_change(tmp_path):
    path, _ = _file(tmp_path / "m.gctx")
    with GCTXFile(path) as f:
        rows = f.read_meta("row")
        cols = f.read_meta("col")
        reference_cols = cols.copy()
        rows["extra"] = 1
        cols.iloc[0, 0] = "changed"
        assert "extra" not in f.read_meta("row").columns  # the cached row metadata is untouched
        assert "extra" not in f.read(cidx=[0]).row_meta.columns
        pd.testing.assert_frame_equal(f.read_meta("col"), reference_cols)
        assert f.read_meta("col") is not f.read_meta("col")
    pd.testing.assert_frame_equal(read_gctx(path, meta_only=True).col_meta, reference_cols)
