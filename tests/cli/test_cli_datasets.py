"""``opencmap datasets make | info | truth``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from opencmap.cli import cli, main
from opencmap.io import read_gct


def test_make_info_truth(tmp_path):
    out = tmp_path / "comp"
    runner = CliRunner()
    res = runner.invoke(cli, ["datasets", "make", str(out), "--size", "tiny", "--n-inferred", "50", "--seed", "3"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "profiles x 1028 genes" in res.stdout
    assert "generating" in res.stderr  # tqdm progress goes to stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["n_genes"] == 1028

    res = runner.invoke(cli, ["datasets", "info", str(out)], catch_exceptions=False)
    assert res.exit_code == 0
    assert "seed: 3" in res.stdout and "A375, MCF7" in res.stdout and "level3.gctx" in res.stdout

    res = runner.invoke(cli, ["datasets", "truth", str(out), str(tmp_path / "truth.gctx")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    truth = read_gct(tmp_path / "truth.gctx")
    assert truth.data.shape[0] == 1028 and {"pert_id", "cell_id", "pert_dose", "pert_time"} <= set(truth.col_meta.columns)


def test_make_refuses_existing_and_bad_options(tmp_path, capsys):
    out = tmp_path / "comp"
    assert CliRunner().invoke(cli, ["datasets", "make", str(out), "--size", "tiny", "--n-inferred", "0", "-q"]).exit_code == 0
    with pytest.raises(SystemExit) as exc:
        main(["datasets", "make", str(out), "--size", "tiny", "-q"])
    assert exc.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    res = CliRunner().invoke(cli, ["datasets", "make", str(out), "--n-inferred", "many"])
    assert res.exit_code == 2 and "'all'" in res.output
    res = CliRunner().invoke(cli, ["datasets", "make", str(out), "--size", "huge"])
    assert res.exit_code == 2


def test_info_on_a_folder_without_manifest(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["datasets", "info", str(tmp_path)])
    assert exc.value.code == 2
    assert "manifest.json" in capsys.readouterr().err
