"""opencmap.io.releases: release detection, canonical columns, id-column refusal, missing values, doses."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from opencmap.datasets import gene_table
from opencmap.errors import ConfigError, FormatError
from opencmap.io.releases import (
    canonical_genes,
    detect_release,
    find_release_files,
    harmonise_doses,
    normalise_unit,
    read_release_genes,
    read_release_signatures,
    read_release_table,
)
from releases.replicas import write_gse70138, write_gse92742, write_lincs2020


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("releases")
    return {
        "GSE92742": (root / "gse92742", write_gse92742(root / "gse92742")),
        "GSE70138": (root / "gse70138", write_gse70138(root / "gse70138")),
        "LINCS2020": (root / "beta", write_lincs2020(root / "beta")),
    }


def test_detects_each_release_from_file_names(folders):
    for name, (folder, files) in folders.items():
        assert detect_release(folder) == name
        found = find_release_files(folder)
        assert found.matrix == files["level5"]
        assert {found.tables[k] for k in found.tables} <= set(files.values())


def test_unknown_folder_and_missing_table_are_refused(tmp_path, folders):
    (tmp_path / "x.txt").write_text("a\n")
    with pytest.raises(ConfigError, match="no Level 5 matrix of a known release"):
        detect_release(tmp_path)
    folder, files = folders["GSE92742"]
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / files["level5"].name).write_bytes(files["level5"].read_bytes())
    with pytest.raises(FormatError, match="sig_info table is missing"):
        find_release_files(partial)
    with pytest.raises(ConfigError, match="unknown release"):
        find_release_files(folder, "GSE00000")


def test_table_without_id_column_names_file_and_columns(tmp_path):
    path = tmp_path / "genes.txt"
    path.write_text("gene_symbol\tfeature_space\nPSME1\tlandmark\n")
    with pytest.raises(FormatError) as err:
        read_release_table(path, id_column=("gene_id", "pr_gene_id"))
    msg = str(err.value)
    assert str(path) in msg and "gene_symbol" in msg and "feature_space" in msg
    with pytest.raises(FormatError, match="columns found: \\['gene_symbol', 'feature_space'\\]"):
        canonical_genes(pd.DataFrame({"gene_symbol": ["PSME1"], "feature_space": ["landmark"]}), source=path)


def test_beta_gene_labels_are_the_gene_tables(folders):
    folder, _ = folders["LINCS2020"]
    genes = read_release_genes(find_release_files(folder))
    truth = gene_table().set_index("pr_gene_id")["pr_gene_symbol"]
    got = genes.set_index("pr_gene_id")["pr_gene_symbol"]
    assert got["5720"] == "PSME1"
    pd.testing.assert_series_equal(got.reindex(truth.index).astype(object), truth.astype(object), check_names=False)
    assert genes["pr_is_lm"].sum() == 978 and genes["pr_is_bing"].sum() == 10174 and len(genes) == 12328


def test_geo_minus_666_and_beta_empty_are_missing(folders):
    info, _ = read_release_signatures(find_release_files(folders["GSE92742"][0]))
    ctl = info["pert_type"] == "ctl_vehicle"
    assert info.loc[ctl, "tas"].isna().all() and info.loc[~ctl, "tas"].notna().all()
    assert info.loc[ctl, "pert_dose"].isna().all() and info.loc[ctl, "pert_idose"].isna().all()
    beta, _ = read_release_signatures(find_release_files(folders["LINCS2020"][0]))
    assert beta["median_recall_rank_spearman"].isna().all() and beta["build_name"].isna().all()
    assert beta.loc[beta["pert_type"] != "trt_cp", "pert_dose"].isna().all()
    assert not (beta.astype(str) == "-666").any().any()


def test_gse70138_index_column_is_gone_and_metrics_joined(folders):
    info, notes = read_release_signatures(find_release_files(folders["GSE70138"][0]))
    assert not [c for c in info.columns if c == "" or "Unnamed" in c or c.startswith("__")]
    assert info["is_exemplar_sig"].isin([0, 1]).all() and info["tas"].notna().any()
    assert any("sig_metrics" in n for n in notes)


def test_doses_and_times_harmonised_across_releases(folders):
    seen = {}
    for name in ("GSE92742", "GSE70138", "LINCS2020"):
        info, _ = read_release_signatures(find_release_files(folders[name][0]))
        cp = info[info["pert_type"] == "trt_cp"]
        seen[name] = set(zip(cp["pert_dose"], cp["pert_dose_unit"], cp["pert_idose"], strict=True))
        assert set(cp["pert_itime"]) <= {"6 h", "24 h"} and set(cp["pert_time_unit"]) == {"h"}
    assert seen["GSE92742"] == seen["GSE70138"] == seen["LINCS2020"] == {(10.0, "uM", "10 uM"), (1.11, "uM", "1.11 uM")}


def test_unit_spellings():
    assert {normalise_unit(u) for u in ("µM", "\u03bcM", "um", "uM", "UM")} == {"uM"}
    assert normalise_unit("hr") == "h" and normalise_unit("%") == "%" and normalise_unit("") is pd.NA
    frame = harmonise_doses(pd.DataFrame({"pert_idose": ["500 nM", "0.1 %", None, "10.0 um"]}))
    assert frame["pert_dose"].tolist()[:2] == [500.0, 0.1] and np.isnan(frame["pert_dose"].iloc[2])
    assert frame["pert_idose"].tolist()[:2] == ["500 nM", "0.1 %"] and frame["pert_idose"].iloc[3] == "10 uM"


def test_compoundinfo_targets_joined_per_compound(folders):
    info, _ = read_release_signatures(find_release_files(folders["LINCS2020"][0]))
    egfr = info[info["moa"] == "EGFR inhibitor"]
    assert len(egfr) and set(egfr["target"]) == {"EGFR|ERBB2"}
    assert set(info["cell_id"]) == {"A375", "MCF7", "HT29", "PC3"}  # cell_iname -> cell_id
    assert info["pert_iname"].notna().all()  # cmap_name -> pert_iname


def test_latin1_ragged_and_gzip_tables(tmp_path):
    lat = tmp_path / "sig_info.txt"
    lat.write_bytes("sig_id\tpert_idose\nS1\t10 \u00b5M\n".encode("latin-1"))
    assert read_release_table(lat, id_column="sig_id")["pert_idose"].tolist() == ["10 \u00b5M"]
    rag = tmp_path / "ragged.txt.gz"
    rag.write_bytes(gzip.compress(b"sig_id\ttas\nS1\t0.5\nS2\n"))
    with pytest.raises(FormatError, match="ragged.txt.gz"):
        read_release_table(rag, id_column="sig_id")


def test_real_cmap_signature_tables(shared_data):
    """Real CMap sig_info tables (shared/data/query): replicate values joined by | in a column the
    reader expects numeric stay text; µM doses, is_exemplar and gene_targets map to canonical."""
    from opencmap.io.releases import canonical_signatures

    ndis = read_release_table(shared_data / "query" / "siginfo_NDIS.txt", id_column="sig_id")
    assert len(ndis) == 72 and ndis["count_cv"].iloc[0] == "13|14|15"
    assert ndis["distil_cc_q75"].dtype == np.float64
    contest = canonical_signatures(read_release_table(shared_data / "query" / "contest_sig_info.txt", id_column="sig_id"))
    assert set(contest["pert_idose"]) == {"10 uM"} and set(contest["pert_dose"]) == {10.0}
    assert {"is_exemplar_sig", "target", "moa"} <= set(contest.columns) and "gene_targets" not in contest.columns
    assert contest.loc[contest["pert_iname"] == "tyrphostin-AG-82", "target"].iloc[0] == "EGFR"


@pytest.mark.parametrize("bad", ["2", "x", "-1"])
def test_gene_flags_other_than_0_1_are_refused_naming_file_column_and_values(tmp_path, bad):
    path = tmp_path / "gene_info.txt"
    path.write_text(f"pr_gene_id\tpr_gene_symbol\tpr_is_lm\tpr_is_bing\n5720\tPSME1\t1\t1\n466\tATF1\t{bad}\t0\n6009\tRHEB\t0\t{bad}\n")
    frame = read_release_table(path, id_column="pr_gene_id")
    with pytest.raises(FormatError) as exc:
        canonical_genes(frame, source=path)
    text = str(exc.value)
    assert str(path) in text and "'pr_is_lm'" in text and f"hold {bad}" in text.replace("'", "")
    good = frame.assign(pr_is_lm=["1", "true", "0"], pr_is_bing=[1.0, 0.0, 1.0])
    genes = canonical_genes(good, source=path)
    assert genes["pr_is_lm"].tolist() == [1, 1, 0] and genes["pr_is_bing"].tolist() == [1, 0, 1]
    assert genes["feature_space"].tolist() == ["landmark", "landmark", "best inferred"]


def test_release_gene_table_with_bad_flags_is_refused(tmp_path, folders):
    import shutil

    src, files = folders["GSE92742"]
    folder = tmp_path / "gse"
    shutil.copytree(src, folder)
    gene_path = folder / files["gene_info"].name
    table = pd.read_csv(gene_path, sep="\t", dtype=str, compression="infer")
    table.loc[table.index[:2], "pr_is_bing"] = "-666"
    table.to_csv(gene_path, sep="\t", index=False, compression="infer")
    with pytest.raises(FormatError, match=r"gene_info.*'pr_is_bing'.*2 rows hold missing"):
        read_release_genes(find_release_files(folder))


@pytest.mark.parametrize("column,filters", [("pert_type", {"pert_types": ("trt_cp",)}), ("cell_id", {"cells": ("MCF7",)})])
def test_release_filters_on_a_missing_column_name_it_and_the_file(folders, column, filters):
    from opencmap.query.release_store import BuildFilters, _select

    files = find_release_files(folders["GSE92742"][0])
    info, _ = read_release_signatures(files)
    keep, _ = _select(info, BuildFilters(**filters), files)  # with the column: filters
    assert 0 < len(keep) < len(info)
    flag = "--pert-type" if column == "pert_type" else "--cell"
    with pytest.raises(ConfigError) as exc:
        _select(info.drop(columns=column), BuildFilters(**filters), files)
    text = str(exc.value)
    assert flag in text and f"no {column} column" in text and str(files.tables["sig_info"]) in text
