"""Level 1 → Level 5 through the shared runner on CMap's real test plate (README: pipeline/test_plate).

26 LXB wells + plate map → deconvolution → LISS per bead set → censoring → QNORM → z-score → MODZ,
compared with CMap's own ``ZSPCQNORM_n23x978`` (Level 4). Level 2 comes from stochastic k-means
(CMap's seeding cannot be replayed), so Level 4 is compared by per-well Spearman correlation
(measured: median 0.977, min 0.946 with seed 20); the censored wells must be exactly CMap's
(``liss/outlier_samples.txt``: B01, B02 process controls, B13 QC outlier).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from opencmap.errors import PipelineError
from opencmap.io import read_gct, read_table
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.run import RunResult, level1_plates, run_pipeline

PLATE = "TEST_A375_24H_X1_B20"


@pytest.fixture(scope="module")
def plate_dir(shared_data: Path) -> Path:
    return shared_data / "pipeline/test_plate"


@pytest.fixture(scope="module")
def result(plate_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    out = tmp_path_factory.mktemp("level1") / "out"
    return run_pipeline(
        plate_dir / "lxb",
        out,
        params=PipelineParams(start_level=1),
        plate_maps=plate_dir / f"{PLATE}.map",
        seed=20,
        keep_work=True,
    )


def test_level4_matches_cmap_zspcqnorm(result: RunResult, plate_dir: Path) -> None:
    gold = read_gct(plate_dir / f"expected/{PLATE}_ZSPCQNORM_n23x978.gct")
    ours = read_gct(result.level4)
    assert sorted(ours.cids) == sorted(gold.cids)  # the same 23 wells survive
    genes = gold.row_meta["pr_gene_id"].astype(str).tolist()
    mine = ours.subset(rids=genes, cids=gold.cids)
    rho = np.array([spearmanr(mine.data[:, j], gold.data[:, j])[0] for j in range(gold.shape[1])])
    print(f"Level 4 vs CMap ZSPCQNORM: per-well Spearman median {np.median(rho):.4f}, min {rho.min():.4f}")
    assert np.median(rho) >= 0.95
    assert rho.min() >= 0.9
    # same gene space, landmarks flagged
    assert ours.shape[0] == 978
    assert set(ours.row_meta["pr_is_lm"].astype(int)) == {1}


def test_censored_wells_are_cmaps(result: RunResult, plate_dir: Path) -> None:
    cens = read_table(result.out_dir / "censored.txt", index_col="inst_id")
    gold = read_table(plate_dir / "expected/liss/outlier_samples.txt", index_col="id")
    assert sorted(cens.index) == sorted(gold.index)
    assert cens.loc[f"{PLATE}:B13", "reason"] == "qc_outlier"


def test_level5_and_manifest(result: RunResult) -> None:
    level5 = read_gct(result.level5)
    info = read_table(result.sig_info, index_col="sig_id")
    assert level5.shape == (978, result.n_signatures) and len(info) == result.n_signatures
    assert np.isfinite(level5.data).all()
    # every signature comes from surviving wells only
    distil = {i for ids in info["distil_id"].astype(str) for i in ids.split("|")}
    assert not distil & {f"{PLATE}:B01", f"{PLATE}:B02", f"{PLATE}:B13"}
    manifest = json.loads(result.manifest.read_text())
    assert manifest["inputs"]["level1"]["seed"] == 20
    assert manifest["inputs"]["level1"]["chip"] == "bundled"
    assert manifest["counts"]["detection_plates"] == 1 and manifest["counts"]["censored_instances"] == 3
    level2 = manifest["outputs"]["level2"][PLATE]
    assert {"gex", "count", "gex_dp52", "gex_dp53", "qc"} <= set(level2)
    dp52 = read_gct(result.out_dir / level2["gex_dp52"])
    assert dp52.shape == (500, 26)


def test_plate_discovery_layouts(plate_dir: Path, tmp_path: Path) -> None:
    # CMap's layout: lxb/<plate>/ + map/<plate>.map
    lxb = tmp_path / "lxb"
    for name in ("P1", "P2"):
        (lxb / name).mkdir(parents=True)
        for f in sorted((plate_dir / "lxb").glob("*.lxb"))[:3]:
            os.symlink(f, lxb / name / f.name.replace(PLATE, name))
    maps = tmp_path / "map"
    maps.mkdir()
    for name in ("P1", "P2"):
        (maps / f"{name}.map").write_text((plate_dir / f"{PLATE}.map").read_text())
    plates = level1_plates(lxb, maps)
    assert [p.name for p in plates] == ["P1", "P2"]
    assert [p.plate_map.name for p in plates] == ["P1.map", "P2.map"]
    assert all(len(p.files) == 3 for p in plates)
    # a plate without its map is named
    (maps / "P2.map").unlink()
    with pytest.raises(PipelineError, match="P2"):
        level1_plates(lxb, maps)
    # a single plate and a single map pair whatever their names
    single = level1_plates(plate_dir / "lxb", plate_dir / f"{PLATE}.map")
    assert len(single) == 1 and single[0].name == PLATE and len(single[0].files) == 26


def test_level1_needs_a_folder(plate_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="folder"):
        run_pipeline(plate_dir / f"{PLATE}.map", tmp_path / "o", params=PipelineParams(start_level=1))
    with pytest.raises(PipelineError, match="folder"):
        run_pipeline(plate_dir / "lxb", tmp_path / "o2", params=PipelineParams(start_level=3))


def test_rerun_resumes_without_deconvolving_again(result: RunResult, plate_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import opencmap.pipeline.deconvolve as deconvolve

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("deconvolution ran again on resume")

    monkeypatch.setattr(deconvolve, "deconvolve_plate", refuse)
    again = run_pipeline(
        plate_dir / "lxb", result.out_dir, params=PipelineParams(start_level=1), plate_maps=plate_dir / f"{PLATE}.map", seed=20
    )
    assert again.resumed_plates == 1 and again.resumed_sets == 1
    np.testing.assert_array_equal(read_gct(again.level4).data, read_gct(result.level4).data)
