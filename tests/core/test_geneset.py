"""The GeneSet record (opencmap.core.genesets)."""

from __future__ import annotations

import pytest

from opencmap.core.genesets import GeneSet
from opencmap.errors import GeneSetError


def test_genes_are_a_tuple_of_strings():
    s = GeneSet("UP", "desc", [780, "5720", " 7849 "])
    assert s.genes == ("780", "5720", "7849") and len(s) == 3
    assert 780 in s and "780" in s and list(s) == ["780", "5720", "7849"]
    assert GeneSet("x").genes == () and GeneSet("x").description == ""


def test_frozen_and_hashable():
    s = GeneSet("UP", "", ("a",))
    with pytest.raises(AttributeError):
        s.name = "other"  # type: ignore[misc]
    assert hash(s) == hash(GeneSet("UP", "", ["a"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "", ("a",)), "non-empty name"),
        (("a\tb", "", ("a",)), "tab or newline"),
        (("a", "line\nbreak", ("a",)), "tab or newline"),
        (("a", "", ("x", "x")), "duplicated gene ids"),
        (("a", "", ("x", "")), "empty gene id"),
        (("a", "", "abc"), "not one string"),
    ],
)
def test_invalid_sets(args, message):
    with pytest.raises(GeneSetError, match=message):
        GeneSet(*args)


def test_from_members_drops_repeats_and_blanks():
    s = GeneSet.from_members("S", ["b", "a", "b", " ", 7], description="d")
    assert s.genes == ("b", "a", "7") and s.description == "d"
