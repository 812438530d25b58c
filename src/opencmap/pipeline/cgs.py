"""Consensus gene signatures (CGS) for shRNA knock-downs (algorithms.md §7).

All ``trt_sh`` signatures whose hairpins target the same gene in the same cell line and time
point are combined with the MODZ weighting used for replicates (Spearman on the landmarks,
diagonal 0, negative correlations 0, weight floor 0.01, weights normalised), one level up.
A gene needs signatures from at least ``params.cgs_min_hairpins`` (2) distinct hairpins
(distinct ``pert_id``); every signature of those hairpins takes part.

The target gene is read from ``params.cgs_target_field``: ``pert_iname`` by default (in
GSE92742 the ``pert_iname`` of a ``trt_sh`` signature is the target gene symbol); use ``target``
when the signature table has such a column.

Output signatures: ``sig_id = CGS:<cell_id>:<pert_time>:<target>``, ``pert_id = CGS-<target>``,
``pert_iname = <target>``, ``pert_type = trt_sh.cgs``, ``distil_id`` = the '|'-joined hairpin
``sig_id``s, ``distil_nsample`` = their number; the QC fields are computed as for replicates
(``pct_self_rank_q25`` and therefore ``is_gold`` do not apply: missing / 0).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.pipeline.modz import collapse_replicates, landmark_positions
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.qc import MISSING, cc_summaries, distil_ss_columns, ss_ngene, tas
from opencmap.pipeline.signatures import SIG_INFO_COLUMNS, format_key_value

__all__ = ["CGS_PERT_TYPE", "SH_PERT_TYPE", "cgs_groups", "consensus_gene_signatures"]

log = logging.getLogger(__name__)

CGS_PERT_TYPE = "trt_sh.cgs"
SH_PERT_TYPE = "trt_sh"


def cgs_groups(sig_info: pd.DataFrame, params: PipelineParams | None = None) -> pd.DataFrame:
    """The CGS to build: one row per (cell_id, pert_time, target) with enough distinct hairpins.

    Returns a DataFrame with columns ``cgs_id, cell_id, pert_time, pert_time_unit, target,
    n_hairpins, sig_ids`` (a list of the contributing ``sig_id``s, in table order).
    """
    params = params or PipelineParams()
    target_field = params.cgs_target_field
    columns = ["cgs_id", "cell_id", "pert_time", "pert_time_unit", "target", "n_hairpins", "sig_ids"]
    if "pert_type" not in sig_info.columns:
        return pd.DataFrame(columns=columns)
    sh = sig_info[sig_info["pert_type"].astype("str") == SH_PERT_TYPE]
    if sh.empty:
        return pd.DataFrame(columns=columns)
    needed = [target_field, "cell_id", "pert_time", "pert_id"]
    missing = [f for f in needed if f not in sh.columns]
    if missing:
        raise PipelineError(
            f"CGS needs the signature fields {needed}; missing {missing}. Set cgs_target_field to the "
            "column naming the knocked-down gene, or disable CGS"
        )
    sh = sh[sh[target_field].notna() & (sh[target_field].astype("str") != "-666")]
    keys = pd.DataFrame(
        {
            "cell_id": sh["cell_id"].astype("str").to_numpy(),
            "pert_time": [format_key_value(v) for v in sh["pert_time"].tolist()],
            "target": sh[target_field].astype("str").to_numpy(),
            "pert_id": sh["pert_id"].astype("str").to_numpy(),
            "sig_id": sh.index.to_numpy(),
        }
    )
    unit = sh["pert_time_unit"].tolist() if "pert_time_unit" in sh.columns else [np.nan] * len(sh)
    keys["pert_time_unit"] = unit
    rows = []
    for (cell, time, target), grp in keys.groupby(["cell_id", "pert_time", "target"], sort=False):
        n_hairpins = grp["pert_id"].nunique()
        if n_hairpins < params.cgs_min_hairpins:
            continue
        rows.append(
            {
                "cgs_id": f"CGS:{cell}:{time}:{target}",
                "cell_id": cell,
                "pert_time": time,
                "pert_time_unit": grp["pert_time_unit"].iloc[0],
                "target": target,
                "n_hairpins": int(n_hairpins),
                "sig_ids": grp["sig_id"].tolist(),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def consensus_gene_signatures(
    level5: GCT,
    sig_info: pd.DataFrame | None = None,
    *,
    params: PipelineParams | None = None,
    landmark_rows: np.ndarray | None = None,
    groups: pd.DataFrame | None = None,
    threads: int = 1,
) -> tuple[GCT, pd.DataFrame]:
    """Build the CGS of every eligible knock-down gene from Level 5 shRNA signatures.

    Parameters
    ----------
    level5:
        Level 5 signatures (genes × signatures); any subset holding whole CGS groups works.
    sig_info:
        Signature table indexed by ``sig_id``; ``level5.col_meta`` when omitted.
    groups:
        Output of :func:`cgs_groups` (computed from ``sig_info`` when omitted).
    threads:
        Of the ranking kernels (given by the backend, :mod:`opencmap.backends`); same values.

    Returns
    -------
    (cgs, cgs_info):
        CGS signatures (genes × CGS, float32) and their ``sig_info`` rows (indexed by ``sig_id``);
        both empty (0 columns) when no gene qualifies.
    """
    params = params or PipelineParams()
    info = level5.col_meta if sig_info is None else sig_info
    if groups is None:
        groups = cgs_groups(info, params)
    if landmark_rows is None:
        landmark_rows = landmark_positions(level5.row_meta, params)
    if groups.empty:
        empty = pd.DataFrame(columns=list(SIG_INFO_COLUMNS[1:]), index=pd.Index([], dtype=object, name="sig_id"))
        return GCT(np.zeros((level5.shape[0], 0), dtype=np.float32), row_meta=level5.row_meta, col_meta=empty), empty

    positions = [level5.col_positions(ids) for ids in groups["sig_ids"]]
    collapsed = collapse_replicates(level5, positions, landmark_rows, params, threads=threads)
    lm = collapsed.consensus[landmark_rows].astype(np.float64)
    n = groups["sig_ids"].map(len).to_numpy()
    cc = cc_summaries(collapsed.corr)
    ngene = ss_ngene(lm, n, threshold=params.ss_threshold)
    time_unit = groups["pert_time_unit"].tolist()
    cgs_info = pd.DataFrame(
        {
            "pert_id": ("CGS-" + groups["target"].astype("str")).to_numpy(),
            "pert_iname": groups["target"].to_numpy(),
            "pert_type": CGS_PERT_TYPE,
            "cell_id": groups["cell_id"].to_numpy(),
            "pert_dose": np.nan,
            "pert_dose_unit": np.nan,
            "pert_idose": np.nan,
            "pert_time": pd.to_numeric(groups["pert_time"], errors="coerce").to_numpy(),
            "pert_time_unit": time_unit,
            "pert_itime": [
                t if (u is None or (isinstance(u, float) and np.isnan(u))) else f"{t} {u}"
                for t, u in zip(groups["pert_time"], time_unit, strict=True)
            ],
            "distil_id": ["|".join(ids) for ids in groups["sig_ids"]],
            "distil_nsample": n,
            "distil_cc_q75": cc[:, 0],
            "distil_ss_ngene": ngene,
            "tas": tas(ngene, cc[:, 0], n_landmarks=len(landmark_rows)),
            "is_gold": np.zeros(len(groups), dtype=np.int64),
            "is_exemplar_sig": np.zeros(len(groups), dtype=np.int64),
            "distil_cc_max": cc[:, 1],
            "distil_cc_median": cc[:, 2],
            "distil_ss": distil_ss_columns(lm),
            "distil_wt": [",".join(f"{w:.4f}" for w in wt) for wt in collapsed.weights],
            "pct_self_rank_q25": MISSING,
            "replicate_set": "CGS",
            "target": groups["target"].to_numpy(),
        },
        index=pd.Index(groups["cgs_id"].to_numpy(), dtype=object, name="sig_id"),
    )
    log.info("built %d consensus gene signatures", len(cgs_info))
    return GCT(collapsed.consensus, row_meta=level5.row_meta, col_meta=cgs_info), cgs_info
