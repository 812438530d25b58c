"""``opencmap process`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from opencmap.cli import cli, main
from opencmap.core.gct import GCT
from opencmap.io import read_table, write_gctx, write_table


def _inputs(folder: Path) -> tuple[Path, Path]:
    """One replicate set, 2 plates x 12 wells; wells 0-2 vehicles, the rest 9 compounds."""
    rng = np.random.default_rng(7)
    genes = pd.Index([str(10 + i) for i in range(40)], dtype=object)
    effects = rng.normal(0, 2, size=(40, 12))
    cols, rows = [], []
    for rep in (1, 2):
        for w in range(12):
            cols.append(8 + effects[:, w] * (w >= 3) + rng.normal(0, 0.4, 40))
            rows.append(
                {"inst_id": f"SET1_MCF7_24H_X{rep}:B{w:02d}", "rna_plate": f"SET1_MCF7_24H_X{rep}", "rna_well": f"B{w:02d}", "cell_id": "MCF7",
                 "pert_id": "DMSO" if w < 3 else f"BRD-{w}", "pert_type": "ctl_vehicle" if w < 3 else "trt_cp",
                 "pert_dose": np.nan if w < 3 else 5.0, "pert_time": 24}
            )
    inst = pd.DataFrame(rows)
    write_gctx(GCT(np.array(cols).T, rids=genes, cids=inst["inst_id"]), folder / "l3.gctx")
    write_table(inst, folder / "inst.txt")
    return folder / "l3.gctx", folder / "inst.txt"


def test_process_command(tmp_path: Path) -> None:
    matrix, inst = _inputs(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli, ["process", str(matrix), str(out), "--inst-info", str(inst), "--zscore", "zsvc", "--weights", "cmappy", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert "24 instances on 2 plates -> 10 signatures" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["zscore_method"] == "zsvc"
    assert manifest["params"]["weight_method"] == "mean" and manifest["params"]["round_weights"] == 4
    info = read_table(out / "sig_info.txt", index_col="sig_id")
    assert "SET1_MCF7_24H:BRD-5:5" in info.index and info.loc["SET1_MCF7_24H:BRD-5:5", "distil_wt"] == "0.5000,0.5000"


def test_process_error_is_one_line(tmp_path: Path) -> None:
    matrix, inst = _inputs(tmp_path)
    table = read_table(inst)
    table["pert_type"] = "trt_cp"
    write_table(table, tmp_path / "novehicle.txt")
    with pytest.raises(SystemExit) as exc:
        main(["process", str(matrix), str(tmp_path / "o"), "--inst-info", str(tmp_path / "novehicle.txt"), "--zscore", "zsvc", "--no-progress"])
    assert exc.value.code == 2


def test_process_progress_bars_go_to_stderr(tmp_path: Path) -> None:
    matrix, inst = _inputs(tmp_path)
    res = CliRunner().invoke(cli, ["process", str(matrix), str(tmp_path / "out"), "--inst-info", str(inst), "--group-by", "cell_id,pert_id,pert_dose,pert_time,rna_well"])
    assert res.exit_code == 0, res.output
    assert "replicate sets" in res.stderr
    info = read_table(tmp_path / "out" / "sig_info.txt", index_col="sig_id")
    assert len(info) == 12  # rna_well in the grouping keeps every DMSO well apart
    assert "SET1_MCF7_24H:DMSO:-666:B00" in info.index


def test_process_params_file_and_step_flags(tmp_path: Path) -> None:
    """--params sets any parameter (nested steps too); options override it; all in the manifest."""
    matrix, inst = _inputs(tmp_path)
    (tmp_path / "params.json").write_text(json.dumps({"min_mad": 0.2, "zscore_method": "zsvc", "liss": {"span": 6}}))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        ["process", str(matrix), str(out), "--inst-info", str(inst), "--params", str(tmp_path / "params.json"),
         "--zscore", "zspc", "--no-flip", "--peak-method", "kspeak", "--no-censor", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    params = json.loads((out / "manifest.json").read_text())["params"]
    assert params["min_mad"] == 0.2 and params["zscore_method"] == "zspc" and params["start_level"] == 3
    assert params["liss"]["span"] == 6 and params["flip"] is None and params["dpeak"]["method"] == "kspeak"
    assert params["censor"]["drop"] == []
    # a manifest repeats its run's parameters
    again = CliRunner().invoke(cli, ["process", str(matrix), str(tmp_path / "again"), "--inst-info", str(inst),
                                     "--params", str(out / "manifest.json"), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["params"] == params
