"""Stores from release folders: each replica -> store -> query by gene symbol; combined releases;
filters; null signatures; disk estimate and refusal; gene tables never keyed by row number."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from opencmap.datasets import gene_table
from opencmap.errors import ConfigError, DiskSpaceError, FormatError, StoreError
from opencmap.io.store import writer as store_mod
from opencmap.query.engine import Engine
from opencmap.query.genesets import Query
from opencmap.query.release_store import BuildFilters, build_release_store, plan_release_store
from opencmap.query.store import Store, build_store
from releases.replicas import _CELLS, PLANTED_MOA, planted_query, write_gse70138, write_gse92742, write_lincs2020


def _gunzip_beside(path):
    """What a user does with a GEO download: ``gunzip -k FILE.gctx.gz``."""
    plain = path.with_name(path.name[:-3])
    with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return plain


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    out = {}
    for name, writer in (("GSE92742", write_gse92742), ("GSE70138", write_gse70138), ("LINCS2020", write_lincs2020)):
        files = writer(root / name)
        if name != "LINCS2020":
            _gunzip_beside(files["level5"])
        out[name] = (root / name, files)
    return out


@pytest.fixture(scope="module")
def planted():
    return planted_query()


@pytest.fixture(scope="module")
def stores(replicas, planted, tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    pcl = {PLANTED_MOA: list(planted.pert_ids)}
    beta_compounds = replicas["LINCS2020"][1]["compound_info"]
    built = {}
    for name, (folder, _) in replicas.items():
        # GEO pert_info has no MOA: the README way names mechanisms with compoundinfo_beta or a PCL
        extra = {"pert_info": beta_compounds} if name == "GSE70138" else {}
        built[name] = build_release_store(root / name, [folder], pcl=pcl, block_size=37, **extra)
    return built


def _query(store, planted, **kw):
    return Engine(store, **kw).run(Query("planted", up=planted.up, down=planted.down), tau=False)


def _query_null_sigs(store, planted):
    """FDR by cmapM's method, the one that needs the store's null signatures (the default
    random-query FDR needs none)."""
    return Engine(store).run(Query("planted", up=planted.up, down=planted.down), tau=False, fdr_method="cmap")


@pytest.mark.parametrize("release", ["GSE92742", "GSE70138", "LINCS2020"])
def test_planted_mechanism_first_with_names_moa_and_cells(stores, planted, release):
    store, plan = stores[release]
    res = _query(store, planted)
    summary = res.top(level="pert_summary", n=2)
    assert set(summary["id"]) == set(planted.pert_ids)  # pert_summary ids are pert_ids
    assert set(summary["pert_iname"]) == set(planted.pert_inames)
    assert set(summary["moa"]) == {PLANTED_MOA}
    cells_in = set(store.sig_info.loc[store.sig_info["pert_id"].isin(planted.pert_ids), "cell_id"])
    assert set(summary["n_cells"]) == {len(cells_in)} and len(cells_in) >= 3  # per-cell groups, not pooled
    top_cells = res.top(level="pert_cell", n=2 * len(cells_in))
    assert set(top_cells["pert_id"]) == set(planted.pert_ids) and set(top_cells["cell_id"]) == cells_in
    assert cells_in <= set(_CELLS)
    sig = res.top(level="sig", n=1).iloc[0]
    assert sig["pert_id"] in planted.pert_ids and sig["cell_type"] in ("cancer", "tumor", "normal")
    # the PCL was given once at build: the query names the class without --pcl
    pcl = res.top(level="pcl_summary", n=1)
    assert pcl["id"].iloc[0] == PLANTED_MOA


def test_store_gene_labels_equal_the_gene_table(stores):
    store, _ = stores["LINCS2020"]
    genes = store.genes.set_index("pr_gene_id")["pr_gene_symbol"]
    truth = gene_table().set_index("pr_gene_id")["pr_gene_symbol"]
    assert genes["5720"] == "PSME1"
    assert (genes.reindex(truth.index) == truth).all()
    assert {k: sp.n_features for k, sp in store.spaces.items()} == {"lm": 978, "bing": 10174, "full": 12328}


def test_build_store_with_geneinfo_beta_path_labels_right(replicas, tmp_path):
    folder, files = replicas["LINCS2020"]
    st = build_store(tmp_path / "s", files["level5"], sig_info=files["sig_info"], gene_info=files["gene_info"])
    genes = st.genes.set_index("pr_gene_id")["pr_gene_symbol"]
    assert genes["5720"] == "PSME1" and genes.notna().all()
    # siginfo_beta given as a file is read as the release table: names and cell lines, not pooled
    assert {"pert_iname", "cell_id"} <= set(st.sig_info.columns) and "cmap_name" not in st.sig_info.columns
    assert set(st.sig_info["cell_id"]) == {"A375", "MCF7", "HT29", "PC3"}
    bad = tmp_path / "noid.txt"
    pd.read_csv(files["gene_info"], sep="\t", dtype=str).drop(columns="gene_id").to_csv(bad, sep="\t", index=False)
    with pytest.raises(FormatError, match="noid.txt.*columns found"):
        build_store(tmp_path / "t", files["level5"], sig_info=files["sig_info"], gene_info=bad)
    assert not (tmp_path / "t").exists()


def test_sig_info_canonical_columns_and_flags(stores):
    info = stores["GSE92742"][0].sig_info
    for col in ("sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose", "pert_dose_unit", "pert_idose",
                "pert_time", "is_exemplar_sig", "tas", "is_null_sig", "moa", "release"):
        assert col in info.columns
    assert info["is_exemplar_sig"].sum() > 0  # from sig_metrics, not every signature a background query
    assert (info["is_null_sig"] == (info["pert_type"] == "ctl_vehicle").astype(int)).all()
    beta = stores["LINCS2020"][0].sig_info
    assert (beta["pert_type"] == "trt_cp").all() and (beta["is_null_sig"] == 0).all()


def test_beta_says_where_the_controls_are(stores, planted):
    store, plan = stores["LINCS2020"]
    assert any("level5_beta_ctl_n58022x12328.gctx" in n for n in plan.notes)
    res = _query_null_sigs(store, planted)
    assert any("no null signatures" in n for n in res.notes)


def test_combined_geo_store_scores_each_signature_as_alone(stores, replicas, planted, tmp_path):
    both, plan = build_release_store(tmp_path / "both", [replicas["GSE92742"][0], replicas["GSE70138"][0]],
                                     pert_info=replicas["LINCS2020"][1]["compound_info"])
    assert both.n_signatures == stores["GSE92742"][0].n_signatures + stores["GSE70138"][0].n_signatures
    assert set(both.sig_info["release"]) == {"GSE92742", "GSE70138"}
    assert set(both.sig_info["pert_dose_unit"]) == {"uM", ""}  # "" = missing (the vehicle controls)
    assert set(both.sig_info["pert_idose"]) == {"10 uM", "1.11 uM", ""}
    res_both = _query(both, planted).to_frame("sig").set_index("sig_id")
    for name in ("GSE92742", "GSE70138"):
        alone = stores[name][0]
        pos = both.sig_positions(alone.sig_ids)
        np.testing.assert_array_equal(both.signature_scores(pos), alone.signature_scores(np.arange(alone.n_signatures)))
        res_alone = _query(alone, planted).to_frame("sig").set_index("sig_id")
        np.testing.assert_allclose(res_both.loc[res_alone.index, "wtcs"], res_alone["wtcs"], rtol=0, atol=1e-6)
    assert set(both.sig_info["moa"]) >= {PLANTED_MOA}


@pytest.mark.parametrize(
    "filters,check",
    [
        (BuildFilters(exemplar_only=True), lambda i: (i["is_exemplar_sig"] == 1).all()),
        (BuildFilters(pert_types=("trt_cp",)), lambda i: (i["pert_type"] == "trt_cp").all()),
        (BuildFilters(cells=("MCF7",)), lambda i: set(i["cell_id"]) == {"MCF7"}),
        (BuildFilters(times=(24.0,)), lambda i: set(i["pert_time"]) == {24.0}),
        (BuildFilters(touchstone=True), lambda i: (i["pert_type"] == "trt_cp").all()),
    ],
)
def test_filters(replicas, tmp_path, filters, check):
    store, plan = build_release_store(tmp_path / "f", [replicas["GSE92742"][0]], filters=filters)
    info = store.sig_info
    assert 0 < len(info) < plan.sources[0].n_matrix and check(info)


def test_qc_pass_filter(replicas, tmp_path):
    store, _ = build_release_store(tmp_path / "q", [replicas["LINCS2020"][0]], filters=BuildFilters(qc_pass=True))
    assert (store.sig_info["qc_pass"] == 1).all()
    with pytest.raises(ConfigError, match="--qc-pass.*no qc_pass"):
        plan_release_store([replicas["GSE92742"][0]], filters=BuildFilters(qc_pass=True))
    with pytest.raises(ConfigError, match="keep no signature"):
        plan_release_store([replicas["GSE92742"][0]], filters=BuildFilters(cells=("NOPE",)))


def test_disk_estimate_matches_the_store_and_refusal(stores, replicas, tmp_path, monkeypatch):
    store, plan = stores["GSE92742"]
    est = plan.estimate
    matrices = sum(e["bytes"] for seg in store.manifest["segments"] for rel, e in seg["files"].items() if rel.endswith(".npy"))
    per_sig = matrices / store.n_signatures
    assert abs(per_sig - (est["bytes_per_signature"] - store_mod._SIG_INFO_BYTES)) / per_sig < 0.02
    assert est["bytes_per_signature_per_space"] == {"lm": 9780, "bing": 101740, "full": 123280}
    total = sum(p.stat().st_size for p in store.path.rglob("*") if p.is_file())
    assert total <= est["total_bytes"]

    class Usage:
        free = est["total_bytes"] // 2

    monkeypatch.setattr(store_mod.shutil, "disk_usage", lambda _p: Usage)
    with pytest.raises(DiskSpaceError, match="GB free"):
        build_release_store(tmp_path / "full", [replicas["GSE92742"][0]])
    assert not (tmp_path / "full").exists() and not list(tmp_path.glob(".full*"))


def test_gzipped_matrix_is_refused_with_the_fix(tmp_path, replicas):
    folder, files = replicas["GSE70138"]
    only_gz = tmp_path / "gse70138"
    only_gz.mkdir()
    for p in files.values():
        shutil.copy(p, only_gz / p.name)
    import importlib.util

    if importlib.util.find_spec("opencmap.io.decompress") is not None:  # the io layer decompresses .gctx.gz
        assert plan_release_store([only_gz]).n_signatures == 78
    else:
        with pytest.raises(StoreError, match="gzip-compressed.*gunzip -k"):
            plan_release_store([only_gz])


def test_store_pcl_is_default_and_explicit_wins(stores, planted):
    store, _ = stores["GSE92742"]
    assert store.pcl == {PLANTED_MOA: tuple(planted.pert_ids)}
    res = _query(store, planted, pcl={"OTHER": list(planted.pert_ids)})
    assert res.top(level="pcl_summary", n=1)["id"].iloc[0] == "OTHER"


def test_pipeline_output_folder_carries_moa_and_pcls(tmp_path):
    """Our own pipeline's output (``opencmap process``) as a release: the run's manifest names its
    inputs; the compendium's pert_info (MOA, targets), cell_info and PCLs beside them are joined."""
    from opencmap.datasets import make_compendium
    from opencmap.io import read_gmt, read_table
    from opencmap.pipeline.run import PipelineParams, run_pipeline

    comp = make_compendium(tmp_path / "comp", "tiny", seed=1)
    run_pipeline(comp.file("level3"), tmp_path / "run", inst_info=comp.file("inst_info"), gene_info=comp.file("gene_info"),
                 params=PipelineParams(cgs=False))
    store, plan = build_release_store(tmp_path / "store", [tmp_path / "run"])
    assert plan.sources[0].files.release == "opencmap"
    info = store.sig_info
    perts = read_table(comp.file("pert_info")).set_index("pert_id")
    cp = info[info["pert_type"] == "trt_cp"]
    expected = perts.loc[cp["pert_id"], "moa"].astype(object).fillna("").to_numpy()
    assert (cp["moa"].to_numpy() == expected).all() and (cp["moa"] != "").any()
    assert store.pcl == {s.name: tuple(s.genes) for s in read_gmt(comp.file("pcl"))}
    assert "cell_type" in info.columns and any("pert_info" in n for n in plan.notes)


def test_tau_per_cell_after_background(stores, planted):
    from opencmap.query.background import build_background

    store, _ = stores["LINCS2020"]
    build_background(store)
    res = Engine(Store(store.path)).run(Query("planted", up=planted.up, down=planted.down))
    cells = res.top(level="pert_cell", n=4, by="ncs")
    assert set(cells["pert_id"]) == set(planted.pert_ids)
    assert np.isfinite(cells["tau"].to_numpy(dtype=float)).all()  # per perturbagen x cell, not pooled


def test_geo_matrix_without_gene_table_is_said(replicas, tmp_path):
    from opencmap.errors import IdNotFoundError, OpenCMapWarning

    folder, files = replicas["GSE92742"]
    plain = files["level5"].with_name(files["level5"].name[:-3])
    with pytest.warns(OpenCMapWarning, match="no gene annotations.*only the 'full' space"):
        st = build_store(tmp_path / "s", plain, sig_info=files["sig_info"])
    assert set(st.spaces) == {"full"}
    other = pd.DataFrame({"pr_gene_id": ["1", "2"], "pr_gene_symbol": ["A1BG", "A2M"]})
    with pytest.raises(IdNotFoundError, match="12327 of the 12328 matrix row ids.*give the gene table of this matrix"):
        build_store(tmp_path / "t", plain, sig_info=files["sig_info"], gene_info=other)


def test_a_failing_later_release_leaves_nothing(replicas, tmp_path, monkeypatch):
    from opencmap.query import release_store

    def broken(*_a, **_k):
        raise StoreError("disk went away")

    monkeypatch.setattr(release_store, "append_store", broken)
    with pytest.raises(StoreError, match="disk went away"):
        build_release_store(tmp_path / "both", [replicas["GSE92742"][0], replicas["GSE70138"][0]])
    assert not (tmp_path / "both").exists()


def test_beta_controls_appended_give_fdr(replicas, planted, tmp_path):
    from opencmap.query.release_store import append_release_store

    folder, files = replicas["LINCS2020"]
    store, plan = build_release_store(tmp_path / "beta", [folder])
    assert any("level5_beta_ctl_n58022x12328.gctx" in n and "--matrix" in n for n in plan.notes)
    assert "fdr_q" not in _query_null_sigs(store, planted).to_frame("sig").columns
    store, plan = append_release_store(tmp_path / "beta", folder, matrix=files["level5_ctl"].name)
    info = store.sig_info
    assert set(info.loc[info["is_null_sig"] == 1, "pert_type"]) == {"ctl_vehicle"}
    res = _query_null_sigs(store, planted).to_frame("sig")
    assert np.isfinite(res["fdr_q"].to_numpy(dtype=float)).all()
    with pytest.raises(ConfigError, match="no LINCS2020 Level 5 matrix named"):
        plan_release_store([folder], matrix="level5_beta_trt_sh_n1x1.gctx")
