"""``opencmap gct`` end to end (click's CliRunner on opencmap.cli.cli, plus one real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from opencmap.cli import cli
from opencmap.io import read_gct, write_gct, write_gctx

pytestmark = pytest.mark.filterwarnings("ignore::opencmap.errors.OpenCMapWarning")


def _run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


@pytest.mark.parametrize("sub", [[], ["info"], ["convert"], ["subset"], ["concat"]])
def test_help_everywhere(sub):
    result = _run("gct", *sub, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_info(shared_data):
    result = _run("gct", "info", str(shared_data / "formats/cmapm/gctv13_02.gctx"))
    assert result.exit_code == 0
    assert "GCTX1.0" in result.output and "978 rows x 10 columns" in result.output
    assert "float32" in result.output and "(10, 978)" in result.output and "pr_gene_symbol" in result.output
    result = _run("gct", "info", "--json", str(shared_data / "formats/cmappy/test_l1000.gct"))
    facts = json.loads(result.output)
    assert facts["format"] == "GCT 1.3 (text)" and facts["n_cols"] == 377 and len(facts["col_fields"]) == 35


def test_convert_both_ways(shared_data, tmp_path):
    src = shared_data / "formats/cmapm/gctv13_02.gctx"
    assert _run("gct", "convert", str(src), str(tmp_path / "a.gct")).exit_code == 0
    assert _run("gct", "convert", str(tmp_path / "a.gct"), str(tmp_path / "b.gctx"), "--compression", "gzip", "--chunks", "4").exit_code == 0
    original, back = read_gct(src), read_gct(tmp_path / "b.gctx")
    assert back.equals(original, check_meta=False)
    info = json.loads(_run("gct", "info", "--json", str(tmp_path / "b.gctx")).output)
    assert info["chunks"] == [4, 978] and info["compression"].startswith("gzip")


def test_subset_shared_fixture(shared_data, tmp_path):
    base = shared_data / "formats/cmappy"
    out = tmp_path / "sub.gct"
    result = _run(
        "gct", "subset", str(base / "test_subset_in.gct"), str(out),
        "--rid-file", str(base / "test_subset_rid.grp"), "--cid", "d", "--cid", "e", "--cid", "g", "--ignore-missing",
    )
    assert result.exit_code == 0, result.output
    assert read_gct(out).equals(read_gct(base / "test_subset_expected.gct"))


def test_subset_by_metadata_field(shared_data, tmp_path):
    src = shared_data / "formats/cmapm/gctv13_02.gctx"
    out = tmp_path / "f.gctx"
    result = _run("gct", "subset", str(src), str(out), "--col-field", "pert_type=ctl_vehicle", "--row-field", "pr_gene_symbol=PSME1", "--row-field", "pr_gene_symbol=CISD1")
    assert result.exit_code == 0, result.output
    g = read_gct(out)
    assert g.shape == (2, 4) and set(g.row_meta["pr_gene_symbol"]) == {"PSME1", "CISD1"}
    assert (g.col_meta["pert_type"] == "ctl_vehicle").all()
    bad = CliRunner().invoke(cli, ["gct", "subset", str(src), str(out), "--col-field", "novalue"])
    assert bad.exit_code != 0 and "FIELD=VALUE" in bad.output


def test_concat_columns_and_rows(shared_data, tmp_path):
    full = read_gct(shared_data / "formats/cmapm/gctv13_02.gctx")
    write_gctx(full.take(None, [0, 1, 2]), tmp_path / "a.gctx")
    write_gct(full.take(np.arange(978)[::-1], [3, 4]), tmp_path / "b.gct")  # rows in another order
    result = _run("gct", "concat", str(tmp_path / "c.gctx"), str(tmp_path / "a.gctx"), str(tmp_path / "b.gct"))
    assert result.exit_code == 0, result.output
    c = read_gct(tmp_path / "c.gctx")
    assert c.rids.equals(full.rids) and list(c.cids) == list(full.cids[:5])
    np.testing.assert_array_equal(c.data, full.data[:, :5])
    write_gctx(full.take(np.arange(500), None), tmp_path / "r1.gctx")
    write_gctx(full.take(np.arange(500, 978), None), tmp_path / "r2.gctx")
    assert _run("gct", "concat", "--rows", str(tmp_path / "r.gct"), str(tmp_path / "r1.gctx"), str(tmp_path / "r2.gctx")).exit_code == 0
    assert read_gct(tmp_path / "r.gct").equals(full, check_meta=False)


def _main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from opencmap.cli import main; main()", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_errors_exit_non_zero_with_one_line(shared_data, tmp_path):
    src = shared_data / "formats/cmappy/test_subset_in.gct"
    proc = _main("gct", "subset", str(src), str(tmp_path / "o.gct"), "--rid", "zz")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "zz" in lines[0] and "test_subset_in.gct" in lines[0]
    assert not (tmp_path / "o.gct").exists()
    a = tmp_path / "a.gctx"
    write_gctx(read_gct(src), a)
    other = read_gct(shared_data / "formats/cmappy/test_subset_expected.gct")
    write_gctx(other, tmp_path / "b.gctx")
    proc = _main("gct", "concat", str(tmp_path / "c.gctx"), str(a), str(tmp_path / "b.gctx"))
    assert proc.returncode == 2 and "row ids differ" in proc.stderr
    assert not (tmp_path / "c.gctx").exists()
    (tmp_path / "trunc.gctx").write_bytes(a.read_bytes()[:2000])
    proc = _main("gct", "info", str(tmp_path / "trunc.gctx"))
    assert proc.returncode == 2 and "truncated or corrupt" in proc.stderr


def test_python_m_opencmap_is_the_command(tmp_path):
    """``python -m opencmap`` runs the same command: help, and an error as one line with exit 2."""
    ok = subprocess.run([sys.executable, "-m", "opencmap", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "Usage: opencmap" in ok.stdout and "query" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "opencmap", "gct", "info", str(tmp_path / "none.gct")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
