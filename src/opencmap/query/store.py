"""The reference store: Level 5 signatures laid out on disk for fast connectivity queries.

A store is a directory::

    manifest.json                      format name + version, spaces, segments, checksums
    genes.parquet                      the gene table (``pr_gene_id`` + annotations), input row order
    segments/seg-00000/
        sig_info.parquet               signature metadata of this segment (store order)
        <space>/ranks.npy              uint16 (n_features, n_sigs)  gene-major, 1 = largest, 0 = missing
        <space>/scores.npy             float32 (n_features, n_sigs) gene-major
        <space>/scores_by_sig.npy      float32 (n_sigs, n_features) signature-major (optional)
    backgrounds/<level>/...            tau reference distributions (see :mod:`opencmap.query.background`)

*Gene-major* matrices let a query read only the rows of its genes; every file is an ``.npy``
opened with ``np.load(mmap_mode="r")``, so a store larger than RAM still answers (the OS pages
in what a query touches). Signatures are added in *segments*: :func:`build_store` writes one
segment in blocks of signatures with bounded memory, :func:`append_store` adds another segment
without rewriting the existing ones. The manifest is the single commit point: it is written last
and atomically, a build happens in a temporary directory renamed into place, and readers refuse
stores written by a newer format version (:class:`~opencmap.errors.VersionError`).

Ranks are computed within each feature space (``lm``: ``pr_is_lm == 1``, ``bing``:
``pr_is_bing == 1``, ``full``: every input row, or user gene lists), descending, ties broken by
the store's gene order (CMap-compat, spec §0.3.2).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import GCT
from opencmap.errors import IdNotFoundError, StoreError, ValidationError, VersionError
from opencmap.kernels.ranks import descending_ranks_rows

__all__ = [
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "Store",
    "FeatureSpace",
    "build_store",
    "append_store",
    "open_store",
]

log = logging.getLogger(__name__)

STORE_FORMAT = "opencmap-reference-store"
STORE_FORMAT_VERSION = 1

Progress = Callable[[int, int], None]  # (done, total) signatures

_SPACE_PREFERENCE = ("bing", "full", "aig", "lm")
_MANIFEST = "manifest.json"
_CHUNK = 1 << 24


# ---------------------------------------------------------------------------------- helpers
def _write_bytes_atomic(path: Path, payload: bytes) -> None:
    from opencmap.io.atomic import atomic_write_path

    with atomic_write_path(path) as tmp:
        Path(tmp).write_bytes(payload)


def _file_checksum(path: Path) -> str:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}"


def _flag(series: pd.Series) -> np.ndarray:
    """0/1/'1'/True/-666 -> bool."""
    values = pd.to_numeric(series.astype(object), errors="coerce").fillna(0).to_numpy()
    return values.astype(float) == 1


def _id_text(value: Any) -> str:
    """An id as text: 5720.0 -> '5720' (ids read as floats), NaN -> ''."""
    if isinstance(value, float):
        return "" if np.isnan(value) else (str(int(value)) if value.is_integer() else str(value))
    return str(value)


def _as_str_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Metadata to store: object/string columns as plain str, keeping numbers numeric."""
    out = df.copy()
    for col in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col])):
            out[col] = out[col].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return out


@dataclass(frozen=True)
class FeatureSpace:
    """A feature space of the store: its name and gene ids (in store order)."""

    name: str
    gene_ids: pd.Index

    @property
    def n_features(self) -> int:
        return len(self.gene_ids)

    @cached_property
    def _row_of(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.gene_ids)}

    def positions(self, gene_ids: Sequence[str]) -> np.ndarray:
        """0-based rows of ``gene_ids`` in this space (-1 where absent)."""
        row_of = self._row_of
        return np.fromiter((row_of.get(str(g), -1) for g in gene_ids), dtype=np.intp, count=len(gene_ids))


# ---------------------------------------------------------------------------------- sources
class _SignatureSource:
    """Level 5 signatures read in column blocks: a GCT in memory or a GCT/GCTX file."""

    def __init__(self, signatures: GCT | str | os.PathLike[str]):
        if isinstance(signatures, GCT):
            self._gct: GCT | None = signatures
            self._path: Path | None = None
            self.rids = signatures.rids
            self.cids = signatures.cids
            self.row_meta = signatures.row_meta
            self.col_meta = signatures.col_meta
        else:
            from opencmap.io import read_gct

            self._gct = None
            self._path = Path(signatures)
            if not self._path.exists():
                raise StoreError(f"signature file not found: {self._path}")
            meta = read_gct(self._path, meta_only=True)
            self.rids, self.cids = meta.rids, meta.cids
            self.row_meta, self.col_meta = meta.row_meta, meta.col_meta

    def block(self, start: int, stop: int, rows: np.ndarray) -> np.ndarray:
        """float32 (len(rows), stop - start)."""
        if self._gct is not None:
            return np.asarray(self._gct.data[rows, start:stop], dtype=np.float32)
        from opencmap.io import read_gct

        part = read_gct(self._path, cidx=list(range(start, stop)))  # type: ignore[arg-type]
        return np.asarray(part.data[rows], dtype=np.float32)


def _load_table(table: pd.DataFrame | str | os.PathLike[str] | None) -> pd.DataFrame | None:
    if table is None or isinstance(table, pd.DataFrame):
        return table
    from opencmap.io import read_table

    return read_table(table)


def _resolve_sig_info(source: _SignatureSource, sig_info: pd.DataFrame | None) -> pd.DataFrame:
    if sig_info is None:
        info = source.col_meta.copy()
        info.insert(0, "sig_id", [str(c) for c in source.cids])
        return info.reset_index(drop=True)
    info = sig_info.copy()
    if "sig_id" not in info.columns:
        if info.index.name in ("sig_id", "cid", "id"):
            info = info.reset_index().rename(columns={info.index.name: "sig_id"})
        else:
            raise ValidationError("sig_info needs a 'sig_id' column (one row per signature of the matrix)")
    info["sig_id"] = info["sig_id"].astype(str)
    if info["sig_id"].duplicated().any():
        dup = info.loc[info["sig_id"].duplicated(), "sig_id"].head(5).tolist()
        raise ValidationError(f"sig_info has duplicated sig_id values: {dup}")
    pos = pd.Index(info["sig_id"], dtype=object).get_indexer(pd.Index(source.cids, dtype=object))
    if (pos < 0).any():
        missing = pd.Index(source.cids)[pos < 0][:5].tolist()
        raise IdNotFoundError(
            f"{int((pos < 0).sum())} signatures of the matrix are not in sig_info (e.g. {missing}); "
            "give a sig_info table covering every column"
        )
    return info.iloc[pos].reset_index(drop=True)


def _resolve_gene_info(source: _SignatureSource, gene_info: pd.DataFrame | None) -> pd.DataFrame:
    rids = pd.Index([str(r) for r in source.rids], dtype=object)
    if gene_info is None:
        genes = source.row_meta.copy()
        if "pr_gene_id" in genes.columns:
            # probe-space matrices: rows are probes, pr_gene_id their Entrez ids (kept for lookups)
            genes = genes.rename(columns={"pr_gene_id": "entrez_id"})
            genes["entrez_id"] = genes["entrez_id"].map(_id_text)
        genes.insert(0, "pr_gene_id", list(rids))
        if "pr_is_bing" not in genes.columns and "is_bing" in genes.columns:
            genes = genes.rename(columns={"is_bing": "pr_is_bing"})
        return genes.reset_index(drop=True)
    genes = gene_info.copy()
    if "pr_gene_id" not in genes.columns:
        genes = genes.reset_index().rename(columns={genes.index.name or "index": "pr_gene_id"})
    genes["pr_gene_id"] = genes["pr_gene_id"].astype(str)
    genes = genes.drop_duplicates("pr_gene_id").set_index("pr_gene_id")
    genes = genes.reindex(rids)
    genes.index.name = "pr_gene_id"
    return genes.reset_index()


def _resolve_spaces(
    genes: pd.DataFrame,
    spaces: Sequence[str] | None,
    gene_lists: Mapping[str, Sequence[str]] | None,
) -> dict[str, list[str]]:
    ids = genes["pr_gene_id"].astype(str).tolist()
    available: dict[str, list[str]] = {}
    if "pr_is_lm" in genes.columns:
        lm = [g for g, f in zip(ids, _flag(genes["pr_is_lm"]), strict=True) if f]
        if lm:
            available["lm"] = lm
    if "pr_is_bing" in genes.columns:
        bing = [g for g, f in zip(ids, _flag(genes["pr_is_bing"]), strict=True) if f]
        if bing:
            available["bing"] = bing
    available["full"] = ids
    if spaces is None:
        chosen = {k: v for k, v in available.items() if k != "full"}
        if not any(len(v) == len(ids) for v in chosen.values()):
            chosen["full"] = ids
    else:
        chosen = {}
        for name in spaces:
            key = "full" if name == "aig" else name
            if key not in available:
                raise ValidationError(
                    f"feature space {name!r} cannot be derived from the gene table "
                    f"(available: {sorted(available)}); give pr_is_lm/pr_is_bing columns or gene_lists="
                )
            chosen[name] = available[key]
    known = set(ids)
    for name, genes_in in (gene_lists or {}).items():
        wanted = [str(g) for g in genes_in]
        missing = [g for g in wanted if g not in known]
        if missing:
            raise IdNotFoundError(
                f"gene list for space {name!r}: {len(missing)} genes are not rows of the signatures, "
                f"e.g. {missing[:5]}"
            )
        order = {g: i for i, g in enumerate(ids)}
        chosen[name] = sorted(dict.fromkeys(wanted), key=order.__getitem__)
    for name, members in chosen.items():
        if len(members) > np.iinfo(np.uint16).max:
            raise ValidationError(f"space {name!r} has {len(members)} genes; at most 65,535 fit uint16 ranks")
        if len(members) < 2:
            raise ValidationError(f"space {name!r} has {len(members)} genes; need at least 2")
    return chosen


# ---------------------------------------------------------------------------------- writing
def _write_segment(
    seg_dir: Path,
    source: _SignatureSource,
    sig_info: pd.DataFrame,
    space_rows: Mapping[str, np.ndarray],
    *,
    block_size: int,
    signature_major: bool,
    progress: Progress | None,
) -> dict[str, Any]:
    """Write one segment (all columns of ``source``) into ``seg_dir``; return its manifest entry."""
    n_sigs = len(source.cids)
    seg_dir.mkdir(parents=True, exist_ok=False)
    arrays: dict[str, dict[str, np.memmap]] = {}
    for name, rows in space_rows.items():
        (seg_dir / name).mkdir()
        g = len(rows)
        arrays[name] = {
            "ranks": np.lib.format.open_memmap(seg_dir / name / "ranks.npy", mode="w+", dtype=np.uint16, shape=(g, n_sigs)),
            "scores": np.lib.format.open_memmap(seg_dir / name / "scores.npy", mode="w+", dtype=np.float32, shape=(g, n_sigs)),
        }
        if signature_major:
            arrays[name]["scores_by_sig"] = np.lib.format.open_memmap(
                seg_dir / name / "scores_by_sig.npy", mode="w+", dtype=np.float32, shape=(n_sigs, g)
            )
    all_rows = np.unique(np.concatenate([np.asarray(r) for r in space_rows.values()]))
    local = {name: np.searchsorted(all_rows, rows) for name, rows in space_rows.items()}
    for start in range(0, n_sigs, block_size):
        stop = min(start + block_size, n_sigs)
        block = source.block(start, stop, all_rows)
        for name in space_rows:
            by_sig = np.ascontiguousarray(block[local[name]].T)  # (k, G): rows sort fastest
            ranks = descending_ranks_rows(by_sig, dtype=np.uint16)
            ranks[np.isnan(by_sig)] = 0
            out = arrays[name]
            out["ranks"][:, start:stop] = ranks.T
            out["scores"][:, start:stop] = by_sig.T
            if signature_major:
                out["scores_by_sig"][start:stop, :] = by_sig
        if progress is not None:
            progress(stop, n_sigs)
    files: dict[str, dict[str, Any]] = {}
    for name, out in arrays.items():
        for kind, mm in out.items():
            mm.flush()
            rel = f"{name}/{kind}.npy"
            files[rel] = {"shape": list(mm.shape), "dtype": str(mm.dtype)}
        del out
    arrays.clear()
    sig_info_out = _as_str_frame(sig_info)
    sig_info_out.to_parquet(seg_dir / "sig_info.parquet", index=False)
    files["sig_info.parquet"] = {}
    for rel, entry in files.items():
        path = seg_dir / rel
        entry["bytes"] = path.stat().st_size
        entry["checksum"] = _file_checksum(path)
    return {"name": seg_dir.name, "n_signatures": n_sigs, "files": files}


def _check_block_size(block_size: int) -> int:
    if int(block_size) < 1:
        raise ValidationError(f"block_size must be >= 1, got {block_size}")
    return int(block_size)


def build_store(
    dest: str | os.PathLike[str],
    signatures: GCT | str | os.PathLike[str],
    *,
    sig_info: pd.DataFrame | str | os.PathLike[str] | None = None,
    gene_info: pd.DataFrame | str | os.PathLike[str] | None = None,
    spaces: Sequence[str] | None = None,
    gene_lists: Mapping[str, Sequence[str]] | None = None,
    default_space: str | None = None,
    signature_major: bool = True,
    block_size: int = 4096,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Store:
    """Build a reference store at ``dest`` from Level 5 signatures (genes x signatures).

    Parameters
    ----------
    dest:
        Directory to create (built in a temporary sibling and renamed into place).
    signatures:
        A :class:`~opencmap.core.gct.GCT` or a GCT/GCTX path (read ``block_size`` columns at a time).
    sig_info:
        Signature table (``sig_id`` + GEO ``sig_info`` fields), DataFrame or path; default: the
        matrix's column metadata.
    gene_info:
        Gene table (``pr_gene_id, pr_gene_symbol, pr_is_lm, pr_is_bing``), default: row metadata.
    spaces:
        Feature spaces to build among ``lm``, ``bing``, ``full`` (alias ``aig``); default every
        space the gene table defines (``full`` only if no other space covers every row).
    gene_lists:
        Extra named spaces from explicit gene lists.
    default_space:
        Space used by queries unless told otherwise (default: bing, full, aig, lm - first present).
    signature_major:
        Also store scores signature-major (for whole-signature metrics and signature queries).
    block_size:
        Signatures per block; memory is about ``block_size x n_genes x 10`` bytes.
    overwrite:
        Replace an existing store at ``dest``.
    progress:
        Called as ``progress(done, total)`` after each block.
    """
    dest = Path(dest)
    block_size = _check_block_size(block_size)
    if dest.exists() and not overwrite:
        raise StoreError(f"{dest} already exists; pass overwrite=True (CLI --overwrite) or choose another path")
    source = _SignatureSource(signatures)
    info = _resolve_sig_info(source, _load_table(sig_info))
    genes = _resolve_gene_info(source, _load_table(gene_info))
    chosen = _resolve_spaces(genes, spaces, gene_lists)
    if default_space is None:
        default_space = next((s for s in _SPACE_PREFERENCE if s in chosen), next(iter(chosen)))
    elif default_space not in chosen:
        raise ValidationError(f"default_space {default_space!r} is not one of the built spaces {sorted(chosen)}")
    gene_pos = {g: i for i, g in enumerate(genes["pr_gene_id"])}
    space_rows = {name: np.array([gene_pos[g] for g in members], dtype=np.intp) for name, members in chosen.items()}

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    try:
        _as_str_frame(genes).to_parquet(tmp / "genes.parquet", index=False)
        seg = _write_segment(
            tmp / "segments" / "seg-00000",
            source,
            info,
            space_rows,
            block_size=block_size,
            signature_major=signature_major,
            progress=progress,
        )
        manifest = {
            "format": STORE_FORMAT,
            "format_version": STORE_FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "n_signatures": seg["n_signatures"],
            "default_space": default_space,
            "signature_major": bool(signature_major),
            "genes": {"file": "genes.parquet", "n_genes": len(genes), "checksum": _file_checksum(tmp / "genes.parquet")},
            "spaces": {name: {"gene_ids": list(members), "n_features": len(members)} for name, members in chosen.items()},
            "segments": [seg],
            "backgrounds": {},
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1))
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built store %s: %d signatures, spaces %s", dest, manifest["n_signatures"], sorted(chosen))
    return Store(dest)


def append_store(
    path: str | os.PathLike[str],
    signatures: GCT | str | os.PathLike[str],
    *,
    sig_info: pd.DataFrame | str | os.PathLike[str] | None = None,
    block_size: int = 4096,
    progress: Progress | None = None,
) -> Store:
    """Add signatures to an existing store as a new segment (no rebuild of existing data).

    The new matrix must contain every gene of every space of the store (extra rows are ignored).
    sig_ids must be new. Backgrounds are dropped from the manifest (they no longer describe the
    store): rebuild them with :func:`opencmap.query.background.build_background`.
    """
    store = Store(path)
    block_size = _check_block_size(block_size)
    source = _SignatureSource(signatures)
    info = _resolve_sig_info(source, _load_table(sig_info))
    clash = pd.Index(info["sig_id"]).intersection(store.sig_ids)
    if len(clash):
        raise StoreError(f"{len(clash)} sig_ids are already in the store {store.path}, e.g. {clash[:5].tolist()}")
    rid_pos = pd.Index([str(r) for r in source.rids], dtype=object)
    space_rows: dict[str, np.ndarray] = {}
    for name, sp in store.spaces.items():
        rows = rid_pos.get_indexer(sp.gene_ids)
        if (rows < 0).any():
            missing = sp.gene_ids[rows < 0][:5].tolist()
            raise IdNotFoundError(
                f"the signatures to append lack {int((rows < 0).sum())} genes of space {name!r}, e.g. {missing}"
            )
        space_rows[name] = rows
    manifest = store.manifest
    seg_name = f"seg-{len(manifest['segments']):05d}"
    seg_root = store.path / "segments"
    tmp = Path(tempfile.mkdtemp(prefix=f".{seg_name}.building-", dir=seg_root))
    try:
        seg = _write_segment(
            tmp / seg_name,
            source,
            info,
            space_rows,
            block_size=block_size,
            signature_major=bool(manifest.get("signature_major", True)),
            progress=progress,
        )
        final = seg_root / seg_name
        if final.exists():  # left over from an interrupted append that never reached the manifest
            shutil.rmtree(final)
        os.replace(tmp / seg_name, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    new = dict(manifest)
    new["segments"] = [*manifest["segments"], seg]
    new["n_signatures"] = int(manifest["n_signatures"]) + seg["n_signatures"]
    stale = new.get("backgrounds", {})
    new["backgrounds"] = {}
    _write_bytes_atomic(store.path / _MANIFEST, json.dumps(new, indent=1).encode())
    for level in stale:
        shutil.rmtree(store.path / "backgrounds" / level, ignore_errors=True)
    if stale:
        log.warning("appending to %s dropped the tau backgrounds %s; rebuild them", store.path, sorted(stale))
    return Store(store.path)


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open an existing store (alias of ``Store(path)``)."""
    return Store(path)


# ---------------------------------------------------------------------------------- reading
class _Segment:
    __slots__ = ("name", "offset", "n", "dir", "_arrays")

    def __init__(self, name: str, offset: int, n: int, directory: Path):
        self.name, self.offset, self.n, self.dir = name, offset, n, directory
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, space: str, kind: str) -> np.ndarray:
        key = f"{space}/{kind}"
        arr = self._arrays.get(key)
        if arr is None:
            path = self.dir / space / f"{kind}.npy"
            if not path.exists():
                raise StoreError(f"store file missing: {path}; rebuild the store")
            arr = np.load(path, mmap_mode="r")
            self._arrays[key] = arr
        return arr


class Store:
    """A reference store opened read-only (memory-mapped).

    Attributes
    ----------
    path : Path
    manifest : dict
    sig_info : DataFrame, one row per signature in store order (``sig_id`` column)
    genes : DataFrame, the gene table (``pr_gene_id`` column)
    spaces : dict of :class:`FeatureSpace`
    default_space : str
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_dir():
            raise StoreError(f"no reference store at {self.path} (build one with `opencmap store build`)")
        self.manifest = self._read_manifest()
        m = self.manifest
        self.default_space: str = m["default_space"]
        self.spaces = {
            name: FeatureSpace(name, pd.Index([str(g) for g in entry["gene_ids"]], dtype=object))
            for name, entry in m["spaces"].items()
        }
        self._segments: list[_Segment] = []
        offset = 0
        for seg in m["segments"]:
            seg_dir = self.path / "segments" / seg["name"]
            for rel, entry in seg["files"].items():
                f = seg_dir / rel
                if not f.exists():
                    raise StoreError(f"store file missing: {f}; the store is incomplete, rebuild it")
                if f.stat().st_size != entry["bytes"]:
                    raise StoreError(
                        f"store file {f} has {f.stat().st_size} bytes, the manifest says {entry['bytes']}: "
                        "the store is corrupt or was modified; rebuild it"
                    )
            self._segments.append(_Segment(seg["name"], offset, int(seg["n_signatures"]), seg_dir))
            offset += int(seg["n_signatures"])
        if offset != int(m["n_signatures"]):
            raise StoreError(f"{self.path / _MANIFEST}: segment sizes add to {offset}, not n_signatures={m['n_signatures']}")
        self._sig_info: pd.DataFrame | None = None
        self._genes: pd.DataFrame | None = None

    def _read_manifest(self) -> dict[str, Any]:
        mpath = self.path / _MANIFEST
        if not mpath.exists():
            raise StoreError(f"{self.path} is not a reference store: {_MANIFEST} is missing")
        try:
            m = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{mpath} is corrupt ({exc}); rebuild the store") from exc
        if not isinstance(m, dict) or m.get("format") != STORE_FORMAT:
            raise StoreError(f"{mpath} is not an opencmap reference store manifest (format={m.get('format') if isinstance(m, dict) else None!r})")
        version = m.get("format_version")
        if not isinstance(version, int):
            raise StoreError(f"{mpath}: format_version missing or not an integer; rebuild the store")
        if version > STORE_FORMAT_VERSION:
            raise VersionError(
                f"store format version {version} is newer than this opencmap supports "
                f"({STORE_FORMAT_VERSION}); upgrade opencmap to read it",
                path=mpath,
            )
        for key in ("n_signatures", "default_space", "spaces", "segments", "genes"):
            if key not in m:
                raise StoreError(f"{mpath}: field {key!r} is missing; the manifest is corrupt, rebuild the store")
        return m

    # ------------------------------------------------------------------ metadata
    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, {self.n_signatures} signatures, spaces {sorted(self.spaces)}, default {self.default_space!r})"

    @property
    def n_signatures(self) -> int:
        return int(self.manifest["n_signatures"])

    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    @property
    def sig_info(self) -> pd.DataFrame:
        if self._sig_info is None:
            parts = [pd.read_parquet(seg.dir / "sig_info.parquet") for seg in self._segments]
            info = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"sig_id": []})
            info["sig_id"] = info["sig_id"].astype(str)
            self._sig_info = info
        return self._sig_info

    @property
    def sig_ids(self) -> pd.Index:
        return pd.Index(self.sig_info["sig_id"], dtype=object)

    @property
    def genes(self) -> pd.DataFrame:
        if self._genes is None:
            self._genes = pd.read_parquet(self.path / self.manifest["genes"]["file"])
            self._genes["pr_gene_id"] = self._genes["pr_gene_id"].astype(str)
        return self._genes

    def space(self, name: str | None = None) -> FeatureSpace:
        """The feature space ``name`` (default: the store's default space)."""
        key = self.default_space if name is None else name
        if key == "aig" and "aig" not in self.spaces and "full" in self.spaces:
            key = "full"
        if key not in self.spaces:
            raise StoreError(f"the store {self.path} has no feature space {key!r} (has {sorted(self.spaces)})")
        return self.spaces[key]

    def sig_positions(self, sig_ids: Sequence[str]) -> np.ndarray:
        """0-based store positions of ``sig_ids``; :class:`IdNotFoundError` for unknown ids."""
        wanted = pd.Index([str(s) for s in sig_ids], dtype=object)
        pos = self.sig_ids.get_indexer(wanted)
        if (pos < 0).any():
            missing = wanted[pos < 0][:10].tolist()
            raise IdNotFoundError(f"{int((pos < 0).sum())} sig_ids are not in the store {self.path}: {missing}")
        return pos

    # ------------------------------------------------------------------ data access
    def iter_gene_rows(
        self,
        gene_rows: np.ndarray,
        *,
        space: str | None = None,
        block_size: int = 16384,
        with_ranks: bool = True,
    ) -> Iterator[tuple[int, int, np.ndarray | None, np.ndarray]]:
        """Yield ``(start, stop, ranks, scores)`` blocks of all signatures for rows ``gene_rows``.

        ``gene_rows`` are 0-based rows of the space; ``ranks`` uint16 and ``scores`` float32 have
        shape ``(len(gene_rows), stop - start)``; only those rows are read from disk.
        """
        sp = self.space(space).name
        rows = np.asarray(gene_rows, dtype=np.intp)
        for seg in self._segments:
            r_mm = seg.array(sp, "ranks") if with_ranks else None
            s_mm = seg.array(sp, "scores")
            for lo in range(0, seg.n, block_size):
                hi = min(lo + block_size, seg.n)
                ranks = None if r_mm is None else r_mm[rows, lo:hi]
                yield seg.offset + lo, seg.offset + hi, ranks, s_mm[rows, lo:hi]

    def signature_scores(self, positions: Sequence[int] | np.ndarray, *, space: str | None = None) -> np.ndarray:
        """float32 ``(len(positions), n_features)`` scores of the signatures at store ``positions``."""
        sp = self.space(space)
        pos = np.asarray(positions, dtype=np.intp)
        out = np.empty((len(pos), sp.n_features), dtype=np.float32)
        if len(pos) and (pos.min() < 0 or pos.max() >= self.n_signatures):
            raise IdNotFoundError(f"signature positions out of range 0..{self.n_signatures - 1}")
        for seg in self._segments:
            sel = np.flatnonzero((pos >= seg.offset) & (pos < seg.offset + seg.n))
            if not len(sel):
                continue
            local = pos[sel] - seg.offset
            if self.manifest.get("signature_major", True):
                out[sel] = seg.array(sp.name, "scores_by_sig")[local]
            else:
                out[sel] = seg.array(sp.name, "scores")[:, local].T
        return out

    def signature_ranks(self, positions: Sequence[int] | np.ndarray, *, space: str | None = None) -> np.ndarray:
        """uint16 ``(n_features, len(positions))`` stored ranks of the given signatures."""
        sp = self.space(space)
        pos = np.asarray(positions, dtype=np.intp)
        out = np.empty((sp.n_features, len(pos)), dtype=np.uint16)
        for seg in self._segments:
            sel = np.flatnonzero((pos >= seg.offset) & (pos < seg.offset + seg.n))
            if len(sel):
                out[:, sel] = seg.array(sp.name, "ranks")[:, pos[sel] - seg.offset]
        return out

    # ------------------------------------------------------------------ integrity
    def verify(self) -> None:
        """Recompute every checksum; :class:`StoreError` naming the first file that differs."""
        files = [(self.path / self.manifest["genes"]["file"], self.manifest["genes"]["checksum"])]
        for seg in self.manifest["segments"]:
            for rel, entry in seg["files"].items():
                files.append((self.path / "segments" / seg["name"] / rel, entry["checksum"]))
        for level, entry in self.manifest.get("backgrounds", {}).items():
            for rel, checksum in entry.get("checksums", {}).items():
                files.append((self.path / "backgrounds" / level / rel, checksum))
        for path, expected in files:
            if not path.exists():
                raise StoreError(f"store file missing: {path}")
            got = _file_checksum(path)
            if got != expected:
                raise StoreError(f"checksum mismatch for {path}: {got} != {expected} in the manifest; rebuild the store")

    def info(self) -> dict[str, Any]:
        """A small summary (for ``opencmap store info``)."""
        m = self.manifest
        return {
            "path": str(self.path),
            "format_version": m["format_version"],
            "created": m.get("created"),
            "n_signatures": m["n_signatures"],
            "n_segments": len(m["segments"]),
            "default_space": m["default_space"],
            "spaces": {k: v["n_features"] for k, v in m["spaces"].items()},
            "signature_major": m.get("signature_major", True),
            "backgrounds": sorted(m.get("backgrounds", {})),
        }

    # ------------------------------------------------------------------ manifest updates
    def _update_manifest(self, **changes: Any) -> None:
        """Rewrite the manifest atomically with ``changes`` merged in (used by background builds)."""
        new = dict(self.manifest)
        new.update(changes)
        _write_bytes_atomic(self.path / _MANIFEST, json.dumps(new, indent=1).encode())
        self.manifest = new
