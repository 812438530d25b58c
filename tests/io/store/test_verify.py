"""``store info --verify`` / ``Store.verify``: every tile of every data file against its hash (all
segments, spaces, ranks / scores / signature-major scores, tau background values) and every file
against its whole-file checksum; a flipped byte is named by file, row and tile, CLI exit status 2."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opencmap.backends import LocalBackend, Settings
from opencmap.cli import main
from opencmap.core.gct import GCT
from opencmap.errors import StoreCorruptError
from opencmap.io.store.verify import verify_store
from opencmap.query.background import build_background
from opencmap.query.store import Store, append_store, build_store

N_GENES, N_FIRST, N_SECOND, N_QUERIES = 40, 1100, 300, 560


def _matrix(n: int, seed: int, prefix: str) -> GCT:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"pr_gene_symbol": [f"G{i}" for i in range(N_GENES)], "pr_is_lm": [int(i < 20) for i in range(N_GENES)],
                         "pr_is_bing": 1}, index=pd.Index([str(1000 + i) for i in range(N_GENES)], dtype=object))  # fmt: skip
    cols = pd.DataFrame({"pert_id": [f"BRD-{i % 37:03d}" for i in range(n)], "pert_type": "trt_cp",
                         "cell_id": ["A375", "PC3", "MCF7"] * (n // 3) + ["A375"] * (n % 3)},
                        index=pd.Index([f"{prefix}{i}" for i in range(n)], dtype=object))  # fmt: skip
    return GCT(rng.normal(size=(N_GENES, n)).astype(np.float32), row_meta=rows, col_meta=cols)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """Two segments (1,100 + 300 signatures: gene rows of 3 and 1 tiles), spaces lm/bing/full,
    signature-major scores, a tau background of 560 queries (rows of 2 tiles)."""
    path = tmp_path_factory.mktemp("verify") / "store"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_store(path, _matrix(N_FIRST, 1, "a"))
        append_store(path, _matrix(N_SECOND, 2, "b"))
        build_background(path, query_sigs=[f"a{i}" for i in range(N_QUERIES)], same_cell=False, n_genes=5, tail="both")
    return path


@pytest.fixture()
def store_path(built, tmp_path) -> Path:
    path = tmp_path / "store"
    shutil.copytree(built, path)
    return path


def _flip_cell(path: Path, row: int, col: int) -> None:
    """Flip one byte of the value at ``(row, col)`` of a 2-D ``.npy`` file; nothing else is recomputed."""
    arr = np.load(path, mmap_mode="r")
    at = int(arr.offset) + (row * arr.shape[1] + col) * arr.dtype.itemsize
    del arr
    with open(path, "r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0x10]))


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_clean_store_passes_and_counts_every_tile(built, capsys, caplog):
    store = Store(built)
    width = store.manifest["backgrounds"]["sig"]["width"]
    assert width > 512, "the background rows must span two tiles"
    seen: list[tuple[int, int]] = []
    with caplog.at_level(logging.INFO, logger="opencmap.io.store.verify"):
        report = store.verify(progress=lambda done, total: seen.append((done, total)), backend=LocalBackend(Settings(threads=2)))
    assert report.ok and report.per_tile == "tile hashes"
    totals = {t.kind: t for t in report.totals}
    assert sorted(store.spaces) == ["bing", "lm"]
    n_feat = sum(sp.n_features for sp in store.spaces.values())  # 20 + 40 gene rows per segment
    assert (totals["ranks"].files, totals["scores"].files, totals["scores_by_sig"].files) == (4, 4, 4)
    assert totals["ranks"].tiles == totals["scores"].tiles == n_feat * (3 + 1)  # 1,100 and 300 signatures per row
    assert totals["scores_by_sig"].tiles == 2 * (N_FIRST + N_SECOND)  # one tile of genes per signature and space
    bg = sum(e["n_rows"] * 2 for e in store.manifest["backgrounds"].values())
    assert totals["background values"].tiles == bg and totals["background values"].files == len(store.manifest["backgrounds"])
    assert totals["tile hashes"].files == 12 + len(store.manifest["backgrounds"])
    assert totals["ranks"].bytes == sum((built / "segments" / s / sp / "ranks.npy").stat().st_size
                                        for s in ("seg-00000", "seg-00001") for sp in ("lm", "bing"))  # fmt: skip
    assert seen[-1][0] == seen[-1][1] == sum(t.bytes for t in report.totals)
    assert any("verified" in r.getMessage() and "ranks: 4 files" in r.getMessage() for r in caplog.records)
    code, out, err = _cli(["store", "info", built, "--verify"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["verified"] and info["verify"]["kinds"]["scores"]["tiles"] == n_feat * 4 and info["verify"]["problems"] == []
    assert f"verified ranks: 4 files, {n_feat * 4:,} tiles checked" in err
    assert f"verified background values: {len(store.manifest['backgrounds'])} files, {bg:,} tiles checked" in err


@pytest.mark.parametrize(
    ("rel", "row", "col", "expect"),
    [
        ("segments/seg-00000/bing/ranks.npy", 7, 700, "gene row 7, signatures 512..1023 of this segment"),
        ("segments/seg-00000/bing/scores.npy", 39, 1099, "gene row 39, signatures 1024..1099 of this segment"),
        ("segments/seg-00001/lm/scores_by_sig.npy", 250, 3, "signature 250, genes 0..19 of this segment (store positions from 1100)"),
        ("background", 5, 530, "row 5, values 512..{last}"),
    ],
)
def test_a_flipped_byte_is_named_by_file_row_and_tile(store_path, capsys, rel, row, col, expect):
    store = Store(store_path)
    if rel == "background":
        entry = store.manifest["backgrounds"]["sig"]
        rel, expect = f"{entry['dir']}/values.npy", expect.format(last=entry["width"] - 1)
    target = store_path / rel
    _flip_cell(target, row, col)
    with pytest.raises(StoreCorruptError, match="failed verification: 1 file damaged") as err:
        Store(store_path).verify()
    (problem,) = err.value.report.problems
    assert problem.path == str(target) and problem.row == row and problem.columns[0] == col // 512 * 512
    assert expect in problem.what and "checksum mismatch" in problem.what and err.value.path == str(target)
    assert "rebuild the store" in str(err.value) and "restore" in str(err.value)
    report = verify_store(Store(store_path))  # the report, not raised
    assert not report.ok and report.problems == err.value.report.problems
    code, out, err_text = _cli(["store", "info", store_path, "--verify"], capsys)
    assert code == 2 and out == ""
    assert "\nerror: store " in "\n" + err_text and f"{target}: {expect}" in err_text and "rebuild the store" in err_text


def test_a_flipped_byte_in_a_tile_hash_file_is_named(store_path, capsys):
    side = store_path / "segments" / "seg-00001" / "bing" / "scores.tiles.npy"
    _flip_cell(side, 12, 0)
    with pytest.raises(StoreCorruptError) as err:
        Store(store_path).verify()
    (problem,) = err.value.report.problems
    assert problem.path == str(side) and problem.row == 12 and problem.columns == (0, N_SECOND - 1)
    assert "checksum mismatch" in problem.what and "the data are intact" in problem.what
    assert "hashes damaged at gene row 12, signatures 0..299 of this segment (store positions from 1100) of scores.npy" in problem.what
    code, _, err_text = _cli(["store", "info", store_path, "--verify"], capsys)
    assert code == 2 and f"{side}: " in err_text


def test_every_damaged_file_is_listed(store_path):
    first, second = (store_path / "segments" / s / "lm" / "ranks.npy" for s in ("seg-00000", "seg-00001"))
    _flip_cell(first, 0, 0)
    _flip_cell(second, 19, 299)
    table = store_path / "segments" / "seg-00000" / "sig_info.parquet"
    table.write_bytes(b"x" * table.stat().st_size)
    with pytest.raises(StoreCorruptError, match="3 files damaged") as err:
        Store(store_path).verify(backend=LocalBackend(Settings(threads=1)))
    got = {p.path: (p.row, p.columns) for p in err.value.report.problems}
    assert got[str(first)] == (0, (0, 511)) and got[str(second)] == (19, (0, 299))
    assert got[str(store_path / "segments" / "seg-00000" / "sig_info.parquet")] == (None, None)


def test_format_2_store_checks_its_chunks(tmp_path):
    src = Path(__file__).resolve().parents[2] / "data" / "archive" / "v0.1.0" / "store"
    path = tmp_path / "v2"
    shutil.copytree(src, path)
    store = Store(path)
    report = store.verify()
    assert store.format_version == 2 and report.ok and report.per_tile == "chunk checksums"
    assert {t.kind: t.tiles for t in report.totals}["ranks"] > 0 and "chunks checked" in report.lines()[0]
    _flip_cell(path / "segments" / "seg-00000" / store.default_space / "scores.npy", 4, 1)
    with pytest.raises(StoreCorruptError) as err:
        Store(path).verify()
    (problem,) = err.value.report.problems
    assert problem.row == 4 and problem.columns[0] == 0 and "gene row 4, signatures 0.." in problem.what
    assert "scores.crc.npy" in problem.what


def test_format_1_store_says_there_is_nothing_to_check_per_tile(store_path, capsys):
    mpath = store_path / "manifest.json"
    m = json.loads(mpath.read_text())
    m["format_version"] = 1
    del m["manifest_checksum"]
    for seg in m["segments"]:
        for rel in [r for r in seg["files"] if r.endswith(".tiles.npy")]:
            del seg["files"][rel]
        for entry in seg["files"].values():
            entry.pop("tile_hashes", None)
    m["backgrounds"] = {}
    mpath.write_text(json.dumps(m))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = Store(store_path).verify()
    assert report.ok and report.per_tile == "none" and all(t.tiles == 0 for t in report.totals)
    assert "nothing to check per tile" in report.lines()[-1]
    _flip_cell(store_path / "segments" / "seg-00000" / "lm" / "ranks.npy", 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = _cli(["store", "info", store_path, "--verify"], capsys)
    assert code == 2 and "ranks.npy: checksum mismatch" in err
