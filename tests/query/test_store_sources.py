"""The store's signature sources (GCTX through the io layer) and compaction of large stores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from opencmap.backends import Settings
from opencmap.core.gct import GCT
from opencmap.errors import StoreError
from opencmap.io import write_gct, write_gctx
from opencmap.io.store import reader as store_reader
from opencmap.io.store import writer as store_writer_mod
from opencmap.query.store import SignatureSource, Store, append_store, build_store, compact_store


def _small_gct(n_rows: int = 6, n_cols: int = 11) -> GCT:
    data = np.random.default_rng(2).normal(size=(n_rows, n_cols)).astype(np.float32)
    rows = pd.DataFrame({"pr_is_lm": [1] * n_rows}, index=pd.Index([f"g{i}" for i in range(n_rows)], dtype=object))
    cols = pd.DataFrame({"pert_id": [f"P{i}" for i in range(n_cols)]}, index=pd.Index([f"s{i}" for i in range(n_cols)], dtype=object))
    return GCT(data, row_meta=rows, col_meta=cols)


@pytest.mark.parametrize("options", [{}, {"compression": "gzip"}, {"chunks": 3}])
def test_gctx_source_reads_blocks_into_the_buffer(tmp_path, options):
    gct = _small_gct()
    write_gctx(gct, tmp_path / "s.gctx", **options)
    source = SignatureSource(tmp_path / "s.gctx")
    try:
        assert source.needs_buffer()
        buf = np.empty((4, source.n_rows), dtype=np.float32)
        for start, stop in ((0, 4), (4, 8), (8, 11), (10, 11)):
            block = source.sig_block(start, stop, buf)
            assert block.shape == (stop - start, source.n_rows) and np.shares_memory(block, buf)
            assert block.flags.c_contiguous
            np.testing.assert_array_equal(block, gct.data[:, start:stop].T)
    finally:
        source.close()
    source.close()  # idempotent


def test_text_source_needs_no_buffer(tmp_path):
    gct = _small_gct()
    write_gct(gct, tmp_path / "s.gct")
    source = SignatureSource(tmp_path / "s.gct")
    assert not source.needs_buffer()
    np.testing.assert_allclose(source.sig_block(2, 5), gct.data[:, 2:5].T, rtol=1e-6)
    source.close()


def test_gctx_source_shape_must_match_its_metadata(tmp_path):
    write_gctx(_small_gct(), tmp_path / "s.gctx")
    source = SignatureSource(tmp_path / "s.gctx")
    source.n_rows -= 1  # as if the metadata read disagreed with the matrix
    with pytest.raises(StoreError, match="does not match"):
        source.needs_buffer()
    assert source._gctx is None  # the file was closed again


def test_compact_of_a_large_store_maps_plainly_and_is_byte_identical(level5, tmp_path, monkeypatch):
    gct, info, _ = level5
    big = Settings(random_access_fraction=0.0)  # as if larger than RAM
    store = build_store(tmp_path / "s", gct.take(cols=np.arange(50)), sig_info=info.iloc[:50], block_size=7, settings=big)
    store = append_store(store.path, gct.take(cols=np.arange(50, gct.shape[1])), sig_info=info.iloc[50:], block_size=5, settings=big)
    assert Store(store.path, settings=big).segments[0].random_access

    def no_prefetch(*args, **kwargs):
        raise AssertionError("compaction reads sequentially; it needs no prefetch")

    monkeypatch.setattr(store_reader, "prefetch_columns", no_prefetch)
    compacted = compact_store(store.path, settings=big)
    assert len(compacted.manifest["segments"]) == 1
    compacted.verify()
    whole = build_store(tmp_path / "whole", gct, sig_info=info)
    sums = lambda s: {k: v["checksum"] for k, v in s.manifest["segments"][0]["files"].items() if k.endswith(".npy")}  # noqa: E731
    assert sums(compacted) == sums(whole)


def test_compact_names_a_missing_segment_file(level5, tmp_path):
    gct, info, _ = level5
    store = build_store(tmp_path / "s", gct.take(cols=np.arange(30)), sig_info=info.iloc[:30])
    store = append_store(store.path, gct.take(cols=np.arange(30, 40)), sig_info=info.iloc[30:40])
    missing = store.segments[1].dir / store.default_space / "scores.npy"
    missing.unlink()
    with pytest.raises(StoreError, match="store file missing"):
        compact_store(store.path)
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert len(manifest["segments"]) == 2  # nothing committed
