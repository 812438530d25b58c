"""LoopBack filters over tables (opencmap.api.clue.loopback), against plain pandas selections."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from opencmap.api.clue.loopback import OPERATORS, LoopBackError, apply_filter, apply_where, parse_filter, unknown_fields


@pytest.fixture(scope="module")
def perts() -> pd.DataFrame:
    return pd.DataFrame({
        "pert_id": ["BRD-A", "BRD-B", "BRD-C", "BRD-D", "DMSO"],
        "pert_iname": ["vorinostat", "trichostatin-a", "sirolimus", "Vorinostat-analog", "DMSO"],
        "pert_type": ["trt_cp", "trt_cp", "trt_cp", "trt_cp", "ctl_vehicle"],
        "num_sig": [10, 4, 7, 1, 30],
        "moa": [["HDAC inhibitor"], ["HDAC inhibitor"], ["MTOR inhibitor"], [], []],
        "dose": [1.5, np.nan, 10.0, 0.5, np.nan],
    })  # fmt: skip


def ids(records):
    return [r["pert_id"] for r in records]


def where(frame, w):
    return list(frame["pert_id"][apply_where(frame, w)])


def test_equality_and_operators(perts):
    assert where(perts, {"pert_id": "BRD-B"}) == ["BRD-B"]
    assert where(perts, {"pert_id": {"eq": "BRD-B"}}) == ["BRD-B"]
    assert where(perts, {"pert_id": {"neq": "BRD-B"}}) == ["BRD-A", "BRD-C", "BRD-D", "DMSO"]
    assert where(perts, {"num_sig": {"gt": 7}}) == ["BRD-A", "DMSO"]
    assert where(perts, {"num_sig": {"gte": 7}}) == ["BRD-A", "BRD-C", "DMSO"]
    assert where(perts, {"num_sig": {"lt": "7"}}) == ["BRD-B", "BRD-D"]  # numbers as text compare as numbers
    assert where(perts, {"num_sig": {"lte": 4}}) == ["BRD-B", "BRD-D"]
    assert where(perts, {"num_sig": {"between": [4, 10]}}) == ["BRD-A", "BRD-B", "BRD-C"]
    assert where(perts, {"pert_id": {"inq": ["BRD-C", "DMSO", "nope"]}}) == ["BRD-C", "DMSO"]
    assert where(perts, {"pert_id": {"nin": ["BRD-C", "DMSO"]}}) == ["BRD-A", "BRD-B", "BRD-D"]
    assert where(perts, {"dose": {"gt": 1}}) == ["BRD-A", "BRD-C"]  # missing values never match


def test_like_regexp_and_case(perts):
    assert where(perts, {"pert_iname": {"like": "vorino"}}) == ["BRD-A"]
    assert where(perts, {"pert_iname": {"like": "vor%stat"}}) == ["BRD-A"]
    assert where(perts, {"pert_iname": {"ilike": "VORINO"}}) == ["BRD-A", "BRD-D"]
    assert where(perts, {"pert_iname": {"nlike": "o"}}) == ["DMSO"]
    assert where(perts, {"pert_iname": {"nilike": "vorino"}}) == ["BRD-B", "BRD-C", "DMSO"]
    assert where(perts, {"pert_iname": {"regexp": "^tri"}}) == ["BRD-B"]
    assert where(perts, {"pert_iname": {"regexp": "/^VOR/i"}}) == ["BRD-A", "BRD-D"]


def test_and_or_and_lists(perts):
    assert where(perts, {"or": [{"pert_id": "BRD-A"}, {"num_sig": {"gt": 20}}]}) == ["BRD-A", "DMSO"]
    assert where(perts, {"and": [{"pert_type": "trt_cp"}, {"num_sig": {"lt": 5}}]}) == ["BRD-B", "BRD-D"]
    assert where(perts, {"moa": "HDAC inhibitor"}) == ["BRD-A", "BRD-B"]  # any element of a list field
    assert where(perts, {"moa": {"inq": ["MTOR inhibitor"]}}) == ["BRD-C"]
    assert where(perts, {"moa": {"neq": "HDAC inhibitor"}}) == ["BRD-C", "BRD-D", "DMSO"]


def test_fields_order_limit_skip(perts):
    flt = parse_filter(json.dumps({"where": {"pert_type": "trt_cp"}, "fields": {"pert_id": True, "num_sig": True},
                                   "order": "num_sig DESC", "limit": 2, "skip": 1}))
    assert apply_filter(perts, flt) == [{"pert_id": "BRD-C", "num_sig": 7}, {"pert_id": "BRD-B", "num_sig": 4}]
    out = apply_filter(perts, parse_filter({"fields": ["pert_id"], "order": ["pert_type ASC", "num_sig ASC"]}))
    assert ids(out) == ["DMSO", "BRD-D", "BRD-B", "BRD-C", "BRD-A"]
    excluded = apply_filter(perts, parse_filter({"fields": {"moa": False, "dose": False}, "limit": 1}))
    assert list(excluded[0]) == ["pert_id", "pert_iname", "pert_type", "num_sig"]
    assert apply_filter(perts, parse_filter({"where": {"pert_id": "BRD-B"}}))[0]["dose"] is None  # NaN -> null
    assert apply_filter(perts, parse_filter({"where": {"pert_id": "BRD-A"}}))[0]["moa"] == ["HDAC inhibitor"]


def test_unsupported_operator_names_it_and_the_supported(perts):
    with pytest.raises(LoopBackError, match=r"unsupported LoopBack operator 'near'.*eq, neq, gt, gte, lt, lte, between, inq, nin, like"):
        apply_where(perts, {"pert_id": {"near": [1, 2]}})
    assert set(OPERATORS) >= {"eq", "inq", "nin", "neq", "gt", "gte", "lt", "lte", "like", "regexp"}


def test_bad_filters(perts):
    with pytest.raises(LoopBackError, match="no field 'nope'.*pert_id"):
        apply_where(perts, {"nope": 1})
    with pytest.raises(LoopBackError, match="not valid JSON"):
        parse_filter("{where")
    with pytest.raises(LoopBackError, match="unsupported filter key.*include"):
        parse_filter({"include": "sigs"})
    with pytest.raises(LoopBackError, match="'or' needs a list"):
        apply_where(perts, {"or": {"pert_id": "x"}})
    assert apply_filter(perts, parse_filter({"where": {"pert_id": "BRD-A"}, "fields": ["pert_id", "pubchem_cid"]})) == [{"pert_id": "BRD-A"}]
    assert unknown_fields(perts, parse_filter({"fields": ["pert_id", "pubchem_cid"]})) == ["pubchem_cid"]
    with pytest.raises(LoopBackError, match="more than this server returns at once"):
        apply_filter(perts, parse_filter({}), max_rows=3)
    assert len(apply_filter(perts, parse_filter({"limit": 3}), max_rows=3)) == 3
