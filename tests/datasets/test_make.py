"""Writing the compendium: GEO layout, read back through opencmap.io, byte-for-byte determinism."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from opencmap.datasets import FILES, build_model, make_compendium, open_compendium, spec_for, true_signatures
from opencmap.errors import ConfigError, FormatError, IdNotFoundError, VersionError
from opencmap.io import read_gct, read_gmt, read_meta, read_table

INST_COLUMNS = [
    "inst_id", "rna_plate", "rna_well", "pert_id", "pert_iname", "pert_type", "pert_dose", "pert_dose_unit",
    "pert_time", "pert_time_unit", "cell_id",
]  # fmt: skip


def test_level3_reads_back_with_gene_rows(tiny):
    g = read_gct(tiny.file("level3"))
    genes = read_table(tiny.file("gene_info"))
    assert list(g.rids) == genes["pr_gene_id"].tolist()
    assert g.data.shape == (tiny.manifest["n_genes"], tiny.manifest["n_profiles"])
    assert {"pr_gene_symbol", "pr_is_lm", "pr_is_bing"} <= set(g.row_meta.columns)
    assert int(g.row_meta["pr_is_lm"].sum()) == 978
    assert g.row_meta["pr_is_lm"].iloc[:978].eq(1).all()
    assert list(genes.columns) == ["pr_gene_id", "pr_gene_symbol", "pr_gene_title", "pr_is_lm", "pr_is_bing"]
    assert g.data.dtype == np.float32 and np.isfinite(g.data).all()


def test_inst_info_matches_level3_columns(tiny):
    inst = read_table(tiny.file("inst_info"))
    assert list(inst.columns[: len(INST_COLUMNS)]) == INST_COLUMNS
    col_meta = read_meta(tiny.file("level3"), axis="col")
    assert list(col_meta.index) == inst["inst_id"].tolist()
    assert inst["inst_id"].is_unique
    assert inst["rna_well"].str.fullmatch(r"[A-P](0[1-9]|1[0-9]|2[0-4])").all()
    assert (inst["inst_id"] == inst["det_plate"] + ":" + inst["rna_well"]).all()
    assert set(inst["pert_type"]) == {"trt_cp", "trt_sh", "trt_oe", "ctl_vehicle", "ctl_vector"}
    assert set(inst.loc[inst["pert_type"] == "trt_cp", "pert_dose_unit"]) == {"µM"}
    assert inst["pert_time_unit"].eq("h").all()
    # every plate has DMSO, genetic plates have empty vectors, replicate plates X1..X3
    per_plate = inst.groupby("rna_plate")["pert_type"].agg(set)
    assert all("ctl_vehicle" in s for s in per_plate)
    assert all("ctl_vector" in s for s in per_plate if "trt_sh" in s)
    assert set(inst["rna_plate"].str.extract(r"_X(\d)$")[0]) == {"1", "2", "3"}


def test_tables_and_ground_truth(tiny):
    perts = read_table(tiny.file("pert_info"))
    assert list(perts.columns[:8]) == [
        "pert_id", "pert_iname", "pert_type", "is_touchstone", "inchi_key_prefix", "inchi_key", "canonical_smiles",
        "pubchem_cid",
    ]  # fmt: skip
    cells = read_table(tiny.file("cell_info"))
    assert cells["cell_id"].tolist() == ["A375", "MCF7"]
    assert {"cell_type", "primary_site", "subtype"} <= set(cells.columns)
    truth = read_table(tiny.file("ground_truth"))
    assert truth["pert_id"].tolist() == perts["pert_id"].tolist()
    cp = truth[truth["pert_type"] == "trt_cp"]
    assert cp["moa"].notna().all() and cp["programs"][cp["is_active"] == 1].notna().all()
    sh = truth[truth["pert_type"] == "trt_sh"]
    assert sh["seed_sequence"].str.fullmatch("[ACGU]{7}").all()
    inst = read_table(tiny.file("inst_info"))
    assert set(inst["pert_id"]) == set(truth["pert_id"])


def test_pcl_gmt_members_are_active_compounds(tiny):
    sets = read_gmt(tiny.file("pcl"))
    truth = read_table(tiny.file("ground_truth")).set_index("pert_id")
    assert len(sets) == tiny.spec.n_moa
    for s in sets:
        assert len(s.genes) >= 2
        rows = truth.loc[list(s.genes)]
        assert (rows["moa"] == s.description).all() and (rows["is_active"] == 1).all()


def test_manifest(tiny):
    m = json.loads((tiny.path / "manifest.json").read_text())
    assert m["format"] == "opencmap-synthetic-compendium" and m["seed"] == 0 and m["size"] == "tiny"
    assert set(m["files"]) == set(FILES)
    for info in m["files"].values():
        data = (tiny.path / info["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["bytes"]
    inst = read_table(tiny.file("inst_info"))
    assert set(m["failed_inst_ids"]) <= set(inst["inst_id"])
    assert m["n_profiles"] == len(inst)
    assert open_compendium(tiny.path).spec == spec_for("tiny")


def test_same_seed_same_bytes(tiny, tmp_path):
    again = make_compendium(tmp_path / "again", "tiny", seed=0)
    for key, name in FILES.items():
        assert (tiny.path / name).read_bytes() == (again.path / name).read_bytes(), key
    assert (tiny.path / "manifest.json").read_bytes() == (again.path / "manifest.json").read_bytes()
    other = make_compendium(tmp_path / "other", "tiny", seed=1)
    assert other.manifest["files"]["level3"]["sha256"] != tiny.manifest["files"]["level3"]["sha256"]


def test_refuses_to_overwrite_progress_and_ids_only(tiny, tmp_path):
    with pytest.raises(ConfigError, match="overwrite"):
        make_compendium(tiny.path, "tiny")
    calls = []
    spec = spec_for("tiny", n_inferred=0)
    comp = make_compendium(tmp_path / "p", spec, level3_col_meta=False, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (comp.manifest["n_profiles"], comp.manifest["n_profiles"])
    ids_only = read_meta(comp.file("level3"), axis="col")
    assert ids_only.shape[1] == 0 and list(ids_only.index) == read_table(comp.file("inst_info"))["inst_id"].tolist()
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert comp.manifest["n_genes"] == 978
    with pytest.raises(ConfigError):
        make_compendium(tmp_path / "q", spec, n_profiles=10)
    with pytest.raises(ConfigError):
        make_compendium(tmp_path / "q", spec, n_inferred=5)
    with pytest.raises(ConfigError, match="seed"):
        make_compendium(tmp_path / "r", "tiny", seed=-1)


def test_open_compendium_errors(tmp_path):
    with pytest.raises(FormatError, match="manifest"):
        open_compendium(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(FormatError, match="JSON"):
        open_compendium(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "opencmap-synthetic-compendium", "format_version": 99}))
    with pytest.raises(VersionError):
        open_compendium(tmp_path)


def test_true_signatures(tiny):
    truth = true_signatures(tiny)
    model = build_model(tiny.spec, seed=tiny.seed)
    assert truth.data.shape[0] == tiny.manifest["n_genes"]
    meta = truth.col_meta
    assert set(meta["pert_type"]) == {"trt_cp", "trt_sh", "trt_oe"}
    spec = tiny.spec
    n_cp = spec.n_moa * spec.compounds_per_moa * len(spec.doses) * len(spec.compound_times)
    n_gen = spec.n_sh_targets * spec.hairpins_per_target + spec.n_oe_targets
    assert truth.data.shape[1] == len(spec.cell_ids) * (n_cp + n_gen)
    j = 5
    row = int(np.flatnonzero(model.design.perts["pert_id"] == meta["pert_id"].iloc[j])[0])
    expected = model.true_signature(row, meta["cell_id"].iloc[j], meta["pert_dose"].iloc[j], meta["pert_time"].iloc[j])
    np.testing.assert_allclose(truth.data[:, j], expected.astype(np.float32))
    with pytest.raises(IdNotFoundError):
        true_signatures(model, meta.iloc[:1].assign(pert_id="BRD-NOPE"))


def test_public_api():
    import opencmap.datasets as ds

    assert set(ds.__all__) == {
        "make_compendium", "open_compendium", "true_signatures", "build_model", "Compendium", "CompendiumSpec",
        "CompendiumModel", "ModelParams", "Design", "SIZES", "spec_for", "MOA_CATALOGUE", "TOUCHSTONE_CELLS", "FILES",
        "GENERATOR_VERSION", "gene_table", "select_genes", "cell_table",
    }  # fmt: skip
    assert all(hasattr(ds, name) for name in ds.__all__)
