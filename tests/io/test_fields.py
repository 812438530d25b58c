"""Typed metadata fields and -666 (opencmap.io.fields)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from opencmap.io.fields import from_stored, text_column, to_stored, typed_text_column


def test_typing_rules():
    assert typed_text_column(["1", "2", "-3"]).dtype == np.int64
    assert typed_text_column(["1", "-666"]).dtype == "Int64"
    assert typed_text_column(["1", "2.5", "1e-3", "-666", "NaN"]).tolist()[:3] == [1.0, 2.5, 0.001]
    assert typed_text_column(["007", "8"]).tolist() == ["007", "8"]  # leading zeros: ids, keep text
    assert typed_text_column(["0.5", "00.5"]).dtype != np.float64
    assert typed_text_column(["A03", "1"]).tolist() == ["A03", "1"]
    assert typed_text_column(["-666", "-666"]).isna().all() and typed_text_column(["-666"]).dtype == np.float64
    assert typed_text_column(["780", "5720"], as_text=True).tolist() == ["780", "5720"]
    s = typed_text_column(["a", "-666", "NA"])
    assert s.iloc[0] == "a" and pd.isna(s.iloc[1]) and s.iloc[2] == "NA"
    assert typed_text_column(["99999999999999999999"]).dtype == np.float64  # beyond int64: a float


def test_text_column_writes_missing_as_minus_666():
    assert text_column(pd.Series(pd.array([1, None], dtype="Int64"))).tolist() == ["1", "-666"]
    assert text_column(pd.Series([0.5, np.nan])).tolist() == ["0.5", "-666"]
    assert text_column(pd.Series(np.array([7.71], dtype=np.float32))).tolist() == ["7.71"]
    assert text_column(pd.Series(pd.array(["x", None], dtype="str"))).tolist() == ["x", "-666"]


def test_stored_round_trip():
    for values in (
        np.array([1, -666, 3], dtype=np.int32),
        np.array([0.5, -666.0], dtype=np.float32),
        np.array([b"abc", b"-666", "é".encode()]),
    ):
        series = from_stored(values)
        assert series.isna().sum() == 1
        again = to_stored(series)
        assert np.array_equal(again, values)
