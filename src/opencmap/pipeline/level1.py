"""Level 1 input: finding the detection plates of an LXB folder and deconvolving them to Level 2.

* :func:`level1_plates` pairs each plate's LXB files with its plate map (:class:`Level1Plate`);
* :func:`deconvolve_plates` runs :func:`~opencmap.pipeline.deconvolve.deconvolve_plate` on each
  (resumable; Level 2 files written per plate and per bead set);
* :func:`level1_instances` is the run's instance table: the Level 2 column metadata.

The Level 2 → 3 step that follows is :mod:`opencmap.pipeline.level3`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from opencmap.backends import Backend, BlockTask, is_distributed, ordered_results
from opencmap.errors import PipelineError
from opencmap.io import read_meta
from opencmap.io.atomic import atomic_write_path
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.plan import fingerprint
from opencmap.pipeline.workfolder import WorkFolder, safe_name

__all__ = ["Level1Plate", "level1_plates", "deconvolve_plates", "level1_instances"]

log = logging.getLogger(__name__)

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
            "plate_map": fingerprint(self.plate_map),
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


def deconvolve_plates(
    plates: Sequence[Level1Plate],
    folder: Path,
    work: WorkFolder,
    *,
    chip: Path | None,
    seed: int,
    params: PipelineParams,
    report: Callable[[str, int, int], None],
    backend: Backend | None = None,
) -> dict[str, dict[str, Path]]:
    """Level 1 → 2 for every plate (resumable): Level 2 files in ``folder``, paths by plate.

    Peak calling and flip correction take ``params.dpeak`` and ``params.flip``. With a
    distributed ``backend`` the plates are deconvolved by
    :func:`~opencmap.pipeline.tasks.level2_plate_task` tasks (one per plate) and written here."""
    from opencmap.io.beads import read_chip
    from opencmap.pipeline.deconvolve import deconvolve_plate, write_level2

    chip_table = read_chip(chip) if chip is not None else None
    records = work.root / "level2"
    records.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Path]] = {}
    pending: list[Level1Plate] = []
    for plate in plates:
        record = records / f"{safe_name(plate.name)}.json"
        if work.is_done(f"level2\t{plate.name}", record):
            paths = {k: Path(v) for k, v in json.loads(record.read_text()).items()}
            if all(p.exists() for p in paths.values()):
                files[plate.name] = paths
                continue
        pending.append(plate)

    def computed() -> Iterator[Any]:
        """Each pending plate's Level 2, in order: here, or from the backend's tasks."""
        if backend is not None and is_distributed(backend):
            from opencmap.pipeline.tasks import level2_plate_task

            tasks = [
                BlockTask(str(plate.files[0].parent), i, i + 1, {"plates": [plate], "chip": chip_table, "seed": seed, "params": params})
                for i, plate in enumerate(pending)
            ]
            log.info("deconvolving %d plates in %d tasks of %r", len(pending), len(tasks), backend)
            for _task, (level2,) in ordered_results(backend, level2_plate_task, tasks):
                yield level2
            return
        for plate in pending:
            log.info("deconvolving plate %s (%d LXB files)", plate.name, len(plate.files))
            yield deconvolve_plate(
                plate.files, plate.plate_map, seed=seed, chip=chip_table, plate=plate.name, params=params.dpeak, flip=params.flip
            )

    results = computed()
    report("level 1", 0, len(plates))
    for i, plate in enumerate(plates):
        if plate.name in files:
            report("level 1", i + 1, len(plates))
            continue
        record = records / f"{safe_name(plate.name)}.json"
        level2 = next(results)
        paths = write_level2(level2, folder, plate=plate.name)
        with atomic_write_path(record) as tmp:
            tmp.write_text(json.dumps({k: str(v) for k, v in paths.items()}))
        work.mark_done(f"level2\t{plate.name}")
        files[plate.name] = paths
        report("level 1", i + 1, len(plates))
    return {plate.name: files[plate.name] for plate in plates}  # plate order (resumed ones too)


def level1_instances(level2_files: Mapping[str, Mapping[str, Path]]) -> pd.DataFrame:
    """Instances of the deconvolved plates: the Level 2 column metadata (plate map + bead QC)."""
    metas = []
    for plate, paths in level2_files.items():
        meta = read_meta(paths["gex"], "col")
        if "rna_plate" not in meta.columns:
            meta["rna_plate"] = plate  # no RNA plate in the map: z-score by detection plate
        metas.append(meta)
    return pd.concat(metas, axis=0)
