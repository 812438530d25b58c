"""GCTX (HDF5): layout, partial reads, streaming writes, bad files (opencmap.io.gctx)."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.backends import Settings
from opencmap.errors import ConfigError, FormatError, IdNotFoundError, ValidationError, VersionError
from opencmap.io import GCTXFile, GCTXWriter, read_gct, read_meta, write_gctx
from opencmap.io.gctx import MATRIX_NODE, _plan_blocks, default_chunks, gctx_info, read_gctx


def _raw_layout_file(path, data_cols_rows, *, chunks=None, row_ids=None, col_ids=None, version=b"GCTX1.0", filters=None, **meta):
    """A GCTX written directly with h5py (an independent writer), matrix given as (cols, rows)."""
    n_cols, n_rows = data_cols_rows.shape
    with h5py.File(path, "w") as h5:
        if version is not None:
            h5.attrs["version"] = np.bytes_(version)
        h5.create_dataset(MATRIX_NODE, data=data_cols_rows, chunks=chunks, **(filters or {}))
        h5.create_dataset("/0/META/ROW/id", data=row_ids if row_ids is not None else np.array([f"r{i}".encode() for i in range(n_rows)]))
        h5.create_dataset("/0/META/COL/id", data=col_ids if col_ids is not None else np.array([f"c{i}".encode() for i in range(n_cols)]))
        for name, values in meta.items():
            h5.create_dataset(name, data=values)
    return path


def test_written_layout_matches_cmap(tmp_path, small_gct):
    path = tmp_path / "x.gctx"
    write_gctx(small_gct, path)
    with h5py.File(path, "r") as h5:
        assert h5.attrs["version"] == b"GCTX1.0"
        assert h5.attrs["src"] == "x.gctx"
        ds = h5[MATRIX_NODE]
        assert ds.shape == (5, 7) and ds.dtype == np.float32  # stored (n_cols, n_rows)
        np.testing.assert_array_equal(ds[()], small_gct.data.T)
        assert ds.chunks == default_chunks(7)
        assert h5["/0/META/ROW/id"].dtype.kind == "S"
        assert [v.decode() for v in h5["/0/META/ROW/id"][()]] == list(small_gct.rids)
        assert list(h5["/0/META/COL"].keys()) == ["id", "pert_iname", "pert_dose", "pert_time"]
        assert h5["/0/META/COL/pert_dose"][-1] == -666  # missing written as -666
        assert h5["/0/META/COL/pert_iname"][1] == b"-666"
        assert h5["/0/META/COL/pert_time"].dtype == np.int64


def test_round_trip_exact(tmp_path, small_gct):
    for options in ({}, {"compression": "gzip"}, {"chunks": 1}, {"chunks": (2, 3)}):
        path = tmp_path / "rt.gctx"
        write_gctx(small_gct, path, **options)
        back = read_gct(path)
        assert back.equals(small_gct), options
        for frame, orig in ((back.row_meta, small_gct.row_meta), (back.col_meta, small_gct.col_meta)):
            assert list(frame.dtypes) == list(orig.dtypes)


def test_gzip_option_is_stored(tmp_path, small_gct):
    write_gctx(small_gct, tmp_path / "z.gctx", compression="gzip", compression_level=6)
    info = gctx_info(tmp_path / "z.gctx")
    assert info.compression == "gzip (6)"
    with pytest.raises(ConfigError):
        write_gctx(small_gct, tmp_path / "bad.gctx", compression="lz4")
    assert not (tmp_path / "bad.gctx").exists()


@pytest.mark.parametrize(
    ("chunks", "filters", "dtype"),
    [
        (None, None, np.float32),  # contiguous: hyperslab path
        ((3, 11), None, np.float32),  # whole-column chunks: raw chunk path
        ((1, 11), None, np.float64),
        ((4, 5), None, np.float32),  # chunks split rows: hyperslab path
        ((40, 11), None, np.float32),
        ((3, 11), {"compression": "gzip", "shuffle": True}, np.float32),  # raw chunks, gunzip + unshuffle here
        ((7, 11), {"compression": "gzip"}, np.float64),
        ((3, 11), {"fletcher32": True}, np.float32),  # other filters: HDF5 decodes
    ],
)
def test_partial_reads_match_numpy(tmp_path, chunks, filters, dtype):
    rng = np.random.default_rng(1)
    n_rows, n_cols = 11, 40
    stored = rng.normal(size=(n_cols, n_rows)).astype(dtype)
    path = _raw_layout_file(
        tmp_path / "p.gctx",
        stored,
        chunks=chunks,
        filters=filters,
        **{"/0/META/COL/grp": np.array([b"a", b"b"] * 20), "/0/META/ROW/num": np.arange(n_rows)},
    )
    full = stored.T
    cases = [
        (None, rng.permutation(n_cols)[:7]),
        (rng.permutation(n_rows)[:4], None),
        (rng.permutation(n_rows)[:5], rng.permutation(n_cols)[:9]),
        (np.array([0, 1, 2]), np.arange(10, 30)),
        (np.array([10, 3]), np.array([39, 0, 20, 21, 22, 5])),
        (None, np.array([], dtype=int)),
        (np.arange(n_rows)[::-1], np.arange(n_cols)[::-1]),
    ]
    for ridx, cidx in cases:
        g = read_gctx(path, ridx=ridx, cidx=cidx)
        expected = full[slice(None) if ridx is None else ridx][:, slice(None) if cidx is None else cidx]
        np.testing.assert_array_equal(g.data, expected.astype(np.float32))
        assert list(g.rids) == [f"r{i}" for i in (range(n_rows) if ridx is None else ridx)]
        assert list(g.cids) == [f"c{i}" for i in (range(n_cols) if cidx is None else cidx)]
    g = read_gctx(path, col_filter={"grp": "b"}, row_filter=lambda m: m["num"] % 3 == 0)
    np.testing.assert_array_equal(g.data, full[::3][:, 1::2].astype(np.float32))
    assert g.col_meta["grp"].eq("b").all()


def test_plan_blocks_groups_by_chunk():
    pos = np.array([0, 1, 5, 9, 10, 40, 41, 100])
    # neighbouring chunks 0 and 1 merge (span <= 20); 4 and 10 are read alone
    assert _plan_blocks(pos, 10, 20) == [(0, 5), (5, 7), (7, 8)]
    # a span limit of one chunk splits at the chunk boundary
    assert _plan_blocks(pos, 10, 10) == [(0, 4), (4, 5), (5, 7), (7, 8)]
    assert _plan_blocks(np.arange(100), 10, 25) == [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100)]
    assert _plan_blocks(np.array([], dtype=int), 10, 20) == []
    # unchunked: runs separated by small gaps merge
    assert _plan_blocks(np.array([0, 1, 2, 50, 51]), None, 1000) == [(0, 3), (3, 5)]


def test_subset_by_ids_keeps_requested_order(tmp_path, small_gct):
    path = tmp_path / "ids.gctx"
    write_gctx(small_gct, path)
    g = read_gct(path, rid=[784, "780"], cid=["PLATE:A03", "PLATE:A00"])
    assert g.equals(small_gct.subset(rids=["784", "780"], cids=["PLATE:A03", "PLATE:A00"]))
    with pytest.raises(IdNotFoundError, match="not in the file"):
        read_gct(path, cid=["PLATE:A03", "missing"])
    with pytest.raises(IdNotFoundError, match="out of range"):
        read_gct(path, cidx=[0, 99])
    with pytest.raises(IdNotFoundError, match="no metadata field"):
        read_gct(path, col_filter={"nope": 1})


def test_dict_filter_compares_numbers_numerically(tmp_path, small_gct):
    path = tmp_path / "f.gctx"
    write_gctx(small_gct, path)
    assert read_gct(path, col_filter={"pert_time": "24"}).shape == (7, 5)
    assert read_gct(path, col_filter={"pert_time": [12, 48]}).shape == (7, 0)
    assert list(read_gct(path, col_filter={"pert_iname": ["drug 2", "drug 4"]}).cids) == ["PLATE:A02", "PLATE:A04"]
    with pytest.raises(ConfigError, match="boolean mask"):
        read_gct(path, col_filter=lambda m: m["pert_time"])


def test_meta_only_reads_no_matrix(tmp_path, small_gct):
    path = tmp_path / "m.gctx"
    write_gctx(small_gct, path)
    g = read_gct(path, meta_only=True, cid=["PLATE:A01"])
    assert g.shape == (7, 1) and g.data.strides == (0, 0) and np.isnan(g.data).all()
    assert g.col_meta.equals(small_gct.col_meta.iloc[[1]])
    assert read_meta(path, "row").equals(small_gct.row_meta)
    assert read_meta(path, "col").equals(small_gct.col_meta)


def test_streaming_writer(tmp_path, small_gct):
    path = tmp_path / "stream.gctx"
    with GCTXWriter(path, small_gct.row_meta, chunks=2) as writer:
        for a in range(0, 5, 2):
            writer.append(small_gct.data[:, a : a + 2], small_gct.col_meta.iloc[a : a + 2])
        assert not path.exists()  # appears only when closed
        assert writer.n_cols == 5
    assert read_gct(path).equals(small_gct)


def test_writer_failure_leaves_no_file(tmp_path, small_gct):
    path = tmp_path / "fail.gctx"
    with pytest.raises(ValidationError, match="block must be"):
        with GCTXWriter(path, small_gct.row_meta) as writer:
            writer.append(small_gct.data[:, :2], small_gct.col_meta.iloc[:2])
            writer.append(small_gct.data[:3, 2:], small_gct.col_meta.iloc[2:])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with GCTXWriter(path, small_gct.row_meta) as writer:
            writer.append(small_gct.data, small_gct.col_meta)
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_writer_checks_ids_and_fields(tmp_path, small_gct):
    with pytest.raises(ValidationError, match="already written"):
        with GCTXWriter(tmp_path / "d.gctx", small_gct.row_meta) as writer:
            writer.append(small_gct.data[:, :2], small_gct.col_meta.iloc[:2])
            writer.append(small_gct.data[:, :2], small_gct.col_meta.iloc[:2])
    with pytest.raises(ValidationError, match="fields differ"):
        with GCTXWriter(tmp_path / "d.gctx", small_gct.row_meta) as writer:
            writer.append(small_gct.data[:, :2], small_gct.col_meta.iloc[:2])
            writer.append(small_gct.data[:, 2:], small_gct.col_meta.iloc[2:, :1])
    with pytest.raises(ValidationError, match="differs from the row ids"):
        GCTXWriter(tmp_path / "d.gctx", small_gct.row_meta.assign(id=1))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_failed_write(tmp_path, small_gct):
    path = tmp_path / "keep.gctx"
    write_gctx(small_gct, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with GCTXWriter(path, small_gct.row_meta) as writer:
            writer.append(small_gct.data, small_gct.col_meta)
            raise RuntimeError("stop")
    assert path.read_bytes() == before


def test_integer_and_float_ids_become_strings(tmp_path):
    path = _raw_layout_file(
        tmp_path / "int.gctx",
        np.zeros((2, 3), dtype=np.float32),
        row_ids=np.array([5720, 780, 7849]),
        col_ids=np.array([1.0, 2.0]),
    )
    g = read_gct(path)
    assert list(g.rids) == ["5720", "780", "7849"] and list(g.cids) == ["1", "2"]
    assert g.rids.dtype == object


def test_vlen_string_metadata(tmp_path):
    path = tmp_path / "vlen.gctx"
    with h5py.File(path, "w") as h5:
        h5.create_dataset(MATRIX_NODE, data=np.ones((2, 1), dtype=np.float64))
        h5.create_dataset("/0/META/ROW/id", data=["g1"], dtype=h5py.string_dtype())
        h5.create_dataset("/0/META/COL/id", data=["a", "b"], dtype=h5py.string_dtype())
        h5.create_dataset("/0/META/COL/name", data=["x", "-666"], dtype=h5py.string_dtype())
    g = read_gct(path)
    assert g.data.dtype == np.float32 and list(g.cids) == ["a", "b"]
    assert g.col_meta["name"].iloc[0] == "x" and pd.isna(g.col_meta["name"].iloc[1])


def test_truncated_and_corrupt_files(tmp_path, small_gct):
    good = tmp_path / "good.gctx"
    write_gctx(small_gct, good)
    truncated = tmp_path / "trunc.gctx"
    truncated.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(FormatError, match="truncated or corrupt") as info:
        read_gct(truncated)
    assert info.value.path == str(truncated)
    garbage = tmp_path / "garbage.gctx"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(FormatError, match="truncated or corrupt"):
        read_gct(garbage)
    not_hdf5 = tmp_path / "text.gctx"
    not_hdf5.write_text("hello")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        read_gctx(not_hdf5)


def test_missing_nodes_and_inconsistent_sizes(tmp_path):
    path = tmp_path / "nodes.gctx"
    with h5py.File(path, "w") as h5:
        h5.create_dataset(MATRIX_NODE, data=np.zeros((2, 3), dtype=np.float32))
        h5.create_dataset("/0/META/ROW/id", data=np.array([b"a", b"b", b"c"]))
    with pytest.raises(FormatError, match="missing HDF5 node") as info:
        read_gct(path)
    assert info.value.node == "/0/META/COL/id"
    bad_ids = _raw_layout_file(tmp_path / "ids.gctx", np.zeros((2, 3), np.float32), col_ids=np.array([b"a", b"b", b"c"]))
    with pytest.raises(FormatError, match="3 ids but the matrix has 2") as info:
        read_gct(bad_ids)
    assert info.value.node == "/0/META/COL/id"
    dup = _raw_layout_file(tmp_path / "dup.gctx", np.zeros((2, 3), np.float32), col_ids=np.array([b"a", b"a"]))
    with pytest.raises(FormatError, match="duplicated ids"):
        read_gct(dup)
    bad_meta = _raw_layout_file(tmp_path / "meta.gctx", np.zeros((2, 3), np.float32), **{"/0/META/COL/x": np.arange(5)})
    with pytest.raises(FormatError, match=r"shape \(5,\) but there are 2 ids") as info:
        read_gct(bad_meta)
    assert info.value.node == "/0/META/COL/x"
    no_matrix = tmp_path / "nomatrix.gctx"
    with h5py.File(no_matrix, "w") as h5:
        h5.create_group("0")
    with pytest.raises(FormatError, match="missing HDF5 node"):
        read_gct(no_matrix)


def test_newer_version_is_refused(tmp_path):
    path = _raw_layout_file(tmp_path / "v2.gctx", np.zeros((1, 1), np.float32), version=b"GCTX2.0")
    with pytest.raises(VersionError, match="GCTX2.0"):
        read_gct(path)
    no_version = _raw_layout_file(tmp_path / "v0.gctx", np.zeros((1, 1), np.float32), version=None)
    assert read_gct(no_version).shape == (1, 1)


def test_hdf5_named_gct_is_read_with_warning(tmp_path, small_gct):
    path = tmp_path / "x.gct"
    write_gctx(small_gct, tmp_path / "x.gctx")
    path.write_bytes((tmp_path / "x.gctx").read_bytes())
    from opencmap.errors import OpenCMapWarning

    with pytest.warns(OpenCMapWarning, match="despite its .gct extension"):
        assert read_gct(path).equals(small_gct)


def test_empty_axes(tmp_path, gct_factory):
    for shape in [(0, 3), (3, 0), (0, 0)]:
        g = gct_factory(*shape)
        write_gctx(g, tmp_path / "e.gctx")
        back = read_gct(tmp_path / "e.gctx")
        assert back.shape == shape and list(back.rids) == list(g.rids) and list(back.cids) == list(g.cids)


def test_non_float32_data_is_written_as_float32(tmp_path):
    g = GCT(np.arange(6, dtype=np.float64).reshape(2, 3) / 3, dtype=np.float64)
    write_gctx(g, tmp_path / "f64.gctx")
    back = read_gct(tmp_path / "f64.gctx")
    np.testing.assert_array_equal(back.data, g.data.astype(np.float32))


@pytest.mark.parametrize("chunks", [None, (3, 11)])
def test_row_subsets_read_straight_from_the_file(tmp_path, monkeypatch, chunks):
    import opencmap.io.gctx as gctx_module

    calls = []
    original = gctx_module._read_rows_mapped
    monkeypatch.setattr(gctx_module, "_read_rows_mapped", lambda *a, **k: calls.append(1) or original(*a, **k))
    tiny = Settings(gctx_map_window_bytes=100, gctx_map_window_min=100)  # many tiny windows
    windows = []
    gather = gctx_module._gather_window
    monkeypatch.setattr(gctx_module, "_gather_window", lambda *a: windows.append(a[1]) or gather(*a))
    rng = np.random.default_rng(3)
    stored = rng.normal(size=(40, 11)).astype(np.float32)
    path = _raw_layout_file(tmp_path / "m.gctx", stored, chunks=chunks)
    rows = np.array([9, 0, 4])
    cols = rng.permutation(40)[:17]
    np.testing.assert_array_equal(read_gctx(path, ridx=rows, settings=tiny).data, stored.T[rows])
    np.testing.assert_array_equal(read_gctx(path, ridx=rows, cidx=cols, settings=tiny).data, stored.T[rows][:, cols])
    assert len(calls) == 2
    assert len(windows) > 4


def _wide_gct(n_rows=6, n_cols=400):
    """Wide enough that a plate-sized column subset is read by the partial-id/metadata path."""
    rng = np.random.default_rng(3)
    data = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    row_meta = pd.DataFrame({"pr_gene_symbol": [f"G{i}" for i in range(n_rows)]}, index=pd.Index([str(100 + i) for i in range(n_rows)], dtype=object))
    dose = np.arange(n_cols, dtype=float)
    dose[::7] = np.nan  # stored as -666
    col_meta = pd.DataFrame(
        {"rna_plate": [f"P{i // 16}" for i in range(n_cols)], "pert_dose": dose, "pert_time": np.full(n_cols, 24)},
        index=pd.Index([f"INST{i:05d}" for i in range(n_cols)], dtype=object),
    )
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


_REQUESTS = [
    {},
    {"cidx": np.arange(32, 48)},  # one plate: a compact span
    {"cidx": np.array([399, 3, 250, 17])},  # scattered, out of order: point selection
    {"cidx": np.arange(0, 400, 2)},  # a large share: the whole-axis path
    {"cid": ["INST00009", "INST00002"]},
    {"cidx": np.arange(16), "ridx": [5, 0]},
    {"rid": ["103", "101"], "col_filter": {"rna_plate": "P3"}},
    {"cidx": [5, 6], "meta_only": True},
    {"cidx": np.arange(32, 48)},  # again, after the column ids were cached by the cid read
]


@pytest.mark.parametrize("options", [{}, {"compression": "gzip"}])
def test_handle_reads_equal_read_gctx(tmp_path, options):
    gct = _wide_gct()
    path = tmp_path / "wide.gctx"
    write_gctx(gct, path, **options)
    with GCTXFile(path) as handle:
        assert handle.shape == gct.shape
        for request in _REQUESTS:
            mine, ref = handle.read(**request), read_gctx(path, **request)
            assert mine.cids.equals(ref.cids) and mine.rids.equals(ref.rids), request
            assert list(mine.col_meta.dtypes) == list(ref.col_meta.dtypes), request
            pd.testing.assert_frame_equal(mine.col_meta, ref.col_meta)
            pd.testing.assert_frame_equal(mine.row_meta, ref.row_meta)
            np.testing.assert_array_equal(mine.data, ref.data)
            if not request.get("meta_only"):
                rows = request.get("ridx", slice(None))
                cols = request.get("cidx", gct.col_positions(request["cid"]) if "cid" in request else slice(None))
                if "col_filter" in request:
                    continue
                np.testing.assert_array_equal(mine.data, gct.data[rows][:, cols])
        assert handle.read_meta("row").equals(gct.row_meta)
    with pytest.raises(ConfigError, match="closed"):
        handle.read(cidx=[0])


def test_cidx_reads_only_the_ids_asked_for(tmp_path, monkeypatch):
    gct = _wide_gct()
    path = tmp_path / "wide.gctx"
    write_gctx(gct, path)
    import opencmap.io.gctx as gctx_module

    whole_reads: list[str] = []
    real = gctx_module._read_ids
    monkeypatch.setattr(gctx_module, "_read_ids", lambda h5, group, n, p: whole_reads.append(group) or real(h5, group, n, p))
    positions = np.array([40, 33, 47, 32])
    got = read_gctx(path, cidx=positions)
    assert gctx_module.COL_META_NODE not in whole_reads
    assert list(got.cids) == [f"INST{i:05d}" for i in positions]  # independent of the reader's ids
    pd.testing.assert_frame_equal(got.col_meta, gct.col_meta.iloc[positions])
    np.testing.assert_array_equal(got.data, gct.data[:, positions])
    with GCTXFile(path) as handle:  # row ids and row metadata read once for all reads
        for start in (0, 16, 32):
            handle.read(cidx=np.arange(start, start + 16))
    assert whole_reads.count(gctx_module.ROW_META_NODE) == 2 and gctx_module.COL_META_NODE not in whole_reads


def test_cidx_ids_of_integer_and_vlen_id_files(tmp_path):
    values = np.arange(300 * 3, dtype=np.float32).reshape(300, 3)
    int_ids = _raw_layout_file(tmp_path / "i.gctx", values, col_ids=np.arange(5000, 5300))
    assert list(read_gctx(int_ids, cidx=[7, 2]).cids) == ["5007", "5002"]
    vlen = tmp_path / "v.gctx"
    with h5py.File(vlen, "w") as h5:
        h5.create_dataset(MATRIX_NODE, data=values)
        h5.create_dataset("/0/META/ROW/id", data=np.array([b"a", b"b", b"c"]))
        h5.create_dataset("/0/META/COL/id", data=[f"c{i}" for i in range(300)], dtype=h5py.string_dtype())
    got = read_gctx(vlen, cidx=[9, 1])
    assert list(got.cids) == ["c9", "c1"]
    np.testing.assert_array_equal(got.data, values[[9, 1]].T)


def test_cidx_read_checks_the_id_count(tmp_path):
    path = _raw_layout_file(tmp_path / "bad.gctx", np.zeros((300, 2), np.float32), col_ids=np.array([f"c{i}".encode() for i in range(299)]))
    with pytest.raises(FormatError, match="299 ids"):
        read_gctx(path, cidx=[0])
