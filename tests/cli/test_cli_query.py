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


# ---------------------------------------------------------------------------------- issue 12
def _fail(args, capsys) -> str:
    """Run the CLI as the ``opencmap`` script does; it must fail with status 2; returns stderr."""
    from opencmap.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "# A:" not in captured.out  # nothing was computed or printed
    return captured.err


def _query_args(d, *extra):
    return ["query", str(d / "store"), "--up", str(d / "up.gmt"), "--down", str(d / "dn.gmt"), "--top", "2", *extra]


def test_out_folder_of_an_earlier_run_is_refused_then_replaced_whole(setup, capsys):
    """Case 6: a second run into the folder of a first never leaves the first run's files."""
    d, _ = setup
    out = d / "mixed"
    res = CliRunner().invoke(cli, _query_args(d, "--pcl", str(d / "pcl.gmt"), "--out", str(out)), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (out / "pcl_summary.tsv").exists() and (out / "notes.txt").exists() and (out / "describe.json").exists()
    (out / "mine.txt").write_text("a file of the user")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # without --overwrite: refused before the query runs, one line naming the folder and the flag
    err = _fail(_query_args(d, "--out", str(out)), capsys)
    assert len(err.strip().splitlines()) == 1
    assert str(out) in err and "--overwrite" in err and "not empty" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # with --overwrite: the folder is replaced whole; no pcl_summary.tsv of the first run is left
    res = CliRunner().invoke(cli, _query_args(d, "--out", str(out), "--overwrite"), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    names = {p.name for p in out.iterdir()}
    assert "pcl_summary.tsv" not in names and "mine.txt" not in names
    assert {"sig.tsv", "pert_summary.tsv", "queries.tsv", "notes.txt", "describe.json"} <= names
    assert not [p for p in d.iterdir() if p.name.startswith(".mixed.")]  # no temporary folder left


def test_out_path_that_is_a_file_is_a_clear_error(setup, capsys):
    d, _ = setup
    target = d / "a_file.tsv"
    target.write_text("x")
    for extra in ((), ("--overwrite",)):
        err = _fail(_query_args(d, "--out", str(target), *extra), capsys)
        assert len(err.strip().splitlines()) == 1 and str(target) in err and "not a folder" in err
        assert target.read_text() == "x"
    err = _fail(_query_args(d, "--out", str(target / "sub")), capsys)
    assert "is a file, not a folder" in err


def test_failure_mid_write_leaves_the_old_folder_intact(setup, monkeypatch):
    from opencmap.query.result import QueryResult

    d, _ = setup
    out = d / "keep"
    res = CliRunner().invoke(cli, _query_args(d, "--out", str(out)), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = QueryResult.write_file

    def failing(self, path, *, level=None, metric=None):
        if level == "pert_summary":
            raise OSError("disk full (injected)")
        return real(self, path, level=level, metric=metric)

    monkeypatch.setattr(QueryResult, "write_file", failing)
    res = CliRunner().invoke(cli, _query_args(d, "--out", str(out), "--overwrite"))
    assert res.exit_code != 0 and isinstance(res.exception, OSError)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in d.iterdir() if p.name.startswith(".keep.")]


def test_pcl_file_with_no_known_member_is_refused(setup, capsys):
    """Case 7: a PCL GMT whose members match no perturbagen used to give 'top 0' silently."""
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    d, store = setup
    write_gmt([GeneSet("BAD", "", ("BRD-K12345678", "BRD-K87654321")), GeneSet("BAD2", "", ("aspirin",))], d / "bad_pcl.gmt")
    err = _fail(_query_args(d, "--pcl", str(d / "bad_pcl.gmt"), "--level", "pcl_summary"), capsys)
    assert len(err.strip().splitlines()) == 1
    assert "bad_pcl.gmt" in err and "BRD-K12345678" in err and "none of its 3 member ids" in err
    assert store.sig_info["pert_id"].astype(str).sort_values().iloc[0] in err  # the store's id format


def test_partly_known_pcl_file_is_a_note_with_counts(setup):
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    d, _ = setup
    write_gmt([GeneSet("PCL_A", "", ("BRD-000", "BRD-001", "BRD-K99999999")), GeneSet("LONE", "", ("BRD-005", "nope"))], d / "part.gmt")
    res = CliRunner().invoke(cli, _query_args(d, "--pcl", str(d / "part.gmt"), "--level", "pcl_summary"), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stderr.count("3 of the 5 member ids") == 1 and "BRD-K99999999" in res.stderr  # once: warning = note
    assert "1 of the 2 classes" in res.stderr and "LONE" in res.stderr
    assert "# A: top 1 at level pcl_summary" in res.stdout


def test_pcl_level_without_pcl_is_refused_before_the_query_runs(setup, monkeypatch, capsys):
    from opencmap.query.engine import Engine

    d, _ = setup
    ran = []
    monkeypatch.setattr(Engine, "_score", lambda *a, **k: ran.append(1))
    for level in ("pcl_summary", "pcl_cell"):
        err = _fail(_query_args(d, "--level", level), capsys)
        assert f"level {level} needs perturbagen classes" in err and "--pcl" in err
    assert ran == []


def test_unpairable_gmt_files_are_one_line_naming_sets_and_files(setup, capsys):
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    d, _ = setup
    write_gmt([GeneSet("A_DN", "", ("1",)), GeneSet("C_DN", "", ("2",))], d / "dn_other.gmt")
    err = _fail(["query", str(d / "store"), "--up", str(d / "up.gmt"), "--down", str(d / "dn_other.gmt")], capsys)
    assert len(err.strip().splitlines()) == 1
    assert "B_UP" in err and "C_DN" in err and "up.gmt" in err and "dn_other.gmt" in err
    # files given the wrong way round are refused, not run with every sign flipped
    err = _fail(["query", str(d / "store"), "--up", str(d / "dn.gmt"), "--down", str(d / "up.gmt")], capsys)
    assert "swapped" in err and "dn.gmt" in err


def test_notes_block_on_stderr_says_what_was_used(setup):
    d, store = setup
    genes = list(store.space().gene_ids)
    res = CliRunner().invoke(
        cli,
        ["query", str(d / "store"), "--up-genes", ",".join([*genes[:12], "NOTAGENE1"]), "--down-genes", ",".join(genes[-12:]),
         "--top", "1", "--out", str(d / "noted")],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "notes:" in res.stderr and "notes:" not in res.stdout  # stdout stays data
    assert "query query: up genes used 12, down genes used 12" in res.stderr
    assert "unknown" in res.stderr and "NOTAGENE1" in res.stderr
    assert "method wtcs" in res.stderr
    notes_file = (d / "noted" / "notes.txt").read_text().splitlines()
    block = [ln.strip() for ln in res.stderr.split("notes:", 1)[1].splitlines() if ln.startswith("  ")]
    assert notes_file == block
    import json

    described = json.loads((d / "noted" / "describe.json").read_text())
    assert described["queries"][0]["unknown"] == ["NOTAGENE1"]
    for note in described["notes"]:  # every engine note is in the block, verbatim
        assert note in notes_file


def test_overwrite_never_replaces_a_folder_that_is_not_a_results_folder(setup, capsys):
    d, _ = setup
    folder = d / "papers"
    folder.mkdir()
    (folder / "draft.tex").write_text("keep me")
    err = _fail(_query_args(d, "--out", str(folder), "--overwrite"), capsys)
    assert str(folder) in err and "not a results folder" in err
    assert [p.name for p in folder.iterdir()] == ["draft.tex"]


def test_store_background_refuses_a_pcl_file_with_no_known_member(setup, capsys):
    """The same PCL check where backgrounds are built (before any introspection query runs)."""
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    d, _ = setup
    write_gmt([GeneSet("BAD", "", ("BRD-K12345678",))], d / "bg_pcl.gmt")
    capsys.readouterr()
    from opencmap.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["store", "background", str(d / "store"), "--pcl", str(d / "bg_pcl.gmt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "bg_pcl.gmt" in err and "BRD-K12345678" in err and "none of its 1 member ids" in err
