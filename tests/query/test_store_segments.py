"""Store segments: append keeping stale tau backgrounds, compaction, segment naming."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from opencmap.query.background import build_background, load_background
from opencmap.query.store import Store, append_store, build_store, compact_store


def _everything(store: Store) -> dict[str, np.ndarray]:
    out = {}
    pos = np.arange(store.n_signatures)
    for name, sp in store.spaces.items():
        rows = np.arange(sp.n_features)
        parts = list(store.iter_gene_rows(rows, space=name, block_size=17))
        out[f"{name}/ranks"] = np.concatenate([p[2] for p in parts], axis=1)
        out[f"{name}/scores"] = np.concatenate([p[3] for p in parts], axis=1)
        out[f"{name}/by_sig"] = store.signature_scores(pos, space=name)
    return out


@pytest.fixture()
def three_segments(level5, tmp_path):
    gct, info, _ = level5
    cuts = [0, 40, 41, 90, gct.shape[1]]
    store = build_store(tmp_path / "s", gct.take(cols=np.arange(cuts[0], cuts[1])), sig_info=info.iloc[cuts[0]:cuts[1]], block_size=9)
    for a, b in zip(cuts[1:-1], cuts[2:], strict=True):
        store = append_store(store.path, gct.take(cols=np.arange(a, b)), sig_info=info.iloc[a:b], block_size=4)
    return store, gct, info


def test_append_can_keep_backgrounds_marked_stale(level5, tmp_path, caplog):
    gct, info, _ = level5
    store = build_store(tmp_path / "s", gct.take(cols=np.arange(60)), sig_info=info.iloc[:60])
    build_background(store)
    assert Store(store.path).stale_backgrounds == {}
    before = load_background(Store(store.path), "sig")
    with caplog.at_level("WARNING"):
        store = append_store(store.path, gct.take(cols=np.arange(60, 70)), sig_info=info.iloc[60:70], keep_backgrounds=True)
    assert "stale" in caplog.text
    store = append_store(store.path, gct.take(cols=np.arange(70, 75)), sig_info=info.iloc[70:75], keep_backgrounds=True)
    stale = store.stale_backgrounds
    assert set(stale) == set(store.manifest["backgrounds"]) and set(stale.values()) == {15}
    assert store.info()["stale_backgrounds"] == stale
    kept = load_background(store, "sig")
    np.testing.assert_array_equal(np.asarray(kept.values), np.asarray(before.values))
    assert (kept.keys_for(store.sig_info)[60:] == -1).all()  # appended signatures: no tau
    store.verify()
    build_background(store)  # a rebuild is fresh again
    assert Store(store.path).stale_backgrounds == {}


def test_compact_equals_the_segmented_store(three_segments):
    store, gct, info = three_segments
    assert len(store.manifest["segments"]) == 4
    before = _everything(store)
    info_before = store.sig_info
    calls = []
    compacted = compact_store(store.path, progress=lambda d, t: calls.append((d, t)))
    assert len(compacted.manifest["segments"]) == 1
    assert calls[-1][0] == calls[-1][1]
    after = _everything(compacted)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    pd.testing.assert_frame_equal(compacted.sig_info, info_before)
    compacted.verify()
    seg_dirs = sorted(p.name for p in (store.path / "segments").iterdir())
    assert seg_dirs == [compacted.manifest["segments"][0]["name"]]  # old segments and temp dirs gone
    # same bytes as a store built in one go
    whole = build_store(store.path.parent / "whole", gct, sig_info=info)
    sums = lambda s: {k: v["checksum"] for k, v in s.manifest["segments"][0]["files"].items() if k.endswith(".npy")}  # noqa: E731
    assert sums(compacted) == sums(whole)
    assert compact_store(compacted.path).manifest == compacted.manifest  # one segment: nothing to do


def test_append_after_compact_never_reuses_a_live_segment_name(three_segments, level5):
    store, gct, info = three_segments
    compacted = compact_store(store.path)
    live = compacted.manifest["segments"][0]["name"]
    extra = gct.take(cols=[0, 1])
    extra_info = info.iloc[[0, 1]].assign(sig_id=["x0", "x1"])
    from opencmap.core.gct import GCT

    extra = GCT(extra.data, rids=extra.rids, cids=["x0", "x1"])
    for _ in range(5):
        extra_info = extra_info.assign(sig_id=[s + "_" for s in extra_info["sig_id"]])
        extra = GCT(extra.data, rids=extra.rids, cids=list(extra_info["sig_id"]))
        appended = append_store(compacted.path, extra, sig_info=extra_info)
        names = [s["name"] for s in appended.manifest["segments"]]
        assert names[0] == live and len(set(names)) == len(names)
    appended.verify()
    assert json.loads((appended.path / "manifest.json").read_text())["n_signatures"] == gct.shape[1] + 10
