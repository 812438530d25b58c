"""The public LINCS L1000 releases: the one place that knows each release's files and columns.

Every release names and spells its tables differently; this module maps them onto one set of
*canonical* columns, which the rest of opencmap uses:

====================  =====================================================================
signatures            ``sig_id, pert_id, pert_iname, pert_type, cell_id, pert_dose`` (float),
                      ``pert_dose_unit`` (``uM``, ``nM``, ``%``, ...), ``pert_idose`` (``"10 uM"``),
                      ``pert_time`` (float), ``pert_time_unit`` (``h``), ``pert_itime`` (``"24 h"``),
                      ``is_exemplar_sig`` (0/1), ``tas``, ``qc_pass`` (0/1), ``moa``, ``target``
                      (``|``-joined), ``is_touchstone``, cell annotations (``cell_type``,
                      ``primary_site``, ``subtype``, ...) and ``release``
genes                 ``pr_gene_id`` (Entrez id, text), ``pr_gene_symbol``, ``pr_gene_title``,
                      ``pr_is_lm``, ``pr_is_bing`` (0/1) and ``feature_space``
                      (``landmark`` / ``best inferred`` / ``inferred``)
====================  =====================================================================

Releases (:data:`RELEASES`; names and columns confirmed from public code that reads the real
files, see ``tests/releases/replicas.py``):

``GSE92742``  GEO, CMap LINCS phase I: ``GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n473647x12328.gctx``
              and ``GSE92742_Broad_LINCS_{sig_info,sig_metrics,gene_info,pert_info,cell_info,
              inst_info}.txt`` (all ``.gz`` as served). Exemplar flags and TAS live in
              ``sig_metrics`` (``is_exemplar``, ``tas``); ``-666`` = missing; doses ``"10 µM"``.
``GSE70138``  GEO, phase II: the same tables with dates in their names
              (``..._Level5_COMPZ_n118050x12328_2017-03-06.gctx``, ``..._cell_info_2017-04-28``);
              ``sig_info`` has only ``pert_idose``/``pert_itime`` (``"10.0 um"``, ``"24 h"``) and
              ``sig_metrics`` starts with an unnamed index column (dropped here).
``LINCS2020`` CLUE "beta": ``level5_beta_trt_cp_n720216x12328.gctx`` (compounds only; the
              controls are in ``level5_beta_ctl_n58022x12328.gctx``), ``siginfo_beta.txt``
              (``cmap_name`` = name, ``cell_iname`` = cell line, ``is_exemplar_sig``, ``tas``,
              ``qc_pass``), ``geneinfo_beta.txt`` (``gene_id``, ``gene_symbol``, ...,
              ``feature_space``), ``compoundinfo_beta.txt`` (one row per compound x target:
              ``moa``, ``target``), ``cellinfo_beta.txt`` (``cell_iname``); empty = missing.
``opencmap``  our own pipeline's output folder (``level5.gctx``, ``sig_info.txt``,
              ``manifest.json``), optionally with the synthetic compendium's ``gene_info.txt``,
              ``pert_info.txt`` (``moa``, ``target``) and ``cell_info.txt``.

Tables are read with Arrow's CSV reader (multi-threaded, gzip by file name) with explicit column
types: ids and text as Arrow strings, known numeric columns as float64; missing tokens of the
release become missing values. A table whose id column is not there is refused
(:class:`~opencmap.errors.FormatError` naming the file and the columns found): no table is
ever keyed by row numbers or by "the first column".
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from opencmap.core.schema import BING_FLAG, FLAG_COLUMNS, LANDMARK_FLAG, check_flags, flags01
from opencmap.errors import ConfigError, FormatError

__all__ = [
    "RELEASES",
    "ReleaseSchema",
    "ReleaseFiles",
    "SCHEMAS",
    "detect_release",
    "find_release_files",
    "read_release_table",
    "read_release_signatures",
    "read_release_genes",
    "canonical_genes",
    "canonical_perturbagens",
    "harmonise_doses",
    "annotate_signatures",
    "read_known_signature_table",
    "canonical_signatures",
    "normalise_unit",
]

log = logging.getLogger(__name__)

RELEASES = ("GSE92742", "GSE70138", "LINCS2020", "opencmap")

#: columns read as numbers (float64) wherever they appear; everything else stays text
_NUMERIC = frozenset({
    "pert_dose", "pert_time", "nearest_dose", "tas", "distil_cc_q75", "distil_ss", "cc_q75", "ss_ngene",
    "pct_self_rank_q25", "distil_nsample", "nsample", "ngenes_modulated_up_lm", "ngenes_modulated_dn_lm",
    *FLAG_COLUMNS, "median_recall_rank_spearman",
    "median_recall_rank_wtcs_50", "median_recall_score_spearman", "median_recall_score_wtcs_50",
    "batch_effect_tstat", "batch_effect_tstat_pct", "count_mean", "count_cv", "qc_f_logp", "qc_iqr", "qc_slope",
    "dyn_range", "inv_level_10", "donor_age", "donor_age_death", "donor_disease_age_onset", "doubling_time",
})

#: gene-table id columns we recognise (Entrez ids), in order of preference
GENE_ID_COLUMNS = ("pr_gene_id", "gene_id", "entrez_id", "Entrez ID", "entrezgene")
_GENE_SYMBOL_COLUMNS = ("pr_gene_symbol", "gene_symbol", "symbol")
_GENE_TITLE_COLUMNS = ("pr_gene_title", "gene_title")
_FEATURE_SPACES = {"landmark": (1, 1), "best inferred": (0, 1), "inferred": (0, 0)}

#: cell annotations carried into the signatures (canonical name: names in the releases)
_CELL_FIELDS = {
    "cell_type": ("cell_type",),
    "primary_site": ("primary_site", "cell_lineage"),
    "subtype": ("subtype",),
    "sample_type": ("sample_type",),
    "primary_disease": ("primary_disease",),
    "donor_sex": ("donor_sex",),
}


@dataclass(frozen=True)
class TableSpec:
    """One table of a release: how to find it, its id column and its renames to canonical names."""

    role: str
    pattern: str  # regular expression matched against the file name (``.gz`` allowed)
    id_column: str  # the column (file's own name) that identifies a record
    renames: Mapping[str, str] = field(default_factory=dict)
    required: bool = False
    leading_index: bool = False  # an unnamed leading index column to drop


@dataclass(frozen=True)
class ReleaseSchema:
    """What a release holds and how to read it."""

    name: str
    description: str
    matrix: str  # regular expression of the Level 5 matrix file name
    tables: Mapping[str, TableSpec]
    missing: tuple[str, ...]  # tokens that mean "missing"
    controls: str  # where the null/control signatures are (said at build time)

    def table(self, role: str) -> TableSpec | None:
        return self.tables.get(role)


_GZ = r"(?:\.gz)?"


def _geo_tables(series: str, dated: str, *, metrics_leading_index: bool = False) -> dict[str, TableSpec]:
    """The annotation tables of a GEO LINCS series: ``{series}_Broad_LINCS_{role}{dated}.txt(.gz)``."""

    def spec(role: str, id_column: str, renames: Mapping[str, str] | None = None, **kw: bool) -> TableSpec:
        pattern = rf"^{series}_Broad_LINCS_{role}{dated}\.txt{_GZ}$"
        return TableSpec(role, pattern, id_column, dict(renames or {}), **kw)

    return {
        "sig_info": spec("sig_info", "sig_id", required=True),
        "sig_metrics": spec("sig_metrics", "sig_id", {"is_exemplar": "is_exemplar_sig"}, leading_index=metrics_leading_index),
        "gene_info": spec("gene_info", "pr_gene_id", required=True),
        "pert_info": spec("pert_info", "pert_id"),
        "cell_info": spec("cell_info", "cell_id"),
        "inst_info": spec("inst_info", "inst_id"),
    }


SCHEMAS: dict[str, ReleaseSchema] = {
    "GSE92742": ReleaseSchema(
        name="GSE92742",
        description="GEO GSE92742, CMap LINCS phase I (2017): 473,647 Level 5 signatures",
        matrix=rf"^GSE92742_Broad_LINCS_Level5_COMPZ\.MODZ_n\d+x\d+\.gctx{_GZ}$",
        tables=_geo_tables("GSE92742", ""),
        missing=("-666", "-666.0", ""),
        controls="the Level 5 matrix itself (ctl_vehicle, ctl_vector, ctl_untrt signatures; pert_type ctl_*)",
    ),
    "GSE70138": ReleaseSchema(
        name="GSE70138",
        description="GEO GSE70138, CMap LINCS phase II (2017-03-06): 118,050 Level 5 signatures",
        matrix=rf"^GSE70138_Broad_LINCS_Level5_COMPZ_n\d+x\d+(?:_\d{{4}}-\d{{2}}-\d{{2}})?\.gctx{_GZ}$",
        tables=_geo_tables("GSE70138", r"(?:_[\d-]+)?", metrics_leading_index=True),
        missing=("-666", "-666.0", ""),
        controls="the Level 5 matrix itself (ctl_vehicle signatures; pert_type ctl_*)",
    ),
    "LINCS2020": ReleaseSchema(
        name="LINCS2020",
        description="CLUE LINCS 2020 'beta' release: 720,216 compound Level 5 signatures (1.2 M in all)",
        matrix=rf"^level5_beta_(?:trt_cp|ctl|trt_sh|trt_oe|trt_xpr|trt_misc)_n\d+x\d+\.gctx{_GZ}$",
        tables={
            "sig_info": TableSpec("sig_info", rf"^siginfo_beta\.txt{_GZ}$", "sig_id",
                                  {"cmap_name": "pert_iname", "cell_iname": "cell_id"}, required=True),
            "gene_info": TableSpec("gene_info", rf"^geneinfo_beta\.txt{_GZ}$", "gene_id",
                                   {"gene_id": "pr_gene_id", "gene_symbol": "pr_gene_symbol", "gene_title": "pr_gene_title"},
                                   required=True),
            "pert_info": TableSpec("pert_info", rf"^compoundinfo_beta\.txt{_GZ}$", "pert_id", {"cmap_name": "pert_iname"}),
            "cell_info": TableSpec("cell_info", rf"^cellinfo_beta\.txt{_GZ}$", "cell_iname", {"cell_iname": "cell_id"}),
            "inst_info": TableSpec("inst_info", rf"^instinfo_beta\.txt{_GZ}$", "sample_id",
                                   {"cmap_name": "pert_iname", "cell_iname": "cell_id", "sample_id": "inst_id"}),
        },
        missing=("",),
        controls=("none: level5_beta_trt_cp holds compound signatures only; the control signatures "
                  "(ctl_vehicle, ctl_untrt) are in level5_beta_ctl_n58022x12328.gctx (build it as a second "
                  "store or append it)"),
    ),
    "opencmap": ReleaseSchema(
        name="opencmap",
        description="an opencmap pipeline output folder (opencmap process)",
        matrix=r"^level5\.gctx$",
        tables={
            "sig_info": TableSpec("sig_info", rf"^sig_info\.txt{_GZ}$", "sig_id", required=True),
            "gene_info": TableSpec("gene_info", rf"^gene_info\.txt{_GZ}$", "pr_gene_id"),
            "pert_info": TableSpec("pert_info", rf"^pert_info\.txt{_GZ}$", "pert_id"),
            "cell_info": TableSpec("cell_info", rf"^cell_info\.txt{_GZ}$", "cell_id"),
        },
        missing=("-666", "-666.0", ""),
        controls="the Level 5 matrix itself (pert_type ctl_*)",
    ),
}


# ---------------------------------------------------------------------------------- finding files
@dataclass
class ReleaseFiles:
    """The files of one release folder (``tables``: role -> path of the tables found)."""

    release: str
    folder: Path
    matrix: Path
    tables: dict[str, Path]
    pcl: Path | None = None  # a PCL GMT found with the release (our pipeline's compendium)
    found_beside: list[str] = field(default_factory=list)  # what was taken from outside the folder

    @property
    def schema(self) -> ReleaseSchema:
        return SCHEMAS[self.release]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def detect_release(folder: str | PathLike[str]) -> str:
    """The release a folder holds, from its file names (:class:`ConfigError` if none or several)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give the folder holding a release's files")
    names = _names(folder)
    found = [s.name for s in SCHEMAS.values() if any(re.match(s.matrix, n) for n in names)]
    if not found:
        raise ConfigError(
            f"{folder}: no Level 5 matrix of a known release ({', '.join(RELEASES)}); expected e.g. "
            "GSE92742_Broad_LINCS_Level5_COMPZ.MODZ_n473647x12328.gctx(.gz), "
            "GSE70138_Broad_LINCS_Level5_COMPZ_n118050x12328_2017-03-06.gctx(.gz), "
            f"level5_beta_trt_cp_n720216x12328.gctx or level5.gctx; files here: {names[:12]}"
        )
    if len(found) > 1:
        raise ConfigError(f"{folder} holds files of several releases {found}; keep one release per folder or pass release=")
    return found[0]


#: the matrix a folder's build uses when it holds several of the release (LINCS 2020: compounds)
_PREFERRED_MATRIX = {"LINCS2020": re.compile(r"^level5_beta_trt_cp_")}


def find_release_files(folder: str | PathLike[str], release: str | None = None, *, matrix: str | None = None) -> ReleaseFiles:
    """Locate the matrix and tables of a release folder; refuse if a required table is missing.

    ``matrix``: the file name of the Level 5 matrix to use when the folder holds several (e.g.
    ``level5_beta_ctl_n58022x12328.gctx`` beside the LINCS 2020 compound matrix, which is the
    default).
    """
    folder = Path(folder)
    if release is None:
        release = detect_release(folder)
    if release not in SCHEMAS:
        raise ConfigError(f"unknown release {release!r}; choose one of {list(RELEASES)}")
    schema = SCHEMAS[release]
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    names = _names(folder)

    def one(pattern: str, what: str, among: list[str] | None = None) -> Path | None:
        hits = [n for n in (names if among is None else among) if re.match(pattern, n)]
        plain = [n for n in hits if not n.endswith(".gz")]
        if len(hits) > 1 and len(plain) == 1:  # a decompressed copy beside the download: use it
            hits = plain
        if len(hits) > 1:
            raise ConfigError(f"{folder}: several files could be the {what} of {release}: {hits}; keep one")
        return folder / hits[0] if hits else None

    others: list[str] = []
    if matrix is not None:
        if not (folder / matrix).is_file() or not re.match(schema.matrix, matrix):
            raise ConfigError(f"{folder}: no {release} Level 5 matrix named {matrix!r}")
        chosen = folder / matrix
    else:
        hits = [n for n in names if re.match(schema.matrix, n)]
        preferred = _PREFERRED_MATRIX.get(release)
        if preferred is not None and len({n.removesuffix(".gz") for n in hits}) > 1:
            first = [n for n in hits if preferred.match(n)]
            others = sorted({n for n in hits if not preferred.match(n)})
            names_for_matrix = first or hits
        else:
            names_for_matrix = hits
        chosen = one(schema.matrix, "Level 5 matrix", names_for_matrix)
    matrix_path = chosen
    if matrix_path is None:
        raise FormatError(f"no {release} Level 5 matrix here (expected a name matching {schema.matrix!r})", path=folder)
    tables: dict[str, Path] = {}
    for role, spec in schema.tables.items():
        path = one(spec.pattern, role)
        if path is None:
            if spec.required:
                raise FormatError(
                    f"the {release} {role} table is missing (expected a file matching {spec.pattern!r}); "
                    "download it beside the matrix (opencmap fetch) and retry",
                    path=folder,
                )
            continue
        tables[role] = path
    found = ReleaseFiles(release, folder, matrix_path, tables)
    if others:
        found.found_beside.append(f"{matrix_path.name} as the matrix; also here: {others} (build or append one with --matrix NAME)")
    if release == "opencmap":
        _pipeline_inputs(found)
    return found


def _pipeline_inputs(files: ReleaseFiles) -> None:
    """Annotation tables of a pipeline run's inputs: its ``manifest.json`` names the instance and
    gene tables it read; the synthetic compendium keeps ``pert_info.txt`` (MOA, targets),
    ``cell_info.txt``, ``gene_info.txt`` and ``pcl.gmt`` beside them."""
    import json

    manifest = files.folder / "manifest.json"
    if not manifest.is_file():
        return
    try:
        inputs = json.loads(manifest.read_text()).get("inputs", {})
    except (ValueError, OSError, AttributeError):
        return
    places = []
    for key in ("inst_info", "gene_info"):
        entry = inputs.get(key)
        path = entry.get("path") if isinstance(entry, dict) else entry
        if isinstance(path, str) and Path(path).parent.is_dir():
            places.append(Path(path).parent)
    schema = files.schema
    for place in dict.fromkeys(places):
        for role in ("gene_info", "pert_info", "cell_info"):
            if role in files.tables:
                continue
            hits = [p for p in sorted(place.iterdir()) if p.is_file() and re.match(schema.tables[role].pattern, p.name)]
            if hits:
                files.tables[role] = hits[0]
                files.found_beside.append(f"{role} {hits[0]} (beside the run's inputs named in {manifest.name})")
        if files.pcl is None and (place / "pcl.gmt").is_file():
            files.pcl = place / "pcl.gmt"
            files.found_beside.append(f"PCLs {place / 'pcl.gmt'} (beside the run's inputs named in {manifest.name})")


# ---------------------------------------------------------------------------------- reading tables
def _header(path: Path) -> list[str]:
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as fh:  # type: ignore[operator]
            line = fh.readline()
    except (OSError, EOFError) as exc:
        raise FormatError(f"cannot read the header line ({exc})", path=path) from exc
    if not line.strip():
        raise FormatError("empty file; a table needs a header line", path=path, line=1)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("latin-1")
    return [h.strip() for h in text.lstrip("\ufeff").rstrip("\r\n").split("\t")]


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def read_release_table(
    path: str | PathLike[str],
    *,
    id_column: str | Sequence[str],
    missing: Sequence[str] = ("-666", "-666.0", ""),
    leading_index: bool = False,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read one tab-separated release table fast, with explicit types.

    Parameters
    ----------
    path:
        The table (``.txt``; gzip-compressed when it starts with the gzip magic bytes).
    id_column:
        The column that identifies records (or candidates, first present wins). If none is
        present, :class:`FormatError` names the file and the columns found.
    missing:
        Tokens read as missing values.
    leading_index:
        Drop an unnamed first column (a saved pandas index, as in GSE70138's ``sig_metrics``).
    columns:
        Read only these columns (plus the id column); default all.

    Returns a DataFrame whose text columns are Arrow-backed strings (missing = ``NA``) and whose
    known numeric columns are float64 (missing = NaN). The id column is kept as a column.
    """
    p = Path(path)
    if not p.is_file():
        raise FormatError("file not found; check the path", path=p)
    names = _header(p)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise FormatError(f"repeated column names {dup}; names must be unique", path=p, line=1)
    candidates = [id_column] if isinstance(id_column, str) else list(id_column)
    key = next((c for c in candidates if c in names), None)
    if key is None:
        shown = [n if n else "<unnamed>" for n in names[:25]]
        more = f" and {len(names) - 25} more" if len(names) > 25 else ""
        raise FormatError(
            f"no id column {' or '.join(repr(c) for c in candidates)}; columns found: {shown}{more}. "
            "Give the table of the right release (or name its id column) - rows are never keyed by position",
            path=p,
            line=1,
        )
    drop_first = leading_index and names[0] == ""
    types = {n: (pa.float64() if n in _NUMERIC else pa.string()) for n in names}
    types[key] = pa.string()
    include = None
    if columns is not None:
        include = [key] + [c for c in columns if c in names and c != key]
    elif drop_first:
        include = names[1:]
    read = pacsv.ReadOptions(column_names=[n if n else "__index__" for n in names], skip_rows=1)
    parse = pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False)
    convert = pacsv.ConvertOptions(
        column_types={(n if n else "__index__"): t for n, t in types.items()},
        null_values=list(missing),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        include_columns=include,
    )
    try:
        table = _read_numbers_or_text(p, read, parse, convert, names)
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "invalid utf8" in msg.lower() or "utf-8" in msg.lower():
            log.info("%s is not UTF-8; reading it as Latin-1 (CMap files spell µ as byte 0xB5)", p)
            read.encoding = "latin-1"
            try:
                table = _read_numbers_or_text(p, read, parse, convert, names)
            except pa.ArrowInvalid as exc2:
                raise FormatError(f"cannot parse the table ({exc2})", path=p) from exc2
        else:
            hint = " (a line has more or fewer tab-separated fields than the header)" if "columns" in msg else ""
            raise FormatError(f"cannot parse the table{hint}: {msg.splitlines()[0]}", path=p) from exc
    frame = table.to_pandas(types_mapper=_types_mapper, self_destruct=True, split_blocks=True)
    frame.columns = [str(c) for c in frame.columns]
    if "__index__" in frame.columns:
        frame = frame.drop(columns="__index__")
    log.debug("read %s: %d rows x %d columns", p, len(frame), frame.shape[1])
    return frame


_NOT_A_NUMBER = re.compile(r"In CSV column #(\d+): CSV conversion error to double")


def _read_numbers_or_text(p: Path, read: Any, parse: Any, convert: Any, names: list[str]) -> pa.Table:
    """Read with the explicit types; a column expected numeric that holds text (e.g. replicate
    values joined by ``|`` in some CMap builds) is kept as text instead (logged)."""
    for _ in range(len(names) + 1):
        try:
            return _read_csv(p, read, parse, convert)
        except pa.ArrowInvalid as exc:
            m = _NOT_A_NUMBER.search(str(exc))
            if not m:
                raise
            # the column number counts the columns read (include_columns order, or the file's)
            order = list(convert.include_columns) if convert.include_columns else [n if n else "__index__" for n in names]
            col = order[int(m.group(1))]
            types = dict(convert.column_types)
            if types.get(col) == pa.string():
                raise
            log.info("%s: column %s is not numeric; kept as text", p, col)
            types[col] = pa.string()
            convert.column_types = types
    raise FormatError("cannot type the table's columns", path=p)


def _read_csv(p: Path, read: Any, parse: Any, convert: Any) -> pa.Table:
    with pa.input_stream(str(p), compression="gzip" if _is_gzip(p) else None) as stream:
        return pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


def _types_mapper(t: pa.DataType) -> Any:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype("pyarrow")
    return None


def _table(files: ReleaseFiles, role: str, **kw: Any) -> pd.DataFrame | None:
    path = files.tables.get(role)
    spec = files.schema.table(role)
    if path is None or spec is None:
        return None
    frame = read_release_table(path, id_column=spec.id_column, missing=files.schema.missing,
                               leading_index=spec.leading_index, **kw)
    return frame.rename(columns=dict(spec.renames))


# ---------------------------------------------------------------------------------- canonical forms
_UNIT_SPELLINGS = {"um": "uM", "nm": "nM", "mm": "mM", "pm": "pM", "m": "M", "ul": "uL", "ml": "mL", "nl": "nL",
                   "%": "%", "ng/ul": "ng/uL", "ng/ml": "ng/mL", "ug/ml": "ug/mL", "h": "h", "hr": "h", "hrs": "h",
                   "hour": "h", "hours": "h", "m_": "min", "min": "min", "d": "d", "day": "d", "days": "d"}
_DOSE_PATTERN = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S.*?)?\s*$")


def normalise_unit(unit: Any) -> Any:
    """One spelling per unit: ``µM``/``μM``/``um``/``uM`` -> ``uM``, ``hr`` -> ``h``; unknown ones unchanged."""
    if unit is None or (isinstance(unit, float) and np.isnan(unit)) or unit is pd.NA:
        return pd.NA
    text = str(unit).strip()
    if not text:
        return pd.NA
    key = text.replace("\u00b5", "u").replace("\u03bc", "u").lower()
    return _UNIT_SPELLINGS.get(key, text)


def _parse_amounts(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """``"10.0 um"`` -> (10.0, ``"uM"``) for every value (vectorised over the distinct values)."""
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    num = np.full(len(uniques), np.nan)
    unit: list[Any] = [pd.NA] * len(uniques)
    for i, u in enumerate(uniques):
        m = _DOSE_PATTERN.match(str(u))
        if m:
            num[i] = float(m.group(1))
            unit[i] = normalise_unit(m.group(2)) if m.group(2) else pd.NA
    out_num = np.where(codes >= 0, num[np.maximum(codes, 0)] if len(num) else np.nan, np.nan)
    unit_arr = np.array(unit + [pd.NA], dtype=object)
    out_unit = unit_arr[np.where(codes >= 0, codes, len(unit))]
    return out_num.astype(float), pd.Series(out_unit, index=values.index, dtype="string[pyarrow]")


def _text_amount(num: np.ndarray, unit: pd.Series) -> pd.Series:
    codes, uniques = pd.factorize(pd.Series(num).astype(object).astype(str) + "\t" + unit.astype(object).fillna("").astype(str).to_numpy())
    labels = []
    for u in uniques:
        n, _, un = u.partition("\t")
        x = float(n)
        labels.append(pd.NA if np.isnan(x) else (f"{x:g} {un}".strip()))
    arr = np.array(labels + [pd.NA], dtype=object)
    return pd.Series(arr[np.where(codes >= 0, codes, len(labels))], index=unit.index, dtype="string[pyarrow]")


def harmonise_doses(info: pd.DataFrame) -> pd.DataFrame:
    """Numeric dose and time with one unit spelling, and ``pert_idose``/``pert_itime`` rewritten
    from them (``"10 µM"``, ``"10.0 um"`` and ``"10 uM"`` all become ``10.0``, ``uM``, ``"10 uM"``)."""
    out = info
    for kind, amount, unit_col, label in (("dose", "pert_dose", "pert_dose_unit", "pert_idose"),
                                          ("time", "pert_time", "pert_time_unit", "pert_itime")):
        parsed_num = parsed_unit = None
        if label in out.columns:
            parsed_num, parsed_unit = _parse_amounts(out[label])
        if amount in out.columns:
            num = pd.to_numeric(out[amount], errors="coerce").to_numpy(dtype=float)
            if parsed_num is not None:
                num = np.where(np.isnan(num), parsed_num, num)
        elif parsed_num is not None:
            num = parsed_num
        else:
            continue
        if unit_col in out.columns:
            codes, uniques = pd.factorize(out[unit_col].astype(object))
            mapped = np.array([normalise_unit(u) for u in uniques] + [pd.NA], dtype=object)
            unit = pd.Series(mapped[np.where(codes >= 0, codes, len(uniques))], index=out.index, dtype="string[pyarrow]")
            if parsed_unit is not None:
                unit = unit.fillna(parsed_unit)
        else:
            unit = parsed_unit if parsed_unit is not None else pd.Series(pd.NA, index=out.index, dtype="string[pyarrow]")
        out[amount] = num
        out[unit_col] = unit
        out[label] = _text_amount(num, unit)
    return out


def _first_present(frame: pd.DataFrame, names: Sequence[str]) -> str | None:
    return next((n for n in names if n in frame.columns), None)


def canonical_genes(frame: pd.DataFrame, *, source: str | PathLike[str] | None = None) -> pd.DataFrame:
    """A gene table in canonical columns (``pr_gene_id`` first, Entrez ids as text).

    Recognises GEO ``gene_info`` (``pr_gene_id, pr_gene_symbol, pr_is_lm, pr_is_bing``), LINCS 2020
    ``geneinfo_beta`` (``gene_id, gene_symbol, ..., feature_space``), GCTX row metadata
    (``is_lm``/``is_bing``) and a frame indexed by ids (index named like an id column, or any
    non-positional index). A table without an id column is refused (:class:`FormatError` naming
    ``source`` and the columns found); row positions are never used as ids.
    """
    genes = frame.copy()
    key = _first_present(genes, GENE_ID_COLUMNS)
    if key is None:
        idx = genes.index
        named = idx.name in (*GENE_ID_COLUMNS, "rid", "id")
        positional = isinstance(idx, pd.RangeIndex) or (pd.api.types.is_integer_dtype(idx) and idx.name is None)
        if named or not positional:
            genes = genes.reset_index(names="pr_gene_id")
            key = "pr_gene_id"
        else:
            cols = [str(c) for c in frame.columns[:25]]
            raise FormatError(
                f"gene table without an id column (one of {list(GENE_ID_COLUMNS)}); columns found: {cols}. "
                "Give GEO gene_info (pr_gene_id) or LINCS 2020 geneinfo_beta (gene_id); "
                "genes are never matched by row position",
                path=source,
            )
    genes = genes.rename(columns={key: "pr_gene_id"})
    ids = genes["pr_gene_id"]
    if pd.api.types.is_float_dtype(ids):
        ids = ids.map(lambda v: "" if pd.isna(v) else (str(int(v)) if float(v).is_integer() else str(v)))
    genes["pr_gene_id"] = ids.astype(str).str.strip()
    for canon, names in (("pr_gene_symbol", _GENE_SYMBOL_COLUMNS), ("pr_gene_title", _GENE_TITLE_COLUMNS)):
        col = _first_present(genes, names)
        if col is not None and col != canon:
            genes = genes.rename(columns={col: canon})
    for canon, alias in (("pr_is_lm", "is_lm"), ("pr_is_bing", "is_bing")):
        if canon not in genes.columns and alias in genes.columns:
            genes = genes.rename(columns={alias: canon})
    for col in (LANDMARK_FLAG, BING_FLAG):  # a value other than 0/1 is refused, never read as 0
        if col in genes.columns:
            genes[col] = check_flags(genes[col], column=col, path=source).astype("int64")
    if "feature_space" in genes.columns:
        space = genes["feature_space"].astype(object).map(lambda v: str(v).strip().lower().replace("_", " ") if pd.notna(v) else "")
        unknown = sorted(set(space) - set(_FEATURE_SPACES) - {""})
        if unknown:
            raise FormatError(f"feature_space values {unknown[:5]} are not one of {sorted(_FEATURE_SPACES)}", path=source)
        lm = space.map(lambda s: _FEATURE_SPACES.get(s, (0, 0))[0]).astype("int64")
        bing = space.map(lambda s: _FEATURE_SPACES.get(s, (0, 0))[1]).astype("int64")
        if "pr_is_lm" not in genes.columns:
            genes["pr_is_lm"] = lm.to_numpy()
        if "pr_is_bing" not in genes.columns:
            genes["pr_is_bing"] = bing.to_numpy()
        genes["feature_space"] = space.to_numpy()
    elif "pr_is_lm" in genes.columns and "pr_is_bing" in genes.columns:
        lm = genes["pr_is_lm"].to_numpy() == 1
        bing = genes["pr_is_bing"].to_numpy() == 1
        genes["feature_space"] = np.where(lm, "landmark", np.where(bing, "best inferred", "inferred"))
    dup = genes["pr_gene_id"].duplicated()
    if dup.any():
        raise FormatError(f"gene table repeats gene ids {genes.loc[dup, 'pr_gene_id'].head(5).tolist()}", path=source)
    cols = ["pr_gene_id"] + [c for c in genes.columns if c != "pr_gene_id"]
    return genes[cols].reset_index(drop=True)


def read_release_genes(files: ReleaseFiles) -> pd.DataFrame | None:
    """The release's gene table in canonical columns (``None`` if the folder has none)."""
    spec = files.schema.table("gene_info")
    path = files.tables.get("gene_info")
    if spec is None or path is None:
        return None
    frame = read_release_table(path, id_column=(spec.id_column, *GENE_ID_COLUMNS), missing=files.schema.missing)
    return canonical_genes(frame, source=path)


def canonical_perturbagens(frame: pd.DataFrame, *, source: str | PathLike[str] | None = None) -> pd.DataFrame:
    """Perturbagen annotations, one row per ``pert_id``: ``pert_iname``, ``moa``, ``target``
    (several rows per compound, as ``compoundinfo_beta``, are joined with ``|``), ``is_touchstone``."""
    perts = frame.rename(columns={"cmap_name": "pert_iname"})
    if "pert_id" not in perts.columns:
        raise FormatError(f"perturbagen table without a pert_id column; columns found: {[str(c) for c in frame.columns[:25]]}", path=source)
    keep = [c for c in ("pert_iname", "moa", "target", "is_touchstone", "pert_type") if c in perts.columns]
    perts = perts[["pert_id", *keep]].copy()
    perts["pert_id"] = perts["pert_id"].astype(str)

    def joined(values: pd.Series) -> Any:
        seen = list(dict.fromkeys(v for v in values.dropna().astype(str) if v and v != "-666"))
        return "|".join(seen) if seen else pd.NA

    agg: dict[str, Any] = {}
    for c in keep:
        agg[c] = joined if c in ("moa", "target") else "first"
    if not perts["pert_id"].duplicated().any():
        out = perts.copy()
        for c in ("moa", "target"):
            if c in out.columns:
                out[c] = out[c].astype(object).where(~out[c].astype(object).isin(["-666", ""]), pd.NA)
        return out.reset_index(drop=True)
    return perts.groupby("pert_id", sort=False).agg(agg).reset_index()


def read_release_signatures(files: ReleaseFiles, *, pert_info: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The release's signature table in canonical columns, joined with its metrics, perturbagen
    and cell tables; returns ``(sig_info, notes)`` (what was joined, mapped or is missing).

    ``pert_info``: extra perturbagen annotations (canonical, :func:`canonical_perturbagens`) that
    fill ``moa`` / ``target`` / ``pert_iname`` where the release has none.
    """
    notes: list[str] = [f"{files.release}: took {what}" for what in files.found_beside]  # noqa: E501
    info = _table(files, "sig_info")
    assert info is not None  # required table
    renames = files.schema.tables["sig_info"].renames
    if renames:
        notes.append(f"{files.tables['sig_info'].name}: " + ", ".join(f"{a} -> {b}" for a, b in renames.items()))
    metrics = _table(files, "sig_metrics")
    if metrics is not None:
        shared = [c for c in metrics.columns if c in info.columns and c != "sig_id"]
        metrics = metrics.drop(columns=shared)
        dup = metrics["sig_id"].duplicated()
        if dup.any():
            raise FormatError(f"repeated sig_id values {metrics.loc[dup, 'sig_id'].head(5).tolist()}", path=files.tables["sig_metrics"])
        info = info.merge(metrics, on="sig_id", how="left")
        notes.append(f"joined {files.tables['sig_metrics'].name} (exemplar flag, TAS, replicate metrics)")
    elif files.release in ("GSE92742", "GSE70138"):
        notes.append(f"no {files.release} sig_metrics table: exemplar flags and TAS are unknown")
    perts = _table(files, "pert_info")
    if perts is not None:
        perts = canonical_perturbagens(perts, source=files.tables["pert_info"])
        info = _attach_perts(info, perts)
        got = [c for c in ("moa", "target", "is_touchstone") if c in perts.columns]
        notes.append(f"joined {files.tables['pert_info'].name} ({', '.join(got) or 'names only'})")
    if pert_info is not None:
        info = _attach_perts(info, pert_info, fill_only=True)
        notes.append("filled MOA/targets from the extra perturbagen table")
    if "moa" not in info.columns or info["moa"].isna().all():
        notes.append(f"{files.release}: no MOA annotations (GEO pert_info has none); give --pert-info "
                     "(e.g. compoundinfo_beta.txt) or --pcl to name mechanisms")
    cells = _table(files, "cell_info")
    if cells is not None:
        picked = {canon: _first_present(cells, names) for canon, names in _CELL_FIELDS.items()}
        picked = {k: v for k, v in picked.items() if v is not None and k not in info.columns}
        cell = cells[["cell_id", *picked.values()]].rename(columns={v: k for k, v in picked.items()})
        cell = cell.drop_duplicates("cell_id")
        info = info.merge(cell, on="cell_id", how="left")
        notes.append(f"joined {files.tables['cell_info'].name} ({', '.join(picked)})")
    info = canonical_signatures(info, release=files.release)
    return info, notes


def _attach_perts(info: pd.DataFrame, perts: pd.DataFrame, *, fill_only: bool = False) -> pd.DataFrame:
    extra = perts.set_index("pert_id")
    pos = extra.index.get_indexer(info["pert_id"].astype(str))
    hit = pos >= 0
    for col in extra.columns:
        if col == "pert_type":
            continue
        values = extra[col].astype(object).to_numpy()
        new = np.where(hit, values[np.maximum(pos, 0)] if len(values) else None, None)
        new_s = pd.Series(new, index=info.index, dtype=object).where(lambda s: s.notna(), None)
        if col in info.columns:
            old = info[col].astype(object)
            old = old.where(~old.isin(["-666", ""]), None)
            info[col] = old.where(old.notna(), new_s) if (fill_only or col == "pert_iname") else new_s.where(new_s.notna(), old)
        else:
            info[col] = new_s
        if not pd.api.types.is_numeric_dtype(info[col]):
            info[col] = info[col].astype("string[pyarrow]")
    return info


def canonical_signatures(info: pd.DataFrame, *, release: str = "") -> pd.DataFrame:
    """Canonical signature columns from any release's names (idempotent): renames, numeric dose
    and time with harmonised units, 0/1 flags, ``release`` column."""
    out = info.loc[:, [c for c in info.columns if c and not str(c).startswith("Unnamed")]]
    for alias, canon in (("cmap_name", "pert_iname"), ("cell_iname", "cell_id"), ("is_exemplar", "is_exemplar_sig"),
                         ("gene_targets", "target")):
        if alias not in out.columns:
            continue
        if canon in out.columns:  # both spellings: the canonical column, completed by the alias
            out[canon] = out[canon].where(out[canon].notna(), out[alias])
            out = out.drop(columns=alias)
        else:
            out = out.rename(columns={alias: canon})
    if "sig_id" not in out.columns:
        raise FormatError(f"signature table without a sig_id column; columns found: {[str(c) for c in info.columns[:25]]}")
    out = harmonise_doses(out)
    for col in ("is_exemplar_sig", "qc_pass", "is_hiq", "is_ncs_sig", "is_null_sig", "is_touchstone", "is_gold"):
        if col in out.columns:
            out[col] = flags01(out[col])
    if "tas" in out.columns:
        out["tas"] = pd.to_numeric(out["tas"], errors="coerce").astype(float)
    if release and "release" not in out.columns:
        out["release"] = pd.Series(release, index=out.index, dtype="string[pyarrow]")
    first = [c for c in _CANONICAL_ORDER if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


_CANONICAL_ORDER = ("sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose", "pert_dose_unit",
                    "pert_idose", "pert_time", "pert_time_unit", "pert_itime", "is_exemplar_sig", "tas", "qc_pass")


def annotate_signatures(
    info: pd.DataFrame | None,
    perts: pd.DataFrame,
    *,
    matrix: str | PathLike[str] | None = None,
) -> pd.DataFrame:
    """A signature table with perturbagen annotations (``moa``, ``target``, names) filled in from
    ``perts`` (:func:`canonical_perturbagens`), in canonical columns. ``info`` None: the column
    metadata of ``matrix`` (a GCT/GCTX file, or the ``obs`` of an AnnData ``.h5ad``)."""
    if info is None:
        if matrix is None:
            raise ConfigError("give a signature table or the matrix whose column metadata is the table")
        if Path(matrix).suffix.lower() == ".h5ad":
            from opencmap.io.h5ad import H5ADSignatures

            h5ad = H5ADSignatures(matrix)  # checked as a store build opens it
            h5ad.close()
            meta = h5ad.signatures
        else:
            from opencmap.io.gct import read_meta

            meta = read_meta(matrix, "col")
        info = meta.reset_index(names="sig_id")
    if "sig_id" not in info.columns:
        raise FormatError(f"signature table without a sig_id column; columns found: {[str(c) for c in info.columns[:25]]}")
    if "pert_id" not in info.columns:
        raise FormatError("signature table without a pert_id column: perturbagen annotations cannot be attached")
    out = _attach_perts(canonical_signatures(info.copy()), perts, fill_only=True)
    return canonical_signatures(out)


def read_known_signature_table(path: str | PathLike[str]) -> pd.DataFrame | None:
    """A public release's signature table (by its file name: ``siginfo_beta.txt``,
    ``GSE92742_Broad_LINCS_sig_info.txt.gz``, ...) read fast and in canonical columns; ``None``
    for any other file (read it with :func:`opencmap.io.read_table`)."""
    p = Path(path)
    for name, schema in SCHEMAS.items():
        spec = schema.tables.get("sig_info")
        if name == "opencmap" or spec is None or not re.match(spec.pattern, p.name):
            continue
        frame = read_release_table(p, id_column=spec.id_column, missing=schema.missing, leading_index=spec.leading_index)
        return canonical_signatures(frame.rename(columns=dict(spec.renames)), release=name)
    return None

