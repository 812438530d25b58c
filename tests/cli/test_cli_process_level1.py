"""``opencmap process --level 1``: LXB folders + plate maps → Level 4/5, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencmap.cli import cli, main
from opencmap.io import read_gct, read_table

PLATE = "TEST_A375_24H_X1_B20"


def test_process_level1_real_plate(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "pipeline/test_plate"
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        ["process", "--level", "1", str(folder / "lxb"), str(out), "--plate-map", str(folder / f"{PLATE}.map"),
         "--seed", "20", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    assert "26 instances on 1 plates" in res.output
    level4 = read_gct(out / "level4.gctx")
    assert level4.shape == (978, 23)
    assert len(read_table(out / "censored.txt")) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["start_level"] == 1 and manifest["inputs"]["level1"]["seed"] == 20


def test_synthetic_beads_end_to_end(tmp_path: Path) -> None:
    """``datasets make --beads`` writes CMap's lxb/ + map/ layout that ``process --level 1`` reads."""
    comp = tmp_path / "comp"
    res = CliRunner().invoke(cli, ["datasets", "make", str(comp), "--size", "tiny", "--beads", "--bead-plates", "1", "-q"])
    assert res.exit_code == 0, res.output
    assert "bead-level:" in res.output
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["process", "--level", "1", str(comp / "lxb"), str(out), "--plate-map", str(comp / "map")])
    assert res.exit_code == 0, res.output
    assert "level 1" in res.stderr  # the deconvolution progress bar
    level4 = read_gct(out / "level4.gctx")
    n_wells = json.loads((comp / "manifest.json").read_text())["beads"]["n_wells"]
    n_censored = len(read_table(out / "censored.txt"))
    assert level4.shape[1] == n_wells - n_censored and n_censored <= 3
    assert len(read_table(out / "sig_info.txt")) > 0


def test_missing_plate_map_is_one_line_error(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["process", "--level", "1", str(shared_data / "pipeline/test_plate/lxb"), str(tmp_path / "o"), "--no-progress"])
    assert exc.value.code == 2
