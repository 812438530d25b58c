"""The replicas are faithful where it matters: names, compression, HDF5 layout, columns, conventions."""

from __future__ import annotations

import gzip
import time

import h5py
import numpy as np
import pytest

from opencmap.core.gct import GCT
from opencmap.io import write_gctx

from .replicas import GSE70138_FILES, GSE92742_FILES, LINCS2020_FILES, write_gse70138, write_gse92742, write_lincs2020


def _layout(h5: h5py.File) -> dict[str, tuple]:
    out = {}
    h5.visititems(lambda name, obj: out.__setitem__(name, (obj.dtype.kind, obj.ndim)) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_replicas_build_fast_with_real_names(tmp_path):
    t0 = time.perf_counter()
    a = write_gse92742(tmp_path / "a")
    b = write_gse70138(tmp_path / "b")
    c = write_lincs2020(tmp_path / "c")
    assert time.perf_counter() - t0 < 10
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(GSE92742_FILES.values())
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(GSE70138_FILES.values())
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(LINCS2020_FILES.values())
    for path in (*a.values(), *b.values()):
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # GEO serves every file gzip-compressed
    assert c["level5"].read_bytes()[:4] == b"\x89HDF"  # CLUE serves plain files


def test_geo_gctx_layout_is_cmaps(tmp_path, shared_data):
    files = write_gse92742(tmp_path, gz=False)
    with h5py.File(shared_data / "query" / "modzs_n272x978.gctx", "r") as real, h5py.File(files["level5"], "r") as rep:
        assert rep.attrs["version"] == real.attrs["version"]
        real_layout = _layout(real)
        rep_layout = _layout(rep)
        # GEO Level 5 files hold the ids and no other metadata
        assert set(rep_layout) == {"0/DATA/0/matrix", "0/META/ROW/id", "0/META/COL/id"}
        for node, kind in rep_layout.items():
            assert real_layout[node] == kind
        m = rep["0/DATA/0/matrix"]
        assert m.dtype == np.float32 and m.shape == (len(rep["0/META/COL/id"]), 12328)
        assert m.chunks[1] == m.shape[1]  # whole columns per chunk, as the real file
        rids = rep["0/META/ROW/id"][:]
        assert rids.dtype.kind == "S" and rids[0] == b"16"  # Entrez ids as text (AARS first)


def test_our_writer_produces_the_same_layout(tmp_path, shared_data):
    data = np.zeros((3, 2), dtype=np.float32)
    write_gctx(GCT(data, rids=["16", "23", "25"], cids=["s1", "s2"]), tmp_path / "x.gctx")
    with h5py.File(tmp_path / "x.gctx", "r") as ours, h5py.File(shared_data / "query" / "modzs_n272x978.gctx", "r") as real:
        assert ours.attrs["version"] == real.attrs["version"]
        lay = _layout(ours)
        assert {"0/DATA/0/matrix", "0/META/ROW/id", "0/META/COL/id"} <= set(lay)
        assert ours["0/DATA/0/matrix"].shape == (2, 3)  # stored (n_cols, n_rows), as CMap's


@pytest.mark.parametrize("writer,key,first", [(write_gse92742, "sig_metrics", b"sig_id"), (write_gse70138, "sig_metrics", b"\tsig_id")])
def test_geo_conventions(tmp_path, writer, key, first):
    files = writer(tmp_path)
    text = gzip.decompress(files[key].read_bytes())
    assert text.startswith(first)  # GSE70138: unnamed leading index column
    assert b"-666" in text
    sig = gzip.decompress(files["sig_info"].read_bytes()).decode()
    assert ("10 µM" in sig) if writer is write_gse92742 else ("10.0 um" in sig)


def test_beta_conventions(tmp_path):
    files = write_lincs2020(tmp_path)
    gene = files["gene_info"].read_text().splitlines()
    assert gene[0].split("\t") == ["gene_id", "gene_symbol", "ensembl_id", "gene_title", "gene_type", "src", "feature_space"]
    assert any(line.startswith("5720\tPSME1\t") for line in gene)
    sig = files["sig_info"].read_text().splitlines()
    header = sig[0].split("\t")
    assert header[:3] == ["bead_batch", "nearest_dose", "pert_dose"] and header[-3:] == ["is_exemplar_sig", "is_ncs_sig", "is_null_sig"]
    assert "\t\t" in sig[1]  # empty fields, not -666
    assert "-666" not in files["sig_info"].read_text()
