"""Inference: training on a synthetic compendium, quality, application, save/load, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import FormatError, PipelineError, VersionError
from opencmap.pipeline.infer import (
    InferenceModel,
    apply_inference,
    landmark_rows,
    load_inference_model,
    save_inference_model,
    train_inference,
)

N_LM, N_GOOD, N_BAD = 12, 8, 4


def compendium(n_profiles: int = 300, seed: int = 0) -> tuple[GCT, np.ndarray]:
    """Landmarks ~ N(8, 1.5); 8 genes = linear in landmarks + small noise; 4 genes = pure noise."""
    rng = np.random.default_rng(seed)
    lm = rng.normal(8, 1.5, (N_LM, n_profiles))
    w = rng.normal(0, 0.3, (N_GOOD, N_LM + 1))
    w[:, 0] = rng.uniform(2, 6, N_GOOD)
    good = w[:, 1:] @ lm + w[:, [0]] + rng.normal(0, 0.05, (N_GOOD, n_profiles))
    bad = rng.normal(7, 1, (N_BAD, n_profiles))
    rids = [f"L{i}" for i in range(N_LM)] + [f"G{i}" for i in range(N_GOOD)] + [f"N{i}" for i in range(N_BAD)]
    rows = pd.DataFrame(
        {"pr_is_lm": [1] * N_LM + [0] * (N_GOOD + N_BAD), "pr_gene_symbol": [f"SYM_{r}" for r in rids]}, index=rids
    )
    cols = pd.DataFrame(index=[f"GSM{i}" for i in range(n_profiles)])
    return GCT(np.vstack([lm, good, bad]), row_meta=rows, col_meta=cols), w


def level3(rng: np.random.Generator, n: int = 25) -> GCT:
    rows = pd.DataFrame({"pr_gene_symbol": [f"SYM_L{i}" for i in range(N_LM)]}, index=[f"L{i}" for i in range(N_LM)])
    cols = pd.DataFrame({"pert_type": ["trt_cp"] * n}, index=[f"P:{i}" for i in range(n)])
    return GCT(rng.normal(8, 1.5, (N_LM, n)), row_meta=rows, col_meta=cols)


@pytest.fixture(scope="module")
def trained() -> tuple[InferenceModel, np.ndarray]:
    comp, w = compendium()
    return train_inference(comp, holdout_fraction=0.25, rng=1, description="synthetic"), w


def test_training_recovers_weights_and_rates_genes(trained) -> None:  # noqa: ANN001
    model, w = trained
    assert model.landmark_ids == tuple(f"L{i}" for i in range(N_LM))
    assert model.dependent_ids[:N_GOOD] == tuple(f"G{i}" for i in range(N_GOOD))
    np.testing.assert_allclose(model.weights[:N_GOOD, 1:], w[:, 1:], atol=0.01)
    np.testing.assert_allclose(model.weights[:N_GOOD, 0], w[:, 0], atol=0.2)
    q = model.fit_quality
    assert (q.loc[[f"G{i}" for i in range(N_GOOD)], "r_holdout"] > 0.95).all()
    assert (q.loc[[f"N{i}" for i in range(N_BAD)], "r_holdout"].abs() < 0.4).all()
    assert model.well_inferred(0.9) == [f"G{i}" for i in range(N_GOOD)]
    assert model.info["n_holdout"] == 75 and model.info["n_train"] == 300 and model.info["seed"] == 1


def test_apply_layout_clip_and_blocks(trained) -> None:  # noqa: ANN001
    model, w = trained
    x = level3(np.random.default_rng(5))
    x.data[0, 0] = 40.0  # pushes some predictions beyond the clip range
    out = apply_inference(x, model, block_size=7, min_r=0.9)
    assert list(out.rids) == list(model.landmark_ids) + list(model.dependent_ids)
    assert out.row_meta["pr_is_lm"].tolist() == [1] * N_LM + [0] * (N_GOOD + N_BAD)
    assert out.row_meta["pr_is_bing"].tolist() == [1] * (N_LM + N_GOOD) + [0] * N_BAD
    assert out.row_meta.loc["G0", "pr_gene_symbol"] == "SYM_G0"
    np.testing.assert_array_equal(out.data[:N_LM], x.data)
    expected = np.clip(model.weights[:, 1:] @ x.data.astype(np.float64) + model.weights[:, [0]], 0, 15)
    np.testing.assert_allclose(out.data[N_LM:], expected, atol=1e-4)
    assert out.data[N_LM:].max() <= 15 and out.data[N_LM:].min() >= 0
    whole = apply_inference(x, model)
    np.testing.assert_array_equal(whole.data, out.data)
    assert out.col_meta.equals(x.col_meta)


def test_missing_landmarks_are_named(trained) -> None:  # noqa: ANN001
    model, _ = trained
    x = level3(np.random.default_rng(6))
    partial = x.subset(rids=[r for r in x.rids if r not in ("L3", "L7")])
    with pytest.raises(PipelineError, match=r"2 are missing.*'L3', 'L7'"):
        apply_inference(partial, model)


def test_nan_landmark_gives_nan_predictions(trained) -> None:  # noqa: ANN001
    model, _ = trained
    x = level3(np.random.default_rng(7), n=3)
    x.data[2, 1] = np.nan
    out = apply_inference(x, model)
    assert np.isnan(out.data[N_LM:, 1]).all() and np.isfinite(out.data[N_LM:, [0, 2]]).all()


def test_save_load_round_trip(trained, tmp_path) -> None:  # noqa: ANN001
    model, _ = trained
    path = save_inference_model(model, tmp_path / "model.h5", weights_dtype="float64")
    back = load_inference_model(path)
    assert back.landmark_ids == model.landmark_ids and back.dependent_ids == model.dependent_ids
    np.testing.assert_array_equal(back.weights, model.weights)
    pd.testing.assert_frame_equal(back.fit_quality, model.fit_quality, check_names=False)
    assert back.dependent_meta["pr_gene_symbol"].tolist() == model.dependent_meta["pr_gene_symbol"].tolist()
    assert back.info == model.info and back.clip == model.clip
    small = load_inference_model(save_inference_model(model, tmp_path / "model32.h5"))
    np.testing.assert_allclose(small.weights, model.weights, rtol=1e-6, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind


def test_newer_or_foreign_files_are_refused(trained, tmp_path) -> None:  # noqa: ANN001
    model, _ = trained
    path = save_inference_model(model, tmp_path / "m.h5")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(VersionError, match="newer"):
        load_inference_model(path)
    other = tmp_path / "x.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(FormatError):
        load_inference_model(other)
    text = tmp_path / "t.h5"
    text.write_text("not hdf5")
    with pytest.raises(FormatError):
        load_inference_model(text)


def test_training_errors_and_defaults() -> None:
    comp, _ = compendium(n_profiles=40)
    assert landmark_rows(comp) == [f"L{i}" for i in range(N_LM)]
    with pytest.raises(PipelineError, match="too few"):
        train_inference(comp.take(cols=range(6)), holdout_fraction=0.2)
    data = comp.data.copy()
    data[N_LM, 3] = np.nan
    with pytest.raises(PipelineError, match="missing values"):
        train_inference(GCT(data, row_meta=comp.row_meta, col_meta=comp.col_meta))
    no_flag = GCT(comp.data, rids=comp.rids, cids=comp.cids)
    with pytest.raises(PipelineError, match="pr_is_lm"):
        train_inference(no_flag)
    m = train_inference(comp, holdout_fraction=0.0, landmark_ids=[f"L{i}" for i in range(N_LM)], dependent_ids=["G0"])
    assert m.dependent_ids == ("G0",) and m.fit_quality["r_holdout"].isna().all()
    with pytest.raises(PipelineError, match="held-out"):
        m.well_inferred(0.5)
