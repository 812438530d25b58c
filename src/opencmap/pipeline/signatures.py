"""Level 4 → Level 5 for one or more replicate sets: groups, MODZ, quality metrics, ``sig_info``.

Grouping (documented in :mod:`opencmap.pipeline.params`): a plate's *replicate set* is its
``rna_plate`` with the replicate suffix removed (``ABC001_A375_6H_X2`` → ``ABC001_A375_6H``);
within a set, instances with equal ``params.group_by`` fields are replicates of one signature,
in the order the instances appear.

Signature ids follow CMap's style ``<replicate set>:<pert_id>:<pert_dose>``, e.g.
``CPC006_A375_6H:BRD-A19500257:10``, extended by the value of every other ``group_by`` field that
varies within the replicate set (so ids are unique by construction and stable across runs).
Missing values print as ``-666``; floats print without a trailing ``.0``.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import OpenCMapWarning, PipelineError
from opencmap.kernels.correlation import spearman_matrix
from opencmap.pipeline.modz import collapse_replicates, landmark_positions, landmark_rank_block
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.qc import (
    MISSING,
    cc_summaries,
    distil_ss_columns,
    exemplar_flags,
    is_gold,
    self_rank_pct_q25,
    ss_ngene,
    tas,
)

__all__ = [
    "SIG_INFO_COLUMNS",
    "replicate_set_name",
    "replicate_sets",
    "format_key_value",
    "check_group_fields",
    "group_instances",
    "build_signatures",
]

log = logging.getLogger(__name__)

#: Columns of ``sig_info`` (GSE92742 order), followed by opencmap's extra QC fields.
SIG_INFO_COLUMNS = (
    "sig_id",
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_idose",
    "pert_time",
    "pert_time_unit",
    "pert_itime",
    "distil_id",
    "distil_nsample",
    "distil_cc_q75",
    "distil_ss_ngene",
    "tas",
    "is_gold",
    "is_exemplar_sig",
    "distil_cc_max",
    "distil_cc_median",
    "distil_ss",
    "distil_wt",
    "pct_self_rank_q25",
    "replicate_set",
)
#: Descriptive inst_info fields carried to ``sig_info`` ('|'-joined when replicates disagree).
_CARRIED = ("pert_iname", "pert_type", "pert_dose_unit", "pert_time_unit", "pert_idose", "pert_itime", "moa", "target")
_KEY_FIELDS = ("pert_id", "cell_id", "pert_dose", "pert_time")


def replicate_set_name(plate: str, pattern: str = PipelineParams.replicate_set_pattern) -> str:
    """The replicate set of an ``rna_plate`` name (the plate itself when the pattern does not match)."""
    m = re.match(pattern, plate)
    return m.group("set") if m else plate


def replicate_sets(col_meta: pd.DataFrame, params: PipelineParams | None = None) -> pd.Series:
    """Replicate set of every instance (indexed like ``col_meta``), from its ``rna_plate``."""
    params = params or PipelineParams()
    if "rna_plate" not in col_meta.columns:
        raise PipelineError(
            "the instance metadata has no 'rna_plate' field: it is needed to process plate by plate "
            "and to find replicate plates. Add it to the instance table"
        )
    plates = col_meta["rna_plate"].astype("str")
    if plates.isna().any():
        bad = col_meta.index[plates.isna().to_numpy()][:5].tolist()
        raise PipelineError(f"instances without an rna_plate: {bad}; fill the instance table's rna_plate field")
    mapping = {p: replicate_set_name(p, params.replicate_set_pattern) for p in plates.unique()}
    return plates.map(mapping).rename("replicate_set")


def format_key_value(value: Any) -> str:
    """How a group-key value prints in a ``sig_id``: ``-666`` if missing, ``10`` not ``10.0``,
    ``39.6`` for the float32 ``39.599998...``."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "-666"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        # a value that is exactly a float32 (GCTX metadata) prints as the float32 shortest repr
        single = np.float32(v)
        exact32 = np.isfinite(single) and float(single) == v
        text = np.format_float_positional(single if exact32 else v, trim="-")
        return text
    return str(value)


def check_group_fields(col_meta: pd.DataFrame, params: PipelineParams) -> None:
    """Raise :class:`PipelineError` if the instance metadata lacks a ``group_by`` field."""
    missing = [f for f in params.group_by if f not in col_meta.columns]
    if missing:
        raise PipelineError(
            f"the instance metadata lacks the grouping field(s) {missing} (group_by={list(params.group_by)}); "
            "add them to the instance table or change --group-by"
        )


def group_instances(col_meta: pd.DataFrame, params: PipelineParams | None = None, *, sets: pd.Series | None = None) -> pd.DataFrame:
    """One row per replicate group: ``replicate_set``, the ``group_by`` values, ``sig_id`` and
    ``positions`` (column positions of its replicates, in instance order); groups in order of
    first appearance. ``sets``: :func:`replicate_sets` of ``col_meta`` when already known.
    """
    params = params or PipelineParams()
    check_group_fields(col_meta, params)
    if sets is None:
        sets = replicate_sets(col_meta, params)
    keys = pd.DataFrame({"replicate_set": sets.to_numpy()})
    for f in params.group_by:
        codes, uniques = pd.factorize(col_meta[f], use_na_sentinel=False)
        keys[f] = np.array([format_key_value(v) for v in uniques], dtype=object)[codes]
    codes = keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    positions = np.split(order, bounds) if len(order) else []
    groups = keys.iloc[[p[0] for p in positions]].reset_index(drop=True)
    groups["positions"] = positions
    groups["sig_id"] = _signature_ids(groups, params)
    return groups


def _signature_ids(groups: pd.DataFrame, params: PipelineParams) -> list[str]:
    fields = list(params.group_by)
    always = [f for f in ("pert_id", "pert_dose") if f in fields]
    varying = groups.groupby("replicate_set", sort=False)[fields].nunique()
    # per replicate set, which fields go into its ids
    use_of = {
        set_name: [k for k, f in enumerate(fields) if f in always or row[k] > 1]
        for set_name, row in zip(varying.index, varying.to_numpy().tolist(), strict=True)
    }
    columns = [groups[f].tolist() for f in fields]
    ids = []
    for i, set_name in enumerate(groups["replicate_set"].tolist()):
        ids.append(":".join([set_name, *(columns[k][i] for k in use_of[set_name])]))
    return ids


def _carried_fields(col_meta: pd.DataFrame, group_of: np.ndarray, n_groups: int) -> dict[str, list[Any]]:
    fields = [f for f in (*_KEY_FIELDS, *_CARRIED) if f in col_meta.columns]
    out: dict[str, list[Any]] = {}
    if not fields:
        return out
    frame = pd.DataFrame({f: col_meta[f].to_numpy() for f in fields})
    grouped = frame.groupby(group_of, sort=True)  # all fields in one pass
    first = grouped.first().reindex(range(n_groups))
    disagree = grouped.nunique()
    for f in fields:
        values = first[f].tolist()
        for g in disagree.index[disagree[f].to_numpy() > 1]:  # only fields outside group_by can disagree
            uniq = pd.unique(frame.loc[group_of == g, f].dropna())
            values[g] = "|".join(format_key_value(v) for v in uniq)
        out[f] = values
    return out


def _readable(value: Any, unit: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    text = format_key_value(value)
    return text if unit is None or (isinstance(unit, float) and np.isnan(unit)) else f"{text} {unit}"


def build_signatures(
    level4: GCT,
    params: PipelineParams | None = None,
    *,
    landmark_rows: np.ndarray | None = None,
    threads: int = 1,
    exemplars: bool = True,
) -> tuple[GCT, pd.DataFrame]:
    """Collapse the replicates of a Level 4 block (one or more whole replicate sets) to Level 5.

    Parameters
    ----------
    level4:
        Level 4 z-scores (genes × instances) whose column metadata is the instance table
        (``rna_plate`` and the ``group_by`` fields at least).
    landmark_rows:
        Landmark row positions; from the row metadata when omitted (see
        :func:`opencmap.pipeline.modz.landmark_positions`).
    threads:
        Of the ranking kernels (given by the backend, :mod:`opencmap.backends`); same values.

    Returns
    -------
    (level5, sig_info):
        Level 5 GCT (genes × signatures, float32, column metadata = ``sig_info``) and the
        ``sig_info`` table indexed by ``sig_id`` (columns :data:`SIG_INFO_COLUMNS` + ``moa``/
        ``target`` when present). ``is_exemplar_sig`` is computed within this block only
        (``exemplars=False``: left 0, for a runner that flags exemplars once over the whole output).
    """
    params = params or PipelineParams()
    if level4.shape[1] == 0:
        raise PipelineError("no Level 4 instances to collapse")
    if landmark_rows is None:
        landmark_rows = landmark_positions(level4.row_meta, params)
    col_meta = level4.col_meta
    groups = group_instances(col_meta, params)
    positions: list[np.ndarray] = list(groups["positions"])
    ranks = landmark_rank_block(level4, landmark_rows, params, threads=threads)
    collapsed = collapse_replicates(level4, positions, landmark_rows, params, ranks=ranks, threads=threads)

    consensus = collapsed.consensus
    all_nan = np.isnan(consensus).all(axis=0)
    if all_nan.any():
        bad = groups["sig_id"][all_nan].tolist()[:5]
        raise PipelineError(f"signatures {bad} would be entirely missing (NaN); their replicates have no values")
    n_nan = int(np.isnan(consensus).sum())
    if n_nan:
        warnings.warn(
            f"{n_nan} signature values are missing (NaN) because every replicate lacked that gene",
            OpenCMapWarning,
            stacklevel=2,
        )

    n = np.array([len(p) for p in positions])
    cc = cc_summaries(collapsed.corr)
    lm_consensus = consensus[landmark_rows].astype(np.float64)
    ngene = ss_ngene(lm_consensus, n, threshold=params.ss_threshold)
    tas_ = np.where(n > 1, tas(ngene, cc[:, 0], n_landmarks=len(landmark_rows)), MISSING)

    self_rank = np.full(len(groups), MISSING)
    if params.self_rank:
        self_rank = _self_ranks(level4, groups, ranks, landmark_rows, params, threads)

    group_of = np.empty(level4.shape[1], dtype=np.int64)
    for g, p in enumerate(positions):
        group_of[p] = g
    carried = _carried_fields(col_meta, group_of, len(groups))
    cids = level4.cids.to_numpy()
    info: dict[str, Any] = {"sig_id": groups["sig_id"].to_numpy()}
    for f in SIG_INFO_COLUMNS[1:]:
        if f in carried:
            info[f] = carried[f]
    if "pert_idose" not in info and "pert_dose" in info:
        units = carried.get("pert_dose_unit", [None] * len(groups))
        info["pert_idose"] = [_readable(v, u) for v, u in zip(info["pert_dose"], units, strict=True)]
    if "pert_itime" not in info and "pert_time" in info:
        units = carried.get("pert_time_unit", [None] * len(groups))
        info["pert_itime"] = [_readable(v, u) for v, u in zip(info["pert_time"], units, strict=True)]
    info.update(
        distil_id=["|".join(cids[p]) for p in positions],
        distil_nsample=n,
        distil_cc_q75=cc[:, 0],
        distil_ss_ngene=ngene,
        tas=tas_,
        is_gold=is_gold(cc[:, 0], self_rank, min_cc_q75=params.gold_cc_q75, max_self_rank=params.gold_self_rank_q25),
        is_exemplar_sig=np.zeros(len(groups), dtype=np.int64),  # set below
        distil_cc_max=cc[:, 1],
        distil_cc_median=cc[:, 2],
        distil_ss=distil_ss_columns(lm_consensus),
        distil_wt=[",".join(f"{w:.4f}" for w in wt) for wt in collapsed.weights],
        pct_self_rank_q25=self_rank,
        replicate_set=groups["replicate_set"].to_numpy(),
    )
    ordered = [c for c in SIG_INFO_COLUMNS if c in info] + [c for c in ("moa", "target") if c in carried]
    sig_info = pd.DataFrame({c: info.get(c, carried.get(c)) for c in ordered if c != "sig_id"})
    sig_info.index = pd.Index(info["sig_id"], dtype=object, name="sig_id")
    if exemplars:
        sig_info["is_exemplar_sig"] = exemplar_flags(sig_info).to_numpy()
    level5 = GCT(consensus, row_meta=level4.row_meta, col_meta=sig_info)
    log.debug("collapsed %d instances into %d signatures", level4.shape[1], len(groups))
    return level5, sig_info


def _self_ranks(
    level4: GCT, groups: pd.DataFrame, ranks: np.ndarray | None, landmark_rows: np.ndarray, params: PipelineParams, threads: int
) -> np.ndarray:
    out = np.full(len(groups), MISSING)
    positions: list[np.ndarray] = list(groups["positions"])
    local = np.empty(level4.shape[1], dtype=np.intp)  # column -> position among its brew's members
    for set_name, idx in groups.groupby("replicate_set", sort=False).indices.items():
        member_lists = [positions[i] for i in idx]
        members = np.concatenate(member_lists)
        local[members] = np.arange(len(members))
        if ranks is not None:
            s = ranks[:, members]
            similarity = s.T @ s
        else:
            lm = np.clip(level4.data[np.ix_(landmark_rows, members)], -params.clip, params.clip)
            similarity = spearman_matrix(lm, threads=threads)
        local_groups = [local[p] for p in member_lists]
        out[idx] = self_rank_pct_q25(similarity, local_groups, threads=threads)
        log.debug("self-rank computed for replicate set %s (%d instances)", set_name, len(members))
    return out
