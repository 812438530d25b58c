"""Store durability: reads checked against tile hashes (format 3; chunk checksums of format-2 stores), every change one atomic step
(fault injection: a child process dies at chosen steps), leftovers cleaned, full disks typed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from opencmap.errors import StoreCorruptError, StoreDiskSpaceError, StoreError, UncheckedStoreWarning
from opencmap.query.background import build_background, load_background
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query
from opencmap.query.store import Store, append_store, build_store, cleanup_store

SRC = str(Path(__file__).resolve().parents[2] / "src")
SYNTH = str(Path(__file__).with_name("synthetic_level5.py"))


def _query(store: Store) -> Query:
    genes = store.space().gene_ids
    return Query("q", up=tuple(genes[:15]), down=tuple(genes[-15:]))


def _scores(store: Store, metric: str = "wtcs") -> dict[str, np.ndarray]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Engine(store).run(_query(store), metric=metric, summaries=False, fdr=False).level("sig").metrics
    return {k: np.asarray(v) for k, v in m.items() if k in ("wtcs", "ncs", "tau", "cs")}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture()
def store_path(level5, tmp_path):
    gct, info, _ = level5
    path = tmp_path / "ref"
    build_store(path, gct, sig_info=info, block_size=40)
    return path


def _flip(path: Path, at: int, n: int = 4) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at)
        raw = bytearray(fh.read(n))
        fh.seek(at)
        fh.write(bytes(b ^ 0xFF for b in raw))


# ------------------------------------------------------------------ checksums on read
def _flip_cell(store_path: Path, rel: str, row: int, col: int) -> None:
    f = store_path / rel
    arr = np.load(f, mmap_mode="r")
    offset, n_cols, item = int(arr.offset), arr.shape[1], arr.dtype.itemsize
    del arr
    _flip(f, offset + (row * n_cols + col) * item, item)


@pytest.mark.parametrize("kind", ["ranks", "scores"])
def test_flipped_bytes_refuse_the_query_naming_the_file(store_path, kind):
    store = Store(store_path)
    assert store.format_version == 3 and store.tile_checked and store.info()["tile_hashes"]
    row = int(store.space().positions([store.space().gene_ids[3]])[0])  # a gene of the query
    _flip_cell(store_path, f"segments/seg-00000/{store.default_space}/{kind}.npy", row, 5)
    fresh = Store(store_path)  # sizes unchanged: opening succeeds, the kernel reading the tile refuses
    with pytest.raises(StoreCorruptError, match=rf"{kind}\.npy is corrupt: gene row {row}, signatures 0\.\..*store info --verify") as err:
        _scores(fresh)
    assert err.value.path.endswith(f"{store.default_space}/{kind}.npy")
    with pytest.raises(StoreError, match=rf"{kind}\.npy"):
        fresh.verify()


@pytest.mark.parametrize("metric", ["xsum", "rankz", "cs"])
def test_flipped_ranks_refuse_gathered_and_unweighted_methods(store_path, metric):
    store = Store(store_path)
    row = int(store.space().positions([store.space().gene_ids[-4]])[0])  # a down gene of the query
    _flip_cell(store_path, f"segments/seg-00000/{store.default_space}/ranks.npy", row, 9)
    with pytest.raises(StoreCorruptError, match=rf"ranks\.npy is corrupt: gene row {row}, "):
        _scores(Store(store_path), metric)


def test_flipped_bytes_outside_the_query_rows_do_not_refuse_it(store_path):
    store = Store(store_path)
    expected = _scores(store)
    genes = store.space().gene_ids
    row = int(store.space().positions([genes[len(genes) // 2]])[0])  # not a gene of the query
    _flip_cell(store_path, f"segments/seg-00000/{store.default_space}/ranks.npy", row, 0)
    fresh = Store(store_path)
    _same(expected, _scores(fresh))
    seg = fresh.segments[0]
    with pytest.raises(StoreCorruptError, match=rf"gene row {row}"):
        seg.check(fresh.default_space, "ranks", np.array([row]), 0, 1)


def test_unchanged_store_gives_bit_identical_results_with_and_without_checks(store_path, monkeypatch):
    checked = _scores(Store(store_path), "wtcs")
    checked_cs = _scores(Store(store_path), "cs")
    monkeypatch.setattr(Store, "read_check", lambda self, *a, **k: None)
    monkeypatch.setattr("opencmap.io.store.reader.StoreSegment.check", lambda self, *a, **k: None)
    _same(checked, _scores(Store(store_path), "wtcs"))
    _same(checked_cs, _scores(Store(store_path), "cs"))


def test_untouched_rows_still_answer_and_checks_run_once(store_path):
    store = Store(store_path)
    before = _scores(store)
    seg = store.segments[0]
    seen = seg.tiles(store.default_space, "ranks")[1]
    n_checked = int(seen.sum())
    assert 0 < n_checked < seen.size  # only the rows the query read
    _same(before, _scores(store))
    assert int(seen.sum()) == n_checked
    got = store.signature_scores([0, 7])
    assert got.shape[0] == 2 and seg.tiles(store.default_space, "scores_by_sig")[1][[0, 7]].all()


def test_first_block_is_narrow_only_while_the_data_are_unchecked(tmp_path, monkeypatch):
    """A scan's first block is one chunk column wide while its chunks are unchecked (less to wait
    for); a reused store scans in full blocks again, with nothing handed to the checker thread."""
    import pandas as pd

    from opencmap.core.gct import GCT
    from opencmap.io.store import reader

    n, cols = 20_000, 16384
    genes = pd.DataFrame({"pr_gene_symbol": [f"G{i}" for i in range(12)], "pr_is_lm": 1, "pr_is_bing": 1},
                         index=pd.Index([str(100 + i) for i in range(12)], name="rid"))  # fmt: skip
    data = np.random.default_rng(0).standard_normal((12, n), dtype=np.float32)
    cids = [f"S{i}" for i in range(n)]
    meta = pd.DataFrame({"pert_id": cids, "pert_type": "trt_cp", "cell_id": "A375"}, index=pd.Index(cids, name="cid"))
    store = Store(build_store(tmp_path / "wide", GCT(data, rids=list(genes.index), cids=cids, row_meta=genes, col_meta=meta)).path)
    assert store.checked and store.tile_checked  # (format 3: the blocks of this reader are checked per tile)
    submits: list[object] = []
    real = reader._checker()
    monkeypatch.setattr(reader, "_checker", lambda: type("Counting", (), {"submit": lambda self, *a: submits.append(a) or real.submit(*a)})())
    rows = np.array([1, 4, 7])

    def scan() -> list[tuple[int, int]]:
        return [(lo, hi) for lo, hi, *_ in store.iter_blocks(rows, block_size=n)]

    assert scan() == [(0, cols), (cols, n)]  # first read: the first block narrow, the next checked aside
    assert len(submits) == 1
    assert scan() == [(0, n)]  # reused store: one full block, nothing re-checked
    assert len(submits) == 1
    # rows not read before are unchecked: narrow again
    assert [(lo, hi) for lo, hi, *_ in store.iter_blocks(np.array([0, 2]), block_size=n)] == [(0, cols), (cols, n)]


def test_corrupt_tile_hash_file_is_refused(store_path):
    store = Store(store_path)
    row = int(store.space().positions([store.space().gene_ids[2]])[0])
    side = store_path / "segments" / "seg-00000" / store.default_space / "ranks.tiles.npy"
    sums = np.load(side, mmap_mode="r")
    offset = int(sums.offset) + row * sums.shape[1] * 8
    del sums
    _flip(side, offset, 2)
    with pytest.raises(StoreCorruptError, match=r"ranks\.npy is corrupt.*ranks\.tiles\.npy"):
        _scores(Store(store_path))


def test_corrupt_background_values_refuse_tau(store_path):
    build_background(store_path, same_cell=False, n_genes=20)
    store = Store(store_path)
    entry = store.manifest["backgrounds"]["sig"]
    assert entry["tile_hashes"]["file"] == "values.tiles.npy"
    assert load_background(store, "sig") is not None
    rel = f"{entry['dir']}/values.npy"
    _flip_cell(store_path, rel, 3, 1)
    with pytest.raises(StoreCorruptError, match=r"values\.npy \(τ background 'sig'\) is corrupt: row 3"):
        _scores(Store(store_path))


def test_corrupt_manifest_is_refused(store_path):
    mpath = store_path / "manifest.json"
    text = mpath.read_text()
    gene = Store(store_path).space().gene_ids[5]
    assert f'"{gene}"' in text
    mpath.write_text(text.replace(f'"{gene}"', f'"{gene}9"', 1))  # still valid JSON, one gene id changed
    with pytest.raises(StoreCorruptError, match=r"manifest\.json is corrupt.*manifest_checksum.*store info --verify"):
        Store(store_path)


def test_corrupt_signature_table_is_refused(store_path):
    f = store_path / "segments" / "seg-00000" / "sig_info.parquet"
    _flip(f, f.stat().st_size // 2, 2)
    with pytest.raises(StoreCorruptError, match=r"sig_info\.parquet is corrupt"):
        Store(store_path).sig_info  # noqa: B018


def test_format_2_store_keeps_its_chunk_checks(tmp_path):
    """The archived format-2 store (chunk xxh3) still answers, and a flipped byte still refuses."""
    src = Path(__file__).resolve().parents[1] / "data" / "archive" / "v0.1.0" / "store"
    path = tmp_path / "v2"
    shutil.copytree(src, path)
    store = Store(path)
    assert store.format_version == 2 and store.checked and not store.tile_checked
    expected = _scores(store)
    _same(expected, _scores(Store(path)))
    row = int(store.space().positions([store.space().gene_ids[3]])[0])
    _flip_cell(path, f"segments/seg-00000/{store.default_space}/scores.npy", row, 2)
    with pytest.raises(StoreCorruptError, match=r"scores\.npy is corrupt.*store info --verify"):
        _scores(Store(path))


def test_store_without_chunk_checksums_opens_with_a_warning(store_path):
    """Stores of format version 1 (no chunk checksums) still open and answer, with a warning."""
    expected = _scores(Store(store_path))
    mpath = store_path / "manifest.json"
    m = json.loads(mpath.read_text())
    m["format_version"] = 1
    del m["manifest_checksum"]  # (from format 3 on)
    for seg in m["segments"]:
        for rel in [r for r in seg["files"] if r.endswith((".crc.npy", ".tiles.npy"))]:
            (store_path / "segments" / seg["name"] / rel).unlink()
            del seg["files"][rel]
        for entry in seg["files"].values():
            entry.pop("chunk_sums", None)
            entry.pop("tile_hashes", None)
    mpath.write_text(json.dumps(m))
    with pytest.warns(UncheckedStoreWarning, match="store info --verify"):
        old = Store(store_path)
    assert not old.checked and old.format_version == 1
    _same(expected, _scores(old))
    old.verify()


# ------------------------------------------------------------------ fault injection
_CHILD = r"""
import runpy, sys
import numpy as np
sys.path.insert(0, {src!r})
make = runpy.run_path({synth!r})["make_level5"]
gct, info, _ = make()
from opencmap.query import store as S
from opencmap.query.background import build_background
action, path = sys.argv[1], sys.argv[2]
if action == "background":
    build_background(path, same_cell=False, n_genes=20)
elif action == "overwrite":
    S.build_store(path, gct, sig_info=info, columns=np.arange(60), block_size=40, overwrite=True)
elif action == "overwrite-no-exchange":
    import opencmap.io.store.writer as W
    W._exchange = lambda a, b: False
    S.build_store(path, gct, sig_info=info, columns=np.arange(60), block_size=40, overwrite=True)
elif action == "append":
    from opencmap.core.gct import GCT
    extra = GCT(gct.data[:, :10], row_meta=gct.row_meta, col_meta=gct.col_meta.iloc[:10].rename(index=lambda s: "new_" + s))
    ii = info.iloc[:10].copy(); ii["sig_id"] = ["new_" + s for s in ii["sig_id"]]
    S.append_store(path, extra, sig_info=ii, keep_backgrounds=True)
elif action == "compact":
    S.compact_store(path)
"""


def _run_child(action: str, path: Path, fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("OPENCMAP_FAULT_AT", None)
    if fault:
        env["OPENCMAP_FAULT_AT"] = fault
    code = _CHILD.format(src=SRC, synth=SYNTH)
    return subprocess.run([sys.executable, "-c", code, action, str(path)], env=env, capture_output=True, text=True, timeout=600)


def _leftovers(path: Path) -> list[str]:
    found = [str(p) for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    if path.exists():
        found += [str(p) for p in path.rglob("*") if p.name.endswith(".tmp") or ".building-" in p.name or ".g" in p.name.split(".")[-1][:2]]
    return found


def test_killed_background_rerun_leaves_the_old_tau(store_path):
    build_background(store_path, same_cell=True, n_genes=20)
    before_manifest = (store_path / "manifest.json").read_text()
    before = _scores(Store(store_path))
    for step in ("background:file-written", "background:before-switch", "manifest:tmp-written"):
        proc = _run_child("background", store_path, step)
        assert proc.returncode == 86, proc.stderr[-2000:]
        assert (store_path / "manifest.json").read_text() == before_manifest
        st = Store(store_path)
        _same(before, _scores(st))  # the old tau, the old parameters
        assert load_background(st, "sig").entry["params"]["same_cell"] is True
    removed = cleanup_store(store_path)
    assert removed and all("background" in r or r.endswith(".tmp") for r in removed)
    assert cleanup_store(store_path) == []
    Store(store_path).verify()
    # a complete re-run switches to the new parameters in one step
    proc = _run_child("background", store_path, None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_background(Store(store_path), "sig").entry["params"]["same_cell"] is False
    assert sorted(p.name for p in (store_path / "backgrounds").iterdir() if p.is_dir() and p.name.startswith("sig")) == ["sig.g2"]


@pytest.mark.parametrize(("action", "step", "new"), [
    ("overwrite", "build:data-written", False),
    ("overwrite", "build:before-switch", False),
    ("overwrite", "build:switched", True),
    ("overwrite-no-exchange", "build:between-renames", False),
])
def test_killed_overwrite_leaves_a_usable_store(store_path, action, step, new):
    old_n = Store(store_path).n_signatures
    before = _scores(Store(store_path))
    proc = _run_child(action, store_path, step)
    assert proc.returncode == 86, proc.stderr[-2000:]
    assert _leftovers(store_path)
    if action == "overwrite-no-exchange":  # killed between the two renames: the next run restores the old store
        assert not store_path.exists()
        assert any("restor" in r or ".building-" in r for r in cleanup_store(store_path)) or store_path.exists()
    st = Store(store_path)
    if new:
        assert st.n_signatures == 60
    else:
        assert st.n_signatures == old_n
        _same(before, _scores(st))
    cleanup_store(store_path)
    assert _leftovers(store_path) == []
    Store(store_path).verify()


def test_killed_append_then_next_run_cleans_and_appends(store_path):
    before = _scores(Store(store_path))
    proc = _run_child("append", store_path, "append:segment-written")
    assert proc.returncode == 86, proc.stderr[-2000:]
    assert (store_path / "segments" / "seg-00001").exists()  # written, never committed
    st = Store(store_path)
    assert len(st.manifest["segments"]) == 1
    _same(before, _scores(st))
    proc = _run_child("append", store_path, None)  # the next run removes the leftover and appends
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "removing" in proc.stderr and "seg-00001" in proc.stderr
    assert Store(store_path).n_signatures == st.n_signatures + 10
    proc = _run_child("compact", store_path, "compact:segment-written")
    assert proc.returncode == 86
    assert len(Store(store_path).manifest["segments"]) == 2
    assert [r for r in cleanup_store(store_path) if "seg-00002" in r]
    Store(store_path).verify()


# ------------------------------------------------------------------ full disk
def test_full_disk_at_the_manifest_write_of_an_overwrite(store_path, level5, monkeypatch):
    gct, info, _ = level5
    before = _scores(Store(store_path))
    manifest = (store_path / "manifest.json").read_text()
    monkeypatch.setenv("OPENCMAP_FAULT_AT", "manifest:tmp-written:enospc")
    with pytest.raises(StoreDiskSpaceError, match="disk full while building"):
        build_store(store_path, gct, sig_info=info, columns=np.arange(60), overwrite=True)
    assert (store_path / "manifest.json").read_text() == manifest
    assert _leftovers(store_path) == []
    _same(before, _scores(Store(store_path)))


def test_full_disk_during_background_writes(store_path, monkeypatch):
    monkeypatch.setenv("OPENCMAP_FAULT_AT", "background:file-written:enospc")
    manifest = (store_path / "manifest.json").read_text()
    with pytest.raises(StoreDiskSpaceError, match="tau backgrounds"):
        build_background(store_path, n_genes=20)
    assert (store_path / "manifest.json").read_text() == manifest
    assert not (store_path / "backgrounds").exists() or not any(p.is_dir() and p.name.startswith("sig") for p in (store_path / "backgrounds").rglob("*"))
    assert _leftovers(store_path) == []


def test_cli_full_disk_is_one_line_exit_2(store_path, level5, tmp_path):
    gct, info, _ = level5
    from opencmap.io.gctx import write_gctx

    src = tmp_path / "m.gctx"
    write_gctx(gct, src)
    info_path = tmp_path / "sig_info.txt"
    info.to_csv(info_path, sep="\t", index=False)
    env = {**os.environ, "PYTHONPATH": SRC, "OPENCMAP_FAULT_AT": "manifest:tmp-written:enospc"}
    manifest = (store_path / "manifest.json").read_text()
    proc = subprocess.run([sys.executable, "-c", "from opencmap.cli import main; main()", "store", "build", str(src), str(store_path), "--sig-info", str(info_path),
                           "--overwrite"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "disk full" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert (store_path / "manifest.json").read_text() == manifest
    assert _leftovers(store_path) == []


def test_info_verify_removes_leftovers(store_path):
    junk = [store_path.parent / f".{store_path.name}.building-999999-x", store_path / "segments" / ".seg-00001.building-999999-y",
            store_path / ".manifest.json.abc.tmp"]
    junk[0].mkdir()
    junk[1].mkdir()
    junk[2].write_text("{")
    from click.testing import CliRunner

    from opencmap.cli import cli

    res = CliRunner().invoke(cli, ["store", "info", str(store_path), "--verify"])
    assert res.exit_code == 0, res.output
    assert not any(p.exists() for p in junk)
    assert "removed" in res.output
    shutil.rmtree(store_path)


def test_fdr_null_leftovers_of_dead_builds_only_are_removed(store_path):
    from opencmap.io.store.writer import _cleanup_fdr_null

    root = store_path / "fdr_null"
    dead, live = root / ".k.pid999999-abc", root / ".k.pid1-abc"  # pid 1 is alive
    dead.mkdir(parents=True)
    live.mkdir()
    removed: list[str] = []
    _cleanup_fdr_null(root, removed)
    assert removed == [str(dead)] and live.exists() and not dead.exists()


# ------------------------------------------------------------------ long-running readers
def test_open_store_follows_a_new_generation_committed_by_another_process(store_path):
    """A Store held open across `store background` in another process: current() reopens the new
    generation (its tau, recorded in the result's provenance); the old object still answers."""
    build_background(store_path, same_cell=True, n_genes=20)
    held = Store(store_path)
    old = _scores(held)
    old_gen = held.generation
    serving = Engine(held)  # an engine serving the old generation (its backgrounds mapped by a first query)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        first = serving.run(_query(held), summaries=False, fdr=False)
    assert not held.changed() and held.current() is held
    proc = _run_child("background", store_path, None)  # same_cell=False: other backgrounds
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert held.changed()
    new_store = held.current()
    assert new_store is not held and new_store.generation["generation"] == old_gen["generation"] + 1
    assert new_store.generation["manifest"] != old_gen["manifest"] and not new_store.changed()
    assert load_background(new_store, "sig").entry["params"]["same_cell"] is False
    new = _scores(new_store)
    _same(new, _scores(Store(store_path)))  # what a fresh open answers
    assert not np.array_equal(new["tau"], old["tau"], equal_nan=True)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        res = Engine(new_store).run(_query(new_store), summaries=False, fdr=False)
    assert res.provenance["store"] == new_store.generation and res.describe()["provenance"]["store"]["generation"] == old_gen["generation"] + 1
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        again = serving.run(_query(held), summaries=False, fdr=False)  # still the generation it mapped
    _same({k: np.asarray(v) for k, v in first.level("sig").metrics.items()}, {k: np.asarray(v) for k, v in again.level("sig").metrics.items()})
    assert again.provenance["store"] == old_gen


def test_compaction_checks_what_it_copies_and_writes_tile_hashes(level5, tmp_path):
    from opencmap.query.store import compact_store

    gct, info, _ = level5
    n = gct.shape[1]

    def two_segments(path: Path) -> Store:
        build_store(path, gct.take(cols=np.arange(n // 2)), sig_info=info.iloc[: n // 2])
        return append_store(path, gct.take(cols=np.arange(n // 2, n)), sig_info=info.iloc[n // 2 :])

    store = two_segments(tmp_path / "ok")
    expected = _scores(store)
    compacted = compact_store(store.path)
    assert len(compacted.segments) == 1 and compacted.tile_checked and compacted.format_version == 3
    _same(expected, _scores(compacted))
    compacted.verify()
    bad = two_segments(tmp_path / "bad")
    seg = bad.segments[1]
    _flip_cell(bad.path, f"segments/{seg.name}/{bad.default_space}/scores.npy", 40, 2)
    with pytest.raises(StoreCorruptError, match=rf"{seg.name}/{bad.default_space}/scores\.npy is corrupt: gene row 40"):
        compact_store(bad.path)
    assert len(Store(bad.path).segments) == 2  # nothing committed


def test_concurrent_queries_on_one_open_store_share_its_checks(store_path):
    from concurrent.futures import ThreadPoolExecutor

    expected = _scores(Store(store_path))
    store = Store(store_path)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _scores(store), range(8)))
    for got in results:
        _same(expected, got)
    seen = store.segments[0].tiles(store.default_space, "ranks")[1]
    rows = store.space().positions(list(_query(store).up) + list(_query(store).down))
    assert seen[rows].all() and int(seen.sum()) == seen[rows].size  # exactly the query's tiles, each marked
