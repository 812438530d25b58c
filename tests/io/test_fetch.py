"""``opencmap fetch`` against a loopback mirror of the release replicas (no outside requests)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from loopback_mirror import serve_mirror
from releases.replicas import write_gse92742, write_lincs2020

import opencmap.io.fetch as fetch_module
from opencmap.cli import cli, main
from opencmap.errors import ChecksumError, DiskSpaceError, FetchError
from opencmap.io import read_gct
from opencmap.io.fetch import MANIFEST_NAME, RELEASES, fetch_release, plan_fetch

GEO = RELEASES["GSE92742"]
BETA = RELEASES["LINCS2020"]


def _sha512(path: Path) -> str:
    return hashlib.sha512(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("replicas")
    write_gse92742(root / "GSE92742")
    write_lincs2020(root / "LINCS2020")
    return {"GSE92742": root / "GSE92742", "LINCS2020": root / "LINCS2020"}


@pytest.fixture()
def mirror(tmp_path: Path, replicas: dict[str, Path]) -> Path:
    """A mirror laid out at the official relative paths, GEO with its SHA512SUMS file (gzip, as GEO's)."""
    root = tmp_path / "mirror"
    geo = root / "GSE92742"
    geo.mkdir(parents=True)
    lines = []
    for f in GEO.files:
        src = replicas["GSE92742"] / f.filename
        if src.exists():
            shutil.copy(src, geo / f.path)
            lines.append(f"{_sha512(src)}  {f.filename}\n")
    with gzip.open(geo / GEO.checksums, "wt") as fh:
        fh.writelines(lines)
    for f in BETA.files:
        src = replicas["LINCS2020"] / f.filename
        if src.exists():
            (root / "LINCS2020" / f.path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / "LINCS2020" / f.path)
    return root


def _default_names(rel) -> set[str]:
    return {f.filename for f in rel.files if f.default}


def test_fetch_geo_from_a_mirror_verified_by_sha512sums(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "GSE92742"
    with serve_mirror(mirror) as server:
        result = fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742/")
    names = {f.path.name for f in result.files}
    assert names == _default_names(GEO)  # the defaults, not inst_info or Level 3/4
    for f in result.files:
        assert f.path.read_bytes() == (mirror / "GSE92742" / f.path.name).read_bytes()
        assert f.status == "downloaded"
        assert f.verified_by == ("size" if f.name == "checksums" else "SHA512SUMS")
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    assert manifest["release"] == "GSE92742" and set(manifest["files"]) == names
    level5 = GEO.file("level5").filename
    entry = manifest["files"][level5]
    assert entry["sha512"] == _sha512(dest / level5) and entry["size"] == (dest / level5).stat().st_size
    assert entry["url"].endswith(f"/GSE92742/{level5}") and entry["time"]
    assert not list(dest.glob("*.part"))
    # decompressed while downloading: the copy the readers use, not made again on first read
    copy = dest / level5.removesuffix(".gz")
    with gzip.open(dest / level5, "rb") as fh:
        assert copy.read_bytes() == fh.read()
    stamp = copy.stat().st_mtime_ns
    gct = read_gct(dest / level5)
    assert gct.shape[0] == 12328 and gct.shape[1] > 50
    assert copy.stat().st_mtime_ns == stamp


def test_nothing_is_downloaded_twice(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    with serve_mirror(mirror) as server:
        fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742")
        n_gets = len(server.gets())
        again = fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742", extra=["inst_info"])
        assert {f.status for f in again.files if f.name != "inst_info"} == {"skipped"}
        new = server.gets()[n_gets:]
        assert [r[1] for r in new] == ["GSE92742/" + GEO.file("inst_info").filename]  # only the new file


def test_interrupted_download_is_resumed_with_a_range_request(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    level5 = GEO.file("level5").filename
    rel = f"GSE92742/{level5}"
    full = (mirror / rel).read_bytes()
    with serve_mirror(mirror) as server:
        server.drops[rel] = 1_000_000
        with pytest.raises(FetchError, match="kept: run the same fetch again to resume"):
            fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742", retries=0)
        part = dest / (level5 + ".part")
        assert part.exists() and 0 < part.stat().st_size <= 1_000_000 and not (dest / level5).exists()
        have = part.stat().st_size
        result = fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742")
        assert server.gets(rel)[-1][2] == f"bytes={have}-"
    assert (dest / level5).read_bytes() == full
    with gzip.open(dest / level5, "rb") as fh:  # decompressed after the resumed download
        assert (dest / level5.removesuffix(".gz")).read_bytes() == fh.read()
    assert any("decompressed after downloading" in n for n in result.notes)
    status = {f.path.name: f.status for f in result.files}
    assert status[level5] == "resumed"
    assert status[GEO.file("sig_info").filename] == "skipped"  # verified before the interruption


def test_dropped_connection_is_retried_at_once(mirror: Path, tmp_path: Path) -> None:
    rel = "LINCS2020/" + BETA.file("level5").path
    with serve_mirror(mirror) as server:
        server.drops[rel] = 2_000_000
        result = fetch_release("LINCS2020", tmp_path / "b", mirror=f"{server.url}/LINCS2020", backoff=0.0)
        assert len(server.gets(rel)) == 2 and server.gets(rel)[1][2] == "bytes=2000000-"
    assert (tmp_path / "b" / BETA.file("level5").filename).read_bytes() == (mirror / rel).read_bytes()
    assert {f.path.name: f.status for f in result.files}[BETA.file("level5").filename] == "resumed"


def test_server_without_range_support_restarts_from_zero(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    level5 = GEO.file("level5").filename
    rel = f"GSE92742/{level5}"
    with serve_mirror(mirror, ranges=False) as server:
        server.drops[rel] = 500_000
        with pytest.raises(FetchError):
            fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742", retries=0)
        result = fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742")
    assert (dest / level5).read_bytes() == (mirror / rel).read_bytes()
    assert any("does not support range requests" in n for n in result.notes)


def test_lincs2020_relative_paths_saved_flat_and_checked_by_size(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "beta"
    with serve_mirror(mirror) as server:
        result = fetch_release("LINCS2020", dest, mirror=server.url + "/LINCS2020", extra=["level5_ctl"])
        assert ("GET", "LINCS2020/level5/level5_beta_trt_cp_n720216x12328.gctx", None) in server.requests
    names = {f.path.name for f in result.files}
    assert names == _default_names(BETA) | {"level5_beta_ctl_n58022x12328.gctx"}
    assert {f.verified_by for f in result.files} == {"size"}
    assert all((dest / n).exists() for n in names) and not (dest / "level5").exists()


def test_corrupted_file_is_caught_by_its_checksum(mirror: Path, tmp_path: Path) -> None:
    level5 = GEO.file("level5").filename
    damaged = bytearray((mirror / "GSE92742" / level5).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    (mirror / "GSE92742" / level5).write_bytes(bytes(damaged))
    dest = tmp_path / "d"
    with serve_mirror(mirror) as server, pytest.raises(ChecksumError, match=level5.replace(".", r"\.")) as exc:
        fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742")
    assert "run the same fetch again" in str(exc.value)
    assert not (dest / level5).exists() and not (dest / (level5 + ".part")).exists()
    assert not list(dest.glob("*.gctx*"))  # nor a decompressed copy
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    assert level5 not in manifest["files"]


def test_truncated_file_on_the_mirror_is_caught(mirror: Path, tmp_path: Path) -> None:
    sig_info = GEO.file("sig_info").filename
    path = mirror / "GSE92742" / sig_info
    path.write_bytes(path.read_bytes()[:-100])
    with serve_mirror(mirror) as server, pytest.raises(ChecksumError, match="does not match"):
        fetch_release("GSE92742", tmp_path / "d", mirror=f"{server.url}/GSE92742")


def test_truncated_transfer_is_not_taken_as_complete(mirror: Path, tmp_path: Path) -> None:
    rel = "LINCS2020/" + BETA.file("gene_info").path
    with serve_mirror(mirror) as server:
        server.drops[rel] = 1000
        with pytest.raises(FetchError, match=r"transfer failed after 1000 of"):
            fetch_release("LINCS2020", tmp_path / "b", mirror=f"{server.url}/LINCS2020", retries=0)
    assert not (tmp_path / "b" / "geneinfo_beta.txt").exists()


def test_unknown_release_and_missing_file(mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="unknown release 'GSE1'; known releases: GSE92742, GSE70138, LINCS2020"):
        fetch_release("GSE1", tmp_path / "x")
    with pytest.raises(SystemExit) as exc:
        main(["fetch", "GSE1", str(tmp_path / "x")])
    assert exc.value.code == 2
    (mirror / "GSE92742" / GEO.file("cell_info").filename).unlink()
    with serve_mirror(mirror) as server:
        with pytest.raises(FetchError, match="HTTP 404.*cell_info.*Nothing was downloaded"):
            fetch_release("GSE92742", tmp_path / "y", mirror=f"{server.url}/GSE92742")
        assert not server.gets()


def test_dry_run_lists_sizes_and_downloads_nothing(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dry"
    with serve_mirror(mirror) as server:
        plan = plan_fetch("GSE92742", dest, mirror=f"{server.url}/GSE92742", levels=[4])
        res = CliRunner().invoke(cli, ["fetch", "GSE92742", str(dest), "--mirror", f"{server.url}/GSE92742", "--dry-run"])
        assert not server.gets()
    assert res.exit_code == 0, res.output
    assert not dest.exists()
    sizes = {f.dest.name: f.size for f in plan.files}
    level4 = GEO.file("level4").filename
    assert level4 in sizes and GEO.file("inst_info").filename in sizes
    assert all(f.size_source == "server" for f in plan.files if f.dest.name != level4)  # level4 not on the mirror
    assert sizes[GEO.file("level5").filename] == (mirror / "GSE92742" / GEO.file("level5").filename).stat().st_size
    assert "to download:" in res.output and GEO.file("level5").filename in res.output
    assert "decompressed copies" in res.output


def test_too_little_disk_is_refused_before_downloading(mirror: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fetch_module.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with serve_mirror(mirror) as server:
        with pytest.raises(DiskSpaceError, match="Nothing was downloaded"):
            fetch_release("GSE92742", tmp_path / "d", mirror=f"{server.url}/GSE92742")
        assert not server.gets()
        res = CliRunner().invoke(cli, ["fetch", "GSE92742", str(tmp_path / "d"), "--mirror", f"{server.url}/GSE92742", "--dry-run"])
    assert res.exit_code != 0 and isinstance(res.exception, DiskSpaceError)


def test_cli_fetch_with_mirror(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "cli"
    with serve_mirror(mirror) as server:
        res = CliRunner().invoke(cli, ["fetch", "lincs2020", str(dest), "--mirror", f"{server.url}/LINCS2020", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "verified by size" in res.output and MANIFEST_NAME in res.output
    a = read_gct(dest / BETA.file("level5").filename, cidx=[0, 1])
    b = read_gct(mirror / "LINCS2020" / BETA.file("level5").path, cidx=[0, 1])
    np.testing.assert_array_equal(a.data, b.data)


def test_existing_file_verified_not_downloaded(mirror: Path, tmp_path: Path) -> None:
    """A file downloaded earlier by hand (no manifest) is checked against SHA512SUMS instead of fetched."""
    dest = tmp_path / "d"
    dest.mkdir()
    level5 = GEO.file("level5").filename
    shutil.copy(mirror / "GSE92742" / level5, dest / level5)
    with serve_mirror(mirror) as server:
        result = fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742")
        assert not server.gets(f"GSE92742/{level5}")
    assert {f.path.name: f.status for f in result.files}[level5] == "skipped"


def test_no_decompress_keeps_only_the_gz(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    with serve_mirror(mirror) as server:
        fetch_release("GSE92742", dest, mirror=f"{server.url}/GSE92742", decompress=False)
    assert not list(dest.glob("*.gctx"))


def test_file_changed_on_the_server_is_not_resumed_onto(mirror: Path, tmp_path: Path) -> None:
    """The part's ETag goes with the range request (If-Range): a changed file comes whole, not spliced."""
    rel = "LINCS2020/" + BETA.file("gene_info").path
    dest = tmp_path / "b"
    with serve_mirror(mirror) as server:
        server.drops[rel] = 5000
        with pytest.raises(FetchError):
            fetch_release("LINCS2020", dest, mirror=f"{server.url}/LINCS2020", retries=0)
        new = (mirror / rel).read_bytes().replace(b"\t", b" \t", 3)  # a new version of the table
        (mirror / rel).write_bytes(new)
        result = fetch_release("LINCS2020", dest, mirror=f"{server.url}/LINCS2020")
        assert server.gets(rel)[-1][2] == "bytes=5000-"
    assert (dest / "geneinfo_beta.txt").read_bytes() == new
    assert any("changed on the server" in n for n in result.notes)
    assert not list(dest.glob("*.validator")) and not list(dest.glob("*.part"))
