"""Reference store: layout, ranks, append = rebuild, versions, corruption, memory mapping."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import IdNotFoundError, StoreError, ValidationError, VersionError
from opencmap.kernels.ranks import descending_ranks
from opencmap.query.store import STORE_FORMAT_VERSION, Store, append_store, build_store


def _all_rows(store: Store, space: str, rows: np.ndarray, block_size: int = 7):
    ranks, scores = [], []
    for _, _, r, s in store.iter_gene_rows(rows, space=space, block_size=block_size):
        ranks.append(r)
        scores.append(s)
    return np.concatenate(ranks, axis=1), np.concatenate(scores, axis=1)


@pytest.fixture()
def small(level5, tmp_path):
    gct, info, _ = level5
    return build_store(tmp_path / "s", gct, sig_info=info, block_size=16), gct, info


def test_layout_ranks_and_scores(small):
    store, gct, info = small
    assert store.format_version == STORE_FORMAT_VERSION
    assert store.n_signatures == gct.shape[1]
    assert {k: v.n_features for k, v in store.spaces.items()} == {"lm": 100, "bing": 300, "full": 400}
    assert store.default_space == "bing"
    assert list(store.sig_info["sig_id"]) == list(gct.cids)
    lm_rows = np.flatnonzero(gct.row_meta["pr_is_lm"].to_numpy() == 1)
    ranks, scores = _all_rows(store, "lm", np.arange(100))
    np.testing.assert_array_equal(scores, gct.data[lm_rows])
    # ranks are computed within the space: a permutation of 1..100 per signature
    np.testing.assert_array_equal(ranks, descending_ranks(gct.data[lm_rows], axis=0))
    assert ranks.dtype == np.uint16
    # signature-major copy and rank access agree with the gene-major files
    pos = np.array([5, 0, 33])
    np.testing.assert_array_equal(store.signature_scores(pos, space="lm"), gct.data[lm_rows][:, pos].T)
    np.testing.assert_array_equal(store.signature_ranks(pos, space="lm"), ranks[:, pos])


def test_subset_of_rows_read_and_memory_mapped(small):
    store, gct, _ = small
    seg = store.segments[0]
    assert isinstance(seg.array("bing", "scores"), np.memmap)
    assert isinstance(seg.array("bing", "ranks"), np.memmap)
    rows = np.array([250, 3, 17])
    blocks = list(store.iter_gene_rows(rows, space="bing", block_size=20))
    assert [b[1] - b[0] for b in blocks] == [20, 20, 20, 20, 10]
    assert all(b[3].shape[0] == 3 and not isinstance(b[3], np.memmap) for b in blocks)
    _, scores = _all_rows(store, "bing", rows)
    np.testing.assert_array_equal(scores, gct.data[rows])


def test_nan_scores_get_rank_zero(level5, tmp_path):
    gct, info, _ = level5
    g = gct.copy()
    g.data[[0, 5], 2] = np.nan
    store = build_store(tmp_path / "nan", g, sig_info=info, spaces=["lm"])
    ranks = store.signature_ranks([2], space="lm")[:, 0]
    assert ranks[0] == 0 and ranks[5] == 0
    assert sorted(ranks[ranks > 0]) == list(range(1, 99))


def test_append_equals_full_rebuild(level5, tmp_path):
    gct, info, _ = level5
    full = build_store(tmp_path / "full", gct, sig_info=info, block_size=64)
    half = 37
    first = gct.take(cols=np.arange(half))
    second = gct.take(cols=np.arange(half, gct.shape[1]))
    part = build_store(tmp_path / "part", first, sig_info=info.iloc[:half], block_size=8)
    appended = append_store(part.path, second, sig_info=info.iloc[half:], block_size=5)
    assert appended.n_signatures == full.n_signatures
    assert len(appended.manifest["segments"]) == 2
    pd.testing.assert_frame_equal(appended.sig_info, full.sig_info)
    for space in full.spaces:
        rows = np.arange(full.space(space).n_features)
        r1, s1 = _all_rows(full, space, rows, block_size=1000)
        r2, s2 = _all_rows(appended, space, rows, block_size=11)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(s1, s2)
        pos = np.arange(full.n_signatures)
        np.testing.assert_array_equal(full.signature_scores(pos, space=space), appended.signature_scores(pos, space=space))
    appended.verify()


def test_append_rejects_duplicates_and_missing_genes(small, level5):
    store, gct, info = small
    with pytest.raises(StoreError, match="already in the store"):
        append_store(store.path, gct.take(cols=[0]), sig_info=info.iloc[[0]])
    g = gct.take(rows=np.arange(50), cols=[0])
    g.col_meta.index = pd.Index(["new"], dtype=object)
    new_info = info.iloc[[0]].assign(sig_id="new")
    from opencmap.core.gct import GCT

    g = GCT(g.data, rids=g.rids, cids=["new"])
    with pytest.raises(IdNotFoundError, match="lack"):
        append_store(store.path, g, sig_info=new_info)


def test_build_refuses_existing_and_overwrites(small, level5):
    store, gct, info = small
    with pytest.raises(StoreError, match="already exists"):
        build_store(store.path, gct, sig_info=info)
    again = build_store(store.path, gct.take(cols=np.arange(10)), sig_info=info.iloc[:10], overwrite=True)
    assert again.n_signatures == 10
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".")]


def test_failed_build_leaves_nothing(level5, tmp_path):
    gct, info, _ = level5
    calls = []

    def boom(done, total):
        calls.append(done)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        build_store(tmp_path / "x", gct, sig_info=info, block_size=10, progress=boom)
    assert calls == [10]
    assert list(tmp_path.iterdir()) == []


def test_newer_version_is_refused(small):
    store, _, _ = small
    mpath = store.path / "manifest.json"
    m = json.loads(mpath.read_text())
    m["format_version"] = STORE_FORMAT_VERSION + 1
    mpath.write_text(json.dumps(m))
    with pytest.raises(VersionError, match="newer than this opencmap supports"):
        Store(store.path)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda text: text[: len(text) // 2], "corrupt"),
        (lambda text: json.dumps({"format": "something-else"}), "not an opencmap reference store"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "segments"}), "'segments' is missing"),
    ],
)
def test_corrupt_manifest(small, mutate, match):
    store, _, _ = small
    mpath = store.path / "manifest.json"
    mpath.write_text(mutate(mpath.read_text()))
    with pytest.raises(StoreError, match=match):
        Store(store.path)


def test_truncated_and_modified_files(small):
    store, _, _ = small
    target = store.path / "segments" / "seg-00000" / "bing" / "scores.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    Store(store.path)  # same size: opens, but verify finds it
    with pytest.raises(StoreError, match="checksum mismatch"):
        Store(store.path).verify()
    target.write_bytes(bytes(data[:-4]))
    with pytest.raises(StoreError, match="corrupt or was modified"):
        Store(store.path)


def test_missing_store_and_bad_space(tmp_path, small):
    with pytest.raises(StoreError, match="no reference store"):
        Store(tmp_path / "nope")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(StoreError, match="manifest.json is missing"):
        Store(tmp_path / "empty")
    store, _, _ = small
    with pytest.raises(StoreError, match="no feature space 'xyz'"):
        store.space("xyz")


def test_spaces_from_gene_lists_and_errors(level5, tmp_path):
    gct, info, _ = level5
    genes = [str(1000 + i) for i in (5, 2, 9, 7)]
    store = build_store(tmp_path / "gl", gct, sig_info=info, spaces=["lm"], gene_lists={"mine": genes})
    assert list(store.space("mine").gene_ids) == sorted(genes)  # store (input) order
    with pytest.raises(IdNotFoundError):
        build_store(tmp_path / "gl2", gct, sig_info=info, gene_lists={"bad": ["nope"]})
    with pytest.raises(ValidationError, match="cannot be derived"):
        build_store(tmp_path / "gl3", gct, sig_info=info, spaces=["weird"])
    with pytest.raises(ValidationError, match="block_size"):
        build_store(tmp_path / "gl4", gct, sig_info=info, block_size=0)


def test_build_from_gctx_file_in_blocks(level5, tmp_path):
    from opencmap.io import write_gctx, write_table

    gct, info, _ = level5
    write_gctx(gct, tmp_path / "l5.gctx")
    write_table(info, tmp_path / "sig_info.txt")
    from_file = build_store(tmp_path / "f", tmp_path / "l5.gctx", sig_info=tmp_path / "sig_info.txt", block_size=13)
    in_memory = build_store(tmp_path / "m", gct, sig_info=info)
    rows = np.arange(300)
    for a, b in zip(_all_rows(from_file, "bing", rows), _all_rows(in_memory, "bing", rows), strict=True):
        np.testing.assert_array_equal(a, b)
    assert list(from_file.sig_info["pert_id"]) == list(info["pert_id"])


def test_fast_row_ranks_equal_reference_ranks():
    from opencmap.kernels.ranks import descending_ranks_rows

    rng = np.random.default_rng(7)
    special = np.array([0.0, -0.0, 1.5, -1.5, np.nan, np.inf, -np.inf, 2.0, 1e-40, -1e-40], dtype=np.float32)
    for trial in range(60):
        k, n = int(rng.integers(1, 5)), int(rng.integers(1, 200))
        if trial % 2:
            x = rng.choice(special, size=(k, n))
        else:
            x = rng.standard_normal((k, n)).astype(np.float32)
        np.testing.assert_array_equal(descending_ranks_rows(x), descending_ranks(x, axis=1, dtype=np.uint16))
