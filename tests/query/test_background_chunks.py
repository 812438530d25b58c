"""tau backgrounds built a chunk of queries at a time (Settings.background_memory): the same bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from opencmap.backends import LocalBackend, Settings
from opencmap.kernels.ncs import ncs, signed_any
from opencmap.query import background as bgmod
from opencmap.query.background import build_background, exemplar_mask, query_chunk
from opencmap.query.store import Store, build_store


def _files(store_path: Path) -> dict[str, bytes | dict]:
    """Every file under backgrounds/ (queries.json without its creation time) and the manifest
    entries (without it either), generation numbers left out of folder names."""
    root = store_path / "backgrounds"
    out: dict[str, bytes | dict] = {}
    for f in sorted(root.rglob("*")):
        if f.is_file():
            rel = re.sub(r"\.g\d+/", "/", str(f.relative_to(root)))  # folders are named by generation
            if f.suffix == ".json":
                doc = json.loads(f.read_text())
                doc.get("params", doc).pop("created", None)
                out[rel] = doc
            else:
                out[rel] = f.read_bytes()
    entries = json.loads((store_path / "manifest.json").read_text())["backgrounds"]
    for entry in entries.values():
        entry["params"].pop("created", None)
        entry["dir"] = re.sub(r"\.g\d+$", "", entry["dir"])
    out["manifest"] = entries
    return out


def _budget(store: Store, n_chunks: int) -> int:
    n_s = store.n_signatures
    n_q = int(exemplar_mask(store.sig_info).sum())
    per = -(-n_q // n_chunks)
    fixed = Settings().query_block_bytes + Settings().es_block_bytes  # the scorer's buffers
    return fixed + 4 * n_q * n_q + bgmod.BYTES_PER_PAIR * n_s * per


@pytest.fixture(scope="module")
def store_path(level5, tmp_path_factory):
    gct, info, _ = level5
    path = tmp_path_factory.mktemp("chunks") / "s"
    build_store(path, gct, sig_info=info, block_size=50)
    return path


def test_query_chunk_plan():
    assert query_chunk(1000, 10, 1000 * 10 * bgmod.BYTES_PER_PAIR) == 10  # fits: one pass
    assert query_chunk(1000, 10, 1000 * 10 * bgmod.BYTES_PER_PAIR - 1) == 9
    assert query_chunk(1000, 10, 4 * 100 + bgmod.BYTES_PER_PAIR * 1000 * 3) == 3
    assert query_chunk(1000, 10, 1) == 1
    assert query_chunk(1000, 10, 10**6 + 1000 * 10 * bgmod.BYTES_PER_PAIR, fixed=10**6) == 10
    assert query_chunk(1000, 10, 10**6 + 4 * 100 + bgmod.BYTES_PER_PAIR * 1000 * 3, fixed=10**6) == 3


@pytest.mark.parametrize(("symmetric", "same_cell"), [(True, True), (False, True), (True, False), (False, False)])
def test_chunked_build_is_byte_identical(store_path, pcl, symmetric, same_cell):
    store = Store(store_path)
    build_background(store, pcl=pcl, tail="all", symmetric=symmetric, same_cell=same_cell)
    whole = _files(store_path)
    calls: list[tuple[int, int]] = []
    backend = LocalBackend(settings=Settings(background_memory=_budget(store, 3)))
    build_background(Store(store_path), pcl=pcl, tail="all", symmetric=symmetric, same_cell=same_cell, backend=backend,
                     progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    chunked = _files(store_path)
    assert sorted(whole) == sorted(chunked)
    assert {k.split("/")[0] for k in whole} >= {"up", "down", "manifest"}
    assert any("pcl_cell" in k for k in whole)
    for key in whole:
        assert whole[key] == chunked[key], key
    # three chunks, each reporting its signatures; ends at chunks x signatures
    assert calls[-1][0] == calls[-1][1] == 3 * store.n_signatures
    assert not list((store_path / "backgrounds").glob(".*"))


def test_chunked_build_one_query_per_chunk(store_path):
    store = Store(store_path)
    qs = list(store.sig_ids[:7])
    build_background(store, query_sigs=qs, tail="up")
    whole = _files(store_path)
    build_background(Store(store_path), query_sigs=qs, tail="up", backend=LocalBackend(settings=Settings(background_memory=1)))
    assert _files(store_path) == whole


def test_failure_mid_build_leaves_old_backgrounds(store_path, pcl, monkeypatch):
    store = Store(store_path)
    build_background(store, pcl=pcl)
    before = _files(store_path)
    listing = sorted(str(p.relative_to(store_path)) for p in store_path.rglob("*"))
    written: list[str] = []
    real = bgmod.write_background

    def failing(st, key, *args, **kwargs):
        if written:
            raise RuntimeError("disk unplugged")
        written.append(key)
        return real(st, key, *args, **kwargs)

    monkeypatch.setattr(bgmod, "write_background", failing)
    with pytest.raises(RuntimeError, match="unplugged"):
        build_background(Store(store_path), pcl=pcl, backend=LocalBackend(settings=Settings(background_memory=_budget(store, 2))))
    assert written  # it failed after one level was written
    assert sorted(str(p.relative_to(store_path)) for p in store_path.rglob("*")) == listing
    assert _files(store_path) == before
    Store(store_path).verify()


def test_disk_space_checked_first(store_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from opencmap.errors import DiskSpaceError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 0))
    store = Store(store_path)
    with pytest.raises(DiskSpaceError, match=r"tau backgrounds .* needs about .* bytes"):
        build_background(store, backend=LocalBackend(settings=Settings(background_memory=_budget(store, 2))))
    assert not list((store_path / "backgrounds").glob(".*"))


def test_ncs_group_signs_make_columns_independent():
    # group 1's references are positive only in column 0: gutc decides over all columns
    groups = np.array([0, 0, 0, 1, 1, 1])
    is_ref = np.array([True, True, False, True, True, False])
    scores = np.array([[0.5, -0.2, 0.3], [-0.4, 0.6, 0.2], [0.3, 0.1, -0.5],
                       [0.2, -0.3, -0.1], [-0.1, -0.2, -0.4], [0.7, 0.4, 0.2]])  # fmt: skip
    whole = ncs(scores, groups, is_ref, mode="gutc")
    alone = ncs(scores[:, 1:], groups, is_ref, mode="gutc")
    assert not np.array_equal(alone, whole[:, 1:], equal_nan=True)  # the flags matter
    flags = signed_any(scores, groups, is_ref, 2)
    assert flags[0].tolist() == [True, True] and flags[1].tolist() == [True, True]
    for cols in (slice(0, 1), slice(1, 3), slice(2, 3)):
        part = ncs(scores[:, cols], groups, is_ref, mode="gutc", group_signs=flags)
        assert np.array_equal(part, whole[:, cols], equal_nan=True)


def test_scratch_of_a_killed_build_is_cleaned_up(store_path):
    from opencmap.query.store import cleanup_store

    scratch = store_path / "backgrounds" / ".scratch-g99.tmp"
    scratch.mkdir(parents=True)
    (scratch / "sig-0.npy").write_bytes(b"left by a killed build")
    removed = cleanup_store(store_path)
    assert not scratch.exists() and str(scratch) in removed
