"""``opencmap store build DIR... DEST``: release folders from the command line (CliRunner)."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
from click.testing import CliRunner

from opencmap.cli import cli, main
from opencmap.query.store import Store
from releases.replicas import PLANTED_MOA, planted_query, write_gse92742, write_lincs2020


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_releases")
    geo = write_gse92742(root / "GSE92742")
    gz = geo["level5"]
    with gzip.open(gz, "rb") as src, open(gz.with_name(gz.name[:-3]), "wb") as dst:  # gunzip -k
        shutil.copyfileobj(src, dst)
    write_lincs2020(root / "beta")
    planted = planted_query()
    (root / "pcl.gmt").write_text(f"{PLANTED_MOA}\t\t" + "\t".join(planted.pert_ids) + "\n")
    return root, planted


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_build_from_folder_states_disk_then_queries_by_symbol_without_pcl(folders):
    root, planted = folders
    res = run("store", "build", root / "GSE92742", root / "store", "--pcl", root / "pcl.gmt",
              "--pert-info", root / "beta" / "compoundinfo_beta.txt", "--pert-type", "trt_cp", "--pert-type", "ctl_vehicle")
    assert res.exit_code == 0, res.output
    assert "235.1 KB (lm 9.8 KB, bing 101.7 KB, full 123.3 KB)" in res.stderr
    out = json.loads(res.stdout)
    assert out["n_signatures"] == 156 and out["disk"]["kb_per_signature"] == 235.06
    assert any("FDR nulls = 12" in n for n in out["notes"])
    st = Store(root / "store")
    assert st.pcl and st.manifest["provenance"]["releases"][0]["release"] == "GSE92742"
    q = run("query", root / "store", "--up-genes", ",".join(planted.up), "--down-genes", ",".join(planted.down),
            "--level", "pcl_summary", "--top", "1")
    assert q.exit_code == 0, q.output
    assert PLANTED_MOA in q.stdout
    q = run("query", root / "store", "--up-genes", ",".join(planted.up), "--down-genes", ",".join(planted.down),
            "--level", "pert_summary", "--top", "2")
    assert all(name in q.stdout for name in planted.pert_inames)


def test_dry_run_writes_nothing(folders):
    root, _ = folders
    res = run("store", "build", root / "beta", root / "dry", "--dry-run", "--qc-pass", "--cell", "A375")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["releases"][0]["release"] == "LINCS2020" and 0 < plan["n_signatures"] < plan["releases"][0]["n_in_matrix"]
    assert plan["free_gb"] > 0 and "level5_beta_ctl_n58022x12328.gctx" in res.stderr
    assert not (root / "dry").exists()


def test_bad_input_is_one_line(folders, tmp_path, capsys):
    root, _ = folders
    bad = tmp_path / "genes.txt"
    bad.write_text("gene_symbol\tfeature_space\nPSME1\tlandmark\n")
    matrix = root / "beta" / "level5_beta_trt_cp_n720216x12328.gctx"
    with pytest.raises(SystemExit) as exc:
        main(["store", "build", str(matrix), str(tmp_path / "s"), "--gene-info", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "genes.txt" in err and "columns found" in err
    with pytest.raises(SystemExit):
        main(["store", "build", str(root / "GSE92742"), str(tmp_path / "s"), "--qc-pass"])
    assert "--qc-pass" in capsys.readouterr().err
    res = run("store", "build", root / "GSE92742", matrix, tmp_path / "s")
    assert res.exit_code != 0 and "not both" in res.output


def test_matrix_file_with_pert_info_carries_moa(folders, tmp_path):
    root, planted = folders
    beta = root / "beta"
    res = run("store", "build", beta / "level5_beta_trt_cp_n720216x12328.gctx", tmp_path / "s",
              "--sig-info", beta / "siginfo_beta.txt", "--gene-info", beta / "geneinfo_beta.txt",
              "--pert-info", beta / "compoundinfo_beta.txt", "--pcl", root / "pcl.gmt")
    assert res.exit_code == 0, res.output
    assert "GB on disk" in res.stderr
    st = Store(tmp_path / "s")
    moa = st.sig_info.set_index("pert_id")["moa"]
    assert set(moa.loc[list(planted.pert_ids)]) == {PLANTED_MOA}
    assert st.genes.set_index("pr_gene_id").loc["5720", "pr_gene_symbol"] == "PSME1"
    assert st.pcl is not None


def test_append_a_release_folder(folders, tmp_path):
    root, planted = folders
    from releases.replicas import write_gse70138

    g2 = write_gse70138(tmp_path / "GSE70138")
    gz = g2["level5"]
    with gzip.open(gz, "rb") as src, open(gz.with_name(gz.name[:-3]), "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert run("store", "build", root / "GSE92742", tmp_path / "s", "--pcl", root / "pcl.gmt").exit_code == 0
    res = run("store", "append", tmp_path / "s", tmp_path / "GSE70138", "--exemplar-only")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_segments"] == 2 and out["releases"] == ["GSE92742", "GSE70138"]
    st = Store(tmp_path / "s")
    new = st.sig_info[st.sig_info["release"] == "GSE70138"]
    assert (new["is_exemplar_sig"] == 1).all()
    assert set(new.loc[new["pert_id"].isin(planted.pert_ids), "moa"]) == {PLANTED_MOA}  # named by the stored PCL
