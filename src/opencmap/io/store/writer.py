"""Writing reference stores: :func:`build_store`, :func:`append_store`, :func:`compact_store`,
the signature sources they read (:class:`SignatureSource`), positioned writes (:class:`NpyOut`) and
the durability machinery (the writer lock, atomic commits, cleanup of what killed runs left).

Signatures are added in *segments*: :func:`build_store` writes one segment in blocks of
signatures with bounded memory, :func:`append_store` adds another segment without rewriting the
existing ones, :func:`compact_store` merges segments into one. The layout and manifest are
:mod:`opencmap.io.store.format`; reading is :mod:`opencmap.io.store.reader`.

Every change is one atomic step: new files go under new names (a new segment,
``backgrounds/<level>.g<N>``), the manifest that refers to them is made durable and renamed over
the old one last; ``--overwrite`` swaps the complete new store with the old one
(``renameat2(RENAME_EXCHANGE)``); a build happens in a temporary directory renamed into place.
Whatever a killed run left is removed, with a log line, by the next writer and by
:func:`cleanup_store` (``opencmap store info --verify``). Tests inject faults with
``$OPENCMAP_FAULT_AT`` (:func:`_fault`).

Builds scale past RAM: blocks of signatures are read signature-major (contiguous in GCTX) on a
reader thread, ranked and transposed by one fused kernel
(:func:`~opencmap.kernels.store_ranks.gene_major_block`), and written by a writer thread as one
contiguous extent per gene row and block with ``os.pwrite`` (no memory-mapped scatter, whose dirty
pages made builds larger than RAM collapse); files are allocated up front (a full disk fails at
once) and made durable before the manifest commits them, with their checksums
(:mod:`opencmap.io.store.checksums`). Memory is the block buffers (~2 GiB).

Any backend can run a build (``backend=``, :mod:`opencmap.backends`): with a distributed one
the per-block work (reading the block's source columns, ranking and transposing it) runs as the
module-level task :func:`build_block_task` in its workers -- each reads its block from the
input file at the driver's path (a worker must see it there: a shared file system), or gets the
block's values in the task for a matrix in memory -- and this process alone writes the returned
blocks (the same positioned writes), checksums the files and commits the manifest; the files
are byte-identical to a local build's.

Ranks are computed within each feature space (``lm``: ``pr_is_lm == 1``, ``bing``:
``pr_is_bing == 1``, ``full``: every input row, or user gene lists), descending, ties broken by
the store's gene order (CMap-compat, spec §0.3.2).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.backends.base import Backend, BlockTask, is_distributed, ordered_results
from opencmap.backends.settings import Settings
from opencmap.core.gct import GCT
from opencmap.core.schema import parse_flags
from opencmap.errors import IdNotFoundError, OpenCMapWarning, StoreError, ValidationError
from opencmap.io.store.checksums import _checksum_files, _file_checksum, manifest_bytes
from opencmap.io.store.format import _LOCK, _MANIFEST, _PCL_FILE, _SPACE_PREFERENCE, STORE_FORMAT, STORE_FORMAT_VERSION
from opencmap.io.store.reader import Store, StoreSegment, _pcl_sets, _physical_memory

__all__ = [
    "estimate_store_bytes",
    "check_disk",
    "build_store",
    "append_store",
    "compact_store",
    "cleanup_store",
    "store_writer",
    "SignatureSource",
    "NpyOut",
    "build_block_task",
    "read_signature_block",
]

log = logging.getLogger(__name__)

_FAULT_ENV = "OPENCMAP_FAULT_AT"  # tests: a step name at which the process dies (os._exit), see _fault

Progress = Callable[[int, int], None]  # (done, total) signatures
_MAX_WRITE = 1 << 30  # largest single os.pwrite



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


# ---------------------------------------------------------------------------------- sources
class SignatureSource:
    """Level 5 signatures read in column blocks: a GCT in memory or a GCT/GCTX file.

    An AnnData ``.h5ad`` of signatures (``obs`` = signatures with their ``sig_info`` fields,
    ``var`` = genes with the gene table's fields, ``X`` = scores) is opened backed: blocks of
    signatures are rows of ``X``, read from the file as they are needed.

    :meth:`sig_block` returns blocks signature-major (one row per signature, every row of the
    matrix), as GCTX stores them, so a GCTX block is one contiguous read into a reused buffer.

    ``columns`` (build-time filters): increasing positions of the signatures to take, the same for
    every kind of source: ``cids``, ``col_meta``, the blocks of :meth:`sig_block` and
    :meth:`block_spec` are those signatures' only (:class:`ValidationError` for positions that are
    not increasing integers within the matrix).
    """

    def __init__(self, signatures: GCT | str | os.PathLike[str], columns: np.ndarray | None = None):
        self._gctx: Any = None  # GCTXFile once opened, False for sources that are not GCTX files
        self._columns: np.ndarray | None = None
        self._h5ad: Any = None  # H5ADSignatures for .h5ad sources
        self._gct: GCT | None = None
        self._path: Path | None = None  # a GCT/GCTX file
        if isinstance(signatures, GCT):
            self._gct = signatures
            self.rids, self.cids = signatures.rids, signatures.cids
            self.row_meta, self.col_meta = signatures.row_meta, signatures.col_meta
        else:
            path = Path(signatures)
            _refuse_compressed(path)
            if not path.exists():
                raise StoreError(f"signature file not found: {path}")
            if path.suffix.lower() == ".h5ad":
                from opencmap.io.h5ad import H5ADSignatures

                self._h5ad = H5ADSignatures(path)  # opened backed: rows of X are read as blocks need them
                self.rids, self.cids = self._h5ad.gene_ids, self._h5ad.sig_ids
                self.row_meta, self.col_meta = self._h5ad.genes, self._h5ad.signatures
            else:
                from opencmap.io import read_gct
                from opencmap.io.decompress import resolve_gzipped_gctx

                self._path = resolve_gzipped_gctx(path)  # .gctx.gz as GEO serves it: a decompressed copy
                meta = read_gct(self._path, meta_only=True)
                self.rids, self.cids = meta.rids, meta.cids
                self.row_meta, self.col_meta = meta.row_meta, meta.col_meta
        self.n_rows = len(self.rids)
        self._n_file_cols = len(self.cids)
        if columns is not None:
            # a subset of the matrix's columns (build-time filters), in file order
            cols = np.asarray(columns)
            if cols.ndim != 1 or (len(cols) and cols.dtype.kind not in "iu"):
                raise ValidationError(f"columns must be a 1-D array of integer positions of the matrix's columns, not {cols.dtype} {cols.shape}")
            cols = cols.astype(np.int64)
            if len(cols) and (cols.min() < 0 or cols.max() >= len(self.cids) or (np.diff(cols) <= 0).any()):
                raise ValidationError("columns must be increasing positions of the matrix's columns")
            self._columns = cols
            self.cids = (self.cids if isinstance(self.cids, pd.Index) else pd.Index(self.cids))[cols]
            self.col_meta = self.col_meta.iloc[cols]
        if self._h5ad is not None:
            log.info("store source %s: %d of %d signatures x %d genes (AnnData obs x var, backed)",
                     self._h5ad.path, len(self.cids), self._n_file_cols, self.n_rows)

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
        pos = self._positions(start, stop)
        if gctx is not None and buf is not None:
            # a run of columns, read by the io layer straight into the buffer (one HDF5 call)
            return gctx.read_matrix(cidx=pos, out=buf[: stop - start]).T
        if self._h5ad is not None:
            return self._h5ad.read_signatures(pos)
        if self._gct is not None:
            data = self._gct.data[:, start:stop] if self._columns is None else self._gct.data[:, pos]
        else:
            from opencmap.io import read_gct

            data = read_gct(self._path, cidx=pos.tolist()).data  # type: ignore[arg-type]
        return np.asarray(data, dtype=np.float32).T

    def block_spec(self, start: int, stop: int) -> dict[str, Any]:
        """Where signatures ``start:stop`` are, as plain picklable data for :func:`read_signature_block`
        in another process: the file (``kind`` ``gctx``, ``gct`` or ``h5ad``, its ``path``, the
        block's ``positions`` in it, columns or rows of an ``.h5ad``'s ``X``, and the matrix
        ``shape`` (rows, columns) the build planned), or, for a matrix in memory, the block itself
        (``kind`` ``data``)."""
        if self._h5ad is not None:
            kind, path = "h5ad", self._h5ad.path
        elif self._path is not None:
            kind, path = ("gctx" if self._file() is not None else "gct"), self._path
        else:
            return {"kind": "data", "data": self.sig_block(start, stop)}
        return {"kind": kind, "path": str(path), "positions": self._positions(start, stop), "shape": (self.n_rows, self._n_file_cols)}

    def _positions(self, start: int, stop: int) -> np.ndarray:
        """Positions in the matrix (its columns; rows of an ``.h5ad``'s ``X``) of signatures ``start:stop``."""
        return np.arange(start, stop, dtype=np.int64) if self._columns is None else self._columns[start:stop]

    def close(self) -> None:
        if self._gctx:
            self._gctx.close()
        self._gctx = None
        if self._h5ad is not None:
            self._h5ad.close()


def read_signature_block(spec: Mapping[str, Any]) -> np.ndarray:
    """float32 ``(k, n_rows)``: the signatures a :meth:`SignatureSource.block_spec` names, read
    from its file (opened here, read-only, closed again) or taken from the spec."""
    kind = spec["kind"]
    if kind == "data":
        return np.ascontiguousarray(spec["data"], dtype=np.float32)
    path = Path(spec["path"])
    if not path.exists():
        raise StoreError(f"signature file not found: {path} (a worker must see the input at the driver's path)")
    pos = np.asarray(spec["positions"], dtype=np.int64)
    planned = tuple(spec["shape"])

    def check(shape: tuple[int, int]) -> None:
        if shape != planned:
            raise StoreError(f"{path}: matrix shape {shape} (rows, columns) is not the {planned} the build planned")

    if kind == "h5ad":
        from opencmap.io.h5ad import H5ADSignatures

        h5ad = H5ADSignatures(path)
        try:
            check(h5ad.shape[::-1])  # X is signatures x genes
            return h5ad.read_signatures(pos)
        finally:
            h5ad.close()
    if kind == "gctx":
        from opencmap.io import GCTXFile

        with GCTXFile(path) as gctx:
            check(gctx.shape)
            out = np.empty((len(pos), gctx.shape[0]), dtype=np.float32)
            return gctx.read_matrix(cidx=pos, out=out).T
    from opencmap.io import read_gct

    return np.asarray(read_gct(path, cidx=pos.tolist()).data, dtype=np.float32).T


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


_BUILD_ADVICE = (
    "free space, build on a larger disk, build fewer spaces (--space), drop the signature-major copy "
    "(--no-signature-major) or filter signatures (--exemplar-only, --pert-type, --cell)"
)


def check_disk(dest: str | os.PathLike[str], needed: int, *, what: str | None = None, advice: str = _BUILD_ADVICE) -> int:
    """Free bytes where ``dest`` will be written; :class:`DiskSpaceError` if ``needed`` does not fit
    (its message: ``what`` needs about ... (default: the store at ``dest``), then ``advice``)."""
    from opencmap.errors import DiskSpaceError

    target = Path(dest)
    probe = target if target.exists() else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = int(shutil.disk_usage(probe).free)
    if needed > free:
        raise DiskSpaceError(
            f"{what or f'the store at {target}'} needs about {needed / 1e9:.2f} GB ({needed} bytes) but {probe} has "
            f"{free / 1e9:.2f} GB free; {advice}"
        )
    return free


def _load_table(table: pd.DataFrame | str | os.PathLike[str] | None) -> pd.DataFrame | None:
    if table is None or isinstance(table, pd.DataFrame):
        return table
    from opencmap.io import read_table
    from opencmap.io.releases import read_known_signature_table

    known = read_known_signature_table(table)  # a release's sig_info (e.g. siginfo_beta.txt): fast, canonical
    return known if known is not None else read_table(table)


def _resolve_sig_info(source: SignatureSource, sig_info: pd.DataFrame | None) -> pd.DataFrame:
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


def _resolve_gene_info(source: SignatureSource, gene_info: pd.DataFrame | None, source_name: str | None = None) -> pd.DataFrame:
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
        lm = [g for g, f in zip(ids, parse_flags(genes["pr_is_lm"]), strict=True) if f]
        if lm:
            available["lm"] = lm
    if "pr_is_bing" in genes.columns:
        bing = [g for g, f in zip(ids, parse_flags(genes["pr_is_bing"]), strict=True) if f]
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


class NpyOut:
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


def _auto_block_size(
    n_sigs: int, n_rows: int, space_sizes: Sequence[int], signature_major: bool, build_memory: int = Settings.build_memory
) -> int:
    """Signatures per block so that the build's buffers (double-buffered input and outputs) fit
    ``build_memory`` (:attr:`Settings.build_memory`); larger blocks mean longer contiguous extents
    in the gene-major files."""
    per_sig = 2 * 4 * n_rows + sum(2 * g * (10 if signature_major else 6) for g in space_sizes)
    k = max(build_memory // max(per_sig, 1), 256)
    k = min(k, max(256, -(-n_sigs // 4)))  # at least ~4 blocks: reading, ranking and writing overlap
    return int(max(1, min(k, 65536, n_sigs)))


def _write_segment(
    seg_dir: Path,
    source: SignatureSource,
    sig_info: pd.DataFrame,
    space_rows: Mapping[str, np.ndarray],
    *,
    block_size: int | None,
    signature_major: bool,
    progress: Progress | None,
    settings: Settings,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Write one segment (all columns of ``source``) into ``seg_dir``; return its manifest entry.

    Pipeline with bounded memory and near-sequential I/O: a reader thread reads block ``b + 1``
    (signature-major, contiguous in GCTX) while the fused kernel ranks block ``b`` and transposes
    it into gene-major buffers, and a writer thread writes block ``b - 1``: one contiguous extent
    per gene row (``block_size`` values) with ``os.pwrite``; writeback is the kernel's (optionally,
    :attr:`Settings.build_release_fraction`, written pages are written out and dropped every
    :attr:`Settings.build_sync_bytes`);
    every file is made durable (``fdatasync``) before the manifest refers to it.

    With a distributed ``backend`` (:func:`~opencmap.backends.is_distributed`) the reading and
    ranking of each block run as :func:`build_block_task` tasks in its workers, and this process
    writes their results in block order (:func:`_run_block_tasks`): the same blocks, the same bytes.
    """
    n_sigs = len(source.cids)
    k = block_size or _auto_block_size(n_sigs, source.n_rows, [len(r) for r in space_rows.values()], signature_major, settings.build_memory)
    k = max(1, min(k, max(n_sigs, 1)))
    cols = {name: np.asarray(rows, dtype=np.int64) for name, rows in space_rows.items()}
    seg_dir.mkdir(parents=True, exist_ok=False)
    outs: dict[str, dict[str, NpyOut]] = {}
    try:
        for name, rows in space_rows.items():
            (seg_dir / name).mkdir()
            g = len(rows)
            outs[name] = {
                "ranks": NpyOut(seg_dir / name / "ranks.npy", (g, n_sigs), np.uint16),
                "scores": NpyOut(seg_dir / name / "scores.npy", (g, n_sigs), np.float32),
            }
            if signature_major:
                outs[name]["scores_by_sig"] = NpyOut(seg_dir / name / "scores_by_sig.npy", (n_sigs, g), np.float32)
        blocks = [(lo, min(lo + k, n_sigs)) for lo in range(0, n_sigs, k)]
        if blocks:
            _run_blocks(source, blocks, k, cols, outs, signature_major, progress, settings, backend)
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


class _SegmentSink:
    """The driver's side of a segment: writes each block's gene-major outputs into the segment's
    files (one extent per gene row), releasing written pages as :class:`Settings` says, and makes
    every file durable after the last block (before the manifest commits it)."""

    def __init__(self, outs: Mapping[str, Mapping[str, NpyOut]], settings: Settings):
        self.outs = outs
        total = sum(f.shape[0] * f.shape[1] * f.dtype.itemsize for files in outs.values() for f in files.values())
        memory = _physical_memory()
        # Positioned writes of long extents are left to the kernel's writeback (measured fastest, also
        # for a 29 GB store on 24 GB RAM: dirty pages are throttled, clean ones reclaimed -- unlike
        # memory-mapped scatter); build_release_fraction opts in to writing out and dropping pages as we go.
        fraction = settings.build_release_fraction
        self.release = fraction is not None and (not memory or total > fraction * memory)
        self.release_every = settings.build_sync_bytes if self.release else None
        self.unsynced = 0

    def write(self, lo: int, hi: int, bufs: Mapping[str, _BlockOut], last: bool) -> None:
        """Signatures ``lo:hi`` of every space (``bufs[name]``: ranks, scores, signature-major scores)."""
        for name, (r, s, by_sig) in bufs.items():
            files = self.outs[name]
            self.unsynced += files["ranks"].write_columns(r, lo, hi - lo)
            self.unsynced += files["scores"].write_columns(s, lo, hi - lo)
            if by_sig is not None:
                self.unsynced += files["scores_by_sig"].write_rows(by_sig, lo, hi - lo)
        if last or (self.release_every is not None and self.unsynced >= self.release_every):
            for files in self.outs.values():
                for f in files.values():
                    f.sync(drop=self.release)  # durable before the manifest commits it
            self.unsynced = 0


# one space's outputs of a block: ranks (g, k) uint16, scores (g, k) float32, scores (k, g) float32 or None
_BlockOut = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def _run_blocks(
    source: SignatureSource,
    blocks: Sequence[tuple[int, int]],
    k: int,
    cols: Mapping[str, np.ndarray],
    outs: Mapping[str, Mapping[str, NpyOut]],
    signature_major: bool,
    progress: Progress | None,
    settings: Settings,
    backend: Backend | None = None,
) -> None:
    """The read -> rank/transpose -> write pipeline of :func:`_write_segment`: here, or with a
    distributed ``backend``, its blocks as tasks (:func:`_run_block_tasks`)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from opencmap.kernels.store_ranks import gene_major_block

    sink = _SegmentSink(outs, settings)
    if backend is not None and is_distributed(backend):
        _run_block_tasks(backend, source, blocks, cols, sink, signature_major, progress, settings)
        return
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

    def write(b: int) -> None:
        sink.write(*blocks[b], out_bufs[b % 2], b == len(blocks) - 1)

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


def build_block_task(task: BlockTask) -> dict[str, _BlockOut]:
    """One block of a store build, as a backend task: ``{space: (ranks (g, k) uint16, scores (g, k)
    float32, signature-major scores (k, g) float32 or None)}`` for signatures ``task.start:task.stop``.

    A module-level function (pickled by reference) of plain data: ``task.params["source"]`` names
    the block (:meth:`SignatureSource.block_spec`: the input file, read here read-only, so a worker
    must see it at ``task.path``; or the block's values), ``["cols"]`` each space's gene rows of the
    input, ``["signature_major"]`` whether the signature-major copy is made, ``["settings"]`` the
    build's settings (the ranking kernel's threads: a local backend's with them, one outside a
    process's main thread). It writes nothing: the driver writes the returned arrays
    (:func:`_run_block_tasks`).
    """
    import numba

    from opencmap.backends.local import LocalBackend
    from opencmap.kernels.store_ranks import gene_major_block

    p = task.params
    threads = min(LocalBackend(p["settings"]).numba_threads(), numba.config.NUMBA_NUM_THREADS)
    x = read_signature_block(p["source"])
    k = task.stop - task.start
    if x.shape[0] != k:
        raise StoreError(f"block {task.start}:{task.stop} of {task.path}: read {x.shape[0]} signatures where {k} were asked for")
    out: dict[str, _BlockOut] = {}
    for name, rows in p["cols"].items():
        g = len(rows)
        ranks = np.empty((g, k), dtype=np.uint16)
        scores = np.empty((g, k), dtype=np.float32)
        by_sig = np.empty((k, g), dtype=np.float32) if p["signature_major"] else None
        before = numba.get_num_threads()
        numba.set_num_threads(threads)  # this thread's launches only; every thread count ranks alike
        try:
            gene_major_block(x, rows, ranks, scores, by_sig)
        finally:
            numba.set_num_threads(before)
        out[name] = (ranks, scores, by_sig)
    return out


def _run_block_tasks(
    backend: Backend,
    source: SignatureSource,
    blocks: Sequence[tuple[int, int]],
    cols: Mapping[str, np.ndarray],
    sink: _SegmentSink,
    signature_major: bool,
    progress: Progress | None,
    settings: Settings,
) -> None:
    """:func:`_write_segment`'s blocks as :func:`build_block_task` tasks run by a distributed
    ``backend``; this process writes each block's result (in a writer thread, while the next
    result is awaited), in block order. The bytes written are those of :func:`_run_blocks`."""
    from concurrent.futures import Future, ThreadPoolExecutor

    n_sigs = blocks[-1][1]
    tasks = []
    for lo, hi in blocks:
        spec = source.block_spec(lo, hi)
        params = {"source": spec, "cols": cols, "signature_major": signature_major, "settings": settings}
        tasks.append(BlockTask(str(spec.get("path", "")), lo, hi, params))
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: tuple[Future[None], int] | None = None
        for b, (task, result) in enumerate(ordered_results(backend, build_block_task, tasks)):
            if set(result) != set(cols):
                raise StoreError(f"block {task.start}:{task.stop}: the task returned spaces {sorted(result)}, not {sorted(cols)}")
            if pending is not None:
                pending[0].result()
                if progress is not None:
                    progress(pending[1], n_sigs)
            pending = (writer.submit(sink.write, task.start, task.stop, result, b == len(tasks) - 1), task.stop)
        if pending is not None:
            pending[0].result()
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
    settings: Settings | None = None,
    backend: Backend | None = None,
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
    settings:
        Build memory and page release (:class:`opencmap.backends.Settings`; default: today's);
        the bytes written are the same for any settings.
    backend:
        Where the blocks are read and ranked (:mod:`opencmap.backends`; default: this process,
        with a reader and a writer thread). A distributed backend runs them as
        :func:`build_block_task` tasks (its workers must see the input file at the same path);
        this process writes and commits. Its settings are used when ``settings`` is not given.
        The store's files are byte-identical whatever the backend.

    Before anything is written the disk the store needs is computed
    (:func:`estimate_store_bytes`, logged) and a :class:`~opencmap.errors.DiskSpaceError` is
    raised if it will not fit.
    """
    dest = Path(dest)
    block_size = _check_block_size(block_size)
    if settings is None and backend is not None:
        settings = backend.settings
    if dest.exists() and not overwrite:
        raise StoreError(f"{dest} already exists; pass overwrite=True (CLI --overwrite) or choose another path")
    source = SignatureSource(signatures, columns)
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
            settings=settings or Settings(),
            backend=backend,
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
        _write_bytes_atomic(tmp / _MANIFEST, manifest_bytes(manifest))
        _fault("build:before-switch")
        _switch_into(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_disk_full(exc):
            raise _disk_full(exc, f"building the store {dest}", dest) from exc  # type: ignore[arg-type]
        raise
    log.info("built store %s: %d signatures, spaces %s", dest, manifest["n_signatures"], sorted(chosen))
    return Store(dest, settings=settings)


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
    settings: Settings | None = None,
    backend: Backend | None = None,
) -> Store:
    """Add signatures to an existing store as a new segment (no rebuild of existing data).

    The new matrix must contain every gene of every space of the store (extra rows are ignored).
    sig_ids must be new. tau backgrounds no longer describe the store: by default they are dropped
    (queries report that tau needs a background); with ``keep_backgrounds=True`` they are kept but
    marked stale in the manifest (``appended_since_built``, see :attr:`Store.stale_backgrounds`
    and ``opencmap store info``): the old signatures' tau then uses a reference built before the
    appended signatures, which get no tau (NaN). Either way, rebuild them with
    :func:`opencmap.query.background.build_background` (``opencmap store background``).

    ``backend``: where the new segment's blocks are read and ranked, as for :func:`build_store`
    (the segment's files are byte-identical whatever the backend).
    """
    if settings is None and backend is not None:
        settings = backend.settings
    store = Store(path, settings=settings)
    block_size = _check_block_size(block_size)
    source = SignatureSource(signatures, columns)
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
        store = Store(store.path, settings=settings)  # as the lock found it
        try:
            return _append_locked(store, source, info, space_rows, block_size, keep_backgrounds, progress, backend)
        except BaseException as exc:
            _cleanup_locked(store.path)  # the new segment, if written, is not in the manifest
            if _is_disk_full(exc):
                raise _disk_full(exc, f"appending to the store {store.path}", store.path) from exc  # type: ignore[arg-type]
            raise


def _append_locked(
    store: Store,
    source: SignatureSource,
    info: pd.DataFrame,
    space_rows: Mapping[str, np.ndarray],
    block_size: int | None,
    keep_backgrounds: bool,
    progress: Progress | None,
    backend: Backend | None = None,
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
            settings=store.settings,
            backend=backend,
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
    store.commit(
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
    return Store(store.path, settings=store.settings)


def _next_segment_name(manifest: Mapping[str, Any]) -> str:
    """A segment name above every name in the manifest (never one a live segment uses)."""
    used = [int(seg["name"].rpartition("-")[2]) for seg in manifest["segments"] if seg["name"].rpartition("-")[2].isdigit()]
    return f"seg-{max(used, default=-1) + 1:05d}"


def compact_store(path: str | os.PathLike[str], *, progress: Progress | None = None, settings: Settings | None = None) -> Store:
    """Merge all segments of a store into one (after appends), in bounded memory.

    Gene-major files are merged band of genes by band (each band's rows are contiguous in every
    segment and in the output), so reads and writes are sequential. The new segment is written
    next to the old ones and committed by the manifest; the old segments are deleted afterwards.
    Data, order, checksummed content and tau backgrounds (with their staleness) are unchanged.
    """
    store = Store(path, settings=settings)
    if len(store.manifest["segments"]) <= 1:
        return store
    with store_writer(store.path):
        store = Store(store.path, settings=settings)
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

    def sequential(seg: StoreSegment, space: str, kind: str) -> np.ndarray:
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
                out = NpyOut(out_dir / name / f"{kind}.npy", shape, dtype.type)
                try:
                    if gene_major:
                        band = max(1, store.settings.build_memory // 2 // max(n * dtype.itemsize, 1))
                        buf = np.empty((min(band, sp.n_features), n), dtype=dtype)
                        for r0 in range(0, sp.n_features, band):
                            r1 = min(r0 + band, sp.n_features)
                            for seg, part in zip(store._segments, parts, strict=True):
                                seg.check(name, kind, np.arange(r0, r1), 0, seg.n)  # what is copied is checked first
                                buf[: r1 - r0, seg.offset : seg.offset + seg.n] = part[r0:r1]
                            _pwrite_all(out.fd, buf[: r1 - r0], out.offset + r0 * n * dtype.itemsize)
                    else:
                        step = max(1, store.settings.build_memory // 2 // max(sp.n_features * dtype.itemsize, 1))
                        for seg, part in zip(store._segments, parts, strict=True):
                            for lo in range(0, seg.n, step):
                                hi = min(lo + step, seg.n)
                                seg.check(name, kind, np.arange(lo, hi), 0, sp.n_features)
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
    # the new segment carries tile hashes: a compacted store of an older format is of this one
    store.commit(segments=[{"name": seg_name, "n_signatures": n, "files": files}], format_version=max(store.format_version, STORE_FORMAT_VERSION))
    for name in old:
        shutil.rmtree(seg_root / name, ignore_errors=True)
    log.info("compacted %s: %d segments -> 1 (%d signatures)", store.path, len(old), n)
    return Store(store.path, settings=store.settings)


# the names before the store moved to opencmap.io.store
_SignatureSource = SignatureSource
_NpyOut = NpyOut
