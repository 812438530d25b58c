"""All processing parameters in one frozen dataclass, with CMap's defaults (algorithms.md §10).

``PipelineParams()`` reproduces the L1000 pipeline (ZSPC robust z-scores with a 0.1 MAD floor,
MODZ with Spearman weights on the landmarks, ±10 clipping, 0.01 weight floor). Override any
field with :meth:`PipelineParams.replace`; the CLI maps its options onto the same fields.
The parameters are recorded in every run manifest (:meth:`to_dict` / :meth:`from_dict`).

Parameters per step
-------------------
The Level 3 → 5 fields are flat (``min_mad``, ``consensus``, ...). The steps that reach Level 3
from Level 1/2 have their own frozen dataclasses, nested here under the step's name:

* ``dpeak`` — :class:`~opencmap.pipeline.deconvolve.DpeakParams` (peak calling, Level 1 → 2);
* ``flip`` — :class:`~opencmap.pipeline.flip.FlipParams` (flip correction; ``None`` = off);
* ``liss`` — :class:`~opencmap.pipeline.liss.LissParams` (invariant-set scaling, Level 2);
* ``censor`` — :class:`~opencmap.pipeline.censor.CensorParams` (which wells are dropped).

Each accepts the dataclass or a mapping of some of its fields (the rest keep CMap's defaults), so
a JSON file such as ``{"liss": {"span": 5}, "flip": null}`` is a valid parameter set
(``opencmap process --params FILE``). They take part in the run identity and the manifest.

Replicate grouping
------------------
Level 4 profiles are collapsed per *replicate set* and *group key*:

* the replicate set of a plate is its ``rna_plate`` with the replicate suffix removed
  (``replicate_set_pattern``; ``CPC006_A375_6H_X1`` and ``CPC006_A375_6H_X2_B29`` both belong
  to ``CPC006_A375_6H``); a plate name that does not match is a replicate set of its own;
* within a replicate set, profiles with equal ``group_by`` fields (default ``cell_id, pert_id,
  pert_dose, pert_time``) are replicates of one signature. Add ``rna_well`` to keep every well
  separate (CMap's "same treatment well across replicate plates").
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from opencmap.core.schema import LANDMARK_FLAGS
from opencmap.errors import ConfigError, FormatError
from opencmap.io.versions import check_format_version
from opencmap.kernels.modz import CONSENSUS_METHODS, WEIGHT_METHODS, modz
from opencmap.kernels.zscore import VAR_ADJUSTMENTS, robust_zscore
from opencmap.pipeline.censor import CensorParams
from opencmap.pipeline.deconvolve import DpeakParams
from opencmap.pipeline.flip import FlipParams
from opencmap.pipeline.liss import LissParams
from opencmap.pipeline.qc import is_gold, ss_ngene

__all__ = ["PipelineParams", "ZSCORE_METHODS", "NAN_POLICIES", "read_params"]

#: ``zspc`` = robust z vs the whole plate; ``zsvc`` = vs the plate's vehicle-control wells.
ZSCORE_METHODS = ("zspc", "zsvc")
#: ``raise`` = NaN in Level 3 is an error; ``omit`` = NaN values are ignored (and reported).
NAN_POLICIES = ("raise", "omit")

#: Version of the parameter schema written into run manifests.
PARAMS_VERSION = 1



def _default(fn: Callable[..., Any], name: str) -> Any:
    """The default of ``fn``'s parameter ``name``: a kernel's default, kept in one place (the kernel)."""
    return inspect.signature(fn).parameters[name].default

@dataclass(frozen=True)
class PipelineParams:
    """Parameters of the Level 2/3 → 4 → 5 processing pipeline (CMap defaults)."""

    # -- input
    start_level: int = 3
    """3 = the input matrix is Level 3 (QNORM/INF); 2 = Level 2 GEX (runs LISS, QNORM, inference first);
    1 = a folder of LXB bead files + plate maps (runs deconvolution first); 4 = Level 4 plate
    z-scores (ZSPC), collapsed into Level 5 as they are (no z-scoring)."""

    # -- Level 3 -> 4: robust z-scores (§3)
    zscore_method: str = "zspc"
    vehicle_pert_types: tuple[str, ...] = ("ctl_vehicle",)
    min_mad: float = _default(robust_zscore, "min_mad")
    var_adjustment: str = _default(robust_zscore, "var_adjustment")
    estimate_prct: float = _default(robust_zscore, "estimate_prct")
    nan_policy: str = "raise"

    # -- Level 4 -> 5: replicate consensus (§4)
    group_by: tuple[str, ...] = ("cell_id", "pert_id", "pert_dose", "pert_time")
    replicate_set_pattern: str = r"^(?P<set>.+?)_X\d+(?:_.*)?$"
    consensus: str = _default(modz, "method")
    clip: float = _default(modz, "clip")
    low_weight: float = _default(modz, "low_weight")
    clip_low_cc: float = _default(modz, "clip_low_cc")
    weight_method: str = _default(modz, "weight_method")
    round_weights: int | None = _default(modz, "round_weights")
    landmark_fields: tuple[str, ...] = LANDMARK_FLAGS

    # -- quality metrics (§5)
    ss_threshold: float = _default(ss_ngene, "threshold")
    gold_cc_q75: float = _default(is_gold, "min_cc_q75")
    gold_self_rank_q25: float = _default(is_gold, "max_self_rank")
    self_rank: bool = True

    # -- consensus gene signatures (§7)
    cgs: bool = True
    cgs_target_field: str = "pert_iname"
    cgs_min_hairpins: int = 2

    # -- Level 1 -> 3 steps, one dataclass each (see "Parameters per step")
    dpeak: DpeakParams = field(default_factory=DpeakParams)
    """Peak calling of Level 1 bead intensities (start level 1)."""
    flip: FlipParams | None = field(default_factory=FlipParams)
    """Flip correction after peak calling (start level 1); ``None`` = no flip correction."""
    liss: LissParams = field(default_factory=LissParams)
    """Invariant-set scaling of Level 2 (start levels 1 and 2)."""
    censor: CensorParams = field(default_factory=CensorParams)
    """Well censoring after LISS (start levels 1 and 2)."""

    extra: dict[str, Any] = field(default_factory=dict, compare=True, hash=False)
    """Free-form annotations recorded in the manifest (not used by the computation)."""

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, allowed: str) -> ConfigError:
            return ConfigError(f"pipeline parameter {name}={value!r} is invalid: expected {allowed}")

        if self.start_level not in (1, 2, 3, 4):
            raise bad("start_level", self.start_level, "1, 2, 3 or 4")
        if self.zscore_method not in ZSCORE_METHODS:
            raise bad("zscore_method", self.zscore_method, f"one of {ZSCORE_METHODS}")
        if self.var_adjustment not in VAR_ADJUSTMENTS:
            raise bad("var_adjustment", self.var_adjustment, f"one of {VAR_ADJUSTMENTS}")
        if self.nan_policy not in NAN_POLICIES:
            raise bad("nan_policy", self.nan_policy, f"one of {NAN_POLICIES}")
        if self.consensus not in CONSENSUS_METHODS:
            raise bad("consensus", self.consensus, f"one of {CONSENSUS_METHODS}")
        if self.weight_method not in WEIGHT_METHODS:
            raise bad("weight_method", self.weight_method, f"one of {WEIGHT_METHODS}")
        if not self.min_mad >= 0:
            raise bad("min_mad", self.min_mad, "a number >= 0")
        if not 0 <= self.estimate_prct <= 100:
            raise bad("estimate_prct", self.estimate_prct, "a percentile in [0, 100]")
        if not self.clip > 0:
            raise bad("clip", self.clip, "a number > 0")
        if not 0 < self.low_weight < 1:
            raise bad("low_weight", self.low_weight, "a number in (0, 1)")
        if self.round_weights is not None and not (isinstance(self.round_weights, int) and self.round_weights >= 0):
            raise bad("round_weights", self.round_weights, "None or an integer >= 0")
        if not self.group_by or len(set(self.group_by)) != len(self.group_by):
            raise bad("group_by", self.group_by, "a non-empty tuple of distinct inst_info fields")
        if self.cgs_min_hairpins < 2:
            raise bad("cgs_min_hairpins", self.cgs_min_hairpins, "an integer >= 2")
        try:
            pattern = re.compile(self.replicate_set_pattern)
        except re.error as exc:
            raise bad("replicate_set_pattern", self.replicate_set_pattern, f"a regular expression ({exc})") from None
        if "set" not in pattern.groupindex:
            raise bad("replicate_set_pattern", self.replicate_set_pattern, "a regular expression with a (?P<set>...) group")
        # normalise sequences given as lists (e.g. from JSON or the CLI) to tuples
        for name in ("vehicle_pert_types", "group_by", "landmark_fields"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        # step parameters given as mappings (JSON, the CLI's --params) become their dataclasses
        for name, cls in _step_classes().items():
            object.__setattr__(self, name, _step_params(name, cls, getattr(self, name)))

    def replace(self, **changes: Any) -> PipelineParams:
        """A copy with some fields changed (``None`` values are ignored, so CLI defaults can pass through)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown pipeline parameter(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples as lists) plus the schema version."""
        out: dict[str, Any] = {"params_version": PARAMS_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = _jsonable(dataclasses.asdict(value))
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineParams:
        """Inverse of :meth:`to_dict`; refuses manifests written by a newer schema."""
        data = dict(data)
        check_format_version(data.pop("params_version", PARAMS_VERSION), PARAMS_VERSION, what="pipeline parameters", also=ConfigError)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown pipeline parameter(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(cls(), **data)  # None kept: e.g. "flip": null turns flip correction off


def _step_classes() -> dict[str, type[Any]]:
    """The nested step-parameter fields and their dataclasses."""
    return {"dpeak": DpeakParams, "flip": FlipParams, "liss": LissParams, "censor": CensorParams}


def _step_params(name: str, cls: type[Any], value: Any) -> Any:
    """``value`` as ``cls``: an instance as it is, a mapping of some fields over the defaults
    (lists as tuples); ``None`` only for ``flip`` (no flip correction)."""
    if value is None and name == "flip":
        return None
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"pipeline parameter {name}={value!r} is invalid: expected a {cls.__name__} or a mapping of its fields")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"unknown {name} parameter(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**{k: _tuples(v) for k, v in value.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pipeline parameter {name}={value!r} is invalid: {exc}") from None


def _tuples(value: Any) -> Any:
    """JSON lists (nested) back to the tuples the step dataclasses hold."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    """Tuples (nested) as lists, for JSON."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def read_params(path: str | PathLike[str]) -> PipelineParams:
    """Parameters from a JSON file: a mapping of :class:`PipelineParams` fields (the steps' nested
    as objects, missing fields at CMap's defaults), or a run's ``manifest.json`` (its ``params``)."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"cannot read pipeline parameters: {exc}", path=source) from None
    if isinstance(data, dict) and isinstance(data.get("params"), dict) and "format_version" in data:
        data = data["params"]  # a run manifest
    if not isinstance(data, dict):
        raise FormatError("pipeline parameters must be a JSON object of PipelineParams fields", path=source)
    try:
        return PipelineParams.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
