"""Reaching Level 3: Level 2 plates through LISS, censoring and QNORM; and reading Level 3 plate by plate.

* :func:`level2_to_level3` — one plate's Level 2 GEX → Level 3 (LISS per bead set, censoring,
  QNORM, optional inference), in memory;
* :func:`reach_level3` — the step of a run from Level 1/2 input: every plate through
  :func:`level2_to_level3`, its Level 3 and censoring report written to the work folder
  (resumable, plate by plate). Returns the wells that survived censoring and the Level 3 rows;
* :class:`MatrixPlates` and :class:`WorkPlates` — where the Level 3 → 4 step reads each plate:
  the input matrix (Level 3/4 input, or Level 2 input on its way to Level 3) or the work folder's
  per-plate Level 3 files (Level 1/2 input).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.backends import Backend, BlockTask, is_distributed, ordered_results
from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.io import GCTXFile, is_gctx, read_gct, read_meta, write_gctx, write_table
from opencmap.pipeline.censor import CensorParams
from opencmap.pipeline.inputs import merge_gene_info
from opencmap.pipeline.liss import LissParams
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.plan import RunPlan
from opencmap.pipeline.workfolder import WorkFolder

__all__ = ["level2_to_level3", "reach_level3", "MatrixPlates", "WorkPlates", "concat_columns"]

log = logging.getLogger(__name__)


def level2_to_level3(
    plate: GCT | Mapping[str, GCT],
    *,
    inference_model: Any | None = None,
    liss: LissParams | None = None,
    censor: CensorParams | None = None,
) -> tuple[GCT, pd.DataFrame]:
    """Level 2 GEX of one plate → Level 3: LISS, censoring, QNORM (and inference if a model is given).

    ``plate`` is one bead-set matrix (linear scale; gene rows plus the invariant probes
    ``CAL01``..``CAL10``) or, as deconvolution gives it, a mapping ``bead set -> matrix``
    (``Level2.bead_sets``: each bead set is LISS-scaled against its own invariant probes, whose
    ids repeat across sets). ``liss`` and ``censor``: the steps' parameters (CMap defaults).
    Returns the Level 3 plate (censored wells removed) and the censoring report of
    :func:`opencmap.pipeline.censor.censor_plate` (one row per input well).
    """
    from opencmap.pipeline.censor import censor_plate
    from opencmap.pipeline.liss import liss_plate
    from opencmap.pipeline.qnorm import qnorm_plate

    norm, qc = liss_plate(plate, params=liss or LissParams())
    kept, report = censor_plate(norm, qc, params=censor or CensorParams())
    level3 = qnorm_plate(kept)
    if inference_model is not None:
        from opencmap.pipeline.infer import apply_inference

        level3 = apply_inference(level3, inference_model)
    return level3, report


def concat_columns(blocks: list[GCT], row_meta: pd.DataFrame) -> GCT:
    """Blocks with the same rows side by side (their column metadata stacked)."""
    data = np.concatenate([b.data for b in blocks], axis=1) if len(blocks) > 1 else blocks[0].data
    col_meta = pd.concat([b.col_meta for b in blocks], axis=0)
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


class MatrixPlates:
    """The plates of the input matrix: a GCTX read by column positions (opened once), or a text
    GCT parsed once (it is small by nature)."""

    def __init__(self, matrix: Path, row_meta: pd.DataFrame) -> None:
        self.matrix = matrix
        self.row_meta = row_meta
        self._whole = None if is_gctx(matrix) else read_gct(matrix)
        self._reader = GCTXFile(matrix) if self._whole is None else None

    def read(self, plate: str, plate_meta: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
        """One plate's values, ``(genes, wells)`` float32, rows in ``row_meta``'s order."""
        if self._whole is not None:
            raw = self._whole.subset(cids=plate_meta.index)
            return raw.data if raw.rids.equals(self.row_meta.index) else raw.subset(rids=self.row_meta.index).data
        if self._reader is None:
            raise PipelineError(f"{self.matrix} is closed (internal error; please report it)")
        return self._reader.read_matrix(cidx=positions)  # the matrix's rows are row_meta's rows

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class WorkPlates:
    """The plates' Level 3 written to the work folder by :func:`reach_level3`."""

    def __init__(self, work: WorkFolder) -> None:
        self.work = work

    def read(self, plate: str, plate_meta: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
        return read_gct(self.work.level3_path(plate)).data

    def close(self) -> None:
        pass


def reach_level3(
    plan: RunPlan,
    params: PipelineParams,
    work: WorkFolder,
    *,
    matrix: MatrixPlates | None,
    level2_files: Mapping[str, Mapping[str, Path]] | None,
    model: Any | None,
    genes_table: pd.DataFrame | None,
    report: Callable[[str, int, int], None],
    backend: Backend | None = None,
) -> tuple[list[str], pd.DataFrame]:
    """Level 1/2 → 3 for every plate of ``plan`` (resumable): its Level 3 and censoring report in
    the work folder.

    Level 2 plates are read from ``matrix``; Level 1 plates from their deconvolved ``level2_files``
    (the gene table is merged onto their rows). Returns ``(kept, rows)``: the ids of the wells left
    after censoring (plate after plate, each plate's in Level 3 order) and the Level 3 row
    metadata (every plate must have the same rows). With a distributed ``backend`` the plates go
    through :func:`~opencmap.pipeline.tasks.level3_plates_task` tasks (one per plate); their
    results are written here.
    """
    if level2_files is None and matrix is None:
        raise PipelineError("no input matrix to read (internal error; please report it)")
    done = {
        plate for plate in plan.plate_order
        if work.is_done(f"level3\t{plate}", work.level3_path(plate), work.censor_path(plate))
    }  # fmt: skip
    pending = [plate for plate in plan.plate_order if plate not in done]

    def computed() -> Iterator[tuple[GCT, pd.DataFrame]]:
        """Each pending plate's ``(Level 3, censoring report)``, in order: here or from tasks."""
        if backend is not None and is_distributed(backend):
            from opencmap.pipeline.tasks import level3_plates_task

            common = {
                "params": params, "model": model, "genes_table": genes_table, "level2_files": level2_files,
                "row_meta": None if matrix is None else matrix.row_meta,
            }  # fmt: skip
            path = "" if matrix is None else str(matrix.matrix)
            tasks = []
            for i, plate in enumerate(pending):
                positions = plan.plate_positions[plate]
                tasks.append(BlockTask(path, i, i + 1, {**common, "plates": [(plate, plan.col_meta.iloc[positions], positions)]}))
            for _task, (result,) in ordered_results(backend, level3_plates_task, tasks):
                yield result
            return
        for plate in pending:
            positions = plan.plate_positions[plate]
            plate_meta = plan.col_meta.iloc[positions]
            if level2_files is not None:
                yield _level2_files_to_level3(plate_meta, level2_files, model, genes_table, params)
            else:
                assert matrix is not None
                level2 = GCT(matrix.read(plate, plate_meta, positions), row_meta=matrix.row_meta, col_meta=plate_meta)
                yield level2_to_level3(level2, inference_model=model, liss=params.liss, censor=params.censor)

    results = computed()
    rows: pd.DataFrame | None = None
    kept: list[str] = []
    report("level 3", 0, len(plan.plate_order))
    for i, plate in enumerate(plan.plate_order):
        path = work.level3_path(plate)
        if plate in done:
            plate_rows, cids = read_meta(path, "row"), read_meta(path, "col").index
        else:
            level3, censored = next(results)
            if level3.shape[1] == 0:
                raise PipelineError(f"plate {plate}: every well was censored after LISS; check its Level 2 data")
            write_table(censored.rename_axis("inst_id"), work.censor_path(plate))
            write_gctx(level3, path)
            work.mark_done(f"level3\t{plate}")
            plate_rows, cids = level3.row_meta, level3.cids
        if rows is None:
            rows = plate_rows
        elif not plate_rows.index.equals(rows.index):
            raise PipelineError(f"plate {plate}: its Level 3 genes differ from the first plate's; all plates must share one gene space")
        kept.extend(str(c) for c in cids)
        report("level 3", i + 1, len(plan.plate_order))
    if rows is None:
        raise PipelineError("no plates to process")
    return kept, rows


def _level2_files_to_level3(
    plate_meta: pd.DataFrame,
    level2_files: Mapping[str, Mapping[str, Path]],
    model: Any | None,
    genes_table: pd.DataFrame | None,
    params: PipelineParams,
) -> tuple[GCT, pd.DataFrame]:
    """The wells of one (RNA) plate: per detection plate, both bead sets → LISS, censoring, QNORM."""
    det = plate_meta["det_plate"].astype("str").to_numpy()
    parts, reports = [], []
    for det_plate in pd.unique(det):
        cids = plate_meta.index[det == det_plate]
        bead_sets = {}
        for kind, path in level2_files[det_plate].items():
            if kind.startswith("gex_"):
                g = read_gct(path, cid=list(cids))
                bead_sets[kind[4:]] = GCT(g.data, row_meta=g.row_meta, col_meta=plate_meta.loc[cids])
        level3, report = level2_to_level3(bead_sets, inference_model=model, liss=params.liss, censor=params.censor)
        parts.append(level3)
        reports.append(report)
    rows = parts[0].row_meta.copy()
    if any(not p.rids.equals(rows.index) for p in parts[1:]):
        raise PipelineError("detection plates of one RNA plate have different genes; were they read with different chips?")
    if "pr_is_lm" not in rows.columns and "pr_type" in rows.columns:
        rows["pr_is_lm"] = (rows["pr_type"].astype("str") == "LM").astype(np.int64).to_numpy()
    rows = merge_gene_info(rows, genes_table)
    return concat_columns(parts, rows), pd.concat(reports, axis=0)
