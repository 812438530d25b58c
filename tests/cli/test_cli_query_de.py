"""``opencmap query --de / --rnk``: queries from DE tables and ranked lists, notes on stderr."""

from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from opencmap.cli import cli
from opencmap.errors import GeneSetError, ValidationError
from opencmap.query.store import build_store

_SYNTHETIC = runpy.run_path(str(Path(__file__).resolve().parents[1] / "query" / "synthetic_level5.py"))
DATA = Path(__file__).resolve().parents[1] / "data" / "de"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    gct, info, prog = _SYNTHETIC["make_level5"](seed=5)
    d = tmp_path_factory.mktemp("cli_de")
    build_store(d / "store", gct, sig_info=info)
    up, dn = prog["A_up"], prog["A_dn"]
    genes = up + dn + ["NOT_A_GENE"]
    pd.DataFrame({
        "baseMean": 100.0,
        "log2FoldChange": [3.0] * len(up) + [-3.0] * len(dn) + [9.0],
        "lfcSE": 0.2, "stat": 1.0, "pvalue": 1e-6,
        "padj": [1e-5] * len(genes),
    }, index=genes).to_csv(d / "deseq2.csv")
    return d


def run(args):
    return CliRunner().invoke(cli, ["query", *map(str, args)], catch_exceptions=False)


def test_de_table_query(setup):
    d = setup
    res = run([d / "store", "--de", d / "deseq2.csv", "--de-top", "30", "--level", "pert_summary", "--top", "4", "--tau-method", "exact"])
    assert res.exit_code == 0, res.output
    assert "DESeq2 table (genes row names" in res.stderr
    assert "30 up, 30 down genes" in res.stderr
    assert "1 candidate genes (past the filters) are not in the store's feature space and were skipped: NOT_A_GENE" in res.stderr
    lines = res.stdout.split("# deseq2: top 4")[1].splitlines()[2:]
    assert {line.split("\t")[1] for line in lines} == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}


def test_de_column_flags_and_errors(setup):
    d = setup
    pd.read_csv(d / "deseq2.csv", index_col=0).rename(columns={"log2FoldChange": "effect"}).to_csv(d / "renamed.csv")
    res = CliRunner().invoke(cli, ["query", str(d / "store"), "--de", str(d / "renamed.csv")])
    msg = str(res.exception)
    assert isinstance(res.exception, ValidationError)
    assert "no log fold change column" in msg and "--de-lfc-col" in msg and "'effect'" in msg
    ok = run([d / "store", "--de", d / "renamed.csv", "--de-lfc-col", "effect", "--de-top", "20", "--top", "1"])
    assert ok.exit_code == 0, ok.output
    strict = CliRunner().invoke(cli, ["query", str(d / "store"), "--de", str(d / "deseq2.csv"), "--de-padj", "1e-9"])
    assert isinstance(strict.exception, GeneSetError) and "filtered out" in str(strict.exception)


def test_scanpy_groups_and_rnk(setup):
    d = setup
    res = run([d / "store", "--de", DATA / "scanpy_rank_genes_groups.csv", "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "# 0: top 2" in res.stdout and "# 1: top 2" in res.stdout
    vec = run([d / "store", "--rnk", DATA / "ranked.rnk", "--metric", "spearman", "--top", "2"])
    assert vec.exit_code == 0, vec.output
    assert "60 genes used as a numeric vector" in vec.stderr and "# ranked: top 2" in vec.stdout


def test_de_selection_notes_are_in_the_result_files(setup, tmp_path):
    """What was taken from a DE table is written with the result (notes.txt, describe.json), not
    only printed: a results folder read later still says how its queries were made."""
    import json

    d = setup
    out = tmp_path / "res"
    res = run([d / "store", "--de", d / "deseq2.csv", "--de-top", "30", "--top", "2", "--out", out])
    assert res.exit_code == 0, res.output
    notes = (out / "notes.txt").read_text()
    assert "DESeq2 table (genes row names" in notes and "30 up, 30 down genes" in notes and "NOT_A_GENE" in notes
    described = json.loads((out / "describe.json").read_text())["notes"]
    assert any("DESeq2 table" in n for n in described)
    assert res.stderr.count("DESeq2 table (genes row names") == 1  # printed once, with the result's notes
