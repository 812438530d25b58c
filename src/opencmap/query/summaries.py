"""GUTC summaries of signature-level NCS (spec §6.7-6.8): maxq per perturbagen x cell line,
per perturbagen across cell lines, and per perturbagen class (PCL), per cell line and overall.

Every level aggregates **NCS** with the maximum-quantile statistic (33rd / 67th MATLAB
percentiles); tau is applied afterwards with each level's own background. Each level is returned
as an index table (first column ``id``, then descriptive fields) and an ``(n_rows, n_queries)``
matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.schema import PERT_FIELDS, SUMMARY_LEVELS

__all__ = ["summarise", "SummaryPlan", "SUMMARY_LEVELS"]


def _text(info: pd.DataFrame, col: str, default: str = "") -> pd.Series:
    if col in info.columns:
        return info[col].astype(str)
    return pd.Series([default] * len(info), index=info.index, dtype=object)


@dataclass
class _Level:
    index: pd.DataFrame
    source: str  # level whose values are aggregated ("sig", "pert_cell", "pert_summary")
    rows: np.ndarray  # rows of the source level, grouped
    codes: np.ndarray  # group of each of those rows
    min_members: int = 1
    _layout: Any = None  # kernels.summarise.GroupLayout, built on first use

    @property
    def layout(self) -> Any:
        """Group index arrays (members of each group, contiguous), computed once per plan."""
        if self._layout is None:
            from opencmap.kernels.summarise import group_layout

            self._layout = group_layout(self.codes, len(self.index), rows=self.rows)
        return self._layout


@dataclass
class SummaryPlan:
    """Group structure of every summary level for one set of signatures (built once, applied to
    any number of NCS matrices): :meth:`apply` returns ``{level: (index, values)}``."""

    levels: dict[str, _Level]

    @classmethod
    def build(
        cls,
        sig_info: pd.DataFrame,
        *,
        pcl: Mapping[str, Sequence[str]] | None = None,
        min_pcl_members: int = 2,
    ) -> SummaryPlan:
        info = sig_info.reset_index(drop=True)
        pert = _text(info, "pert_id", "?")
        cell = _text(info, "cell_id", "?")
        levels: dict[str, _Level] = {}

        # -- perturbagen x cell line
        pc_codes, pc_ids = pd.factorize(pert + ":" + cell)
        first = pd.Series(np.arange(len(info))).groupby(pc_codes).first().to_numpy()
        pc_index = pd.DataFrame({"id": list(pc_ids), "pert_id": pert.iloc[first].to_numpy(), "cell_id": cell.iloc[first].to_numpy()})
        for f in PERT_FIELDS:
            if f in info.columns:
                pc_index[f] = info[f].astype(str).iloc[first].to_numpy()
        pc_index["n_sigs"] = np.bincount(pc_codes, minlength=len(pc_ids))
        levels["pert_cell"] = _Level(pc_index, "sig", np.arange(len(info)), pc_codes.astype(np.int64))

        # -- perturbagen across cell lines
        ps_codes, ps_ids = pd.factorize(pc_index["pert_id"])
        first_pc = pd.Series(np.arange(len(pc_index))).groupby(ps_codes).first().to_numpy()
        ps_index = pd.DataFrame({"id": list(ps_ids)})
        for f in PERT_FIELDS:
            if f in pc_index.columns:
                ps_index[f] = pc_index[f].iloc[first_pc].to_numpy()
        ps_index["n_cells"] = np.bincount(ps_codes, minlength=len(ps_ids))
        ps_index["n_sigs"] = np.bincount(ps_codes, weights=pc_index["n_sigs"].to_numpy(), minlength=len(ps_ids)).astype(int)
        levels["pert_summary"] = _Level(ps_index, "pert_cell", np.arange(len(pc_index)), ps_codes.astype(np.int64))
        if not pcl:
            return cls(levels)

        # -- PCL per cell line: member perturbagens' pert_cell NCS
        pert_of_pc = pc_index["pert_id"].to_numpy(dtype=object)
        cell_of_pc = pc_index["cell_id"].to_numpy(dtype=object)
        groups: list[np.ndarray] = []
        keys: list[tuple[str, str]] = []
        for name, members in pcl.items():
            in_pcl = np.isin(pert_of_pc, np.asarray([str(m) for m in members], dtype=object))
            for c in pd.unique(cell_of_pc[in_pcl]):
                sel = np.flatnonzero(in_pcl & (cell_of_pc == c))
                if len(np.unique(pert_of_pc[sel])) >= min_pcl_members:
                    groups.append(sel)
                    keys.append((name, str(c)))
        index = pd.DataFrame(
            {
                "id": [f"{n}:{c}" for n, c in keys],
                "pcl": [n for n, _ in keys],
                "cell_id": [c for _, c in keys],
                "n_members": [len(r) for r in groups],
            }
        )
        levels["pcl_cell"] = _Level(index, "pert_cell", *_flatten(groups))

        # -- PCL summary: member perturbagens' pert_summary NCS
        ps_ids_arr = ps_index["id"].to_numpy(dtype=object)
        groups, names = [], []
        for name, members in pcl.items():
            sel = np.flatnonzero(np.isin(ps_ids_arr, np.asarray([str(m) for m in members], dtype=object)))
            if len(sel) >= min_pcl_members:
                groups.append(sel)
                names.append(name)
        index = pd.DataFrame(
            {"id": names, "n_members": [len(r) for r in groups], "members": ["|".join(ps_ids_arr[r]) for r in groups]}
        )
        levels["pcl_summary"] = _Level(index, "pert_summary", *_flatten(groups))
        return cls(levels)

    def apply(self, ncs: np.ndarray, **threads: int) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
        """maxq summaries of ``ncs`` (S, Q) (or (S,)) at every level of the plan (float32);
        ``threads``: ``threads=`` / ``parallel_min=`` of the kernel (given by the backend)."""
        from opencmap.kernels.summarise import group_maxq_layout

        values = {"sig": np.asarray(ncs, dtype=np.float32)}
        if values["sig"].ndim == 1:
            values["sig"] = values["sig"][:, None]
        out: dict[str, tuple[pd.DataFrame, np.ndarray]] = {}
        for name, lv in self.levels.items():
            src = values[lv.source]
            agg = group_maxq_layout(src, lv.layout, min_members=lv.min_members, out_dtype=np.float32, **threads)
            values[name] = agg
            out[name] = (lv.index, agg)
        return out


def _flatten(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if not groups:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64)
    rows = np.concatenate(groups)
    codes = np.concatenate([np.full(len(r), i, dtype=np.int64) for i, r in enumerate(groups)])
    return rows, codes


def summarise(
    ncs: np.ndarray,
    sig_info: pd.DataFrame,
    *,
    pcl: Mapping[str, Sequence[str]] | None = None,
    min_pcl_members: int = 2,
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Summaries of ``ncs`` (S, Q) for signatures described by ``sig_info`` (S rows, store order).

    Returns ``{level: (index, values)}`` for ``pert_cell`` and ``pert_summary`` (and ``pcl_cell``,
    ``pcl_summary`` when ``pcl`` maps class names to member ``pert_id``s; classes need at least
    ``min_pcl_members`` members present, others are left out). To summarise many NCS matrices of
    the same signatures, build a :class:`SummaryPlan` once and call :meth:`SummaryPlan.apply`.
    """
    return SummaryPlan.build(sig_info, pcl=pcl, min_pcl_members=min_pcl_members).apply(ncs)
