"""Miniature, faithful replicas of the public LINCS L1000 Level 5 releases, made by the tests.

Each ``write_*`` function writes into a folder the files of one release with their real names,
compression, HDF5 layout, column names, column order and missing-value conventions, but only
~100 signatures. The signature values come from the synthetic compendium's generative model
(:mod:`opencmap.datasets`): every compound is a real generator perturbagen with a known MOA
class, so a query made from a class's program (:func:`planted_query`) must rank that class's
compounds first. Genes are the real 12,328 AIG genes (Entrez ids, symbols, LM/BING/AIG spaces)
bundled in ``opencmap/datasets/resources/genes_n12328.tsv.gz`` (built from
``shared/data/genes/LINCSGeneSpaceSub.txt`` and ``geneinfo.tsv.gz``).

Release layouts and where each name and column list was confirmed (public code that reads the
real files; found with the project's code search):

GSE92742 (GEO, every file ``.gz``; ``-666`` = missing)
    ``GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n473647x12328.gctx.gz``,
    ``GSE92742_Broad_LINCS_{sig_info,sig_metrics,gene_info,pert_info,cell_info,inst_info}.txt.gz``
    -- djhshih/analysis-cmap ``phase1/get.sh`` (the GEO file list);
    Lauffenburger-Lab/DrugsANNSignaling ``data/README.md``.
    ``sig_metrics`` columns by position (``sig_id, pert_id, pert_iname, pert_type,
    distil_cc_q75, ..., tas (9th), ..., distil_nsample (last)``) and ``pert_info``
    (``pert_id, pert_iname, pert_type, is_touchstone, ...``): chemicalchecker's L1000
    preprocess script (reads them positionally); ``sig_info`` ``sig_id, pert_id, pert_iname,
    pert_type, cell_id, ...``, ``sig_metrics`` ``tas, distil_cc_q75, pct_self_rank_q25,
    is_exemplar``: a GEO Level 5 ingestion module (``lincs`` package, "LINCS L1000 Level 5
    (MODZ consensus z-score) ingestion from GCTX"). ``gene_info``: ``pr_gene_id,
    pr_gene_symbol, pr_gene_title, pr_is_lm, pr_is_bing`` (same module). ``cell_info``: the
    GSE92742 columns of the bundled ``cells_n25.tsv``. Dose strings ``"10 µM"``, times ``"24 h"``.
    GEO GCTX files carry only ``/0/META/ROW/id`` and ``/0/META/COL/id`` (no other metadata).
GSE70138 (GEO, ``.gz``, dated names)
    ``GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx.gz``,
    ``..._sig_info_2017-03-06``, ``..._sig_metrics_2017-03-06``, ``..._gene_info_2017-03-06``,
    ``..._pert_info_2017-03-06``, ``..._inst_info_2017-03-06``, ``..._cell_info_2017-04-28``
    -- a GEO reader listing all seven (``pd.read_table('./source/GSE70138/...')``) and a
    ``lincs_manifest()`` R function with the GEO URLs. ``sig_info`` has no ``pert_dose`` /
    ``pert_time`` columns (a "sig_info_augment" helper adds them for unification);
    ``sig_metrics`` starts with an unnamed index column (chemicalchecker splits ``[1:]``).
    Dose strings ``"10.0 um"``.
LINCS 2020 "beta" (CLUE bucket ``macchiato.clue.io/builds/LINCS2020/``, plain text, empty = missing)
    ``level5_beta_trt_cp_n720216x12328.gctx`` (compounds only; controls in
    ``level5_beta_ctl_n58022x12328.gctx``), ``siginfo_beta.txt``, ``geneinfo_beta.txt``,
    ``compoundinfo_beta.txt``, ``cellinfo_beta.txt``, ``instinfo_beta.txt`` -- readers of
    ``siginfo_beta``/``geneinfo_beta``/``level5_beta_trt_cp_n720216x12328.gctx`` (a UniProt
    mapping script, ``gene_info`` indexed by ``gene_id``), a shell script with the CLUE URLs of
    ``compoundinfo_beta.txt`` and ``geneinfo_beta.txt``, R filters on ``is_exemplar_sig``,
    ``qc_pass``, ``nsample``, ``tas``, ``cmap_name``, ``pert_idose``, ``pert_itime``,
    ``cell_iname`` and ``feature_space == "landmark"``, and a CLUE web client's export field
    list (the ``siginfo_beta`` column order used below). ``compoundinfo_beta``: ``pert_id,
    cmap_name, target, moa, canonical_smiles, inchi_key, compound_aliases``, one row per
    compound x target.
"""

from __future__ import annotations

import functools
import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from opencmap.datasets import build_model, cell_table, gene_table, spec_for

__all__ = [
    "GSE92742_FILES",
    "GSE70138_FILES",
    "LINCS2020_FILES",
    "Planted",
    "planted_query",
    "write_gse92742",
    "write_gse70138",
    "write_lincs2020",
]

GSE92742_FILES = {
    "level5": "GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n473647x12328.gctx.gz",
    "sig_info": "GSE92742_Broad_LINCS_sig_info.txt.gz",
    "sig_metrics": "GSE92742_Broad_LINCS_sig_metrics.txt.gz",
    "gene_info": "GSE92742_Broad_LINCS_gene_info.txt.gz",
    "pert_info": "GSE92742_Broad_LINCS_pert_info.txt.gz",
    "cell_info": "GSE92742_Broad_LINCS_cell_info.txt.gz",
    "inst_info": "GSE92742_Broad_LINCS_inst_info.txt.gz",
}
GSE70138_FILES = {
    "level5": "GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx.gz",
    "sig_info": "GSE70138_Broad_LINCS_sig_info_2017-03-06.txt.gz",
    "sig_metrics": "GSE70138_Broad_LINCS_sig_metrics_2017-03-06.txt.gz",
    "gene_info": "GSE70138_Broad_LINCS_gene_info_2017-03-06.txt.gz",
    "pert_info": "GSE70138_Broad_LINCS_pert_info_2017-03-06.txt.gz",
    "cell_info": "GSE70138_Broad_LINCS_cell_info_2017-04-28.txt.gz",
    "inst_info": "GSE70138_Broad_LINCS_inst_info_2017-03-06.txt.gz",
}
LINCS2020_FILES = {
    "level5": "level5_beta_trt_cp_n720216x12328.gctx",
    "level5_ctl": "level5_beta_ctl_n58022x12328.gctx",
    "sig_info": "siginfo_beta.txt",
    "gene_info": "geneinfo_beta.txt",
    "compound_info": "compoundinfo_beta.txt",
    "cell_info": "cellinfo_beta.txt",
    "inst_info": "instinfo_beta.txt",
}

_GSE92742_SIG_INFO = ["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose", "pert_dose_unit",
                      "pert_idose", "pert_time", "pert_time_unit", "pert_itime", "distil_id"]
_GSE92742_SIG_METRICS = ["sig_id", "pert_id", "pert_iname", "pert_type", "distil_cc_q75", "distil_ss",
                         "ngenes_modulated_up_lm", "ngenes_modulated_dn_lm", "tas", "pct_self_rank_q25",
                         "is_exemplar", "distil_nsample"]
_GEO_PERT_INFO = ["pert_id", "pert_iname", "pert_type", "is_touchstone", "inchi_key_prefix", "inchi_key",
                  "canonical_smiles", "pubchem_cid"]
_GEO_INST_INFO = ["inst_id", "rna_plate", "rna_well", "pert_id", "pert_iname", "pert_type", "pert_dose",
                  "pert_dose_unit", "pert_time", "pert_time_unit", "cell_id"]
_GSE70138_SIG_INFO = ["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_idose", "pert_itime", "distil_id"]
_GSE70138_SIG_METRICS = ["", "sig_id", "distil_cc_q75", "distil_ss", "ngenes_modulated_up_lm",
                         "ngenes_modulated_dn_lm", "pert_type", "tas", "pct_self_rank_q25", "is_exemplar",
                         "distil_nsample"]
_BETA_SIG_INFO = ["bead_batch", "nearest_dose", "pert_dose", "pert_dose_unit", "pert_idose", "pert_time",
                  "pert_itime", "pert_time_unit", "cell_mfc_name", "pert_mfc_id", "nsample", "cc_q75", "ss_ngene",
                  "tas", "pct_self_rank_q25", "wt", "median_recall_rank_spearman", "median_recall_rank_wtcs_50",
                  "median_recall_score_spearman", "median_recall_score_wtcs_50", "batch_effect_tstat",
                  "batch_effect_tstat_pct", "is_hiq", "qc_pass", "pert_id", "sig_id", "pert_type", "cell_iname",
                  "det_wells", "det_plates", "distil_ids", "build_name", "project_code", "cmap_name",
                  "is_exemplar_sig", "is_ncs_sig", "is_null_sig"]
_BETA_GENE_INFO = ["gene_id", "gene_symbol", "ensembl_id", "gene_title", "gene_type", "src", "feature_space"]
_BETA_COMPOUND_INFO = ["pert_id", "cmap_name", "target", "moa", "canonical_smiles", "inchi_key", "compound_aliases"]
_BETA_CELL_INFO = ["cell_iname", "cellosaurus_id", "donor_age", "donor_age_death", "donor_disease_age_onset",
                   "doubling_time", "growth_medium", "provider_catalog_id", "feature_id", "cell_type",
                   "donor_ethnicity", "donor_sex", "donor_tumor_phase", "cell_lineage", "primary_disease",
                   "subtype", "provider_name", "growth_pattern", "ccle_name", "cell_alias"]
_BETA_INST_INFO = ["bead_batch", "nearest_dose", "pert_dose", "pert_dose_unit", "pert_idose", "pert_time",
                   "pert_itime", "pert_time_unit", "cell_mfc_name", "pert_mfc_id", "det_plate", "det_well",
                   "rna_plate", "rna_well", "count_mean", "count_cv", "qc_f_logp", "qc_iqr", "qc_slope", "pert_id",
                   "sample_id", "pert_type", "cell_iname", "qc_pass", "dyn_range", "inv_level_10", "build_name",
                   "failure_mode", "project_code", "cmap_name"]

#: MOA classes whose compounds the replicas profile (the first is the planted mechanism)
PLANTED_MOA = "HDAC inhibitor"
_MOAS = ("HDAC inhibitor", "EGFR inhibitor", "PI3K inhibitor", "Topoisomerase inhibitor", "CDK inhibitor",
         "Glucocorticoid receptor agonist")
_SIGNAL = 4.0  # signal-to-noise of an active signature (z-score units, like real MODZ signatures)


@dataclass(frozen=True)
class Planted:
    """The planted mechanism: a query by gene symbol and what must answer it."""

    up: tuple[str, ...]
    down: tuple[str, ...]
    moa: str
    pert_ids: tuple[str, ...]
    pert_inames: tuple[str, ...]


@functools.cache
def _model():  # type: ignore[no-untyped-def]
    return build_model(spec_for("tiny", n_inferred=None), seed=0)


@functools.cache
def _compounds() -> pd.DataFrame:
    """The generator's compounds of :data:`_MOAS` (active ones), one row each."""
    perts = _model().design.perts
    cp = perts[(perts["pert_type"] == "trt_cp") & perts["moa"].isin(_MOAS) & (perts["is_active"] == 1)].copy()
    cp["row"] = cp.index
    return cp.groupby("moa", sort=False).head(2).reset_index(drop=True)


def _genes() -> pd.DataFrame:
    return gene_table()  # landmarks first, then inferred; Entrez ids as text


def planted_query(n: int = 50) -> Planted:
    """Top/bottom ``n`` BING genes (symbols) of the planted class's mean true signature."""
    model, cp, genes = _model(), _compounds(), _genes()
    members = cp[cp["moa"] == PLANTED_MOA]
    mean = np.mean([model.true_signature(int(r), c, 10.0, 24.0) for r in members["row"] for c in ("A375", "MCF7", "PC3")], axis=0)
    bing = np.flatnonzero(genes["pr_is_bing"].to_numpy() == 1)
    order = bing[np.argsort(-mean[bing], kind="stable")]
    sym = genes["pr_gene_symbol"].to_numpy()
    return Planted(
        up=tuple(sym[order[:n]]), down=tuple(sym[order[::-1][:n]]), moa=PLANTED_MOA,
        pert_ids=tuple(members["pert_id"]), pert_inames=tuple(members["pert_iname"]),
    )


def _signature(row: int | None, cell: str, dose: float, time: float, rng: np.random.Generator) -> np.ndarray:
    """A Level 5-like signature (12,328 genes, bundled order): scaled true effect + unit noise."""
    noise = rng.standard_normal(len(_genes()))
    if row is None:
        return noise.astype(np.float32)
    effect = _model().true_signature(int(row), cell, dose, time)
    sd = effect.std()
    return (noise + (_SIGNAL * effect / sd if sd > 0 else 0.0)).astype(np.float32)


# ---------------------------------------------------------------------------------- writers
def _write_gctx_geo(path: Path, values: np.ndarray, rids: list[str], cids: list[str], *, gz: bool) -> None:
    """A GCTX in CMap's layout (as the real files under shared/data): ``version`` attribute,
    ``/0/DATA/0/matrix`` float32 (n_cols, n_rows) chunked by whole columns, ids as fixed-length
    bytes (gzip-compressed), and no metadata besides the ids (GEO Level 5 files carry none).
    With ``gz`` the file is gzip-compressed whole, as GEO serves it."""
    plain = path.with_suffix("") if gz else path
    with h5py.File(plain, "w") as h5:
        h5.attrs["version"] = np.bytes_(b"GCTX1.0")
        ds = h5.create_dataset("0/DATA/0/matrix", data=values, chunks=(min(len(cids), 256), len(rids)))
        ds.attrs["name"] = np.bytes_(b"unnamed")
        ds.attrs["row_major"] = np.int32(0)
        h5.create_dataset("0/META/ROW/id", data=np.array(rids, dtype=np.bytes_), compression="gzip")
        h5.create_dataset("0/META/COL/id", data=np.array(cids, dtype=np.bytes_), compression="gzip")
    if gz:
        with open(plain, "rb") as src, gzip.open(path, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
        plain.unlink()


def _write_text(path: Path, frame: pd.DataFrame, columns: list[str]) -> None:
    """A tab-separated table with exactly ``columns`` (in order), ``.gz`` by file name."""
    text = "\t".join(columns) + "\n" + "".join("\t".join(str(v) for v in row) + "\n" for row in frame[columns].itertuples(index=False))
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    else:
        path.write_bytes(data)


def _fmt(x: float) -> str:
    return f"{x:g}"


def _design(cells: tuple[str, ...], doses: tuple[float, ...], times: tuple[int, ...], n_controls: int, seed: int):  # type: ignore[no-untyped-def]
    """Signature rows (dicts) and values for every compound x cell x dose x time plus controls."""
    rng = np.random.default_rng(seed)
    rows, values = [], []
    for cell in cells:
        for time in times:
            for cpd in _compounds().itertuples():
                for dose in doses:
                    rows.append({"pert_id": cpd.pert_id, "pert_iname": cpd.pert_iname, "pert_type": "trt_cp",
                                 "cell_id": cell, "dose": dose, "time": time, "moa": cpd.moa, "target": cpd.target})
                    values.append(_signature(cpd.row, cell, dose, float(time), rng))
            for k in range(n_controls):
                rows.append({"pert_id": "DMSO", "pert_iname": "DMSO", "pert_type": "ctl_vehicle", "cell_id": cell,
                             "dose": np.nan, "time": time, "moa": "", "target": "", "k": k})
                values.append(_signature(None, cell, 0.0, float(time), rng))
    info = pd.DataFrame(rows)
    return info, np.vstack(values)


def _exemplar(info: pd.DataFrame) -> np.ndarray:
    """One exemplar per perturbagen x cell: the highest dose at the latest time (first control)."""
    key = info["pert_id"] + "|" + info["cell_id"]
    order = info.assign(_d=info["dose"].fillna(-1), _t=info["time"]).sort_values(["_d", "_t"], ascending=False, kind="stable")
    first = ~order.assign(_k=key).duplicated("_k")
    out = np.zeros(len(info), dtype=int)
    out[order.index[first.to_numpy()]] = 1
    return out


def _gene_rows() -> tuple[list[str], pd.DataFrame]:
    genes = _genes()
    return genes["pr_gene_id"].tolist(), genes


def _geo_tables(folder: Path, files: dict[str, str], info: pd.DataFrame, *, plate: str, dated: bool) -> None:
    genes = _genes()
    _write_text(folder / files["gene_info"], genes, ["pr_gene_id", "pr_gene_symbol", "pr_gene_title", "pr_is_lm", "pr_is_bing"])
    cells = cell_table(sorted(set(info["cell_id"])))
    _write_text(folder / files["cell_info"], cells, list(cells.columns.drop("is_touchstone")))
    perts = info.drop_duplicates("pert_id").copy()
    perts["is_touchstone"] = np.where(perts["pert_type"] == "trt_cp", 1, 0)
    perts["inchi_key_prefix"] = "-666"
    perts["inchi_key"] = "-666"
    perts["canonical_smiles"] = "-666"
    perts["pubchem_cid"] = "-666"
    _write_text(folder / files["pert_info"], perts, _GEO_PERT_INFO)
    inst = []
    for r in info.itertuples():
        for rep in range(1, 4):
            inst.append({"inst_id": f"{r.distil_id.split('|')[rep - 1]}", "rna_plate": f"{plate}_{r.cell_id}_{r.time}H_X{rep}",
                         "rna_well": r.sig_id.rsplit(":", 1)[-1][:3] if dated else "A03", "pert_id": r.pert_id,
                         "pert_iname": r.pert_iname, "pert_type": r.pert_type, "pert_dose": r.pert_dose,
                         "pert_dose_unit": r.pert_dose_unit, "pert_time": r.time, "pert_time_unit": "h", "cell_id": r.cell_id})
    _write_text(folder / files["inst_info"], pd.DataFrame(inst), _GEO_INST_INFO)


def _metrics(info: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    m = info.copy()
    ctl = (m["pert_type"] != "trt_cp").to_numpy()
    m["distil_cc_q75"] = np.round(rng.uniform(0.2, 0.9, len(m)), 4)
    m["distil_ss"] = np.round(rng.uniform(2, 8, len(m)), 4)
    m["ngenes_modulated_up_lm"] = rng.integers(5, 80, len(m))
    m["ngenes_modulated_dn_lm"] = rng.integers(5, 80, len(m))
    m["tas"] = np.round(np.sqrt(m["distil_ss"] * m["distil_cc_q75"] / 8), 4)
    m["pct_self_rank_q25"] = np.round(rng.uniform(0, 10, len(m)), 4)
    m["is_exemplar"] = _exemplar(info)
    m["distil_nsample"] = 3
    for col in ("distil_cc_q75", "distil_ss", "tas", "pct_self_rank_q25"):
        m[col] = m[col].astype(object)
        m.loc[ctl, col] = "-666"  # GEO: no replicate metrics for the vehicle signatures
    return m


def write_gse92742(folder: str | Path, *, gz: bool = True) -> dict[str, Path]:
    """Write the GSE92742 replica (3 Touchstone cells, 6 h / 24 h, 2 doses, DMSO controls)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(GSE92742_FILES) if gz else {k: v.removesuffix(".gz") for k, v in GSE92742_FILES.items()}
    info, values = _design(("A375", "MCF7", "PC3"), (10.0, 1.11), (6, 24), 2, seed=92742)
    plate = "CPC006"
    info["sig_id"] = [
        f"{plate}_{r.cell_id}_{r.time}H:{r.pert_id}-001-01-1:{_fmt(r.dose)}" if r.pert_type == "trt_cp"
        else f"{plate}_{r.cell_id}_{r.time}H:DMSO:{r.k}"
        for r in info.itertuples()
    ]
    cp = info["pert_type"] == "trt_cp"
    info["pert_dose"] = np.where(cp, info["dose"].map(_fmt), "-666")
    info["pert_dose_unit"] = np.where(cp, "µM", "-666")
    info["pert_idose"] = np.where(cp, info["dose"].map(_fmt) + " µM", "-666")
    info["pert_time"] = info["time"]
    info["pert_time_unit"] = "h"
    info["pert_itime"] = info["time"].astype(str) + " h"
    info["distil_id"] = [f"{plate}_{r.cell_id}_{r.time}H_X1_B3:{w}|{plate}_{r.cell_id}_{r.time}H_X2_B3:{w}|{plate}_{r.cell_id}_{r.time}H_X3_B3:{w}"
                         for r, w in zip(info.itertuples(), [f"{chr(65 + i // 24 % 16)}{i % 24 + 1:02d}" for i in range(len(info))], strict=True)]
    rids, _ = _gene_rows()
    _write_gctx_geo(folder / files["level5"], values, rids, info["sig_id"].tolist(), gz=gz)
    _write_text(folder / files["sig_info"], info, _GSE92742_SIG_INFO)
    _write_text(folder / files["sig_metrics"], _metrics(info, np.random.default_rng(1)), _GSE92742_SIG_METRICS)
    _geo_tables(folder, files, info, plate=plate, dated=False)
    return {k: folder / v for k, v in files.items()}


def write_gse70138(folder: str | Path, *, gz: bool = True) -> dict[str, Path]:
    """Write the GSE70138 replica (A375, MCF7, A549; 24 h; doses as ``"10.0 um"``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(GSE70138_FILES) if gz else {k: v.removesuffix(".gz") for k, v in GSE70138_FILES.items()}
    info, values = _design(("A375", "MCF7", "A549"), (10.0, 1.11), (24,), 2, seed=70138)
    plate = "REP.A001"
    wells = [f"{chr(65 + i // 24 % 16)}{i % 24 + 1:02d}" for i in range(len(info))]
    info["sig_id"] = [f"{plate}_{r.cell_id}_{r.time}H:{w}" for r, w in zip(info.itertuples(), wells, strict=True)]
    cp = info["pert_type"] == "trt_cp"
    info["pert_dose"] = np.where(cp, info["dose"].map(lambda d: f"{d:.1f}" if d >= 1 else f"{d:.2f}"), "-666")
    info["pert_dose_unit"] = np.where(cp, "um", "-666")
    info["pert_idose"] = np.where(cp, info["pert_dose"] + " um", "-666")
    info["pert_itime"] = info["time"].astype(str) + " h"
    info["distil_id"] = [f"{plate}_{r.cell_id}_{r.time}H_X1_B20:{w}|{plate}_{r.cell_id}_{r.time}H_X2_B20:{w}|{plate}_{r.cell_id}_{r.time}H_X3_B20:{w}"
                         for r, w in zip(info.itertuples(), wells, strict=True)]
    rids, _ = _gene_rows()
    _write_gctx_geo(folder / files["level5"], values, rids, info["sig_id"].tolist(), gz=gz)
    _write_text(folder / files["sig_info"], info, _GSE70138_SIG_INFO)
    metrics = _metrics(info, np.random.default_rng(2))
    metrics[""] = np.arange(len(metrics))  # the unnamed leading index column of the real file
    _write_text(folder / files["sig_metrics"], metrics, _GSE70138_SIG_METRICS)
    _geo_tables(folder, files, info, plate=plate, dated=True)
    return {k: folder / v for k, v in files.items()}


def write_lincs2020(folder: str | Path, *, controls: bool = True) -> dict[str, Path]:
    """Write the LINCS 2020 beta replica (A375, MCF7, HT29, PC3; 6 h / 24 h; empty = missing).

    The trt_cp matrix holds compounds only; ``controls`` also writes the ctl matrix. Its rows are
    in the bundled order, ``geneinfo_beta.txt`` lists the genes sorted by symbol (a table read by
    position would label them wrongly, e.g. Entrez 5720 PSME1).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = dict(LINCS2020_FILES)
    info, values = _design(("A375", "MCF7", "HT29", "PC3"), (10.0, 1.11), (6, 24), 2, seed=2020)
    info["sig_id"] = [
        f"CPC006_{r.cell_id}_{r.time}H:{r.pert_id}:{_fmt(r.dose)}" if r.pert_type == "trt_cp"
        else f"CPC006_{r.cell_id}_{r.time}H:DMSO:{r.k}"
        for r in info.itertuples()
    ]
    cp = (info["pert_type"] == "trt_cp").to_numpy()
    n = len(info)
    rng = np.random.default_rng(3)
    info["cmap_name"] = info["pert_iname"]
    info["cell_iname"] = info["cell_id"]
    info["bead_batch"] = "b17"
    info["nearest_dose"] = np.where(cp, info["dose"].map(_fmt), "")
    info["pert_dose"] = np.where(cp, info["dose"].map(_fmt), "")
    info["pert_dose_unit"] = np.where(cp, "uM", "")
    info["pert_idose"] = np.where(cp, info["dose"].map(_fmt) + " uM", "")
    info["pert_time"] = info["time"].astype(float).map(_fmt)
    info["pert_itime"] = info["time"].astype(str) + " h"
    info["pert_time_unit"] = "h"
    info["cell_mfc_name"] = info["cell_id"]
    info["pert_mfc_id"] = np.where(cp, info["pert_id"] + "-001-01-1", "")
    info["nsample"] = 3
    info["cc_q75"] = np.round(rng.uniform(0.1, 0.9, n), 4)
    info["ss_ngene"] = rng.integers(5, 300, n)
    info["tas"] = np.round(rng.uniform(0.05, 0.7, n), 4)
    info["pct_self_rank_q25"] = np.round(rng.uniform(0, 10, n), 4)
    info["wt"] = "0.33,0.33,0.34"
    for col in ("median_recall_rank_spearman", "median_recall_rank_wtcs_50", "median_recall_score_spearman",
                "median_recall_score_wtcs_50", "batch_effect_tstat", "batch_effect_tstat_pct"):
        info[col] = ""  # empty in many real rows
    info["is_hiq"] = 1
    info["qc_pass"] = np.where(np.arange(n) % 7 == 3, 0, 1)
    info["det_wells"] = "A03|A04|A05"
    info["det_plates"] = [f"CPC006_{c}_{t}H_X1_B3|CPC006_{c}_{t}H_X2_B3" for c, t in zip(info["cell_id"], info["time"], strict=True)]
    info["distil_ids"] = info["sig_id"]
    info["build_name"] = ""
    info["project_code"] = "CPC"
    info["is_exemplar_sig"] = _exemplar(info)
    info["is_ncs_sig"] = np.where(cp, 1, 0)
    info["is_null_sig"] = np.where(cp, 0, 1)
    rids, genes = _gene_rows()
    trt = np.flatnonzero(cp)
    ctl = np.flatnonzero(~cp)
    _write_gctx_geo(folder / files["level5"], values[trt], rids, info["sig_id"].iloc[trt].tolist(), gz=False)
    if controls:
        _write_gctx_geo(folder / files["level5_ctl"], values[ctl], rids, info["sig_id"].iloc[ctl].tolist(), gz=False)
    else:
        files.pop("level5_ctl")
    # siginfo_beta lists every signature of the release (all matrices), here trt_cp + controls
    _write_text(folder / files["sig_info"], info, _BETA_SIG_INFO)
    g = genes.rename(columns={"pr_gene_id": "gene_id", "pr_gene_symbol": "gene_symbol", "pr_gene_title": "gene_title"})
    g["ensembl_id"] = ""  # not bundled; empty as missing values are in beta tables
    g["gene_type"] = "protein-coding"
    g["src"] = "NCBI"
    g["feature_space"] = np.where(g["pr_is_lm"] == 1, "landmark", np.where(g["pr_is_bing"] == 1, "best inferred", "inferred"))
    g = g.sort_values("gene_symbol", kind="stable")
    _write_text(folder / files["gene_info"], g, _BETA_GENE_INFO)
    comp = []
    for cpd in _compounds().itertuples():
        targets = [cpd.target, "HDAC1"] if cpd.moa == PLANTED_MOA else [cpd.target if cpd.target != "-666" else ""]
        for t in targets:  # one row per compound x target, as the real table
            comp.append({"pert_id": cpd.pert_id, "cmap_name": cpd.pert_iname, "target": t, "moa": cpd.moa,
                         "canonical_smiles": "", "inchi_key": "", "compound_aliases": ""})
    comp.append({"pert_id": "DMSO", "cmap_name": "DMSO", "target": "", "moa": "", "canonical_smiles": "CS(C)=O",
                 "inchi_key": "IAZDPXIOMUYVGZ-UHFFFAOYSA-N", "compound_aliases": ""})
    _write_text(folder / files["compound_info"], pd.DataFrame(comp), _BETA_COMPOUND_INFO)
    cells = cell_table(sorted(set(info["cell_id"])))
    cb = pd.DataFrame({c: "" for c in _BETA_CELL_INFO}, index=range(len(cells)))
    cb["cell_iname"] = cells["cell_id"].to_numpy()
    cb["cell_type"] = np.where(cells["sample_type"].to_numpy() == "tumor", "tumor", "normal")
    cb["donor_sex"] = ["Female" if s == "F" else "Male" if s == "M" else "" for s in cells["donor_sex"]]
    cb["cell_lineage"] = cells["primary_site"].to_numpy()
    cb["subtype"] = cells["subtype"].to_numpy()
    cb["provider_catalog_id"] = cells["provider_catalog_id"].replace("-666", "").to_numpy()
    _write_text(folder / files["cell_info"], cb, _BETA_CELL_INFO)
    inst = []
    for r in info.itertuples():
        for rep in range(1, 3):
            inst.append({**{c: "" for c in _BETA_INST_INFO}, "bead_batch": "b17", "pert_dose": r.pert_dose,
                         "pert_dose_unit": r.pert_dose_unit, "pert_idose": r.pert_idose, "pert_time": r.pert_time,
                         "pert_itime": r.pert_itime, "pert_time_unit": "h", "cell_mfc_name": r.cell_id,
                         "pert_id": r.pert_id, "sample_id": f"{r.sig_id}_X{rep}", "pert_type": r.pert_type,
                         "cell_iname": r.cell_id, "qc_pass": 1, "project_code": "CPC", "cmap_name": r.cmap_name})
    _write_text(folder / files["inst_info"], pd.DataFrame(inst), _BETA_INST_INFO)
    return {k: folder / v for k, v in files.items()}
