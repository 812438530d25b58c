"""GCT 1.2 / 1.3 text: reading, writing, typed metadata, -666, bad input (opencmap.io.gct)."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import ConfigError, FormatError, IdNotFoundError, OpenCMapWarning, ValidationError
from opencmap.io import read_gct, read_meta, write, write_gct
from opencmap.io.gct import gct_info

GCT13 = (
    "#1.3\n"
    "3\t2\t2\t2\n"
    "id\tsymbol\tis_lm\tS1\tS2\n"
    "pert_dose\t-666\t-666\t10.5\t-666\n"
    "pert_iname\t-666\t-666\tDMSO\t-666\n"
    "780\tDDR1\t1\t1.5\tNaN\n"
    "007\tPAX8\t0\t-2\t3.25\n"
    "5720\t-666\t-666\t0\t1e-3\n"
)


def _write(tmp_path, text: str, name: str = "x.gct"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_gct13_with_typed_metadata(tmp_path):
    g = read_gct(_write(tmp_path, GCT13))
    assert list(g.rids) == ["780", "007", "5720"]  # integer-like ids stay strings, leading zero kept
    assert list(g.cids) == ["S1", "S2"]
    assert g.data.dtype == np.float32
    np.testing.assert_array_equal(g.data, np.array([[1.5, np.nan], [-2, 3.25], [0, 1e-3]], dtype=np.float32))
    assert g.row_meta["is_lm"].dtype == "Int64"  # ints with a -666 become nullable ints
    assert g.row_meta["is_lm"].isna().tolist() == [False, False, True]
    assert g.row_meta["symbol"].iloc[2] is np.nan or pd.isna(g.row_meta["symbol"].iloc[2])
    assert g.col_meta["pert_dose"].dtype == np.float64
    assert g.col_meta["pert_dose"].iloc[0] == 10.5 and np.isnan(g.col_meta["pert_dose"].iloc[1])
    assert pd.isna(g.col_meta["pert_iname"].iloc[1]) and g.col_meta["pert_iname"].iloc[0] == "DMSO"


def test_ids_and_text_that_look_like_missing_values_are_kept(tmp_path):
    text = "#1.3\n3\t1\t1\t0\nid\tnote\tNA\nNA\tnull\t1\nnan\t\t2\nN/A\tNaN\tNaN\n"
    g = read_gct(_write(tmp_path, text))
    assert list(g.rids) == ["NA", "nan", "N/A"] and list(g.cids) == ["NA"]
    assert g.row_meta["note"].tolist()[0] == "null"
    assert np.isnan(g.data[2, 0])


def test_reads_gct12(shared_data):
    g = read_gct(shared_data / "formats/cmappy/older_version_v1_2.gct")
    assert g.shape == (5, 3)
    assert list(g.row_meta.columns) == ["Description"]
    assert g.row_meta.loc["1007_s_at", "Description"] == "U48705 /FEATURE=mRNA"
    assert g.data[0, 0] == np.float32(280.53)
    assert list(g.cids) == ["DLBCL.205", "DLBCL.206", "DLBCL.232"]


def test_integer_ids_stay_strings(shared_data):
    g = read_gct(shared_data / "formats/cmappy/test_parse_gct_int_ids.gct")
    assert list(g.rids) == ["3", "11", "-3"]
    assert list(g.cids) == ["1", "2"]
    assert g.subset(rids=[11]).data.tolist() == [[13.0, 17.0]]


def test_write_then_read_is_exact(tmp_path, small_gct):
    path = tmp_path / "out.gct"
    write_gct(small_gct, path)
    back = read_gct(path)
    assert back.equals(small_gct)
    text = path.read_text().splitlines()
    assert text[0] == "#1.3" and text[1] == "7\t5\t3\t3"
    assert "-666" in path.read_text()  # missing metadata written as -666
    assert "NaN" in text[-7]  # missing matrix value written as NaN


def test_precision_option(tmp_path, small_gct):
    path = tmp_path / "p.gct"
    write_gct(small_gct, path, precision=4)
    back = read_gct(path)
    assert back.equals(small_gct, atol=5e-5, check_meta=True)
    values = [v for line in path.read_text().splitlines()[5:] for v in line.split("\t")[4:]]
    assert all(len(v.split(".")[-1]) <= 4 for v in values if "." in v)
    assert any(len(v.split(".")[-1]) == 4 for v in values if "." in v)


def test_write_dispatch_and_bad_extension(tmp_path, small_gct):
    write(small_gct, tmp_path / "a.gct")
    write(small_gct, tmp_path / "a.gctx")
    assert read_gct(tmp_path / "a.gct").equals(read_gct(tmp_path / "a.gctx"))
    with pytest.raises(ConfigError, match="extension"):
        write(small_gct, tmp_path / "a.txt")


def test_text_named_gctx_is_read_with_a_warning(tmp_path, shared_data):
    path = tmp_path / "test_l1000.gctx"
    path.write_bytes((shared_data / "formats/cmappy/test_l1000.gct").read_bytes())
    with pytest.warns(OpenCMapWarning, match="GCT text despite its .gctx extension"):
        g = read_gct(path)
    assert g.shape == (978, 377)


def test_gzipped_text(tmp_path):
    path = tmp_path / "x.gct.gz"
    path.write_bytes(gzip.compress(GCT13.encode()))
    assert read_gct(path).equals(read_gct(_write(tmp_path, GCT13)))


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.gct"
    path.write_bytes(GCT13.replace("\n", "\r\n").encode())
    assert read_gct(path).equals(read_gct(_write(tmp_path, GCT13)))


def test_meta_only_and_read_meta(tmp_path):
    path = _write(tmp_path, GCT13)
    g = read_gct(path, meta_only=True)
    assert g.shape == (3, 2) and np.isnan(g.data).all() and g.data.strides == (0, 0)
    assert not g.data.flags.writeable
    assert read_meta(path, "row").equals(read_gct(path).row_meta)
    assert read_meta(path, "col").equals(read_gct(path).col_meta)
    with pytest.raises(ConfigError):
        read_meta(path, "diagonal")


def test_subset_by_ids_positions_and_filters(tmp_path):
    path = _write(tmp_path, GCT13)
    full = read_gct(path)
    g = read_gct(path, rid=["5720", 780], cid=["S2"])
    assert list(g.rids) == ["5720", "780"] and list(g.cids) == ["S2"]
    np.testing.assert_array_equal(g.data, full.data[[2, 0]][:, [1]])
    g = read_gct(path, ridx=[1], cidx=[1, 0])
    np.testing.assert_array_equal(g.data, full.data[[1]][:, [1, 0]])
    g = read_gct(path, row_filter={"is_lm": "1"})
    assert list(g.rids) == ["780"]
    g = read_gct(path, col_filter=lambda m: m["pert_dose"] > 5)
    assert list(g.cids) == ["S1"]
    with pytest.raises(IdNotFoundError, match="nope"):
        read_gct(path, rid=["780", "nope"])
    with pytest.warns(OpenCMapWarning, match="nope"):
        assert read_gct(path, rid=["780", "nope"], ignore_missing=True).shape == (1, 2)
    with pytest.raises(ConfigError):
        read_gct(path, rid=["780"], ridx=[0])
    with pytest.raises(ValidationError, match="more than once"):
        read_gct(path, rid=["780", "780"])


def test_shared_subset_fixture(shared_data):
    base = shared_data / "formats/cmappy"
    from opencmap.io import read_grp

    wanted = read_grp(base / "test_subset_rid.grp")
    assert wanted == ["a", "Bb", "c"]
    with pytest.warns(OpenCMapWarning, match="Bb"):
        got = read_gct(base / "test_subset_in.gct", rid=wanted, cid=["d", "e", "g"], ignore_missing=True)
    expected = read_gct(base / "test_subset_expected.gct")
    assert got.equals(expected)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty file"),
        ("#1.4\n1\t1\n", 1, "first line"),
        ("#1.3\n1\t1\t0\nid\tS1\na\t1\n", 2, "dimension line"),
        ("#1.3\nx\ty\t0\t0\nid\tS1\na\t1\n", 2, "dimension line"),
        ("#1.3\n1\t2\t0\t0\nid\tS1\na\t1\n", 3, "header has 2 fields"),
        ("#1.3\n2\t1\t0\t0\nid\tS1\na\t1\n", 5, "truncated"),
        ("#1.3\n1\t1\t0\t0\nid\tS1\na\t1\nb\t2\n", 5, "dimension line"),
        ("#1.3\n2\t2\t0\t0\nid\tS1\tS2\na\t1\t2\nb\t2\n", 5, "ragged row"),
        ("#1.3\n2\t2\t0\t0\nid\tS1\tS2\na\t1\t2\nb\t2\t3\t4\n", 5, "ragged row"),
        ("#1.3\n2\t1\t0\t0\nid\tS1\na\t1\na\t2\n", None, "duplicated row ids"),
        ("#1.3\n1\t2\t0\t0\nid\tS1\tS1\na\t1\t2\n", 3, "duplicated column ids"),
        ("#1.3\n2\t2\t0\t0\nid\tS1\tS2\na\t1\t2\nb\t2\tabc\n", 5, "non-numeric value 'abc' in column 'S2'"),
        ("#1.2\n1\t1\nName\tDescription\tS1\na\tdesc\n", 4, "ragged row"),
    ],
)
def test_bad_text_raises_format_error_with_line(tmp_path, text, line, message):
    path = _write(tmp_path, text, "bad.gct")
    with pytest.raises(FormatError, match=message) as info:
        read_gct(path)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FormatError, match="not found"):
        read_gct(tmp_path / "nope.gct")


def test_overstated_column_field_count_is_recovered_with_warning(shared_data):
    with pytest.warns(OpenCMapWarning, match="says 15 column metadata fields but the file has 1"):
        g = read_gct(shared_data / "formats/cmapr/modzs_n25x50.gct")
    assert g.shape == (50, 25) and list(g.col_meta.columns) == ["brew_prefix"]


def test_write_refuses_tabs_in_ids_and_values(tmp_path, small_gct):
    bad = small_gct.copy()
    bad.col_meta.loc[bad.cids[0], "pert_iname"] = "a\tb"
    with pytest.raises(ValidationError, match="tabs or newlines"):
        write_gct(bad, tmp_path / "bad.gct")
    assert not (tmp_path / "bad.gct").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_failed_write_keeps_existing_file(tmp_path, small_gct, monkeypatch):
    path = tmp_path / "keep.gct"
    write_gct(small_gct, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("opencmap.io.gct._data_lines", boom)
    with pytest.raises(RuntimeError):
        write_gct(small_gct, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.gct"]


def test_info_for_text(tmp_path):
    info = gct_info(_write(tmp_path, GCT13))
    assert info.format == "GCT 1.3 (text)"
    assert (info.n_rows, info.n_cols) == (3, 2)
    assert info.row_fields == ("symbol", "is_lm") and info.col_fields == ("pert_dose", "pert_iname")


def test_empty_shapes_round_trip(tmp_path, gct_factory):
    for shape in [(0, 3), (3, 0), (0, 0)]:
        g = gct_factory(*shape)
        write_gct(g, tmp_path / "e.gct")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            back = read_gct(tmp_path / "e.gct")
        assert back.shape == shape
        assert list(back.rids) == list(g.rids) and list(back.cids) == list(g.cids)


@pytest.mark.parametrize("token", ["NaN", "NAN", "nan", "Nan", "nAN", "-NaN", "-NAN", "+nan", "", "NA", "N/A", "#N/A", "null"])
def test_cmapm_missing_value_tokens_read_as_nan(tmp_path, token):
    """Issue 12 case 8: cmapM's parser (MATLAB textscan '%f') takes NaN in any case, signed, and
    empty fields; a cell spelled ``NAN`` used to be refused as non-numeric."""
    text = f"#1.3\n2\t2\t1\t0\nid\tnote\tS1\tS2\nNAN\t{token or 'x'}\t{token}\t1.5\nr2\tNAN\t-Inf\tINF\n"
    g = read_gct(_write(tmp_path, text))
    assert np.isnan(g.data[0, 0]) and g.data[0, 1] == np.float32(1.5)
    assert g.data[1, 0] == -np.inf and g.data[1, 1] == np.inf
    assert list(g.rids) == ["NAN", "r2"]  # ids and text metadata keep the token as written
    assert g.row_meta["note"].tolist()[1] == "NAN"


def test_non_numeric_matrix_value_is_still_refused(tmp_path):
    text = "#1.3\n1\t2\t0\t0\nid\tS1\tS2\nr1\tNANA\t1\n"
    with pytest.raises(FormatError, match="non-numeric value 'NANA' in column 'S1'"):
        read_gct(_write(tmp_path, text))
