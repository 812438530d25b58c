"""The experimental design: catalogue, seeds, plates and layouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from opencmap.datasets import MOA_CATALOGUE, SIZES, CompendiumSpec, Design, gene_table, spec_for
from opencmap.datasets.design import WELLS, _seed_assignment
from opencmap.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_design() -> Design:
    return Design(SIZES["tiny"], seed=0)


def test_catalogue_ids_and_types(tiny_design):
    perts = tiny_design.perts
    assert perts["pert_id"].is_unique
    counts = perts["pert_type"].value_counts()
    spec = tiny_design.spec
    assert counts["trt_cp"] == spec.n_moa * spec.compounds_per_moa
    assert counts["trt_sh"] == spec.n_sh_targets * spec.hairpins_per_target
    assert counts["trt_oe"] == spec.n_oe_targets
    assert counts["ctl_vehicle"] == 1 and counts["ctl_vector"] == 1
    cp = perts[perts["pert_type"] == "trt_cp"]
    assert cp["pert_id"].str.fullmatch(r"BRD-K[0-9]{8}").all()
    assert perts.loc[perts["pert_type"] == "trt_sh", "pert_id"].str.fullmatch(r"TRCN[0-9]{10}").all()
    # every class has at least two active members; some compounds are inactive or hit two programs
    active = cp[cp["is_active"] == 1].groupby("moa").size()
    assert len(active) == spec.n_moa and (active >= 2).all()
    assert (cp["dual_moa_index"] >= 0).any()


def test_at_least_20_moas_in_demo():
    assert SIZES["demo"].n_moa >= 20 and SIZES["tiny"].n_moa >= 20
    assert len({m for m, *_ in MOA_CATALOGUE}) == len(MOA_CATALOGUE)


def test_genetic_targets_are_landmarks():
    symbols = set(gene_table().query("pr_is_lm == 1")["pr_gene_symbol"])
    perts = Design(SIZES["demo"], seed=0).perts
    targets = set(perts.loc[perts["pert_type"].isin(["trt_sh", "trt_oe"]), "target"])
    assert targets <= symbols
    linked = {t for _, t, _, _ in MOA_CATALOGUE if t is not None}
    assert linked <= targets  # every target-linked MOA has shRNAs against its target


@pytest.mark.parametrize(("n_targets", "per_target"), [(8, 4), (30, 4), (5, 3), (1, 4), (2, 5)])
def test_seed_assignment(n_targets, per_target):
    seeds = _seed_assignment(n_targets, per_target)
    assert seeds.shape == (n_targets, per_target)
    for row in seeds:  # hairpins of one target never share a seed
        assert len(set(row.tolist())) == per_target
    if n_targets * per_target >= 12:
        sizes = np.bincount(seeds.ravel())
        assert sizes.max() >= 2  # seeds are shared across targets
        assert 2 <= np.median(sizes) <= 4


def test_plates_and_layouts(tiny_design):
    plates = list(tiny_design.plates())
    assert len(plates) == tiny_design.n_plates
    names = [p.rna_plate for p in plates]
    assert len(set(names)) == len(names)
    assert {p.replicate for p in plates} == {1, 2, 3}
    assert all(p.rna_plate.endswith(f"_X{p.replicate}") for p in plates)
    total = 0
    for group in tiny_design.groups:
        layout = tiny_design.layout(group)
        assert layout["rna_well"].is_unique and set(layout["rna_well"]) <= set(WELLS)
        assert layout["rna_well"].tolist() == sorted(layout["rna_well"])
        assert len(layout) <= 384
        types = tiny_design.perts["pert_type"].to_numpy()[layout["pert_row"].to_numpy()]
        assert "ctl_vehicle" in types  # DMSO on every plate
        if group.kind == "genetic":
            assert "ctl_vector" in types
        total += len(layout)
    assert total * tiny_design.spec.n_replicates == tiny_design.n_profiles


def test_layout_is_keyed_by_group_not_order():
    a = Design(SIZES["tiny"], seed=0)
    b = Design(SIZES["tiny"], seed=0)
    g = a.groups[-1]
    assert a.layout(g).equals(b.layout(b.groups[-1]))
    assert not a.layout(a.groups[0])["pert_row"].equals(Design(SIZES["tiny"], seed=1).layout(a.groups[0])["pert_row"])


def test_compound_biology_does_not_depend_on_size():
    tiny = Design(SIZES["tiny"], seed=0).perts.set_index("pert_id")
    big = Design(dataclasses.replace(SIZES["tiny"], compounds_per_moa=5), seed=0).perts.set_index("pert_id")
    common = tiny.index[tiny["pert_type"] == "trt_cp"]
    assert set(common) <= set(big.index)
    assert tiny.loc[common, ["moa", "is_active", "programs"]].equals(big.loc[common, ["moa", "is_active", "programs"]])


def test_spec_for_sizes_and_n_profiles():
    assert spec_for("tiny") == SIZES["tiny"]
    spec = spec_for("tiny", n_profiles=5000)
    n = Design(spec, seed=0).n_profiles
    assert n >= 5000
    smaller = dataclasses.replace(spec, compounds_per_moa=spec.compounds_per_moa - 1)
    assert Design(smaller, seed=0).n_profiles < 5000
    assert spec_for("demo", n_inferred=None).n_inferred is None
    with pytest.raises(ConfigError, match="unknown size"):
        spec_for("huge")
    with pytest.raises(ConfigError):
        spec_for("tiny", n_profiles=0)


def test_spec_validation_and_roundtrip():
    with pytest.raises(ConfigError, match="n_moa"):
        CompendiumSpec(n_moa=0).validate()
    with pytest.raises(ConfigError, match="unknown cell"):
        CompendiumSpec(cell_ids=("NOPE",)).validate()
    spec = SIZES["demo"]
    assert CompendiumSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="unknown"):
        CompendiumSpec.from_dict({"bogus": 1})
