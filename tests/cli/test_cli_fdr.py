"""``opencmap query --fdr-method`` and ``opencmap store fdr-null`` (issue 12, item 3)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from opencmap.cli import cli
from opencmap.errors import ConfigError
from opencmap.query.engine import run_query
from opencmap.query.store import build_store

_SYNTHETIC = runpy.run_path(str(Path(__file__).resolve().parents[1] / "query" / "synthetic_level5.py"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    gct, info, prog = _SYNTHETIC["make_level5"](seed=6)
    d = tmp_path_factory.mktemp("cli_fdr")
    build_store(d / "store", gct, sig_info=info)
    return d, prog


def _query(d: Path, prog, *extra: str):
    args = ["query", str(d / "store"), "--up-genes", ",".join(prog["A_up"][:15]), "--down-genes", ",".join(prog["A_dn"][:15]),
            "--name", "A", "--top", "3", *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_cmap_method_notes_and_flag_column(setup):
    d, prog = setup
    res = _query(d, prog, "--fdr-method", "cmap", "--out", str(d / "out_cmap"))
    assert res.exit_code == 0, res.output
    assert "fdr_q: cmap method" in res.stderr
    table = pd.read_csv(d / "out_cmap" / "sig.tsv", sep="\t", keep_default_na=False)
    assert "fdr_flag" in table.columns and "fdr_p" not in table.columns


def test_prebuilt_null_is_used_and_matches_python(setup):
    d, prog = setup
    built = CliRunner().invoke(cli, ["store", "fdr-null", str(d / "store"), "--size", "15,15", "--n-random", "200", "--seed", "2"],
                               catch_exceptions=False)  # fmt: skip
    assert built.exit_code == 0, built.output
    entry = next(iter(json.loads(built.stdout).values()))
    assert entry["n_up"] == 15 and entry["seed"] == 2 and not entry["cached_before"]
    res = _query(d, prog, "--fdr-null-size", "200", "--fdr-seed", "2", "--out", str(d / "out_rq"))
    assert res.exit_code == 0, res.output
    assert "random_query_pooled method" in res.stderr and "computed now" not in res.stderr  # read from the cache
    cli_table = pd.read_csv(d / "out_rq" / "sig.tsv", sep="\t")
    api = run_query(d / "store", prog["A_up"][:15], prog["A_dn"][:15], name="A", fdr_null_size=200, fdr_seed=2).to_frame("sig")
    np.testing.assert_allclose(cli_table["fdr_q"].to_numpy(float), api["fdr_q"].to_numpy(float), rtol=1e-5)


def test_bad_size_is_a_usage_error(setup):
    d, _ = setup
    res = CliRunner().invoke(cli, ["store", "fdr-null", str(d / "store"), "--size", "15"])
    assert res.exit_code == 2 and "UP,DOWN" in res.output


def test_tail_that_the_size_cannot_have_is_refused(setup):
    """``--es-tail both`` with a one-sided size used to build the up-tail null silently."""
    d, _ = setup
    before = sorted(p.name for p in (d / "store").rglob("*"))
    res = CliRunner().invoke(cli, ["store", "fdr-null", str(d / "store"), "--size", "15,0", "--es-tail", "both", "--n-random", "20"])
    assert isinstance(res.exception, ConfigError)
    msg = str(res.exception)
    assert "es_tail='both'" in msg and "15,0" in msg and "--es-tail up" in msg
    assert sorted(p.name for p in (d / "store").rglob("*")) == before  # nothing built
    ok = CliRunner().invoke(cli, ["store", "fdr-null", str(d / "store"), "--size", "15,0", "--es-tail", "up", "--n-random", "20"])
    assert ok.exit_code == 0, ok.output
