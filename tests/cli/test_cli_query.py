"""``opencmap query``: same numbers as the Python API; files written."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from opencmap.cli import cli
from opencmap.query.background import build_background
from opencmap.query.engine import run_query
from opencmap.query.genesets import queries_from_gmt
from opencmap.query.store import build_store


_SYNTHETIC = runpy.run_path(str(Path(__file__).resolve().parents[1] / "query" / "synthetic_level5.py"))
make_level5 = _SYNTHETIC["make_level5"]

PCL = _SYNTHETIC["PCL"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    gct, info, prog = make_level5(seed=5)
    d = tmp_path_factory.mktemp("cli_query")
    store = build_store(d / "store", gct, sig_info=info)
    build_background(store, pcl=PCL)
    write_gmt([GeneSet("A_UP", "", tuple(prog["A_up"][:20])), GeneSet("B_UP", "", tuple(prog["B_up"][:20]))], d / "up.gmt")
    write_gmt([GeneSet("A_DN", "", tuple(prog["A_dn"][:20])), GeneSet("B_DN", "", tuple(prog["B_dn"][:20]))], d / "dn.gmt")
    write_gmt([GeneSet(k, "", tuple(v)) for k, v in PCL.items()], d / "pcl.gmt")
    return d, store


def test_cli_matches_python_api(setup):
    d, store = setup
    res = CliRunner().invoke(
        cli,
        ["query", str(d / "store"), "--up", str(d / "up.gmt"), "--down", str(d / "dn.gmt"), "--pcl", str(d / "pcl.gmt"),
         "--out", str(d / "out"), "--format", "tsv", "--level", "pert_summary", "--top", "3"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "# A: top 3 at level pert_summary" in res.stdout
    api = run_query(store, queries=queries_from_gmt(d / "up.gmt", d / "dn.gmt"), pcl=PCL)
    for level in ("sig", "pert_summary", "pcl_summary"):
        cli_table = pd.read_csv(d / "out" / f"{level}.tsv", sep="\t", dtype={"query": str})
        api_table = api.to_frame(level)
        for col in ("ncs", "tau"):
            np.testing.assert_allclose(cli_table[col].to_numpy(float), api_table[col].to_numpy(float), rtol=1e-6, atol=1e-6)
    printed = res.stdout.split("# B")[0].splitlines()[2:]
    assert [line.split("\t")[1] for line in printed] == list(api.top(3, query="A", level="pert_summary")["id"])


def test_cli_gene_lists_sig_ids_and_errors(setup):
    d, store = setup
    genes = list(store.space().gene_ids)
    res = CliRunner().invoke(
        cli, ["query", str(d / "store"), "--up-genes", ",".join(genes[:12]), "--down-genes", ",".join(genes[-12:]),
              "--sig-id", store.sig_ids[0], "--sig-genes", "20", "--format", "gctx", "--out", str(d / "g")],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert (d / "g" / "sig_wtcs.gctx").exists()
    from opencmap.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["query", str(d / "store"), "--up-genes", "1,2,3"])
    assert exc.value.code == 2
    res = CliRunner().invoke(cli, ["query", str(d / "store")])
    assert res.exit_code != 0 and "give --up" in res.output


def test_cli_vector_metric_with_sig_id(setup):
    d, store = setup
    sid = store.sig_ids[4]
    res = CliRunner().invoke(cli, ["query", str(d / "store"), "--metric", "cosine", "--sig-id", sid, "--top", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[2].split("\t")[1] == sid


# ---------------------------------------------------------------------------------- issue 12: one-sided queries
def _grp(path, genes):
    path.write_text("".join(f"{g}\n" for g in genes))
    return path


@pytest.mark.parametrize("down", ["absent", "empty"])
def test_up_alone_or_empty_down_file_is_noted_and_gets_no_two_sided_tau(setup, down, tmp_path):
    from opencmap.query.genesets import Query

    d, store = setup
    gct, info, prog = make_level5(seed=5)
    up = _grp(tmp_path / "up.grp", prog["A_up"][:20])
    args = ["query", str(d / "store"), "--up", str(up), "--out", str(tmp_path / "out")]
    if down == "empty":
        args += ["--down", str(_grp(tmp_path / "dn.grp", []))]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "up tail only" in res.stderr and "ES_up" in res.stderr
    assert "--tail up" in res.stderr  # the store has only the two-sided background
    sig = pd.read_csv(tmp_path / "out" / "sig.tsv", sep="\t")
    assert "tau" not in sig.columns
    queries = pd.read_csv(tmp_path / "out" / "queries.tsv", sep="\t")
    assert queries["tail"].tolist() == ["up"]
    with pytest.warns(Warning):
        api = run_query(store, queries=[Query("query", up=tuple(prog["A_up"][:20]))])
    np.testing.assert_allclose(sig["wtcs"].to_numpy(float), api.to_frame("sig")["wtcs"].to_numpy(float), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(api.level("sig").metrics["wtcs"][:, 0], api.level("sig").metrics["es_up"][:, 0])


def test_store_background_tail_then_up_query_gets_its_tau(tmp_path):
    import json

    gct, info, prog = make_level5(seed=5)
    store = build_store(tmp_path / "store", gct.take(cols=np.arange(60)), sig_info=info.iloc[:60])
    res = CliRunner().invoke(cli, ["store", "background", str(store.path), "--tail", "up"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["up/sig"]["tail"] == "up" and "sig" not in out
    up = _grp(tmp_path / "up.grp", prog["A_up"][:20])
    res = CliRunner().invoke(cli, ["query", str(store.path), "--up", str(up), "--out", str(tmp_path / "out")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "tau not computed" not in res.stderr
    assert np.isfinite(pd.read_csv(tmp_path / "out" / "sig.tsv", sep="\t")["tau"]).any()
    # a two-sided query on that store: no two-sided background, so no tau, with the command to build it
    dn = _grp(tmp_path / "dn.grp", prog["A_dn"][:20])
    res = CliRunner().invoke(cli, ["query", str(store.path), "--up", str(up), "--down", str(dn)], catch_exceptions=False)
    assert res.exit_code == 0 and "opencmap store background" in res.stderr
