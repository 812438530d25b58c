"""The run: a plan and its steps, Level 1, 2, 3 or 4 input → Level 4, Level 5, ``sig_info``, manifest.

:func:`run_pipeline` is these steps of a :class:`PipelineRun`, in order (each a public method,
runnable on its own: it resumes its predecessors from the work folder when they have not run in
this process, and skips its own finished work):

1. :meth:`~PipelineRun.deconvolve` — Level 1 → 2 (start level 1): LXB files → Level 2 files;
2. :meth:`~PipelineRun.reach_level3` — Level 1/2 → 3 (start levels 1, 2): each plate through LISS,
   censoring, QNORM (:func:`~opencmap.pipeline.level3.level2_to_level3`), its Level 3 written to
   the work folder; the plan then leaves the censored wells out;
3. :meth:`~PipelineRun.zscore_and_collapse` — Level 3 → 4 → 5, replicate set by replicate set:
   each plate z-scored (:func:`~opencmap.pipeline.zscore.zscore_plate`) into its Level 4
   columns, each set's replicates collapsed (:func:`~opencmap.pipeline.signatures.build_signatures`)
   into its Level 5 columns;
4. :meth:`~PipelineRun.build_cgs` — consensus gene signatures (:mod:`~opencmap.pipeline.cgs`)
   from Level 5, appended to it;
5. :meth:`~PipelineRun.finish` — exemplar flags over all signatures, the final files moved into
   ``out_dir``, ``sig_info.txt``, ``censored.txt`` (Level 1/2), ``manifest.json``.

Every start level takes the same path from Level 3 on. The :class:`~opencmap.pipeline.plan.RunPlan`
(plates, replicate sets, output columns) is made once from the instance table; the Level 4 and
Level 5 matrices are allocated at their final size in the work folder, so every value is written
once, in place, and the finished files are moved, not copied. Memory holds two replicate sets'
plates at a time, whatever the size of the compendium: the reads of the next set and the writes
of the last one run in one I/O worker thread (HDF5 I/O releases the GIL), overlapping with
computing.

**Resumable.** Every finished plate / set is recorded in the work folder's done-list
(:mod:`opencmap.pipeline.workfolder`), only after its values were handed to the operating system
(and, every :data:`CHECKPOINT_SECONDS`, put on disk with ``fsync``); an interrupted run started
again with the same inputs and parameters skips what is done (a partial output that cannot be
reopened is redone). The work folder (``<out>/.opencmap-work`` by default) is removed after a
successful run unless ``keep_work=True``. Resuming with different inputs or parameters is
refused (:class:`~opencmap.errors.ConfigError`); pass ``restart=True`` to start over.

**Where the work runs.** With the default (local) backend, as above: in this process, with its
I/O worker. With a distributed backend (:func:`opencmap.backends.is_distributed`) the per-plate
Level 1 → 2 and Level 2 → 3 work, the z-scoring and collapse of blocks of replicate sets and the
CGS batches run as the tasks of :mod:`opencmap.pipeline.tasks` in its workers (which read the
inputs and the work folder at this process's paths); this process writes what they return and
keeps the done-list as a local run does. The outputs are bit-identical either way.

Outputs in ``out_dir``: ``level4.gctx`` (genes × instances, robust z-scores), ``level5.gctx``
(genes × signatures, column metadata = ``sig_info``), ``sig_info.txt`` and ``manifest.json``
(every parameter, inputs, versions, counts, timings).
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.backends import Backend, BlockTask, Settings, is_distributed, ordered_results, resolve_backend
from opencmap.core.gct import GCT
from opencmap.errors import FormatError, OpenCMapWarning, PipelineError
from opencmap.io import read_meta, read_table, write_table
from opencmap.io.decompress import resolve_gzipped_gctx
from opencmap.io.gctx import GCTXSlots
from opencmap.pipeline.cgs import cgs_groups, consensus_gene_signatures
from opencmap.pipeline.inputs import merge_gene_info, merge_inst_info, read_inst_info
from opencmap.pipeline.level1 import Level1Plate, deconvolve_plates, level1_instances, level1_plates
from opencmap.pipeline.level3 import MatrixPlates, WorkPlates, level2_to_level3, reach_level3
from opencmap.pipeline.levels import check_input_level
from opencmap.pipeline.manifest import MANIFEST_VERSION, write_manifest
from opencmap.pipeline.modz import landmark_positions
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.plan import WORK_LAYOUT, RunPlan, fingerprint, make_plan, run_identity
from opencmap.pipeline.qc import exemplar_flags
from opencmap.pipeline.signatures import build_signatures
from opencmap.pipeline.workfolder import WorkFolder
from opencmap.pipeline.zscore import zscore_plate

__all__ = [
    "RunResult",
    "ProgressCallback",
    "PipelineRun",
    "STEPS",
    "Level1Plate",
    "level1_plates",
    "run_pipeline",
    "level2_to_level3",
    "MANIFEST_VERSION",
]

log = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stages: ``"level 1"`` (deconvolution, from Level 1 only),
#: ``"level 3"`` (LISS, censoring, QNORM, from Level 1/2 only), ``"plates"``, ``"replicate sets"``,
#: ``"cgs"``, ``"write"``.
ProgressCallback = Callable[[str, int, int], None]

#: The steps of a run, in order (methods of :class:`PipelineRun`).
STEPS = ("deconvolve", "reach_level3", "zscore_and_collapse", "build_cgs", "finish")

LEVEL4_NAME = "level4.gctx"
LEVEL5_NAME = "level5.gctx"
SIG_INFO_NAME = "sig_info.txt"
CENSORED_NAME = "censored.txt"
LEVEL2_NAME = "level2"
WORK_NAME = ".opencmap-work"
#: Signatures read at once when building consensus gene signatures.
CGS_BATCH = 2000
#: Plates with fewer wells get a warning: their robust z-scores rest on few samples.
MIN_PLATE_WELLS = 10
#: Work-folder layout (outputs filled in place); see :data:`opencmap.pipeline.plan.WORK_LAYOUT`.
SLOTS_LAYOUT = WORK_LAYOUT
#: Seconds between durable checkpoints (fsync of the partial outputs, then of the done-list), by
#: default (set per run with :class:`~opencmap.backends.Settings` ``checkpoint_seconds``).
CHECKPOINT_SECONDS = Settings.checkpoint_seconds
_LEVEL4_PARTIAL = "level4.partial.gctx"
_LEVEL5_PARTIAL = "level5.partial.gctx"
_CGS_PARTIAL = "cgs.partial.gctx"  # distributed runs: the CGS, before they are copied into Level 5

# names kept importable from here (they moved to opencmap.pipeline.inputs)
_read_inst_info = read_inst_info
_merge_gene_info = merge_gene_info


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_pipeline` produced."""

    out_dir: Path
    level4: Path
    level5: Path
    sig_info: Path
    manifest: Path
    n_instances: int
    n_plates: int
    n_replicate_sets: int
    n_signatures: int
    n_cgs: int
    resumed_plates: int
    resumed_sets: int


class PipelineRun:
    """One run: its inputs, :class:`~opencmap.pipeline.plan.RunPlan`, work folder and steps.

    Construction reads the instance and gene tables (Level 2/3/4 input), makes the plan, and opens
    (or resumes) the work folder; no value is computed. Then call the steps of :data:`STEPS` in
    order, or :func:`run_pipeline` does. The arguments (keyword options after ``matrix`` and
    ``out_dir``) are those of :func:`run_pipeline`.

    Examples
    --------
    >>> run = PipelineRun("level3.gctx", "out", inst_info="inst_info.txt")  # doctest: +SKIP
    >>> run.zscore_and_collapse()     # Level 3 -> 4 -> 5               # doctest: +SKIP
    >>> run.build_cgs()                                                  # doctest: +SKIP
    >>> result = run.finish()                                            # doctest: +SKIP
    """

    def __init__(self, matrix: str | PathLike[str], out_dir: str | PathLike[str], **options: Any) -> None:
        unknown = sorted(set(options) - set(_RUN_OPTIONS))
        if unknown:
            raise TypeError(f"PipelineRun() got unknown option(s) {unknown}; known: {list(_RUN_OPTIONS)}")
        o = {**_RUN_OPTIONS, **options}
        params: PipelineParams | None = o["params"]
        inst_info, gene_info, inference_model = o["inst_info"], o["gene_info"], o["inference_model"]
        plate_maps, chip, seed, work_dir, keep_work, restart, progress = (
            o["plate_maps"], o["chip"], o["seed"], o["work_dir"], o["keep_work"], o["restart"], o["progress"]
        )
        self.params = params = params or PipelineParams()
        self.backend = resolve_backend(o["backend"])
        self.started = time.perf_counter()
        self.matrix = Path(matrix)
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.inst_info, self.gene_info = inst_info, gene_info
        self.inference_model = inference_model
        self.keep_work = keep_work
        self.seed = int(seed)
        self.report: ProgressCallback = progress or (lambda stage, done, total: None)
        self.from_level2 = params.start_level <= 2  # LISS, censoring and QNORM run
        self.level1_identity: dict[str, Any] | None = None
        self.level2_files: dict[str, dict[str, Path]] | None = None
        self.rows: pd.DataFrame | None = None  # Level 3 rows (from Level 1/2: known once a plate reached Level 3)
        self.plan: RunPlan | None = None  # every instance of the input
        self.level3_plan: RunPlan | None = None  # the instances reaching Level 3 (censored wells left out)
        self.sig_info: pd.DataFrame | None = None
        self.cgs_info: pd.DataFrame | None = None
        self.resumed_plates = self.resumed_sets = 0
        work_root = Path(work_dir) if work_dir else self.out / WORK_NAME

        if params.start_level == 1:
            if not self.matrix.is_dir():
                raise PipelineError(f"{self.matrix}: Level 1 input is a folder of LXB files (or of plate folders), not a file")
            self.bead_plates = level1_plates(self.matrix, plate_maps)
            self.chip = Path(chip) if chip is not None else None
            self.level1_identity = {
                "plates": [p.identity() for p in self.bead_plates],
                "chip": fingerprint(self.chip) if self.chip is not None else "bundled",
                "seed": self.seed,
            }
            identity = run_identity(params=params, level1=self.level1_identity, inst_info=inst_info, inference_model=inference_model)
        else:
            if self.matrix.is_dir():
                raise PipelineError(
                    f"{self.matrix} is a folder; Level {params.start_level} input is one GCTX/GCT matrix (LXB folders need start level 1)"
                )
            self.matrix = resolve_gzipped_gctx(self.matrix)  # .gctx.gz as GEO serves it: read from a decompressed copy
            self.input_rows = merge_gene_info(read_meta(self.matrix, "row"), gene_info)
            self._set_plan(merge_inst_info(read_meta(self.matrix, "col"), inst_info))
            identity = run_identity(
                params=params, matrix=self.matrix, inst_info=inst_info, inference_model=inference_model, n_instances=len(self.plan.col_meta)
            )
            if not self.from_level2:
                self.rows, self.level3_plan = self.input_rows, self.plan
        self.work = WorkFolder(work_root, identity, restart=restart, checkpoint_seconds=self.backend.settings.checkpoint_seconds)
        self.model = None
        if self.from_level2 and inference_model is not None:
            from opencmap.pipeline.infer import load_inference_model

            self.model = load_inference_model(inference_model)

    def _set_plan(self, col_meta: pd.DataFrame) -> None:
        self.plan = make_plan(col_meta, self.params)
        log.info(
            "%d instances on %d plates in %d replicate sets", self.plan.n_instances, len(self.plan.plate_order), len(self.plan.set_order)
        )

    # ------------------------------------------------------------------------------ 1. Level 1 -> 2
    def deconvolve(self) -> None:
        """Level 1 → 2 (start level 1; nothing otherwise): every detection plate deconvolved, its
        Level 2 written to ``<out_dir>/level2/``; the instance table and plan made from them."""
        if self.params.start_level != 1 or self.plan is not None:
            return
        self.level2_files = deconvolve_plates(
            self.bead_plates, self.out / LEVEL2_NAME, self.work, chip=self.chip, seed=self.seed, params=self.params, report=self.report,
            backend=self.backend,
        )
        self._set_plan(merge_inst_info(level1_instances(self.level2_files), self.inst_info))

    # ------------------------------------------------------------------------------ 2. Level 1/2 -> 3
    def reach_level3(self) -> None:
        """Level 1/2 → 3 (start levels 1, 2; nothing otherwise): each plate's Level 3 and censoring
        report in the work folder; the plan of the wells left after censoring."""
        if self.level3_plan is not None:
            return
        self.deconvolve()
        assert self.plan is not None
        genes_table = None
        if self.params.start_level == 1 and self.gene_info is not None:
            genes_table = self.gene_info if isinstance(self.gene_info, pd.DataFrame) else read_table(self.gene_info)
        matrix = MatrixPlates(self.matrix, self.input_rows) if self.params.start_level == 2 else None
        try:
            kept, self.rows = reach_level3(
                self.plan, self.params, self.work, matrix=matrix, level2_files=self.level2_files, model=self.model,
                genes_table=genes_table, report=self.report, backend=self.backend,
            )
        finally:
            if matrix is not None:
                matrix.close()
        self.level3_plan = self.plan.keep(kept, self.params)

    # ------------------------------------------------------------------------------ 3. Level 3 -> 4 -> 5
    def zscore_and_collapse(self) -> None:
        """Level 3 → 4 → 5 with both outputs filled in place, replicate set by replicate set.

        The Level 4 and Level 5 matrices are allocated in the work folder at their final size
        (plates at their final columns; each replicate set's signatures at theirs), so each value
        is written once. Progress marks reach the done-list only after the values they vouch for
        (see :meth:`WorkFolder.checkpoint`). Level 4 input (``params.start_level == 4``) is copied
        as it is, not z-scored.
        """
        if self.sig_info is not None:
            return
        self.reach_level3()
        plan, rows, work, params, report = self.level3_plan, self.rows, self.work, self.params, self.report
        assert plan is not None and rows is not None
        plates: MatrixPlates | WorkPlates = WorkPlates(work) if self.from_level2 else MatrixPlates(self.matrix, rows)
        if not self.from_level2:
            # Level 4 given as Level 3 would be z-scored twice: judged on one whole plate
            first = plan.plate_order[0]
            try:
                sample = plates.read(first, plan.col_meta.iloc[plan.plate_positions[first]], plan.plate_positions[first])
                check_input_level(sample, params.start_level, where=f"{self.matrix} (plate {first})")
            except BaseException:
                plates.close()
                raise
            del sample
        landmarks = landmark_positions(rows, params)
        plate_start, set_start = plan.plate_start(), plan.set_start()
        n_sigs = plan.n_signatures
        report("plates", 0, len(plan.plate_order))

        fresh = work.fresh("plate\t", "set\t", "cgs")
        l4, kept4 = _open_slots(work, _LEVEL4_PARTIAL, rows, plan.n_instances, resizable=False, fresh=fresh)
        l5, kept5 = _open_slots(work, _LEVEL5_PARTIAL, rows, n_sigs, resizable=True, fresh=fresh)
        if not fresh and not (kept4 and kept5):
            work.forget()  # a partial output was lost: its marks mean nothing any more
        files = (l4, l5)
        if is_distributed(self.backend):
            try:
                self.sig_info = self._collapse_on_backend(plates, landmarks, l4, l5)
            finally:
                l4.close()
                l5.close()
                plates.close()
            return
        plates_done = 0
        # A replicate set's Level 4 (genes x wells, column-major) goes into one of two buffers, reused
        # set after set. The I/O worker reads, z-scores and stores the plates of the next set into one
        # buffer while this thread collapses the set in the other (HDF5 I/O, numpy's sort and the
        # compiled kernels release the GIL).
        buffers = [np.empty((plan.widest_set(), len(rows)), dtype=np.float32).T for _ in range(2)]
        io = _IOWorker()

        def prepare(si: int) -> tuple[bool, int, list[tuple[Future[Any] | None, bool]]]:
            """Queue set ``si``'s plates: ``(set done, wells, [(future, resumed) per plate])``."""
            set_name = plan.set_order[si]
            buffer = buffers[si % 2]
            set_is_done = work.is_done(f"set\t{set_name}", work.sig_info_path(set_name))
            jobs: list[tuple[Future[Any] | None, bool]] = []
            used = 0
            for plate in plan.set_plates[set_name]:
                a, positions = plate_start[plate], plan.plate_positions[plate]
                slot = buffer[:, used : used + len(positions)]
                used += len(positions)
                if work.is_done(f"plate\t{plate}"):
                    jobs.append((None if set_is_done else io.read(_copy_slot, l4, a, slot), True))
                    continue
                plate_meta = plan.col_meta.iloc[positions]
                _warn_small_plate(plate, len(positions), stacklevel=4)
                args = (plates, plate, plate_meta, rows, params, positions, slot, l4, a, self.backend)
                jobs.append((io.write(f"plate\t{plate}", _plate_task, *args), False))
            return set_is_done, used, jobs

        try:
            prepared = prepare(0)
            for si, set_name in enumerate(plan.set_order):
                set_is_done, used, jobs = prepared
                for future, resumed in jobs:
                    if future is not None:
                        future.result()  # this plate's z-scores are in the buffer (errors raise here)
                    self.resumed_plates += resumed
                    plates_done += 1
                    report("plates", plates_done, len(plan.plate_order))
                if si + 1 < len(plan.set_order):
                    prepared = prepare(si + 1)  # the next set, into the other buffer, meanwhile
                if set_is_done:
                    self.resumed_sets += 1
                else:
                    level4 = GCT(buffers[si % 2][:, :used], row_meta=rows, col_meta=plan.col_meta.iloc[plan.set_positions(set_name)])
                    level5, set_info = build_signatures(
                        level4, params, landmark_rows=landmarks, exemplars=False, threads=self.backend.numba_threads()
                    )  # exemplars flagged in finish()
                    expected = plan.signatures_per_set[set_name]
                    if level5.shape[1] != expected:
                        raise PipelineError(
                            f"replicate set {set_name}: {level5.shape[1]} signatures where {expected} "
                            "were expected from the instance table (internal error; please report it)"
                        )
                    info_path = work.sig_info_path(set_name)
                    io.write(f"set\t{set_name}", _store_set, l5, set_start[set_name], level5.data, set_info, info_path)
                io.settle(work)
                report("replicate sets", si + 1, len(plan.set_order))
                work.checkpoint(files)
            io.close(work)
            # the signature table: each set's rows as stored, resumed sets and new ones alike (read back even
            # when computed here: the text round trip fixes the column types, so a resumed run's table and
            # Level 5 metadata equal a fresh run's)
            sig_info = pd.concat([_read_sig_info(work.sig_info_path(s)) for s in plan.set_order], axis=0)
            if len(sig_info) != n_sigs:
                raise PipelineError(
                    f"the work folder {work.root} holds {len(sig_info)} signatures where the instance table gives "
                    f"{n_sigs}; start over with restart=True (--restart)"
                )
            work.record(files)
        except BaseException:
            io.close(work, quiet=True)  # what was written is recorded, then the interruption propagates
            work.record(files, quiet=True)
            raise
        finally:
            l4.close()
            l5.close()
            plates.close()
        self.sig_info = sig_info

    def _collapse_on_backend(
        self, plates: MatrixPlates | WorkPlates, landmarks: np.ndarray, l4: GCTXSlots, l5: GCTXSlots
    ) -> pd.DataFrame:
        """:meth:`zscore_and_collapse` with a distributed backend: blocks of replicate sets
        (:data:`~opencmap.pipeline.tasks.TASK_WELLS` wells) z-scored and collapsed by
        :func:`~opencmap.pipeline.tasks.collapse_sets_task` tasks; their values written here, in
        set order, by the I/O worker, and marked done as a local run marks them. A plate finished
        by an earlier run but whose set was not is z-scored again (the same values), not read back."""
        from opencmap.pipeline.tasks import TASK_WELLS, collapse_sets_task

        plan, rows, work, params, report = self.level3_plan, self.rows, self.work, self.params, self.report
        assert plan is not None and rows is not None
        plate_start, set_start = plan.plate_start(), plan.set_start()
        items: list[dict[str, Any]] = []  # the sets with work left, in order
        done_before = {p for p in plan.plate_order if work.is_done(f"plate\t{p}")}
        for set_name in plan.set_order:
            set_is_done = work.is_done(f"set\t{set_name}", work.sig_info_path(set_name))
            todo = [p for p in plan.set_plates[set_name] if p not in done_before]
            for plate in todo:
                _warn_small_plate(plate, len(plan.plate_positions[plate]), stacklevel=4)
            if set_is_done and not todo:
                continue
            wanted = todo if set_is_done else plan.set_plates[set_name]
            items.append({
                "name": set_name, "collapse": not set_is_done,
                "plates": [
                    (p, plan.col_meta.iloc[plan.plate_positions[p]], plan.plate_positions[p],
                     str(work.level3_path(p)) if isinstance(plates, WorkPlates) else None)
                    for p in wanted
                ],
                "col_meta": plan.col_meta.iloc[np.concatenate([plan.plate_positions[p] for p in wanted])],
            })  # fmt: skip
        blocks: list[list[dict[str, Any]]] = []
        wells = 0
        for item in items:
            n = sum(len(pos) for _, _, pos, _ in item["plates"])
            if not blocks or wells + n > TASK_WELLS:
                blocks.append([])
                wells = 0
            blocks[-1].append(item)
            wells += n
        path = str(plates.matrix) if isinstance(plates, MatrixPlates) else ""
        common = {"rows": rows, "landmarks": landmarks, "params": params, "settings": self.backend.settings}
        tasks = [BlockTask(path, i, i + 1, {**common, "sets": block}) for i, block in enumerate(blocks)]
        log.info("collapsing %d replicate sets in %d tasks of %r", len(items), len(tasks), self.backend)
        item_of = {item["name"]: item for item in items}
        results = (result for _task, block in ordered_results(self.backend, collapse_sets_task, tasks) for result in block)
        files = (l4, l5)
        io = _IOWorker()
        plates_done = 0
        try:
            for si, set_name in enumerate(plan.set_order):
                item = item_of.get(set_name)
                result = next(results) if item is not None else None
                if result is not None and result["name"] != set_name:
                    raise PipelineError(
                        f"a task returned replicate set {result['name']} where {set_name} was due (internal error; please report it)"
                    )
                used = 0
                computed = {p for p, *_ in item["plates"]} if item is not None else set()
                for plate in plan.set_plates[set_name]:
                    n = len(plan.plate_positions[plate])
                    if plate in done_before:
                        self.resumed_plates += 1
                    else:
                        io.write(f"plate\t{plate}", l4.write, plate_start[plate], result["level4"][:, used : used + n])
                    used += n if plate in computed else 0
                    plates_done += 1
                    report("plates", plates_done, len(plan.plate_order))
                if item is None or not item["collapse"]:
                    self.resumed_sets += 1
                else:
                    expected = plan.signatures_per_set[set_name]
                    if result["level5"].shape[1] != expected:
                        raise PipelineError(
                            f"replicate set {set_name}: {result['level5'].shape[1]} signatures where {expected} "
                            "were expected from the instance table (internal error; please report it)"
                        )
                    io.write(f"set\t{set_name}", _store_set, l5, set_start[set_name], result["level5"], result["set_info"],
                             work.sig_info_path(set_name))  # fmt: skip
                io.settle(work)
                report("replicate sets", si + 1, len(plan.set_order))
                work.checkpoint(files)
            io.close(work)
            sig_info = pd.concat([_read_sig_info(work.sig_info_path(s)) for s in plan.set_order], axis=0)
            if len(sig_info) != plan.n_signatures:
                raise PipelineError(
                    f"the work folder {work.root} holds {len(sig_info)} signatures where the instance table gives "
                    f"{plan.n_signatures}; start over with restart=True (--restart)"
                )
            work.record(files)
        except BaseException:
            io.close(work, quiet=True)
            work.record(files, quiet=True)
            raise
        return sig_info

    # ------------------------------------------------------------------------------ 4. CGS
    def build_cgs(self) -> None:
        """Consensus gene signatures (``params.cgs``) from the signatures in the Level 5 work file,
        written after them, in batches of at most :data:`CGS_BATCH` input signatures (with a
        distributed backend: :func:`~opencmap.pipeline.tasks.cgs_batch_task` tasks, see
        :meth:`_cgs_on_backend`)."""
        if self.cgs_info is not None:
            return
        self.zscore_and_collapse()
        sig_info, rows, params, work = self.sig_info, self.rows, self.params, self.work
        assert sig_info is not None and rows is not None
        groups = cgs_groups(sig_info, params) if params.cgs else pd.DataFrame()
        if groups.empty:
            self.cgs_info = sig_info.iloc[:0]
            return
        n_sigs = len(sig_info)
        l5 = GCTXSlots.open(work.partial_path(_LEVEL5_PARTIAL))
        try:
            l5.resize(n_sigs + len(groups))
            if work.is_done("cgs", work.cgs_info_path):
                self.cgs_info = _read_sig_info(work.cgs_info_path)
                return
            landmarks = landmark_positions(rows, params)
            column = pd.Series(np.arange(n_sigs), index=sig_info.index)
            batches = _cgs_batches(groups)
            if is_distributed(self.backend):
                l5.close()  # the tasks read it; the CGS go to a file of their own, then into it
                infos, n_cgs = self._cgs_on_backend(groups, batches, column, landmarks)
                l5 = GCTXSlots.open(work.partial_path(_LEVEL5_PARTIAL))
                self._copy_cgs(l5, n_sigs, n_cgs)
                written = n_sigs + n_cgs
            else:
                written = n_sigs
                infos = []
                for start, stop in batches:
                    batch = groups.iloc[start:stop].reset_index(drop=True)
                    wanted = pd.Index([s for ids in batch["sig_ids"] for s in ids], dtype=object)
                    level5 = _read_columns(l5, column.loc[wanted].to_numpy(), rows, wanted)
                    cgs, info = consensus_gene_signatures(
                        level5, sig_info.loc[level5.cids], params=params, landmark_rows=landmarks, groups=batch,
                        threads=self.backend.numba_threads(),
                    )
                    l5.write(written, cgs.data)
                    written += cgs.data.shape[1]
                    infos.append(info)
                    self.report("cgs", stop, len(groups))
            if written != n_sigs + len(groups):
                raise PipelineError(f"built {written - n_sigs} CGS for {len(groups)} groups (internal error; please report it)")
            cgs_info = pd.concat(infos, axis=0)
            write_table(cgs_info, work.cgs_info_path)
            work.pend("cgs")
            work.record([l5])
        except BaseException:
            work.record([l5], quiet=True)
            raise
        finally:
            l5.close()
        self.cgs_info = cgs_info

    def _cgs_on_backend(
        self, groups: pd.DataFrame, batches: list[tuple[int, int]], column: pd.Series, landmarks: np.ndarray
    ) -> tuple[list[pd.DataFrame], int]:
        """The CGS batches as :func:`~opencmap.pipeline.tasks.cgs_batch_task` tasks reading the
        (closed) Level 5 work file; their values written, in order, to the work file
        ``cgs.partial.gctx`` (:meth:`_copy_cgs` moves them into Level 5). Returns the tables and
        the number of CGS written."""
        from opencmap.pipeline.tasks import cgs_batch_task

        sig_info, rows, params, work = self.sig_info, self.rows, self.params, self.work
        assert sig_info is not None and rows is not None
        common = {"rows": rows, "landmarks": landmarks, "params": params, "settings": self.backend.settings}
        tasks = []
        for start, stop in batches:
            batch = groups.iloc[start:stop].reset_index(drop=True)
            wanted = pd.Index([s for ids in batch["sig_ids"] for s in ids], dtype=object)
            tasks.append(BlockTask(str(work.partial_path(_LEVEL5_PARTIAL)), start, stop, {
                **common, "groups": batch, "columns": column.loc[wanted].to_numpy(), "ids": list(wanted), "sig_info": sig_info.loc[wanted],
            }))  # fmt: skip
        log.info("building %d CGS in %d tasks of %r", len(groups), len(tasks), self.backend)
        out = GCTXSlots.create(work.partial_path(_CGS_PARTIAL), rows, len(groups))
        infos = []
        written = 0
        try:
            for task, (data, info) in ordered_results(self.backend, cgs_batch_task, tasks):
                if written + data.shape[1] > len(groups):
                    raise PipelineError(f"built more CGS than the {len(groups)} groups (internal error; please report it)")
                out.write(written, data)
                written += data.shape[1]
                infos.append(info)
                self.report("cgs", task.stop, len(groups))
            out.flush()
        finally:
            out.close()
        return infos, written

    def _copy_cgs(self, l5: GCTXSlots, at: int, n: int) -> None:
        """The ``n`` CGS of ``cgs.partial.gctx`` into the Level 5 work file at column ``at``
        (in blocks of :data:`CGS_BATCH` columns); the partial file is removed."""
        path = self.work.partial_path(_CGS_PARTIAL)
        src = GCTXSlots.open(path, readonly=True)
        try:
            for lo in range(0, n, CGS_BATCH):
                hi = min(lo + CGS_BATCH, n)
                l5.write(at + lo, src.read(lo, hi))
        finally:
            src.close()
        path.unlink()

    # ------------------------------------------------------------------------------ 5. final files
    def finish(self) -> RunResult:
        """Exemplar flags over every signature; ``level4.gctx`` and ``level5.gctx`` moved into
        ``out_dir`` with their column metadata; ``sig_info.txt``, ``censored.txt`` (Level 1/2) and
        ``manifest.json``; the work folder removed (unless ``keep_work``)."""
        self.build_cgs()
        plan, sig_info, cgs_info, work = self.level3_plan, self.sig_info, self.cgs_info, self.work
        assert plan is not None and self.plan is not None and sig_info is not None and cgs_info is not None and self.rows is not None
        n_cgs = len(cgs_info)
        full_info = pd.concat([sig_info, cgs_info], axis=0) if n_cgs else sig_info
        full_info["is_exemplar_sig"] = exemplar_flags(full_info).to_numpy()
        full_info.index.name = "sig_id"
        level4_out, level5_out = self.out / LEVEL4_NAME, self.out / LEVEL5_NAME
        self.report("write", 0, 2)
        _finish_output(work, _LEVEL4_PARTIAL, plan.col_meta.iloc[plan.level4_order], level4_out, keep=self.keep_work)
        self.report("write", 1, 2)
        _finish_output(work, _LEVEL5_PARTIAL, full_info, level5_out, keep=self.keep_work)
        self.report("write", 2, 2)
        sig_info_out = self.out / SIG_INFO_NAME
        write_table(full_info, sig_info_out)
        n_censored = 0
        if self.from_level2:
            censored = pd.concat([read_table(work.censor_path(p), index_col="inst_id") for p in self.plan.plate_order], axis=0)
            censored = censored[censored["censored"].astype(bool)]
            n_censored = len(censored)
            write_table(censored, self.out / CENSORED_NAME)
        counts = {
            "genes": len(self.rows),
            "landmarks": int(len(landmark_positions(self.rows, self.params))),
            "instances": self.plan.n_instances,
            "censored_instances": n_censored,
            **({"detection_plates": len(self.level2_files)} if self.level2_files is not None else {}),
            "plates": len(self.plan.plate_order),
            "replicate_sets": len(self.plan.set_order),
            "signatures": int(len(sig_info)),
            "cgs": int(n_cgs),
            "resumed_plates": self.resumed_plates,
            "resumed_sets": self.resumed_sets,
        }
        outputs: dict[str, Any] = {"level4": LEVEL4_NAME, "level5": LEVEL5_NAME, "sig_info": SIG_INFO_NAME}
        if self.from_level2:
            outputs["censored"] = CENSORED_NAME
        if self.level2_files is not None:
            outputs["level2"] = {p: {k: os.path.relpath(v, self.out) for k, v in f.items()} for p, f in self.level2_files.items()}
        manifest_out = write_manifest(
            self.out,
            params=self.params,
            matrix=self.matrix,
            inst_info=self.inst_info,
            gene_info=self.gene_info,
            inference_model=self.inference_model,
            level1=self.level1_identity,
            outputs=outputs,
            counts=counts,
            seconds=time.perf_counter() - self.started,
        )
        if not self.keep_work:
            shutil.rmtree(work.root, ignore_errors=True)
        log.info("wrote %s, %s (%d signatures, %d CGS)", level4_out, level5_out, len(sig_info), n_cgs)
        return RunResult(
            out_dir=self.out,
            level4=level4_out,
            level5=level5_out,
            sig_info=sig_info_out,
            manifest=manifest_out,
            n_instances=self.plan.n_instances,
            n_plates=len(self.plan.plate_order),
            n_replicate_sets=len(self.plan.set_order),
            n_signatures=int(len(sig_info)),
            n_cgs=int(n_cgs),
            resumed_plates=self.resumed_plates,
            resumed_sets=self.resumed_sets,
        )


def run_pipeline(
    matrix: str | PathLike[str],
    out_dir: str | PathLike[str],
    *,
    inst_info: str | PathLike[str] | pd.DataFrame | None = None,
    gene_info: str | PathLike[str] | pd.DataFrame | None = None,
    params: PipelineParams | None = None,
    inference_model: str | PathLike[str] | None = None,
    plate_maps: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
    chip: str | PathLike[str] | None = None,
    seed: int = 0,
    work_dir: str | PathLike[str] | None = None,
    keep_work: bool = False,
    restart: bool = False,
    progress: ProgressCallback | None = None,
    backend: Backend | None = None,
) -> RunResult:
    """Process a Level 3 (or 4, 2, 1) input into Level 4, Level 5 and ``sig_info`` (resumable).

    Runs the steps of :class:`PipelineRun` in order (:data:`STEPS`).

    Parameters
    ----------
    matrix:
        GCTX (or GCT) of Level 3 profiles, genes × instances. GCTX inputs are read plate by plate;
        GCT text is read once (it is small by nature). With ``params.start_level = 1``: a folder
        of LXB files, see :func:`level1_plates` (one plate, or one sub-folder per plate).
    out_dir:
        Output folder (created). See the module docstring for the files.
    inst_info:
        Instance table (GEO ``inst_info``: ``inst_id`` + ``rna_plate``, ``pert_id``, ``pert_type``,
        ``cell_id``, ``pert_dose``, ``pert_time``, ...) as a path or DataFrame. Default: the
        matrix's own column metadata. Every matrix column must be in the table.
    gene_info:
        Gene table (``pr_gene_id``, ``pr_is_lm``, ...) adding row annotation, e.g. the landmark
        flag when the matrix rows lack it.
    params:
        Processing parameters (CMap defaults), every step's (:class:`PipelineParams`; the Level
        1 → 3 steps' are nested: ``dpeak``, ``flip``, ``liss``, ``censor``); all recorded in the
        manifest. The matrix is Level 3 by default; one that looks like Level 4 (see
        :mod:`opencmap.pipeline.levels`) is refused. ``params.start_level = 4``: the matrix is
        Level 4 (plate z-scores), collapsed into Level 5 without z-scoring (``level4.gctx`` is
        then a copy of it). ``params.start_level = 2``: the matrix is Level 2 GEX (one bead set,
        linear scale, with the invariant probes); each plate goes through
        :func:`level2_to_level3` first, censored wells are left out and listed in
        ``censored.txt``. ``params.start_level = 1``: ``matrix`` is a folder of LXB bead files;
        each detection plate is deconvolved (:func:`opencmap.pipeline.deconvolve.deconvolve_plate`),
        its Level 2 written to ``<out_dir>/level2/`` (CMap-style GEX/COUNT GCTX per plate and per
        bead set, bead QC) and its two bead sets LISS-scaled separately before censoring and QNORM.
    plate_maps, chip, seed:
        Level 1 only: plate map file(s) or a folder of ``.map`` files (default: ``.map`` files in
        the LXB folders), the chip file (default: the bundled ``L1000_EPSILON.R2.chip``) and the
        k-means seed of the deconvolution (recorded in the manifest; the same seed gives the same
        output).
    inference_model:
        With ``start_level`` 1 or 2: an inference model file
        (:func:`opencmap.pipeline.infer.save_inference_model`) to add inferred genes to Level 3.
    work_dir, keep_work, restart:
        Work folder (default ``<out_dir>/.opencmap-work``), keep it after success, or discard an
        earlier unfinished run instead of resuming it.
    progress:
        Called as ``progress(stage, done, total)``.
    backend:
        Where the work runs and with how many threads (:mod:`opencmap.backends`; default: this
        process). Outputs are identical whatever the backend.
    """
    options = {name: value for name, value in locals().items() if name in _RUN_OPTIONS}
    run = PipelineRun(matrix, out_dir, **options)
    run.deconvolve()
    run.reach_level3()
    run.zscore_and_collapse()
    run.build_cgs()
    return run.finish()


#: The options of :func:`run_pipeline` (and :class:`PipelineRun`) and their defaults.
_RUN_OPTIONS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(run_pipeline).parameters.items() if p.kind is p.KEYWORD_ONLY
}


# ------------------------------------------------------------------------------ helpers of the steps
def _warn_small_plate(plate: str, n_wells: int, *, stacklevel: int) -> None:
    """Warn that a plate of fewer than :data:`MIN_PLATE_WELLS` wells gives fragile z-scores."""
    if n_wells < MIN_PLATE_WELLS:
        warnings.warn(
            f"plate {plate} has only {n_wells} samples; its robust z-scores rest on few wells",
            OpenCMapWarning,
            stacklevel=stacklevel + 1,
        )


def _read_sig_info(path: Path) -> pd.DataFrame:
    return read_table(path, index_col="sig_id")


def _open_slots(
    work: WorkFolder, name: str, rows: pd.DataFrame, n_cols: int, *, resizable: bool, fresh: bool
) -> tuple[GCTXSlots, bool]:
    """The partial output ``name`` of the work folder: reopened when resuming, else created.

    Returns ``(slots, reopened)``; ``reopened`` is False when the file had to be made anew.
    """
    path = work.partial_path(name)
    if not fresh and path.exists():
        try:
            slots = GCTXSlots.open(path)
        except FormatError as exc:
            log.warning("%s cannot be reopened (%s); its finished work is redone", path, exc)
        else:
            n_rows, n = slots.shape
            if n_rows == len(rows) and (n == n_cols or (resizable and n >= n_cols)):
                if n != n_cols:
                    slots.resize(n_cols)
                return slots, True
            slots.close()
    return GCTXSlots.create(path, rows, n_cols, resizable=resizable), False


def _finish_output(work: WorkFolder, name: str, col_meta: pd.DataFrame, final: Path, *, keep: bool) -> None:
    """The partial output ``name``, with its column metadata, moved to ``final``; copied instead
    when the work folder is kept (``keep_work``), so a later run still resumes from it."""
    path = work.partial_path(name)
    if keep:
        copy = path.with_name(path.name + ".finishing")
        shutil.copyfile(path, copy)
        path = copy
    GCTXSlots.open(path).finish(col_meta, final)


def _plate_task(
    plates: MatrixPlates | WorkPlates,
    plate: str,
    plate_meta: pd.DataFrame,
    row_meta: pd.DataFrame,
    params: PipelineParams,
    positions: np.ndarray,
    out: np.ndarray,
    l4: GCTXSlots,
    start: int,
    backend: Backend,
) -> None:
    """Read one Level 3 plate, z-score it into ``out`` (``(genes, wells)`` float32), store it in Level 4.

    Level 4 input (``params.start_level == 4``) is already z-scored: copied as it is.
    """
    data = plates.read(plate, plate_meta, positions)
    if params.start_level == 4:
        out[...] = data
    else:
        # threads asked here, in the I/O thread that runs this task (the backend's rule, not the caller's)
        threads = backend.numba_threads()
        zscore_plate(GCT(data, row_meta=row_meta, col_meta=plate_meta), params, plate_id=plate, out=out, threads=threads)
    l4.write(start, out)


def _copy_slot(l4: GCTXSlots, start: int, out: np.ndarray) -> None:
    """A finished plate's Level 4 values, back from the work file (resumed runs)."""
    out[...] = l4.read(start, start + out.shape[1])


def _store_set(l5: GCTXSlots, start: int, consensus: np.ndarray, set_info: pd.DataFrame, info_path: Path) -> None:
    l5.write(start, consensus)
    write_table(set_info, info_path)


def _cgs_batches(groups: pd.DataFrame) -> list[tuple[int, int]]:
    """``(start, stop)`` rows of ``groups``: consecutive groups of at most :data:`CGS_BATCH` input
    signatures in all (a larger group alone)."""
    sizes = [len(ids) for ids in groups["sig_ids"]]
    batches = []
    start = 0
    while start < len(sizes):
        stop, n_batch = start, 0
        while stop < len(sizes) and (n_batch == 0 or n_batch + sizes[stop] <= CGS_BATCH):
            n_batch += sizes[stop]
            stop += 1
        batches.append((start, stop))
        start = stop
    return batches


def _read_columns(l5: GCTXSlots, cols: np.ndarray, rows: pd.DataFrame, ids: pd.Index) -> GCT:
    """Columns ``cols`` of a work file, in that order (contiguous runs read at once)."""
    order = np.argsort(cols, kind="stable")
    data = np.empty((len(rows), len(cols)), dtype=np.float32)
    sorted_cols = cols[order]
    runs = np.flatnonzero(np.diff(sorted_cols) != 1) + 1
    for a, b in zip(np.r_[0, runs].tolist(), np.r_[runs, len(cols)].tolist()):
        data[:, order[a:b]] = l5.read(int(sorted_cols[a]), int(sorted_cols[b - 1]) + 1)
    return GCT(data, row_meta=rows, col_meta=pd.DataFrame(index=ids))


class _IOWorker:
    """One worker thread for the file reads, writes and plate z-scoring of
    :meth:`PipelineRun.zscore_and_collapse`.

    Tasks run in the order given. A write carries the progress mark it earns; :meth:`settle`
    records (:meth:`WorkFolder.pend`) the marks of the writes finished so far, in order.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opencmap-io")
        self._writes: list[tuple[Future[Any], str]] = []

    def read(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def write(self, key: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._pool.submit(fn, *args)
        self._writes.append((future, key))
        return future

    def settle(self, work: WorkFolder, *, wait: bool = False) -> None:
        while self._writes and (wait or self._writes[0][0].done()):
            future, key = self._writes.pop(0)
            future.result()  # a failed write raises here
            work.pend(key)

    def close(self, work: WorkFolder, *, quiet: bool = False) -> None:
        """Finish every task (queued writes too: they are a set's work at most), record the marks;
        ``quiet``: after an error elsewhere, record what succeeded and raise nothing."""
        self._pool.shutdown(wait=True)
        if not quiet:
            self.settle(work, wait=True)
            return
        for future, key in self._writes:
            if future.cancelled() or future.exception() is not None:
                break  # marks stay in order: nothing after a failed write counts
            work.pend(key)
        self._writes = []
