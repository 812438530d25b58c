"""Query validation against a feature space (spec §6.1) and query sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import GeneSetError
from opencmap.query.genesets import (
    Query,
    as_queries,
    queries_from_files,
    queries_from_gmt,
    restrict_query,
    signature_queries,
    validate_query,
)
from opencmap.query.store import FeatureSpace

GENES = pd.DataFrame(
    {
        "pr_gene_id": [str(i) for i in range(1, 41)],
        "pr_gene_symbol": [f"SYM{i}" for i in range(1, 41)],
    }
)
SPACE = FeatureSpace("test", pd.Index([str(i) for i in range(1, 31)], dtype=object))  # 31..40 outside


def test_ids_and_symbols_resolved_unknown_and_dropped_reported():
    q = Query("q", up=("1", "sym2", "SYM3", "1", "nosuch", "35"), down=("10", "11", "SYM12"))
    v = validate_query(q, SPACE, GENES, min_genes=2, max_genes=10)
    assert v.up_genes == ("1", "2", "3")
    assert v.down_genes == ("10", "11", "12")
    np.testing.assert_array_equal(v.up_rows, [0, 1, 2])
    assert v.unknown == ("nosuch",)
    assert v.dropped == ("35",)


def test_suggestions_from_the_tables_never_by_similarity():
    # issue 12 item 4: a typo is not "corrected" into another gene by string similarity (SYMM3 is
    # not SYM3); a punctuation / case variant of exactly one gene's symbol is suggested
    q = Query("q", up=("SYM1", "SYM2", "SYMM3", "sym-4"), down=("SYM5", "SYM6"))
    v = validate_query(q, SPACE, GENES, min_genes=1)
    assert "SYMM3" in v.unknown and "SYMM3" not in v.suggestions
    assert "sym-4" in v.unknown and v.suggestions["sym-4"] == ("SYM4",)


@pytest.mark.parametrize(
    "up, down, match",
    [
        (("31", "32"), ("1", "2"), "no up gene is in feature space"),
        (("1",), ("2", "3"), r"1 up genes .* need 2\.\.3"),
        (("1", "2", "3", "4"), ("5", "6"), r"4 up genes .* need 2\.\.3"),
        (("1", "2"), ("2", "1"), "identical"),
        (("1", "2", "3"), ("3", "4"), "in both the up and down"),
        ((), (), "neither up nor down"),
    ],
)
def test_invalid_queries(up, down, match):
    with pytest.raises(GeneSetError, match=match):
        validate_query(Query("q", up=up, down=down), SPACE, GENES, min_genes=2, max_genes=3)


@pytest.mark.parametrize(
    "up, down",
    [(("31", "32"), ("1", "2")), (("1",), ("2", "3")), (("1", "2"), ("2", "1")), (("1", "SYMM3", "33"), ())],
)
def test_restrict_query_reports_without_checking(up, down):
    v = restrict_query(Query("q", up=up, down=down), SPACE, GENES)
    assert v.up_genes == tuple(g for g in up if g in SPACE.gene_ids)
    assert v.down_genes == tuple(g for g in down if g in SPACE.gene_ids)
    assert v.dropped == tuple(g for g in (*up, *down) if g in ("31", "32", "33"))
    assert v.unknown == (("SYMM3",) if "SYMM3" in up else ())
    assert "SYMM3" not in v.suggestions  # no similarity-based suggestions (issue 12)
    with pytest.raises(GeneSetError):
        validate_query(Query("q", up=up, down=down), SPACE, GENES, min_genes=2, max_genes=3)


def test_one_sided_query_allowed():
    v = validate_query(Query("q", up=("1", "2", "3")), SPACE, GENES, min_genes=2)
    assert v.down_rows.size == 0 and len(v.up_genes) == 3


def test_vector_query_aligned_to_space():
    vec = pd.Series([1.0, -2.0, 3.0, 0.5], index=["3", "1", "40", "2"])
    v = validate_query(Query("v", vector=vec), SPACE, GENES)
    assert v.is_vector
    np.testing.assert_array_equal(v.vector[:3], [-2.0, 0.5, 1.0])
    assert np.isnan(v.vector[3:]).all()
    assert v.unknown == ("40",)
    with pytest.raises(GeneSetError, match="at least 3"):
        validate_query(Query("v", vector=vec.iloc[:2]), SPACE, GENES)


def test_gmt_pairing_by_direction_suffix(tmp_path):
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt, write_grp

    write_gmt([GeneSet("A_UP", "", ("1", "2")), GeneSet("B_UP", "", ("3", "4"))], tmp_path / "up.gmt")
    write_gmt([GeneSet("B_DN", "", ("7",)), GeneSet("A_DN", "", ("5", "6"))], tmp_path / "dn.gmt")
    qs = queries_from_gmt(tmp_path / "up.gmt", tmp_path / "dn.gmt")
    assert [(q.name, q.up, q.down) for q in qs] == [("A", ("1", "2"), ("5", "6")), ("B", ("3", "4"), ("7",))]
    write_gmt([GeneSet("C_DN", "", ("7",))], tmp_path / "other.gmt")
    with pytest.raises(GeneSetError, match="same queries"):
        queries_from_gmt(tmp_path / "up.gmt", tmp_path / "other.gmt")
    write_grp(["1", "2"], tmp_path / "up.grp")
    (q,) = queries_from_files(tmp_path / "up.grp", None, name="x")
    assert q == Query("x", up=("1", "2"))


def test_gmt_files_hold_one_direction_each(tmp_path):
    """A set named for the other side, two sets of one query in one file, an empty file or set: refused."""
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    write_gmt([GeneSet("A_UP", "", ("1",))], tmp_path / "up.gmt")
    write_gmt([GeneSet("A_DN", "", ("2",))], tmp_path / "dn.gmt")
    with pytest.raises(GeneSetError, match=r"up file 'dn.gmt': set 'A_DN' is named as a down set.*swapped"):
        queries_from_gmt(tmp_path / "dn.gmt", tmp_path / "up.gmt")
    write_gmt([GeneSet("A_UP", "", ("1",)), GeneSet("A_DN", "", ("2",))], tmp_path / "both.gmt")
    with pytest.raises(GeneSetError, match="'A_UP' and 'A_DN' both name query 'A'"):
        queries_from_gmt(tmp_path / "both.gmt")
    (tmp_path / "empty.gmt").write_text("\n")
    with pytest.raises(GeneSetError, match="down file 'empty.gmt' has no gene sets"):
        queries_from_gmt(None, tmp_path / "empty.gmt")
    (tmp_path / "noset.gmt").write_text("A_UP\tdesc\n")
    with pytest.raises(GeneSetError, match="set 'A_UP' has no genes"):
        queries_from_gmt(tmp_path / "noset.gmt")
    # identical names without suffixes pair; a down file alone gives down-only queries
    write_gmt([GeneSet("X", "", ("1",))], tmp_path / "u.gmt")
    write_gmt([GeneSet("X", "", ("2",))], tmp_path / "d.gmt")
    assert queries_from_gmt(tmp_path / "u.gmt", tmp_path / "d.gmt") == [Query("X", up=("1",), down=("2",))]
    assert queries_from_gmt(None, tmp_path / "dn.gmt") == [Query("A", down=("2",))]


def test_as_queries_lists_and_dicts():
    assert as_queries(["1"], ["2"]) == [Query("query", ("1",), ("2",))]
    qs = as_queries({"a": ["1"], "b": ["3"]}, {"a": ["2"], "b": ["4"]})
    assert [q.name for q in qs] == ["a", "b"] and qs[1].down == ("4",)


def test_signature_queries_take_extreme_genes(built_store, level5):
    gct, _, _ = level5
    (q,) = signature_queries(built_store, [gct.cids[3]], n_genes=5, space="lm")
    lm = gct.data[:100, 3]
    order = np.argsort(-lm, kind="stable")
    assert q.up == tuple(gct.rids[order[:5]])
    assert q.down == tuple(gct.rids[order[::-1][:5]])


def test_gmt_pairing_errors_name_the_sets_and_both_files(tmp_path):
    """Issue 12 bad input: up and down GMTs whose names cannot be paired (one line, nothing run)."""
    from opencmap.core.genesets import GeneSet
    from opencmap.io import write_gmt

    write_gmt([GeneSet("A_UP", "", ("1",)), GeneSet("B_UP", "", ("2",))], tmp_path / "up.gmt")
    write_gmt([GeneSet("A_DN", "", ("3",)), GeneSet("C_DN", "", ("4",))], tmp_path / "dn.gmt")
    with pytest.raises(GeneSetError) as info:
        queries_from_gmt(tmp_path / "up.gmt", tmp_path / "dn.gmt")
    msg = str(info.value)
    assert "\n" not in msg
    assert "1 set(s) of up file 'up.gmt' have no down partner: B_UP" in msg
    assert "1 set(s) of down file 'dn.gmt' have no up partner: C_DN" in msg
    # swapped files: every query would run with its sign flipped
    with pytest.raises(GeneSetError, match=r"up file 'dn.gmt': set 'A_DN' is named as a down set.*swapped"):
        queries_from_gmt(tmp_path / "dn.gmt", tmp_path / "up.gmt")
    with pytest.raises(GeneSetError, match="swapped"):
        queries_from_gmt(None, tmp_path / "up.gmt")
    # two sets of one file naming the same query: one would be dropped silently
    write_gmt([GeneSet("A_UP", "", ("1",)), GeneSet("A", "", ("2",))], tmp_path / "dup.gmt")
    with pytest.raises(GeneSetError, match=r"up file 'dup.gmt': sets 'A_UP' and 'A' both name query 'A'"):
        queries_from_gmt(tmp_path / "dup.gmt")
    with pytest.raises(GeneSetError, match="only in up: b; only in down: c"):
        as_queries({"a": ["1"], "b": ["2"]}, {"a": ["3"], "c": ["4"]})
