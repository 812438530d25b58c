"""The shared runner: Level 3 (or 2) GCTX + instance table → Level 4, Level 5, ``sig_info``, manifest.

Work is done **replicate set by replicate set** (plates sharing a prefix such as
``ABC001_A375_6H`` for ``_X1``, ``_X2``, ``_X3``; see :mod:`opencmap.pipeline.params`), so memory
holds a few replicate sets' plates at a time, whatever the size of the compendium.

From **Level 3** (:func:`_run_slots`): the Level 4 and Level 5 matrices are allocated at their
final size in the work folder (each plate's and each replicate set's columns known from the
instance table), so every value is written once, in place, and the finished files are moved,
not copied:

1. for each plate of the set: read only its values (:meth:`~opencmap.io.GCTXFile.read_matrix`),
   z-score it (:func:`~opencmap.pipeline.zscore.zscore_plate`) into a reused set buffer and store
   it at its Level 4 columns;
2. collapse the set's replicates (:func:`~opencmap.pipeline.signatures.build_signatures`) and
   store its signatures at their Level 5 columns, its ``sig_info`` rows in the work folder;
3. after all sets: consensus gene signatures (:mod:`~opencmap.pipeline.cgs`) from the Level 5
   work file, appended to it; exemplar flags over the whole output; column metadata; move.

Reads of the next set and writes of the last one run in a background thread (HDF5 I/O releases
the GIL), overlapping with computing. From **Level 1/2** (LISS, censoring: column counts are known
only after each plate), per-plate Level 4 and per-set Level 5 work files are assembled at the end.

**Resumable.** Every finished plate / set is recorded in the work folder's done-list, only after
its values were handed to the operating system (and, every :data:`CHECKPOINT_SECONDS`, put on
disk with ``fsync``, in the background); an interrupted run started again with the same inputs
and parameters skips what is done (a partial output that cannot be reopened is redone). The work
folder (``<out>/.opencmap-work`` by default) is removed after a successful run unless
``keep_work=True``. Resuming with different inputs or parameters is refused
(:class:`~opencmap.errors.ConfigError`); pass ``restart=True`` to start over.

Outputs in ``out_dir``: ``level4.gctx`` (genes × instances, robust z-scores), ``level5.gctx``
(genes × signatures, column metadata = ``sig_info``), ``sig_info.txt`` and ``manifest.json``
(parameters, inputs, versions, counts, timings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap import __version__
from opencmap.backends import Backend, resolve_backend
from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, FormatError, OpenCMapWarning, PipelineError
from opencmap.io import GCTXFile, GCTXWriter, is_gctx, read_gct, read_meta, read_table, write_gctx, write_table
from opencmap.io.atomic import atomic_write_path
from opencmap.io.decompress import resolve_gzipped_gctx
from opencmap.io.gctx import GCTXSlots
from opencmap.io.versions import check_format_version
from opencmap.pipeline.cgs import cgs_groups, consensus_gene_signatures
from opencmap.pipeline.levels import check_input_level
from opencmap.pipeline.modz import landmark_positions
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.qc import exemplar_flags
from opencmap.pipeline.signatures import build_signatures, check_group_fields, group_instances, replicate_sets
from opencmap.pipeline.zscore import zscore_plate

__all__ = ["RunResult", "ProgressCallback", "Level1Plate", "level1_plates", "run_pipeline", "level2_to_level3", "MANIFEST_VERSION"]

log = logging.getLogger(__name__)

#: ``progress(stage, done, total)``; stages: ``"level 1"`` (deconvolution, from Level 1 only),
#: ``"plates"``, ``"replicate sets"``, ``"cgs"``, ``"write"``.
ProgressCallback = Callable[[str, int, int], None]

#: Format version of ``manifest.json`` and of the work folder's state.
MANIFEST_VERSION = 1
LEVEL4_NAME = "level4.gctx"
LEVEL5_NAME = "level5.gctx"
SIG_INFO_NAME = "sig_info.txt"
CENSORED_NAME = "censored.txt"
LEVEL2_NAME = "level2"
MANIFEST_NAME = "manifest.json"
WORK_NAME = ".opencmap-work"
#: Signatures read at once when building consensus gene signatures.
CGS_BATCH = 2000
#: Plates with fewer wells get a warning: their robust z-scores rest on few samples.
MIN_PLATE_WELLS = 10
#: Work-folder layout of a Level 3 run (outputs filled in place; see :func:`_run_slots`).
SLOTS_LAYOUT = 2
#: Seconds between durable checkpoints (fsync of the partial outputs, then of the done-list).
CHECKPOINT_SECONDS = 30.0


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


# ---------------------------------------------------------------------------------------- inputs
def _read_inst_info(inst_info: str | PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(inst_info, pd.DataFrame):
        frame = inst_info.copy()
        if "inst_id" in frame.columns:
            frame = frame.set_index("inst_id")
    else:
        frame = read_table(inst_info)
        # GEO inst_info: inst_id; LINCS 2020 instinfo_beta: sample_id (never "the first column")
        key = next((k for k in ("inst_id", "sample_id") if k in frame.columns), None)
        if key is None:
            raise FormatError(
                f"instance table without an id column (inst_id, or sample_id in LINCS 2020 instinfo_beta); "
                f"columns found: {[str(c) for c in frame.columns[:25]]}",
                path=inst_info,
            )
        ids = frame[key].astype("str")
        if ids.duplicated().any():
            raise PipelineError(f"{inst_info}: repeated instance ids {ids[ids.duplicated()].unique()[:5].tolist()}")
        frame = frame.drop(columns=[key])
        frame.index = pd.Index(ids.to_numpy(), dtype=object)
    frame.index = pd.Index([str(i) for i in frame.index], dtype=object, name="cid")
    return frame


def _instance_metadata(matrix: Path, inst_info: str | PathLike[str] | pd.DataFrame | None) -> pd.DataFrame:
    """Column metadata of the run: the matrix's own, overridden/extended by ``inst_info``."""
    return _merge_inst_info(read_meta(matrix, "col"), inst_info)


def _merge_inst_info(col_meta: pd.DataFrame, inst_info: str | PathLike[str] | pd.DataFrame | None) -> pd.DataFrame:
    if inst_info is None:
        return col_meta
    table = _read_inst_info(inst_info)
    cids = col_meta.index
    missing = cids.difference(table.index, sort=False)
    if len(missing):
        where = inst_info if not isinstance(inst_info, pd.DataFrame) else "the instance table"
        raise PipelineError(
            f"{len(missing)} of the {len(cids)} matrix columns are not in {where}, e.g. "
            f"{missing[:5].tolist()}; the instance table must describe every column (ids compared as strings)"
        )
    extra = len(table) - len(cids)
    if extra > 0:
        log.info("instance table describes %d instances not in the matrix; they are ignored", extra)
    meta = table.loc[cids]
    for field in col_meta.columns:
        if field not in meta.columns:
            meta[field] = col_meta[field].to_numpy()
    return meta


def _row_metadata(matrix: Path, gene_info: str | PathLike[str] | pd.DataFrame | None) -> pd.DataFrame:
    return _merge_gene_info(read_meta(matrix, "row"), gene_info)


def _merge_gene_info(row_meta: pd.DataFrame, gene_info: str | PathLike[str] | pd.DataFrame | None) -> pd.DataFrame:
    if gene_info is None:
        return row_meta
    from opencmap.io.releases import canonical_genes

    raw = gene_info if isinstance(gene_info, pd.DataFrame) else read_table(gene_info)
    # GEO gene_info (pr_gene_id) or LINCS 2020 geneinfo_beta (gene_id, feature_space); never row numbers
    genes = canonical_genes(raw, source=None if isinstance(gene_info, pd.DataFrame) else gene_info).set_index("pr_gene_id")
    if "feature_space" not in raw.columns:
        genes = genes.drop(columns="feature_space")
    genes.index = pd.Index([str(i) for i in genes.index], dtype=object)
    known = row_meta.index.intersection(genes.index)
    if len(known) == 0:
        raise PipelineError(
            "none of the matrix row ids are in the gene table's pr_gene_id column; "
            "the rows must be Entrez gene ids matching the gene table"
        )
    added = genes.reindex(row_meta.index)
    for field in added.columns:
        if field not in row_meta.columns:
            row_meta[field] = added[field].to_numpy()
    return row_meta


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
    return f"{stem}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _versions() -> dict[str, str]:
    import h5py
    import scipy

    return {
        "opencmap": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "h5py": h5py.__version__,
    }


# ------------------------------------------------------------------------------------ work folder
class _WorkState:
    """The work folder: run identity, done-list, per-plate and per-set results."""

    def __init__(self, root: Path, identity: dict[str, Any], *, restart: bool) -> None:
        self.root = root
        if restart and root.exists():
            shutil.rmtree(root)
        (root / "level4").mkdir(parents=True, exist_ok=True)
        (root / "level5").mkdir(parents=True, exist_ok=True)
        self.identity_path = root / "run.json"
        self.done_path = root / "done.txt"
        if self.identity_path.exists():
            stored = json.loads(self.identity_path.read_text())
            check_format_version(
                stored.get("format_version", 0), MANIFEST_VERSION, what="pipeline work folder", path=self.identity_path,
                fix="upgrade opencmap or remove that folder", also=ConfigError,
            )  # fmt: skip
            if stored.get("identity") != identity:
                raise ConfigError(
                    f"the work folder {root} belongs to a run with different inputs or parameters; "
                    "start over with restart=True (--restart) or use another output folder"
                )
        else:
            with atomic_write_path(self.identity_path) as tmp:
                tmp.write_text(json.dumps({"format_version": MANIFEST_VERSION, "identity": identity}, indent=1))
        self._pending: list[str] = []
        self._last_sync = time.monotonic()
        self._syncer: threading.Thread | None = None
        self._sync_error: BaseException | None = None
        self.done: set[str] = set()
        if self.done_path.exists():
            self.done = {line for line in self.done_path.read_text().splitlines() if line}

    def level4_path(self, plate: str) -> Path:
        return self.root / "level4" / f"{_safe_name(plate)}.gctx"

    def censor_path(self, plate: str) -> Path:
        return self.root / "level4" / f"{_safe_name(plate)}.censored.txt"

    def level5_path(self, set_name: str) -> Path:
        return self.root / "level5" / f"{_safe_name(set_name)}.gctx"

    def sig_info_path(self, set_name: str) -> Path:
        return self.root / "level5" / f"{_safe_name(set_name)}.sig_info.txt"

    @property
    def cgs_path(self) -> Path:
        return self.root / "cgs.gctx"

    def is_done(self, key: str, *files: Path) -> bool:
        return key in self.done and all(f.exists() for f in files)

    def mark_done(self, key: str) -> None:
        self._append([key], sync=True)
        self.done.add(key)

    def fresh(self, *prefixes: str) -> bool:
        """No mark starting with one of ``prefixes`` is recorded yet."""
        return not any(key.startswith(prefixes) for key in self.done)

    # -- checkpointed marks (Level 3 runs): a mark reaches done.txt only after the data it
    #    vouches for was handed to the OS (interruption) or put on disk (periodic checkpoint)
    def pend(self, key: str) -> None:
        """Record ``key`` as done at the next :meth:`checkpoint`."""
        self._pending.append(key)
        self.done.add(key)

    def _append(self, keys: list[str], *, sync: bool) -> None:
        if keys:
            with open(self.done_path, "a", encoding="utf-8") as fh:
                fh.write("".join(k + "\n" for k in keys))
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())

    def checkpoint(self, files: Sequence[Any]) -> None:
        """Every :data:`CHECKPOINT_SECONDS`: put ``files`` (:class:`GCTXSlots`) and then the pending
        marks on disk (``fsync``), in a background thread so computing goes on meanwhile.

        A mark never reaches the disk before the values it vouches for, so even a power cut
        cannot leave a done-list that promises values the files lack.
        """
        keys = self._pending
        if not keys or time.monotonic() - self._last_sync < CHECKPOINT_SECONDS:
            return
        self.wait()
        for f in files:
            f.flush()
        self._pending = []
        self._last_sync = time.monotonic()
        paths = [f.path for f in files]

        def durable() -> None:
            try:
                for path in paths:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                self._append(keys, sync=True)
            except BaseException as exc:  # noqa: BLE001 - reported by wait()
                self._sync_error = exc

        self._syncer = threading.Thread(target=durable, name="opencmap-checkpoint", daemon=True)
        self._syncer.start()

    def record(self, files: Sequence[Any], *, quiet: bool = False) -> None:
        """Hand ``files`` to the operating system, then write every pending mark (no ``fsync``:
        what the OS holds survives the end or interruption of this process).

        ``quiet``: after an interruption, an error of a background checkpoint is not raised.
        """
        try:
            self.wait()
        except PipelineError:
            if not quiet:
                raise
        for f in files:
            f.flush()
        keys, self._pending = self._pending, []
        self._append(keys, sync=False)

    def wait(self) -> None:
        """Wait for a background checkpoint; re-raise its error."""
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        self._raise_sync_error()

    def _raise_sync_error(self) -> None:
        if self._sync_error is not None:
            exc, self._sync_error = self._sync_error, None
            raise PipelineError(f"cannot record progress in {self.done_path}: {exc}") from exc

    def forget(self) -> None:
        """Drop every mark (the partial outputs were lost): the run starts over."""
        self.wait()
        self.done.clear()
        self._pending = []
        with atomic_write_path(self.done_path) as tmp:
            tmp.write_text("")


# ------------------------------------------------------------------------------------ Level 2 -> 3
def level2_to_level3(plate: GCT | Mapping[str, GCT], *, inference_model: Any | None = None) -> tuple[GCT, pd.DataFrame]:
    """Level 2 GEX of one plate → Level 3: LISS, censoring, QNORM (and inference if a model is given).

    ``plate`` is one bead-set matrix (linear scale; gene rows plus the invariant probes
    ``CAL01``..``CAL10``) or, as deconvolution gives it, a mapping ``bead set -> matrix``
    (``Level2.bead_sets``: each bead set is LISS-scaled against its own invariant probes, whose
    ids repeat across sets). Returns the Level 3 plate (censored wells removed) and the censoring
    report of :func:`opencmap.pipeline.censor.censor_plate` (one row per input well).
    """
    from opencmap.pipeline.censor import censor_plate
    from opencmap.pipeline.liss import liss_plate
    from opencmap.pipeline.qnorm import qnorm_plate

    norm, qc = liss_plate(plate)
    kept, report = censor_plate(norm, qc)
    level3 = qnorm_plate(kept)
    if inference_model is not None:
        from opencmap.pipeline.infer import apply_inference

        level3 = apply_inference(level3, inference_model)
    return level3, report


# ------------------------------------------------------------------------------------ Level 1 -> 2
_LXB_PREFIX_RE = re.compile(r"[_\-.]?[A-Za-z]{1,2}\d{1,3}\.lxb$", re.IGNORECASE)


@dataclass(frozen=True)
class Level1Plate:
    """One detection plate of Level 1 input: its LXB files and plate map."""

    name: str
    files: tuple[Path, ...]
    plate_map: Path

    def identity(self) -> dict[str, Any]:
        """What a resumed run compares: the files (count, bytes, newest change) and the map."""
        stats = [f.stat() for f in self.files]
        return {
            "plate": self.name,
            "n_files": len(stats),
            "bytes": int(sum(st.st_size for st in stats)),
            "mtime_ns": int(max(st.st_mtime_ns for st in stats)),
            "plate_map": _fingerprint(self.plate_map),
        }


def _lxb_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".lxb")


def _map_files(entries: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            found.extend(sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() == ".map"))
        elif entry.is_file():
            found.append(entry)
        else:
            raise PipelineError(f"plate map {entry} does not exist")
    return found


def level1_plates(
    source: str | PathLike[str],
    plate_maps: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
) -> list[Level1Plate]:
    """Find the detection plates of a Level 1 folder and pair each with its plate map.

    Layouts:

    * ``source`` holds ``*.lxb`` files: one plate;
    * ``source`` holds one sub-folder of ``*.lxb`` files per plate (CMap's ``lxb/<det_plate>/``).

    A plate is named by the common prefix of its file names (``<plate>_<well>.lxb``), else by its
    folder. ``plate_maps`` are ``.map`` files and/or folders of them (CMap's ``map/``); default:
    the ``.map`` files in ``source`` and in the plate folders. A map belongs to the plate whose
    name (or folder name) equals the map's file stem or its ``det_plate`` value; a single plate
    with a single map are paired whatever their names.

    Raises
    ------
    PipelineError
        No LXB files, LXB files mixed with plate folders, or a plate without a map.
    """
    from opencmap.io.beads import read_plate_map

    root = Path(source)
    if not root.is_dir():
        raise PipelineError(f"{root} is not a folder of LXB files")
    direct = _lxb_files(root)
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _lxb_files(d)]
    if direct and subdirs:
        raise PipelineError(
            f"{root} holds both .lxb files and plate folders ({subdirs[0].name}, ...); "
            "put one plate's files in a folder, or one folder per plate"
        )
    if not direct and not subdirs:
        raise PipelineError(f"no .lxb files in {root} or its sub-folders; point to a plate folder or a folder of plate folders")
    groups = [(root, direct)] if direct else [(d, _lxb_files(d)) for d in subdirs]
    if plate_maps is None:
        entries = [root, *subdirs]
    elif isinstance(plate_maps, (str, PathLike)):
        entries = [Path(plate_maps)]
    else:
        entries = [Path(m) for m in plate_maps]
    maps = _map_files(entries)
    keys: dict[str, list[Path]] = {}
    for m in maps:
        names = {m.stem}
        pmap = read_plate_map(m)
        if "det_plate" in pmap.columns:
            names.update(str(v) for v in pmap["det_plate"].dropna().astype(str).unique() if v not in ("", "-666"))
        for n in names:
            keys.setdefault(n, []).append(m)
    plates: list[Level1Plate] = []
    for folder, files in groups:
        prefixes = {_LXB_PREFIX_RE.sub("", f.name) for f in files}
        name = next(iter(prefixes)) if len(prefixes) == 1 and next(iter(prefixes)) else folder.name
        candidates = list(dict.fromkeys(keys.get(name, []) + keys.get(folder.name, [])))
        if not candidates and len(groups) == 1 and len(maps) == 1:
            candidates = maps
        if len(candidates) != 1:
            what = "no plate map" if not candidates else f"{len(candidates)} plate maps ({', '.join(c.name for c in candidates)})"
            raise PipelineError(
                f"plate {name} ({folder}) has {what}; give one map per plate named <plate>.map or with a "
                f"det_plate column (--plate-map FILE or FOLDER; maps found: {[m.name for m in maps][:10]})"
            )
        plates.append(Level1Plate(name, tuple(files), candidates[0]))
    names = [p.name for p in plates]
    if len(set(names)) != len(names):
        raise PipelineError(f"detection plate names repeat: {sorted({n for n in names if names.count(n) > 1})[:5]}")
    return plates


def _deconvolve_plates(
    plates: Sequence[Level1Plate],
    folder: Path,
    state: _WorkState,
    *,
    chip: Path | None,
    seed: int,
    report: ProgressCallback,
) -> dict[str, dict[str, Path]]:
    """Level 1 → 2 for every plate (resumable): Level 2 files in ``folder``, paths by plate."""
    from opencmap.io.beads import read_chip
    from opencmap.pipeline.deconvolve import deconvolve_plate, write_level2

    chip_table = read_chip(chip) if chip is not None else None
    records = state.root / LEVEL2_NAME
    records.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Path]] = {}
    report("level 1", 0, len(plates))
    for i, plate in enumerate(plates):
        record = records / f"{_safe_name(plate.name)}.json"
        if state.is_done(f"level2\t{plate.name}", record):
            paths = {k: Path(v) for k, v in json.loads(record.read_text()).items()}
            if all(p.exists() for p in paths.values()):
                files[plate.name] = paths
                report("level 1", i + 1, len(plates))
                continue
        log.info("deconvolving plate %s (%d LXB files)", plate.name, len(plate.files))
        level2 = deconvolve_plate(plate.files, plate.plate_map, seed=seed, chip=chip_table, plate=plate.name)
        paths = write_level2(level2, folder, plate=plate.name)
        with atomic_write_path(record) as tmp:
            tmp.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
        state.mark_done(f"level2\t{plate.name}")
        files[plate.name] = paths
        report("level 1", i + 1, len(plates))
    return files


def _level1_instances(level2_files: Mapping[str, Mapping[str, Path]]) -> pd.DataFrame:
    """Instances of the deconvolved plates: the Level 2 column metadata (plate map + bead QC)."""
    metas = []
    for plate, paths in level2_files.items():
        meta = read_meta(paths["gex"], "col")
        if "rna_plate" not in meta.columns:
            meta["rna_plate"] = plate  # no RNA plate in the map: z-score by detection plate
        metas.append(meta)
    return pd.concat(metas, axis=0)


def _level2_files_to_level3(
    plate_meta: pd.DataFrame,
    level2_files: Mapping[str, Mapping[str, Path]],
    model: Any | None,
    genes_table: pd.DataFrame | None,
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
        level3, report = level2_to_level3(bead_sets, inference_model=model)
        parts.append(level3)
        reports.append(report)
    rows = parts[0].row_meta.copy()
    if any(not p.rids.equals(rows.index) for p in parts[1:]):
        raise PipelineError("detection plates of one RNA plate have different genes; were they read with different chips?")
    if "pr_is_lm" not in rows.columns and "pr_type" in rows.columns:
        rows["pr_is_lm"] = (rows["pr_type"].astype("str") == "LM").astype(np.int64).to_numpy()
    rows = _merge_gene_info(rows, genes_table)
    return _concat_columns(parts, rows), pd.concat(reports, axis=0)


# ------------------------------------------------------------------------------------------ runner
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
    """Process a Level 3 (or Level 2) matrix into Level 4, Level 5 and ``sig_info`` (resumable).

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
        Processing parameters (CMap defaults). The matrix is Level 3 by default; one that looks
        like Level 4 (see :mod:`opencmap.pipeline.levels`) is refused. ``params.start_level = 4``:
        the matrix is Level 4 (plate z-scores), collapsed into Level 5 without z-scoring
        (``level4.gctx`` is then a copy of it). ``params.start_level = 2``: the matrix is Level 2
        GEX (one bead set, linear scale, with the invariant probes); each plate goes through
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
    params = params or PipelineParams()
    backend = resolve_backend(backend)
    started = time.perf_counter()
    matrix = Path(matrix)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda stage, done, total: None)

    from_level1 = params.start_level == 1
    from_level2 = params.start_level <= 2  # LISS, censoring and QNORM run
    if from_level1:
        if not matrix.is_dir():
            raise PipelineError(f"{matrix}: Level 1 input is a folder of LXB files (or of plate folders), not a file")
        bead_plates = level1_plates(matrix, plate_maps)
        chip_path = Path(chip) if chip is not None else None
        level1_identity = {
            "plates": [p.identity() for p in bead_plates],
            "chip": _fingerprint(chip_path) if chip_path is not None else "bundled",
            "seed": int(seed),
        }
        identity: dict[str, Any] = {
            "level1": level1_identity,
            "inst_info": _fingerprint(Path(inst_info)) if isinstance(inst_info, (str, PathLike)) else None,
            "inference_model": _fingerprint(Path(inference_model)) if inference_model is not None else None,
            "params": params.to_dict(),
        }
        state = _WorkState(Path(work_dir) if work_dir else out / WORK_NAME, identity, restart=restart)
        level2_files = _deconvolve_plates(bead_plates, out / LEVEL2_NAME, state, chip=chip_path, seed=int(seed), report=report)
        col_meta = _merge_inst_info(_level1_instances(level2_files), inst_info)
        row_meta = pd.DataFrame(index=pd.Index([], dtype=object))  # Level 3 rows come from the first plate
        genes_table = gene_info if isinstance(gene_info, pd.DataFrame) or gene_info is None else read_table(gene_info)
    else:
        if matrix.is_dir():
            raise PipelineError(f"{matrix} is a folder; Level {params.start_level} input is one GCTX/GCT matrix (LXB folders need start level 1)")
        matrix = resolve_gzipped_gctx(matrix)  # .gctx.gz as GEO serves it: read from a decompressed copy
        col_meta = _instance_metadata(matrix, inst_info)
        row_meta = _row_metadata(matrix, gene_info)
        level2_files = None
        genes_table = None
    model = None
    if from_level2 and inference_model is not None:
        from opencmap.pipeline.infer import load_inference_model

        model = load_inference_model(inference_model)
    # Level 3 rows: the input's, or (from Level 2) those of the first processed plate
    out_rows: pd.DataFrame | None = None if from_level2 else row_meta
    landmarks = None if from_level2 else landmark_positions(row_meta, params)
    check_group_fields(col_meta, params)
    sets = replicate_sets(col_meta, params)
    plates = col_meta["rna_plate"].astype("str")
    plate_positions = plates.groupby(plates.to_numpy(), sort=False).indices  # column positions in the matrix
    plate_order = list(pd.unique(plates))  # first appearance = the matrix's column order
    pairs = pd.DataFrame({"set": sets.to_numpy(), "plate": plates.to_numpy()}).drop_duplicates()
    set_plates = {s: list(group["plate"]) for s, group in pairs.groupby("set", sort=False)}
    set_order = list(pd.unique(sets))
    log.info("%d instances on %d plates in %d replicate sets; %d input rows", len(col_meta), len(plate_order), len(set_order), len(row_meta))

    if not from_level1:
        identity = {
            "matrix": _fingerprint(matrix),
            "inst_info": _fingerprint(Path(inst_info)) if isinstance(inst_info, (str, PathLike)) else None,
            "inference_model": _fingerprint(Path(inference_model)) if inference_model is not None else None,
            "n_instances": len(col_meta),
            "params": params.to_dict(),
            **({"layout": SLOTS_LAYOUT} if not from_level2 else {}),
        }
        state = _WorkState(Path(work_dir) if work_dir else out / WORK_NAME, identity, restart=restart)
    whole = None if from_level1 or is_gctx(matrix) else read_gct(matrix)  # text GCT: parse once
    resumed_plates = resumed_sets = 0
    plates_done = 0
    report("plates", 0, len(plate_order))

    level4_out, level5_out = out / LEVEL4_NAME, out / LEVEL5_NAME
    if not from_level2:  # Level 3 (or 4) input: outputs filled in place, no per-plate work files
        reader = GCTXFile(matrix) if whole is None else None  # opened once for all plates
        try:
            # Level 4 given as Level 3 would be z-scored twice: judged on one whole plate
            first = plate_order[0]
            sample = _read_plate(whole, reader, col_meta.iloc[plate_positions[first]], row_meta, plate_positions[first])
            check_input_level(sample, params.start_level, where=f"{matrix} (plate {first})")
            del sample
            full_info, sig_info, n_cgs, resumed_plates, resumed_sets = _run_slots(
                whole, reader, col_meta, row_meta, landmarks, plate_order, plate_positions, set_order, set_plates,
                params, state, report, level4_out, level5_out, backend=backend,
            )
        finally:
            if reader is not None:
                reader.close()
    else:
        # A fresh run whose plates come set by set in the final order writes Level 4 straight into its
        # final file as plates are z-scored (the per-plate work files stay, for resuming): no read-back.
        processing_order = [p for s in set_order for p in set_plates[s]]
        fresh = state.fresh("plate\t", "set\t")
        level4_stream = fresh and processing_order == plate_order
        level4_writer: GCTXWriter | None = None
        reader = GCTXFile(matrix) if not from_level1 and whole is None else None  # opened once for all plates
        try:
            for si, set_name in enumerate(set_order):
                l5_path, info_path = state.level5_path(set_name), state.sig_info_path(set_name)
                set_is_done = state.is_done(f"set\t{set_name}", l5_path, info_path)
                blocks: list[GCT] = []
                for plate in set_plates[set_name]:
                    l4_path = state.level4_path(plate)
                    if state.is_done(f"plate\t{plate}", l4_path):
                        resumed_plates += 1
                        block = read_gct(l4_path, meta_only=set_is_done)
                    else:
                        positions = plate_positions[plate]
                        block = _process_plate(
                            whole, reader, plate, col_meta.iloc[positions], row_meta, params, state, model, positions,
                            level2_files=level2_files, genes_table=genes_table, backend=backend,
                        )
                    if out_rows is None:
                        out_rows = block.row_meta
                        landmarks = landmark_positions(out_rows, params)
                    elif not block.rids.equals(out_rows.index):
                        raise PipelineError(f"plate {plate}: its Level 3 genes differ from the first plate's; all plates must share one gene space")
                    if level4_stream:
                        if level4_writer is None:
                            level4_writer = GCTXWriter(level4_out, out_rows)
                        level4_writer.append(block.data, col_meta.loc[block.cids])
                    if not set_is_done:
                        blocks.append(block)
                    plates_done += 1
                    report("plates", plates_done, len(plate_order))
                if set_is_done:
                    resumed_sets += 1
                else:
                    level4 = _concat_columns(blocks, out_rows)
                    level5, sig_info = build_signatures(level4, params, landmark_rows=landmarks, threads=backend.numba_threads())
                    write_gctx(level5, l5_path)
                    write_table(sig_info, info_path)
                    state.mark_done(f"set\t{set_name}")
                del blocks
                report("replicate sets", si + 1, len(set_order))
        except BaseException:
            if level4_writer is not None:
                level4_writer.abort()
            raise
        finally:
            if reader is not None:
                reader.close()
        if level4_writer is not None:
            level4_writer.close()

        # -------------------------------------------------------------- signature table and CGS
        sig_info = pd.concat([_read_sig_info(state.sig_info_path(s)) for s in set_order], axis=0)
        n_cgs = 0
        cgs_info = None
        if params.cgs:
            cgs_info = _build_cgs(sig_info, set_order, out_rows, landmarks, params, state, report, backend)
            n_cgs = len(cgs_info)
        full_info = pd.concat([sig_info, cgs_info], axis=0) if n_cgs else sig_info
        full_info["is_exemplar_sig"] = exemplar_flags(full_info).to_numpy()
        full_info.index.name = "sig_id"

        # -------------------------------------------------------------- final files
        level4_parts = [state.level4_path(p) for p in plate_order]
        level5_parts = [state.level5_path(s) for s in set_order] + ([state.cgs_path] if n_cgs else [])
        total_blocks = len(level4_parts) + len(level5_parts)
        written = 0
        outputs = [(level5_out, level5_parts, full_info)]
        if level4_writer is None:  # not streamed above: assemble from the per-plate work files
            outputs.insert(0, (level4_out, level4_parts, col_meta))
        else:
            written = len(level4_parts)
        for target, parts, meta in outputs:
            with GCTXWriter(target, out_rows) as writer:  # one block in memory at a time
                for part in parts:
                    block = read_gct(part)
                    writer.append(block.data, meta.loc[block.cids])
                    written += 1
                    report("write", written, total_blocks)
    sig_info_out = out / SIG_INFO_NAME
    write_table(full_info, sig_info_out)
    n_censored = 0
    if from_level2:
        censored = pd.concat([read_table(state.censor_path(p), index_col="inst_id") for p in plate_order], axis=0)
        censored = censored[censored["censored"].astype(bool)]
        n_censored = len(censored)
        write_table(censored, out / CENSORED_NAME)

    manifest_out = out / MANIFEST_NAME
    manifest = {
        "format_version": MANIFEST_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "inputs": {
            "matrix": _fingerprint(matrix),
            "inst_info": identity["inst_info"] or ("DataFrame" if isinstance(inst_info, pd.DataFrame) else None),
            "gene_info": str(gene_info) if isinstance(gene_info, (str, PathLike)) else None,
            "inference_model": identity["inference_model"],
            **({"level1": level1_identity} if from_level1 else {}),
        },
        "params": params.to_dict(),
        "replicate_grouping": {
            "replicate_set": f"rna_plate matched by {params.replicate_set_pattern!r}",
            "group_by": list(params.group_by),
        },
        "outputs": {
            "level4": LEVEL4_NAME,
            "level5": LEVEL5_NAME,
            "sig_info": SIG_INFO_NAME,
            **({"censored": CENSORED_NAME} if from_level2 else {}),
            **({"level2": {p: {k: os.path.relpath(v, out) for k, v in f.items()} for p, f in level2_files.items()}} if from_level1 else {}),
        },
        "counts": {
            "genes": len(out_rows),
            "landmarks": int(len(landmarks)),
            "instances": len(col_meta),
            "censored_instances": n_censored,
            **({"detection_plates": len(level2_files)} if from_level1 else {}),
            "plates": len(plate_order),
            "replicate_sets": len(set_order),
            "signatures": int(len(sig_info)),
            "cgs": int(n_cgs),
            "resumed_plates": resumed_plates,
            "resumed_sets": resumed_sets,
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
    with atomic_write_path(manifest_out) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    if not keep_work:
        shutil.rmtree(state.root, ignore_errors=True)
    log.info("wrote %s, %s (%d signatures, %d CGS)", level4_out, level5_out, len(sig_info), n_cgs)
    return RunResult(
        out_dir=out,
        level4=level4_out,
        level5=level5_out,
        sig_info=sig_info_out,
        manifest=manifest_out,
        n_instances=len(col_meta),
        n_plates=len(plate_order),
        n_replicate_sets=len(set_order),
        n_signatures=int(len(sig_info)),
        n_cgs=int(n_cgs),
        resumed_plates=resumed_plates,
        resumed_sets=resumed_sets,
    )


def _warn_small_plate(plate: str, n_wells: int, *, stacklevel: int) -> None:
    """Warn that a plate of fewer than :data:`MIN_PLATE_WELLS` wells gives fragile z-scores."""
    if n_wells < MIN_PLATE_WELLS:
        warnings.warn(
            f"plate {plate} has only {n_wells} samples; its robust z-scores rest on few wells",
            OpenCMapWarning,
            stacklevel=stacklevel + 1,
        )


def _process_plate(
    whole: GCT | None,
    reader: GCTXFile | None,
    plate: str,
    plate_meta: pd.DataFrame,
    row_meta: pd.DataFrame,
    params: PipelineParams,
    state: _WorkState,
    model: Any | None,
    positions: np.ndarray,
    *,
    level2_files: Mapping[str, Mapping[str, Path]] | None = None,
    genes_table: pd.DataFrame | None = None,
    backend: Backend,
) -> GCT:
    """Read one plate's columns, (Level 1/2 → 3,) z-score, save its Level 4 block and mark it done.

    ``positions`` are the plate's column positions in the matrix, read from ``whole`` (a parsed
    text GCT) or ``reader`` (the GCTX kept open across plates); see :func:`_read_plate`.
    """
    _warn_small_plate(plate, len(plate_meta), stacklevel=3)
    if params.start_level == 1:
        if level2_files is None:
            raise PipelineError(f"plate {plate}: Level 1 processing needs the deconvolved Level 2 files")
        plate_gct, censor_report = _level2_files_to_level3(plate_meta, level2_files, model, genes_table)
    else:
        data = _read_plate(whole, reader, plate_meta, row_meta, positions)
        plate_gct = GCT(data, row_meta=row_meta, col_meta=plate_meta)
        if params.start_level == 2:
            plate_gct, censor_report = level2_to_level3(plate_gct, inference_model=model)
    if params.start_level <= 2:
        if plate_gct.shape[1] == 0:
            raise PipelineError(f"plate {plate}: every well was censored after LISS; check its Level 2 data")
        write_table(censor_report.rename_axis("inst_id"), state.censor_path(plate))
    level4 = zscore_plate(plate_gct, params, plate_id=plate, threads=backend.numba_threads())
    write_gctx(level4, state.level4_path(plate))
    state.mark_done(f"plate\t{plate}")
    return level4


def _concat_columns(blocks: list[GCT], row_meta: pd.DataFrame) -> GCT:
    data = np.concatenate([b.data for b in blocks], axis=1) if len(blocks) > 1 else blocks[0].data
    col_meta = pd.concat([b.col_meta for b in blocks], axis=0)
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


def _read_sig_info(path: Path) -> pd.DataFrame:
    table = read_table(path, index_col="sig_id")
    return table


def _build_cgs(
    sig_info: pd.DataFrame,
    set_order: list[str],
    row_meta: pd.DataFrame,
    landmarks: np.ndarray,
    params: PipelineParams,
    state: _WorkState,
    report: ProgressCallback,
    backend: Backend,
) -> pd.DataFrame:
    """Consensus gene signatures, read and built in batches of whole groups; saved in the work folder."""
    groups = cgs_groups(sig_info, params)
    if groups.empty:
        return sig_info.iloc[:0]
    info_path = state.root / "cgs.sig_info.txt"
    if state.is_done("cgs", state.cgs_path, info_path):
        return _read_sig_info(info_path)
    set_file = {s: state.level5_path(s) for s in set_order}
    sig_set = sig_info["replicate_set"].astype("str")

    def read_sigs(wanted: pd.Index) -> GCT:
        parts = []
        for set_name, ids in pd.Series(wanted, index=wanted).groupby(sig_set.loc[wanted].to_numpy(), sort=False):
            parts.append(read_gct(set_file[set_name], cid=list(ids)))
        return _concat_columns(parts, row_meta)

    with GCTXWriter(state.cgs_path, row_meta) as writer:
        infos = _cgs_batches(groups, sig_info, read_sigs, writer.append, landmarks, params, report, backend)
    cgs_info = pd.concat(infos, axis=0)
    write_table(cgs_info, info_path)
    state.mark_done("cgs")
    return cgs_info


def _cgs_batches(
    groups: pd.DataFrame,
    sig_info: pd.DataFrame,
    read_sigs: Callable[[pd.Index], GCT],
    store: Callable[[np.ndarray, pd.DataFrame], None],
    landmarks: np.ndarray,
    params: PipelineParams,
    report: ProgressCallback,
    backend: Backend,
) -> list[pd.DataFrame]:
    """Build the CGS of ``groups`` in batches of at most :data:`CGS_BATCH` input signatures."""
    infos = []
    start = 0
    while start < len(groups):
        stop, n_sigs = start, 0
        while stop < len(groups) and (n_sigs == 0 or n_sigs + len(groups["sig_ids"].iat[stop]) <= CGS_BATCH):
            n_sigs += len(groups["sig_ids"].iat[stop])
            stop += 1
        batch = groups.iloc[start:stop].reset_index(drop=True)
        wanted = pd.Index([s for ids in batch["sig_ids"] for s in ids], dtype=object)
        level5 = read_sigs(wanted)
        cgs, info = consensus_gene_signatures(level5, sig_info.loc[level5.cids], params=params, landmark_rows=landmarks, groups=batch,
                                              threads=backend.numba_threads())
        store(cgs.data, info)
        infos.append(info)
        start = stop
        report("cgs", start, len(groups))
    return infos


# ------------------------------------------------------------------------- Level 3 runs, in place
def _open_slots(
    state: _WorkState, name: str, rows: pd.DataFrame, n_cols: int, *, resizable: bool, fresh: bool
) -> tuple[GCTXSlots, bool]:
    """The partial output ``name`` of the work folder: reopened when resuming, else created.

    Returns ``(slots, reopened)``; ``reopened`` is False when the file had to be made anew.
    """
    path = state.root / name
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


def _run_slots(
    whole: GCT | None,
    reader: GCTXFile | None,
    col_meta: pd.DataFrame,
    row_meta: pd.DataFrame,
    landmarks: np.ndarray,
    plate_order: list[str],
    plate_positions: Mapping[str, np.ndarray],
    set_order: list[str],
    set_plates: Mapping[str, list[str]],
    params: PipelineParams,
    state: _WorkState,
    report: ProgressCallback,
    level4_out: Path,
    level5_out: Path,
    *,
    backend: Backend,
) -> tuple[pd.DataFrame, pd.DataFrame, int, int, int]:
    """Level 3 → 4 → 5 with both outputs filled in place (no per-plate copies).

    The Level 4 and Level 5 matrices are allocated in the work folder at their final size
    (plates at their final columns; each replicate set's signatures at theirs; CGS appended), so
    each value is written once and the finished files are moved, not copied. Progress marks
    reach the done-list only after the values they vouch for (see :meth:`_WorkState.checkpoint`).

    Returns ``(full_info, sig_info, n_cgs, resumed_plates, resumed_sets)``.
    """
    # Level 4 columns: plates in matrix order of first appearance, each plate's wells in matrix order
    plate_start: dict[str, int] = {}
    pos = 0
    for plate in plate_order:
        plate_start[plate] = pos
        pos += len(plate_positions[plate])
    level4_meta = col_meta.iloc[np.concatenate([plate_positions[p] for p in plate_order])]
    # Level 5 columns: each replicate set's signatures, sets in order, then the CGS
    groups = group_instances(col_meta, params)
    per_set = groups.groupby("replicate_set", sort=False).size()
    set_start: dict[str, int] = {}
    pos = 0
    for set_name in set_order:
        set_start[set_name] = pos
        pos += int(per_set.get(set_name, 0))
    n_sigs = pos

    fresh = state.fresh("plate\t", "set\t", "cgs")
    l4, kept4 = _open_slots(state, "level4.partial.gctx", row_meta, len(level4_meta), resizable=False, fresh=fresh)
    l5, kept5 = _open_slots(state, "level5.partial.gctx", row_meta, n_sigs, resizable=True, fresh=fresh)
    if not fresh and not (kept4 and kept5):
        state.forget()  # a partial output was lost: its marks mean nothing any more
    files = (l4, l5)
    resumed_plates = resumed_sets = plates_done = 0
    # A replicate set's Level 4 (genes x wells, column-major) goes into one of two buffers, reused
    # set after set. The background thread reads, z-scores and stores the plates of the next set
    # into one buffer while this thread collapses the set in the other (HDF5 I/O, numpy's sort and
    # the compiled kernels release the GIL).
    widest = max(sum(len(plate_positions[p]) for p in set_plates[s]) for s in set_order)
    buffers = [np.empty((widest, len(row_meta)), dtype=np.float32).T for _ in range(2)]
    io = _Background()

    def prepare(si: int) -> tuple[bool, int, list[tuple[Future[Any] | None, bool]]]:
        """Queue set ``si``'s plates: ``(set done, wells, [(future, resumed) per plate])``."""
        set_name = set_order[si]
        buffer = buffers[si % 2]
        set_is_done = state.is_done(f"set\t{set_name}", state.sig_info_path(set_name))
        jobs: list[tuple[Future[Any] | None, bool]] = []
        used = 0
        for plate in set_plates[set_name]:
            a, positions = plate_start[plate], plate_positions[plate]
            slot = buffer[:, used : used + len(positions)]
            used += len(positions)
            if state.is_done(f"plate\t{plate}"):
                jobs.append((None if set_is_done else io.read(_copy_slot, l4, a, slot), True))
                continue
            plate_meta = col_meta.iloc[positions]
            _warn_small_plate(plate, len(positions), stacklevel=4)
            args = (whole, reader, plate, plate_meta, row_meta, params, positions, slot, l4, a, backend)
            jobs.append((io.write(f"plate\t{plate}", _plate_task, *args), False))
        return set_is_done, used, jobs

    try:
        prepared = prepare(0)
        for si, set_name in enumerate(set_order):
            set_is_done, used, jobs = prepared
            for future, resumed in jobs:
                if future is not None:
                    future.result()  # this plate's z-scores are in the buffer (errors raise here)
                resumed_plates += resumed
                plates_done += 1
                report("plates", plates_done, len(plate_order))
            if si + 1 < len(set_order):
                prepared = prepare(si + 1)  # the next set, into the other buffer, meanwhile
            if set_is_done:
                resumed_sets += 1
            else:
                set_cols = np.concatenate([plate_positions[p] for p in set_plates[set_name]])
                level4 = GCT(buffers[si % 2][:, :used], row_meta=row_meta, col_meta=col_meta.iloc[set_cols])
                level5, set_info = build_signatures(level4, params, landmark_rows=landmarks, threads=backend.numba_threads())
                if level5.shape[1] != per_set.get(set_name, -1):
                    raise PipelineError(
                        f"replicate set {set_name}: {level5.shape[1]} signatures where {per_set.get(set_name, 0)} "
                        "were expected from the instance table (internal error; please report it)"
                    )
                info_path = state.sig_info_path(set_name)
                io.write(f"set\t{set_name}", _store_set, l5, set_start[set_name], level5.data, set_info, info_path)
            io.settle(state)
            report("replicate sets", si + 1, len(set_order))
            state.checkpoint(files)
        io.close(state)

        # -------------------------------------------------------------- signature table and CGS
        sig_info = pd.concat([_read_sig_info(state.sig_info_path(s)) for s in set_order], axis=0)
        if len(sig_info) != n_sigs:
            raise PipelineError(
                f"the work folder {state.root} holds {len(sig_info)} signatures where the instance table gives "
                f"{n_sigs}; start over with restart=True (--restart)"
            )
        cgs_info = None
        if params.cgs:
            cgs_info = _build_cgs_slots(sig_info, l5, row_meta, landmarks, params, state, report, backend)
        n_cgs = 0 if cgs_info is None else len(cgs_info)
        full_info = pd.concat([sig_info, cgs_info], axis=0) if n_cgs else sig_info
        full_info["is_exemplar_sig"] = exemplar_flags(full_info).to_numpy()
        full_info.index.name = "sig_id"
        state.record(files)
    except BaseException:
        io.close(state, quiet=True)  # what was written is recorded, then the interruption propagates
        state.record(files, quiet=True)
        l4.close()
        l5.close()
        raise
    # -------------------------------------------------------------- final files: moved, not copied
    report("write", 0, 2)
    l4.finish(level4_meta, level4_out)
    report("write", 1, 2)
    l5.finish(full_info, level5_out)
    report("write", 2, 2)
    return full_info, sig_info, n_cgs, resumed_plates, resumed_sets


def _read_plate(
    whole: GCT | None, reader: GCTXFile | None, plate_meta: pd.DataFrame, row_meta: pd.DataFrame, positions: np.ndarray
) -> np.ndarray:
    """One plate's input (Level 2 or 3) values, ``(genes, wells)`` float32 (rows in ``row_meta``'s
    order): from ``whole`` (a parsed text GCT) if given, else by position through ``reader``."""
    if whole is not None:
        raw = whole.subset(cids=plate_meta.index)
        return raw.data if raw.rids.equals(row_meta.index) else raw.subset(rids=row_meta.index).data
    if reader is None:
        raise PipelineError("no input matrix to read (internal error; please report it)")
    return reader.read_matrix(cidx=positions)  # the matrix's rows are row_meta's rows


def _plate_task(
    whole: GCT | None,
    reader: GCTXFile | None,
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
    data = _read_plate(whole, reader, plate_meta, row_meta, positions)
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


class _Background:
    """One worker thread for the file reads, writes and plate z-scoring of :func:`_run_slots`.

    Tasks run in the order given. A write carries the progress mark it earns; :meth:`settle`
    records (:meth:`_WorkState.pend`) the marks of the writes finished so far, in order.
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

    def settle(self, state: _WorkState, *, wait: bool = False) -> None:
        while self._writes and (wait or self._writes[0][0].done()):
            future, key = self._writes.pop(0)
            future.result()  # a failed write raises here
            state.pend(key)

    def close(self, state: _WorkState, *, quiet: bool = False) -> None:
        """Finish every task (queued writes too: they are a set's work at most), record the marks;
        ``quiet``: after an error elsewhere, record what succeeded and raise nothing."""
        self._pool.shutdown(wait=True)
        if not quiet:
            self.settle(state, wait=True)
            return
        for future, key in self._writes:
            if future.cancelled() or future.exception() is not None:
                break  # marks stay in order: nothing after a failed write counts
            state.pend(key)
        self._writes = []


def _build_cgs_slots(
    sig_info: pd.DataFrame,
    l5: GCTXSlots,
    row_meta: pd.DataFrame,
    landmarks: np.ndarray,
    params: PipelineParams,
    state: _WorkState,
    report: ProgressCallback,
    backend: Backend,
) -> pd.DataFrame | None:
    """CGS from the signatures already in the Level 5 work file (``sig_info``'s rows, in order),
    written after them."""
    groups = cgs_groups(sig_info, params)
    if groups.empty:
        return None
    n_sigs = len(sig_info)
    column = pd.Series(np.arange(n_sigs), index=sig_info.index)
    info_path = state.root / "cgs.sig_info.txt"
    l5.resize(n_sigs + len(groups))
    if state.is_done("cgs", info_path):
        return _read_sig_info(info_path)

    def read_sigs(wanted: pd.Index) -> GCT:
        cols = column.loc[wanted].to_numpy()
        order = np.argsort(cols, kind="stable")
        data = np.empty((len(row_meta), len(cols)), dtype=np.float32)
        sorted_cols = cols[order]
        runs = np.flatnonzero(np.diff(sorted_cols) != 1) + 1  # read contiguous runs of columns at once
        for a, b in zip(np.r_[0, runs].tolist(), np.r_[runs, len(cols)].tolist()):
            data[:, order[a:b]] = l5.read(int(sorted_cols[a]), int(sorted_cols[b - 1]) + 1)
        return GCT(data, row_meta=row_meta, col_meta=pd.DataFrame(index=wanted))

    written = [n_sigs]

    def store(block: np.ndarray, info: pd.DataFrame) -> None:
        l5.write(written[0], block)
        written[0] += block.shape[1]

    infos = _cgs_batches(groups, sig_info, read_sigs, store, landmarks, params, report, backend)
    if written[0] != n_sigs + len(groups):
        raise PipelineError(f"built {written[0] - n_sigs} CGS for {len(groups)} groups (internal error; please report it)")
    cgs_info = pd.concat(infos, axis=0)
    write_table(cgs_info, info_path)
    state.pend("cgs")
    return cgs_info
