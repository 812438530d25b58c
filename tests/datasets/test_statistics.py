"""The tiny compendium has the biology it promises, measured the way CMap would measure it."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd

from opencmap.datasets import make_compendium
from opencmap.kernels.ranks import average_ranks


def _spearman(x: np.ndarray) -> np.ndarray:
    return np.corrcoef(average_ranks(x, axis=0).T)


def _pairs(meta: pd.DataFrame, corr: np.ndarray, select: np.ndarray) -> pd.DataFrame:
    """All pairs i < j among the selected rows, with both rows' fields (_a, _b) and their correlation."""
    idx = np.flatnonzero(select)
    i, j = np.triu_indices(len(idx), 1)
    a = meta.iloc[idx[i]].reset_index(drop=True).add_suffix("_a")
    b = meta.iloc[idx[j]].reset_index(drop=True).add_suffix("_b")
    out = pd.concat([a, b], axis=1)
    out["r"] = corr[idx[i], idx[j]]
    return out


def test_replicate_cc_q75_resembles_real_level5(replicate_stats):
    meta = replicate_stats.meta
    trt = meta[meta["pert_type"].str.startswith("trt_")]["cc_q75"]
    ctl = meta[meta["pert_type"] == "ctl_vehicle"]["cc_q75"]
    # real Level 5: mostly 0-0.6, a spread rather than a point
    assert 0.1 <= trt.median() <= 0.4
    assert (trt <= 0.6).mean() >= 0.85
    assert trt.quantile(0.9) - trt.quantile(0.1) >= 0.2
    assert trt.max() > 0.45
    # vehicles replicate worse than treatments, but not at zero (well position effects)
    assert ctl.median() < trt.median()
    assert 0.0 < ctl.median() < 0.25


def test_dose_and_time_strengthen_compound_signatures(replicate_stats):
    cp = replicate_stats.meta
    cp = cp[(cp["pert_type"] == "trt_cp") & (cp["is_active"] == 1)]
    by_dose = cp.groupby("pert_dose")["cc_q75"].median()
    assert by_dose.index.size >= 2
    assert by_dose.iloc[-1] > by_dose.iloc[0]
    inactive = replicate_stats.meta
    inactive = inactive[(inactive["pert_type"] == "trt_cp") & (inactive["is_active"] == 0)]["cc_q75"]
    if len(inactive):
        assert inactive.median() < cp["cc_q75"].median()


def test_seed_effects_dominate_single_hairpins(replicate_stats):
    meta = replicate_stats.meta
    corr = _spearman(replicate_stats.signatures)
    pairs = _pairs(meta, corr, (meta["pert_type"] == "trt_sh").to_numpy())
    pairs = pairs[pairs["cell_id_a"] == pairs["cell_id_b"]]
    same_seed = pairs[(pairs["seed_sequence_a"] == pairs["seed_sequence_b"]) & (pairs["target_a"] != pairs["target_b"])]
    same_target = pairs[(pairs["target_a"] == pairs["target_b"]) & (pairs["pert_id_a"] != pairs["pert_id_b"])]
    unrelated = pairs[(pairs["target_a"] != pairs["target_b"]) & (pairs["seed_sequence_a"] != pairs["seed_sequence_b"])]
    assert len(same_seed) >= 10 and len(same_target) >= 10
    assert same_seed["r"].median() > same_target["r"].median() + 0.2
    assert same_target["r"].median() > unrelated["r"].median()


def test_consensus_of_hairpins_recovers_the_target_program(tiny, replicate_stats):
    """Averaging a target's hairpins (different seeds) approaches the true on-target signature."""
    meta = replicate_stats.meta
    model = tiny.model()
    sh = meta[(meta["pert_type"] == "trt_sh") & (meta["cell_id"] == "A375")]
    gains = []
    for target, rows in sh.groupby("target"):
        truth = model.program(f"TARGET:{target}")
        sigs = replicate_stats.signatures[:, rows.index.to_numpy()]
        single = np.mean([np.corrcoef(truth, s)[0, 1] for s in sigs.T])
        consensus = np.corrcoef(truth, sigs.mean(axis=1))[0, 1]
        gains.append(consensus - single)
    assert np.median(gains) > 0.05


def test_moa_members_correlate_more_than_random_pairs(replicate_stats):
    meta = replicate_stats.meta
    corr = _spearman(replicate_stats.signatures)
    top = (meta["pert_type"] == "trt_cp") & (meta["is_active"] == 1) & (meta["pert_dose"] == meta["pert_dose"].max())
    pairs = _pairs(meta, corr, top.to_numpy())
    pairs = pairs[pairs["cell_id_a"] == pairs["cell_id_b"]]
    same = pairs[(pairs["moa_a"] == pairs["moa_b"]) & (pairs["pert_id_a"] != pairs["pert_id_b"])]["r"]
    other = pairs[pairs["moa_a"] != pairs["moa_b"]]["r"]
    assert len(same) >= 20
    assert same.median() > other.median() + 0.08
    assert abs(other.median()) < 0.1


def test_recovered_signatures_match_the_true_ones(tiny, replicate_stats):
    from opencmap.datasets import true_signatures

    meta = replicate_stats.meta
    keep = (meta["pert_type"] == "trt_cp") & (meta["is_active"] == 1) & (meta["pert_dose"] == meta["pert_dose"].max())
    keys = meta.loc[keep, ["pert_id", "cell_id", "pert_dose", "pert_time"]]
    truth = true_signatures(tiny, keys)
    lm = truth.row_meta["pr_is_lm"].to_numpy() == 1
    sigs = replicate_stats.signatures[:, keep.to_numpy()]
    strong = np.flatnonzero(np.linalg.norm(truth.data[lm], axis=0) > 5)
    assert len(strong) >= 10
    r = np.array([np.corrcoef(truth.data[lm, k], sigs[:, k])[0, 1] for k in strong])
    assert np.median(r) > 0.5


def test_bing_genes_are_the_well_inferred_ones(replicate_stats):
    """A ridge model trained on landmarks predicts held-out BING genes well and the others poorly."""
    g = replicate_stats.level3
    lm = g.row_meta["pr_is_lm"].to_numpy() == 1
    bing = g.row_meta["pr_is_bing"].to_numpy()[~lm] == 1
    x, y = g.data[lm].astype(np.float64).T, g.data[~lm].astype(np.float64).T
    rng = np.random.default_rng(0)
    test = rng.random(len(x)) < 0.25
    xm, ym = x[~test].mean(0), y[~test].mean(0)
    xt, yt = x[~test] - xm, y[~test] - ym
    lam = 100.0
    w = np.linalg.solve(xt.T @ xt + lam * np.eye(x.shape[1]), xt.T @ yt)
    pred = (x[test] - xm) @ w + ym
    r2 = 1 - ((y[test] - pred) ** 2).sum(0) / ((y[test] - y[test].mean(0)) ** 2).sum(0)
    assert abs(bing.mean() - 9196 / 11350) < 0.01  # the real BING share of the inferred genes
    assert np.median(r2[bing]) > 0.6
    assert np.median(r2[~bing]) < 0.3
    called = r2 > 0.45
    assert (called == bing).mean() > 0.85


def test_memory_is_bounded_by_a_plate_not_the_compendium(tmp_path):
    def peak(n_profiles: int | None, where: str) -> tuple[int, int]:
        tracemalloc.start()
        try:
            comp = make_compendium(tmp_path / where, "tiny", n_profiles=n_profiles, n_inferred=0)
            return comp.manifest["n_profiles"], tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    n1, p1 = peak(None, "small")
    n4, p4 = peak(4 * 1128, "large")
    assert n4 >= 4 * n1 * 0.95
    assert p4 < 1.6 * p1
