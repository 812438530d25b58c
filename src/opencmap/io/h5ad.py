"""AnnData ``.h5ad`` files (the scverse standard), through the optional ``anndata`` package.

:func:`read_h5ad` and :func:`write_h5ad` wrap ``anndata``'s own reader and writer (imported only
when called) with opencmap's errors and atomic writes. Conversions between AnnData and opencmap's
objects live with the objects (:meth:`opencmap.core.gct.GCT.to_anndata`,
:meth:`opencmap.query.result.QueryResult.to_anndata`).
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.core.gct import plain_metadata
from opencmap.errors import ConfigError, FormatError
from opencmap.io.atomic import atomic_write_path

__all__ = ["read_h5ad", "write_h5ad", "import_anndata", "H5ADSignatures"]

logger = logging.getLogger(__name__)


def import_anndata() -> Any:
    """The ``anndata`` module, or a :class:`~opencmap.errors.ConfigError` saying how to install it."""
    try:
        import anndata
    except ImportError as exc:
        raise ConfigError("this needs the optional anndata package; install it with pip install 'opencmap[anndata]'") from exc
    return anndata


def read_h5ad(path: str | PathLike[str], *, backed: bool = False) -> Any:
    """Read an AnnData ``.h5ad`` file (``anndata.read_h5ad``; ``backed`` keeps X on disk).

    Raises
    ------
    ConfigError
        anndata is not installed.
    FormatError
        Missing file, or not a readable ``.h5ad`` file.
    """
    p = Path(path)
    if not p.exists():
        raise FormatError("file not found; check the path", path=p)
    anndata = import_anndata()
    try:
        adata = anndata.read_h5ad(p, backed="r" if backed else None)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"not a readable .h5ad (AnnData) file ({exc})", path=p) from exc
    logger.debug("read %s: %d obs x %d var", p, adata.n_obs, adata.n_vars)
    return adata


def _object_text(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas string-dtype columns and index (pandas 3's default for text) as object ones, which
    every anndata version writes (anndata 0.12 refuses pandas' string arrays unless told to)."""
    text = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    string_index = isinstance(frame.index.dtype, pd.StringDtype)
    if not text and not string_index:
        return frame
    out = frame.copy()
    for c in text:
        out[c] = frame[c].astype(object).where(frame[c].notna(), None)
    if string_index:
        out.index = pd.Index(frame.index.astype(object), dtype=object, name=frame.index.name)
    return out


def write_h5ad(adata: Any, path: str | PathLike[str], *, compression: str | None = None) -> Path:
    """Write ``adata`` to ``path`` atomically (``AnnData.write_h5ad``); returns ``path``.

    Text columns of ``obs``/``var`` are written as anndata writes plain text (categoricals), also
    when pandas holds them as its string dtype; ``adata`` itself is left as it was (anndata's
    writer would turn its text columns into categoricals in place).
    """
    import_anndata()
    p = Path(path)
    obs, var = adata.obs, adata.var
    try:
        adata.obs, adata.var = _object_text(obs), _object_text(var)
        with atomic_write_path(p) as tmp:
            adata.write_h5ad(Path(tmp), compression=compression)
    finally:
        adata.obs, adata.var = obs, var
    return p


class H5ADSignatures:
    """Signatures in an ``.h5ad`` opened backed (``obs`` = signatures, ``var`` = genes, ``X`` = scores).

    The metadata is read at once; :meth:`read_signatures` reads rows of ``X`` (dense or sparse)
    from the file on demand, so a file larger than memory can feed a store build.
    ``shape``: ``(signatures, genes)``, the shape of ``X``.

    Raises
    ------
    FormatError
        Not an ``.h5ad``, no ``X``, ``X`` not of shape obs x var, or repeated signature or gene ids.
    """

    def __init__(self, path: str | PathLike[str]):
        self.path = Path(path)
        self.adata = read_h5ad(self.path, backed=True)
        if self.adata.X is None:
            self.close()
            raise FormatError("the AnnData has no X matrix of signature scores", path=self.path)
        self.sig_ids = pd.Index([str(o) for o in self.adata.obs_names], dtype=object)
        self.gene_ids = pd.Index([str(v) for v in self.adata.var_names], dtype=object)
        for what, ids, axis in (("signature (obs)", self.sig_ids, "obs_names"), ("gene (var)", self.gene_ids, "var_names")):
            if ids.has_duplicates:
                dup = ids[ids.duplicated()].unique()[:5].tolist()
                self.close()
                raise FormatError(f"repeated {what} ids {dup}; make {axis} unique", path=self.path)
        self.shape = (len(self.sig_ids), len(self.gene_ids))
        if tuple(self.adata.X.shape) != self.shape:
            shape = tuple(self.adata.X.shape)
            self.close()
            raise FormatError(f"X has shape {shape} but obs x var is {self.shape}; the file is inconsistent", path=self.path)
        self.signatures = plain_metadata(self.adata.obs).set_axis(self.sig_ids)
        self.genes = plain_metadata(self.adata.var).set_axis(self.gene_ids)

    def read_signatures(self, positions: np.ndarray) -> np.ndarray:
        """float32 ``(len(positions), n_genes)``: the rows of ``X`` at ``positions`` (increasing).

        Only those rows are read from the file: a run of rows (a block of an unfiltered build) as
        one slice, scattered rows (a filtered build) by the backed ``X``'s own row indexing (h5py's
        selection of a dense ``X``; anndata's of a sparse one, far faster than slices of nearby rows).

        Raises
        ------
        FormatError
            ``X`` cannot be read (a corrupt file) or does not hold numbers.
        """
        pos = np.asarray(positions, dtype=np.int64)
        if not len(pos):
            return np.empty((0, self.shape[1]), dtype=np.float32)
        first, last = int(pos[0]), int(pos[-1])
        try:
            block = self.adata.X[first : last + 1] if last - first + 1 == len(pos) else self.adata.X[pos]
            if hasattr(block, "toarray"):
                block = block.toarray()
            return np.ascontiguousarray(block, dtype=np.float32)
        except (OSError, RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise FormatError(f"cannot read rows of X ({exc}); the file is corrupt or X does not hold numbers", path=self.path) from exc

    def close(self) -> None:
        file = getattr(self.adata, "file", None)
        if file is not None:
            file.close()
