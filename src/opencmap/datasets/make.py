"""Write a synthetic compendium to disk in the GEO (GSE92742) layout, plate by plate.

Files written in ``out_dir`` (each atomically):

=====================  ==========================================================================
``level3.gctx``        Level 3 expression, genes (landmarks first, rids = Entrez ids) x profiles;
                       row meta ``pr_gene_symbol, pr_is_lm, pr_is_bing``; column meta = inst_info
``inst_info.txt``      one row per profile (GSE92742 columns + ``det_plate``, ``bead_batch``)
``gene_info.txt``      ``pr_gene_id, pr_gene_symbol, pr_gene_title, pr_is_lm, pr_is_bing``
``cell_info.txt``      GSE92742 cell_info columns
``pert_info.txt``      GSE92742 pert_info columns + ``moa``, ``target``
``ground_truth.txt``   per perturbagen: MOA, target, action, programs, activity, seed, cells
``pcl.gmt``            one set per MOA class; members are the active compounds' pert_ids
``manifest.json``      generator version, seed, size, spec, parameters, counts, failed wells,
                       sha256 of every file above
=====================  ==========================================================================

Memory stays bounded by one plate (plus the per-profile metadata); the matrix is streamed with
:class:`opencmap.io.GCTXWriter`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap import __version__
from opencmap.core.gct import GCT
from opencmap.core.genesets import GeneSet
from opencmap.datasets.design import MOA_CATALOGUE, WELLS, CompendiumSpec, Design, spec_for
from opencmap.datasets.genes import TOUCHSTONE_CELLS, cell_table, select_genes
from opencmap.datasets.model import CompendiumModel, ModelParams
from opencmap.errors import ConfigError, FormatError
from opencmap.io import GCTXWriter, atomic_write_path, write_gmt, write_table
from opencmap.io.versions import check_format_version

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST_FORMAT",
    "FILES",
    "Compendium",
    "make_compendium",
    "build_model",
    "open_compendium",
    "true_signatures",
]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the same seed and spec would give different bytes."""
MANIFEST_FORMAT = "opencmap-synthetic-compendium"
MANIFEST_VERSION = 1

FILES = {
    "level3": "level3.gctx",
    "inst_info": "inst_info.txt",
    "gene_info": "gene_info.txt",
    "cell_info": "cell_info.txt",
    "pert_info": "pert_info.txt",
    "ground_truth": "ground_truth.txt",
    "pcl": "pcl.gmt",
}
MANIFEST = "manifest.json"

ProgressCallback = Callable[[int, int], None]


@dataclass
class Compendium:
    """A written compendium: its folder, manifest, and (rebuilt on demand) generative model."""

    path: Path
    manifest: dict[str, Any]

    def file(self, key: str) -> Path:
        """Path of one of the :data:`FILES` (``"level3"``, ``"inst_info"``, ...)."""
        return self.path / FILES[key]

    @property
    def spec(self) -> CompendiumSpec:
        return CompendiumSpec.from_dict(self.manifest["spec"])

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    def model(self) -> CompendiumModel:
        """The generative model that wrote this compendium (rebuilt from seed, spec and params)."""
        return build_model(self.spec, seed=self.seed, params=ModelParams(**_tuples(self.manifest["params"])))


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def build_model(spec: CompendiumSpec, *, seed: int = 0, params: ModelParams | None = None) -> CompendiumModel:
    """The design and generative model of ``spec`` with ``seed`` (nothing is written)."""
    spec.validate()
    return CompendiumModel(Design(spec, seed=seed), select_genes(spec.n_inferred), params)


# ---------------------------------------------------------------------------------------- tables
def _dose_unit(pert_type: np.ndarray) -> np.ndarray:
    return np.where(pert_type == "trt_cp", "µM", np.where(pert_type == "ctl_vehicle", "%", "µL"))


def _pert_fields(model: CompendiumModel) -> dict[str, np.ndarray]:
    """Per-perturbagen inst_info fields as object arrays (indexed by pert row)."""
    perts = model.design.perts
    fields = {c: perts[c].to_numpy(dtype=object) for c in ("pert_id", "pert_iname", "pert_type")}
    fields["pert_dose_unit"] = _dose_unit(fields["pert_type"]).astype(object)
    return fields


@dataclass
class _InstRecords:
    """inst_info of the plates written so far, kept compact (a few bytes per profile)."""

    fields: dict[str, np.ndarray]
    plate_fields: dict[str, list[object]] = dataclasses.field(
        default_factory=lambda: {k: [] for k in ("rna_plate", "det_plate", "cell_id", "pert_time", "bead_batch")}
    )
    columns: dict[str, list[np.ndarray]] = dataclasses.field(
        default_factory=lambda: {k: [] for k in ("plate", "pert_row", "well", "dose")}
    )

    def add(self, plate_data: Any) -> pd.DataFrame:
        """Record one plate; return its inst_info rows (indexed by inst_id)."""
        plate = plate_data.plate
        k = len(self.plate_fields["rna_plate"])
        for key, value in (
            ("rna_plate", plate.rna_plate), ("det_plate", plate.det_plate), ("cell_id", plate.group.cell_id),
            ("pert_time", plate.group.time), ("bead_batch", f"b{plate.bead_batch}"),
        ):  # fmt: skip
            self.plate_fields[key].append(value)
        layout = plate_data.layout
        cols = {
            "plate": np.full(len(layout), k, dtype=np.int32),
            "pert_row": layout["pert_row"].to_numpy().astype(np.int32),
            "well": layout["well_index"].to_numpy().astype(np.int16),
            "dose": layout["dose"].to_numpy(dtype=np.float64),
        }
        for key, value in cols.items():
            self.columns[key].append(value)
        return self._frame(cols, last_plate_only=True)

    def frame(self) -> pd.DataFrame:
        """All recorded rows, in writing order."""
        return self._frame({k: np.concatenate(v) for k, v in self.columns.items()})

    def _frame(self, cols: dict[str, np.ndarray], *, last_plate_only: bool = False) -> pd.DataFrame:
        plate = cols["plate"]
        if last_plate_only:
            plate_tab = {k: np.array(v[-1:], dtype=object) for k, v in self.plate_fields.items()}
            plate = np.zeros(len(plate), dtype=np.int64)
        else:
            plate_tab = {k: np.array(v, dtype=object) for k, v in self.plate_fields.items()}
        rows = cols["pert_row"]
        wells = _WELLS[cols["well"]]
        det = plate_tab["det_plate"][plate]
        return pd.DataFrame(
            {
                "rna_plate": plate_tab["rna_plate"][plate],
                "rna_well": wells,
                "pert_id": self.fields["pert_id"][rows],
                "pert_iname": self.fields["pert_iname"][rows],
                "pert_type": self.fields["pert_type"][rows],
                "pert_dose": cols["dose"],
                "pert_dose_unit": self.fields["pert_dose_unit"][rows],
                "pert_time": plate_tab["pert_time"][plate].astype(np.int64),
                "pert_time_unit": np.full(len(rows), "h", dtype=object),
                "cell_id": plate_tab["cell_id"][plate],
                "det_plate": det,
                "bead_batch": plate_tab["bead_batch"][plate],
            },
            index=pd.Index(det + ":" + wells, dtype=object, name="inst_id"),
        )


_WELLS = np.array(WELLS, dtype=object)


def _row_meta(genes: pd.DataFrame) -> pd.DataFrame:
    meta = genes[["pr_gene_symbol", "pr_is_lm", "pr_is_bing"]].copy()
    meta.index = pd.Index(genes["pr_gene_id"].astype(str).to_numpy(), dtype=object, name="rid")
    return meta


def _pert_info(model: CompendiumModel) -> pd.DataFrame:
    perts = model.design.perts
    touch = int(set(TOUCHSTONE_CELLS) <= set(model.spec.cell_ids))
    n = len(perts)
    missing = np.full(n, "-666", dtype=object)
    return pd.DataFrame(
        {
            "pert_id": perts["pert_id"].to_numpy(),
            "pert_iname": perts["pert_iname"].to_numpy(),
            "pert_type": perts["pert_type"].to_numpy(),
            "is_touchstone": np.where(perts["pert_type"].str.startswith("trt_"), touch, 0).astype(np.int64),
            "inchi_key_prefix": missing,
            "inchi_key": missing,
            "canonical_smiles": missing,
            "pubchem_cid": missing,
            # not in GSE92742's pert_info; as in the 2020 release's compound annotations
            "moa": perts["moa"].to_numpy(),
            "target": perts["target"].to_numpy(),
        }
    )


def _ground_truth(model: CompendiumModel) -> pd.DataFrame:
    perts = model.design.perts
    cells = list(model.spec.cell_ids)
    rows = []
    for r in perts.itertuples():
        responsive = "-666"
        ec50 = hill = emax = np.nan
        dual = "-666"
        if r.pert_type.startswith("trt_") and r.is_active:
            first = r.programs.split("|")[0].lstrip("-")
            responsive = "|".join(model.responsive_cells(first, cells)) or "-666"
        if r.pert_type == "trt_cp" and r.is_active:
            emax, ec50, hill, _, _ = model.compound_parameters(int(r.library_index))
        if r.dual_moa_index >= 0:
            dual = MOA_CATALOGUE[r.dual_moa_index][0]
        rows.append(
            {
                "pert_id": r.pert_id,
                "pert_iname": r.pert_iname,
                "pert_type": r.pert_type,
                "moa": r.moa,
                "target": r.target,
                "action": r.action,
                "programs": r.programs,
                "is_active": int(r.is_active),
                "dual_moa": dual,
                "seed_sequence": r.seed_sequence,
                "responsive_cells": responsive,
                "ec50_um": round(float(ec50), 6) if np.isfinite(ec50) else np.nan,
                "hill": round(float(hill), 6) if np.isfinite(hill) else np.nan,
                "emax": round(float(emax), 6) if np.isfinite(emax) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _pcl_sets(model: CompendiumModel) -> list[GeneSet]:
    perts = model.design.perts
    sets = []
    for m in range(model.spec.n_moa):
        moa = MOA_CATALOGUE[m][0]
        members = perts[(perts["moa_index"] == m) & (perts["is_active"] == 1) & (perts["pert_type"] == "trt_cp")]
        if len(members) >= 1:
            name = "CP_" + moa.upper().replace(" ", "_").replace("-", "_")
            sets.append(GeneSet(name, moa, tuple(members["pert_id"])))
    return sets


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:  # reading our own output to checksum it
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ make
def make_compendium(
    out_dir: str | PathLike[str],
    size: str | CompendiumSpec = "demo",
    *,
    seed: int = 0,
    n_profiles: int | None = None,
    n_inferred: int | None | str = "default",
    params: ModelParams | None = None,
    overwrite: bool = False,
    level3_col_meta: bool = True,
    beads: bool = False,
    bead_plates: int | None = None,
    max_default_bead_plates: int | None = None,
    progress: ProgressCallback | None = None,
) -> Compendium:
    """Generate a synthetic L1000 compendium into ``out_dir`` (created if needed).

    Parameters
    ----------
    out_dir:
        Destination folder. Refused if it already holds a compendium, unless ``overwrite``.
    size:
        ``"tiny"``, ``"demo"`` (see :data:`opencmap.datasets.SIZES`) or a :class:`CompendiumSpec`.
    seed:
        Same seed, spec and version -> byte-identical files.
    n_profiles:
        Grow the compound library of ``size`` to at least this many profiles.
    n_inferred:
        Inferred genes to include (``None`` = all 11,350; default: the size's own).
    params:
        Effect and noise sizes (:class:`ModelParams`).
    level3_col_meta:
        Store the inst_info fields as column metadata of ``level3.gctx`` (default). ``False``
        stores only the inst_ids, as GEO's own GCTX files do, and keeps memory low for
        million-profile runs (the metadata of every column is held until the file is closed).
    beads:
        Also write bead-level data (Level 1): LXB files under ``lxb/<det_plate>/``, plate maps in
        ``map/`` and ``beads_truth.txt`` (:func:`opencmap.datasets.beads.write_bead_plates`).
        ~9 M beads (~70 MB) per 384-well plate: allowed by default for up to
        :data:`~opencmap.datasets.beads.MAX_DEFAULT_BEAD_PLATES` plates.
    bead_plates:
        With ``beads``: write the first this many plates only (required for larger compendia).
    max_default_bead_plates:
        With ``beads`` and no ``bead_plates``: the most plates written without asking (default
        :data:`~opencmap.datasets.beads.MAX_DEFAULT_BEAD_PLATES`).
    progress:
        Called as ``progress(profiles_done, profiles_total)`` after each plate.

    Returns
    -------
    Compendium
        The folder and its manifest.
    """
    if isinstance(size, CompendiumSpec):
        spec = size
        if n_profiles is not None or n_inferred != "default":
            raise ConfigError(
                "n_profiles and n_inferred apply to a named size; set them in the CompendiumSpec instead"
            )
    else:
        overrides: dict[str, Any] = {} if n_inferred == "default" else {"n_inferred": n_inferred}
        spec = spec_for(size, n_profiles=n_profiles, **overrides)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / MANIFEST).exists() and not overwrite:
        raise ConfigError(f"{out} already holds a compendium ({MANIFEST}); pass overwrite=True (--overwrite) to replace it")
    params = params or ModelParams()
    model = build_model(spec, seed=int(seed), params=params)
    design = model.design
    if beads:
        from opencmap.datasets.beads import MAX_DEFAULT_BEAD_PLATES

        limit = MAX_DEFAULT_BEAD_PLATES if max_default_bead_plates is None else int(max_default_bead_plates)
        if bead_plates is None and design.n_plates > limit:
            raise ConfigError(
                f"bead-level output of all {design.n_plates} plates would be ~{design.n_plates * 70} MB; "
                f"choose how many plates with bead_plates= (--bead-plates), at most {design.n_plates}"
            )
    total = design.n_profiles
    logger.info("generating %s compendium: %d profiles x %d genes in %s", spec.name, total, model.n_genes, out)

    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()  # a half-replaced folder must not look complete
    row_meta = _row_meta(model.genes)
    records = _InstRecords(_pert_fields(model))
    failed: list[str] = []
    done = 0
    with GCTXWriter(out / FILES["level3"], row_meta, src=FILES["level3"]) as writer:
        for plate in design.plates():
            pdata = model.simulate_plate(plate)
            meta = records.add(pdata)
            writer.append(pdata.data, meta if level3_col_meta else meta.index)
            failed.extend(meta.index[pdata.failed])
            done += pdata.data.shape[1]
            if progress is not None:
                progress(done, total)
    del writer  # its column metadata blocks
    inst = records.frame()
    del records
    inst.insert(0, "inst_id", inst.index.to_numpy())
    write_table(inst.reset_index(drop=True), out / FILES["inst_info"])
    del inst
    gene_info = model.genes[["pr_gene_id", "pr_gene_symbol", "pr_gene_title", "pr_is_lm", "pr_is_bing"]]
    write_table(gene_info, out / FILES["gene_info"])
    write_table(cell_table(spec.cell_ids).drop(columns="is_touchstone"), out / FILES["cell_info"])
    write_table(_pert_info(model), out / FILES["pert_info"])
    write_table(_ground_truth(model), out / FILES["ground_truth"])
    write_gmt(_pcl_sets(model), out / FILES["pcl"])

    bead_info: dict[str, Any] = {}
    if beads:
        from opencmap.datasets.beads import write_bead_plates

        written = write_bead_plates(out, plates=bead_plates, seed=int(seed))
        bead_info = {"beads": {"plates": list(written.plates), "n_wells": written.n_wells, "n_beads": written.n_beads,
                               "lxb": "lxb", "maps": "map", "truth": written.truth.name}}
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "generator_version": GENERATOR_VERSION,
        "opencmap_version": __version__,
        "seed": int(seed),
        "size": spec.name,
        "level3_col_meta": bool(level3_col_meta),
        "spec": spec.to_dict(),
        "params": params.to_dict(),
        "n_profiles": int(total),
        "n_genes": int(model.n_genes),
        "n_landmarks": int((model.genes["pr_is_lm"] == 1).sum()),
        "n_bing": int((model.genes["pr_is_bing"] == 1).sum()),
        "n_plates": int(design.n_plates),
        "n_perturbagens": int(len(design.perts)),
        "failed_inst_ids": failed,
        "files": {
            key: {"name": name, "sha256": _sha256(out / name), "bytes": (out / name).stat().st_size}
            for key, name in FILES.items()
        },
        **bead_info,
    }
    with atomic_write_path(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %d profiles (%d failed wells) to %s", total, len(failed), out)
    return Compendium(out, manifest)


def open_compendium(path: str | PathLike[str]) -> Compendium:
    """Open a compendium folder written by :func:`make_compendium` (reads its manifest)."""
    folder = Path(path)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise FormatError(
            f"no {MANIFEST} here; this is not a synthetic compendium (run `opencmap datasets make`)", path=folder
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"manifest is not valid JSON ({exc}); regenerate the compendium", path=mpath) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise FormatError(f"not a {MANIFEST_FORMAT} manifest", path=mpath)
    check_format_version(manifest.get("format_version", 0), MANIFEST_VERSION, what="synthetic compendium manifest", path=mpath)
    if int(manifest.get("generator_version", 0)) != GENERATOR_VERSION:
        logger.warning(
            "%s was written by generator version %s; this is version %d, so the rebuilt model may differ",
            folder, manifest.get("generator_version"), GENERATOR_VERSION,
        )  # fmt: skip
    return Compendium(folder, manifest)


# ------------------------------------------------------------------------------- true signatures
def _condition_keys(model: CompendiumModel) -> pd.DataFrame:
    spec = model.spec
    perts = model.design.perts
    rows = []
    for r in perts.itertuples():
        if r.pert_type == "trt_cp":
            conds = [(d, t) for t in spec.compound_times for d in spec.doses]
        elif r.pert_type in ("trt_sh", "trt_oe"):
            conds = [(1.0, spec.genetic_time)]
        else:
            continue
        for cell in spec.cell_ids:
            for dose, time in conds:
                rows.append((r.pert_id, cell, float(dose), int(time)))
    return pd.DataFrame(rows, columns=["pert_id", "cell_id", "pert_dose", "pert_time"])


def true_signatures(
    source: Compendium | CompendiumModel | str | PathLike[str],
    keys: pd.DataFrame | None = None,
) -> GCT:
    """Noise-free signatures (log2 change vs. the plate's controls) per perturbagen x cell x dose x time.

    Parameters
    ----------
    source:
        A compendium folder (or :class:`Compendium`) or a :class:`CompendiumModel`.
    keys:
        Conditions with columns ``pert_id, cell_id, pert_dose, pert_time``; default: every
        treatment condition profiled in the compendium.

    Returns
    -------
    GCT
        Genes (the compendium's rows, Entrez ids) x conditions; column ids
        ``"{pert_id}:{cell_id}:{pert_dose:g}:{pert_time}"`` with the key columns plus ``pert_type``
        as column metadata. Use correlations (not magnitudes) to score recovered signatures.
    """
    if isinstance(source, CompendiumModel):
        model = source
    else:
        comp = source if isinstance(source, Compendium) else open_compendium(source)
        model = comp.model()
    if keys is None:
        keys = _condition_keys(model)
    need = ["pert_id", "cell_id", "pert_dose", "pert_time"]
    missing_cols = [c for c in need if c not in keys.columns]
    if missing_cols:
        raise ConfigError(f"keys lacks column(s) {missing_cols}; it needs {need}")
    perts = model.design.perts
    row_of = {p: i for i, p in enumerate(perts["pert_id"])}
    unknown = sorted({str(p) for p in keys["pert_id"] if str(p) not in row_of})
    if unknown:
        from opencmap.errors import IdNotFoundError

        raise IdNotFoundError(f"pert_id(s) not in this compendium: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    bad_cells = sorted({str(c) for c in keys["cell_id"]} - set(model._cells))
    if bad_cells:
        raise ConfigError(f"unknown cell line(s) {bad_cells}")
    data = np.empty((model.n_genes, len(keys)), dtype=np.float32)
    cids = []
    for j, (pid, cell, dose, time) in enumerate(keys[need].itertuples(index=False, name=None)):
        data[:, j] = model.true_signature(row_of[str(pid)], str(cell), float(dose), float(time))
        cids.append(f"{pid}:{cell}:{float(dose):g}:{int(time)}")
    col_meta = keys[need].copy().reset_index(drop=True)
    col_meta["pert_type"] = perts["pert_type"].to_numpy()[[row_of[str(p)] for p in keys["pert_id"]]]
    col_meta.index = pd.Index(cids, dtype=object)
    return GCT(data, row_meta=_row_meta(model.genes), col_meta=col_meta)
