"""The result-file layout (:mod:`opencmap.io.result_archive`): names, parsing, folder and ZIP."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import ConfigError, IdNotFoundError
from opencmap.io.result_archive import (
    LEVELS,
    matrix_file_name,
    parse_file_name,
    result_files,
    write_result_folder,
    write_result_zip,
)


@pytest.fixture(scope="module")
def result():
    """A small result made by hand: two queries, a sig and a pert_summary level."""
    from opencmap.query.genesets import ValidatedQuery
    from opencmap.query.result import LevelResult, QueryResult

    rng = np.random.default_rng(0)
    queries = [
        ValidatedQuery(name, np.array([0, 1], np.intp), np.array([2], np.intp), ("1", "2"), ("3",), unknown=("X",))
        for name in ("A", "B")
    ]
    sig = pd.DataFrame({"sig_id": [f"s{i}" for i in range(5)], "pert_id": ["p0", "p0", "p1", "p1", "p2"]})
    pert = pd.DataFrame({"id": ["p0", "p1", "p2"], "pert_iname": ["a", "b", "c"]})
    levels = {
        "sig": LevelResult("sig", sig, {m: rng.normal(size=(5, 2)).astype(np.float32) for m in ("wtcs", "ncs", "tau")}),
        "pert_summary": LevelResult("pert_summary", pert, {m: rng.normal(size=(3, 2)).astype(np.float32) for m in ("ncs", "tau")}),
    }
    return QueryResult(queries=queries, levels=levels, method="wtcs", space="lm", params={"metric": "wtcs"}, notes=["a note"])


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("metric", ["ncs", "tau", "fdr_q", "es_up", "wtcs"])
def test_matrix_names_split_back_into_level_and_metric(level, metric):
    for name in (matrix_file_name(level, metric), f"{level}__{metric}.gctx"):  # the API's earlier names too
        parsed = parse_file_name(name)
        assert (parsed.level, parsed.metric, parsed.format) == (level, metric, "gctx"), name


def test_other_names_parse_and_strangers_are_refused():
    assert parse_file_name("queries.tsv").level is None and parse_file_name("notes.txt").format == "txt"
    assert (parse_file_name("pcl_cell.tsv").level, parse_file_name("sig.parquet").format) == ("pcl_cell", "parquet")
    for bad in ("../sig.tsv", "sig_ncs.gctx\n", "pert_ncs.gctx", "sig.csv", "queries.tsv.bak", "sig_.gctx"):
        with pytest.raises(IdNotFoundError):
            parse_file_name(bad)


def test_folder_and_zip_hold_the_listed_files(result, tmp_path):
    listed = [f.name for f in result_files(result, ("tsv", "gctx"))]
    assert listed[:3] == ["queries.tsv", "notes.txt", "describe.json"]
    assert "sig.tsv" in listed and "pert_summary_tau.gctx" in listed and len(listed) == len(set(listed))
    written = write_result_folder(result, tmp_path / "out", formats=("tsv", "gctx"))
    assert [p.name for p in written] == listed and sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(listed)
    with zipfile.ZipFile(write_result_zip(result, tmp_path / "all.zip")) as zf:
        assert zf.namelist() == listed
        assert zf.read("sig.tsv") == (tmp_path / "out" / "sig.tsv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.zip", "out"]  # no work folder left
    with pytest.raises(ConfigError, match="format must be one of"):
        result_files(result, ("csv",))
    with pytest.raises(IdNotFoundError, match="no level 'pcl_x'"):
        result_files(result, levels=["pcl_x"])


def test_stored_form_round_trips_and_refuses_what_it_cannot_read(result):
    from opencmap.errors import FormatError, ValidationError
    from opencmap.io.result_archive import RESULT_FORMAT_VERSION, pack_result, unpack_result

    keys = ("up_rows", "down_rows", "vector")
    arrays = [{k: getattr(q, k) for k in keys} for q in result.queries]
    levels = [(name, lv.index, lv.metrics) for name, lv in result.levels.items()]
    data = pack_result(result.describe(), arrays, levels, omit_index=("sig",))
    header, back, stored = unpack_result(data, keys, index={"sig": result.level("sig").index})
    assert header["format_version"] == RESULT_FORMAT_VERSION and header["method"] == "wtcs"
    assert back[0]["vector"] is None and np.array_equal(back[1]["up_rows"], arrays[1]["up_rows"])
    assert [name for name, _, _ in stored] == ["sig", "pert_summary"]
    for (_, index, metrics), (_, frame, values) in zip(levels, stored, strict=True):
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), index.reset_index(drop=True))
        assert all(np.array_equal(metrics[m], values[m]) for m in metrics)
    with pytest.raises(ValidationError, match="stored without its index table"):
        unpack_result(data, keys)
    with pytest.raises(FormatError, match="damaged or incomplete"):
        unpack_result(b"not a zip", keys)
