"""The shared runner end to end on a small Level 3 fixture: outputs, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import opencmap.pipeline.run as run_module
from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, PipelineError
from opencmap.io import read_gct, read_table, write_gct, write_gctx, write_table
from opencmap.kernels.modz import modz
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.run import run_pipeline
from opencmap.pipeline.signatures import SIG_INFO_COLUMNS
from opencmap.pipeline.zscore import zscore_plate

SETS = ("ABC001_A375_6H", "ABC002_PC3_24H")
WELLS = 16
N_LM = 50


def make_level3(folder: Path, *, seed: int = 0) -> tuple[GCT, pd.DataFrame]:
    """2 replicate sets x 3 plates x 16 wells: 4 DMSO, 6 compounds, 6 hairpins (3 genes x 2)."""
    rng = np.random.default_rng(seed)
    genes = [str(1000 + i) for i in range(N_LM + 20)]
    row_meta = pd.DataFrame(
        {"pr_gene_symbol": [f"G{g}" for g in genes], "pr_is_lm": [1] * N_LM + [0] * 20}, index=pd.Index(genes, dtype=object)
    )
    base = rng.normal(8, 2, size=len(genes))
    columns, records = [], []
    for set_name in SETS:
        cell, time_h = set_name.split("_")[1], int(set_name.split("_")[2][:-1])
        effects = [rng.normal(0, 1.5, size=len(genes)) * (w >= 4) for w in range(WELLS)]
        for rep in (1, 2, 3):
            plate = f"{set_name}_X{rep}"
            for w in range(WELLS):
                if w < 4:
                    pert_type, pert_id, iname, dose = "ctl_vehicle", "DMSO", "DMSO", np.nan
                elif w < 10:
                    pert_type, pert_id, iname, dose = "trt_cp", f"BRD-K{w:04d}", f"drug{w}", 10.0
                else:
                    pert_type, pert_id, iname, dose = "trt_sh", f"TRCN{w:04d}", f"GENE{(w - 10) // 2}", np.nan
                columns.append(base + effects[w] + rng.normal(0, 0.5, size=len(genes)))
                records.append(
                    {
                        "inst_id": f"{plate}:A{w + 1:02d}",
                        "rna_plate": plate,
                        "rna_well": f"A{w + 1:02d}",
                        "pert_id": pert_id,
                        "pert_iname": iname,
                        "pert_type": pert_type,
                        "pert_dose": dose,
                        "pert_dose_unit": "um" if pert_type == "trt_cp" else np.nan,
                        "pert_time": time_h,
                        "pert_time_unit": "h",
                        "cell_id": cell,
                    }
                )
    inst = pd.DataFrame(records)
    level3 = GCT(np.array(columns).T, row_meta=row_meta, col_meta=pd.DataFrame(index=pd.Index(inst["inst_id"], dtype=object)))
    write_gctx(level3, folder / "level3.gctx")
    write_table(inst, folder / "inst_info.txt")
    return level3, inst


@pytest.fixture()
def fixture_dir(tmp_path: Path) -> Path:
    make_level3(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, run_module.RunResult, list]:
    folder = tmp_path_factory.mktemp("run")
    make_level3(folder)
    calls: list = []
    result = run_pipeline(
        folder / "level3.gctx", folder / "out", inst_info=folder / "inst_info.txt", progress=lambda *a: calls.append(a)
    )
    return folder, result, calls


def test_outputs_and_counts(finished) -> None:
    folder, result, calls = finished
    assert result.n_instances == 96 and result.n_plates == 6 and result.n_replicate_sets == 2
    # per set: DMSO + 6 compounds + 6 hairpins = 13 signatures; CGS: 3 genes x 2 cell lines
    assert result.n_signatures == 26 and result.n_cgs == 6
    assert not (folder / "out" / ".opencmap-work").exists()
    stages = {c[0] for c in calls}
    assert {"plates", "replicate sets", "cgs", "write"} <= stages
    assert ("plates", 6, 6) in calls
    manifest = json.loads(result.manifest.read_text())
    assert manifest["params"] == PipelineParams().to_dict()
    assert manifest["versions"]["opencmap"] and manifest["counts"]["signatures"] == 26
    assert manifest["replicate_grouping"]["group_by"] == ["cell_id", "pert_id", "pert_dose", "pert_time"]


def test_level4_is_the_plate_zscore(finished) -> None:
    folder, result, _ = finished
    level4 = read_gct(result.level4)
    level3 = read_gct(folder / "level3.gctx")
    inst = read_table(folder / "inst_info.txt").set_index("inst_id")
    assert level4.cids.equals(level3.cids)
    plate = "ABC002_PC3_24H_X2"
    cids = inst.index[inst["rna_plate"] == plate]
    expected = zscore_plate(GCT(level3.subset(cids=cids).data, row_meta=level3.row_meta, col_meta=inst.loc[cids]))
    np.testing.assert_array_equal(level4.subset(cids=cids).data, expected.data)
    assert level4.col_meta.loc[cids[0], "pert_type"] == "ctl_vehicle"


def test_level5_is_modz_of_the_replicates(finished) -> None:
    _, result, _ = finished
    level4 = read_gct(result.level4)
    level5 = read_gct(result.level5)
    info = read_table(result.sig_info, index_col="sig_id")
    assert list(info.columns[: len(SIG_INFO_COLUMNS) - 1]) == list(SIG_INFO_COLUMNS[1:])
    assert level5.cids.equals(info.index) and info.index.is_unique
    sig = "ABC001_A375_6H:BRD-K0005:10"
    reps = info.loc[sig, "distil_id"].split("|")
    assert reps == [f"ABC001_A375_6H_X{r}:A06" for r in (1, 2, 3)]
    ref = modz(level4.subset(cids=reps).data, np.arange(N_LM))
    np.testing.assert_allclose(level5.subset(cids=[sig]).data[:, 0], ref.consensus, rtol=1e-6, atol=1e-6)
    assert info.loc[sig, "distil_nsample"] == 3 and info.loc[sig, "pert_idose"] == "10 um"
    assert info.loc["ABC001_A375_6H:DMSO:-666", "distil_nsample"] == 12
    cgs = info[info["pert_type"] == "trt_sh.cgs"]
    assert sorted(cgs.index) == sorted(f"CGS:{c}:{t}:GENE{g}" for c, t in (("A375", 6), ("PC3", 24)) for g in range(3))
    assert cgs["distil_nsample"].eq(2).all()
    # good replicates in this fixture: strong correlation, gold, one exemplar per pert x cell
    treated = info[info["pert_type"] == "trt_cp"]
    assert (treated["distil_cc_q75"] > 0.5).all() and treated["is_gold"].eq(1).all()
    assert info.groupby(["pert_id", "cell_id"])["is_exemplar_sig"].sum().eq(1).all()
    assert np.isfinite(level5.data).all()


def _interrupted_run(fixture_dir: Path, monkeypatch):
    """Run the fixture until collapsing the second set raises KeyboardInterrupt; returns
    ``(args, real build_signatures)`` with the failing replacement still installed."""
    real_build = run_module.build_signatures
    state = {"calls": 0}

    def failing_build(*args, **kwargs):
        state["calls"] += 1
        if state["calls"] == 2:
            raise KeyboardInterrupt  # simulated interruption while collapsing the second set
        return real_build(*args, **kwargs)

    monkeypatch.setattr(run_module, "build_signatures", failing_build)
    args = (fixture_dir / "level3.gctx", fixture_dir / "out")
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(*args, inst_info=fixture_dir / "inst_info.txt")
    return args, real_build


def test_resume_after_interruption(fixture_dir: Path, monkeypatch) -> None:
    args, real_build = _interrupted_run(fixture_dir, monkeypatch)
    work = fixture_dir / "out" / ".opencmap-work"
    done = (work / "done.txt").read_text().splitlines()
    assert len([d for d in done if d.startswith("plate")]) == 6 and done.count("set\tABC001_A375_6H") == 1
    assert not (fixture_dir / "out" / "level5.gctx").exists()

    # different parameters cannot resume this work folder
    with pytest.raises(ConfigError, match="different inputs or parameters"):
        run_pipeline(*args, inst_info=fixture_dir / "inst_info.txt", params=PipelineParams(min_mad=0.2))

    monkeypatch.setattr(run_module, "build_signatures", real_build)
    zscored: list[str] = []
    real_zscore = run_module.zscore_plate
    monkeypatch.setattr(run_module, "zscore_plate", lambda *a, **k: zscored.append(k.get("plate_id")) or real_zscore(*a, **k))
    resumed = run_pipeline(*args, inst_info=fixture_dir / "inst_info.txt", keep_work=True)
    assert zscored == []  # no finished plate was redone
    assert resumed.resumed_plates == 6 and resumed.resumed_sets == 1

    clean = run_pipeline(fixture_dir / "level3.gctx", fixture_dir / "clean", inst_info=fixture_dir / "inst_info.txt")
    a, b = read_gct(resumed.level5), read_gct(clean.level5)
    assert a.equals(b, check_meta=False)
    pd.testing.assert_frame_equal(read_table(resumed.sig_info), read_table(clean.sig_info))
    # restart discards the kept work folder and recomputes everything
    zscored.clear()
    again = run_pipeline(*args, inst_info=fixture_dir / "inst_info.txt", restart=True)
    assert len(zscored) == 6 and again.resumed_plates == 0


def test_mismatched_instance_table(fixture_dir: Path) -> None:
    inst = read_table(fixture_dir / "inst_info.txt")
    write_table(inst.iloc[1:], fixture_dir / "short.txt")
    with pytest.raises(PipelineError, match=r"1 of the 96 matrix columns are not in .*short.txt.*ABC001_A375_6H_X1:A01"):
        run_pipeline(fixture_dir / "level3.gctx", fixture_dir / "out", inst_info=fixture_dir / "short.txt")
    # extra rows in the table are fine (a GEO inst_info describes more than one matrix)
    extra = pd.concat([inst, inst.iloc[:1].assign(inst_id="OTHER:A01")])
    res = run_pipeline(fixture_dir / "level3.gctx", fixture_dir / "out2", inst_info=extra, params=PipelineParams(cgs=False))
    assert res.n_instances == 96 and res.n_cgs == 0
    with pytest.raises(PipelineError, match="grouping field"):
        run_pipeline(fixture_dir / "level3.gctx", fixture_dir / "out3", inst_info=inst.drop(columns=["pert_dose"]))


def test_zsvc_plate_without_vehicles_is_named(fixture_dir: Path) -> None:
    inst = read_table(fixture_dir / "inst_info.txt")
    on_plate = inst["rna_plate"] == "ABC002_PC3_24H_X3"
    inst.loc[on_plate & (inst["pert_type"] == "ctl_vehicle"), "pert_type"] = "ctl_untrt"
    with pytest.raises(PipelineError, match="plate ABC002_PC3_24H_X3 has no vehicle-control wells"):
        run_pipeline(fixture_dir / "level3.gctx", fixture_dir / "out", inst_info=inst, params=PipelineParams(zscore_method="zsvc"))


def test_text_gct_input_with_embedded_metadata(tmp_path: Path) -> None:
    level3, inst = make_level3(tmp_path)
    meta = inst.set_index("inst_id")
    meta.index = pd.Index(meta.index, dtype=object)
    subset = GCT(level3.data[:, :32], row_meta=level3.row_meta, col_meta=meta.iloc[:32])  # first set only
    write_gct(subset, tmp_path / "level3.gct")
    res = run_pipeline(tmp_path / "level3.gct", tmp_path / "out", params=PipelineParams(self_rank=False))
    assert res.n_plates == 2 and res.n_signatures == 13
    info = read_table(res.sig_info, index_col="sig_id")
    assert info["pct_self_rank_q25"].isna().all() and info["is_gold"].eq(0).all()


def make_level2(folder: Path) -> GCT:
    """The Level 3 fixture as Level 2 (linear scale) with the ten invariant probes; returns the Level 3."""
    from opencmap.pipeline.liss import LISS_REFERENCE

    level3, _ = make_level3(folder)
    rng = np.random.default_rng(1)
    cal_ids = [f"CAL{i:02d}" for i in range(1, 11)]
    cal = np.array([2 ** (LISS_REFERENCE[i + 1] + rng.normal(0, 0.1, size=level3.shape[1])) for i in range(10)])
    rows = pd.concat([level3.row_meta, pd.DataFrame({"pr_gene_symbol": cal_ids, "pr_is_lm": 0}, index=cal_ids)])
    write_gctx(GCT(np.vstack([2**level3.data, cal]), row_meta=rows, col_meta=level3.col_meta), folder / "level2.gctx")
    return level3


def test_level2_start_runs_liss_censor_qnorm(tmp_path: Path) -> None:
    level3 = make_level2(tmp_path)
    res = run_pipeline(
        tmp_path / "level2.gctx", tmp_path / "out", inst_info=tmp_path / "inst_info.txt", params=PipelineParams(start_level=2)
    )
    level4 = read_gct(res.level4)
    assert level4.rids.equals(level3.rids)  # invariant probes dropped by LISS
    censored = read_table(tmp_path / "out" / "censored.txt")
    manifest = json.loads(res.manifest.read_text())
    assert manifest["counts"]["censored_instances"] == len(censored) == 96 - level4.shape[1]
    assert res.n_signatures == 26 and np.isfinite(read_gct(res.level5).data).all()


def test_nan_in_level3_is_reported(tmp_path: Path) -> None:
    level3, inst = make_level3(tmp_path)
    data = level3.data.copy()
    data[3, 20] = np.nan
    write_gctx(GCT(data, row_meta=level3.row_meta, col_meta=level3.col_meta), tmp_path / "nan.gctx")
    with pytest.raises(PipelineError, match="plate ABC001_A375_6H_X2: 1 missing"):
        run_pipeline(tmp_path / "nan.gctx", tmp_path / "out", inst_info=tmp_path / "inst_info.txt")
    res = run_pipeline(
        tmp_path / "nan.gctx", tmp_path / "out2", inst_info=tmp_path / "inst_info.txt",
        params=PipelineParams(nan_policy="omit"), restart=True,
    )
    assert np.isfinite(read_gct(res.level5).data).all()  # the other replicates fill the gap


def test_level3_run_fills_outputs_in_place(fixture_dir: Path, monkeypatch) -> None:
    """No per-plate Level 4 copies; a lost partial output is redone from scratch on resume."""
    args, real_build = _interrupted_run(fixture_dir, monkeypatch)
    work = fixture_dir / "out" / ".opencmap-work"
    assert not list((work / "level4").iterdir())  # Level 4 lives in one partial file only
    assert (work / "level4.partial.gctx").exists() and (work / "level5.partial.gctx").exists()
    (work / "level5.partial.gctx").write_bytes(b"lost")  # e.g. a crash left it unreadable
    monkeypatch.setattr(run_module, "build_signatures", real_build)
    resumed = run_pipeline(*args, inst_info=fixture_dir / "inst_info.txt")
    assert resumed.resumed_plates == 0 and resumed.resumed_sets == 0  # everything redone
    clean = run_pipeline(fixture_dir / "level3.gctx", fixture_dir / "clean", inst_info=fixture_dir / "inst_info.txt")
    assert read_gct(resumed.level4).equals(read_gct(clean.level4))
    assert read_gct(resumed.level5).equals(read_gct(clean.level5))
    pd.testing.assert_frame_equal(read_table(resumed.sig_info), read_table(clean.sig_info))


def test_periodic_checkpoints_record_each_mark_once(fixture_dir: Path) -> None:
    from opencmap.backends import LocalBackend, Settings

    backend = LocalBackend(Settings(checkpoint_seconds=0.0))  # a durable checkpoint after every set
    seen: list[list[str]] = []
    work = fixture_dir / "out" / ".opencmap-work"

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "replicate sets" and (work / "done.txt").exists():
            seen.append((work / "done.txt").read_text().splitlines())

    result = run_pipeline(
        fixture_dir / "level3.gctx", fixture_dir / "out", inst_info=fixture_dir / "inst_info.txt", keep_work=True, progress=progress,
        backend=backend,
    )
    done = (work / "done.txt").read_text().splitlines()
    assert sorted(done) == sorted(set(done))  # no mark twice
    assert len([d for d in done if d.startswith("plate")]) == 6 and len([d for d in done if d.startswith("set")]) == 2
    assert "cgs" in done and result.n_cgs == 6
    assert all(len(a) <= len(b) for a, b in zip(seen, seen[1:]))  # the list only grows during the run


def test_old_work_folders_resume_or_refuse_clearly(fixture_dir: Path, monkeypatch) -> None:
    """A Level 3 work folder written before the step parameters were nested resumes (its
    parameters are completed with today's defaults); one of the old per-plate layout is refused."""
    args, real_build = _interrupted_run(fixture_dir, monkeypatch)
    monkeypatch.setattr(run_module, "build_signatures", real_build)
    run_json = fixture_dir / "out" / ".opencmap-work" / "run.json"
    stored = json.loads(run_json.read_text())
    for step in ("dpeak", "flip", "liss", "censor"):
        del stored["identity"]["params"][step]  # as written by the earlier version
    run_json.write_text(json.dumps(stored))
    resumed = run_pipeline(*args, inst_info=fixture_dir / "inst_info.txt", keep_work=True)
    assert resumed.resumed_plates == 6 and resumed.resumed_sets == 1
    del stored["identity"]["layout"]  # per-plate Level 4 work files (Level 1/2 runs before the one path)
    run_json.write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match="another work layout.*restart"):
        run_pipeline(*args, inst_info=fixture_dir / "inst_info.txt")


def test_manifest_records_every_steps_parameters(finished) -> None:
    _, result, calls = finished
    manifest = json.loads(result.manifest.read_text())
    params = PipelineParams.from_dict(manifest["params"])
    assert params == PipelineParams()
    assert {"dpeak", "flip", "liss", "censor"} <= set(manifest["params"])
    assert manifest["params"]["liss"]["span"] == 4 and manifest["params"]["flip"]["cutoff"] == 0.4
    stages = [c[0] for c in calls]
    assert stages[0] == "plates" and stages[-1] == "write" and "replicate sets" in stages and "cgs" in stages


def test_steps_run_one_by_one(fixture_dir: Path) -> None:
    """The public steps, called one at a time, give what run_pipeline gives."""
    inst = fixture_dir / "inst_info.txt"
    run = run_module.PipelineRun(fixture_dir / "level3.gctx", fixture_dir / "steps", inst_info=inst)
    assert run_module.STEPS == ("deconvolve", "reach_level3", "zscore_and_collapse", "build_cgs", "finish")
    run.zscore_and_collapse()
    assert run.sig_info is not None and len(run.sig_info) == run.plan.n_signatures == 26
    # a new run object resumes from the work folder: each step runs on its own
    again = run_module.PipelineRun(fixture_dir / "level3.gctx", fixture_dir / "steps", inst_info=inst)
    again.build_cgs()
    assert again.resumed_sets == 2 and len(again.cgs_info) == 6
    stepwise = again.finish()
    whole = run_pipeline(fixture_dir / "level3.gctx", fixture_dir / "whole", inst_info=inst)
    assert read_gct(stepwise.level5).equals(read_gct(whole.level5))
    assert read_gct(stepwise.level4).equals(read_gct(whole.level4))


def test_level2_censoring_parameters_reach_the_step(tmp_path: Path) -> None:
    make_level2(tmp_path)
    params = PipelineParams(start_level=2, censor={"drop": []})  # report, drop nothing
    res = run_pipeline(tmp_path / "level2.gctx", tmp_path / "out", inst_info=tmp_path / "inst_info.txt", params=params)
    assert read_gct(res.level4).shape[1] == 96
    manifest = json.loads(res.manifest.read_text())
    assert manifest["params"]["censor"]["drop"] == [] and manifest["counts"]["censored_instances"] == 0
