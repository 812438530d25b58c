"""Bead-level text, plate maps, chip / pool tables and detect parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import FormatError
from opencmap.io.beads import (
    parse_index_list,
    read_bead_text,
    read_chip,
    read_detect_params,
    read_plate_map,
    read_pool_info,
)


def test_bead_text_real_well(shared_data: Path) -> None:
    path = shared_data / "pipeline/dpeak_dpk/DPK.CP001_A549_24H_X1_B42_A03.txt"
    beads = read_bead_text(path)
    raw = pd.read_csv(path, sep="\t")
    assert beads.analyte.dtype == np.int32 and beads.intensity.dtype == np.float64
    np.testing.assert_array_equal(beads.analyte, raw["barcode_id"].to_numpy())
    np.testing.assert_array_equal(beads.intensity, raw["FI"].to_numpy(dtype=float))
    assert beads.analyte[:3].tolist() == [64, 387, 459]
    assert set(np.unique(beads.analyte)) == set(range(11, 501))


def test_bead_text_errors(tmp_path: Path) -> None:
    bad = tmp_path / "b.txt"
    bad.write_text("barcode_id\tFI\n12\t100\n13\tabc\n")
    with pytest.raises(FormatError, match="non-numeric") as info:
        read_bead_text(bad)
    assert info.value.line == 3
    bad.write_text("id\tvalue\n1\t2\n")
    with pytest.raises(FormatError, match="barcode_id and FI"):
        read_bead_text(bad)
    bad.write_text("barcode_id\tFI\n1.5\t2\n")
    with pytest.raises(FormatError, match="integer"):
        read_bead_text(bad)
    ok = tmp_path / "ok.txt"
    ok.write_text("RID\tRP1\n7\t250\n")
    assert read_bead_text(ok).analyte.tolist() == [7]
    with pytest.raises(FormatError, match="not found"):
        read_bead_text(tmp_path / "missing.txt")


def test_plate_map(shared_data: Path, tmp_path: Path) -> None:
    pmap = read_plate_map(shared_data / "pipeline/test_plate/expected/TEST_A375_24H_X1_B20.map")
    assert len(pmap) == 26
    assert pmap.index[:3].tolist() == ["A03", "A04", "A05"]
    assert pmap.loc["B13", "det_plate"] == "TEST_A375_24H_X1_B20"
    assert pmap.loc["A03", "pert_iname"] == "vorinostat"
    dup = tmp_path / "dup.map"
    dup.write_text("det_well\tpert_id\nA03\tx\na3\ty\n")
    with pytest.raises(FormatError, match="more than once"):
        read_plate_map(dup)
    bad = tmp_path / "bad.map"
    bad.write_text("det_well\tpert_id\nA03\tx\nwell7\ty\n")
    with pytest.raises(FormatError, match="not a well name") as info:
        read_plate_map(bad)
    assert info.value.line == 3
    nowell = tmp_path / "nowell.map"
    nowell.write_text("pert_id\nx\n")
    with pytest.raises(FormatError, match="det_well"):
        read_plate_map(nowell)


def test_chip(shared_data: Path, tmp_path: Path) -> None:
    chip = read_chip(shared_data / "genes/L1000_EPSILON.R2.chip")
    assert len(chip) == 1000
    assert chip["pr_analyte_num"].dtype == np.int64
    assert sorted(chip["pr_analyte_num"].unique()) == list(range(1, 501))
    lm = chip[chip["pr_type"] == "LM"]
    assert len(lm) == 978 and lm["pr_gene_id"].is_unique
    inv = chip[chip["pr_type"] == "INV"]
    assert sorted(inv["pr_id"].unique()) == [f"CAL{i:02d}" for i in range(1, 11)]
    # the 978 landmarks of the chip are the landmark list shipped with cmapM
    genes = pd.read_csv(shared_data / "genes/row_meta_n978.txt", sep="\t", dtype=str)
    assert set(lm["pr_gene_id"]) == set(genes["pr_gene_id"])
    text = (shared_data / "genes/L1000_EPSILON.R2.chip").read_text().splitlines()
    dup = tmp_path / "dup.chip"
    dup.write_text("\n".join(text[:12] + [text[11]]) + "\n")
    with pytest.raises(FormatError, match="appears twice"):
        read_chip(dup)
    short = tmp_path / "short.chip"
    short.write_text("pr_id\tpr_bset_id\nA\tdp52\n")
    with pytest.raises(FormatError, match="lacks column"):
        read_chip(short)


def test_pool_info(shared_data: Path) -> None:
    pools = read_pool_info(shared_data / "genes/L1000_poolinfo.txt")
    row = pools.loc["epsilon:r2"]
    assert row["bead_sets"] == ("dp52", "dp53")
    assert row["not_duo_analytes"] == [*range(1, 12), 499]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[1:10,11,499]", [*range(1, 12), 499]),
        ("0", [0]),
        ("[]", []),
        ("[1:2:7 20]", [1, 3, 5, 7, 20]),
        ("[5:-2:1]", [1, 3, 5]),
    ],
)
def test_parse_index_list(text: str, expected: list[int]) -> None:
    assert parse_index_list(text) == expected


@pytest.mark.parametrize("text", ["[1:a]", "[1:0:5]", "[1:2:3:4]"])
def test_parse_index_list_errors(text: str) -> None:
    with pytest.raises(FormatError, match="cannot parse index list"):
        parse_index_list(text)


def test_detect_params(shared_data: Path, tmp_path: Path) -> None:
    params = read_detect_params(shared_data / "genes/detect_params.txt")
    assert params["low_exp"] == 4 and params["high_exp"] == 15 and params["max_k"] == 4
    assert params["dpeak_method"] == "kmeans_viable"
    assert (params["opt_support_pct_hi"], params["opt_support_pct_lo"]) == (65, 35)
    bad = tmp_path / "p.txt"
    bad.write_text("# c\nlow_exp 4\n")
    with pytest.raises(FormatError, match="key: value") as info:
        read_detect_params(bad)
    assert info.value.line == 2
