"""LXB (FCS 3.0) reader: CMap's own dump of a real well, synthetic FCS files, broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencmap.errors import FormatError
from opencmap.io.lxb import read_lxb, read_lxb_beads

NAMES = ("RID", "DDG", "DBL", "DD", "RP1", "RP1ATT", "CL1", "CL2", "CL3", "Aux1", "TIME")


def write_fcs(
    path: Path, data: np.ndarray, names: tuple[str, ...], *, big_endian: bool = False, bits: int = 32, pnr: str = "1024"
) -> None:
    """A minimal FCS 3.0 list-mode file of unsigned integers (independent writer for the tests)."""
    order = ">" if big_endian else "<"
    payload = np.ascontiguousarray(data, dtype=f"{order}u{bits // 8}").tobytes()
    keys = {
        "$BYTEORD": "4,3,2,1" if big_endian else "1,2,3,4",
        "$DATATYPE": "I",
        "$MODE": "L",
        "$PAR": str(len(names)),
        "$TOT": str(data.shape[0]),
        "$NEXTDATA": "0",
    }
    for i, n in enumerate(names, start=1):
        keys[f"$P{i}B"] = str(bits)
        keys[f"$P{i}N"] = n
        if pnr:
            keys[f"$P{i}R"] = pnr
        keys[f"$P{i}E"] = "0,0"
    keys["$SMNO"] = "A/B"  # a value containing the delimiter, escaped by doubling
    text = "/" + "".join(f"{k}/{v.replace('/', '//')}/" for k, v in keys.items())
    text_start = 58
    text_end = text_start + len(text) - 1
    data_start = text_end + 1
    data_end = data_start + len(payload) - 1 if payload else 0
    header = "FCS3.0    " + "".join(f"{v:>8d}" for v in (text_start, text_end, data_start, data_end, 0, 0))
    path.write_bytes(header.encode() + text.encode("latin-1") + payload)


def test_a10_parses_exactly_to_cmap_dump(shared_data: Path) -> None:
    lxb = read_lxb(shared_data / "pipeline/level1/A10.lxb", mask=False)  # raw words, as CMap's dump
    ref = pd.read_csv(shared_data / "pipeline/level1/A10.txt", sep="\t")
    assert lxb.names == NAMES
    assert tuple(ref.columns) == NAMES
    assert lxb.data.dtype == np.uint32
    assert lxb.n_beads == 34488 == len(ref)
    np.testing.assert_array_equal(lxb.data.astype(np.int64), ref.to_numpy(dtype=np.int64))
    assert lxb.keywords["$SMNO"] == "A10"
    pd.testing.assert_frame_equal(lxb.to_frame().astype(np.int64), ref.astype(np.int64))


def test_a10_bead_totals_and_medians_match_pkstats(shared_data: Path) -> None:
    beads = read_lxb_beads(shared_data / "pipeline/level1/A10.lxb")
    pk = pd.read_csv(shared_data / "pipeline/level1/A10_pkstats.txt", sep="\t")
    totals = np.bincount(beads.analyte, minlength=501)[1:]
    np.testing.assert_array_equal(totals, pk["totbead"].to_numpy(dtype=np.int64))
    # analytes summarised by the median (1..11, 499): good beads and value are deterministic
    x = np.log2(np.maximum(beads.intensity, 1))
    for row in pk[pk["method"] == "median"].itertuples():
        good = np.sort(x[(beads.analyte == row.analyte_id) & (x >= 4) & (x <= 14)])
        assert good.size == row.ngoodbead
        assert np.floor(2 ** np.median(good) + 0.5) == float(row.pkexp)


def test_column_lookup_and_beads(shared_data: Path) -> None:
    lxb = read_lxb(shared_data / "pipeline/level1/A10.lxb")
    np.testing.assert_array_equal(lxb.column("rp1"), lxb.data[:, 4])
    with pytest.raises(FormatError, match="no parameter 'XYZ'"):
        lxb.column("XYZ")
    b = lxb.beads()
    assert b.analyte.dtype == np.int32 and b.intensity.dtype == np.float64
    assert b.source is not None and b.source.endswith("A10.lxb")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 50),
    big=st.booleans(),
    bits=st.sampled_from([16, 32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_roundtrip_synthetic_fcs(tmp_path_factory: pytest.TempPathFactory, n: int, big: bool, bits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 2**bits, size=(n, 3), dtype=np.uint64)
    path = tmp_path_factory.mktemp("fcs") / "W_A01.lxb"
    write_fcs(path, data, ("RID", "RP1", "TIME"), big_endian=big, bits=bits)
    lxb = read_lxb(path, mask=False)
    assert lxb.names == ("RID", "RP1", "TIME")
    assert lxb.keywords["$SMNO"] == "A/B"
    np.testing.assert_array_equal(lxb.data.astype(np.uint64), data)
    masked = read_lxb(path)  # $PnR 1024 -> values masked to their low 10 bits (FCS 3.0)
    np.testing.assert_array_equal(masked.data.astype(np.uint64), data & np.uint64(1023))
    assert masked.masked == {n: int((data[:, j] > 1023).sum()) for j, n in enumerate(lxb.names) if (data[:, j] > 1023).any()}


def test_truncated_file_is_a_clear_error(tmp_path: Path, shared_data: Path) -> None:
    blob = (shared_data / "pipeline/level1/A10.lxb").read_bytes()
    bad = tmp_path / "P_A10.lxb"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FormatError, match="truncated") as info:
        read_lxb(bad)
    assert info.value.path == str(bad)


def test_data_shorter_than_tot_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.lxb"
    write_fcs(path, np.ones((10, 2), dtype=np.uint32), ("RID", "RP1"))
    blob = bytearray(path.read_bytes())
    text = blob.decode("latin-1")
    blob = bytearray(text.replace("$TOT/10/", "$TOT/99/").encode("latin-1"))
    path.write_bytes(bytes(blob))
    with pytest.raises(FormatError, match=r"\$TOT=99"):
        read_lxb(path)


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"", "too short"),
        (b"PK\x03\x04" + b" " * 60, "not an FCS/LXB file"),
        (b"FCS3.0    " + b"     abc" * 6 + b" " * 10, "offsets are not numbers"),
        (b"FCS3.0    " + b"      58" + b"  999999" + b"       0" * 4 + b"/", "outside the file"),
    ],
)
def test_not_an_lxb(tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "bad.lxb"
    path.write_bytes(blob)
    with pytest.raises(FormatError, match=message):
        read_lxb(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="cannot read"):
        read_lxb(tmp_path / "none.lxb")


def test_unsupported_layouts(tmp_path: Path) -> None:
    path = tmp_path / "x.lxb"
    write_fcs(path, np.ones((3, 2), dtype=np.uint32), ("RID", "RP1"))
    text = path.read_bytes().decode("latin-1")
    for old, new, message in [
        ("$BYTEORD/1,2,3,4/", "$BYTEORD/3,4,1,2/", "BYTEORD"),
        ("$MODE/L/", "$MODE/H/", "list-mode"),
        ("$DATATYPE/I/", "$DATATYPE/A/", "DATATYPE"),
        ("$P1B/32/", "$P1B/12/", "bits"),
    ]:
        path.write_bytes(text.replace(old, new).encode("latin-1"))
        with pytest.raises(FormatError, match=message):
            read_lxb(path)


def test_a10_masked_to_pnr_matches_the_dump_except_flag_bits(shared_data: Path) -> None:
    """Issue 12 case 8: integer parameters are masked to $PnR (FCS 3.0). In A10 only DDG
    ($P2R = 2) carries words above its range (Luminex flag bits); every other parameter is the
    dump, exactly, and DDG is the dump's low bit."""
    lxb = read_lxb(shared_data / "pipeline/level1/A10.lxb")
    ref = pd.read_csv(shared_data / "pipeline/level1/A10.txt", sep="\t")
    assert lxb.keywords["$P2R"] == "2"
    assert lxb.masked == {"DDG": int((ref["DDG"] > 1).sum())} and lxb.masked["DDG"] > 0
    for j, name in enumerate(NAMES):
        expected = ref[name].to_numpy(dtype=np.int64)
        if name == "DDG":
            expected = expected & 1
        np.testing.assert_array_equal(lxb.data[:, j].astype(np.int64), expected, err_msg=name)
    assert lxb.data.dtype == np.uint32
    np.testing.assert_array_equal(lxb.beads().intensity, ref["RP1"].to_numpy(dtype=np.float64))


@pytest.mark.parametrize(
    "pnr, mask", [("1000", 1023), ("1024", 1023), ("1025", 2047), ("2", 1), ("1", 0), ("4294967296", None), ("", None)]
)
def test_pnr_mask_is_the_next_power_of_two(tmp_path: Path, pnr: str, mask: int | None) -> None:
    data = np.array([[0, 5], [1023, 2**32 - 1], [4096 + 7, 1024]], dtype=np.uint64)
    path = tmp_path / "r.lxb"
    write_fcs(path, data, ("RID", "RP1"), pnr=pnr)
    lxb = read_lxb(path)
    expected = data if mask is None else data & np.uint64(mask)
    np.testing.assert_array_equal(lxb.data.astype(np.uint64), expected)
    assert sum(lxb.masked.values()) == int((data != expected).sum())


def test_pnr_that_is_not_an_integer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.lxb"
    write_fcs(path, np.ones((3, 2), dtype=np.uint32), ("RID", "RP1"), pnr="lots")
    with pytest.raises(FormatError, match=r"\$P1R .* positive integer, got 'lots'"):
        read_lxb(path)
    assert read_lxb(path, mask=False).data.tolist() == [[1, 1]] * 3
