"""A reference store from release folders (GSE92742, GSE70138, LINCS 2020, our pipeline's output).

:func:`plan_release_store` reads each folder's tables through :mod:`opencmap.io.releases` (the one
place that knows the releases' schemas), joins them into canonical signature metadata (names,
cell lines and their annotations, exemplar flags, TAS, QC, MOA and targets), applies build-time
filters, decides the null signatures for FDR, harmonises columns across releases and computes
the disk the store needs; :func:`build_release_store` checks that it fits and writes the store
(one segment per folder, so two releases in one store score every signature exactly as each
alone).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.backends import Backend
from opencmap.errors import ConfigError, FormatError, IdNotFoundError
from opencmap.io.releases import (
    SCHEMAS,
    ReleaseFiles,
    canonical_perturbagens,
    find_release_files,
    read_release_genes,
    read_release_signatures,
    read_release_table,
)
from opencmap.io.store.reader import Store, _pcl_sets
from opencmap.io.store.writer import (
    SignatureSource,
    _resolve_spaces,
    append_store,
    build_store,
    check_disk,
    estimate_store_bytes,
)

__all__ = ["ReleaseSource", "ReleasePlan", "BuildFilters", "plan_release_store", "build_release_store", "append_release_store",
           "read_pert_annotations"]

log = logging.getLogger(__name__)

#: canonical columns first in the stored signature table, in this order
_FIRST = ("sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose", "pert_dose_unit", "pert_idose",
          "pert_time", "pert_time_unit", "pert_itime", "is_exemplar_sig", "tas", "qc_pass", "is_touchstone",
          "is_null_sig", "moa", "target", "cell_type", "primary_site", "subtype", "release")


@dataclass(frozen=True)
class BuildFilters:
    """Signatures to keep (all by default)."""

    pert_types: tuple[str, ...] = ()
    exemplar_only: bool = False
    qc_pass: bool = False
    cells: tuple[str, ...] = ()
    times: tuple[float, ...] = ()  # hours
    touchstone: bool = False

    def describe(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if v}


@dataclass
class ReleaseSource:
    """One release folder as it will be stored."""

    files: ReleaseFiles
    n_matrix: int
    columns: np.ndarray  # selected matrix columns (increasing)
    sig_info: pd.DataFrame  # canonical, one row per selected column, in matrix order
    n_null: int
    notes: list[str] = field(default_factory=list)


@dataclass
class ReleasePlan:
    """What :func:`build_release_store` will write: sources, gene table, spaces and the disk needed."""

    sources: list[ReleaseSource]
    genes: pd.DataFrame
    spaces: dict[str, list[str]]
    estimate: dict[str, Any]
    pcl: dict[str, tuple[str, ...]] | None
    filters: BuildFilters
    notes: list[str]

    @property
    def n_signatures(self) -> int:
        return sum(len(s.columns) for s in self.sources)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (what the CLI prints before building)."""
        est = self.estimate
        return {
            "releases": [
                {"release": s.files.release, "folder": str(s.files.folder), "matrix": s.files.matrix.name,
                 "tables": {k: v.name for k, v in s.files.tables.items()}, "n_in_matrix": s.n_matrix,
                 "n_selected": int(len(s.columns)), "n_null_signatures": s.n_null}
                for s in self.sources
            ],
            "n_signatures": self.n_signatures,
            "spaces": {k: len(v) for k, v in self.spaces.items()},
            "filters": self.filters.describe(),
            "disk": {
                "kb_per_signature_per_space": {k: round(v / 1e3, 2) for k, v in est["bytes_per_signature_per_space"].items()},
                "kb_per_signature": round(est["bytes_per_signature"] / 1e3, 2),
                "total_gb": round(est["total_bytes"] / 1e9, 3),
            },
            "notes": self.notes,
        }


def read_pert_annotations(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Perturbagen annotations (``pert_id`` + ``moa``/``target``/names) from any release's table:
    ``compoundinfo_beta.txt``, GEO ``pert_info``, the synthetic compendium's ``pert_info.txt``."""
    frame = read_release_table(path, id_column="pert_id", missing=("-666", "-666.0", ""))
    return canonical_perturbagens(frame, source=path)


def _hours(value: Any) -> float:
    text = str(value).strip().lower().removesuffix("h").strip()
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"time {value!r} is not a number of hours (e.g. 6, 24, 24h)") from None


def _select(info: pd.DataFrame, filters: BuildFilters, files: ReleaseFiles) -> tuple[np.ndarray, list[str]]:
    keep = np.ones(len(info), dtype=bool)
    notes = []

    def need(col: str, flag: str, why: str) -> pd.Series:
        if col not in info.columns or info[col].isna().all():
            raise ConfigError(f"{flag}: the {files.release} tables in {files.folder} have no {col} values ({why})")
        return info[col]

    def column(col: str, flag: str) -> pd.Series:
        if col not in info.columns:
            raise ConfigError(
                f"{flag}: the signature table {files.tables.get('sig_info', files.folder)} has no {col} column "
                f"(columns: {[str(c) for c in info.columns[:25]]}); drop {flag} or give a table with {col}"
            )
        return info[col]

    if filters.pert_types:
        keep &= column("pert_type", "--pert-type").astype(str).isin(filters.pert_types).to_numpy()
    if filters.exemplar_only:
        where = "sig_metrics" if files.release in ("GSE92742", "GSE70138") else "the signature table"
        keep &= need("is_exemplar_sig", "--exemplar-only", f"exemplar flags come from {where}").fillna(0).to_numpy() == 1
    if filters.qc_pass:
        keep &= need("qc_pass", "--qc-pass", "GEO releases publish no QC flag; use --exemplar-only").fillna(0).to_numpy() == 1
    if filters.cells:
        keep &= column("cell_id", "--cell").astype(str).isin(filters.cells).to_numpy()
    if filters.times:
        keep &= np.isin(need("pert_time", "--time", "no pert_time/pert_itime").to_numpy(dtype=float), np.asarray(filters.times, float))
    if filters.touchstone:
        col = "is_gold" if "is_gold" in info.columns and info["is_gold"].notna().any() else "is_touchstone"
        keep &= need(col, "--touchstone", "is_touchstone comes from pert_info").fillna(0).to_numpy() == 1
    if filters.describe():
        notes.append(f"{files.release}: kept {int(keep.sum())} of {len(info)} signatures ({filters.describe()})")
    return np.flatnonzero(keep), notes


def _null_signatures(info: pd.DataFrame, files: ReleaseFiles) -> tuple[pd.DataFrame, int, str]:
    """Set ``is_null_sig`` (FDR nulls) as the release defines them and say which."""
    schema = SCHEMAS[files.release]
    ctl = info["pert_type"].astype(str).str.startswith("ctl_").to_numpy() if "pert_type" in info.columns else np.zeros(len(info), bool)
    if "is_null_sig" in info.columns and info["is_null_sig"].notna().any():
        flags = info["is_null_sig"].fillna(0).to_numpy() == 1
        source = "is_null_sig of the signature table"
    else:
        flags = ctl
        source = "control signatures (pert_type ctl_*)"
    info["is_null_sig"] = pd.array(flags.astype("int8"), dtype="Int8")
    n = int(flags.sum())
    if n:
        note = f"{files.release}: FDR nulls = {n} {source} in {files.matrix.name}"
    else:
        note = f"{files.release}: no null signatures for FDR in {files.matrix.name}; controls: {schema.controls}"
    return info, n, note


def _fill_moa_from_pcl(info: pd.DataFrame, pcl: Mapping[str, Sequence[str]]) -> int:
    """``moa`` from PCL membership where the release has none; returns how many signatures got one."""
    member_of: dict[str, list[str]] = {}
    for name, members in pcl.items():
        for m in members:
            member_of.setdefault(str(m), []).append(name)
    names = info["pert_id"].astype(str).map(lambda p: "|".join(member_of[p]) if p in member_of else None)
    if "moa" not in info.columns:
        info["moa"] = pd.Series(pd.NA, index=info.index, dtype="string[pyarrow]")
    missing = info["moa"].isna() & names.notna()
    info.loc[missing, "moa"] = names[missing]
    info["moa"] = info["moa"].astype("string[pyarrow]")
    return int(missing.sum())


def _harmonise(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """The same columns (union, canonical first) and dtypes in every segment's signature table."""
    columns: dict[str, Any] = {}
    for f in frames:
        for c in f.columns:
            columns.setdefault(c, f[c].dtype)
    order = [c for c in _FIRST if c in columns] + [c for c in columns if c not in _FIRST]
    out = []
    for f in frames:
        g = f.copy()
        for c in order:
            if c not in g.columns:
                dtype = columns[c]
                g[c] = pd.Series(pd.NA if not pd.api.types.is_float_dtype(dtype) else np.nan, index=g.index, dtype=dtype)
        out.append(g[order])
    return out


def plan_release_store(
    folders: Sequence[str | os.PathLike[str]],
    *,
    release: str | None = None,
    pert_info: str | os.PathLike[str] | pd.DataFrame | None = None,
    pcl: Any = None,
    filters: BuildFilters | None = None,
    spaces: Sequence[str] | None = None,
    gene_lists: Mapping[str, Sequence[str]] | None = None,
    signature_major: bool = True,
    matrix: str | None = None,
) -> ReleasePlan:
    """Read, join and filter the release folders' tables; nothing is written.

    ``release`` forces the release of every folder (default: detected from file names);
    ``matrix`` names the Level 5 file when a folder holds several (LINCS 2020: the compound
    matrix by default, ``level5_beta_ctl_n58022x12328.gctx`` for the controls); ``pert_info`` adds perturbagen annotations (e.g. ``compoundinfo_beta.txt`` for a GEO
    release) where the release has none; ``pcl`` is stored with the store and names the MOA of
    member compounds that have none.
    """
    if not folders:
        raise ConfigError("give at least one release folder")
    filters = filters or BuildFilters()
    extra = None
    if pert_info is not None:
        extra = pert_info if isinstance(pert_info, pd.DataFrame) else read_pert_annotations(pert_info)
    pcl_sets = _pcl_sets(pcl)
    found = [find_release_files(folder, release, matrix=matrix) for folder in folders]
    if pcl_sets is None:
        beside = next((f.pcl for f in found if f.pcl is not None), None)
        if beside is not None:
            pcl_sets = _pcl_sets(beside)
    sources: list[ReleaseSource] = []
    genes_ref: pd.DataFrame | None = None
    rids_ref: list[str] | None = None
    notes: list[str] = []
    for files in found:
        src = SignatureSource(files.matrix)
        rids = [str(r) for r in src.rids]
        cids = pd.Index([str(c) for c in src.cids], dtype=object)
        info, tnotes = read_release_signatures(files, pert_info=extra)
        pos = pd.Index(info["sig_id"].astype(str), dtype=object)
        if pos.duplicated().any():
            raise FormatError(f"repeated sig_id values {pos[pos.duplicated()][:5].tolist()}", path=files.tables["sig_info"])
        at = pos.get_indexer(cids)
        if (at < 0).any():
            missing = cids[at < 0][:5].tolist()
            raise IdNotFoundError(
                f"{int((at < 0).sum())} signatures of {files.matrix.name} are not in {files.tables['sig_info'].name} "
                f"(e.g. {missing}); the table does not belong to this matrix"
            )
        info = info.iloc[at].reset_index(drop=True)
        info, n_null_all, null_note = _null_signatures(info, files)
        columns, fnotes = _select(info, filters, files)
        if not len(columns):
            raise ConfigError(f"the filters {filters.describe()} keep no signature of {files.matrix.name}")
        info = info.iloc[columns].reset_index(drop=True)
        n_null = int((info["is_null_sig"].fillna(0) == 1).sum())
        if n_null != n_null_all:
            null_note += f" ({n_null} after filtering)"
        snotes = [*tnotes, *fnotes, null_note]
        if pcl_sets:
            n = _fill_moa_from_pcl(info, pcl_sets)
            if n:
                snotes.append(f"{files.release}: MOA of {n} signatures named by their PCL membership")
        genes = read_release_genes(files)
        if genes is None:
            snotes.append(f"{files.release}: no gene table in {files.folder}; only the 'full' space, no symbols")
        if genes_ref is None:
            genes_ref, rids_ref = genes, rids
        elif set(rids) != set(rids_ref or []):
            raise FormatError(
                f"the matrix rows of {files.matrix.name} are not the genes of the first release's matrix; "
                "releases combined in one store must share their gene space",
                path=files.matrix,
            )
        src.close()
        sources.append(ReleaseSource(files, len(cids), columns, info, n_null, snotes))
        notes.extend(snotes)
    frames = _harmonise([s.sig_info for s in sources])
    for s, f in zip(sources, frames, strict=True):
        s.sig_info = f
    from opencmap.io.store.writer import _resolve_gene_info

    first = SignatureSource(sources[0].files.matrix)
    genes_full = _resolve_gene_info(first, genes_ref, str(sources[0].files.tables.get("gene_info", "")) or None)
    first.close()
    chosen = _resolve_spaces(genes_full, spaces, gene_lists)
    n_sigs = sum(len(s.columns) for s in sources)
    estimate = estimate_store_bytes(n_sigs, {k: len(v) for k, v in chosen.items()}, signature_major=signature_major)
    if sum(s.n_null for s in sources) == 0:
        notes.append("the store will hold no null signatures: FDR q-values cannot be computed")
    return ReleasePlan(sources, genes_full, chosen, estimate, pcl_sets, filters, notes)


def build_release_store(
    dest: str | os.PathLike[str],
    folders: Sequence[str | os.PathLike[str]] | ReleasePlan,
    *,
    release: str | None = None,
    pert_info: str | os.PathLike[str] | pd.DataFrame | None = None,
    pcl: Any = None,
    filters: BuildFilters | None = None,
    spaces: Sequence[str] | None = None,
    gene_lists: Mapping[str, Sequence[str]] | None = None,
    default_space: str | None = None,
    signature_major: bool = True,
    block_size: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    matrix: str | None = None,
    backend: Backend | None = None,
) -> tuple[Store, ReleasePlan]:
    """Build a reference store at ``dest`` from one or more release folders (see :func:`plan_release_store`).

    The disk the whole store needs is checked before anything is written
    (:class:`~opencmap.errors.DiskSpaceError`); each folder becomes one segment; if a later
    folder fails, the store is removed (nothing half written). ``backend``: where each segment's
    blocks are read and ranked (:func:`~opencmap.query.store.build_store`; a distributed
    backend's workers read the release matrices at the same paths); the files are the same.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        from opencmap.errors import StoreError

        raise StoreError(f"{dest} already exists; pass overwrite=True (CLI --overwrite) or choose another path")
    plan = folders if isinstance(folders, ReleasePlan) else plan_release_store(
        folders, release=release, pert_info=pert_info, pcl=pcl, filters=filters, spaces=spaces,
        gene_lists=gene_lists, signature_major=signature_major, matrix=matrix,
    )
    check_disk(dest, plan.estimate["total_bytes"])
    for line in plan.notes:
        log.info("%s", line)
    total = plan.n_signatures
    done = [0]

    def seg_progress(d: int, _t: int) -> None:
        if progress is not None:
            progress(done[0] + d, total)

    provenance = plan.describe()
    first, rest = plan.sources[0], plan.sources[1:]
    final = Path(dest)
    if rest:  # several steps (build + appends): done aside, then switched in as one step
        from opencmap.errors import StoreError
        from opencmap.io.store.writer import _building_path

        if final.exists() and not overwrite:
            raise StoreError(f"{final} already exists; pass overwrite=True (CLI --overwrite) or choose another path")
        dest, overwrite = _building_path(final), False
    store = build_store(
        dest, first.files.matrix, sig_info=first.sig_info, gene_info=plan.genes, spaces=[s for s in plan.spaces if s not in (gene_lists or {})],
        gene_lists=gene_lists, default_space=default_space, signature_major=signature_major, block_size=block_size,
        overwrite=overwrite, progress=seg_progress, pcl=plan.pcl, columns=first.columns, provenance=provenance,
        backend=backend,
    )
    done[0] += len(first.columns)
    try:
        for src in rest:
            store = append_store(dest, src.files.matrix, sig_info=src.sig_info, block_size=block_size,
                                 progress=seg_progress, columns=src.columns, backend=backend)
            done[0] += len(src.columns)
        if rest:
            from opencmap.io.store.writer import Store, _switch_into

            _switch_into(Path(dest), final)
            store = Store(final)
    except BaseException:
        shutil.rmtree(Path(dest).parent if rest else dest, ignore_errors=True)
        raise
    finally:
        if rest:
            shutil.rmtree(Path(dest).parent, ignore_errors=True)
    return store, plan


def append_release_store(
    path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    release: str | None = None,
    pert_info: str | os.PathLike[str] | pd.DataFrame | None = None,
    filters: BuildFilters | None = None,
    block_size: int | None = None,
    keep_backgrounds: bool = False,
    progress: Callable[[int, int], None] | None = None,
    matrix: str | None = None,
    backend: Backend | None = None,
) -> tuple[Store, ReleasePlan]:
    """Add a release folder to an existing store as a new segment (e.g. GSE70138 after GSE92742).

    The folder's tables are joined and filtered as by :func:`build_release_store`; the store's
    PCLs name mechanisms; the signature table gets the store's columns (missing ones empty) and
    the store's provenance records the release. See :func:`~opencmap.query.store.append_store`
    for the backgrounds and ``backend``.
    """
    store = Store(path)
    plan = plan_release_store([folder], release=release, pert_info=pert_info, pcl=store.pcl, filters=filters,
                              spaces=[s for s in store.spaces if s in ("lm", "bing", "full")] or None, matrix=matrix)
    src = plan.sources[0]
    info = src.sig_info
    existing = list(store.sig_info.columns)
    for col in existing:
        if col not in info.columns:
            info[col] = pd.Series(pd.NA, index=info.index, dtype="string[pyarrow]")
    info = info[existing + [c for c in info.columns if c not in existing]]
    for line in plan.notes:
        log.info("%s", line)
    appended = append_store(path, src.files.matrix, sig_info=info, block_size=block_size,
                            keep_backgrounds=keep_backgrounds, progress=progress, columns=src.columns, backend=backend)
    prov = dict(appended.manifest.get("provenance", {}))
    described = plan.describe()
    prov["releases"] = [*prov.get("releases", []), *described["releases"]]
    prov["notes"] = [*prov.get("notes", []), *plan.notes]
    appended.commit(provenance=prov)
    return Store(path), plan
