"""The run plan: plates, replicate sets, output columns and run identity, computed once.

:func:`make_plan` reads the instance table once and fixes everything the steps need to know
before any value is computed:

* **plates** — ``rna_plate`` values in order of first appearance (= the matrix's column order)
  and each plate's column positions in the matrix;
* **replicate sets** — plates sharing a prefix (``params.replicate_set_pattern``), in order of
  first appearance, and each set's plates;
* **Level 4 columns** — plates in order, each plate's wells in matrix order
  (:attr:`RunPlan.level4_order`, :meth:`RunPlan.plate_start`);
* **Level 5 columns** — each replicate set's signatures (one per group of replicates,
  :func:`~opencmap.pipeline.signatures.group_instances`), sets in order; the consensus gene
  signatures are appended after them (:meth:`RunPlan.set_start`, :attr:`RunPlan.n_signatures`).

From Level 1/2 input the plan is made from the instance table, and once each plate has reached
Level 3 its censored wells are left out with :meth:`RunPlan.keep` (same plates and sets, in the
same order).

:func:`run_identity` is what a resumed run must match (inputs' fingerprints, parameters, work
layout); it is stored in the work folder (:mod:`opencmap.pipeline.workfolder`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.signatures import check_group_fields, group_instances, replicate_sets

__all__ = ["RunPlan", "make_plan", "run_identity", "fingerprint", "WORK_LAYOUT"]

#: Work-folder layout: the Level 4 and Level 5 outputs filled in place (every start level;
#: Level 1/2 plates reach Level 3 in the work folder first). Layout 1 (before it: per-plate Level 4
#: and per-set Level 5 work files) cannot be resumed.
WORK_LAYOUT = 2


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies an input file for a resumed run: resolved path, size, modification time."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass(frozen=True)
class RunPlan:
    """Where every instance and signature of a run goes (see the module docstring)."""

    col_meta: pd.DataFrame
    """The instance table, one row per matrix column, in matrix order."""
    plate_order: list[str]
    plate_positions: Mapping[str, np.ndarray]
    """Each plate's column positions in ``col_meta`` (and the matrix)."""
    set_order: list[str]
    set_plates: Mapping[str, list[str]]
    signatures_per_set: Mapping[str, int]
    """Signatures each replicate set gives (its groups of replicates)."""

    @property
    def n_instances(self) -> int:
        return len(self.col_meta)

    @property
    def n_signatures(self) -> int:
        """Level 5 signatures before the consensus gene signatures."""
        return int(sum(self.signatures_per_set.values()))

    @property
    def level4_order(self) -> np.ndarray:
        """Matrix column positions in Level 4 order: plate after plate."""
        return np.concatenate([self.plate_positions[p] for p in self.plate_order])

    def plate_start(self) -> dict[str, int]:
        """Each plate's first Level 4 column."""
        return _starts(self.plate_order, {p: len(self.plate_positions[p]) for p in self.plate_order})

    def set_start(self) -> dict[str, int]:
        """Each replicate set's first Level 5 column."""
        return _starts(self.set_order, self.signatures_per_set)

    def set_positions(self, set_name: str) -> np.ndarray:
        """The set's column positions, plate after plate (its Level 4 block's order)."""
        return np.concatenate([self.plate_positions[p] for p in self.set_plates[set_name]])

    def widest_set(self) -> int:
        """Wells of the largest replicate set (the size of a set buffer)."""
        return max(sum(len(self.plate_positions[p]) for p in self.set_plates[s]) for s in self.set_order)

    def keep(self, cids: Sequence[str], params: PipelineParams) -> RunPlan:
        """The plan of the wells ``cids`` only (those left after censoring), in that order.

        The plates and replicate sets keep their order; ``cids`` lists each plate's wells
        together, plates in :attr:`plate_order`.
        """
        return make_plan(self.col_meta.loc[list(cids)], params)


def _starts(order: Sequence[str], sizes: Mapping[str, int]) -> dict[str, int]:
    starts: dict[str, int] = {}
    pos = 0
    for name in order:
        starts[name] = pos
        pos += int(sizes.get(name, 0))
    return starts


def make_plan(col_meta: pd.DataFrame, params: PipelineParams) -> RunPlan:
    """The plan of the instances ``col_meta`` (matrix column order); checks the grouping fields.

    The replicate sets and groups are found once here; each set's block is grouped again only by
    :func:`~opencmap.pipeline.signatures.build_signatures` (the run checks it gives the plan's count).
    """
    check_group_fields(col_meta, params)
    sets = replicate_sets(col_meta, params)
    plates = col_meta["rna_plate"].astype("str")
    plate_positions = plates.groupby(plates.to_numpy(), sort=False).indices  # column positions in the matrix
    plate_order = list(pd.unique(plates))  # first appearance = the matrix's column order
    pairs = pd.DataFrame({"set": sets.to_numpy(), "plate": plates.to_numpy()}).drop_duplicates()
    set_plates = {s: list(group["plate"]) for s, group in pairs.groupby("set", sort=False)}
    set_order = list(pd.unique(sets))
    per_set = group_instances(col_meta, params, sets=sets).groupby("replicate_set", sort=False).size()
    return RunPlan(
        col_meta=col_meta,
        plate_order=plate_order,
        plate_positions=plate_positions,
        set_order=set_order,
        set_plates=set_plates,
        signatures_per_set={s: int(per_set.get(s, 0)) for s in set_order},
    )


def run_identity(
    *,
    params: PipelineParams,
    matrix: Path | None = None,
    level1: dict[str, Any] | None = None,
    inst_info: str | PathLike[str] | pd.DataFrame | None = None,
    inference_model: str | PathLike[str] | None = None,
    n_instances: int | None = None,
) -> dict[str, Any]:
    """What a resumed run must match: the input (``matrix``'s fingerprint, or the Level 1
    plates, chip and seed), the instance table and inference model files, the number of
    instances (matrix input), every parameter and the work layout :data:`WORK_LAYOUT`."""
    identity: dict[str, Any] = {"level1": level1} if level1 is not None else {"matrix": fingerprint(matrix) if matrix else None}
    identity["inst_info"] = fingerprint(Path(inst_info)) if isinstance(inst_info, (str, PathLike)) else None
    identity["inference_model"] = fingerprint(Path(inference_model)) if inference_model is not None else None
    if n_instances is not None:
        identity["n_instances"] = int(n_instances)
    identity["params"] = params.to_dict()
    identity["layout"] = WORK_LAYOUT
    return identity
