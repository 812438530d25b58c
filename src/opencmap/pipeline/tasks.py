"""The pipeline's distributable tasks: a run's heavy per-plate and per-set work as module-level
functions of a :class:`~opencmap.backends.BlockTask`, for backends that run tasks in other
processes (:func:`~opencmap.backends.is_distributed`).

With such a backend, :class:`~opencmap.pipeline.run.PipelineRun` hands these to
:meth:`Backend.map_blocks <opencmap.backends.Backend.map_blocks>` and this process (the driver)
only writes what they return -- Level 2 files, the work folder's Level 3 plates and censoring
reports, the Level 4/5 work files, the signature tables -- and records progress in the
done-list, exactly as a local run does; the outputs are bit-identical to a local run's. With the
local backend the steps run in process as they always have (these functions are not used).

=========================  ==================================================================
:func:`level2_plate_task`   Level 1 → 2: detection plates deconvolved (their LXB files and
                            plate maps read here); returns each plate's
                            :class:`~opencmap.pipeline.deconvolve.Level2`
:func:`level3_plates_task`  Level 2 → 3: plates through LISS, censoring, QNORM (and inference);
                            reads the Level 2 matrix or the plates' Level 2 files; returns
                            each plate's Level 3 and censoring report
:func:`collapse_sets_task`  Level 3 → 4 → 5: a block of replicate sets, each plate z-scored,
                            each set collapsed by MODZ; reads the Level 3 (or 4) matrix or the
                            work folder's Level 3 plates; returns Level 4 and Level 5 values
                            and the sets' signature tables
:func:`cgs_batch_task`      consensus gene signatures of a batch of groups, their Level 5
                            signatures read from the Level 5 work file (closed by the driver
                            while the tasks run); returns the CGS and their table
=========================  ==================================================================

What a worker needs: the input files (LXB folder and plate maps, chip file if one was given,
the Level 2/3/4 matrix, the run's work folder and ``level2/`` output folder) **at the driver's
paths** (a shared file system); everything else (tables, parameters, the inference model,
the settings) travels in the task. Tasks write nothing; a task that fails raises in the driver,
whose done-list then holds only what was written before, so the run resumes from there.
Kernel threads in a task are those of a :class:`~opencmap.backends.LocalBackend` with the
task's settings in the worker (one thread outside a process's main thread).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from opencmap.backends import BlockTask, LocalBackend, Settings
from opencmap.core.gct import GCT

__all__ = ["level2_plate_task", "level3_plates_task", "collapse_sets_task", "cgs_batch_task", "TASK_WELLS"]

#: Wells (Level 4 columns) per :func:`collapse_sets_task`, at least one replicate set: what a task
#: returns is about ``TASK_WELLS x genes`` float32 values of Level 4 and (fewer) of Level 5.
TASK_WELLS = 2048


def _threads(settings: Settings) -> int:
    return LocalBackend(settings).numba_threads()


def level2_plate_task(task: BlockTask) -> list[Any]:
    """Level 2 of the detection plates ``params["plates"]`` (:class:`~opencmap.pipeline.level1.Level1Plate`,
    their LXB files and plate maps read from their paths), deconvolved with ``params["chip"]``
    (a chip table, or None for the bundled chip), ``params["seed"]`` and ``params["params"]``'s
    ``dpeak`` and ``flip``; the driver writes them (:func:`~opencmap.pipeline.deconvolve.write_level2`)."""
    from opencmap.pipeline.deconvolve import deconvolve_plate

    p = task.params
    run = p["params"]
    return [
        deconvolve_plate(plate.files, plate.plate_map, seed=p["seed"], chip=p["chip"], plate=plate.name, params=run.dpeak, flip=run.flip)
        for plate in p["plates"]
    ]


def level3_plates_task(task: BlockTask) -> list[tuple[GCT, pd.DataFrame]]:
    """``(Level 3, censoring report)`` of each plate of ``params["plates"]`` (``(plate, plate
    metadata, column positions)``), from the Level 2 matrix at ``task.path`` (rows
    ``params["row_meta"]``) or, from Level 1, the plates' Level 2 files ``params["level2_files"]``
    (gene table ``params["genes_table"]``); ``params["model"]``: an inference model or None."""
    from opencmap.pipeline.level3 import MatrixPlates, _level2_files_to_level3, level2_to_level3

    p = task.params
    run, model = p["params"], p["model"]
    out = []
    if p.get("level2_files") is not None:
        for _plate, plate_meta, _positions in p["plates"]:
            out.append(_level2_files_to_level3(plate_meta, p["level2_files"], model, p["genes_table"], run))
        return out
    from pathlib import Path

    matrix = MatrixPlates(Path(task.path), p["row_meta"])
    try:
        for plate, plate_meta, positions in p["plates"]:
            level2 = GCT(matrix.read(plate, plate_meta, positions), row_meta=matrix.row_meta, col_meta=plate_meta)
            out.append(level2_to_level3(level2, inference_model=model, liss=run.liss, censor=run.censor))
    finally:
        matrix.close()
    return out


def collapse_sets_task(task: BlockTask) -> list[dict[str, Any]]:
    """Level 4 and Level 5 of a block of replicate sets (``params["sets"]``), one dict per set.

    Each set item gives ``name``, ``plates`` (``(plate, plate metadata, column positions, Level 3
    path or None)``; None: the plate is read from the matrix at ``task.path``), ``col_meta``
    (the set's instances, plate after plate) and ``collapse`` (False: only its plates' Level 4 is
    wanted, the set itself is done). Returns ``level4`` (genes x the set's wells, float32, laid
    out as the local run's buffer), and with ``collapse`` ``level5`` (genes x signatures) and
    ``set_info``. ``params``: ``rows`` (Level 3 rows), ``landmarks``, ``params``, ``settings``.
    """
    from pathlib import Path

    from opencmap.io import read_gct
    from opencmap.pipeline.level3 import MatrixPlates
    from opencmap.pipeline.signatures import build_signatures
    from opencmap.pipeline.zscore import zscore_plate

    p = task.params
    rows, run, landmarks = p["rows"], p["params"], p["landmarks"]
    threads = _threads(p["settings"])
    matrix = MatrixPlates(Path(task.path), rows) if task.path else None
    results = []
    try:
        for item in p["sets"]:
            wells = sum(len(positions) for _, _, positions, _ in item["plates"])
            # the local run's buffer layout (wells x genes, transposed): the same values bit for bit
            buffer = np.empty((wells, len(rows)), dtype=np.float32).T
            used = 0
            for plate, plate_meta, positions, level3_path in item["plates"]:
                out = buffer[:, used : used + len(positions)]
                used += len(positions)
                if level3_path is not None:
                    data = read_gct(level3_path).data
                elif matrix is not None:
                    data = matrix.read(plate, plate_meta, positions)
                else:
                    raise ValueError(f"plate {plate}: no Level 3 file and no matrix to read it from (internal error)")
                if run.start_level == 4:
                    out[...] = data
                else:
                    zscore_plate(GCT(data, row_meta=rows, col_meta=plate_meta), run, plate_id=plate, out=out, threads=threads)
            result: dict[str, Any] = {"name": item["name"], "level4": buffer}
            if item["collapse"]:
                level4 = GCT(buffer, row_meta=rows, col_meta=item["col_meta"])
                level5, set_info = build_signatures(level4, run, landmark_rows=landmarks, exemplars=False, threads=threads)
                result.update(level5=level5.data, set_info=set_info)
            results.append(result)
    finally:
        if matrix is not None:
            matrix.close()
    return results


def cgs_batch_task(task: BlockTask) -> tuple[np.ndarray, pd.DataFrame]:
    """The consensus gene signatures of a batch of groups (``params["groups"]``) and their table,
    from the Level 5 signatures at columns ``params["columns"]`` (ids ``params["ids"]``, table
    ``params["sig_info"]``) of the Level 5 work file at ``task.path``, opened read-only."""
    from opencmap.io.gctx import GCTXSlots
    from opencmap.pipeline.cgs import consensus_gene_signatures
    from opencmap.pipeline.run import _read_columns

    p = task.params
    l5 = GCTXSlots.open(task.path, readonly=True)
    try:
        level5 = _read_columns(l5, np.asarray(p["columns"]), p["rows"], pd.Index(p["ids"], dtype=object))
    finally:
        l5.close()
    cgs, info = consensus_gene_signatures(
        level5, p["sig_info"], params=p["params"], landmark_rows=p["landmarks"], groups=p["groups"], threads=_threads(p["settings"])
    )
    return cgs.data, info
