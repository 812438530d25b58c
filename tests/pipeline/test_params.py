"""PipelineParams: CMap defaults, validation, round trip through the manifest dict."""

from __future__ import annotations

import pytest

from opencmap.errors import ConfigError, FormatError
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


def test_step_parameters_are_nested_and_round_trip(tmp_path) -> None:
    import json

    from opencmap.pipeline.censor import CensorParams
    from opencmap.pipeline.deconvolve import DpeakParams
    from opencmap.pipeline.flip import FlipParams
    from opencmap.pipeline.liss import LissParams
    from opencmap.pipeline.params import read_params

    p = PipelineParams()
    assert (p.dpeak, p.flip, p.liss, p.censor) == (DpeakParams(), FlipParams(), LissParams(), CensorParams())
    q = PipelineParams.from_dict({"liss": {"span": 5}, "flip": None, "dpeak": {"method": "kspeak", "opt_support_pct": [60, 40]}})
    assert q.liss == LissParams(span=5) and q.flip is None
    assert q.dpeak == DpeakParams(method="kspeak", opt_support_pct=(60, 40))
    assert PipelineParams.from_dict(json.loads(json.dumps(q.to_dict()))) == q  # through JSON
    assert PipelineParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ConfigError, match="unknown liss parameter"):
        PipelineParams(liss={"spam": 1})
    with pytest.raises(ConfigError, match="censor"):
        PipelineParams(censor=3)
    # a parameter file, or a run manifest whose parameters are repeated
    (tmp_path / "p.json").write_text(json.dumps({"min_mad": 0.2, "censor": {"drop": []}}))
    r = read_params(tmp_path / "p.json")
    assert r.min_mad == 0.2 and r.censor.drop == ()
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "params": q.to_dict()}))
    assert read_params(tmp_path / "manifest.json") == q
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(FormatError, match="JSON object"):
        read_params(tmp_path / "bad.json")
