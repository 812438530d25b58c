"""PipelineParams: CMap defaults, validation, round trip through the manifest dict."""

from __future__ import annotations

import pytest

from opencmap.errors import ConfigError
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.signatures import replicate_set_name


def test_defaults_are_cmaps() -> None:
    p = PipelineParams()
    assert (p.zscore_method, p.min_mad, p.var_adjustment) == ("zspc", 0.1, "fixed")
    assert (p.clip, p.low_weight, p.clip_low_cc, p.weight_method, p.consensus) == (10.0, 0.01, 0.0, "sum", "modz")
    assert p.group_by == ("cell_id", "pert_id", "pert_dose", "pert_time")
    assert (p.gold_cc_q75, p.gold_self_rank_q25, p.ss_threshold) == (0.2, 5.0, 2.0)


def test_round_trip_and_replace() -> None:
    p = PipelineParams().replace(group_by=["cell_id", "pert_id"], round_weights=4, min_mad=None)
    assert p.group_by == ("cell_id", "pert_id") and p.min_mad == 0.1
    assert PipelineParams.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="newer opencmap"):
        PipelineParams.from_dict({**p.to_dict(), "params_version": 99})
    with pytest.raises(ConfigError, match="unknown pipeline parameter"):
        p.replace(bogus=1)


@pytest.mark.parametrize(
    "bad",
    [
        {"zscore_method": "zsxx"},
        {"var_adjustment": "robust"},
        {"min_mad": -1},
        {"low_weight": 0},
        {"clip": 0},
        {"group_by": ()},
        {"group_by": ("cell_id", "cell_id")},
        {"replicate_set_pattern": "(unclosed"},
        {"replicate_set_pattern": "no_set_group"},
        {"cgs_min_hairpins": 1},
        {"start_level": 5},  # 4 (Level 4 input) became valid with issue 13
        {"round_weights": -1},
    ],
)
def test_invalid_values_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        PipelineParams(**bad)


@pytest.mark.parametrize(
    ("plate", "expected"),
    [
        ("CPC006_A375_6H_X1", "CPC006_A375_6H"),
        ("CRCGN014_HEPG2_3H_X2_B29", "CRCGN014_HEPG2_3H"),
        ("ABC001_A375_6H_X10", "ABC001_A375_6H"),
        ("MYPLATE", "MYPLATE"),
    ],
)
def test_replicate_set_names(plate: str, expected: str) -> None:
    assert replicate_set_name(plate) == expected
