"""Property tests: random shapes, ids (incl. integer-like strings) and metadata dtypes round trip exactly."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencmap.core.gct import GCT
from opencmap.io import read_gct, write_gct, write_gctx

_ALPHABET = string.ascii_letters + string.digits + " _-:.|,()/éß"
_INT_LIKE = st.sampled_from(["0", "7", "007", "780", "-3", "5720", "1e5", "nan1"])
_WORD = st.text(alphabet=_ALPHABET, min_size=1, max_size=12).filter(lambda s: s == s.strip() and s != "-666")
_ID = st.one_of(_INT_LIKE, _WORD)
_FIELD = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=8).filter(lambda s: s != "id")

_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def _column(draw, n: int, *, for_text: bool):
    kind = draw(st.sampled_from(["int", "nullable_int", "float", "str"]))
    if kind == "int":
        return np.array(draw(st.lists(st.integers(-(2**40), 2**40).filter(lambda v: v != -666), min_size=n, max_size=n)), dtype=np.int64)
    if kind == "nullable_int":
        values = draw(st.lists(st.one_of(st.none(), st.integers(-1000, 1000).filter(lambda v: v != -666)), min_size=n, max_size=n))
        if n and all(v is None for v in values):  # an all-missing column reads back as float
            values[0] = 1
        if n and None not in values:  # ints without missing values read back as plain int64
            values[-1] = None
            if all(v is None for v in values):
                return np.array([5], dtype=np.int64)
        return pd.array(values, dtype="Int64")
    if kind == "float":
        values = draw(
            st.lists(
                st.one_of(st.just(np.nan), st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda v: v != -666)),
                min_size=n,
                max_size=n,
            )
        )
        arr = np.array(values, dtype=np.float64)
        if n and np.isnan(arr).all():
            arr[0] = 0.5
        if for_text and n and np.all(np.isnan(arr) | (arr == np.round(arr))):
            arr[0] = 0.25  # all-integral floats are written "1.0" and read back as float: fine, but keep a fraction
        return arr
    # text: prefix a letter so a text file cannot mistake the column for numbers
    words = draw(st.lists(st.one_of(st.none(), _WORD.map(lambda w: "x" + w)), min_size=n, max_size=n))
    if n and all(w is None for w in words):
        words[0] = "x"
    return pd.array(words, dtype="str")


@st.composite
def gcts(draw, *, for_text: bool):
    n_rows = draw(st.integers(1, 6))
    n_cols = draw(st.integers(1, 6))
    rids = draw(st.lists(_ID, min_size=n_rows, max_size=n_rows, unique=True))
    cids = draw(st.lists(_ID, min_size=n_cols, max_size=n_cols, unique=True))
    data = np.array(
        draw(
            st.lists(
                st.floats(width=32, allow_nan=True, allow_infinity=True),
                min_size=n_rows * n_cols,
                max_size=n_rows * n_cols,
            )
        ),
        dtype=np.float32,
    ).reshape(n_rows, n_cols)
    row_fields = draw(st.lists(_FIELD, max_size=3, unique=True))
    col_fields = draw(st.lists(_FIELD, max_size=3, unique=True))
    row_meta = pd.DataFrame({f: draw(_column(n_rows, for_text=for_text)) for f in row_fields}, index=rids)
    col_meta = pd.DataFrame({f: draw(_column(n_cols, for_text=for_text)) for f in col_fields}, index=cids)
    if not row_fields:
        row_meta = pd.DataFrame(index=rids)
    if not col_fields:
        col_meta = pd.DataFrame(index=cids)
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


@_SETTINGS
@given(gcts(for_text=False), st.sampled_from([None, "gzip"]), st.sampled_from([None, 1, 3]))
def test_gctx_round_trip_is_exact(gct, compression, chunks):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.gctx"
        write_gctx(gct, path, compression=compression, chunks=chunks)
        back = read_gct(path)
    assert back.equals(gct)
    assert list(back.row_meta.dtypes) == list(gct.row_meta.dtypes)
    assert list(back.col_meta.dtypes) == list(gct.col_meta.dtypes)


@_SETTINGS
@given(gcts(for_text=True))
def test_gct_text_round_trip_is_exact(gct):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.gct"
        write_gct(gct, path)
        back = read_gct(path)
        text = path.read_text()
    assert back.equals(gct), (text, gct.data, back.data, list(gct.rids), list(back.rids), list(gct.cids), list(back.cids))


@_SETTINGS
@given(gcts(for_text=False), st.data())
def test_partial_gctx_read_equals_numpy_indexing(gct, data):
    n_rows, n_cols = gct.shape
    ridx = data.draw(st.one_of(st.none(), st.permutations(range(n_rows)).flatmap(lambda p: st.integers(0, n_rows).map(lambda k: p[:k]))))
    cidx = data.draw(st.one_of(st.none(), st.permutations(range(n_cols)).flatmap(lambda p: st.integers(0, n_cols).map(lambda k: p[:k]))))
    chunks = data.draw(st.sampled_from([1, 2, 5]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.gctx"
        write_gctx(gct, path, chunks=chunks)
        part = read_gct(path, ridx=ridx, cidx=cidx)
        by_id = read_gct(
            path,
            rid=None if ridx is None else [gct.rids[i] for i in ridx],
            cid=None if cidx is None else [gct.cids[i] for i in cidx],
        )
    assert part.equals(gct.take(ridx, cidx))
    assert by_id.equals(part)
