"""Bead-level (Level 1) output of the synthetic compendium: LXB files and plate maps from Level 3.

For every well of the chosen plates, each of the 500 Luminex analytes gets ~30-60 beads
(``beads_per_analyte``) mixed from its two genes in the chip's 2:1 proportion: the high-proportion
bead set (``dp52`` for EPSILON) carries ~2/3 of the beads, the low one (``dp53``) ~1/3. A bead's
log2 intensity is its gene's Level 3 value (the generator's truth, linear scale ``2**x``) plus a
per-well gain (``well_gain_sd``, which LISS must undo) plus bead noise (``bead_sd``); a few beads
are outliers (uniform in log2 [4, 14]) and a few are unclassified (analyte 0), as in real files.
Invariant probes ``CAL01``..``CAL10`` sit at their 10 LISS reference levels; single-probe analytes
(invariants, and those whose other bead set is ``NOT_ASSIGNED``) carry one probe only.

Files, CMap's layout (under the compendium folder by default)::

    lxb/<det_plate>/<det_plate>_<well>.lxb   FCS 3.0, parameters RID and RP1
    map/<det_plate>.map                      plate map (inst_info fields + det_plate, det_well)
    beads_truth.txt                          per well: inst_id, det_plate, det_well, gain_log2

so ``opencmap process --level 1 <out>/lxb <run> --plate-map <out>/map`` processes them. The
bead-level data is large (~45 beads x 500 analytes = 22,500 beads, ~180 kB, per well; ~9 M beads,
~70 MB per 384-well plate), so :func:`write_bead_plates` takes the plates (and wells) to write.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from opencmap.core.chip import chip_layout
from opencmap.core.schema import parse_flags
from opencmap.errors import ConfigError
from opencmap.io import read_gct, read_table, write_table
from opencmap.io.beads import Beads, default_chip_path, read_chip
from opencmap.io.lxb import write_lxb_beads
from opencmap.pipeline.liss import LISS_REFERENCE, EPSILON_INVARIANT_SETS

__all__ = [
    "BeadParams",
    "BeadPlates",
    "AnalyteLayout",
    "analyte_layout",
    "simulate_well_beads",
    "write_bead_plates",
    "BEADS_TRUTH",
    "MAX_DEFAULT_BEAD_PLATES",
]

log = logging.getLogger(__name__)

BEADS_TRUTH = "beads_truth.txt"
#: ``make_compendium(beads=True)`` writes every plate only up to this many plates (``tiny``).
MAX_DEFAULT_BEAD_PLATES = 12
LXB_DIR = "lxb"
MAP_DIR = "map"
#: Plate-map fields, in CMap's order (those the compendium has).
MAP_FIELDS = (
    "rna_plate", "rna_well", "pert_id", "pert_iname", "pert_type", "pert_dose", "pert_dose_unit",
    "pert_time", "pert_time_unit", "cell_id", "bead_batch", "det_plate", "det_well",
)  # fmt: skip
#: log2 level of the beads of an unassigned probe (background).
UNASSIGNED_LOG2 = 5.0


@dataclass(frozen=True)
class BeadParams:
    """Bead simulation parameters."""

    beads_per_analyte: tuple[int, int] = (30, 60)
    """Bead count per (well, analyte): uniform integers in this closed range."""
    hi_fraction: float = 2.0 / 3.0
    """Share of an analyte's beads from its high-proportion gene (CMap's 2:1 mix)."""
    bead_sd: float = 0.25
    """Bead-to-bead log2 noise."""
    well_gain_sd: float = 0.3
    """Per-well log2 gain (scanner/hybridisation), applied to every bead of the well."""
    outlier_fraction: float = 0.02
    unclassified_fraction: float = 0.05

    def __post_init__(self) -> None:
        lo, hi = self.beads_per_analyte
        if not 1 <= lo <= hi:
            raise ConfigError(f"beads_per_analyte must be (low, high) with 1 <= low <= high, got {self.beads_per_analyte}")
        if not 0.5 < self.hi_fraction < 1.0:
            raise ConfigError(f"hi_fraction must be in (0.5, 1), got {self.hi_fraction}")


@dataclass(frozen=True)
class AnalyteLayout:
    """What each analyte carries: row ids into the well's log2 vector for its two bead sets."""

    bead_sets: tuple[str, str]
    hi_source: np.ndarray  # (A,) index into the value vector
    lo_source: np.ndarray  # (A,) index; equal to hi_source for single-probe analytes
    single: np.ndarray  # (A,) bool: one probe only (invariants, unassigned partner)
    genes: tuple[str, ...]  # gene ids: value-vector positions 0..G-1


def analyte_layout(chip: pd.DataFrame, genes: Sequence[str]) -> AnalyteLayout:
    """Map the chip's analytes to positions in a per-well value vector.

    The vector is ``[log2 of genes..., CAL01..CAL10 levels, unassigned level]``.
    """
    layout = chip_layout(chip)
    gene_pos = {g: i for i, g in enumerate(genes)}
    n_genes = len(genes)
    cal_pos = {probes[0]: n_genes + k for k, (_, probes) in enumerate(EPSILON_INVARIANT_SETS)}
    unassigned = n_genes + len(cal_pos)
    sources = {}
    for b in layout.bead_sets:
        rows = layout.rows[b]
        src = np.full(layout.n_analytes, unassigned, dtype=np.int64)
        for num, kind, pr_id, gene in zip(rows["pr_analyte_num"], rows["pr_type"].astype(str), rows["pr_id"].astype(str), rows["pr_gene_id"]):
            if kind == "LM":
                key = str(gene)
                if key not in gene_pos:
                    raise ConfigError(f"chip gene {key} (analyte {num}, bead set {b}) is not a landmark of the compendium")
                src[num - 1] = gene_pos[key]
            elif pr_id in cal_pos:
                src[num - 1] = cal_pos[pr_id]
        sources[b] = src
    hi, lo = sources[layout.bead_sets[0]], sources[layout.bead_sets[1]]
    single = np.zeros(layout.n_analytes, dtype=bool)
    single[np.asarray(layout.not_duo, dtype=np.int64) - 1] = True
    hi = np.where(single & (hi == unassigned), lo, hi)  # the assigned probe of a single-probe analyte
    lo = np.where(single, hi, lo)
    return AnalyteLayout(layout.bead_sets, hi, lo, single, tuple(genes))


def _value_vector(gene_log2: np.ndarray) -> np.ndarray:
    cal = np.asarray(LISS_REFERENCE[1 : 1 + len(EPSILON_INVARIANT_SETS)], dtype=np.float64)
    return np.concatenate([gene_log2.astype(np.float64), cal, [UNASSIGNED_LOG2]])


def simulate_well_beads(
    gene_log2: np.ndarray,
    layout: AnalyteLayout,
    rng: np.random.Generator,
    *,
    gain: float = 0.0,
    params: BeadParams = BeadParams(),
    source: str | None = None,
) -> Beads:
    """The beads of one well from its genes' log2 expression (in ``layout.genes`` order).

    Returns analyte ids (1..A, 0 = unclassified) and integer intensities ``round(2**log2)``, in
    random order.
    """
    values = _value_vector(gene_log2) + gain
    n_analytes = layout.hi_source.size
    lo_n, hi_n = params.beads_per_analyte
    n = rng.integers(lo_n, hi_n + 1, n_analytes)
    n_hi = np.where(layout.single, n, rng.binomial(n, params.hi_fraction))
    analyte = np.repeat(np.arange(1, n_analytes + 1, dtype=np.int32), n)
    rank = np.arange(analyte.size) - np.repeat(np.cumsum(n) - n, n)  # position within the analyte
    from_hi = rank < np.repeat(n_hi, n)
    centre = np.where(from_hi, values[layout.hi_source[analyte - 1]], values[layout.lo_source[analyte - 1]])
    x = centre + rng.normal(0.0, params.bead_sd, analyte.size)
    out = rng.random(analyte.size) < params.outlier_fraction
    x[out] = rng.uniform(4.0, 14.0, int(out.sum()))
    n_unc = int(round(params.unclassified_fraction * analyte.size))
    analyte = np.concatenate([analyte, np.zeros(n_unc, dtype=np.int32)])
    x = np.concatenate([x, rng.uniform(4.0, 14.0, n_unc)])
    order = rng.permutation(analyte.size)
    intensity = np.round(np.exp2(np.clip(x[order], 0.0, 31.0)))
    return Beads(analyte[order], intensity, source)


@dataclass(frozen=True)
class BeadPlates:
    """Bead-level files written by :func:`write_bead_plates`."""

    lxb_dir: Path
    map_dir: Path
    truth: Path
    plates: tuple[str, ...]
    n_wells: int
    n_beads: int


def _well_seed(seed: int, inst_id: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(inst_id.encode())]))


def write_bead_plates(
    compendium: str | PathLike[str],
    out_dir: str | PathLike[str] | None = None,
    *,
    plates: int | Sequence[str] | None = None,
    max_wells: int | None = None,
    seed: int = 0,
    chip: str | PathLike[str] | None = None,
    params: BeadParams = BeadParams(),
    progress: Callable[[int, int], None] | None = None,
) -> BeadPlates:
    """Write LXB files and plate maps for plates of a written compendium (see the module docstring).

    Parameters
    ----------
    compendium:
        The compendium folder (``level3.gctx``, ``inst_info.txt``).
    out_dir:
        Destination (default: the compendium folder).
    plates:
        Detection plates (``det_plate`` names) or the number of plates to write, first ones first;
        default: all.
    max_wells:
        Write at most this many wells per plate (the first in plate order); default: all.
    seed:
        Bead randomness (per well, from the seed and the inst_id).
    chip:
        Chip file; default: the bundled ``L1000_EPSILON.R2.chip``.
    params:
        :class:`BeadParams`.
    progress:
        ``progress(wells_done, wells_total)``.
    """
    comp = Path(compendium)
    out = Path(out_dir) if out_dir is not None else comp
    inst = read_table(comp / "inst_info.txt")
    inst.index = pd.Index(inst["inst_id"].astype(str).to_numpy(), dtype=object)
    det = inst["det_plate"].astype(str)
    all_plates = list(pd.unique(det))
    if plates is None:
        chosen = all_plates
    elif isinstance(plates, (int, np.integer)):
        chosen = all_plates[: int(plates)]
    else:
        chosen = [str(p) for p in plates]
        unknown = [p for p in chosen if p not in all_plates]
        if unknown:
            raise ConfigError(f"compendium has no detection plate(s) {unknown[:5]}; it has e.g. {all_plates[:3]}")
    chip_table = read_chip(chip if chip is not None else default_chip_path())
    genes_meta = read_gct(comp / "level3.gctx", meta_only=True).row_meta
    lm = genes_meta.index[parse_flags(genes_meta["pr_is_lm"])]
    layout = analyte_layout(chip_table, list(lm))
    wells_by_plate = {p: list(inst.index[det.to_numpy() == p])[:max_wells] for p in chosen}
    total = sum(len(w) for w in wells_by_plate.values())
    done = n_beads = 0
    truth = []
    gain_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6A1]))
    for plate in chosen:
        cids = wells_by_plate[plate]
        level3 = read_gct(comp / "level3.gctx", rid=list(lm), cid=cids)
        meta = inst.loc[cids]
        wells = meta["rna_well"].astype(str).to_numpy()
        gains = gain_rng.normal(0.0, params.well_gain_sd, len(cids))
        folder = out / LXB_DIR / plate
        folder.mkdir(parents=True, exist_ok=True)
        for j, (cid, well) in enumerate(zip(cids, wells)):
            beads = simulate_well_beads(np.nan_to_num(level3.data[:, j], nan=UNASSIGNED_LOG2), layout, _well_seed(seed, cid), gain=float(gains[j]), params=params)
            write_lxb_beads(folder / f"{plate}_{well}.lxb", beads, keywords={"$SMNO": well, "$PLATEID": plate})
            n_beads += beads.analyte.size
            done += 1
            if progress is not None:
                progress(done, total)
        pmap = pd.DataFrame({f: meta[f].to_numpy() for f in MAP_FIELDS if f in meta.columns and f != "det_well"})
        pmap["det_well"] = wells
        (out / MAP_DIR).mkdir(parents=True, exist_ok=True)
        write_table(pmap, out / MAP_DIR / f"{plate}.map")
        truth.append(pd.DataFrame({"inst_id": cids, "det_plate": plate, "det_well": wells, "gain_log2": np.round(gains, 6)}))
    truth_path = out / BEADS_TRUTH
    write_table(pd.concat(truth, ignore_index=True) if truth else pd.DataFrame(columns=["inst_id"]), truth_path)
    log.info("wrote %d wells (%d beads) of %d plates to %s", total, n_beads, len(chosen), out / LXB_DIR)
    return BeadPlates(out / LXB_DIR, out / MAP_DIR, truth_path, tuple(chosen), total, n_beads)
