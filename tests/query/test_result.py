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
