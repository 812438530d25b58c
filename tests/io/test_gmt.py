"""GMT and GRP files (opencmap.io.gmt)."""

from __future__ import annotations

import pytest

from opencmap.core.genesets import GeneSet
from opencmap.errors import FormatError, OpenCMapWarning, ValidationError
from opencmap.io import read_gmt, read_grp, write_gmt, write_grp


def test_read_real_gmt(shared_data):
    sets = read_gmt(shared_data / "query/science_cmap_gene_id_up.gmt")
    assert sets and all(isinstance(s, GeneSet) for s in sets)
    assert all(all(isinstance(g, str) and g for g in s.genes) for s in sets)
    first = (shared_data / "query/science_cmap_gene_id_up.gmt").read_text().splitlines()[0].split("\t")
    assert sets[0].name == first[0] and sets[0].description == first[1]
    assert list(sets[0].genes) == [g for g in first[2:] if g.strip()]


@pytest.mark.parametrize(
    "name",
    ["pcl_n5.gmt", "cmapr_query_up.gmt", "science_cmap_up.gmt", "science_cmap_dn.gmt", "test_gene_sets_n4.gmt",
     "custom_gutc/queries/contest_query_ezid_up_n10.gmt", "custom_gutc/queries/contest_query_ezid_down_n10.gmt"],
)
def test_all_real_gmts_read_and_round_trip(shared_data, tmp_path, name):
    sets = read_gmt(shared_data / "query" / name)
    assert len(sets) >= 1
    write_gmt(sets, tmp_path / "x.gmt")
    assert read_gmt(tmp_path / "x.gmt") == sets


def test_gmt_details(tmp_path):
    path = tmp_path / "a.gmt"
    path.write_text("UP\tdesc one\t780\t5720\t\t\nempty\t\n\nDN\t\t007\t780\n")
    sets = read_gmt(path)
    assert [s.name for s in sets] == ["UP", "empty", "DN"]
    assert sets[0].genes == ("780", "5720")  # trailing empty fields ignored, ids stay strings
    assert sets[1].genes == () and sets[2].description == "" and sets[2].genes == ("007", "780")


def test_gmt_repeated_gene_warns_and_is_kept_once(tmp_path):
    path = tmp_path / "r.gmt"
    path.write_text("S\td\ta\tb\ta\n")
    with pytest.warns(OpenCMapWarning, match="more than once"):
        (s,) = read_gmt(path)
    assert s.genes == ("a", "b")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("A\td\tx\nnodescription\n", 2, "at least a name and a description"),
        ("A\td\tx\nA\td\ty\n", 2, "already used on line 1"),
        ("\td\tx\n", 1, "empty gene set name"),
    ],
)
def test_bad_gmt(tmp_path, text, line, message):
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(FormatError, match=message) as info:
        read_gmt(path)
    assert info.value.line == line and info.value.path == str(path)


def test_write_gmt_rejects_duplicate_names(tmp_path):
    with pytest.raises(ValidationError, match="unique"):
        write_gmt([GeneSet("a", "", ("1",)), GeneSet("a", "", ("2",))], tmp_path / "x.gmt")
    assert list(tmp_path.iterdir()) == []


def test_grp(shared_data, tmp_path):
    ids = read_grp(shared_data / "genes/landmark_gene_ids_n978.grp")
    assert len(ids) == 978 and all(i.isdigit() for i in ids)
    assert read_grp(shared_data / "formats/cmappy/test_subset_rid.grp") == ["a", "Bb", "c"]  # comment skipped
    write_grp(ids, tmp_path / "x.grp")
    assert read_grp(tmp_path / "x.grp") == ids
    (tmp_path / "c.grp").write_text("# header\n  780 \n\n#skip\n007\r\n")
    assert read_grp(tmp_path / "c.grp") == ["780", "007"]
    with pytest.raises(ValidationError):
        write_grp(["ok", "#bad"], tmp_path / "y.grp")
    with pytest.raises(FormatError, match="not found"):
        read_grp(tmp_path / "missing.grp")
    (tmp_path / "h.grp").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(FormatError, match="HDF5"):
        read_grp(tmp_path / "h.grp")
