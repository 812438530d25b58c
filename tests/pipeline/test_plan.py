"""RunPlan: plates, replicate sets and output columns, computed once from the instance table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import PipelineError
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.plan import WORK_LAYOUT, make_plan, run_identity

from .test_run import make_level3


@pytest.fixture()
def inst(tmp_path: Path) -> pd.DataFrame:
    _, table = make_level3(tmp_path)
    return table.set_index("inst_id")


def test_plan_columns(inst: pd.DataFrame) -> None:
    plan = make_plan(inst, PipelineParams())
    assert plan.plate_order == [f"{s}_X{r}" for s in ("ABC001_A375_6H", "ABC002_PC3_24H") for r in (1, 2, 3)]
    assert plan.set_order == ["ABC001_A375_6H", "ABC002_PC3_24H"]
    assert plan.set_plates["ABC002_PC3_24H"] == ["ABC002_PC3_24H_X1", "ABC002_PC3_24H_X2", "ABC002_PC3_24H_X3"]
    assert plan.plate_start() == {p: 16 * i for i, p in enumerate(plan.plate_order)}
    # 13 signatures per set: DMSO, 6 compounds, 6 hairpins
    assert plan.signatures_per_set == {"ABC001_A375_6H": 13, "ABC002_PC3_24H": 13} and plan.n_signatures == 26
    assert plan.set_start() == {"ABC001_A375_6H": 0, "ABC002_PC3_24H": 13}
    np.testing.assert_array_equal(plan.level4_order, np.arange(96))
    assert plan.widest_set() == 48


def test_plan_keeps_surviving_wells_in_order(inst: pd.DataFrame) -> None:
    plan = make_plan(inst, PipelineParams())
    kept = [c for c in inst.index if not c.endswith("_X1:A05")]  # a compound's well censored on the X1 plates
    smaller = plan.keep(kept, PipelineParams())
    assert smaller.plate_order == plan.plate_order and smaller.set_order == plan.set_order
    assert smaller.n_instances == 94 and smaller.n_signatures == 26  # its replicates on X2, X3 remain
    assert list(smaller.col_meta.index) == kept
    assert smaller.plate_start()["ABC001_A375_6H_X2"] == 15
    gone = plan.keep([c for c in inst.index if not c.endswith(":A05")], PipelineParams())  # on every plate
    assert gone.n_signatures == 24  # that compound has no signature left in either set


def test_plan_needs_plates_and_grouping_fields(inst: pd.DataFrame) -> None:
    with pytest.raises(PipelineError, match="grouping field"):
        make_plan(inst.drop(columns=["pert_dose"]), PipelineParams())
    with pytest.raises(PipelineError, match="rna_plate"):
        make_plan(inst.drop(columns=["rna_plate"]), PipelineParams())


def test_identity_names_inputs_parameters_and_layout(tmp_path: Path) -> None:
    (tmp_path / "m.gctx").write_bytes(b"x")
    identity = run_identity(params=PipelineParams(), matrix=tmp_path / "m.gctx", n_instances=3)
    assert identity["layout"] == WORK_LAYOUT and identity["n_instances"] == 3 and identity["matrix"]["size"] == 1
    assert identity["params"] == PipelineParams().to_dict()
    other = run_identity(params=PipelineParams(min_mad=0.2), matrix=tmp_path / "m.gctx", n_instances=3)
    assert other != identity
