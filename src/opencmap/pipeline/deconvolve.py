"""Level 1 -> Level 2: bead deconvolution ("dpeak") of a plate, spec §1.

Each of the 500 Luminex bead colours (analytes) of a well carries two genes whose beads are mixed
2:1 (the high- and low-proportion bead sets, ``dp52``/``dp53`` in the EPSILON pool). For every
(well, analyte) the bead intensities are split into peaks by 1-D k-means
(:mod:`opencmap.kernels.dpeak`); the biggest peak goes to the high-proportion gene, the second to
the low one; then a plate-level discriminant swaps pairs that came out the wrong way round
(:mod:`opencmap.pipeline.flip`). Not-duo analytes (the 10 invariant/calibration analytes and the
two single-gene analytes) are summarised by the median.

Entry points:

* :func:`deconvolve_plate` -- a folder (or list) of LXB / bead-text files + a plate map -> :class:`Level2`
* :func:`deconvolve_wells` -- the same from beads already in memory (``{well: Beads}``)
* :func:`call_peaks` -- peak calling and gene assignment only (no flip correction, no chip)
* :func:`write_level2` -- GEX / COUNT GCTX files and the per-well QC table

Randomness: k-means seeding draws from ``np.random.Generator(SeedSequence([seed, crc32(well)]))``
per well, so a well's result depends only on the seed and its own beads (not on which other wells
are processed, their order or the number of threads).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from opencmap.core.chip import ChipLayout, chip_layout
from opencmap.core.gct import GCT
from opencmap.errors import ConfigError, OpenCMapWarning, PipelineError
from opencmap.io.beads import Beads, default_chip_path, read_bead_text, read_chip, read_plate_map
from opencmap.io.lxb import read_lxb_beads
from opencmap.kernels.dpeak import METHOD_NAMES, PEAK_METHODS, assign_peaks, detect_peaks
from opencmap.pipeline.flip import FlipParams, FlipResult, flip_correct

__all__ = [
    "DpeakParams",
    "PeakCalls",
    "Level2",
    "call_peaks",
    "deconvolve_wells",
    "deconvolve_plate",
    "write_level2",
    "well_from_filename",
    "SimulatedPlate",
    "simulate_plate",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]

#: Bead-count QC (``count_mean``, ``count_cv``) skips analytes 1..10 (CMap's control analytes).
QC_FIRST_ANALYTE = 11

_WELL_RE = re.compile(r"(?:^|[_\-.])([A-Za-z]{1,2})(\d{1,3})\.(?:lxb|txt|csv)$", re.IGNORECASE)


@dataclass(frozen=True)
class DpeakParams:
    """Peak-calling parameters (CMap ``detect_params.txt`` defaults, spec §10).

    ``high_not_duo`` is the upper log2 threshold used for not-duo analytes: CMap calls them
    without its parameter file, so its function default (14) applies instead of ``high``.
    ``method``: ``kmeans_viable`` (CMap's production pipeline, stochastic, seeded) or ``kspeak``
    (kernel-density peaks, deterministic; what CMap's ``sig_dpeak_tool`` runs).
    """

    low: float = 4.0
    high: float = 15.0
    high_not_duo: float = 14.0
    min_bead: int = 20
    max_k: int = 4
    n_init: int = 5
    min_support: float = 10.0
    min_support_pct: float = 10.0
    opt_support_pct: tuple[float, float] = (65.0, 35.0)
    method: str = "kmeans_viable"

    def __post_init__(self) -> None:
        if self.method not in PEAK_METHODS:
            raise ConfigError(f"unknown peak method {self.method!r}; choose one of {PEAK_METHODS}")
        if not self.low < self.high:
            raise ConfigError(f"dpeak window must have low < high, got [{self.low}, {self.high}]")
        if self.max_k < 2 or self.n_init < 1 or self.min_bead < 1:
            raise ConfigError(
                f"dpeak needs max_k >= 2, n_init >= 1, min_bead >= 1; got {self.max_k}, {self.n_init}, {self.min_bead}"
            )

    @classmethod
    def from_detect_params(cls, params: Mapping[str, float | str]) -> DpeakParams:
        """Build from a ``detect_params.txt`` mapping (:func:`opencmap.io.beads.read_detect_params`)."""
        method = str(params.get("dpeak_method", "kmeans_viable"))
        if method not in PEAK_METHODS:
            raise ConfigError(f"dpeak_method {method!r} is not implemented; choose one of {PEAK_METHODS}")
        if float(params.get("subtract_bg", 0) or 0) or float(params.get("merge_close_peaks", 0) or 0):
            raise ConfigError("subtract_bg and merge_close_peaks are not supported (CMap runs with both off)")
        d = cls()
        return cls(
            low=float(params.get("low_exp", d.low)),
            high=float(params.get("high_exp", d.high)),
            min_bead=int(params.get("min_bead", d.min_bead)),
            max_k=int(params.get("max_k", d.max_k)),
            min_support=float(params.get("min_peak_support", d.min_support)),
            min_support_pct=float(params.get("min_peak_support_pct", d.min_support_pct)),
            opt_support_pct=(
                float(params.get("opt_support_pct_hi", d.opt_support_pct[0])),
                float(params.get("opt_support_pct_lo", d.opt_support_pct[1])),
            ),
            method=method,
        )


@dataclass(frozen=True)
class PeakCalls:
    """Peak calls of a plate before flip correction (CMap ``dpXX_RAW`` / ``dpXX_COUNT``).

    Arrays are ``(A, W)`` = analytes (row ``a`` is analyte ``a + 1``) x wells; suffix ``_hi`` is
    the gene on the high-proportion bead set, ``_lo`` the low one.
    """

    wells: tuple[str, ...]
    value_hi: np.ndarray
    value_lo: np.ndarray
    count_hi: np.ndarray
    count_lo: np.ndarray
    totbead: np.ndarray
    ngoodbead: np.ndarray
    npeak: np.ndarray
    method: np.ndarray
    seed: int

    @property
    def n_analytes(self) -> int:
        return int(self.value_hi.shape[0])

    def qc(self) -> pd.DataFrame:
        """Per-well bead QC: ``count_mean``, ``count_cv`` (100 sd/mean, sd with n-1) of the good
        bead counts of analytes 11..A, ``n_beads`` (beads with a valid analyte id)."""
        good = self.ngoodbead[QC_FIRST_ANALYTE - 1 :].astype(np.float64)
        mean = good.mean(axis=0) if good.shape[0] else np.full(len(self.wells), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = good.std(axis=0, ddof=1) if good.shape[0] > 1 else np.full(len(self.wells), np.nan)
            cv = 100.0 * sd / mean
        return pd.DataFrame(
            {"count_mean": mean, "count_cv": cv, "n_beads": self.totbead.sum(axis=0)},
            index=pd.Index(self.wells, dtype=object, name="well"),
        )

    def method_names(self) -> np.ndarray:
        """``(A, W)`` peak-calling method per group: ``missing``, ``median``, ``kmeans_viable`` or ``kspeak``."""
        return np.asarray(METHOD_NAMES, dtype=object)[self.method]


@dataclass(frozen=True)
class Level2:
    """Level 2 of one plate.

    Attributes
    ----------
    gex:
        Expression (linear scale, float32): the landmark genes (rows = Entrez ids, ``pr_type``
        ``LM``) followed by the invariant calibration probes LISS needs (rows = probe ids
        ``CAL01``..``CAL10``, ``pr_type`` ``INV``); columns = ``<plate>:<well>``. Row metadata:
        ``pr_id, pr_gene_id, pr_gene_symbol, pr_gene_title, pr_analyte_id, pr_analyte_num,
        pr_bset_id, pr_lua_id, pr_pool_id, pr_type, pr_is_lm``. Column metadata: the plate map
        fields, ``det_plate, det_well, bead_set, count_mean, count_cv``.
    count:
        Bead support of every ``gex`` value (same layout).
    bead_sets:
        CMap's bead-set layout (``dp52_GEX``, ``dp53_GEX``): one GCT per bead set with every
        analyte of the chip in analyte order (rows = Entrez ids for landmarks, probe ids
        ``CAL01``.. / ``NOT_ASSIGNED`` otherwise; ``pr_id`` in the row metadata), after flip
        correction. This is the input of LISS: ``liss_plate(level2.bead_sets)``.
    bead_set_counts:
        The matching bead counts.
    qc:
        Per-well QC indexed like ``gex`` columns: ``count_mean``, ``count_cv``, ``n_beads``,
        ``n_flipped`` (analytes swapped by flip correction), ``well``.
    peaks:
        The peak calls before flip correction.
    flips:
        Flip-correction diagnostics, or None when it was switched off.
    """

    gex: GCT
    count: GCT
    bead_sets: dict[str, GCT]
    bead_set_counts: dict[str, GCT]
    qc: pd.DataFrame
    peaks: PeakCalls
    flips: FlipResult | None

    @property
    def seed(self) -> int:
        return self.peaks.seed


# ---------------------------------------------------------------------------------------- helpers
def well_from_filename(name: str) -> str | None:
    """Well of a bead file name: ``PLATE_A03.lxb`` / ``A3.lxb`` -> ``"A03"`` (None if no well)."""
    m = _WELL_RE.search(Path(name).name)
    if not m:
        return None
    return f"{m.group(1).upper()}{int(m.group(2)):02d}"


def _well_rng(seed: int, well: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, zlib.crc32(well.encode())]))


def _group_beads(beads: Beads, n_analytes: int, well: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Intensities sorted by analyte, the bead count per analyte (1..n_analytes), and a note
    about beads with unknown analyte ids (None if there are none)."""
    analyte = np.asarray(beads.analyte)
    intensity = np.asarray(beads.intensity, dtype=np.float64)
    if analyte.shape != intensity.shape or analyte.ndim != 1:
        raise PipelineError(
            f"well {well}: analyte ids and intensities differ in shape {analyte.shape} vs {intensity.shape}"
        )
    valid = (analyte >= 1) & (analyte <= n_analytes)
    unknown = ~valid & (analyte != 0)
    note = None
    if unknown.any():
        ids = np.unique(analyte[unknown])
        note = (
            f"well {well} ({beads.source or 'in memory'}): {int(unknown.sum())} beads with analyte ids "
            f"outside 1..{n_analytes} ({ids[:8].tolist()}{' ...' if ids.size > 8 else ''})"
        )
    if not np.isfinite(intensity[valid]).all():
        raise PipelineError(f"well {well} ({beads.source or 'in memory'}): non-finite bead intensities")
    a = analyte[valid]
    order = np.argsort(a, kind="stable")
    counts = np.bincount(a, minlength=n_analytes + 1)[1:]
    return intensity[valid][order], counts, note


def call_peaks(
    wells: Mapping[str, Beads] | Sequence[tuple[str, Beads | Callable[[], Beads]]],
    *,
    seed: int,
    n_analytes: int = 500,
    not_duo: Iterable[int] = (),
    params: DpeakParams | None = None,
    progress: ProgressCallback | None = None,
    chunk_wells: int = 16,
    n_jobs: int | None = None,
) -> PeakCalls:
    """Call and assign peaks for every analyte of every well.

    Parameters
    ----------
    wells:
        ``{well: Beads}`` or a sequence of ``(well, Beads or a zero-argument loader)``; loaders are
        called chunk by chunk so a plate's files need not all be in memory.
    seed:
        Plate seed (per-well generators are derived from it and the well name).
    n_analytes:
        Number of bead colours (500); beads with other ids are ignored with a warning
        (``0`` = unclassified bead, ignored silently, as by CMap).
    not_duo:
        1-based analyte numbers summarised by the median only.
    params:
        :class:`DpeakParams` (CMap defaults when omitted).
    progress:
        Called as ``progress(wells_done, wells_total)``.
    chunk_wells:
        Wells per kernel call (bounds memory: ~0.5 MB per well for the seeding randomness).
    n_jobs:
        Threads running chunks (the kernels release the GIL); default: the number of CPUs.
    """
    params = params or DpeakParams()
    items = list(wells.items()) if isinstance(wells, Mapping) else list(wells)
    names = tuple(w for w, _ in items)
    if len(set(names)) != len(names):
        dup = sorted({w for w in names if names.count(w) > 1})[:5]
        raise PipelineError(f"wells must be unique, got duplicates {dup}")
    n_wells = len(items)
    if n_wells == 0:
        raise PipelineError("no wells to deconvolve")
    force = np.zeros(n_analytes, dtype=np.bool_)
    for a in not_duo:
        if 1 <= int(a) <= n_analytes:
            force[int(a) - 1] = True
    shape = (n_analytes, n_wells)
    fields = ("value_hi", "value_lo", "count_hi", "count_lo", "totbead", "ngoodbead", "npeak", "method")
    out = {k: np.zeros(shape, dtype=np.int64 if k in ("totbead", "ngoodbead", "npeak") else np.float64) for k in fields}
    out["method"] = np.zeros(shape, dtype=np.int8)
    chunks = [items[i : i + chunk_wells] for i in range(0, n_wells, chunk_wells)]
    jobs = n_jobs if n_jobs is not None else max(1, min(os.cpu_count() or 1, len(chunks)))

    def run(block: list) -> dict[str, np.ndarray]:
        return _call_chunk(block, seed, n_analytes, force, params)

    done = 0
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(run, chunks) if jobs > 1 else map(run, chunks)
        for block, res in zip(chunks, results):
            cols = slice(done, done + len(block))
            for k in fields:
                out[k][:, cols] = res[k]
            notes.extend(res["notes"])
            done += len(block)
            if progress is not None:
                progress(done, n_wells)
    if notes:
        warnings.warn(
            f"bead problems in {len(notes)} case(s) (beads with unknown analyte ids are ignored): "
            + "; ".join(notes[:5])
            + (" ..." if len(notes) > 5 else ""),
            OpenCMapWarning,
            stacklevel=2,
        )
    return PeakCalls(wells=names, seed=int(seed), **out)


def _call_chunk(
    block: Sequence[tuple[str, Beads | Callable[[], Beads]]],
    seed: int,
    n_analytes: int,
    force: np.ndarray,
    params: DpeakParams,
) -> dict:
    """Load, group and call the peaks of a few wells; arrays are ``(A, len(block))``."""
    values, counts, uniforms, notes = [], [], [], []
    max_k, n_init = params.max_k, params.n_init
    kspeak = params.method == "kspeak"
    for well, src in block:
        beads = src() if callable(src) else src
        v, c, note = _group_beads(beads, n_analytes, well)
        values.append(v)
        counts.append(c)
        if note:
            notes.append(note)
        if not c.any():
            notes.append(f"well {well} ({beads.source or 'in memory'}) has no classified beads: every value is 1")
        if kspeak:  # deterministic: no seeding randomness needed
            uniforms.append(np.zeros((n_analytes, 1, 1, 1)))
        else:
            uniforms.append(_well_rng(seed, well).random((n_analytes, max_k - 1, n_init, max_k)))
    offsets = np.zeros(len(block) * n_analytes + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=offsets[1:])
    pkexp, pksup, pkpct, npk, tot, ng, med, meth = detect_peaks(
        np.concatenate(values),
        offsets,
        np.concatenate(uniforms),
        np.tile(force, len(block)),
        float(params.low),
        float(params.high),
        float(params.high_not_duo),
        int(params.min_bead),
        int(max_k),
        int(n_init),
        float(params.min_support),
        float(params.min_support_pct),
        float(params.opt_support_pct[0]),
        float(params.opt_support_pct[1]),
        bool(kspeak),
    )
    value, support, _ = assign_peaks(
        pkexp, pksup, pkpct, npk, ng, med, meth, float(params.min_support), float(params.min_support_pct)
    )
    w = len(block)

    def by_well(a: np.ndarray) -> np.ndarray:
        return a.reshape(w, n_analytes).T

    return {
        "value_hi": by_well(value[:, 0]),
        "value_lo": by_well(value[:, 1]),
        "count_hi": by_well(support[:, 0]),
        "count_lo": by_well(support[:, 1]),
        "totbead": by_well(tot),
        "ngoodbead": by_well(ng),
        "npeak": by_well(npk),
        "method": by_well(meth),
        "notes": notes,
    }


_ROW_FIELDS = (
    "pr_id",
    "pr_gene_id",
    "pr_gene_symbol",
    "pr_gene_title",
    "pr_analyte_id",
    "pr_analyte_num",
    "pr_bset_id",
    "pr_lua_id",
    "pr_pool_id",
    "pr_type",
)


def _row_meta(rows: pd.DataFrame) -> pd.DataFrame:
    meta = pd.DataFrame({f: rows[f].to_numpy() for f in _ROW_FIELDS if f in rows.columns})
    return meta


def _bead_set_gct(rows: pd.DataFrame, matrix: np.ndarray, col_meta: pd.DataFrame) -> GCT:
    """All analytes of one bead set; rows = Entrez id for landmarks, probe id otherwise."""
    meta = _row_meta(rows)
    kind = rows["pr_type"].astype(str) if "pr_type" in rows.columns else pd.Series(["LM"] * len(rows))
    is_gene = (kind == "LM").to_numpy() & rows["pr_gene_id"].notna().to_numpy()
    ids = np.where(is_gene, rows["pr_gene_id"].astype(str), rows["pr_id"].astype(str))
    meta.index = pd.Index(ids, dtype=object, name="rid")
    if meta.index.has_duplicates:
        # NOT_ASSIGNED may repeat in other chips: make ids unique with the analyte number
        meta.index = pd.Index(
            [
                f"{p}:{a}" if d else p
                for p, a, d in zip(meta.index, rows["pr_analyte_num"], meta.index.duplicated(keep=False))
            ],
            dtype=object,
            name="rid",
        )
    data = matrix[rows["pr_analyte_num"].to_numpy(dtype=np.int64) - 1]
    return GCT(data, row_meta=meta, col_meta=col_meta)


def _combined_gct(layout: ChipLayout, mats: Mapping[str, np.ndarray], col_meta: pd.DataFrame) -> GCT:
    """Landmarks of both bead sets (Entrez ids), then the invariant probes (once)."""
    lm_parts, inv_parts = [], []
    for b in layout.bead_sets:
        r = layout.rows[b]
        kind = r["pr_type"].astype(str) if "pr_type" in r.columns else pd.Series(["LM"] * len(r))
        gene = r["pr_gene_id"]
        is_lm = (kind == "LM").to_numpy() & gene.notna().to_numpy()
        lm_parts.append((r[is_lm], mats[b]))
        inv_parts.append((r[(kind == "INV").to_numpy()], mats[b]))
    blocks, metas, ids = [], [], []
    for r, m in lm_parts:
        blocks.append(m[r["pr_analyte_num"].to_numpy(dtype=np.int64) - 1])
        meta = _row_meta(r)
        meta["pr_is_lm"] = 1
        metas.append(meta)
        ids.extend(r["pr_gene_id"].astype(str))
    seen: set[str] = set()
    for r, m in inv_parts:
        keep = ~r["pr_id"].astype(str).isin(seen).to_numpy()
        r = r[keep]
        seen.update(r["pr_id"].astype(str))
        blocks.append(m[r["pr_analyte_num"].to_numpy(dtype=np.int64) - 1])
        meta = _row_meta(r)
        meta["pr_is_lm"] = 0
        metas.append(meta)
        ids.extend(r["pr_id"].astype(str))
    row_meta = pd.concat(metas, ignore_index=True)
    row_meta.index = pd.Index(ids, dtype=object, name="rid")
    if row_meta.index.has_duplicates:
        dup = row_meta.index[row_meta.index.duplicated()].unique()[:5].tolist()
        raise ConfigError(f"chip maps gene(s) {dup} to more than one analyte; Level 2 needs one row per gene")
    return GCT(np.vstack(blocks), row_meta=row_meta, col_meta=col_meta)


# ---------------------------------------------------------------------------------------- plate
def deconvolve_wells(
    wells: Mapping[str, Beads] | Sequence[tuple[str, Beads | Callable[[], Beads]]],
    *,
    seed: int,
    chip: str | PathLike[str] | pd.DataFrame | None = None,
    plate: str = "PLATE",
    plate_map: pd.DataFrame | None = None,
    bead_sets: Sequence[str] | None = None,
    not_duo: Iterable[int] | None = None,
    params: DpeakParams | None = None,
    flip: FlipParams | None = FlipParams(),
    progress: ProgressCallback | None = None,
) -> Level2:
    """Deconvolve the beads of one plate's wells into Level 2.

    Parameters
    ----------
    wells:
        ``{well: Beads}`` (or ``(well, loader)`` pairs, see :func:`call_peaks`); well names like
        ``A03``.
    seed:
        Plate seed for the k-means seeding.
    chip:
        Chip table (path or :func:`opencmap.io.beads.read_chip` result): analyte x bead set ->
        probe and gene. Default: ``L1000_EPSILON.R2.chip`` shipped in
        ``opencmap/datasets/resources`` (an error says so when it is not there).
    plate:
        Detection plate name; column ids are ``<plate>:<well>``.
    plate_map:
        Plate map (:func:`opencmap.io.beads.read_plate_map`, indexed by well): column metadata.
    bead_sets:
        ``(high, low)`` bead-set ids; default: the chip's two bead sets in order of appearance
        (``dp52``, ``dp53`` for EPSILON).
    not_duo:
        Analytes summarised by the median; default: derived from the chip (analytes whose two
        bead-set rows are the same probe, e.g. ``CAL01``, or where one is ``NOT_ASSIGNED``),
        which gives CMap's ``[1:10, 11, 499]`` for EPSILON.
    params:
        :class:`DpeakParams`.
    flip:
        :class:`FlipParams`, or None to skip flip correction.
    progress:
        ``progress(wells_done, wells_total)`` during peak calling.
    """
    chip_df = chip if isinstance(chip, pd.DataFrame) else read_chip(chip if chip is not None else default_chip_path())
    layout = chip_layout(chip_df, bead_sets)
    nd = layout.not_duo if not_duo is None else tuple(int(a) for a in not_duo)
    calls = call_peaks(wells, seed=seed, n_analytes=layout.n_analytes, not_duo=nd, params=params, progress=progress)
    if flip is not None:
        fr = flip_correct(calls.value_hi, calls.value_lo, calls.count_hi, calls.count_lo, not_duo=nd, params=flip)
        hi_v, lo_v, hi_c, lo_c = fr.value_hi, fr.value_lo, fr.count_hi, fr.count_lo
        n_flipped = (fr.nflip % 2 == 1).sum(axis=0)
    else:
        fr = None
        hi_v, lo_v, hi_c, lo_c = calls.value_hi, calls.value_lo, calls.count_hi, calls.count_lo
        n_flipped = np.zeros(len(calls.wells), dtype=np.int64)

    cids = [f"{plate}:{w}" for w in calls.wells]
    qc = calls.qc()
    qc["n_flipped"] = n_flipped
    qc.insert(0, "well", qc.index.to_numpy())
    qc.index = pd.Index(cids, dtype=object, name="cid")

    col_meta = _column_meta(calls.wells, cids, plate, plate_map, layout.bead_sets, qc)
    gex_by_set = {layout.bead_sets[0]: hi_v, layout.bead_sets[1]: lo_v}
    cnt_by_set = {layout.bead_sets[0]: hi_c, layout.bead_sets[1]: lo_c}
    return Level2(
        gex=_combined_gct(layout, gex_by_set, col_meta),
        count=_combined_gct(layout, cnt_by_set, col_meta),
        bead_sets={b: _bead_set_gct(layout.rows[b], gex_by_set[b], col_meta) for b in layout.bead_sets},
        bead_set_counts={b: _bead_set_gct(layout.rows[b], cnt_by_set[b], col_meta) for b in layout.bead_sets},
        qc=qc,
        peaks=calls,
        flips=fr,
    )


def _column_meta(
    wells: Sequence[str],
    cids: Sequence[str],
    plate: str,
    plate_map: pd.DataFrame | None,
    bead_sets: Sequence[str],
    qc: pd.DataFrame,
) -> pd.DataFrame:
    if plate_map is not None:
        meta = plate_map.reindex(list(wells)).reset_index(drop=True)
    else:
        meta = pd.DataFrame(index=range(len(wells)))
    meta["det_plate"] = plate
    meta["det_well"] = list(wells)
    meta["bead_set"] = ",".join(bead_sets)
    meta["count_mean"] = qc["count_mean"].to_numpy()
    meta["count_cv"] = qc["count_cv"].to_numpy()
    meta.index = pd.Index(cids, dtype=object, name="cid")
    return meta


def _list_bead_files(lxb_dir_or_files: str | PathLike[str] | Iterable[str | PathLike[str]]) -> list[Path]:
    if isinstance(lxb_dir_or_files, (str, PathLike)):
        root = Path(lxb_dir_or_files)
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".lxb")
            if not files:
                raise PipelineError(f"no .lxb files in {root}; point to the folder of a plate's LXB files")
            return files
        return [root]
    return [Path(p) for p in lxb_dir_or_files]


def _loader(path: Path) -> Callable[[], Beads]:
    def load() -> Beads:
        if not path.exists():
            raise PipelineError(f"bead file {path} does not exist")
        if path.suffix.lower() == ".lxb":
            return read_lxb_beads(path)
        return read_bead_text(path)

    return load


def deconvolve_plate(
    lxb_dir_or_files: str | PathLike[str] | Iterable[str | PathLike[str]],
    plate_map: str | PathLike[str] | pd.DataFrame | None,
    *,
    seed: int,
    chip: str | PathLike[str] | pd.DataFrame | None = None,
    plate: str | None = None,
    bead_sets: Sequence[str] | None = None,
    not_duo: Iterable[int] | None = None,
    params: DpeakParams | None = None,
    flip: FlipParams | None = FlipParams(),
    progress: ProgressCallback | None = None,
) -> Level2:
    """Level 1 -> 2 for one plate: LXB (or bead-text ``.txt``) files + plate map -> :class:`Level2`.

    Parameters
    ----------
    lxb_dir_or_files:
        A folder of ``*.lxb`` files, or a list of ``.lxb`` / bead-text files. The well is taken
        from each file name (``<plate>_<well>.lxb``).
    plate_map:
        The plate map (``.map`` path or :func:`~opencmap.io.beads.read_plate_map` frame), or
        None. When given, only its wells are processed (like CMap's ``include_well``); mapped
        wells without a file are reported with a warning.
    seed:
        Plate seed (record it: reruns with the same seed give identical results).
    chip:
        The chip file (e.g. ``L1000_EPSILON.R2.chip``) or its table; default: the bundled one.
    plate:
        Detection plate name; default: the map's ``det_plate``, else the file-name prefix.

    Other parameters are those of :func:`deconvolve_wells`.
    """
    files = _list_bead_files(lxb_dir_or_files)
    by_well: dict[str, Path] = {}
    for f in files:
        w = well_from_filename(f.name)
        if w is None:
            raise PipelineError(
                f"cannot tell the well of {f.name}; name bead files <plate>_<well>.lxb (e.g. P1_A03.lxb)"
            )
        if w in by_well:
            raise PipelineError(f"two files for well {w}: {by_well[w].name} and {f.name}")
        by_well[w] = f
    pmap = read_plate_map(plate_map) if isinstance(plate_map, (str, PathLike)) else plate_map
    if pmap is not None:
        missing = [w for w in pmap.index if w not in by_well]
        if missing:
            warnings.warn(
                f"{len(missing)} mapped well(s) have no bead file and are skipped: {missing[:10]}",
                OpenCMapWarning,
                stacklevel=2,
            )
        extra = [w for w in by_well if w not in pmap.index]
        if extra:
            log.info("ignoring %d bead files of unmapped wells: %s", len(extra), extra[:10])
        wells = [w for w in pmap.index if w in by_well]
        if not wells:
            raise PipelineError("no bead file matches a well of the plate map; check the file names and det_well")
    else:
        wells = sorted(by_well, key=_well_sort_key)
    if plate is None:
        plate = _plate_name(pmap, [by_well[w] for w in wells])
    return deconvolve_wells(
        [(w, _loader(by_well[w])) for w in wells],
        seed=seed,
        chip=chip,
        plate=plate,
        plate_map=pmap,
        bead_sets=bead_sets,
        not_duo=not_duo,
        params=params,
        flip=flip,
        progress=progress,
    )


def _well_sort_key(well: str) -> tuple[int, str, int]:
    m = re.fullmatch(r"([A-Z]{1,2})(\d+)", well)
    return (len(m.group(1)), m.group(1), int(m.group(2))) if m else (9, well, 0)


def _plate_name(pmap: pd.DataFrame | None, files: Sequence[Path]) -> str:
    if pmap is not None and "det_plate" in pmap.columns:
        names = pmap["det_plate"].dropna().astype(str).unique()
        if len(names) == 1:
            return str(names[0])
    prefixes = {_WELL_RE.sub("", f.name) for f in files}
    if len(prefixes) == 1 and next(iter(prefixes)):
        return next(iter(prefixes))
    return "PLATE"


def write_level2(level2: Level2, folder: str | PathLike[str], *, plate: str | None = None) -> dict[str, Path]:
    """Write a plate's Level 2 into ``folder`` (atomically), CMap-style names:

    ``<plate>_GEX_n<W>x<R>.gctx`` and ``<plate>_COUNT_n<W>x<R>.gctx`` (genes + invariant probes),
    ``<plate>_<bset>_GEX_n<W>x<A>.gctx`` per bead set (the LISS input) and
    ``<plate>_level2_qc.txt``. Returns the paths by kind (``gex``, ``count``, ``gex_<bset>``, ``qc``).
    """
    from opencmap.io import write_gctx, write_table

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if plate is None:
        plate = str(level2.gex.col_meta["det_plate"].iloc[0]) if len(level2.gex.cids) else "PLATE"
    r, w = level2.gex.shape
    paths = {
        "gex": out / f"{plate}_GEX_n{w}x{r}.gctx",
        "count": out / f"{plate}_COUNT_n{w}x{r}.gctx",
    }
    write_gctx(level2.gex, paths["gex"])
    write_gctx(level2.count, paths["count"])
    for bset, g in level2.bead_sets.items():
        paths[f"gex_{bset}"] = out / f"{plate}_{bset}_GEX_n{g.shape[1]}x{g.shape[0]}.gctx"
        write_gctx(g, paths[f"gex_{bset}"])
    paths["qc"] = out / f"{plate}_level2_qc.txt"
    write_table(level2.qc, paths["qc"], index=True)
    return paths


# ---------------------------------------------------------------------------------------- simulation
@dataclass(frozen=True)
class SimulatedPlate:
    """Synthetic bead-level data with known truth (see :func:`simulate_plate`).

    ``wells`` maps well names to :class:`Beads`; ``value_hi`` / ``value_lo`` are the true
    ``(A, W)`` linear expression of each analyte's high- / low-proportion gene (equal for
    not-duo analytes).
    """

    wells: dict[str, Beads]
    value_hi: np.ndarray
    value_lo: np.ndarray
    not_duo: tuple[int, ...]


def simulate_plate(
    n_wells: int,
    rng: np.random.Generator,
    *,
    n_analytes: int = 500,
    beads_per_analyte: float = 80.0,
    hi_fraction: float = 2.0 / 3.0,
    bead_sd: float = 0.25,
    well_sd: float = 0.4,
    outlier_fraction: float = 0.03,
    unclassified_fraction: float = 0.2,
    not_duo: Sequence[int] = (*range(1, 12), 499),
) -> SimulatedPlate:
    """Synthetic L1000 bead data for tests and benchmarks: two log-normal peaks per analyte.

    Each gene has a plate-wide log2 level (uniform in [6, 13]) and varies per well with sd
    ``well_sd``; each analyte draws ~Poisson(``beads_per_analyte``) beads, a ``hi_fraction``
    share from its high-proportion gene, with log2 bead noise ``bead_sd``; ``outlier_fraction``
    of beads are uniform in log2 [4, 14]; ``unclassified_fraction`` extra beads have analyte 0.
    """
    shape = (n_analytes, n_wells)
    level_hi = rng.uniform(6.0, 13.0, n_analytes)[:, None]
    level_lo = rng.uniform(6.0, 13.0, n_analytes)[:, None]
    log_hi = level_hi + rng.normal(0.0, well_sd, shape)
    log_lo = level_lo + rng.normal(0.0, well_sd, shape)
    nd = np.zeros(n_analytes, dtype=bool)
    for a in not_duo:
        if 1 <= a <= n_analytes:
            nd[a - 1] = True
    log_lo[nd] = log_hi[nd]
    wells: dict[str, Beads] = {}
    rows = "ABCDEFGHIJKLMNOP"
    for w in range(n_wells):
        name = f"{rows[(w // 24) % 16]}{w % 24 + 1:02d}" if n_wells <= 384 else f"W{w + 1:04d}"
        n_beads = rng.poisson(beads_per_analyte, n_analytes)
        n_hi = rng.binomial(n_beads, np.where(nd, 1.0, hi_fraction))
        analyte = np.repeat(np.arange(1, n_analytes + 1, dtype=np.int32), n_beads)
        is_hi = np.concatenate([np.arange(n) < h for n, h in zip(n_beads, n_hi)]) if analyte.size else np.zeros(0, bool)
        centre = np.where(is_hi, log_hi[analyte - 1, w], log_lo[analyte - 1, w])
        x = centre + rng.normal(0.0, bead_sd, analyte.size)
        out = rng.random(analyte.size) < outlier_fraction
        x[out] = rng.uniform(4.0, 14.0, int(out.sum()))
        n_unc = int(unclassified_fraction * analyte.size)
        analyte = np.concatenate([analyte, np.zeros(n_unc, dtype=np.int32)])
        x = np.concatenate([x, rng.uniform(4.0, 14.0, n_unc)])
        order = rng.permutation(analyte.size)
        wells[name] = Beads(analyte[order], np.round(2.0 ** x[order]), f"simulated:{name}")
    return SimulatedPlate(wells, 2.0**log_hi, 2.0**log_lo, tuple(int(a) for a in not_duo))
