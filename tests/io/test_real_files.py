"""Every real GCT/GCTX file in the shared data reads; text/HDF5 twins agree; our round trips are exact."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import OpenCMapWarning
from opencmap.io import read_gct, read_meta, write_gct, write_gctx


SHARED = Path(os.environ.get("OPENCMAP_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


def _all_files():
    if not SHARED.is_dir():
        return []
    return sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in (".gct", ".gctx") and p.is_file())


FILES = _all_files()

# (text, hdf5, matrix tolerance, why)
TWINS = [
    ("formats/cmapr/test_n5x10.gct", "formats/cmapr/test_n5x10.gctx", 1e-4, "4 decimals"),
    ("formats/cmapm/gctv13_02.gct", "formats/cmapm/gctv13_02.gctx", 1e-4, "4 decimals"),
    ("pipeline/plate_qnorm_zscore/gctv13_01.gct", "pipeline/plate_qnorm_zscore/gctv13_01.gctx", 1e-4, "4 decimals"),
    ("formats/cmappy/mini_gctoo_for_testing.gct", "formats/cmappy/mini_gctoo_for_testing.gctx", 1e-4, "4 decimals"),
    # cmapR's text twin holds 2 decimals (and only 1 of its 15 column fields)
    ("formats/cmapr/modzs_n25x50.gct", "formats/cmapr/modzs_n25x50.gctx", 5e-3, "2 decimals"),
]


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OpenCMapWarning)
        return read_gct(path)


def test_shared_data_has_files():
    assert len(FILES) > 60


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SHARED)))
def test_every_real_file_reads_and_round_trips(path, tmp_path):
    g = _read(path)
    assert g.data.dtype == np.float32
    assert g.data.shape == (len(g.rids), len(g.cids))
    assert all(isinstance(i, str) for i in g.rids[:5]) and all(isinstance(i, str) for i in g.cids[:5])
    if path.suffix == ".gctx" or path.stat().st_size < 100_000:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OpenCMapWarning)
            assert read_meta(path, "row").equals(g.row_meta)
            assert read_meta(path, "col").equals(g.col_meta)
    out = tmp_path / "rt.gctx"
    expected = g
    if "id" in g.col_meta.columns:  # CMap's test-plate files repeat the column ids as a field 'id'
        with pytest.warns(OpenCMapWarning, match="repeats the column ids"):
            write_gctx(g, out)
        expected = GCT(g.data, row_meta=g.row_meta, col_meta=g.col_meta.drop(columns=["id"]))
    else:
        write_gctx(g, out)
    assert read_gct(out).equals(expected)  # ours -> ours through GCTX: exact, dtypes included
    if path.suffix == ".gct":
        write_gct(g, tmp_path / "rt.gct")
        assert _read(tmp_path / "rt.gct").equals(g)  # text -> ours text: exact


@pytest.mark.parametrize(("text", "hdf5", "atol", "why"), TWINS, ids=[t[0] for t in TWINS])
def test_text_and_hdf5_twins_agree(shared_data, text, hdf5, atol, why, meta_equal):
    a = _read(shared_data / text)
    b = _read(shared_data / hdf5)
    assert a.rids.equals(b.rids) and a.cids.equals(b.cids)
    assert a.equals(b, atol=atol, check_meta=False), why
    for frame_a, frame_b in ((a.row_meta, b.row_meta), (a.col_meta, b.col_meta)):
        shared = [c for c in frame_a.columns if c in frame_b.columns]
        assert shared, "no common metadata fields"
        for field in shared:
            assert meta_equal(frame_a[field], frame_b[field]), field
    if "modzs_n25x50" not in text:
        assert set(a.row_meta.columns) == set(b.row_meta.columns)
        assert set(a.col_meta.columns) == set(b.col_meta.columns)


def test_cmappy_l1000_text_and_highprecision(shared_data, meta_equal):
    """Same plate, ids and annotations; the values differ (the .gctx is z-scored: '+ZSP')."""
    a = _read(shared_data / "formats/cmappy/test_l1000.gct")
    b = _read(shared_data / "formats/cmappy/test_l1000_highprecision.gctx")
    assert a.rids.equals(b.rids) and a.cids.equals(b.cids)
    assert sorted(a.row_meta.columns) == sorted(b.row_meta.columns)
    for field in a.row_meta.columns:
        assert meta_equal(a.row_meta[field], b.row_meta[field]), field
    differ = {"qc_iqr", "qc_slope", "provenance_code"}  # changed by the z-scoring step
    for field in set(a.col_meta.columns) & set(b.col_meta.columns) - differ:
        assert meta_equal(a.col_meta[field], b.col_meta[field]), field
    assert (b.col_meta["provenance_code"].str.endswith("+ZSP")).all()


def test_metadata_types_of_a_cmap_file(shared_data):
    g = _read(shared_data / "formats/cmapm/gctv13_02.gctx")
    assert g.row_meta["pr_gene_id"].dtype == np.int32  # stored dtype kept
    assert g.col_meta["pert_dose"].dtype == np.float32
    assert g.col_meta["pert_dose"].isna().tolist()[:3] == [True] * 3  # -666 (DMSO wells) read as missing
    assert g.col_meta["pert_dose"].iloc[-1] == np.float32(0.04)
    assert g.col_meta["pert_dose_unit"].isna().iloc[0] and g.col_meta["pert_dose_unit"].iloc[-1] == "um"
    t = _read(shared_data / "formats/cmapm/gctv13_02.gct")
    assert t.row_meta["pr_gene_id"].dtype == np.int64 and t.row_meta["pr_gene_symbol"].iloc[0] == "PSME1"
    assert t.col_meta["qc_iqr"].dtype == np.float64


def test_entrez_row_ids_in_gctx_are_strings(shared_data):
    g = _read(shared_data / "formats/cmappy/test_parse_gctx_rid_entrez_id.gctx")
    assert list(g.rids[:2]) == ["5720", "55847"]
    sub = read_gct(shared_data / "formats/cmappy/test_parse_gctx_rid_entrez_id.gctx", rid=[55847])
    assert list(sub.rids) == ["55847"]


def test_real_partial_read_equals_full_read(shared_data):
    path = shared_data / "query/modzs_n272x978.gctx"
    full = _read(path)
    rng = np.random.default_rng(7)
    cidx = rng.choice(272, 40, replace=False)
    ridx = rng.choice(978, 100, replace=False)
    part = read_gct(path, ridx=ridx, cidx=cidx)
    assert part.equals(full.take(ridx, cidx))
    by_id = read_gct(path, cid=list(full.cids[cidx]))
    assert by_id.equals(full.take(None, cidx))
