"""The reference store: Level 5 signatures laid out on disk for fast connectivity queries.

A store is a directory::

    manifest.json                      format name + version, spaces, segments, checksums, disk
                                       estimate, provenance (release, files, filters, notes)
    genes.parquet                      the gene table (``pr_gene_id`` + annotations), input row order
    pcl.gmt                            perturbagen classes given at build (optional; queries use them)
    segments/seg-00000/
        sig_info.parquet               signature metadata of this segment (store order)
        <space>/ranks.npy              uint16 (n_features, n_sigs)  gene-major, 1 = largest, 0 = missing
        <space>/scores.npy             float32 (n_features, n_sigs) gene-major
        <space>/scores_by_sig.npy      float32 (n_sigs, n_features) signature-major (optional)
        <space>/<kind>.crc.npy         uint64 (rows, chunks) xxh3 of every 16,384-column chunk of a row
    backgrounds/<level>.g<N>/...       tau reference distributions (see :mod:`opencmap.query.background`)
    .lock                              writer lock (flock): one process changes a store at a time

Durability (format version 2): every 2-D data file carries chunk checksums that the readers
(:meth:`Store.iter_blocks`, :meth:`Store.signature_scores`, :meth:`Store.signature_ranks`) check
the first time each chunk is read, so a corrupted file refuses the query with a
:class:`~opencmap.errors.StoreError` naming it (stores of version 1 open with an
:class:`~opencmap.errors.UncheckedStoreWarning`). Every change is one atomic step: new files go
under new names (a new segment, ``backgrounds/<level>.g<N>``), the manifest that refers to them is
made durable and renamed over the old one last; ``--overwrite`` swaps the complete new store with
the old one (``renameat2(RENAME_EXCHANGE)``). Whatever a killed run left is removed, with a log
line, by the next writer and by :func:`cleanup_store` (``opencmap store info --verify``). Tests
inject faults with ``$OPENCMAP_FAULT_AT`` (:func:`_fault`).

*Gene-major* matrices let a query read only the rows of its genes; every file is an ``.npy``
opened with ``np.load(mmap_mode="r")``, so a store larger than RAM still answers (the OS pages
in what a query touches). Signatures are added in *segments*: :func:`build_store` writes one
segment in blocks of signatures with bounded memory, :func:`append_store` adds another segment
without rewriting the existing ones, :func:`compact_store` merges segments into one. The manifest
is the single commit point: it is written last and atomically, a build happens in a temporary
directory renamed into place, and readers refuse stores written by a newer format version
(:class:`~opencmap.errors.VersionError`).

Builds scale past RAM: blocks of signatures are read signature-major (contiguous in GCTX) on a
reader thread, ranked and transposed by one fused kernel
(:func:`~opencmap.kernels.store_ranks.gene_major_block`), and written by a writer thread as one
contiguous extent per gene row and block with ``os.pwrite`` (no memory-mapped scatter, whose dirty
pages made builds larger than RAM collapse); files are allocated up front (a full disk fails at
once) and made durable before the manifest commits them. Memory is the block buffers (~2 GiB).

Ranks are computed within each feature space (``lm``: ``pr_is_lm == 1``, ``bing``:
``pr_is_bing == 1``, ``full``: every input row, or user gene lists), descending, ties broken by
the store's gene order (CMap-compat, spec §0.3.2).
"""

from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import shutil
import tempfile
import warnings
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
from opencmap.errors import IdNotFoundError, OpenCMapWarning, StoreError, ValidationError, VersionError

__all__ = [
    "STORE_FORMAT",
    "estimate_store_bytes",
    "check_disk",
    "STORE_FORMAT_VERSION",
    "Store",
    "FeatureSpace",
    "build_store",
    "append_store",
    "compact_store",
    "open_store",
    "prefetch_columns",
    "cleanup_store",
    "store_writer",
]

log = logging.getLogger(__name__)

STORE_FORMAT = "opencmap-reference-store"
STORE_FORMAT_VERSION = 2  # 2: per-chunk checksums (``*.crc.npy``, xxh3) checked as queries read; 1 still opens
_CHUNK_COLS = 16384  # columns per checksummed chunk of a 2-D data file (32 KB of ranks, 64 KB of scores)
_CHUNK_ALGO = "xxh3_64"  # chunk checksum (the reader also knows "crc32")
_FAULT_ENV = "OPENCMAP_FAULT_AT"  # tests: a step name at which the process dies (os._exit), see _fault
_LOCK = ".lock"

Progress = Callable[[int, int], None]  # (done, total) signatures

_SPACE_PREFERENCE = ("bing", "full", "aig", "lm")
_MANIFEST = "manifest.json"
_CHUNK = 1 << 24
_SYNC_BYTES = 1 << 28  # build: write out and drop written pages every 256 MiB (bounded page cache) ...
_RELEASE_FRACTION: float | None = None  # ... when a segment exceeds this share of RAM (None: never)
_BUILD_MEMORY = 2 << 30  # build: buffer budget that sets the default block size
_MAX_WRITE = 1 << 30  # largest single os.pwrite
_RANDOM_ACCESS_FRACTION = 0.5  # stores whose gene-major data exceed this share of RAM: no read-around
_WILLNEED_CHUNK = 128 << 10  # bytes per MADV_WILLNEED call (the kernel caps each call at its readahead window)



# ---------------------------------------------------------------------------------- durability
def _fault(step: str) -> None:
    """Fault injection for tests: die at ``step`` when ``$OPENCMAP_FAULT_AT`` names it
    (``os._exit(86)``: no cleanup, as a kill would), or raise ENOSPC when it names ``step:enospc``."""
    want = os.environ.get(_FAULT_ENV)
    if not want:
        return
    if want == step:
        log.error("fault injection: dying at %s", step)
        os._exit(86)
    if want == f"{step}:enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), step)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str, marker: str) -> int | None:
    """The pid embedded in a temporary name ``...<marker><pid>-...`` (None: no pid in it)."""
    _, sep, rest = name.partition(marker)
    head = rest.split("-", 1)[0] if sep else ""
    return int(head) if head.isdigit() else None


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _disk_full(exc: OSError, what: str, store: Path) -> StoreError:
    from opencmap.errors import StoreDiskSpaceError

    return StoreDiskSpaceError(
        f"disk full while {what} ({exc.filename or store}: {exc.strerror}); nothing was changed at {store} "
        "and the partial files were removed; free disk space and run it again"
    )


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the directory entries ``a`` and ``b`` (Linux ``renameat2(RENAME_EXCHANGE)``);
    False where the system or file system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class store_writer:  # noqa: N801 - used as a context manager
    """Exclusive writer lock of a store (``<store>/.lock``, ``flock``): one process changes a store
    at a time; a killed writer's lock is released by the kernel. Leftovers of killed runs are removed
    when the lock is taken (:func:`cleanup_store`)."""

    def __init__(self, path: str | os.PathLike[str], *, cleanup: bool = True):
        self.path = Path(path)
        self.cleanup = cleanup
        self.fd = -1

    def __enter__(self) -> "store_writer":
        import fcntl

        self.fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            raise StoreError(
                f"another opencmap process is changing the store {self.path} (it holds {self.path / _LOCK}); "
                "wait for it to finish and run this again"
            ) from None
        if self.cleanup:
            _cleanup_locked(self.path)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the flock
            self.fd = -1


def _referenced(manifest: Mapping[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """(segment names, background folders relative to the store, top-level files) the manifest uses."""
    segs = {str(seg["name"]) for seg in manifest.get("segments", [])}
    bgs = {str(e.get("dir") or f"backgrounds/{k}") for k, e in manifest.get("backgrounds", {}).items()}
    top = {_MANIFEST, _LOCK, str(manifest.get("genes", {}).get("file", "genes.parquet"))}
    if manifest.get("pcl"):
        top.add(str(manifest["pcl"]["file"]))
    return segs, bgs, top


def _remove(path: Path, why: str, removed: list[str]) -> None:
    log.warning("removing %s (%s)", path, why)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with __import__("contextlib").suppress(FileNotFoundError):
            path.unlink()
    removed.append(str(path))


def _cleanup_siblings(dest: Path, removed: list[str]) -> None:
    """Remove what killed builds of ``dest`` left beside it (``.<name>.building-<pid>-*`` of dead
    processes); restore a store left aside by an overwrite killed between its two renames."""
    parent = dest.parent
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        name = entry.name
        for marker in (f".{dest.name}.building-", f".{dest.name}.old-"):
            if not name.startswith(marker):
                continue
            pid = _owner_pid(name, marker)
            if pid is not None and pid != os.getpid() and _pid_alive(pid):
                continue  # a running build
            if marker.endswith(".old-") and not dest.exists() and (entry / _MANIFEST).exists():
                log.warning("restoring %s from %s (an overwrite was interrupted before the new store was in place)", dest, entry)
                os.replace(entry, dest)
                continue
            _remove(entry, "left by an interrupted store build", removed)


def _cleanup_locked(path: Path) -> list[str]:
    removed: list[str] = []
    mpath = path / _MANIFEST
    if not mpath.exists():
        return removed
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError):
        return removed  # not ours to judge: Store() reports a corrupt manifest
    segs, bgs, top = _referenced(manifest)
    for entry in path.iterdir():
        name = entry.name
        if name.startswith(".") and name.endswith(".tmp"):
            _remove(entry, "temporary file of an interrupted write", removed)
        elif entry.is_file() and name not in top and name.startswith(("genes-", "pcl-")):
            _remove(entry, "file of an older store generation", removed)
    seg_root = path / "segments"
    if seg_root.is_dir():
        for entry in seg_root.iterdir():
            if entry.name not in segs and (entry.name.startswith(".") or entry.name.startswith("seg-")):
                _remove(entry, "segment not in the manifest (interrupted append/compact/overwrite, or replaced)", removed)
    bg_root = path / "backgrounds"
    if bg_root.is_dir():
        keep_parents = {str(Path(b).parent) for b in bgs}
        for entry in sorted(bg_root.rglob("*"), key=lambda e: -len(e.parts)):
            rel = str(entry.relative_to(path))
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                _remove(entry, "temporary file of an interrupted write", removed)
            elif entry.is_dir() and rel not in bgs and rel not in keep_parents and not any(b.startswith(rel + "/") for b in bgs):
                if not any(rel.startswith(b + "/") for b in bgs):
                    _remove(entry, "tau background not in the manifest (interrupted or replaced)", removed)
    _cleanup_fdr_null(path / "fdr_null", removed)
    return removed


def _cleanup_fdr_null(root: Path, removed: list[str]) -> None:
    """Remove the temporary folders of FDR null builds whose process is gone."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name.startswith("."):
            pid = _owner_pid(entry.name, ".pid")
            if pid is not None and _pid_alive(pid) and pid != os.getpid():
                continue
            _remove(entry, "left by an interrupted FDR null build", removed)


def cleanup_store(path: str | os.PathLike[str]) -> list[str]:
    """Remove what interrupted runs left in and beside the store at ``path`` (temporary files,
    unreferenced segments and backgrounds, ``.<name>.building-*`` folders of dead builds), each
    with a log line; returns the removed paths. Skipped (empty list, logged) while another process
    is changing the store."""
    path = Path(path)
    removed: list[str] = []
    _cleanup_siblings(path, removed)
    if not path.is_dir():
        return removed
    try:
        with store_writer(path, cleanup=False):
            removed += _cleanup_locked(path)
    except StoreError:
        log.info("not cleaning %s: another process is changing it", path)
    except OSError as exc:  # a read-only store
        log.info("not cleaning %s: %s", path, exc)
    return removed


# ---------------------------------------------------------------------------------- helpers
def _write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file made durable, then one rename."""
    from opencmap.io.atomic import atomic_write_path

    with atomic_write_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        _fault("manifest:tmp-written")
        os.fsync(fh.fileno())
    _fsync_dir(path.parent)


def _file_checksum(path: Path) -> str:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
        if hasattr(os, "posix_fadvise"):  # a checksum pass must not evict what queries use
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
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
        if isinstance(out[col].dtype, pd.StringDtype):  # Arrow-backed text (release tables): vectorised
            out[col] = out[col].fillna("")
        elif not (pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col])):
            values = out[col].astype(object)
            out[col] = values.where(values.notna(), "").map(str)  # missing (None, NaN, pd.NA) -> ""
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
    """Level 5 signatures read in column blocks: a GCT in memory or a GCT/GCTX file.

    An AnnData ``.h5ad`` of signatures (``obs`` = signatures with their ``sig_info`` fields,
    ``var`` = genes with the gene table's fields, ``X`` = scores) is opened backed: blocks of
    signatures are rows of ``X``, read from the file as they are needed.

    :meth:`sig_block` returns blocks signature-major (one row per signature, every row of the
    matrix), as GCTX stores them, so a GCTX block is one contiguous read into a reused buffer.
    """

    def __init__(self, signatures: GCT | str | os.PathLike[str], columns: np.ndarray | None = None):
        self._gctx: Any = None  # GCTXFile once opened, False for sources that are not GCTX files
        self._columns: np.ndarray | None = None
        if not isinstance(signatures, GCT):
            _refuse_compressed(Path(signatures))
        self._h5ad: Any = None  # H5ADSignatures for .h5ad sources
        if not isinstance(signatures, GCT) and Path(signatures).suffix.lower() == ".h5ad":
            from opencmap.io.h5ad import H5ADSignatures

            if not Path(signatures).exists():
                raise StoreError(f"signature file not found: {signatures}")
            self._h5ad = H5ADSignatures(signatures)
            self._gct, self._path = None, None
            self.rids, self.cids = self._h5ad.gene_ids, self._h5ad.sig_ids
            self.row_meta, self.col_meta = self._h5ad.genes, self._h5ad.signatures
            self.n_rows = len(self.rids)
            log.info("store source %s: %d signatures x %d genes (AnnData obs x var, backed)", signatures, len(self.cids), self.n_rows)
            return
        if isinstance(signatures, GCT):
            self._gct: GCT | None = signatures
            self._path: Path | None = None
            self.rids = signatures.rids
            self.cids = signatures.cids
            self.row_meta = signatures.row_meta
            self.col_meta = signatures.col_meta
        else:
            from opencmap.io import read_gct

            from opencmap.io.decompress import resolve_gzipped_gctx

            self._gct = None
            self._path = Path(signatures)
            if not self._path.exists():
                raise StoreError(f"signature file not found: {self._path}")
            self._path = resolve_gzipped_gctx(self._path)  # .gctx.gz as GEO serves it: a decompressed copy
            meta = read_gct(self._path, meta_only=True)
            self.rids, self.cids = meta.rids, meta.cids
            self.row_meta, self.col_meta = meta.row_meta, meta.col_meta
        self.n_rows = len(self.rids)
        self._n_file_cols = len(self.cids)
        if columns is not None:
            # a subset of the matrix's columns (build-time filters), in file order
            cols = np.asarray(columns, dtype=np.int64)
            if len(cols) and (cols.min() < 0 or cols.max() >= len(self.cids) or (np.diff(cols) <= 0).any()):
                raise ValidationError("columns must be increasing positions of the matrix's columns")
            self._columns = cols
            self.cids = pd.Index(self.cids)[cols]
            self.col_meta = self.col_meta.iloc[cols]

    def _file(self) -> Any:
        """The open GCTX file (checked like every GCTX read), or None for other sources."""
        if self._gctx is None and self._path is not None:
            from opencmap.io import GCTXFile, is_gctx

            self._gctx = GCTXFile(self._path) if is_gctx(self._path) else False
            if self._gctx and self._gctx.shape != (self.n_rows, self._n_file_cols):
                shape = self._gctx.shape
                self.close()
                raise StoreError(f"{self._path}: matrix shape {shape} (rows, columns) does not match its metadata")
        return self._gctx or None

    def needs_buffer(self) -> bool:
        return self._file() is not None

    def sig_block(self, start: int, stop: int, buf: np.ndarray | None = None) -> np.ndarray:
        """float32 (stop - start, n_rows): signatures as rows (into ``buf`` for GCTX files)."""
        gctx = self._file()
        pos = np.arange(start, stop) if self._columns is None else self._columns[start:stop]
        if gctx is not None and buf is not None:
            # a run of columns, read by the io layer straight into the buffer (one HDF5 call)
            return gctx.read_matrix(cidx=pos, out=buf[: stop - start]).T
        if self._h5ad is not None:
            return self._h5ad.read_signatures(start, stop)
        if self._gct is not None:
            data = self._gct.data[:, start:stop] if self._columns is None else self._gct.data[:, pos]
        else:
            from opencmap.io import read_gct

            data = read_gct(self._path, cidx=pos.tolist()).data  # type: ignore[arg-type]
        return np.asarray(data, dtype=np.float32).T

    def close(self) -> None:
        if self._gctx:
            self._gctx.close()
        self._gctx = None
        if self._h5ad is not None:
            self._h5ad.close()


def _refuse_compressed(path: Path) -> None:
    """A gzip-compressed matrix (``.gctx.gz`` as GEO serves it) is refused before anything is read,
    unless the io layer decompresses it (``opencmap.io.decompress``, then the source resolves it)."""
    import importlib.util

    if importlib.util.find_spec("opencmap.io.decompress") is not None:
        return
    if path.is_file():
        with open(path, "rb") as fh:
            magic = fh.read(2)
        if magic == b"\x1f\x8b":
            plain = path.with_name(path.name[:-3]) if path.name.endswith(".gz") else path.with_suffix(".gctx")
            raise StoreError(
                f"{path} is gzip-compressed; a store is built from the decompressed matrix. Decompress it "
                f"beside the download (gunzip -k {path.name} -> {plain.name}) and give the folder or {plain.name}"
            )


#: bytes a stored signature takes per gene of a space: uint16 rank + float32 score (+ float32
#: signature-major copy)
BYTES_PER_GENE = {False: 6, True: 10}
_SIG_INFO_BYTES = 256  # sig_info.parquet per signature (upper end of what the releases' tables take)
_DISK_MARGIN = 1.02  # headroom over the estimate (file headers, manifest, genes table)


def estimate_store_bytes(n_signatures: int, space_sizes: Mapping[str, int], *, signature_major: bool = True) -> dict[str, Any]:
    """Disk a store of ``n_signatures`` will take: per signature per space, and the total.

    Exact for the matrices (``.npy`` files hold ``n_genes x n_signatures`` values of fixed size)
    plus an allowance for the signature table.
    """
    per = BYTES_PER_GENE[bool(signature_major)]
    per_space = {name: int(n) * per for name, n in space_sizes.items()}
    per_sig = sum(per_space.values()) + _SIG_INFO_BYTES
    return {
        "n_signatures": int(n_signatures),
        "bytes_per_signature_per_space": per_space,
        "bytes_per_signature": per_sig,
        "total_bytes": int(n_signatures * per_sig * _DISK_MARGIN) + (1 << 20),
        "signature_major": bool(signature_major),
    }


def check_disk(dest: str | os.PathLike[str], needed: int) -> int:
    """Free bytes where ``dest`` will be written; :class:`DiskSpaceError` if ``needed`` does not fit."""
    from opencmap.errors import DiskSpaceError

    target = Path(dest)
    probe = target if target.exists() else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = int(shutil.disk_usage(probe).free)
    if needed > free:
        raise DiskSpaceError(
            f"the store at {target} needs about {needed / 1e9:.2f} GB but {probe} has {free / 1e9:.2f} GB free; "
            "free space, build on a larger disk, build fewer spaces (--space), drop the signature-major copy "
            "(--no-signature-major) or filter signatures (--exemplar-only, --pert-type, --cell)"
        )
    return free


def _load_table(table: pd.DataFrame | str | os.PathLike[str] | None) -> pd.DataFrame | None:
    if table is None or isinstance(table, pd.DataFrame):
        return table
    from opencmap.io import read_table
    from opencmap.io.releases import read_known_signature_table

    known = read_known_signature_table(table)  # a release's sig_info (e.g. siginfo_beta.txt): fast, canonical
    return known if known is not None else read_table(table)


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


def _resolve_gene_info(source: _SignatureSource, gene_info: pd.DataFrame | None, source_name: str | None = None) -> pd.DataFrame:
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
    from opencmap.io.releases import canonical_genes

    genes = canonical_genes(gene_info, source=source_name)
    known = pd.Index(genes["pr_gene_id"]).get_indexer(rids)
    table = f"the gene table {source_name}" if source_name else "the gene table"
    n_missing = int((known < 0).sum())
    if n_missing * 2 > len(rids):  # most rows unknown: the table belongs to another matrix
        raise IdNotFoundError(
            f"{n_missing} of the {len(rids)} matrix row ids (e.g. {list(rids[known < 0][:3])}) are not gene ids of "
            f"{table} (e.g. {genes['pr_gene_id'].head(3).tolist()}); give the gene table of this matrix"
        )
    if n_missing:
        missing = rids[known < 0]
        warnings.warn(
            f"{len(missing)} matrix rows are not in {table} (e.g. {list(missing[:5])}): "
            "they have no symbol and belong to no landmark/BING space",
            OpenCMapWarning,
            stacklevel=3,
        )
    genes = genes.set_index("pr_gene_id").reindex(rids)
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
def _pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view[:_MAX_WRITE], offset)
        view = view[n:]
        offset += n


class _NpyOut:
    """An ``.npy`` file written by explicit positioned writes (no memory map).

    The header is numpy's own (``open_memmap``), the data area is allocated up front (a full disk
    fails at once, with a :class:`StoreError`), and :meth:`sync` forces written data to disk and
    drops it from the page cache, so a build larger than RAM keeps few dirty pages.
    """

    def __init__(self, path: Path, shape: tuple[int, int], dtype: type):
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.offset = int(mm.offset)
        nbytes = int(mm.nbytes)
        del mm
        self.fd = os.open(path, os.O_WRONLY)
        if nbytes and hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(self.fd, self.offset, nbytes)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    os.close(self.fd)
                    from opencmap.errors import StoreDiskSpaceError

                    raise StoreDiskSpaceError(
                        f"not enough disk space for {path} ({nbytes / 1e9:.1f} GB); free space or build elsewhere"
                    ) from exc
                # file systems without fallocate: blocks are allocated as written

    def write_columns(self, block: np.ndarray, start: int, k: int) -> int:
        """Write ``block[:, :k]`` (one row per gene) as columns ``start:start + k``: one extent per row."""
        item = self.dtype.itemsize
        n_cols = self.shape[1]
        for i in range(self.shape[0]):
            _pwrite_all(self.fd, block[i, :k], self.offset + (i * n_cols + start) * item)
        return self.shape[0] * k * item

    def write_rows(self, block: np.ndarray, start: int, k: int) -> int:
        """Write ``block[:k]`` as rows ``start:start + k`` (one contiguous extent)."""
        _pwrite_all(self.fd, np.ascontiguousarray(block[:k]), self.offset + start * self.shape[1] * self.dtype.itemsize)
        return k * self.shape[1] * self.dtype.itemsize

    def sync(self, drop: bool = True) -> None:
        """Write the data to disk (and drop it from the page cache)."""
        os.fdatasync(self.fd)
        if drop and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _auto_block_size(n_sigs: int, n_rows: int, space_sizes: Sequence[int], signature_major: bool) -> int:
    """Signatures per block so that the build's buffers (double-buffered input and outputs) fit
    :data:`_BUILD_MEMORY`; larger blocks mean longer contiguous extents in the gene-major files."""
    per_sig = 2 * 4 * n_rows + sum(2 * g * (10 if signature_major else 6) for g in space_sizes)
    k = max(_BUILD_MEMORY // max(per_sig, 1), 256)
    k = min(k, max(256, -(-n_sigs // 4)))  # at least ~4 blocks: reading, ranking and writing overlap
    return int(max(1, min(k, 65536, n_sigs)))


def _write_segment(
    seg_dir: Path,
    source: _SignatureSource,
    sig_info: pd.DataFrame,
    space_rows: Mapping[str, np.ndarray],
    *,
    block_size: int | None,
    signature_major: bool,
    progress: Progress | None,
) -> dict[str, Any]:
    """Write one segment (all columns of ``source``) into ``seg_dir``; return its manifest entry.

    Pipeline with bounded memory and near-sequential I/O: a reader thread reads block ``b + 1``
    (signature-major, contiguous in GCTX) while the fused kernel ranks block ``b`` and transposes
    it into gene-major buffers, and a writer thread writes block ``b - 1``: one contiguous extent
    per gene row (``block_size`` values) with ``os.pwrite``; writeback is the kernel's (optionally,
    :data:`_RELEASE_FRACTION`, written pages are written out and dropped every :data:`_SYNC_BYTES`);
    every file is made durable (``fdatasync``) before the manifest refers to it.
    """
    n_sigs = len(source.cids)
    k = block_size or _auto_block_size(n_sigs, source.n_rows, [len(r) for r in space_rows.values()], signature_major)
    k = max(1, min(k, max(n_sigs, 1)))
    cols = {name: np.asarray(rows, dtype=np.int64) for name, rows in space_rows.items()}
    seg_dir.mkdir(parents=True, exist_ok=False)
    outs: dict[str, dict[str, _NpyOut]] = {}
    try:
        for name, rows in space_rows.items():
            (seg_dir / name).mkdir()
            g = len(rows)
            outs[name] = {
                "ranks": _NpyOut(seg_dir / name / "ranks.npy", (g, n_sigs), np.uint16),
                "scores": _NpyOut(seg_dir / name / "scores.npy", (g, n_sigs), np.float32),
            }
            if signature_major:
                outs[name]["scores_by_sig"] = _NpyOut(seg_dir / name / "scores_by_sig.npy", (n_sigs, g), np.float32)
        blocks = [(lo, min(lo + k, n_sigs)) for lo in range(0, n_sigs, k)]
        if blocks:
            _run_blocks(source, blocks, k, cols, outs, signature_major, progress)
    finally:
        for out in outs.values():
            for f in out.values():
                f.close()
        source.close()
    files: dict[str, dict[str, Any]] = {}
    for name, out in outs.items():
        for kind, f in out.items():
            files[f"{name}/{kind}.npy"] = {"shape": list(f.shape), "dtype": str(f.dtype)}
    sig_info_out = _as_str_frame(sig_info)
    sig_info_out.to_parquet(seg_dir / "sig_info.parquet", index=False)
    files["sig_info.parquet"] = {}
    _checksum_files(seg_dir, files)
    return {"name": seg_dir.name, "n_signatures": n_sigs, "files": files}


def _chunk_hasher(algo: str) -> Callable[[Any], int]:
    if algo == "crc32":
        return zlib.crc32
    if algo == "xxh3_64":
        import xxhash

        return xxhash.xxh3_64_intdigest
    raise StoreError(f"unknown chunk checksum {algo!r} in the store manifest; upgrade opencmap")


def _native_xxh3() -> Callable[[int, int], int] | None:
    """xxh3 called on a raw address (``XXH3_64bits`` of the ``xxhash`` extension through ctypes):
    no slicing, view or buffer object per chunk, and the GIL is released while it hashes. None when
    the symbol is not there or gives another digest than ``xxhash.xxh3_64_intdigest`` on a probe
    (the callers then use the Python call per chunk)."""
    global _NATIVE_XXH3
    if _NATIVE_XXH3 is not False:
        return _NATIVE_XXH3  # type: ignore[return-value]
    fn = None
    try:
        import ctypes

        import xxhash
        from xxhash import _xxhash

        lib = ctypes.CDLL(_xxhash.__file__)
        fn = getattr(lib, "XXH3_64bits_dispatch", None) or lib.XXH3_64bits
        fn.argtypes, fn.restype = (ctypes.c_void_p, ctypes.c_size_t), ctypes.c_uint64
        probe = np.arange(70_001, dtype=np.uint32).view(np.uint8)
        if any(fn(probe.ctypes.data + k, n) != xxhash.xxh3_64_intdigest(probe[k : k + n]) for k, n in ((0, 0), (3, 17), (5, 240), (1, 70_000))):
            log.warning("xxhash's native XXH3_64bits disagrees with xxhash.xxh3_64_intdigest; chunk checks use the Python call")
            fn = None
    except (ImportError, OSError, AttributeError):
        fn = None
    _NATIVE_XXH3 = fn
    return fn


_NATIVE_XXH3: Any = False  # not looked up yet


def _digest_chunks(arr: np.ndarray, rows: np.ndarray, chunks: np.ndarray, cols: int, algo: str) -> np.ndarray:
    """Checksums of chunk ``chunks[i]`` (``cols`` columns) of row ``rows[i]`` of a C-contiguous 2-D
    array (memory map), uint64: xxh3 by address in one pass (:func:`_native_xxh3`), else the
    Python digest per chunk. Callers make sure rows and chunks lie inside ``arr``."""
    n_cols, item = arr.shape[1], arr.dtype.itemsize
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(chunks, dtype=np.int64) * cols
    fast = _native_xxh3() if algo == "xxh3_64" and arr.flags.c_contiguous else None
    if fast is not None:
        addrs = arr.ctypes.data + (rows * n_cols + starts) * item
        lens = (np.minimum(starts + cols, n_cols) - starts) * item
        return np.fromiter(map(fast, addrs.tolist(), lens.tolist()), dtype=np.uint64, count=len(rows))
    digest = _chunk_hasher(algo)
    plain = arr.view(np.ndarray)  # plain view: slicing a memmap object per chunk is slow
    return np.fromiter(
        (digest(memoryview(np.ascontiguousarray(plain[r, c : c + cols])).cast("B")) for r, c in zip(rows.tolist(), starts.tolist(), strict=True)),
        dtype=np.uint64, count=len(rows),
    )


def _chunk_sums(arr: np.ndarray, cols: int = _CHUNK_COLS, algo: str = _CHUNK_ALGO) -> np.ndarray:
    """Checksums of every chunk of ``cols`` columns of every row of a 2-D array: uint64 ``(rows, chunks)``."""
    n_rows, n_cols = arr.shape
    n_chunks = max(1, -(-n_cols // cols))
    out = np.zeros((n_rows, n_chunks), dtype=np.uint64)
    if n_rows and n_cols:
        r, c = np.divmod(np.arange(n_rows * n_chunks, dtype=np.int64), n_chunks)
        out[:] = _digest_chunks(arr, r, c, cols, algo).reshape(n_rows, n_chunks)
    else:
        empty = _chunk_hasher(algo)(b"")
        out[:] = empty
    return out


def _sidecar(rel: str) -> str:
    return rel[: -len(".npy")] + ".crc.npy"


def _file_sums(folder: Path, rel: str, entry: Mapping[str, Any]) -> tuple[str, np.ndarray | None]:
    """Whole-file checksum, and the chunk checksums of a 2-D ``.npy`` data file (None otherwise)."""
    whole = _file_checksum(folder / rel)
    if not rel.endswith(".npy") or len(entry.get("shape", ())) != 2:
        return whole, None
    arr = np.load(folder / rel, mmap_mode="r")
    sums = _chunk_sums(arr)
    del arr
    if hasattr(os, "posix_fadvise"):
        fd = os.open(folder / rel, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return whole, sums


def _checksum_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Fill ``bytes`` and ``checksum`` of manifest file entries, and write the chunk checksums of
    every 2-D data file beside it (``<kind>.crc.npy``, entry ``chunk_sums``), which readers check
    as they read (files read in parallel threads: ``zlib.crc32`` releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    rels = sorted(files, key=lambda rel: -(folder / rel).stat().st_size)
    with ThreadPoolExecutor(max_workers=min(len(rels), os.cpu_count() or 1) or 1) as pool:
        sums = dict(zip(rels, pool.map(lambda rel: _file_sums(folder, rel, files[rel]), rels), strict=True))
    for rel in list(files):
        entry = files[rel]
        entry["bytes"] = (folder / rel).stat().st_size
        whole, chunks = sums[rel]
        entry["checksum"] = whole
        if chunks is not None:
            side = _sidecar(rel)
            with open(folder / side, "wb") as fh:
                np.save(fh, chunks, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            entry["chunk_sums"] = {"file": side, "cols": _CHUNK_COLS, "algo": _CHUNK_ALGO}
            files[side] = {"bytes": (folder / side).stat().st_size, "checksum": _file_checksum(folder / side)}


def _run_blocks(
    source: _SignatureSource,
    blocks: Sequence[tuple[int, int]],
    k: int,
    cols: Mapping[str, np.ndarray],
    outs: Mapping[str, Mapping[str, _NpyOut]],
    signature_major: bool,
    progress: Progress | None,
) -> None:
    """The read -> rank/transpose -> write pipeline of :func:`_write_segment`."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from opencmap.kernels.store_ranks import gene_major_block

    n_sigs = blocks[-1][1]
    in_bufs = [np.empty((k, source.n_rows), dtype=np.float32) for _ in range(2)] if source.needs_buffer() else [None, None]
    out_bufs = [
        {
            name: (
                np.empty((len(c), k), dtype=np.uint16),
                np.empty((len(c), k), dtype=np.float32),
                np.empty((k, len(c)), dtype=np.float32) if signature_major else None,
            )
            for name, c in cols.items()
        }
        for _ in range(2)
    ]
    unsynced = [0]
    total = sum(f.shape[0] * f.shape[1] * f.dtype.itemsize for files in outs.values() for f in files.values())
    memory = _physical_memory()
    # Positioned writes of long extents are left to the kernel's writeback (measured fastest, also
    # for a 29 GB store on 24 GB RAM: dirty pages are throttled, clean ones reclaimed -- unlike
    # memory-mapped scatter); _RELEASE_FRACTION opts in to writing out and dropping pages as we go.
    release = _RELEASE_FRACTION is not None and (not memory or total > _RELEASE_FRACTION * memory)
    release_every = _SYNC_BYTES if release else None

    def write(b: int) -> None:
        lo, hi = blocks[b]
        for name, (r, s, by_sig) in out_bufs[b % 2].items():
            files = outs[name]
            unsynced[0] += files["ranks"].write_columns(r, lo, hi - lo)
            unsynced[0] += files["scores"].write_columns(s, lo, hi - lo)
            if by_sig is not None:
                unsynced[0] += files["scores_by_sig"].write_rows(by_sig, lo, hi - lo)
        last = b == len(blocks) - 1
        if last or (release_every is not None and unsynced[0] >= release_every):
            for files in outs.values():
                for f in files.values():
                    f.sync(drop=release)  # durable before the manifest commits it
            unsynced[0] = 0

    with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:
        pending_read = reader.submit(source.sig_block, *blocks[0], in_bufs[0])
        pending_write: Future[None] | None = None
        for b, (lo, hi) in enumerate(blocks):
            x = pending_read.result()
            if b + 1 < len(blocks):
                pending_read = reader.submit(source.sig_block, *blocks[b + 1], in_bufs[(b + 1) % 2])
            for name, (r, s, by_sig) in out_bufs[b % 2].items():
                gene_major_block(x, cols[name], r, s, by_sig)
            if pending_write is not None:
                pending_write.result()
                if progress is not None:
                    progress(blocks[b - 1][1], n_sigs)
            pending_write = writer.submit(write, b)
        if pending_write is not None:
            pending_write.result()
    if progress is not None:
        progress(n_sigs, n_sigs)


def _check_block_size(block_size: int | None) -> int | None:
    if block_size is None:
        return None
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
    block_size: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    pcl: Any = None,
    columns: np.ndarray | None = None,
    provenance: Mapping[str, Any] | None = None,
    on_plan: Callable[[dict[str, Any]], None] | None = None,
) -> Store:
    """Build a reference store at ``dest`` from Level 5 signatures (genes x signatures).

    Parameters
    ----------
    dest:
        Directory to create (built in a temporary sibling and renamed into place).
    signatures:
        A :class:`~opencmap.core.gct.GCT` or a GCT/GCTX path (read ``block_size`` columns at a time), or an
        AnnData ``.h5ad`` of signatures (obs = signatures, var = genes; read backed, in blocks).
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
        Signatures per block (default: as many as fit about 2 GiB of buffers); memory is about
        ``block_size x (8 x n_rows + 12 x n_features)`` bytes (20 with the signature-major copy).
    overwrite:
        Replace an existing store at ``dest``.
    progress:
        Called as ``progress(done, total)`` after each block.
    pcl:
        Perturbagen classes (GMT path or ``{name: [pert_id, ...]}``) stored with the store, so
        queries summarise by PCL without being given them (:attr:`Store.pcl`).
    columns:
        Increasing positions of the matrix columns to store (build-time filters); default all.
    provenance:
        Extra manifest fields (release, files, filters, notes), kept as given (JSON-able).
    on_plan:
        Called with the disk estimate (:func:`estimate_store_bytes`) before anything is written.

    Before anything is written the disk the store needs is computed
    (:func:`estimate_store_bytes`, logged) and a :class:`~opencmap.errors.DiskSpaceError` is
    raised if it will not fit.
    """
    dest = Path(dest)
    block_size = _check_block_size(block_size)
    if dest.exists() and not overwrite:
        raise StoreError(f"{dest} already exists; pass overwrite=True (CLI --overwrite) or choose another path")
    source = _SignatureSource(signatures, columns)
    info = _resolve_sig_info(source, _load_table(sig_info))
    gene_name = None if gene_info is None or isinstance(gene_info, pd.DataFrame) else str(gene_info)
    genes = _resolve_gene_info(source, _load_table(gene_info), gene_name)
    if gene_info is None and "pr_gene_symbol" not in genes.columns:
        warnings.warn(
            "the matrix carries no gene annotations (GEO GCTX files hold only the row ids) and no gene table "
            "was given: gene symbols are unknown and only the 'full' space can be built; give gene_info= "
            "(CLI --gene-info, e.g. GSE92742_Broad_LINCS_gene_info.txt.gz) or build from the release folder",
            OpenCMapWarning,
            stacklevel=2,
        )
    chosen = _resolve_spaces(genes, spaces, gene_lists)
    pcl_sets = _pcl_sets(pcl)
    estimate = estimate_store_bytes(len(source.cids), {k: len(v) for k, v in chosen.items()}, signature_major=signature_major)
    log.info(
        "store %s: %d signatures x spaces %s: %.1f KB per signature (%s), %.2f GB in all",
        dest, estimate["n_signatures"], {k: len(v) for k, v in chosen.items()}, estimate["bytes_per_signature"] / 1e3,
        ", ".join(f"{k} {v / 1e3:.1f} KB" for k, v in estimate["bytes_per_signature_per_space"].items()),
        estimate["total_bytes"] / 1e9,
    )
    if on_plan is not None:
        on_plan(estimate)
    check_disk(dest, estimate["total_bytes"])
    if default_space is None:
        default_space = next((s for s in _SPACE_PREFERENCE if s in chosen), next(iter(chosen)))
    elif default_space not in chosen:
        raise ValidationError(f"default_space {default_space!r} is not one of the built spaces {sorted(chosen)}")
    gene_pos = {g: i for i, g in enumerate(genes["pr_gene_id"])}
    space_rows = {name: np.array([gene_pos[g] for g in members], dtype=np.intp) for name, members in chosen.items()}

    dest.parent.mkdir(parents=True, exist_ok=True)
    removed: list[str] = []
    _cleanup_siblings(dest, removed)
    if dest.exists() and (dest / _MANIFEST).exists():
        cleanup_store(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-{os.getpid()}-", dir=dest.parent))
    try:
        _as_str_frame(genes).to_parquet(tmp / "genes.parquet", index=False)
        pcl_entry = _write_pcl(tmp, pcl_sets)
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
            "disk_estimate": estimate,
        }
        if pcl_entry:
            manifest["pcl"] = pcl_entry
        if provenance:
            manifest["provenance"] = dict(provenance)
        _fault("build:data-written")
        _write_bytes_atomic(tmp / _MANIFEST, json.dumps(manifest, indent=1, default=str).encode())
        _fault("build:before-switch")
        _switch_into(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_disk_full(exc):
            raise _disk_full(exc, f"building the store {dest}", dest) from exc  # type: ignore[arg-type]
        raise
    log.info("built store %s: %d signatures, spaces %s", dest, manifest["n_signatures"], sorted(chosen))
    return Store(dest)


def _switch_into(tmp: Path, dest: Path) -> None:
    """Put the complete store ``tmp`` (a sibling of ``dest``) in place of ``dest`` in one atomic
    step: a rename, or where ``dest`` exists a swap of the two (readers see the old store or the
    new, never none or a mix), then the old one is removed. Where the system cannot swap, two
    renames that the next run undoes if killed between them (:func:`_cleanup_siblings`)."""
    if dest.exists():
        if _exchange(tmp, dest):
            _fault("build:switched")
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}-0")
            os.replace(dest, old)
            _fault("build:between-renames")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    _fsync_dir(dest.parent)


def _building_path(dest: Path) -> Path:
    """A fresh temporary sibling of ``dest`` for a multi-step build (cleaned up if the process dies)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _cleanup_siblings(dest, [])
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-{os.getpid()}-", dir=dest.parent)) / "store"


_PCL_FILE = "pcl.gmt"


def _pcl_sets(pcl: Any) -> dict[str, tuple[str, ...]] | None:
    """PCL definitions ``{name: pert_ids}`` from a GMT path or a mapping (None: none)."""
    if pcl is None:
        return None
    if isinstance(pcl, Mapping):
        return {str(k): tuple(str(x) for x in v) for k, v in pcl.items()}
    from opencmap.io import read_gmt

    return {s.name: tuple(s.genes) for s in read_gmt(pcl)}


def _write_pcl(folder: Path, sets: Mapping[str, Sequence[str]] | None) -> dict[str, Any] | None:
    if not sets:
        return None
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    write_gmt([GeneSet(name, "", tuple(members)) for name, members in sets.items()], folder / _PCL_FILE)
    return {"file": _PCL_FILE, "n_classes": len(sets), "checksum": _file_checksum(folder / _PCL_FILE)}


def append_store(
    path: str | os.PathLike[str],
    signatures: GCT | str | os.PathLike[str],
    *,
    sig_info: pd.DataFrame | str | os.PathLike[str] | None = None,
    block_size: int | None = None,
    keep_backgrounds: bool = False,
    progress: Progress | None = None,
    columns: np.ndarray | None = None,
) -> Store:
    """Add signatures to an existing store as a new segment (no rebuild of existing data).

    The new matrix must contain every gene of every space of the store (extra rows are ignored).
    sig_ids must be new. tau backgrounds no longer describe the store: by default they are dropped
    (queries report that tau needs a background); with ``keep_backgrounds=True`` they are kept but
    marked stale in the manifest (``appended_since_built``, see :attr:`Store.stale_backgrounds`
    and ``opencmap store info``): the old signatures' tau then uses a reference built before the
    appended signatures, which get no tau (NaN). Either way, rebuild them with
    :func:`opencmap.query.background.build_background` (``opencmap store background``).
    """
    store = Store(path)
    block_size = _check_block_size(block_size)
    source = _SignatureSource(signatures, columns)
    info = _resolve_sig_info(source, _load_table(sig_info))
    sizes = {name: sp.n_features for name, sp in store.spaces.items()}
    check_disk(store.path, estimate_store_bytes(len(source.cids), sizes, signature_major=bool(store.manifest.get("signature_major", True)))["total_bytes"])
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
    with store_writer(store.path):
        store = Store(store.path)  # as the lock found it
        try:
            return _append_locked(store, source, info, space_rows, block_size, keep_backgrounds, progress)
        except BaseException as exc:
            _cleanup_locked(store.path)  # the new segment, if written, is not in the manifest
            if _is_disk_full(exc):
                raise _disk_full(exc, f"appending to the store {store.path}", store.path) from exc  # type: ignore[arg-type]
            raise


def _append_locked(
    store: Store,
    source: _SignatureSource,
    info: pd.DataFrame,
    space_rows: Mapping[str, np.ndarray],
    block_size: int | None,
    keep_backgrounds: bool,
    progress: Progress | None,
) -> Store:
    manifest = store.manifest
    seg_name = _next_segment_name(manifest)
    seg_root = store.path / "segments"
    tmp = Path(tempfile.mkdtemp(prefix=f".{seg_name}.building-{os.getpid()}-", dir=seg_root))
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
        _fault("append:segment-written")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    old_backgrounds = manifest.get("backgrounds", {})
    backgrounds = {}
    if keep_backgrounds:
        for level, entry in old_backgrounds.items():
            n_since = int(entry.get("appended_since_built", 0)) + seg["n_signatures"]
            backgrounds[level] = {**entry, "appended_since_built": n_since}
    store._update_manifest(
        segments=[*manifest["segments"], seg],
        n_signatures=int(manifest["n_signatures"]) + seg["n_signatures"],
        backgrounds=backgrounds,
    )
    if not keep_backgrounds:
        for level, entry in old_backgrounds.items():
            shutil.rmtree(store.path / (entry.get("dir") or f"backgrounds/{level}"), ignore_errors=True)
        if old_backgrounds:
            log.warning("appending to %s dropped the tau backgrounds %s; rebuild them", store.path, sorted(old_backgrounds))
    elif backgrounds:
        log.warning(
            "appended %d signatures to %s: its tau backgrounds %s are now stale (built before %d appended "
            "signatures; those get no tau); rebuild them with `opencmap store background`",
            seg["n_signatures"], store.path, sorted(backgrounds), max(e["appended_since_built"] for e in backgrounds.values()),
        )
    return Store(store.path)


def _next_segment_name(manifest: Mapping[str, Any]) -> str:
    """A segment name above every name in the manifest (never one a live segment uses)."""
    used = [int(seg["name"].rpartition("-")[2]) for seg in manifest["segments"] if seg["name"].rpartition("-")[2].isdigit()]
    return f"seg-{max(used, default=-1) + 1:05d}"


def compact_store(path: str | os.PathLike[str], *, progress: Progress | None = None) -> Store:
    """Merge all segments of a store into one (after appends), in bounded memory.

    Gene-major files are merged band of genes by band (each band's rows are contiguous in every
    segment and in the output), so reads and writes are sequential. The new segment is written
    next to the old ones and committed by the manifest; the old segments are deleted afterwards.
    Data, order, checksummed content and tau backgrounds (with their staleness) are unchanged.
    """
    store = Store(path)
    if len(store.manifest["segments"]) <= 1:
        return store
    with store_writer(store.path):
        store = Store(store.path)
        if len(store.manifest["segments"]) <= 1:
            return store
        try:
            return _compact_locked(store, progress)
        except BaseException as exc:
            _cleanup_locked(store.path)  # the new segment, if written, is not in the manifest
            if _is_disk_full(exc):
                raise _disk_full(exc, f"compacting the store {store.path}", store.path) from exc  # type: ignore[arg-type]
            raise


def _compact_locked(store: Store, progress: Progress | None) -> Store:
    manifest = store.manifest
    n = store.n_signatures
    seg_name = _next_segment_name(manifest)
    seg_root = store.path / "segments"
    tmp = Path(tempfile.mkdtemp(prefix=f".{seg_name}.compacting-{os.getpid()}-", dir=seg_root))
    kinds = ["ranks", "scores"] + (["scores_by_sig"] if manifest.get("signature_major", True) else [])

    def sequential(seg: _Segment, space: str, kind: str) -> np.ndarray:
        # plain mapping (not Segment.array's MADV_RANDOM for stores larger than RAM): every read
        # below is sequential, so the kernel's read-ahead serves it (Store checked the files exist)
        return np.load(seg.dir / space / f"{kind}.npy", mmap_mode="r")

    work = len(store.spaces) * len(kinds) * n
    done = 0
    try:
        out_dir = tmp / seg_name
        out_dir.mkdir()
        files: dict[str, dict[str, Any]] = {}
        for name, sp in store.spaces.items():
            (out_dir / name).mkdir()
            for kind in kinds:
                parts = [sequential(seg, name, kind) for seg in store._segments]
                dtype = parts[0].dtype
                gene_major = kind != "scores_by_sig"
                shape = (sp.n_features, n) if gene_major else (n, sp.n_features)
                out = _NpyOut(out_dir / name / f"{kind}.npy", shape, dtype.type)
                try:
                    if gene_major:
                        band = max(1, _BUILD_MEMORY // 2 // max(n * dtype.itemsize, 1))
                        buf = np.empty((min(band, sp.n_features), n), dtype=dtype)
                        for r0 in range(0, sp.n_features, band):
                            r1 = min(r0 + band, sp.n_features)
                            for seg, part in zip(store._segments, parts, strict=True):
                                buf[: r1 - r0, seg.offset : seg.offset + seg.n] = part[r0:r1]
                            _pwrite_all(out.fd, buf[: r1 - r0], out.offset + r0 * n * dtype.itemsize)
                    else:
                        step = max(1, _BUILD_MEMORY // 2 // max(sp.n_features * dtype.itemsize, 1))
                        for seg, part in zip(store._segments, parts, strict=True):
                            for lo in range(0, seg.n, step):
                                hi = min(lo + step, seg.n)
                                out.write_rows(np.asarray(part[lo:hi]), seg.offset + lo, hi - lo)
                    out.sync()
                finally:
                    out.close()
                files[f"{name}/{kind}.npy"] = {"shape": list(shape), "dtype": str(dtype)}
                done += n
                if progress is not None:
                    progress(done, work)
        _as_str_frame(store.sig_info).to_parquet(out_dir / "sig_info.parquet", index=False)
        files["sig_info.parquet"] = {}
        _checksum_files(out_dir, files)
        os.replace(out_dir, seg_root / seg_name)
        _fault("compact:segment-written")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    old = [seg["name"] for seg in manifest["segments"]]
    store._update_manifest(segments=[{"name": seg_name, "n_signatures": n, "files": files}])
    for name in old:
        shutil.rmtree(seg_root / name, ignore_errors=True)
    log.info("compacted %s: %d segments -> 1 (%d signatures)", store.path, len(old), n)
    return Store(store.path)


def open_store(path: str | os.PathLike[str]) -> Store:
    """Open an existing store (alias of ``Store(path)``)."""
    return Store(path)


# ---------------------------------------------------------------------------------- reading
def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _map_of(arr: np.ndarray) -> Any:
    mm = getattr(arr, "_mmap", None)
    return mm if mm is not None and hasattr(mmap, "MADV_WILLNEED") and arr.ndim == 2 else None


def _advise_willneed(mm: Any, begin: np.ndarray, end: np.ndarray) -> None:
    """``MADV_WILLNEED`` on the byte ranges ``begin..end`` (sorted by begin; page-aligned here,
    overlapping or touching ranges merged, then issued in pieces of :data:`_WILLNEED_CHUNK`:
    Linux reads at most one readahead window per call and drops the rest of a longer range)."""
    begin = begin - begin % mmap.PAGESIZE
    runs: list[tuple[int, int]] = []
    for b, e in zip(begin.tolist(), end.tolist(), strict=True):
        if runs and b <= runs[-1][1]:
            runs[-1] = (runs[-1][0], max(runs[-1][1], e))
        else:
            runs.append((b, e))
    for b, e in runs:
        for lo in range(b, e, _WILLNEED_CHUNK):
            mm.madvise(mmap.MADV_WILLNEED, lo, min(_WILLNEED_CHUNK, e - lo))


def prefetch_columns(arr: np.ndarray, rows: np.ndarray, lo: int, hi: int) -> None:
    """Ask the OS to read columns ``lo:hi`` of ``rows`` of a gene-major memory map ahead.

    Asynchronous (``MADV_WILLNEED`` on exactly those extents, merged where contiguous): the pages
    are being read while the caller computes, and nothing beyond them is read. A no-op for arrays
    that are not memory maps or where ``madvise`` is unavailable.
    """
    mm = _map_of(arr)
    if mm is None:
        return
    item, n = arr.dtype.itemsize, arr.shape[1]
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    rows = rows[(rows >= 0) & (rows < arr.shape[0])]
    lo, hi = max(int(lo), 0), min(int(hi), n)
    if hi <= lo or not len(rows):
        return
    begin = int(arr.offset) % mmap.ALLOCATIONGRANULARITY + (rows * n + lo) * item  # array start inside the map
    _advise_willneed(mm, begin, begin + (hi - lo) * item)


def _prefetch_cells(arr: np.ndarray, cols: np.ndarray) -> None:
    """Read ahead the pages holding columns ``cols`` of every row (whole signatures of a
    gene-major map: one page per gene and signature, fetched together instead of fault by fault)."""
    mm = _map_of(arr)
    if mm is None or not len(cols):
        return
    item, n = arr.dtype.itemsize, arr.shape[1]
    cols = np.unique(np.asarray(cols, dtype=np.int64))
    cols = cols[(cols >= 0) & (cols < n)]
    cells = (np.arange(arr.shape[0], dtype=np.int64)[:, None] * n + cols[None, :]).ravel() * item
    pages = np.unique((int(arr.offset) % mmap.ALLOCATIONGRANULARITY + cells) // mmap.PAGESIZE) * mmap.PAGESIZE
    _advise_willneed(mm, pages, pages + mmap.PAGESIZE)


class _Segment:
    __slots__ = ("name", "offset", "n", "dir", "_arrays", "random_access", "files", "_sums", "_seen")

    def __init__(self, name: str, offset: int, n: int, directory: Path, random_access: bool = False,
                 files: Mapping[str, Any] | None = None):
        self.name, self.offset, self.n, self.dir = name, offset, n, directory
        self.random_access = random_access
        self._arrays: dict[str, np.ndarray] = {}
        self.files: Mapping[str, Any] = files or {}
        self._sums: dict[str, tuple[np.ndarray, int, str] | None] = {}
        self._seen: dict[str, np.ndarray] = {}

    def _chunk_table(self, key: str) -> tuple[np.ndarray, int, str] | None:
        """The chunk checksums of data file ``key`` (``space/kind``), checked whole on first use;
        None for files written without them (format version 1)."""
        if key in self._sums:
            return self._sums[key]
        entry = self.files.get(f"{key}.npy", {}).get("chunk_sums")
        table = None
        if entry:
            side = self.dir / entry["file"]
            expected = self.files.get(entry["file"], {}).get("checksum")
            try:
                got = _file_checksum(side)
                sums = np.load(side)
            except (OSError, ValueError) as exc:
                raise StoreError(f"store file {side} is unreadable ({exc}); run `opencmap store info --verify` and rebuild the store") from exc
            if got != expected:
                raise StoreError(
                    f"store file {side} (checksums of {self.dir / key}.npy) is corrupt: {got} != {expected} in the manifest; "
                    "run `opencmap store info --verify` and rebuild the store"
                )
            algo = str(entry.get("algo", "crc32"))
            _chunk_hasher(algo)  # an unknown algorithm is refused here
            table = (sums, int(entry["cols"]), algo)
            self._seen[key] = np.zeros(sums.shape, dtype=bool)
        self._sums[key] = table
        return table

    def check(self, space: str, kind: str, rows: np.ndarray | None, lo: int, hi: int) -> None:
        """Check the chunks of ``rows`` (None: all) x columns ``lo:hi`` of a data file against
        their stored checksums (xxh3) the first time they are read; :class:`StoreError` naming the file on a
        mismatch. Rows of signature-major files are signatures, their columns genes."""
        key = f"{space}/{kind}"
        table = self._chunk_table(key)
        if table is None or hi <= lo:
            return
        sums, cols, algo = table
        seen = self._seen[key]
        c0, c1 = lo // cols, (hi - 1) // cols + 1
        sub = seen[:, c0:c1] if rows is None else seen[rows, c0:c1]
        if sub.all():
            return
        arr = self.array(space, kind)
        if sums.shape != (arr.shape[0], max(1, -(-arr.shape[1] // cols))):
            raise StoreError(
                f"store file {self.dir / key}.npy has shape {arr.shape} but its checksums cover {sums.shape} chunks of {cols} "
                "columns: the store is corrupt; run `opencmap store info --verify` and rebuild the store"
            )
        todo_r, todo_c = np.nonzero(~sub)
        row_ids = (np.arange(seen.shape[0])[todo_r] if rows is None else np.asarray(rows)[todo_r]).tolist()
        col_ids = (todo_c + c0).tolist()
        got = _digest_chunks(arr, np.asarray(row_ids, dtype=np.int64), np.asarray(col_ids, dtype=np.int64), cols, algo)
        bad = np.flatnonzero(got != sums[row_ids, col_ids])
        if len(bad):
            r, c = row_ids[int(bad[0])], col_ids[int(bad[0])]
            raise StoreError(
                f"store file {self.dir / key}.npy is corrupt (row {r}, columns {c * cols}..{min((c + 1) * cols, arr.shape[1]) - 1} "
                "do not match their checksum): this store must not be queried; run `opencmap store info --verify` "
                "and rebuild the store (or restore it from a copy)"
            )
        seen[row_ids, col_ids] = True

    def array(self, space: str, kind: str) -> np.ndarray:
        key = f"{space}/{kind}"
        arr = self._arrays.get(key)
        if arr is None:
            path = self.dir / space / f"{kind}.npy"
            if not path.exists():
                raise StoreError(f"store file missing: {path}; rebuild the store")
            arr = np.load(path, mmap_mode="r")
            mm = getattr(arr, "_mmap", None)
            if self.random_access and mm is not None and hasattr(mmap, "MADV_RANDOM"):
                # larger than RAM: no read-around on page faults (with a large device readahead a
                # fault reads megabytes around it, which a pass over signature blocks evicts again
                # before use); reads are exact, ahead of use via Store.prefetch
                mm.madvise(mmap.MADV_RANDOM)
            self._arrays[key] = arr
        return arr


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _check_block(seg: _Segment, space: str, kinds: Sequence[str], rows: np.ndarray, lo: int, hi: int) -> None:
    for kind in kinds:
        seg.check(space, kind, rows, lo, hi)


_CHECKER: Any = None


def _checker() -> Any:
    """The thread that checks the next block's chunks while a reader scores the current one
    (hashing releases the GIL; its page faults are then off the reader's path too)."""
    global _CHECKER
    if _CHECKER is None:
        from concurrent.futures import ThreadPoolExecutor

        _CHECKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opencmap-store-check")
    return _CHECKER


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
            self._segments.append(_Segment(seg["name"], offset, int(seg["n_signatures"]), seg_dir, files=seg["files"]))
            offset += int(seg["n_signatures"])
        gene_major = sum(
            int(e["bytes"]) for seg in m["segments"] for rel, e in seg["files"].items() if not rel.endswith(("scores_by_sig.npy", ".parquet"))
        )
        memory = _physical_memory()
        #: True when the gene-major data exceed half the RAM: page faults read no more than asked,
        #: and readers should call :meth:`prefetch` ahead of each block
        self.random_access = bool(memory) and gene_major > _RANDOM_ACCESS_FRACTION * memory
        for s in self._segments:
            s.random_access = self.random_access
        if offset != int(m["n_signatures"]):
            raise StoreError(f"{self.path / _MANIFEST}: segment sizes add to {offset}, not n_signatures={m['n_signatures']}")
        #: True when every data file carries chunk checksums that reads are checked against
        self.checked = all(
            "chunk_sums" in e for seg in m["segments"] for rel, e in seg["files"].items() if rel.endswith(".npy") and not rel.endswith(".crc.npy")
        )
        if not self.checked:
            from opencmap.errors import UncheckedStoreWarning

            warnings.warn(
                f"the store {self.path} (format version {m['format_version']}) has no chunk checksums: queries cannot detect "
                "corrupted files in it; check it with `opencmap store info --verify`, or rebuild it to have every read checked",
                UncheckedStoreWarning,
                stacklevel=3,
            )
        self._sig_info: pd.DataFrame | None = None
        self._genes: pd.DataFrame | None = None

    def _read_manifest(self) -> dict[str, Any]:
        mpath = self.path / _MANIFEST
        if not mpath.exists():
            raise StoreError(f"{self.path} is not a reference store: {_MANIFEST} is missing")
        with open(mpath, "rb") as fh:  # stat and bytes of the same file (a writer renames a new one over it)
            self._manifest_stat = _stat_key(os.fstat(fh.fileno()))
            raw = fh.read()
        self._manifest_sum = f"crc32:{zlib.crc32(raw):08x}"
        try:
            m = json.loads(raw)
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

    # ------------------------------------------------------------------ generations
    @property
    def generation(self) -> dict[str, Any]:
        """The store generation this object reads: the manifest's ``generation`` counter (0 for a
        fresh build; +1 per append, compaction or background commit) and the checksum of the
        manifest it opened (tells apart two builds with the same counter). Recorded in query
        results' provenance (``store``)."""
        return {"generation": int(self.manifest.get("generation", 0)), "manifest": self._manifest_sum}

    def changed(self) -> bool:
        """True when another generation has been committed since this object opened the store
        (the manifest was replaced: ``store background``, append, compact, ``build --overwrite``)."""
        try:
            return _stat_key(os.stat(self.path / _MANIFEST)) != self._manifest_stat
        except OSError:  # an overwrite between its two renames: keep reading this generation
            return False

    def current(self) -> "Store":
        """This store, or the store reopened on the generation committed since (see
        :meth:`changed`). Queries already running on this object finish on its generation: the
        files it has mapped stay readable after a writer removes them. Call this before each
        new query in a long-running process (the API server does)."""
        if not self.changed():
            return self
        new = Store(self.path)
        log.info("store %s: generation %s -> %s", self.path, self.generation, new.generation)
        return new

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

    @property
    def pcl(self) -> dict[str, tuple[str, ...]] | None:
        """The perturbagen classes stored at build time (``{name: pert_ids}``), or None."""
        entry = self.manifest.get("pcl")
        if not entry:
            return None
        path = self.path / entry["file"]
        if not path.exists():
            raise StoreError(f"store file missing: {path}; rebuild the store")
        return _pcl_sets(path)

    def space(self, name: str | None = None) -> FeatureSpace:
        """The feature space ``name`` (default: the store's default space)."""
        key = self.default_space if name is None else name
        if key == "aig" and "aig" not in self.spaces and "full" in self.spaces:
            key = "full"
        if key not in self.spaces:
            raise StoreError(f"the store {self.path} has no feature space {key!r} (has {sorted(self.spaces)})")
        return self.spaces[key]

    @property
    def stale_backgrounds(self) -> dict[str, int]:
        """tau background levels built before signatures were appended: ``{level: n_appended}``.

        Those signatures have no tau until the backgrounds are rebuilt (``opencmap store background``);
        the other signatures' tau uses a reference that predates them.
        """
        return {
            level: int(entry["appended_since_built"])
            for level, entry in self.manifest.get("backgrounds", {}).items()
            if int(entry.get("appended_since_built", 0)) > 0
        }

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
        rows = np.asarray(gene_rows, dtype=np.intp)
        for start, stop, r_mm, s_mm, lo, hi in self.iter_blocks(rows, space=space, block_size=block_size, with_ranks=with_ranks):
            assert s_mm is not None
            yield start, stop, None if r_mm is None else r_mm[rows, lo:hi], s_mm[rows, lo:hi]

    def iter_blocks(
        self,
        gene_rows: np.ndarray,
        *,
        space: str | None = None,
        block_size: int = 16384,
        with_ranks: bool = True,
        with_scores: bool = True,
    ) -> Iterator[tuple[int, int, np.ndarray | None, np.ndarray | None, int, int]]:
        """Yield ``(start, stop, ranks, scores, lo, hi)``: blocks of at most ``block_size``
        signatures (store positions ``start:stop``) as the memory-mapped gene-major arrays of
        their segment and the block's columns ``lo:hi`` in them, for readers that read in place.

        On a store larger than RAM (:attr:`random_access`) the rows ``gene_rows`` of the next
        block are prefetched before each block is handed out, so the disk works while the caller
        computes.
        """
        sp = self.space(space).name
        rows = np.asarray(gene_rows, dtype=np.intp)
        kinds = tuple(kind for kind, on in (("ranks", with_ranks), ("scores", with_scores)) if on)
        blocks = [(seg, lo, min(lo + block_size, seg.n)) for seg in self._segments for lo in range(0, seg.n, block_size)]
        pending: Any = None
        for i, (seg, lo, hi) in enumerate(blocks):
            if self.random_access:
                opts = {"space": sp, "with_ranks": with_ranks, "with_scores": with_scores}
                if lo == 0:
                    self.prefetch(rows, seg.offset, seg.offset + hi, **opts)
                if hi < seg.n:
                    self.prefetch(rows, seg.offset + hi, seg.offset + min(hi + block_size, seg.n), **opts)
            # every block is checked before it is handed out: the first here, each next one on the
            # checker thread while the caller scores this one (its StoreError raised here)
            if pending is None:
                _check_block(seg, sp, kinds, rows, lo, hi)
            else:
                pending.result()
            pending = None
            if self.checked and i + 1 < len(blocks):
                nxt = blocks[i + 1]
                pending = _checker().submit(_check_block, nxt[0], sp, kinds, rows, nxt[1], nxt[2])
            r_mm = seg.array(sp, "ranks") if with_ranks else None
            s_mm = seg.array(sp, "scores") if with_scores else None
            yield seg.offset + lo, seg.offset + hi, r_mm, s_mm, lo, hi

    def prefetch(
        self,
        gene_rows: np.ndarray,
        start: int,
        stop: int,
        *,
        space: str | None = None,
        with_ranks: bool = True,
        with_scores: bool = True,
    ) -> None:
        """Start reading the rank/score rows ``gene_rows`` of signatures ``start:stop`` (store
        positions) in the background (see :func:`prefetch_columns`).

        Readers of a store larger than RAM (:attr:`random_access`) call this for block ``b + 1``
        before computing block ``b``, so the disk works while the CPU does; harmless otherwise.
        """
        sp = self.space(space).name
        kinds = tuple(kind for kind, on in (("ranks", with_ranks), ("scores", with_scores)) if on)
        for seg in self._segments:
            lo, hi = max(start - seg.offset, 0), min(stop - seg.offset, seg.n)
            if lo < hi:
                for kind in kinds:
                    prefetch_columns(seg.array(sp, kind), gene_rows, lo, hi)

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
                seg.check(sp.name, "scores_by_sig", local, 0, sp.n_features)
                out[sel] = seg.array(sp.name, "scores_by_sig")[local]
            else:
                scores = seg.array(sp.name, "scores")
                if self.random_access:
                    _prefetch_cells(scores, local)
                for c in local.tolist():
                    seg.check(sp.name, "scores", None, c, c + 1)
                out[sel] = scores[:, local].T
        return out

    def signature_ranks(self, positions: Sequence[int] | np.ndarray, *, space: str | None = None) -> np.ndarray:
        """uint16 ``(n_features, len(positions))`` stored ranks of the given signatures."""
        sp = self.space(space)
        pos = np.asarray(positions, dtype=np.intp)
        out = np.empty((sp.n_features, len(pos)), dtype=np.uint16)
        for seg in self._segments:
            sel = np.flatnonzero((pos >= seg.offset) & (pos < seg.offset + seg.n))
            if len(sel):
                ranks = seg.array(sp.name, "ranks")
                if self.random_access:
                    _prefetch_cells(ranks, pos[sel] - seg.offset)
                for c in (pos[sel] - seg.offset).tolist():
                    seg.check(sp.name, "ranks", None, c, c + 1)
                out[:, sel] = ranks[:, pos[sel] - seg.offset]
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
                files.append((self.path / (entry.get("dir") or f"backgrounds/{level}") / rel, checksum))
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
            "stale_backgrounds": self.stale_backgrounds,
            "releases": [r["release"] for r in m.get("provenance", {}).get("releases", [])],
            "pcl_classes": (m.get("pcl") or {}).get("n_classes", 0),
            "chunk_checksums": self.checked,
        }

    # ------------------------------------------------------------------ manifest updates
    def _update_manifest(self, **changes: Any) -> None:
        """Rewrite the manifest atomically with ``changes`` merged in (backgrounds, append, compact)."""
        new = dict(self.manifest)
        new.update(changes)
        new["generation"] = int(self.manifest.get("generation", 0)) + 1
        try:
            _write_bytes_atomic(self.path / _MANIFEST, json.dumps(new, indent=1, default=str).encode())
        except OSError as exc:
            if _is_disk_full(exc):
                raise _disk_full(exc, f"writing {self.path / _MANIFEST}", self.path) from exc
            raise
        _fault("manifest:switched")
        self.manifest = new
        with open(self.path / _MANIFEST, "rb") as fh:
            self._manifest_stat = _stat_key(os.fstat(fh.fileno()))
            self._manifest_sum = f"crc32:{zlib.crc32(fh.read()):08x}"
