"""The real LINCS releases end to end, as a new user runs them, all through the CLI:

replicas of GSE92742, GSE70138 and LINCS 2020 on a loopback mirror (with and without range
support) -> ``opencmap fetch RELEASE DEST --mirror URL`` -> ``opencmap store build DEST STORE``
-> ``opencmap query STORE --up-genes SYMBOLS --down-genes SYMBOLS``; interrupted and resumed
downloads, a corrupted file, two releases in one store, nothing downloaded twice, and every
"Bad input" of issue 13 as a one-line typed error naming the file and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from opencmap.cli import cli, main
from opencmap.errors import (
    ChecksumError,
    DiskSpaceError,
    FetchError,
    FormatError,
    IdNotFoundError,
    OpenCMapError,
    PipelineError,
)
from opencmap.io.fetch import RELEASES
from opencmap.query.store import Store

from .replicas import _CELLS, PLANTED_MOA, planted_query, write_gse70138, write_gse92742, write_lincs2020


def _load_mirror():  # the fetch tests' loopback server (tests/io is not a package)
    path = Path(__file__).resolve().parents[1] / "io" / "loopback_mirror.py"
    spec = importlib.util.spec_from_file_location("_e2e_loopback_mirror", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.serve_mirror


serve_mirror = _load_mirror()
WRITERS = {"GSE92742": write_gse92742, "GSE70138": write_gse70138, "LINCS2020": write_lincs2020}


def run(*args: object):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    return res


def ok(*args: object):
    res = run(*args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def one_line_error(kind: type[OpenCMapError], *args: object) -> str:
    """Run the command as a user would: it fails with a typed error of ``kind`` whose message (the
    one line ``opencmap`` prints as ``error: ...``, exit code 2) is returned."""
    res = run(*args)
    assert res.exit_code != 0 and isinstance(res.exception, kind), (res.output, res.exception)
    message = str(res.exception)
    assert "\n" not in message
    return message


def _make_mirror(root: Path, replicas: Path) -> Path:
    """The official relative paths under ROOT/<release>/; GEO series with their gzip SHA512SUMS."""
    for name, rel in RELEASES.items():
        lines = []
        for f in rel.files:
            src = replicas / name / f.filename
            if not src.exists():
                continue
            dst = root / name / f.path
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
            lines.append(f"{hashlib.sha512(src.read_bytes()).hexdigest()}  {f.filename}\n")
        if rel.checksums:
            with gzip.open(root / name / rel.checksums, "wt") as fh:
                fh.writelines(lines)
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Replicas on a mirror; each release fetched and built through the CLI (ranges on for GEO,
    off for LINCS 2020, as plain static servers); the planted query; the combined GEO store."""
    root = tmp_path_factory.mktemp("e2e")
    for name, writer in WRITERS.items():
        writer(root / "replicas" / name)
    mirror = _make_mirror(root / "mirror", root / "replicas")
    planted = planted_query()
    pcl = root / "planted.gmt"
    pcl.write_text(f"{PLANTED_MOA}\t\t" + "\t".join(planted.pert_ids) + "\n")
    data, stores, gets = root / "data", {}, {}
    for name in WRITERS:
        with serve_mirror(mirror, ranges=name != "LINCS2020") as server:
            res = ok("fetch", name, data / name, "--mirror", f"{server.url}/{name}", "--no-progress")
            assert "manifest" in res.output
            gets[name] = [r[1] for r in server.gets()]
        # GEO tables carry no MOA: the PCL names the mechanism; LINCS 2020's compoundinfo_beta does
        extra = ("--pcl", pcl) if name != "LINCS2020" else ()
        ok("store", "build", data / name, root / "stores" / name, *extra)
        stores[name] = root / "stores" / name
    ok("store", "build", data / "GSE92742", data / "GSE70138", root / "stores" / "both", "--pcl", pcl)
    stores["both"] = root / "stores" / "both"
    return {"root": root, "mirror": mirror, "data": data, "stores": stores, "planted": planted, "gets": gets, "pcl": pcl}


def _query(store: Path, planted, *extra: object) -> str:
    return ok("query", store, "--up-genes", ",".join(planted.up), "--down-genes", ",".join(planted.down), *extra).stdout


def _table(folder: Path, level: str) -> pd.DataFrame:
    (path,) = [p for p in folder.rglob(f"*{level}*.tsv")] or [None]
    assert path is not None, sorted(p.name for p in folder.rglob("*"))
    return pd.read_csv(path, sep="\t", dtype={"sig_id": str})


@pytest.mark.parametrize("release", ["GSE92742", "GSE70138", "LINCS2020"])
def test_fetch_build_query_by_symbol_planted_mechanism_first(world, release, tmp_path):
    planted, store = world["planted"], world["stores"][release]
    assert set(world["gets"][release]) == {f"{release}/{f.path}" for f in RELEASES[release].files if f.default}
    out = tmp_path / "res"
    text = _query(store, planted, "--level", "pert_summary", "--top", "2", "--out", out)
    assert all(name in text for name in planted.pert_inames)
    top = _table(out, "pert_summary")
    # the two planted compounds come first, by name and MOA (file order is the result order)
    key = next(c for c in ("tau", "ncs", "wtcs") if c in top.columns)
    top = top.sort_values(key, ascending=False, kind="stable").head(2)
    assert set(top["id"]) == set(planted.pert_ids) and set(top["pert_iname"]) == set(planted.pert_inames)
    assert set(top["moa"]) == {PLANTED_MOA}
    info = Store(store).sig_info
    cells = set(info.loc[info["pert_id"].isin(planted.pert_ids), "cell_id"])
    assert len(cells) >= 3 and cells <= set(_CELLS) and set(top["n_cells"]) == {len(cells)}
    pcell = _table(out, "pert_cell")
    pcell = pcell.sort_values(next(c for c in ("tau", "ncs", "wtcs") if c in pcell.columns), ascending=False,
                              kind="stable").head(2 * len(cells))
    assert set(pcell["pert_id"]) == set(planted.pert_ids) and set(pcell["cell_id"]) == cells
    if release != "LINCS2020":  # the PCL given once at build time: no --pcl at query time
        assert PLANTED_MOA in _query(store, planted, "--level", "pcl_summary", "--top", "1")


def test_beta_gene_labels_equal_the_gene_table(world):
    genes = Store(world["stores"]["LINCS2020"]).genes.set_index("pr_gene_id")["pr_gene_symbol"]
    table = pd.read_csv(world["data"] / "LINCS2020" / "geneinfo_beta.txt", sep="\t", dtype=str).set_index("gene_id")
    assert genes["5720"] == "PSME1"
    assert len(genes) == len(table) == 12328
    assert (genes.reindex(table.index) == table["gene_symbol"]).all()


def test_two_releases_in_one_store_score_as_each_alone(world, tmp_path):
    planted = world["planted"]
    both = tmp_path / "both"
    _query(world["stores"]["both"], planted, "--out", both, "--top", "1")
    b = _table(both, "sig").set_index("sig_id")
    assert set(b["release"]) == {"GSE92742", "GSE70138"}
    n = 0
    for name in ("GSE92742", "GSE70138"):
        _query(world["stores"][name], planted, "--out", tmp_path / name, "--top", "1")
        a = _table(tmp_path / name, "sig").set_index("sig_id")
        np.testing.assert_allclose(b.loc[a.index, "wtcs"], a["wtcs"], rtol=0, atol=1e-6)
        n += len(a)
    assert len(b) == n


def test_nothing_downloaded_twice(world):
    for name in ("GSE92742", "LINCS2020"):
        with serve_mirror(world["mirror"]) as server:
            res = ok("fetch", name, world["data"] / name, "--mirror", f"{server.url}/{name}", "--no-progress")
            assert not server.gets()
        assert all(line.startswith("skipped") for line in res.output.splitlines() if "verified by" in line)


@pytest.mark.parametrize("ranges", [True, False])
def test_interrupted_download_resumed_through_the_cli(world, tmp_path, ranges):
    level5 = RELEASES["GSE92742"].file("level5").filename
    rel = f"GSE92742/{level5}"
    dest = tmp_path / "d"
    with serve_mirror(world["mirror"], ranges=ranges) as server:
        server.drops[rel] = 400_000
        err = one_line_error(FetchError, "fetch", "GSE92742", dest, "--mirror", f"{server.url}/GSE92742", "--retries", "0",
                             "--no-progress")
        assert level5 in err and "run the same fetch again" in err
        assert (dest / (level5 + ".part")).exists() and not (dest / level5).exists()
        have = (dest / (level5 + ".part")).stat().st_size
        n_before = len(server.gets())
        res = ok("fetch", "GSE92742", dest, "--mirror", f"{server.url}/GSE92742", "--no-progress")
        again = [r for r in server.gets()[n_before:]]
    assert [r[1] for r in again] == [rel]  # the verified tables are not fetched again
    assert again[0][2] == f"bytes={have}-"  # asked for the rest; a server without ranges sends it whole
    assert (dest / level5).read_bytes() == (world["mirror"] / rel).read_bytes()
    status = {line.split()[1].rsplit("/", 1)[-1]: line.split()[0] for line in res.output.splitlines() if "verified by" in line}
    assert status[level5] == ("resumed" if ranges else "downloaded")
    if not ranges:
        assert "does not support range requests" in res.output
    ok("store", "build", dest, tmp_path / "store", "--pcl", world["pcl"])  # the resumed file builds
    assert PLANTED_MOA in _query(tmp_path / "store", world["planted"], "--level", "pcl_summary", "--top", "1")


# ---- Bad input: each a one-line typed error naming the file and what to do; nothing half written


def _bad_mirror(world, tmp_path, release: str) -> Path:
    root = tmp_path / "mirror"
    shutil.copytree(world["mirror"] / release, root / release)
    return root


def test_checksum_mismatch(world, tmp_path):
    mirror = _bad_mirror(world, tmp_path, "GSE70138")
    level5 = RELEASES["GSE70138"].file("level5").filename
    data = bytearray((mirror / "GSE70138" / level5).read_bytes())
    data[len(data) // 3] ^= 0x55
    (mirror / "GSE70138" / level5).write_bytes(bytes(data))
    dest = tmp_path / "d"
    with serve_mirror(mirror) as server:
        err = one_line_error(ChecksumError, "fetch", "GSE70138", dest, "--mirror", f"{server.url}/GSE70138", "--no-progress")
    assert "SHA-512" in err and "does not match GSE70138_SHA512SUMS" in err
    assert level5 in err and "run the same fetch again" in err
    assert not (dest / level5).exists() and not list(dest.glob("*.gctx*"))


def test_truncated_download(world, tmp_path):
    rel = "LINCS2020/" + RELEASES["LINCS2020"].file("gene_info").path
    with serve_mirror(world["mirror"]) as server:
        server.drops[rel] = 1000
        err = one_line_error(FetchError, "fetch", "LINCS2020", tmp_path / "b", "--mirror", f"{server.url}/LINCS2020",
                             "--retries", "0", "--no-progress")
    assert "geneinfo_beta.txt" in err and "1000 of" in err and "again" in err
    assert not (tmp_path / "b" / "geneinfo_beta.txt").exists()


def test_unknown_release(tmp_path, capsys):
    err = one_line_error(FetchError, "fetch", "GSE1", tmp_path / "x")
    assert "GSE1" in err and "GSE92742" in err and "give one of these names" in err
    with pytest.raises(SystemExit) as exc:  # what the shell shows: one line, exit code 2
        main(["fetch", "GSE1", str(tmp_path / "x")])
    assert exc.value.code == 2 and capsys.readouterr().err == f"error: {err}\n"
    assert not (tmp_path / "x").exists()


def test_folder_missing_a_required_table(world, tmp_path):
    folder = tmp_path / "GSE92742"
    shutil.copytree(world["data"] / "GSE92742", folder)
    (folder / RELEASES["GSE92742"].file("sig_info").filename).unlink()
    err = one_line_error(FormatError, "store", "build", folder, tmp_path / "s")
    assert "sig_info" in err and str(folder) in err and "opencmap fetch" in err
    assert not (tmp_path / "s").exists()


def test_table_without_an_id_column(world, tmp_path):
    folder = tmp_path / "beta"
    shutil.copytree(world["data"] / "LINCS2020", folder)
    path = folder / "siginfo_beta.txt"
    pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).drop(columns="sig_id").to_csv(path, sep="\t", index=False)
    err = one_line_error(FormatError, "store", "build", folder, tmp_path / "s")
    assert "siginfo_beta.txt" in err and "columns found" in err and "and 11 more" in err and "right release" in err
    assert not (tmp_path / "s").exists()


def test_gene_table_ids_do_not_match_the_matrix_rows(world, tmp_path):
    folder = tmp_path / "beta"
    shutil.copytree(world["data"] / "LINCS2020", folder)
    path = folder / "geneinfo_beta.txt"
    genes = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    genes["gene_id"] = [str(900_000_000 + i) for i in range(len(genes))]  # another platform's ids
    genes.to_csv(path, sep="\t", index=False)
    err = one_line_error(IdNotFoundError, "store", "build", folder, tmp_path / "s")
    assert "geneinfo_beta.txt" in err and "12328" in err and "gene table of this matrix" in err
    assert not (tmp_path / "s").exists()


def test_level4_given_as_level3(tmp_path):
    from pipeline.test_run import make_level3  # noqa: PLC0415 - the pipeline tests' synthetic plate

    make_level3(tmp_path)
    ok("process", tmp_path / "level3.gctx", tmp_path / "run", "--inst-info", tmp_path / "inst_info.txt")
    level4 = tmp_path / "run" / "level4.gctx"
    err = one_line_error(PipelineError, "process", level4, tmp_path / "again", "--inst-info", tmp_path / "inst_info.txt")
    assert str(level4) in err and "Level 4" in err and "--level 4" in err
    assert not (tmp_path / "again" / "level5.gctx").exists()
    ok("process", level4, tmp_path / "l4", "--inst-info", tmp_path / "inst_info.txt", "--level", "4")


def test_too_little_disk(world, tmp_path, monkeypatch):
    import opencmap.io.fetch as fetch_module
    from opencmap.io.store import writer as store_module

    class _Full:
        free = 1000

    with serve_mirror(world["mirror"]) as server:
        monkeypatch.setattr(fetch_module.shutil, "disk_usage", lambda p: _Full())
        err = one_line_error(DiskSpaceError, "fetch", "GSE92742", tmp_path / "d", "--mirror", f"{server.url}/GSE92742", "--no-progress")
        assert not server.gets()
    assert str(tmp_path / "d") in err and "GB" in err and "Nothing was downloaded" in err
    monkeypatch.setattr(store_module.shutil, "disk_usage", lambda p: _Full())
    err = one_line_error(DiskSpaceError, "store", "build", world["data"] / "GSE92742", tmp_path / "s")
    assert "GB free" in err and str(tmp_path / "s") in err
    assert not (tmp_path / "s").exists()
