"""``.gctx.gz`` as GEO serves it: streamed to a decompressed copy, then read as GCTX."""

from __future__ import annotations

import gzip
import os
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import opencmap.io.decompress as decompress
from opencmap.cli import cli
from opencmap.core.gct import GCT
from opencmap.errors import DiskSpaceError, FormatError
from opencmap.io import gct_info, read_gct, read_meta, write_gctx
from opencmap.io.decompress import gunzip_file, hdf5_end_of_file, resolve_gzipped_gctx
from opencmap.query.store import build_store


def _gz(src: Path, dest: Path, level: int = 6) -> Path:
    with open(src, "rb") as fh, gzip.open(dest, "wb", compresslevel=level) as out:
        shutil.copyfileobj(fh, out)
    return dest


@pytest.fixture()
def real_pair(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A real CMap Level 5 GCTX (272 signatures, l1ktools) and its gzip, as GEO ships matrices."""
    plain = shared_data / "query" / "modzs_n272x978.gctx"
    folder = tmp_path / "geo"
    folder.mkdir()
    return plain, _gz(plain, folder / "modzs_n272x978.gctx.gz")


def test_gctx_gz_reads_like_the_gctx(real_pair) -> None:
    plain, gz = real_pair
    a, b = read_gct(plain), read_gct(gz)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.col_meta.equals(b.col_meta) and a.row_meta.equals(b.row_meta)
    sub = read_gct(gz, cidx=[5, 1], rid=a.rids[:3])
    np.testing.assert_array_equal(sub.data, a.data[:3][:, [5, 1]])
    assert read_meta(gz, "col").equals(read_meta(plain, "col"))
    info = gct_info(gz)
    assert (info.n_rows, info.n_cols) == (978, 272) and info.format.startswith("GCTX")
    copy = gz.with_name("modzs_n272x978.gctx")
    assert copy.read_bytes() == plain.read_bytes()
    assert not list(gz.parent.glob("*.part"))


def test_the_copy_is_made_once(real_pair) -> None:
    _, gz = real_pair
    first = resolve_gzipped_gctx(gz)
    stamp = first.stat().st_mtime_ns
    time.sleep(0.01)
    assert resolve_gzipped_gctx(gz) == first and first.stat().st_mtime_ns == stamp


def test_text_and_plain_files_are_left_alone(shared_data: Path, tmp_path: Path) -> None:
    plain = shared_data / "formats" / "cmapr" / "test_n5x10.gct"
    gz = _gz(plain, tmp_path / "t.gct.gz")
    assert resolve_gzipped_gctx(gz) == gz and resolve_gzipped_gctx(plain) == plain
    np.testing.assert_array_equal(read_gct(gz).data, read_gct(plain).data)
    assert not (tmp_path / "t.gct").exists()


def test_truncated_gz_is_a_format_error_and_leaves_nothing(real_pair, tmp_path: Path) -> None:
    _, gz = real_pair
    cut = tmp_path / "cut" / "x.gctx.gz"
    cut.parent.mkdir()
    cut.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(FormatError, match=r"x\.gctx\.gz.*truncated or corrupt: download it again"):
        read_gct(cut)
    assert sorted(p.name for p in cut.parent.iterdir()) == ["x.gctx.gz"]


def test_a_different_file_at_the_copy_path_is_not_overwritten(real_pair) -> None:
    _, gz = real_pair
    other = gz.with_name("modzs_n272x978.gctx")
    write_gctx(GCT(np.zeros((3, 2), dtype=np.float32)), other)
    before = other.read_bytes()
    with pytest.raises(FormatError, match="not its complete decompressed copy"):
        read_gct(gz)
    assert other.read_bytes() == before


def test_read_only_folder_uses_the_cache(real_pair, tmp_path: Path, monkeypatch) -> None:
    _, gz = real_pair
    monkeypatch.setenv("OPENCMAP_CACHE_DIR", str(tmp_path / "cache"))
    real_access = os.access
    monkeypatch.setattr(decompress.os, "access", lambda p, mode: False if Path(p) == gz.parent else real_access(p, mode))
    target = resolve_gzipped_gctx(gz)
    assert (tmp_path / "cache") in target.parents and not gz.with_name("modzs_n272x978.gctx").exists()


def test_too_little_disk_is_refused_before_writing(real_pair, monkeypatch) -> None:
    _, gz = real_pair
    monkeypatch.setattr(decompress.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(DiskSpaceError, match="needs .* GB"):
        read_gct(gz)
    assert sorted(p.name for p in gz.parent.iterdir()) == [gz.name]


def test_superblock_gives_the_file_size(shared_data: Path) -> None:
    for path in (shared_data / "query" / "modzs_n272x978.gctx", shared_data / "formats" / "cmapm" / "gctv13_02.gctx"):
        assert hdf5_end_of_file(path.read_bytes()[:4096]) == path.stat().st_size


def test_memory_stays_bounded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "big.bin"
    src.write_bytes(rng.standard_normal(6_000_000).astype(np.float32).tobytes())  # 24 MB
    gz = _gz(src, tmp_path / "big.bin.gz", level=1)
    tracemalloc.start()
    gunzip_file(gz, tmp_path / "out.bin")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert peak < 12 << 20, peak  # a 4 MiB buffer, not the 24 MB file


def test_store_built_from_gctx_gz_equals_the_plain_build(real_pair, tmp_path: Path) -> None:
    plain, gz = real_pair
    a = build_store(tmp_path / "a", plain, block_size=50)
    b = build_store(tmp_path / "b", gz, block_size=50)
    assert list(a.sig_ids) == list(b.sig_ids)
    for space in a.info()["spaces"]:
        np.testing.assert_array_equal(a.signature_scores(np.arange(10), space=space), b.signature_scores(np.arange(10), space=space))


def test_cli_gct_info_and_convert_on_gctx_gz(real_pair, tmp_path: Path) -> None:
    plain, gz = real_pair
    res = CliRunner().invoke(cli, ["gct", "info", str(gz)])
    assert res.exit_code == 0, res.output
    assert "978 rows x 272 columns" in res.output
    out = tmp_path / "out.gctx"
    res = CliRunner().invoke(cli, ["gct", "convert", str(gz), str(out)])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(read_gct(out).data, read_gct(plain).data)
