"""The in-memory GCT container: a float32 matrix with row and column metadata.

This module never opens files; reading and writing live in :mod:`opencmap.io`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import IdNotFoundError, ValidationError

__all__ = ["GCT", "plain_metadata"]


def _string_ids(ids: Iterable[Any]) -> pd.Index:
    """Ids as an object Index of ``str``; an Index that already holds only ``str`` is reused."""
    if isinstance(ids, pd.Index) and ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=False) in ("string", "empty"):
        return pd.Index(ids, dtype=object, copy=False)
    return pd.Index([str(i) for i in ids], dtype=object)


def _as_id_index(ids: Iterable[Any], what: str) -> pd.Index:
    index = _string_ids(ids).rename(what)
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise ValidationError(
            f"{what} must be unique; duplicated: {dup}"
            f"{' ...' if index.duplicated().sum() > 5 else ''}. Rename or drop the duplicates."
        )
    return index


def _meta_frame(meta: pd.DataFrame | None, ids: pd.Index, what: str) -> pd.DataFrame:
    if meta is None:
        return pd.DataFrame(index=ids.copy())
    if not isinstance(meta, pd.DataFrame):
        raise ValidationError(f"{what} metadata must be a pandas DataFrame, got {type(meta).__name__}")
    meta = meta.copy()
    meta_ids = _string_ids(meta.index)
    if len(meta_ids) != len(ids) or not meta_ids.equals(ids):
        missing = ids.difference(meta_ids)[:5].tolist()
        extra = meta_ids.difference(ids)[:5].tolist()
        raise ValidationError(
            f"{what} metadata does not match the matrix: {len(meta_ids)} metadata rows for "
            f"{len(ids)} matrix {what}s (missing: {missing}, unexpected: {extra}). "
            f"Index the metadata by the same ids, in the same order."
        )
    meta.index = ids.copy()
    return meta


def plain_metadata(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of an AnnData ``obs``/``var`` frame with categorical columns (as ``.h5ad`` files store
    text) turned back into plain values: text as pandas infers text (``str`` in pandas 3, object
    before), other categories as their own dtype."""
    frame = frame.copy()
    for col in frame.columns:
        values = frame[col]
        if not isinstance(values.dtype, pd.CategoricalDtype):
            continue
        categories = values.cat.categories
        if categories.dtype == object or isinstance(categories.dtype, pd.StringDtype):
            plain = values.astype(object).where(values.notna(), None).tolist()
            frame[col] = pd.Series(plain, index=frame.index, dtype=None if plain else object)
            continue
        try:
            frame[col] = values.astype(categories.dtype)
        except (TypeError, ValueError):  # e.g. integer categories with missing values
            frame[col] = values.astype(object)
    return frame


class GCT:
    """A matrix of expression values with row (gene) and column (sample) annotations.

    Parameters
    ----------
    data:
        2-D array, shape ``(n_rows, n_cols)``; stored as float32 unless ``dtype`` says otherwise.
    rids, cids:
        Row and column ids. Always strings (an Entrez id ``780`` stays ``"780"``).
        Taken from the metadata index when omitted.
    row_meta, col_meta:
        DataFrames indexed by the ids (in matrix order); columns are metadata fields.
    dtype:
        Matrix dtype, float32 by default (the precision of CMap's files).

    Attributes
    ----------
    data : np.ndarray
    row_meta, col_meta : pd.DataFrame
    """

    __slots__ = ("data", "row_meta", "col_meta")

    def __init__(
        self,
        data: Any,
        *,
        rids: Iterable[Any] | None = None,
        cids: Iterable[Any] | None = None,
        row_meta: pd.DataFrame | None = None,
        col_meta: pd.DataFrame | None = None,
        dtype: Any = np.float32,
    ) -> None:
        arr = np.asarray(data, dtype=dtype)
        if arr.ndim != 2:
            raise ValidationError(f"GCT data must be 2-D (rows x columns), got shape {arr.shape}")
        if rids is None:
            rids = row_meta.index if row_meta is not None else range(arr.shape[0])
        if cids is None:
            cids = col_meta.index if col_meta is not None else range(arr.shape[1])
        rid_index = _as_id_index(rids, "rid")
        cid_index = _as_id_index(cids, "cid")
        if arr.shape != (len(rid_index), len(cid_index)):
            raise ValidationError(
                f"matrix shape {arr.shape} does not match {len(rid_index)} row ids x "
                f"{len(cid_index)} column ids"
            )
        self.data = arr
        self.row_meta = _meta_frame(row_meta, rid_index, "row")
        self.col_meta = _meta_frame(col_meta, cid_index, "column")

    # ------------------------------------------------------------------ basic views
    @property
    def rids(self) -> pd.Index:
        """Row ids (strings)."""
        return self.row_meta.index

    @property
    def cids(self) -> pd.Index:
        """Column ids (strings)."""
        return self.col_meta.index

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"GCT({self.shape[0]} rows x {self.shape[1]} columns, {self.data.dtype}, "
            f"row fields {list(self.row_meta.columns)[:6]}, col fields {list(self.col_meta.columns)[:6]})"
        )

    def to_frame(self) -> pd.DataFrame:
        """The matrix as a DataFrame indexed by rid with cid columns (a copy)."""
        return pd.DataFrame(self.data, index=self.rids.copy(), columns=self.cids.copy())

    def copy(self) -> GCT:
        return GCT(self.data.copy(), row_meta=self.row_meta, col_meta=self.col_meta, dtype=self.data.dtype)

    # ------------------------------------------------------------------ positions
    @staticmethod
    def _positions(index: pd.Index, ids: Sequence[Any] | None, what: str) -> np.ndarray | None:
        if ids is None:
            return None
        wanted = pd.Index([str(i) for i in ids], dtype=object)
        pos = index.get_indexer(wanted)
        if (pos < 0).any():
            missing = wanted[pos < 0]
            raise IdNotFoundError(
                f"{len(missing)} {what} not found: {missing[:10].tolist()}"
                f"{' ...' if len(missing) > 10 else ''}. Check the ids (they are compared as strings)."
            )
        return pos

    def row_positions(self, rids: Sequence[Any]) -> np.ndarray:
        """0-based positions of ``rids``; raises :class:`IdNotFoundError` for unknown ids."""
        return self._positions(self.rids, rids, "row ids")  # type: ignore[return-value]

    def col_positions(self, cids: Sequence[Any]) -> np.ndarray:
        """0-based positions of ``cids``; raises :class:`IdNotFoundError` for unknown ids."""
        return self._positions(self.cids, cids, "column ids")  # type: ignore[return-value]

    # ------------------------------------------------------------------ slicing
    def take(self, rows: Sequence[int] | np.ndarray | None = None, cols: Sequence[int] | np.ndarray | None = None) -> GCT:
        """A new GCT with the rows/columns at the given 0-based positions (in that order)."""
        r = slice(None) if rows is None else np.asarray(rows, dtype=np.intp)
        c = slice(None) if cols is None else np.asarray(cols, dtype=np.intp)
        data = self.data[r][:, c] if not isinstance(r, slice) or not isinstance(c, slice) else self.data.copy()
        return GCT(
            data,
            row_meta=self.row_meta.iloc[r],
            col_meta=self.col_meta.iloc[c],
            dtype=self.data.dtype,
        )

    def subset(self, *, rids: Sequence[Any] | None = None, cids: Sequence[Any] | None = None) -> GCT:
        """A new GCT restricted to (and ordered by) the given ids."""
        return self.take(self._positions(self.rids, rids, "row ids"), self._positions(self.cids, cids, "column ids"))

    # ------------------------------------------------------------------ comparison
    def equals(self, other: GCT, *, atol: float = 0.0, check_meta: bool = True) -> bool:
        """True if ids (and metadata) are identical and values agree within ``atol`` (NaN == NaN)."""
        if not isinstance(other, GCT) or self.shape != other.shape:
            return False
        if not (self.rids.equals(other.rids) and self.cids.equals(other.cids)):
            return False
        if atol == 0.0:
            same = np.array_equal(self.data, other.data, equal_nan=True)
        else:
            same = bool(np.allclose(self.data, other.data, atol=atol, rtol=0.0, equal_nan=True))
        if not same:
            return False
        if check_meta:
            return self.row_meta.equals(other.row_meta) and self.col_meta.equals(other.col_meta)
        return True

    # ------------------------------------------------------------------ AnnData (optional extra)
    def to_anndata(self) -> Any:
        """This GCT as an ``anndata.AnnData``: columns (samples / signatures) x rows (genes).

        AnnData puts observations in rows, so ``X`` is the transposed matrix (same dtype), ``obs``
        the column metadata (index = cids) and ``var`` the row metadata (index = rids). Needs the
        optional ``anndata`` package (imported here, never at module import). Exact inverse of
        :meth:`from_anndata`.
        """
        from opencmap.io.h5ad import import_anndata

        anndata = import_anndata()
        obs = self.col_meta.copy()
        var = self.row_meta.copy()
        obs.index = pd.Index(list(self.cids), dtype=object, name="cid")
        var.index = pd.Index(list(self.rids), dtype=object, name="rid")
        return anndata.AnnData(X=np.ascontiguousarray(self.data.T), obs=obs, var=var)

    @classmethod
    def from_anndata(cls, adata: Any, *, layer: str | None = None, dtype: Any = None) -> GCT:
        """A GCT (genes x samples) from an ``anndata.AnnData`` (samples x genes).

        ``layer`` picks a layer instead of ``X``; sparse matrices are made dense; ``dtype``
        defaults to the matrix's own float dtype (float32 for anything else). Categorical
        metadata columns (as ``.h5ad`` files store text) come back as their plain values.
        Raises :class:`~opencmap.errors.ValidationError` for a missing layer or a backed AnnData
        without its matrix.
        """
        matrix = adata.X if layer is None else adata.layers.get(layer) if layer in adata.layers else None
        if matrix is None:
            what = "X" if layer is None else f"layer {layer!r}"
            raise ValidationError(f"the AnnData has no {what} (layers: {sorted(adata.layers.keys())})")
        if hasattr(matrix, "toarray"):
            matrix = matrix.toarray()
        arr = np.asarray(matrix)
        if dtype is None:
            dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float32

        plain = plain_metadata
        return cls(
            arr.T,
            rids=[str(v) for v in adata.var_names],
            cids=[str(o) for o in adata.obs_names],
            row_meta=plain(adata.var).set_axis([str(v) for v in adata.var_names]),
            col_meta=plain(adata.obs).set_axis([str(o) for o in adata.obs_names]),
            dtype=dtype,
        )
