"""The generative model: determinism, independence of plates, effects that mean what they say."""

from __future__ import annotations

import numpy as np
import pytest

from opencmap.datasets import SIZES, build_model
from opencmap.datasets.genes import N_LANDMARKS


@pytest.fixture(scope="module")
def model():
    return build_model(SIZES["tiny"], seed=0)


def _row(model, pert_type, **where):
    perts = model.design.perts
    sel = perts["pert_type"] == pert_type
    for k, v in where.items():
        sel &= perts[k] == v
    return int(np.flatnonzero(sel.to_numpy())[0])


def test_plates_are_deterministic_and_order_free(model):
    plates = list(model.design.plates())
    last = model.simulate_plate(plates[-1]).data.copy()
    fresh = build_model(SIZES["tiny"], seed=0)
    for p in plates[:3]:
        fresh.simulate_plate(p)
    again = fresh.simulate_plate(plates[-1]).data
    np.testing.assert_array_equal(last, again)
    other = build_model(SIZES["tiny"], seed=1).simulate_plate(plates[-1]).data
    assert not np.array_equal(last, other)


def test_plate_values_look_like_level3(model):
    pdata = model.simulate_plate(next(model.design.plates()))
    data = pdata.data
    assert data.dtype == np.float32 and data.shape == (model.n_genes, len(pdata.layout))
    assert np.isfinite(data).all() and data.min() >= 0 and data.max() <= 15
    lm = data[:N_LANDMARKS]
    assert 7 < np.median(lm) < 11
    q1, q99 = np.percentile(lm, [1, 99])
    assert q1 < 6 and q99 > 12.5  # range ~4-15
    # gene-gene correlation: the leading PCs of the wells carry more than independent genes would
    centred = lm - lm.mean(axis=1, keepdims=True)
    s = np.linalg.svd(centred, compute_uv=False) ** 2
    assert s[:10].sum() / s.sum() > 0.15


def test_replicate_plates_share_layout_but_not_noise(model):
    plates = [p for p in model.design.plates() if p.group.index == 0]
    a, b = (model.simulate_plate(p) for p in plates[:2])
    assert a.layout.equals(b.layout)
    assert not np.array_equal(a.data, b.data)


def test_knockdown_and_overexpression_move_the_target_gene(model):
    sh = _row(model, "trt_sh")
    symbol = model.design.perts.loc[sh, "target"]
    g = model.genes.index[model.genes["pr_gene_symbol"] == symbol][0]
    assert model.true_signature(sh, "A375", 1.0, 96)[g] < -1.0
    oe = _row(model, "trt_oe", target=symbol)
    assert model.true_signature(oe, "A375", 1.0, 96)[g] > 2.0


def test_inhibitors_agree_with_knockdown_and_agonists_oppose_it(model):
    perts = model.design.perts
    inhibitor = perts[(perts["pert_type"] == "trt_cp") & (perts["programs"] == "TARGET:HDAC2")].index[0]
    prog = model.program("TARGET:HDAC2")
    sig = model.true_signature(int(inhibitor), "A375", 10.0, 24)[:N_LANDMARKS]
    assert np.corrcoef(sig, prog)[0, 1] > 0.5
    agonist = perts[(perts["pert_type"] == "trt_cp") & (perts["programs"] == "-TARGET:NR3C1")].index[0]
    sig = model.true_signature(int(agonist), "MCF7", 10.0, 24)[:N_LANDMARKS]
    if np.linalg.norm(sig) > 0:
        assert np.corrcoef(sig, model.program("TARGET:NR3C1"))[0, 1] < -0.3


def test_dose_response_is_monotone_and_inactive_is_zero(model):
    perts = model.design.perts
    active = int(perts[(perts["pert_type"] == "trt_cp") & (perts["is_active"] == 1)].index[0])
    cell = next(c for c in ("A375", "MCF7") if model.sensitivity(perts.loc[active, "programs"].split("|")[0].lstrip("-"), c) > 0)
    norms = [np.linalg.norm(model.true_signature(active, cell, d, 24)) for d in (0.04, 0.37, 3.33, 10.0)]
    assert all(a < b for a, b in zip(norms, norms[1:], strict=False))
    assert np.linalg.norm(model.true_signature(active, cell, 10.0, 6)) < norms[-1]
    inactive = perts[(perts["pert_type"] == "trt_cp") & (perts["is_active"] == 0)].index
    for r in inactive:
        assert np.all(model.true_signature(int(r), "A375", 10.0, 24) == 0)
    dmso = _row(model, "ctl_vehicle")
    assert np.all(model.true_signature(dmso, "A375", 0.1, 24) == 0)


def test_some_mechanisms_act_only_in_some_lines():
    m = build_model(SIZES["demo"], seed=0)
    cells = list(SIZES["demo"].cell_ids)
    names = [f"MOA:{moa}" if t is None else f"TARGET:{t}" for moa, t, _, _ in __import__("opencmap").datasets.MOA_CATALOGUE]
    responsive = [len(m.responsive_cells(n, cells)) for n in names]
    assert any(r < len(cells) for r in responsive)
    assert sum(r == len(cells) for r in responsive) > len(names) / 2


def test_inferred_genes_are_linear_in_landmarks(model):
    sig = model.true_signature(_row(model, "trt_sh"), "A375", 1.0, 96)
    np.testing.assert_allclose(sig[N_LANDMARKS:], model.inferred_weights @ sig[:N_LANDMARKS], rtol=1e-10, atol=1e-12)
    r2 = model.inference_r2()
    bing = model.genes["pr_is_bing"].to_numpy()[N_LANDMARKS:] == 1
    assert len(r2) == model.n_genes - N_LANDMARKS
    assert r2[bing].min() >= 0.6 and r2[~bing].max() <= 0.25


def test_designed_r2_holds_within_a_cell_line(model):
    """Within one cell line's plates, y ~ W x reaches about the designed R^2 (a bit more: perturbations)."""
    plates = [p for p in model.design.plates() if p.group.cell_id == "A375" and p.group.kind == "cp"]
    data = np.concatenate([model.simulate_plate(p).data for p in plates], axis=1).astype(np.float64)
    x, y = data[:N_LANDMARKS], data[N_LANDMARKS:]
    pred = model.inferred_weights @ (x - model.mu0[:, None]) + model.inferred_mu[:, None]
    r2 = 1 - ((y - pred) ** 2).sum(1) / ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    assert np.corrcoef(r2, model.inferred_r2)[0, 1] > 0.8
    assert np.median(r2 - model.inferred_r2) > -0.05
