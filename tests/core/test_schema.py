"""core.schema: flag parsing, signature roles, level names, defined once and used everywhere."""

from __future__ import annotations

import typing

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opencmap.core import schema
from opencmap.core.schema import check_flags, exemplar_mask, flags01, null_mask, parse_flags, reference_mask
from opencmap.errors import FormatError

ONES = [1, 1.0, "1", "1.0", " 1 ", True, "true", "True", "TRUE", "yes", "Y", np.int64(1), np.float32(1)]
ZEROS = [0, 0.0, "0", "0.0", False, "false", "no", "N", np.int8(0)]
MISSING = [None, np.nan, "", "-666", -666, -666.0, pd.NA, "NaN"]
OTHER = [2, 0.6, "2", "maybe", "x", -1]


def test_spellings_of_one_are_true_and_nothing_else() -> None:
    values = pd.Series(ONES + ZEROS + MISSING + OTHER, dtype=object)
    got = parse_flags(values)
    assert got.dtype == bool
    assert got.tolist() == [True] * len(ONES) + [False] * (len(ZEROS) + len(MISSING) + len(OTHER))


def test_every_column_dtype_reads_alike() -> None:
    expect = [True, False, True, False]
    assert parse_flags(pd.Series([1, 0, 1, 0])).tolist() == expect
    assert parse_flags(pd.Series([1.0, 0.0, 1.0, np.nan])).tolist() == expect
    assert parse_flags(pd.Series([True, False, True, False])).tolist() == expect
    assert parse_flags(pd.Series(["1", "0", "1", ""], dtype="string[pyarrow]")).tolist() == expect
    assert parse_flags(pd.array([1, 0, 1, None], dtype="Int8")).tolist() == expect
    assert parse_flags(np.array([1, 0, 1, 0])).tolist() == expect
    assert parse_flags(["1", "0", "yes", "no"]).tolist() == expect


def test_flags01_keeps_missing_apart_and_the_index() -> None:
    s = pd.Series([1, "0", "-666", None, "true", 2], index=list("abcdef"), name="qc_pass", dtype=object)
    out = flags01(s)
    assert str(out.dtype) == "Int8"
    assert out.index.tolist() == list("abcdef") and out.name == "qc_pass"
    assert out.tolist() == [1, 0, pd.NA, pd.NA, 1, 0]


def test_check_flags_refuses_other_values_naming_file_column_and_values() -> None:
    assert check_flags(pd.Series(ONES + ZEROS, dtype=object), column="pr_is_lm").tolist() == [True] * len(ONES) + [False] * len(ZEROS)
    with pytest.raises(FormatError) as exc:
        check_flags(pd.Series([1, 0, 2, "x", 2]), column="pr_is_lm", path="/data/gene_info.txt")
    text = str(exc.value)
    assert text.startswith("/data/gene_info.txt: ")
    assert "'pr_is_lm'" in text and "2" in text and "'x'" in text and "3 rows" in text
    assert exc.value.path == "/data/gene_info.txt"


def test_check_flags_missing_values_are_refused_unless_allowed() -> None:
    with pytest.raises(FormatError, match="pr_is_bing"):
        check_flags(pd.Series([1, None, 0]), column="pr_is_bing")
    assert check_flags(pd.Series([1, None, "-666"]), column="pr_is_bing", allow_missing=True).tolist() == [True, False, False]


@given(st.lists(st.one_of(st.sampled_from(ONES + ZEROS + MISSING + OTHER), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=4))))
def test_parse_agrees_with_flags01_and_check(values: list) -> None:
    s = pd.Series(values, dtype=object)
    flags = parse_flags(s)
    assert flags.shape == (len(values),)
    assert (flags01(s).fillna(0).to_numpy() == 1).tolist() == flags.tolist()
    try:
        strict = check_flags(s, column="c", allow_missing=True)
    except FormatError:
        pass
    else:  # whatever the strict reader accepts, it reads as the lenient one does
        assert strict.tolist() == flags.tolist()


@given(st.lists(st.booleans()))
def test_round_trip_of_written_flags(values: list[bool]) -> None:
    ints = pd.Series(np.asarray(values, dtype=np.int64))
    for written in (ints, ints.astype(float), ints.astype(str), ints.astype(float).astype(str)):
        assert parse_flags(written).tolist() == values
        assert check_flags(written, column="c").tolist() == values


def test_roles() -> None:
    info = pd.DataFrame({
        "pert_type": ["trt_cp", "ctl_vehicle", "trt_cp", "ctl_untrt"],
        "is_touchstone": ["1", "0", "true", 0],
        "is_exemplar_sig": [0, 0, "1", 0],
    })  # fmt: skip
    assert reference_mask(info).tolist() == [True, False, True, False]
    assert null_mask(info).tolist() == [False, True, False, True]  # no is_null_sig: controls
    assert exemplar_mask(info).tolist() == [False, False, True, False]
    info["is_null_sig"] = [0, 1, 0, 0]
    info["is_ncs_sig"] = [0, 0, 0, 0]  # flags none: every signature is a reference
    assert null_mask(info).tolist() == [False, True, False, False]
    assert reference_mask(info).tolist() == [True] * 4
    bare = pd.DataFrame(index=range(3))
    assert reference_mask(bare).all() and exemplar_mask(bare).all() and not null_mask(bare).any()


def test_names_are_defined_once_and_used_where_they_were() -> None:
    from opencmap.api.catalogue import PERT_FIELDS
    from opencmap.api.routers.jobs import Level
    from opencmap.pipeline.params import PipelineParams
    from opencmap.query import background, engine
    from opencmap.query.result import LEVELS
    from opencmap.query.summaries import SUMMARY_LEVELS

    assert LEVELS is schema.LEVELS and SUMMARY_LEVELS == LEVELS[1:] and set(schema.CELL_LEVELS) <= set(LEVELS)
    assert typing.get_args(Level) == schema.LEVELS
    assert PERT_FIELDS is schema.PERT_FIELDS
    assert PipelineParams().landmark_fields == schema.LANDMARK_FLAGS
    assert engine.null_mask is schema.null_mask and engine.reference_mask is schema.reference_mask
    assert background.exemplar_mask is schema.exemplar_mask
