"""QueryResult: tables, top connections, matrices and files (TSV / Parquet / GCTX)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import ConfigError, IdNotFoundError
from opencmap.query.engine import run_query



@pytest.fixture(scope="module")
def result(built_store, level5, pcl):
    _, _, prog = level5
    return run_query(
        built_store,
        up={"A": prog["A_up"][:20], "B": prog["B_up"][:20]},
        down={"A": prog["A_dn"][:20], "B": prog["B_dn"][:20]},
        pcl=pcl,
    )


def test_to_frame_and_top(result, built_store):
    frame = result.to_frame("sig")
    assert len(frame) == 2 * built_store.n_signatures
    assert {"query", "sig_id", "pert_id", "wtcs", "ncs", "tau", "fdr_q", "es_up", "leadf_dn"} <= set(frame.columns)
    top = result.top(5, query="B", by="ncs")
    assert top["ncs"].is_monotonic_decreasing and (top["query"] == "B").all()
    neg = result.top(5, query=1, by="ncs", direction="negative")
    assert neg["ncs"].is_monotonic_increasing
    both = result.top(5, by="ncs", direction="both")
    assert np.abs(both["ncs"]).is_monotonic_decreasing
    with pytest.raises(ConfigError):
        result.top(direction="up")
    with pytest.raises(IdNotFoundError):
        result.top(query="nope")
    with pytest.raises(IdNotFoundError):
        result.level("pcl_x")


def test_matrix(result):
    m = result.matrix("ncs", level="pert_summary")
    assert m.shape[1] == 2 and list(m.cids) == ["A", "B"]
    assert "pert_iname" in m.row_meta.columns
    np.testing.assert_array_equal(m.data, result.level("pert_summary").metrics["ncs"])


@pytest.mark.parametrize("fmt", ["tsv", "parquet", "gctx"])
def test_write_formats(result, tmp_path, fmt):
    from opencmap.io import read_gct, read_table

    files = result.write(tmp_path / fmt, format=fmt)
    names = {p.name for p in files}
    assert "queries.tsv" in names
    if fmt == "gctx":
        assert "sig_tau.gctx" in names and "pcl_summary_ncs.gctx" in names
        g = read_gct(tmp_path / fmt / "sig_ncs.gctx")
        np.testing.assert_array_equal(g.data, result.level("sig").metrics["ncs"])
        assert list(g.rids) == list(result.level("sig").ids)
    else:
        path = tmp_path / fmt / f"pert_summary.{fmt}"
        back = read_table(path) if fmt == "tsv" else pd.read_parquet(path)
        expected = result.to_frame("pert_summary")
        np.testing.assert_allclose(back["ncs"].astype(float), expected["ncs"].astype(float), rtol=1e-6)
        assert list(back["id"].astype(str)) == list(expected["id"].astype(str))
    with pytest.raises(ConfigError):
        result.write(tmp_path / "x", format="xlsx")


def _assert_same_result(loaded, result):
    assert loaded.query_names == result.query_names and loaded.method == result.method
    assert loaded.space == result.space and dict(loaded.params) == dict(result.params)
    assert list(loaded.notes) == list(result.notes) and list(loaded.levels) == list(result.levels)
    for name, lv in result.levels.items():
        got = loaded.level(name)
        pd.testing.assert_frame_equal(got.index.reset_index(drop=True), lv.index.reset_index(drop=True))
        assert list(got.metrics) == list(lv.metrics)
        for metric, values in lv.metrics.items():
            assert got.metrics[metric].dtype == np.asarray(values).dtype
            np.testing.assert_array_equal(got.metrics[metric], values)
    for a, b in zip(loaded.queries, result.queries, strict=True):
        np.testing.assert_array_equal(a.up_rows, b.up_rows)
        np.testing.assert_array_equal(a.down_rows, b.down_rows)
        assert (a.up_genes, a.down_genes, a.unknown, a.dropped) == (b.up_genes, b.down_genes, b.unknown, b.dropped)
    assert loaded.query_table().equals(result.query_table())
    assert loaded.top(5, level="pert_summary").equals(result.top(5, level="pert_summary"))


def test_save_load_round_trip(result, tmp_path):
    from opencmap.query.result import QueryResult

    path = result.save(tmp_path / "res.ocr")
    _assert_same_result(QueryResult.load(path), result)
    assert [p.name for p in tmp_path.iterdir()] == ["res.ocr"]  # no temporary file left


def test_bytes_without_sig_index_need_it_back(result):
    from opencmap.errors import ValidationError
    from opencmap.query.result import QueryResult

    data = result.to_bytes(omit_index=("sig",))
    assert len(data) < len(result.to_bytes())
    sig_index = result.level("sig").index
    _assert_same_result(QueryResult.from_bytes(data, index={"sig": sig_index}), result)
    with pytest.raises(ValidationError, match="without its index"):
        QueryResult.from_bytes(data)
    with pytest.raises(ValidationError, match="rows"):
        QueryResult.from_bytes(data, index={"sig": sig_index.iloc[:3]})


def test_newer_or_damaged_result_is_refused(result, tmp_path):
    import io
    import json
    import zipfile

    from opencmap.errors import FormatError, VersionError
    from opencmap.query.result import RESULT_FORMAT_VERSION, QueryResult

    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(result.to_bytes())) as src, zipfile.ZipFile(buf, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "header.json":
                header = json.loads(data)
                header["format_version"] = RESULT_FORMAT_VERSION + 1
                data = json.dumps(header).encode()
            dst.writestr(name, data)
    newer = tmp_path / "newer.ocr"
    newer.write_bytes(buf.getvalue())
    with pytest.raises(VersionError, match="newer") as info:
        QueryResult.load(newer)
    assert str(newer) in str(info.value)
    with pytest.raises(FormatError, match="damaged"):
        QueryResult.from_bytes(b"not a result at all")


def test_query_name_default_metric_and_pert_cell_grid(result):
    assert result.query_name() == "A" and result.query_name(1) == "B" and result.query_name("B") == "B"
    with pytest.raises(IdNotFoundError):
        result.query_name("nope")
    assert result.default_metric("pert_summary") == "tau"
    grid, labels = result.pert_cell_grid(5, query="B", metric="ncs")
    top = result.top(5, query="B", level="pert_summary", by="ncs", direction="both")
    assert grid.index.tolist() == top["id"].astype(str).tolist() and len(labels) == len(grid)
    cells = result.to_frame("pert_cell", query="B")  # every grid cell is the pert_cell value (plain lookup)
    for pert in grid.index:
        for cell in grid.columns:
            hit = cells[(cells["pert_id"].astype(str) == pert) & (cells["cell_id"].astype(str) == str(cell))]
            expected = float(hit["ncs"].iloc[0]) if len(hit) else np.nan
            np.testing.assert_equal(float(grid.at[pert, cell]), expected)


# ---------------------------------------------------------------------------------- issue 12 case 6
def test_write_never_mixes_runs(result, tmp_path, monkeypatch):
    import json

    from opencmap.query.result import QueryResult

    out = tmp_path / "run"
    result.write(out, format="tsv")
    (out / "pcl_summary_extra.tsv").write_text("left by someone")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ConfigError, match=r"run is not empty; give overwrite=True"):
        result.write(out, format="gctx")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    real = QueryResult.write_file
    calls = []

    def failing(self, path, *, level=None, metric=None):
        calls.append(level)
        if len(calls) == 3:
            raise OSError("no space left (injected)")
        return real(self, path, level=level, metric=metric)

    monkeypatch.setattr(QueryResult, "write_file", failing)
    with pytest.raises(OSError, match="injected"):
        result.write(out, format="gctx", overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]

    files = result.write(out, format="gctx", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in files)
    assert not any(p.name.endswith(".tsv") and p.name != "queries.tsv" for p in out.iterdir())
    assert (out / "notes.txt").read_text().splitlines() == result.report()
    assert json.loads((out / "describe.json").read_text())["queries"][1]["name"] == "B"


def test_report_renders_every_describe_key(result, monkeypatch):
    """Fields other parts of the engine add to describe() reach the notes without changes here."""
    from opencmap.query.notes import result_notes

    described = result.describe()
    described["tau_background"] = {"sig": {"kind": "both", "matches_query": True}}
    described["queries"][0]["mapped"] = [["AARS", "AARS1"], ["GARS", "GARS1"]]
    described["queries"][0]["fdr"] = {"method": "cmap", "n_null": {"up": 36, "down": 36}}
    described["queries"][0]["dropped"] = [str(i) for i in range(25)]
    lines = result_notes(described)
    assert lines[0].startswith(f"method {result.method}, feature space {result.space}")
    assert "tau background: sig=(kind=both, matches_query=True)" in lines
    assert "query A: mapped (alias/previous symbol -> current): 2: AARS -> AARS1, GARS -> GARS1" in lines
    assert "query A: fdr: method=cmap, n_null=(up=36, down=36)" in lines
    assert any(line.startswith("query A: dropped (outside feature space") and line.endswith("(+15 more)") for line in lines)
    assert "query A: up genes used 20, down genes used 20" in lines
