"""What people read from the CLI: a compact table on a terminal, TSV on a pipe, plain progress
lines off a terminal, messages naming flags and paths."""

from __future__ import annotations

import io
import os
import pty
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from opencmap.cli import cli, main
from opencmap.cli.messages import for_cli
from opencmap.cli.progress import Progress
from opencmap.cli.tables import default_columns, print_connections
from opencmap.query.background import build_background
from opencmap.query.store import build_store

REPO = Path(__file__).resolve().parents[2]
_SYNTHETIC = runpy.run_path(str(REPO / "tests" / "query" / "synthetic_level5.py"))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    gct, info, _ = _SYNTHETIC["make_level5"](seed=5)
    info = info.copy()
    info["distil_id"] = [f"PLATE_X1:A{i:02d}|PLATE_X2:A{i:02d}" for i in range(len(info))]
    d = tmp_path_factory.mktemp("workbench")
    store = build_store(d / "store", gct, sig_info=info)
    build_background(store, pcl=_SYNTHETIC["PCL"])
    return d, store


def _query_args(store) -> list[str]:
    genes = list(store.space().gene_ids)
    return ["query", str(store.path), "--up-genes", ",".join(genes[:15]), "--down-genes", ",".join(genes[-15:]), "--top", "5"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OPENCMAP_PROGRESS_SECONDS"] = "0"
    env.pop("OPENCMAP_PROGRESS", None)
    env["COLUMNS"] = "160"
    return env


_RUN = [sys.executable, "-c", "from opencmap.cli import main; main()"]


def test_query_on_a_terminal_prints_a_compact_table(store_dir):
    _, store = store_dir
    leader, follower = pty.openpty()
    proc = subprocess.Popen(_RUN + _query_args(store), stdout=follower, stderr=subprocess.PIPE, env=_env())
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, err = proc.communicate(timeout=300)
    os.close(leader)
    out = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())  # styles (bold header)
    assert proc.returncode == 0, err.decode()
    lines = [line for line in out.splitlines() if line.strip()]
    header = next(line for line in lines if line.lstrip().startswith("rank"))
    for col in ("pert_iname", "pert_type", "cell_id", "tau", "ncs", "wtcs", "fdr_q"):
        assert col in header
    assert "distil_id" not in out and "sig_id" not in header
    assert "\t" not in out and "-0.0000" not in out
    assert "query: top 5 at level sig (positive)" in out
    assert len([line for line in lines if line.lstrip()[:1].isdigit()]) == 5
    # stderr was a pipe: progress as plain lines, no carriage returns or escape codes
    text = err.decode()
    assert "scoring: started" in text and "scoring: done" in text
    assert "\r" not in text and "\x1b" not in text


def test_query_on_a_pipe_prints_tsv_and_progress_lines(store_dir):
    _, store = store_dir
    proc = subprocess.run(_RUN + _query_args(store), capture_output=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    out, err = proc.stdout.decode(), proc.stderr.decode()
    body = out.split("\n", 1)[1]
    table = pd.read_csv(io.StringIO(body), sep="\t")
    assert len(table) == 5 and {"sig_id", "distil_id", "tau", "ncs"} <= set(table.columns)  # every column, machine-readable
    assert np.all(np.diff(table["tau"].to_numpy()) <= 0)  # strongest first
    assert "-0.0000" not in out
    assert err.index("notes:") >= 0 and "scoring: started" in err and "\r" not in err and "\x1b" not in err


def test_columns_option_and_errors(store_dir):
    _, store = store_dir
    res = CliRunner().invoke(cli, _query_args(store) + ["--columns", "rank,sig_id,tau"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1] == "rank\tsig_id\ttau"
    res = CliRunner().invoke(cli, _query_args(store) + ["--columns", "rank,nope"])
    assert res.exit_code != 0 and "--columns" in res.output and "nope" in res.output and "pert_iname" in res.output


def test_rich_table_on_a_forced_terminal():
    from rich.console import Console

    table = pd.DataFrame({"query": ["q"] * 2, "sig_id": ["S1", "S2"], "pert_iname": ["vorinostat", "EMPTY_VECTOR"],
                          "pert_type": ["trt_cp", "ctl_vector"], "cell_id": ["A375", "MCF7"], "pert_idose": ["10 uM", ""],
                          "distil_id": ["P:A01|P:A02", "P:B01"], "wtcs": [0.5, -0.00001], "ncs": [1.2, -0.0], "fdr_q": [1e-5, 0.9],
                          "tau": [99.5, -0.0]})
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    print_connections([("q", table)], level="sig", direction="positive", metric="wtcs", console=console)
    out = buf.getvalue()
    assert "vorinostat" in out and "distil_id" not in out and "-0.0" not in out and "\t" not in out
    header = next(line for line in out.splitlines() if "rank" in line).split()
    assert header == ["rank", "pert_iname", "pert_type", "cell_id", "pert_idose", "tau", "ncs", "wtcs", "fdr_q"]
    ranked = table.assign(rank=[1, 2])
    assert default_columns(ranked, "wtcs") == header


def test_progress_lines_off_a_terminal():
    buf = io.StringIO()
    with Progress(unit="sig", mode="lines", stream=buf, every=0) as progress:
        for done in (0, 50, 100):
            progress("scoring", done, 100)
        progress("writing", 3, 10)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "scoring: started (100 sig)"
    assert "scoring: 50 sig of 100 sig (50%)" in lines
    assert any(line.startswith("scoring: done, 100 sig in") for line in lines)
    assert lines[-1].startswith("writing: stopped at 3 sig of 10 sig")
    assert "\r" not in buf.getvalue()
    quiet = io.StringIO()
    with Progress(mode="lines", stream=quiet, every=3600) as progress:  # one line at start and end only
        for done in range(100):
            progress("x", done, 100)
    assert len(quiet.getvalue().splitlines()) == 2


def test_messages_name_flags_and_paths(store_dir, capsys):
    d, store = store_dir
    genes = list(store.space().gene_ids)
    with pytest.raises(SystemExit) as exc:
        main(["query", str(store.path), "--up-genes", ",".join(genes[:3]), "--down-genes", ",".join(genes[-3:])])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--min-genes" in err and "min_genes" not in err
    gct, info, _ = _SYNTHETIC["make_level5"](seed=5)
    from opencmap.io import write_gctx

    write_gctx(gct, d / "l5.gctx")
    with pytest.raises(SystemExit):
        main(["store", "build", str(d / "l5.gctx"), str(store.path)])
    err = capsys.readouterr().err
    assert str(store.path) in err and "--overwrite" in err and "overwrite=True" not in err
    assert for_cli("give gene_info= (CLI --gene-info, e.g. X.txt) or") == "give --gene-info (e.g. X.txt) or"
