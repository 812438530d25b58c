"""A run through a distributed backend (its tasks in spawned processes: level2_plate_task,
level3_plates_task, collapse_sets_task, cgs_batch_task) writes the outputs of the local run:
Level 4/5 GCTX, sig_info, censoring report, bit for bit; from Level 1, 2, 3 and resumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import opencmap.pipeline.run as run_module
import opencmap.pipeline.tasks as tasks_module
from opencmap.backends import LocalBackend
from opencmap.io import read_gct
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.run import RunResult, run_pipeline

from .test_run import make_level2, make_level3

OUTPUTS = ("level4.gctx", "level5.gctx", "sig_info.txt")


def _assert_same_outputs(local: RunResult, remote: RunResult, extra: tuple[str, ...] = ()) -> None:
    for name in OUTPUTS + extra:
        a, b = (local.out_dir / name).read_bytes(), (remote.out_dir / name).read_bytes()
        assert a == b, f"{name} differs"
    for level in ("level4", "level5"):
        a, b = read_gct(getattr(local, level)), read_gct(getattr(remote, level))
        np.testing.assert_array_equal(a.data, b.data)  # bit for bit (NaNs in place)
        pd.testing.assert_frame_equal(a.col_meta, b.col_meta)
    for field in ("n_instances", "n_plates", "n_replicate_sets", "n_signatures", "n_cgs"):
        assert getattr(local, field) == getattr(remote, field), field


def test_level3_run_on_spawned_tasks_matches_local(tmp_path: Path, spawned_backend, monkeypatch) -> None:
    make_level3(tmp_path)
    monkeypatch.setattr(tasks_module, "TASK_WELLS", 40)  # sets of 48 wells: one set per task (2 tasks)
    args = {"inst_info": tmp_path / "inst_info.txt"}
    local = run_pipeline(tmp_path / "level3.gctx", tmp_path / "local", **args)
    stages: list[tuple[str, int, int]] = []
    remote = run_pipeline(tmp_path / "level3.gctx", tmp_path / "remote", **args, backend=spawned_backend,
                          progress=lambda *a: stages.append(a))  # fmt: skip
    assert local.n_cgs > 0  # the CGS step ran (as tasks)
    _assert_same_outputs(local, remote)
    # the task module's TASK_WELLS is read in the driver: 2 collapse tasks + 1 CGS batch
    assert spawned_backend.tasks_run == 3
    assert ("replicate sets", 2, 2) in stages and ("plates", 6, 6) in stages and stages[-1] == ("write", 2, 2)
    assert any(s[0] == "cgs" for s in stages)


def test_level2_run_on_spawned_tasks_matches_local(tmp_path: Path, spawned_backend) -> None:
    make_level2(tmp_path)
    args = {"inst_info": tmp_path / "inst_info.txt", "params": PipelineParams(start_level=2)}
    local = run_pipeline(tmp_path / "level2.gctx", tmp_path / "local", **args)
    remote = run_pipeline(tmp_path / "level2.gctx", tmp_path / "remote", **args, backend=spawned_backend)
    _assert_same_outputs(local, remote, extra=("censored.txt",))
    assert spawned_backend.tasks_run == 6 + 1 + 1  # one Level 3 task per plate, one collapse, one CGS


def test_resumed_run_on_spawned_tasks_matches_local(tmp_path: Path, spawned_backend, monkeypatch) -> None:
    """A local run interrupted while collapsing its second set, resumed on the backend: the finished
    plates and set are kept, the rest computed by tasks; the outputs are the uninterrupted run's."""
    make_level3(tmp_path)
    real_build = run_module.build_signatures
    calls = {"n": 0}

    def failing_build(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_build(*a, **k)

    monkeypatch.setattr(run_module, "build_signatures", failing_build)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path / "level3.gctx", tmp_path / "out", inst_info=tmp_path / "inst_info.txt")
    monkeypatch.setattr(run_module, "build_signatures", real_build)
    resumed = run_pipeline(tmp_path / "level3.gctx", tmp_path / "out", inst_info=tmp_path / "inst_info.txt", backend=spawned_backend)
    assert resumed.resumed_sets == 1 and resumed.resumed_plates >= 3
    clean = run_pipeline(tmp_path / "level3.gctx", tmp_path / "clean", inst_info=tmp_path / "inst_info.txt")
    _assert_same_outputs(clean, resumed)


def test_level1_run_on_spawned_tasks_matches_local(shared_data: Path, tmp_path: Path, spawned_backend) -> None:
    plate_dir = shared_data / "pipeline/test_plate"
    args = {"params": PipelineParams(start_level=1), "plate_maps": plate_dir / "TEST_A375_24H_X1_B20.map", "seed": 20}
    local = run_pipeline(plate_dir / "lxb", tmp_path / "local", **args)
    remote = run_pipeline(plate_dir / "lxb", tmp_path / "remote", **args, backend=spawned_backend)
    _assert_same_outputs(local, remote, extra=("censored.txt",))
    level2 = sorted(p.name for p in (tmp_path / "local" / "level2").iterdir())
    assert level2 == sorted(p.name for p in (tmp_path / "remote" / "level2").iterdir()) and level2
    for name in level2:  # the Level 2 files the driver wrote from the task's result
        if name.endswith(".gctx"):
            a, b = (read_gct(tmp_path / run / "level2" / name).data for run in ("local", "remote"))
            np.testing.assert_array_equal(a, b)
    assert spawned_backend.tasks_run >= 3  # deconvolution, Level 3, collapse (+ CGS when there are any)


class _FailingSecondCollapse(LocalBackend):
    """Tasks run here, but the second collapse task fails (a worker lost mid-run)."""

    distributed = True

    def map_blocks(self, kernel, tasks):
        for task in tasks:
            if kernel is tasks_module.collapse_sets_task and task.start == 1:
                raise RuntimeError("worker lost")
            yield kernel(task)


def test_a_failed_task_leaves_a_resumable_run(tmp_path: Path, monkeypatch) -> None:
    """What the driver wrote before a task failed is marked done; the run resumes (locally here)
    from there and its outputs are those of an uninterrupted run."""
    make_level3(tmp_path)
    monkeypatch.setattr(tasks_module, "TASK_WELLS", 40)  # one set per task
    args = (tmp_path / "level3.gctx", tmp_path / "out")
    with pytest.raises(RuntimeError, match="worker lost"):
        run_pipeline(*args, inst_info=tmp_path / "inst_info.txt", backend=_FailingSecondCollapse())
    resumed = run_pipeline(*args, inst_info=tmp_path / "inst_info.txt")
    assert resumed.resumed_sets == 1 and resumed.resumed_plates == 3
    clean = run_pipeline(tmp_path / "level3.gctx", tmp_path / "clean", inst_info=tmp_path / "inst_info.txt")
    _assert_same_outputs(clean, resumed)
