"""Store build path: positioned-write pipeline with bounded memory (kernel: tests/kernels/test_store_ranks.py).

The reference is the plain construction the store format defines (and the previous memmap
builder computed): per space, the float32 scores gene-major and ``descending_ranks`` along the
genes with NaN -> 0, compared byte for byte with the files the pipeline writes.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pandas as pd
import pytest
from opencmap.backends import Settings
from opencmap.core.gct import GCT
from opencmap.errors import StoreError
from opencmap.kernels.ranks import descending_ranks
from opencmap.io.store import reader as store_reader
from opencmap.io.store import writer as store_writer_mod
from opencmap.query.store import build_store

def reference_arrays(data: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain gene-major ranks (uint16, NaN -> 0) and scores of ``rows`` of a genes x sigs matrix."""
    scores = np.asarray(data[rows], dtype=np.float32)
    ranks = descending_ranks(scores, axis=0, dtype=np.uint16)
    ranks[np.isnan(scores)] = 0
    return ranks, scores


# ---------------------------------------------------------------------------------- build pipeline
@pytest.fixture(scope="module")
def tied(level5):
    """The synthetic Level 5 with heavy ties (values rounded) and some NaN."""
    gct, info, _ = level5
    rng = np.random.default_rng(11)
    data = np.round(np.asarray(gct.data, dtype=np.float32) * 2) / 2
    data[rng.random(data.shape) < 0.01] = np.nan
    data[data == 0] = rng.choice(np.array([0.0, -0.0], np.float32), size=int((data == 0).sum()))
    return GCT(data, row_meta=gct.row_meta, col_meta=gct.col_meta), info


def _assert_files_equal_reference(store, gct):
    rids = pd.Index([str(r) for r in gct.rids])
    for name, sp in store.spaces.items():
        rows = rids.get_indexer(sp.gene_ids)
        exp_r, exp_s = reference_arrays(gct.data, rows)
        seg = store.segments[0].dir / name
        np.testing.assert_array_equal(np.load(seg / "ranks.npy"), exp_r)
        np.testing.assert_array_equal(np.load(seg / "scores.npy"), exp_s)
        assert np.load(seg / "ranks.npy").dtype == np.uint16
        if store.manifest["signature_major"]:
            np.testing.assert_array_equal(np.load(seg / "scores_by_sig.npy"), exp_s.T)


@pytest.mark.parametrize("block_size", [1, 3, 64, None])
def test_build_equals_reference_for_any_block(tied, tmp_path, block_size):
    gct, info = tied
    # drop written pages after every block, as for a segment larger than RAM
    release = Settings(build_sync_bytes=1, build_release_fraction=0.0)
    store = build_store(tmp_path / "s", gct, sig_info=info, block_size=block_size, settings=release)
    _assert_files_equal_reference(store, gct)
    store.verify()


def test_gctx_source_tiny_blocks_is_byte_identical(tied, tmp_path):
    from opencmap.io import write_gctx

    gct, info = tied
    write_gctx(gct, tmp_path / "l5.gctx")
    release = Settings(build_sync_bytes=1000, build_release_fraction=0.0)
    calls = []
    small = build_store(tmp_path / "a", tmp_path / "l5.gctx", sig_info=info, block_size=2, progress=lambda d, t: calls.append((d, t)), settings=release)
    whole = build_store(tmp_path / "b", gct, sig_info=info, signature_major=True)
    _assert_files_equal_reference(small, gct)
    n = gct.shape[1]
    assert calls[-1] == (n, n) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    files = lambda s: {rel: e["checksum"] for rel, e in s.manifest["segments"][0]["files"].items()}  # noqa: E731
    assert files(small) == files(whole)  # same bytes whatever the block size and source


def test_no_signature_major_copy(tied, tmp_path):
    gct, info = tied
    store = build_store(tmp_path / "s", gct, sig_info=info, spaces=["lm"], signature_major=False, block_size=10)
    assert not (store.segments[0].dir / "lm" / "scores_by_sig.npy").exists()
    _assert_files_equal_reference(store, gct)
    pos = np.array([4, 0, 9])
    lm = pd.Index([str(r) for r in gct.rids]).get_indexer(store.space("lm").gene_ids)
    np.testing.assert_array_equal(store.signature_scores(pos, space="lm"), reference_arrays(gct.data, lm)[1][:, pos].T)


def test_failure_in_writer_leaves_nothing(tied, tmp_path, monkeypatch):
    gct, info = tied
    real = store_writer_mod.NpyOut.write_columns
    count = [0]

    def flaky(self, block, start, k):
        count[0] += 1
        if count[0] == 5:
            raise OSError(errno.EIO, "disk went away")
        return real(self, block, start, k)

    monkeypatch.setattr(store_writer_mod.NpyOut, "write_columns", flaky)
    with pytest.raises(OSError, match="disk went away"):
        build_store(tmp_path / "x", gct, sig_info=info, block_size=7)
    assert os.listdir(tmp_path) == []


def test_full_disk_is_a_store_error(tied, tmp_path, monkeypatch):
    gct, info = tied

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(StoreError, match="not enough disk space"):
        build_store(tmp_path / "x", gct, sig_info=info)
    assert os.listdir(tmp_path) == []


def test_auto_block_size_is_bounded():
    k = store_writer_mod._auto_block_size(473_647, 10_174, [10_174], False)
    per_sig = 8 * 10_174 + 12 * 10_174
    assert 256 <= k <= 65536 and k * per_sig <= Settings().build_memory
    assert store_writer_mod._auto_block_size(10, 10_174, [10_174], True) == 10
    assert store_writer_mod._auto_block_size(10_000, 10_174, [10_174], False) == 2500  # >= 4 blocks to overlap
    assert store_writer_mod._auto_block_size(10**6, 5_000_000, [60_000], True) == 256  # floor: long extents


# ---------------------------------------------------------------------------------- reading stores larger than RAM
class _FakeMap:
    def __init__(self):
        self.calls = []

    def madvise(self, option, start=0, length=None):
        self.calls.append((option, start, length))


class _FakeArray:
    def __init__(self, shape, dtype, offset):
        self.shape, self.dtype, self.offset, self.ndim = shape, np.dtype(dtype), offset, 2
        self._mmap = _FakeMap()


@pytest.mark.parametrize(("dtype", "lo", "hi"), [(np.uint16, 0, 5000), (np.float32, 123, 4567), (np.float32, 0, 9000)])
def test_prefetch_covers_exactly_the_pages_of_the_extents(dtype, lo, hi):
    import mmap

    arr = _FakeArray((40, 9000), dtype, offset=128)
    rows = np.array([7, 3, 3, 8, 30, 39, 0])
    store_reader.prefetch_columns(arr, rows, lo, hi)
    calls = arr._mmap.calls
    assert calls and all(opt == mmap.MADV_WILLNEED and start % mmap.PAGESIZE == 0 for opt, start, _ in calls)
    covered = np.zeros(128 + 40 * 9000 * arr.dtype.itemsize + mmap.PAGESIZE, dtype=bool)
    for _, start, length in calls:
        assert length <= store_reader._WILLNEED_CHUNK
        assert not covered[start : start + length].any()  # merged, no range asked twice
        covered[start : start + length] = True
    item = arr.dtype.itemsize
    wanted = np.zeros_like(covered)
    for r in np.unique(rows):
        wanted[128 + (r * 9000 + lo) * item : 128 + (r * 9000 + hi) * item] = True
    assert covered[wanted].all()  # every wanted byte is read ahead
    pages = lambda mask: set(np.flatnonzero(mask) // mmap.PAGESIZE)  # noqa: E731
    assert pages(covered) == pages(wanted)  # and nothing on other pages
    store_reader.prefetch_columns(np.zeros((3, 3)), rows[:1], 0, 3)  # not a memory map: no-op


def test_prefetch_cells_covers_the_pages_of_whole_signatures():
    import mmap

    arr = _FakeArray((30, 5000), np.float32, offset=128)
    cols = np.array([4999, 0, 2047, 2048, 77])
    store_reader._prefetch_cells(arr, cols)
    got = set()
    for _, start, length in arr._mmap.calls:
        assert start % mmap.PAGESIZE == 0 and length % mmap.PAGESIZE == 0
        got |= set(range(start // mmap.PAGESIZE, (start + length) // mmap.PAGESIZE))
    want = {(128 + (r * 5000 + c) * 4) // mmap.PAGESIZE for r in range(30) for c in cols}
    assert got == want


def test_random_access_store_reads_the_same(tied, tmp_path):
    gct, info = tied
    built = build_store(tmp_path / "s", gct, sig_info=info, block_size=10)
    big = store_reader.Store(built.path, settings=Settings(random_access_fraction=0.0))  # as if larger than RAM
    assert big.random_access
    rows = np.array([5, 0, 250, 17])
    a = list(built.iter_gene_rows(rows, space="bing", block_size=9))
    b = list(big.iter_gene_rows(rows, space="bing", block_size=9))
    for x, y in zip(a, b, strict=True):
        assert x[:2] == y[:2]
        np.testing.assert_array_equal(x[2], y[2])
        np.testing.assert_array_equal(x[3], y[3])
    pos = np.array([3, 40, 41, 0])
    np.testing.assert_array_equal(big.signature_scores(pos, space="lm"), built.signature_scores(pos, space="lm"))
    np.testing.assert_array_equal(big.signature_ranks(pos), built.signature_ranks(pos))
    nosig = store_reader.Store(build_store(tmp_path / "n", gct, sig_info=info, signature_major=False).path, settings=big.settings)
    assert nosig.random_access  # whole signatures from gene-major files, pages read ahead together
    np.testing.assert_array_equal(nosig.signature_scores(pos), built.signature_scores(pos))
    big.prefetch(rows[rows < 100], 3, 50, space="lm")
    big.prefetch(np.array([-1, 10**6]), 0, 10**6)  # out-of-range rows/columns are ignored
    big.prefetch(rows, 0, big.n_signatures, with_ranks=False)
    assert not store_reader.Store(built.path, settings=Settings(random_access_fraction=0.5)).random_access  # a small store keeps the OS's read-around


def test_engine_on_a_random_access_store_prefetches_and_answers_the_same(tied, tmp_path, monkeypatch):
    from opencmap.query.engine import Engine
    from opencmap.query.genesets import Query

    gct, info = tied
    built = build_store(tmp_path / "s", gct, sig_info=info, block_size=10)
    genes = built.space().gene_ids
    query = Query("q", up=tuple(genes[:15]), down=tuple(genes[-15:]))
    want = Engine(built).run(query, block_size=7).level("sig").metrics
    big = store_reader.Store(built.path, settings=Settings(random_access_fraction=0.0))
    calls = []
    real = big.prefetch
    monkeypatch.setattr(big, "prefetch", lambda *a, **k: (calls.append((a[1], a[2])), real(*a, **k)))
    for metric in ("wtcs", "cs"):
        want = Engine(built).run(query, metric=metric, block_size=7).level("sig").metrics
        got = Engine(big).run(query, metric=metric, block_size=7).level("sig").metrics
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{metric} {name}")
    assert calls and calls[0][0] == 0 and max(stop for _, stop in calls) == big.n_signatures
