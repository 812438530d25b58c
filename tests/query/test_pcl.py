"""PCL files checked against the store before a query runs (issue 12 case 7; opencmap.query.pcl)."""

from __future__ import annotations

import warnings

import pytest

from opencmap.errors import ConfigError, PCLError, PCLWarning, QueryError
from opencmap.query.engine import Engine, run_query
from opencmap.query.genesets import as_queries
from opencmap.query.pcl import check_levels, load_pcls

PERTS = ["BRD-K00000001", "BRD-K00000002", "BRD-K00000003", "DMSO"]


def test_no_known_member_is_refused_naming_ids_and_the_store_format():
    with pytest.raises(PCLError) as info:
        load_pcls({"X": ["12345", "67890"], "Y": ["abc"]}, PERTS)
    msg = str(info.value)
    assert "none of its 3 member ids" in msg and "12345, 67890, abc" in msg and "BRD-K00000001" in msg
    assert "\n" not in msg


def test_members_that_are_names_get_a_hint():
    with pytest.raises(PCLError, match=r"perturbagen names \(pert_iname\), e\.g\. vorinostat: use pert_ids"):
        load_pcls({"HDAC": ["vorinostat"]}, PERTS, pert_names=["Vorinostat", "DMSO"])


def test_empty_pcls_and_stores_without_pert_ids_are_refused(tmp_path):
    (tmp_path / "empty.gmt").write_text("")
    with pytest.raises(PCLError, match=r"empty\.gmt defines no perturbagen class"):
        load_pcls(tmp_path / "empty.gmt", PERTS)
    with pytest.raises(PCLError, match="no perturbagen ids"):
        load_pcls({"X": ["BRD-K00000001"]}, [])


def test_partly_known_members_and_small_classes_are_notes_and_warnings():
    with pytest.warns(PCLWarning) as seen:
        classes, notes = load_pcls({"A": ["BRD-K00000001", "BRD-K00000002", "BRD-Kxx"], "B": ["BRD-K00000003"]}, PERTS)
    assert classes == {"A": ("BRD-K00000001", "BRD-K00000002", "BRD-Kxx"), "B": ("BRD-K00000003",)}
    assert notes[0].startswith("PCLs: 3 of the 4 member ids") and "BRD-Kxx" in notes[0]
    assert "1 of the 2 classes" in notes[1] and "(e.g. B)" in notes[1]
    assert [str(w.message) for w in seen] == notes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_pcls({"A": PERTS[:2]}, PERTS) == ({"A": tuple(PERTS[:2])}, [])


def test_check_levels():
    check_levels(["sig", "pert_summary"], None)
    check_levels("pcl_summary", {"A": ("x",)})
    with pytest.raises(QueryError, match="level pcl_cell needs perturbagen classes"):
        check_levels(["sig", "pcl_cell"], None)
    with pytest.raises(ConfigError, match="unknown result level 'pcl'"):
        check_levels(["pcl"], {"A": ("x",)})
    check_levels(["sig"], None, summaries=False)
    with pytest.raises(QueryError, match="level pert_summary needs a connectivity metric"):
        check_levels(["pert_summary"], None, summaries=False)


def test_engine_refuses_unknown_pcls_and_reports_partial_ones(built_store, level5, pcl):
    _, _, prog = level5
    with pytest.raises(PCLError, match="none of its"):
        Engine(built_store, pcl={"X": ["BRD-K12345678"]})
    with pytest.raises(PCLError, match="none of its"):
        run_query(built_store, prog["A_up"][:20], prog["A_dn"][:20], pcl={"X": ["BRD-K12345678"]})
    partial = {**pcl, "PCL_A": [*pcl["PCL_A"], "BRD-K12345678"]}
    with pytest.warns(PCLWarning, match="7 of the 8 member ids"):
        engine = Engine(built_store, pcl=partial)
    res = engine.run(as_queries(prog["A_up"][:20], prog["A_dn"][:20]))
    assert engine.pcl_notes and all(n in res.notes for n in engine.pcl_notes)
    assert all(n in res.report() for n in engine.pcl_notes)
    assert list(res.level("pcl_summary").ids) == ["PCL_A", "PCL_B"]


def test_pcl_level_without_pcls_is_refused_before_scoring(built_store, level5, monkeypatch):
    _, _, prog = level5
    scored = []
    monkeypatch.setattr(Engine, "_score", lambda *a, **k: scored.append(1))
    with pytest.raises(QueryError, match="level pcl_summary needs perturbagen classes"):
        run_query(built_store, prog["A_up"][:20], prog["A_dn"][:20], require_levels=["pcl_summary"])
    assert scored == []
    monkeypatch.undo()
    res = run_query(built_store, prog["A_up"][:20], prog["A_dn"][:20])
    with pytest.raises(Exception, match="PCL levels need perturbagen classes"):
        res.level("pcl_summary")
