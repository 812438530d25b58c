"""AnnData in and out: results as AnnData, queries from rank_genes_groups, stores from .h5ad."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from opencmap.backends import LocalBackend
from opencmap.errors import FormatError, StoreError, ValidationError
from opencmap.io.h5ad import write_h5ad
from opencmap.query.de import queries_from_de, queries_from_rank_genes_groups
from opencmap.query.engine import Engine

anndata = pytest.importorskip("anndata")


def _de_queries(prog):
    a = queries_from_de(pd.DataFrame({"gene": prog["A_up"] + prog["A_dn"], "logFC": [2.0] * 40 + [-2.0] * 40, "FDR": 1e-4}), name="A")
    b = queries_from_de(pd.DataFrame({"gene": prog["B_up"] + prog["B_dn"] + ["NOPE"], "logFC": [2.0] * 40 + [-2.0] * 41, "FDR": 1e-4}), name="B")
    return a, b


@pytest.fixture(scope="module")
def result(built_store, level5, pcl):
    a, b = _de_queries(level5[2])
    return Engine(built_store, pcl=pcl).run([*a, *b], on_invalid="raise")


def test_query_info_joins_de_selection(result, level5, tmp_path):
    a, b = _de_queries(level5[2])
    info = pd.concat([a.table(), b.table()], ignore_index=True).drop(columns=["n_up", "n_down"])
    adata = result.to_anndata("pert_summary", query_info=info)
    assert adata.obs.loc["B", "n_candidates_down"] == 41 and adata.obs.loc["A", "tool"] == "DE"
    result.write_h5ad(tmp_path / "x.h5ad", level="pert_summary", query_info=info)
    back = anndata.read_h5ad(tmp_path / "x.h5ad")
    assert back.obs.loc["B", "n_candidates_down"] == 41
    with pytest.raises(ValidationError, match="already obs columns"):
        result.to_anndata(query_info=a.table())


def test_to_anndata_read_back_equals_frames(result, tmp_path):
    for level in result.levels:
        path = result.write_h5ad(tmp_path / f"{level}.h5ad", level=level)
        a = anndata.read_h5ad(path)  # read by anndata itself
        lv = result.level(level)
        assert a.shape == (2, len(lv.index))
        assert list(a.obs_names) == ["A", "B"]
        assert list(a.var_names) == [str(i) for i in lv.ids]
        assert set(a.layers.keys()) == set(lv.metrics)
        for metric, values in lv.metrics.items():
            np.testing.assert_array_equal(a.layers[metric], values.T)
        info = a.uns["opencmap"]
        assert info["level"] == level and info["method"] == "wtcs"
        np.testing.assert_array_equal(a.X, lv.metrics[info["x_metric"]].T)
        assert json.loads(info["describe_json"])["metrics"][level] == list(lv.metrics)
        # the long frame, rebuilt from the AnnData, equals the result's own
        frame = result.to_frame(level)
        for metric in lv.metrics:
            np.testing.assert_array_equal(frame[metric].to_numpy(), a.layers[metric].reshape(-1))
        meta = lv.index.iloc[:, 1:].reset_index(drop=True)
        for col in meta.columns:
            ours = meta[col]
            theirs = a.var[col].reset_index(drop=True)
            if isinstance(theirs.dtype, pd.CategoricalDtype):
                theirs = theirs.astype(object)
            assert ours.isna().tolist() == theirs.isna().tolist(), col
            assert ours[ours.notna()].astype(str).tolist() == theirs[theirs.notna()].astype(str).tolist(), col


def test_obs_holds_query_fields(result):
    a = result.to_anndata("sig")
    assert {"wtcs", "ncs", "tau", "fdr_q"} <= set(a.layers.keys())
    table = result.query_table().set_index("query")
    assert a.obs.loc["B", "n_up"] == table.loc["B", "n_up"] == 40
    assert a.obs.loc["A", "up_genes"].split(",") == list(result.queries[0].up_genes)
    assert a.uns["opencmap"]["x_metric"] == "tau"
    with pytest.raises(Exception, match="no metric 'nope'"):
        result.to_anndata("sig", x="nope")


def _rgg_adata(groups=("T cells", "B cells"), n=60):
    rng = np.random.default_rng(3)
    genes = [f"GENE{i}" for i in range(200)]
    names, lfc, padj, pvals, scores = [], [], [], [], []
    for k, _ in enumerate(groups):
        order = rng.permutation(200)[:n]
        names.append(np.array([genes[i] for i in order], dtype=object))
        l = np.concatenate([rng.uniform(1, 3, 25), -rng.uniform(1, 3, 25), rng.uniform(-0.2, 0.2, n - 50)])
        lfc.append(l.astype(np.float32))
        padj.append(np.concatenate([np.full(50, 1e-6), np.full(n - 50, 0.5)]))
        pvals.append(np.concatenate([np.full(50, 1e-8), np.full(n - 50, 0.3)]))
        scores.append((l * 4).astype(np.float32))
    rec = lambda arrs: np.rec.fromarrays(arrs, names=list(groups))  # noqa: E731 - scanpy's layout
    adata = anndata.AnnData(np.zeros((4, 200), dtype=np.float32), var=pd.DataFrame(index=genes))
    adata.uns["rank_genes_groups"] = {
        "params": {"groupby": "cell_type", "reference": "rest", "method": "wilcoxon", "use_raw": False, "layer": "None", "corr_method": "benjamini-hochberg"},
        "names": rec(names), "scores": rec(scores), "logfoldchanges": rec(lfc), "pvals": rec(pvals), "pvals_adj": rec(padj),
    }
    return adata, names, lfc


def test_rank_genes_groups_h5ad(tmp_path):
    adata, names, lfc = _rgg_adata()
    write_h5ad(adata, tmp_path / "rgg.h5ad")
    de = queries_from_de(tmp_path / "rgg.h5ad")  # .h5ad goes to rank_genes_groups
    assert [q.name for q in de] == ["T cells", "B cells"]
    for k, q in enumerate(de):
        up = [g for _, g in sorted(zip(-lfc[k][:25], names[k][:25]))]
        assert list(q.up) == up
        assert len(q.down) == 25
        assert de.selections[k].n_above_padj == 10 and de.selections[k].tool == "scanpy"
    same = queries_from_rank_genes_groups(adata)
    assert [q.up for q in same] == [q.up for q in de]


def test_h5ad_without_rank_genes_groups(tmp_path):
    adata = anndata.AnnData(np.zeros((3, 4), dtype=np.float32))
    adata.uns["neighbors"] = {"params": {"n_neighbors": 15}}
    write_h5ad(adata, tmp_path / "plain.h5ad")
    with pytest.raises(FormatError, match=r"no 'rank_genes_groups' in \.uns \(found \['neighbors'\]\).*sc\.tl\.rank_genes_groups"):
        queries_from_de(tmp_path / "plain.h5ad")
    adata, _, _ = _rgg_adata()
    del adata.uns["rank_genes_groups"]["logfoldchanges"]
    with pytest.raises(ValidationError, match="no logfoldchanges.*logreg"):
        queries_from_rank_genes_groups(adata)


def test_store_from_h5ad_equals_store_from_gct(level5, tmp_path):
    from opencmap.core.gct import GCT
    from opencmap.io.h5ad import write_h5ad
    from opencmap.query.store import build_store

    gct, info, prog = level5
    col_meta = info.set_index("sig_id").loc[list(gct.cids)]
    signatures = GCT(gct.data, row_meta=gct.row_meta, col_meta=col_meta)
    write_h5ad(signatures.to_anndata(), tmp_path / "sigs.h5ad")
    from_h5ad = build_store(tmp_path / "h5", tmp_path / "sigs.h5ad")
    from_gct = build_store(tmp_path / "gct", signatures)
    assert sorted(from_h5ad.spaces) == sorted(from_gct.spaces) and list(from_h5ad.sig_ids) == list(from_gct.sig_ids)
    for space in from_gct.spaces:
        assert list(from_h5ad.space(space).gene_ids) == list(from_gct.space(space).gene_ids)
    pd.testing.assert_frame_equal(from_h5ad.genes, from_gct.genes)
    pd.testing.assert_frame_equal(from_h5ad.sig_info, from_gct.sig_info)
    for space in from_gct.spaces:
        pos = np.arange(from_gct.n_signatures)
        np.testing.assert_array_equal(from_h5ad.signature_scores(pos, space=space), from_gct.signature_scores(pos, space=space))
    # a sparse X, read backed in blocks of 7 signatures, gives the same store
    sparse = signatures.to_anndata()
    from scipy import sparse as sp

    sparse.X = sp.csr_matrix(np.where(np.abs(sparse.X) < 0.5, 0, sparse.X).astype(np.float32))
    write_h5ad(sparse, tmp_path / "sparse.h5ad")
    dense_twin = GCT(sparse.X.toarray().T, row_meta=gct.row_meta, col_meta=col_meta)
    a_sparse = build_store(tmp_path / "sp", tmp_path / "sparse.h5ad", block_size=7)
    b_dense = build_store(tmp_path / "dn", dense_twin, block_size=7)
    pos = np.arange(a_sparse.n_signatures)
    np.testing.assert_array_equal(a_sparse.signature_scores(pos, space="bing"), b_dense.signature_scores(pos, space="bing"))
    up, dn = prog["A_up"][:20], prog["A_dn"][:20]
    a = Engine(from_h5ad).run(queries_from_de(pd.DataFrame({"gene": up + dn, "logFC": [1.0] * 20 + [-1.0] * 20, "padj": 0.01})))
    b = Engine(from_gct).run(queries_from_de(pd.DataFrame({"gene": up + dn, "logFC": [1.0] * 20 + [-1.0] * 20, "padj": 0.01})))
    np.testing.assert_array_equal(a.level("sig").metrics["wtcs"], b.level("sig").metrics["wtcs"])


def test_cli_format_h5ad(built_store, level5, tmp_path):
    from opencmap.cli import cli

    _, _, prog = level5
    pd.DataFrame({"logFC": [2.0] * 40 + [-2.0] * 40, "FDR": 1e-4}, index=prog["A_up"] + prog["A_dn"]).to_csv(tmp_path / "de.csv")
    res = CliRunner().invoke(cli, ["query", str(built_store.path), "--de", str(tmp_path / "de.csv"), "--out", str(tmp_path / "out"),
                                   "--format", "h5ad", "--top", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".h5ad")
    assert files == sorted(f"{lv}.h5ad" for lv in ("sig", "pert_cell", "pert_summary"))
    # like every results folder: written aside and swapped in, with what the result used
    assert {"queries.tsv", "notes.txt", "describe.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    a = anndata.read_h5ad(tmp_path / "out" / "sig.h5ad")
    assert list(a.obs_names) == ["de"] and a.n_vars == built_store.n_signatures


def test_cli_store_build_from_h5ad(level5, tmp_path):
    from opencmap.cli import cli
    from opencmap.core.gct import GCT
    from opencmap.io.h5ad import write_h5ad
    from opencmap.query.store import open_store

    gct, info, _ = level5
    signatures = GCT(gct.data, row_meta=gct.row_meta, col_meta=info.set_index("sig_id").loc[list(gct.cids)])
    write_h5ad(signatures.to_anndata(), tmp_path / "sigs.h5ad")
    res = CliRunner().invoke(cli, ["store", "build", str(tmp_path / "sigs.h5ad"), str(tmp_path / "store")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    store = open_store(tmp_path / "store")
    assert store.n_signatures == gct.shape[1] and list(store.sig_ids) == list(gct.cids)


def test_cli_de_from_h5ad(built_store, tmp_path):
    from opencmap.cli import cli

    adata, _, _ = _rgg_adata()
    write_h5ad(adata, tmp_path / "rgg.h5ad")
    res = CliRunner().invoke(cli, ["query", str(built_store.path), "--de", str(tmp_path / "rgg.h5ad"), "--top", "1"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "# T cells: top 1" in res.stdout and "# B cells: top 1" in res.stdout
    assert "scanpy table" in res.stderr and "25 up, 25 down genes" in res.stderr


def test_store_from_h5ad_refuses_repeated_ids(tmp_path):
    from opencmap.query.store import build_store

    with pytest.warns(UserWarning, match="not unique"):  # anndata itself warns about the repeated obs names
        a = anndata.AnnData(np.zeros((3, 4), dtype=np.float32), obs=pd.DataFrame(index=["s1", "s1", "s2"]),
                            var=pd.DataFrame({"pr_is_lm": [1, 1, 0, 0]}, index=["1", "2", "3", "4"]))
    write_h5ad(a, tmp_path / "dup.h5ad")
    with pytest.raises(FormatError, match=r"repeated signature \(obs\) ids \['s1'\]"), pytest.warns(UserWarning, match="not unique"):
        build_store(tmp_path / "st", tmp_path / "dup.h5ad")


# ----------------------------------------------------------------- filtered stores from .h5ad (columns=)
@pytest.fixture(scope="module")
def twin_files(level5, tmp_path_factory):
    """The synthetic Level 5 as a GCTX file and as .h5ad files converted from it (dense, dense
    gzip = HDF5-chunked, sparse CSR), with the positions of its exemplar signatures."""
    from opencmap.core.gct import GCT
    from opencmap.io import read_gct, write_gctx

    gct, info, _ = level5
    root = tmp_path_factory.mktemp("twins")
    write_gctx(GCT(gct.data, row_meta=gct.row_meta, col_meta=info.set_index("sig_id").loc[list(gct.cids)]), root / "sigs.gctx")
    back = read_gct(root / "sigs.gctx")  # an .h5ad made from the GCTX, as a user converts one
    write_h5ad(back.to_anndata(), root / "dense.h5ad")
    write_h5ad(back.to_anndata(), root / "chunked.h5ad", compression="gzip")
    from scipy import sparse as sp

    sparse = back.to_anndata()
    sparse.X = sp.csr_matrix(sparse.X)
    write_h5ad(sparse, root / "sparse.h5ad")
    exemplars = np.flatnonzero(back.col_meta["is_exemplar_sig"].to_numpy() == 1)
    assert 0 < len(exemplars) < back.shape[1] and (np.diff(exemplars) > 1).any()  # a scattered subset
    return {"gctx": root / "sigs.gctx", "h5ad": [root / "dense.h5ad", root / "chunked.h5ad", root / "sparse.h5ad"], "exemplars": exemplars}


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["dense", "chunked", "sparse"])
def test_h5ad_source_honours_columns_like_gctx(twin_files, kind):
    from opencmap.io.store.writer import read_signature_block
    from opencmap.query.store import SignatureSource

    h5ad_path = twin_files["h5ad"][kind]
    n = SignatureSource(twin_files["gctx"]).n_rows
    for columns in (twin_files["exemplars"], np.array([0, 1, 2, 40, 89]), np.array([7]), np.arange(90)):
        h5, gx = SignatureSource(h5ad_path, columns), SignatureSource(twin_files["gctx"], columns)
        try:
            assert len(h5.cids) == len(gx.cids) == len(columns)
            assert list(h5.cids) == list(gx.cids) and list(h5.rids) == list(gx.rids)
            pd.testing.assert_frame_equal(h5.col_meta, gx.col_meta, check_dtype=False, check_names=False)
            buf = np.empty((len(columns), n), dtype=np.float32)
            for lo, hi in ((0, len(columns)), (0, 1), (len(columns) // 2, len(columns))):
                np.testing.assert_array_equal(h5.sig_block(lo, hi), gx.sig_block(lo, hi, buf))
            spec_h5, spec_gx = h5.block_spec(0, len(columns)), gx.block_spec(0, len(columns))
            np.testing.assert_array_equal(spec_h5["positions"], spec_gx["positions"])  # a worker reads these rows only
            assert spec_h5["shape"] == spec_gx["shape"]
            np.testing.assert_array_equal(read_signature_block(spec_h5), read_signature_block(spec_gx))
            with pytest.raises(StoreError, match="not the .* the build planned"):  # a worker sees another file
                read_signature_block({**spec_h5, "shape": (n, 91)})
        finally:
            h5.close()
            gx.close()


class _TasksHere(LocalBackend):
    """A distributed backend whose block tasks run in this process (the block_spec path)."""

    distributed = True


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["dense", "chunked", "sparse"])
def test_filtered_store_from_h5ad_equals_filtered_store_from_gctx(twin_files, kind, tmp_path):
    from opencmap.query.store import append_store, build_store

    cols = twin_files["exemplars"]
    gx = build_store(tmp_path / "gx", twin_files["gctx"], columns=cols, block_size=7)
    h5 = build_store(tmp_path / "h5", twin_files["h5ad"][kind], columns=cols, block_size=7)
    tasks = build_store(tmp_path / "tasks", twin_files["h5ad"][kind], columns=cols, block_size=7, backend=_TasksHere())
    assert gx.n_signatures == len(cols)
    for store in (h5, tasks):
        assert store.n_signatures == len(cols) and list(store.sig_ids) == list(gx.sig_ids)
        pd.testing.assert_frame_equal(store.sig_info, gx.sig_info)
        for space in gx.spaces:
            for name in ("ranks", "scores", "scores_by_sig"):
                np.testing.assert_array_equal(np.load(store.path / "segments" / "seg-00000" / space / f"{name}.npy"),
                                              np.load(gx.path / "segments" / "seg-00000" / space / f"{name}.npy"))
    # appending the signatures left out gives both stores the same new segment
    rest = np.setdiff1d(np.arange(90), cols)
    gx = append_store(gx.path, twin_files["gctx"], columns=rest, block_size=11)
    h5 = append_store(h5.path, twin_files["h5ad"][kind], columns=rest, block_size=11)
    assert h5.n_signatures == gx.n_signatures == 90 and list(h5.sig_ids) == list(gx.sig_ids)
    for space in gx.spaces:
        pos = np.arange(90)
        np.testing.assert_array_equal(h5.signature_scores(pos, space=space), gx.signature_scores(pos, space=space))


@pytest.mark.parametrize("columns", [[3, 2], [0, 0], [-1, 4], [0, 90], [[0, 1]], [0.0, 2.5], np.arange(90) % 2 == 0],
                         ids=["decreasing", "repeated", "negative", "beyond", "2-D", "float", "mask"])
def test_bad_columns_are_refused_alike(twin_files, columns):
    from opencmap.query.store import SignatureSource, build_store

    for path in (twin_files["gctx"], twin_files["h5ad"][0]):
        with pytest.raises(ValidationError, match="columns must be"):
            SignatureSource(path, np.asarray(columns))
    with pytest.raises(ValidationError, match="columns must be"):
        build_store(twin_files["gctx"].parent / "never", twin_files["h5ad"][0], columns=np.asarray(columns))
    assert not (twin_files["gctx"].parent / "never").exists()


def test_h5ad_whose_x_is_not_obs_by_var_is_refused(twin_files, tmp_path):
    import shutil

    import h5py

    from opencmap.query.store import build_store

    shutil.copy(twin_files["h5ad"][0], tmp_path / "bad.h5ad")
    with h5py.File(tmp_path / "bad.h5ad", "r+") as f:
        attrs = dict(f["X"].attrs)
        short = f["X"][:80]
        del f["X"]
        f.create_dataset("X", data=short).attrs.update(attrs)
    with pytest.raises(FormatError, match=r"X has shape \(80, 400\) but obs x var is \(90, 400\)"):
        build_store(tmp_path / "st", tmp_path / "bad.h5ad")


def test_cli_store_build_from_h5ad_as_from_gctx(twin_files, tmp_path):
    """--pert-info reads an .h5ad's obs as it reads a GCTX's column metadata; filters need release
    folders for an .h5ad as for a GCTX (refused, never ignored)."""
    from opencmap.cli import cli
    from opencmap.query.store import open_store

    (tmp_path / "perts.txt").write_text("pert_id\tmoa\ttarget\nBRD-000\tX inhibitor\tEGFR\n")
    stores = {}
    for name, path in (("gctx", twin_files["gctx"]), ("h5ad", twin_files["h5ad"][0])):
        res = CliRunner().invoke(cli, ["store", "build", str(path), str(tmp_path / name), "--pert-info", str(tmp_path / "perts.txt")])
        assert res.exit_code == 0, res.output
        stores[name] = open_store(tmp_path / name)
        res = CliRunner().invoke(cli, ["store", "build", str(path), str(tmp_path / f"{name}_ex"), "--exemplar-only"])
        assert res.exit_code == 2 and "filters and --dry-run need release folders" in res.output
        assert not (tmp_path / f"{name}_ex").exists()
    pd.testing.assert_frame_equal(stores["h5ad"].sig_info, stores["gctx"].sig_info)
    assert (stores["h5ad"].sig_info.loc[stores["h5ad"].sig_info["pert_id"] == "BRD-000", "target"] == "EGFR").all()
