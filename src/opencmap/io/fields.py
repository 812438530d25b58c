"""Typed metadata fields shared by the GCT, GCTX and table readers and writers.

CMap files mark missing values with ``-666``. On reading, ``-666`` becomes a missing value
(``NaN`` in float columns, ``<NA>`` in integer columns, ``NaN`` in string columns); on writing,
missing values are written back as ``-666``.

Text (GCT, tables) carries no types, so a text column is typed by its content:

* every non-missing value an integer without leading zeros → ``int64`` (``Int64`` if some are
  missing);
* every non-missing value a number → ``float64``;
* anything else (or a column asked to stay text) → strings.

A column whose every value is ``-666`` is read as an all-missing ``float64`` column. Integer-like
ids in *string* columns of a text file cannot be told from numbers, so callers that know a column
holds ids (row/column ids, ``*_id`` table columns) ask for it to stay text.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "MISSING_TEXT",
    "typed_text_column",
    "text_column",
    "decode_bytes",
    "bytes_to_arrow",
    "encode_text",
    "from_stored",
    "to_stored",
]

MISSING_TEXT = "-666"
"""How CMap files write a missing metadata value."""

_MISSING_NUMERIC_TOKENS = ["-666", "-666.0", "-666.00", "-666.000", "-666.0000", "NaN", "nan", ""]
_INT_PATTERN = r"^[+-]?(?:0|[1-9][0-9]{0,17})$"
_FLOAT_PATTERN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$|^[+-]?(?:inf|Inf|INF|Infinity|infinity)$"
_LEADING_ZERO = r"^[+-]?0[0-9]"


def _string_array(values: Any) -> pd.Series:
    """A pandas string Series (missing as NaN) from an array-like of str / None."""
    return pd.Series(np.asarray(values, dtype=object), dtype="str")


def _as_text(raw: pa.Array) -> pd.Series:
    """Strings with ``-666`` as missing."""
    masked = pc.if_else(pc.equal(raw, MISSING_TEXT), pa.scalar(None, pa.string()), raw)
    return _string_array(masked.to_numpy(zero_copy_only=False))


def typed_text_column(values: Any, *, as_text: bool = False) -> pd.Series:
    """Type one text column (array-like of ``str``) by its content; ``-666`` → missing.

    Returns a Series with a fresh RangeIndex, dtype ``int64``/``Int64``/``float64``/``str``.
    The checks run vectorised in Arrow (no per-value Python code).
    """
    raw = pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
    n = len(raw)
    if as_text or n == 0:
        return _as_text(raw)
    trimmed = pc.utf8_trim_whitespace(raw)
    missing = pc.fill_null(pc.is_in(trimmed, value_set=pa.array(_MISSING_NUMERIC_TOKENS)), True)
    missing_np = missing.to_numpy(zero_copy_only=False)
    present = trimmed.filter(pc.invert(missing))
    if len(present) == 0:
        if pc.all(pc.is_in(trimmed, value_set=pa.array(_MISSING_NUMERIC_TOKENS[:5]))).as_py():
            return pd.Series(np.full(n, np.nan), dtype="float64")
        return _as_text(raw)
    if pc.all(pc.match_substring_regex(present, _INT_PATTERN)).as_py():
        ints = pc.cast(present, pa.int64()).to_numpy()
        if not missing_np.any():
            return pd.Series(ints, dtype="int64")
        full = np.zeros(n, dtype=np.int64)
        full[~missing_np] = ints
        return pd.Series(pd.arrays.IntegerArray(full, missing_np.copy()))
    if pc.all(pc.match_substring_regex(present, _FLOAT_PATTERN)).as_py() and not pc.any(
        pc.match_substring_regex(present, _LEADING_ZERO)
    ).as_py():
        out_f = np.full(n, np.nan)
        out_f[~missing_np] = pc.cast(present, pa.float64()).to_numpy()
        out_f[out_f == -666.0] = np.nan
        return pd.Series(out_f, dtype="float64")
    return _as_text(raw)


def text_column(series: pd.Series) -> np.ndarray:
    """Values of a metadata column as an object array of ``str``; missing → ``"-666"``."""
    values = series.to_numpy()
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        filled = series.astype("Int8").astype(object)
        return np.array([MISSING_TEXT if v is pd.NA else str(v) for v in filled], dtype=object)
    if pd.api.types.is_integer_dtype(dtype):
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            mask = series.isna().to_numpy()
            ints = series.fillna(-666).to_numpy(dtype=np.int64)
            out = ints.astype(str).astype(object)
            out[mask] = MISSING_TEXT
            return out
        return values.astype(str).astype(object)
    if pd.api.types.is_float_dtype(dtype):
        arr = series.to_numpy(dtype=dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype, na_value=np.nan)
        mask = np.isnan(arr)
        out = arr.astype(str).astype(object)
        out[mask] = MISSING_TEXT
        return out
    mask = series.isna().to_numpy()
    out = np.array([str(v) for v in values], dtype=object) if len(values) else np.array([], dtype=object)
    out[mask] = MISSING_TEXT
    return out


def bytes_to_arrow(raw: np.ndarray, *, strip: bool = False) -> pa.Array | None:
    """A fixed-length bytes array (``|S``) as an Arrow string array, without Python objects.

    Trailing NUL padding is removed (as numpy does); ``strip`` also trims whitespace. Returns
    ``None`` if the bytes are not valid UTF-8 (callers then use :func:`decode_bytes`).
    """
    raw = np.ascontiguousarray(raw)
    width = raw.dtype.itemsize
    if width == 0 or len(raw) == 0:
        return pa.array([""] * len(raw), type=pa.string())
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(raw), [None, pa.py_buffer(raw.view(np.uint8))])
    try:
        text = pc.cast(pc.cast(fixed, pa.binary()), pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    text = pc.utf8_rtrim(text, characters="\x00")
    return pc.utf8_trim_whitespace(text) if strip else text


def decode_bytes(raw: np.ndarray) -> np.ndarray:
    """Decode a fixed-length bytes array (``|S``) to a unicode array, fast for ASCII.

    UTF-8 is tried next; bytes that are not UTF-8 (some CMap files hold Latin-1, e.g. ``µ`` as
    ``0xB5`` in ``pert_idose``) are decoded as Latin-1, which keeps every byte's meaning.
    """
    try:
        return raw.astype(np.str_)
    except UnicodeDecodeError:
        pass
    try:
        return np.char.decode(raw, "utf-8")
    except UnicodeDecodeError:
        return np.char.decode(raw, "latin-1")


def encode_text(values: np.ndarray) -> np.ndarray:
    """Encode an array of ``str`` to a fixed-length bytes array (UTF-8), at least 1 byte wide."""
    uni = np.asarray(values, dtype=np.str_)
    try:
        out = uni.astype(np.bytes_)
    except UnicodeEncodeError:
        out = np.char.encode(uni, "utf-8")
    if out.dtype.itemsize == 0:
        out = out.astype("S1")
    return out


def from_stored(values: np.ndarray, *, nullable: bool | None = None) -> pd.Series:
    """A metadata column read from HDF5 (numbers keep their dtype; ``-666`` → missing).

    Integer columns holding ``-666`` become nullable (``Int32``/``Int64``); ``nullable`` forces
    that choice (callers pass whether the *whole* stored column has ``-666``, so a subset gets the
    same dtype as a full read).
    """
    kind = values.dtype.kind
    if kind == "S":
        text = bytes_to_arrow(values)
        if text is not None:
            return pd.Series(pd.array(pc.if_else(pc.equal(text, MISSING_TEXT), pa.scalar(None, pa.string()), text), dtype="str"))
        uni = decode_bytes(values)
        obj = uni.astype(object)
        obj[uni == MISSING_TEXT] = None
        return _string_array(obj)
    if kind in "OU":
        obj = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values], dtype=object)
        obj[obj == MISSING_TEXT] = None
        return _string_array(obj)
    if kind in "iu":
        mask = values == -666
        if mask.any() if nullable is None else nullable:
            out = pd.array(values, dtype=f"{'U' if kind == 'u' else ''}Int{values.dtype.itemsize * 8}")
            out[mask] = pd.NA
            return pd.Series(out)
        return pd.Series(values)
    if kind == "f":
        out_f = values.copy()
        out_f[out_f == -666] = np.nan
        return pd.Series(out_f)
    if kind == "b":
        return pd.Series(values)
    return _string_array(values.astype(str).astype(object))


def to_stored(series: pd.Series) -> np.ndarray:
    """A metadata column as an array h5py can store the CMap way (missing → ``-666``)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return series.fillna(False).to_numpy(dtype=np.int8) if series.isna().any() else series.to_numpy(dtype=np.int8)
    if pd.api.types.is_integer_dtype(dtype):
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):
            np_dtype = dtype.numpy_dtype  # type: ignore[attr-defined]
            if np_dtype.kind == "u" and series.isna().any():
                np_dtype = np.dtype(np.int64)
            return series.astype(object).where(series.notna(), -666).to_numpy(dtype=np_dtype)
        return series.to_numpy()
    if pd.api.types.is_float_dtype(dtype):
        np_dtype = dtype.numpy_dtype if hasattr(dtype, "numpy_dtype") else dtype
        arr = series.to_numpy(dtype=np_dtype, na_value=np.nan).copy()
        arr[np.isnan(arr)] = -666
        return arr
    return encode_text(text_column(series))
