"""Bead-level output of the synthetic compendium: LXB writer, bead mixtures, and the round trip
beads → deconvolution → Level 2/3 against the generator's own Level 3 truth.

Measured on ``tiny`` (seed 0, 1 plate x 40 wells): Level 2 landmarks within 0.5 log2 of the truth
~91 %; swapped pairs among analytes whose genes differ by > 1 log2: ~5.6 % with flip correction,
~6.8 % without; Level 3 vs truth per-well Spearman median ~0.91.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from opencmap.datasets import Compendium, make_compendium
from opencmap.datasets.beads import BeadPlates, write_bead_plates
from opencmap.errors import ConfigError, ValidationError
from opencmap.io import read_gct, read_table
from opencmap.io.beads import read_plate_map
from opencmap.io.lxb import read_lxb, read_lxb_beads, write_lxb
from opencmap.pipeline.deconvolve import deconvolve_plate
from opencmap.pipeline.run import level2_to_level3

WELLS = 40


@pytest.fixture(scope="module")
def bead_plates(tiny: Compendium, tmp_path_factory: pytest.TempPathFactory) -> BeadPlates:
    return write_bead_plates(tiny.path, tmp_path_factory.mktemp("beads"), plates=1, max_wells=WELLS, seed=3)


def test_lxb_writer_round_trips_a_real_file(shared_data: Path, tmp_path: Path) -> None:
    real = read_lxb(shared_data / "pipeline/level1/A10.lxb")
    write_lxb(tmp_path / "a.lxb", real.data, real.names, keywords={"$SMNO": "A10/x"})
    back = read_lxb(tmp_path / "a.lxb")
    np.testing.assert_array_equal(back.data, real.data)
    assert back.names == real.names and back.keywords["$SMNO"] == "A10/x"  # delimiter escaped
    with pytest.raises(ValidationError):
        write_lxb(tmp_path / "b.lxb", np.array([[1, -2]]), ("RID", "RP1"))
    with pytest.raises(ValidationError):
        write_lxb(tmp_path / "b.lxb", np.zeros((3, 2)), ("RID",))
    assert not (tmp_path / "b.lxb").exists()


def test_files_and_bead_mixtures(bead_plates: BeadPlates, tiny: Compendium) -> None:
    (plate,) = bead_plates.plates
    files = sorted((bead_plates.lxb_dir / plate).glob("*.lxb"))
    assert len(files) == WELLS == bead_plates.n_wells
    pmap = read_plate_map(bead_plates.map_dir / f"{plate}.map")
    assert len(pmap) == WELLS and set(pmap["det_plate"]) == {plate}
    inst = read_table(tiny.file("inst_info"), index_col="inst_id")
    first = pmap.index[0]
    assert pmap.loc[first, "pert_id"] == inst.loc[f"{plate}:{first}", "pert_id"]
    b = read_lxb_beads(files[0])
    counts = np.bincount(b.analyte, minlength=501)[1:]
    assert counts.min() >= 30 and counts.max() <= 60  # realistic counts per analyte
    assert 0.02 < np.mean(b.analyte == 0) < 0.1  # unclassified beads
    assert (b.intensity == np.round(b.intensity)).all() and b.intensity.min() >= 1


def test_round_trip_level2_and_level3(bead_plates: BeadPlates, tiny: Compendium) -> None:
    (plate,) = bead_plates.plates
    truth = read_table(bead_plates.truth, index_col="inst_id")
    gain = truth["gain_log2"].to_numpy(dtype=float)
    level3 = read_gct(tiny.file("level3"), cid=list(truth.index))
    stats = {}
    for label, flip in (("flip", "default"), ("no flip", None)):
        kwargs = {} if flip == "default" else {"flip": None}
        l2 = deconvolve_plate(bead_plates.lxb_dir / plate, bead_plates.map_dir / f"{plate}.map", seed=1, **kwargs)
        assert [c.split(":")[1] for c in l2.gex.cids] == truth["det_well"].tolist()
        lm = (l2.gex.row_meta["pr_type"].astype(str) == "LM").to_numpy()
        rec = np.log2(l2.gex.data[lm])
        true = level3.subset(rids=list(l2.gex.rids[lm])).data + gain[None, :]
        accuracy = float(np.mean(np.abs(rec - true) < 0.5))
        hi, lo = l2.bead_sets["dp52"], l2.bead_sets["dp53"]
        duo = (hi.row_meta["pr_type"].astype(str) == "LM").to_numpy() & (lo.row_meta["pr_type"].astype(str) == "LM").to_numpy()
        th = level3.subset(rids=list(hi.rids[duo])).data + gain[None, :]
        tl = level3.subset(rids=list(lo.rids[duo])).data + gain[None, :]
        rh, rl = np.log2(hi.data[duo]), np.log2(lo.data[duo])
        swapped = np.abs(rh - tl) + np.abs(rl - th) < np.abs(rh - th) + np.abs(rl - tl)
        apart = np.abs(th - tl) > 1.0
        stats[label] = (accuracy, float(swapped[apart].mean()))
        print(f"{label}: Level 2 within 0.5 log2 {accuracy:.3f}; swap rate (genes > 1 log2 apart) {stats[label][1]:.3f}")
        assert accuracy > 0.85
        assert stats[label][1] < 0.1
        if flip == "default":
            norm3, report = level2_to_level3(l2.bead_sets)
            assert report["censored"].sum() <= 2
            t3 = level3.subset(rids=list(norm3.rids), cids=[truth.index[truth["det_well"] == c.split(":")[1]][0] for c in norm3.cids])
            rho = [spearmanr(norm3.data[:, j], t3.data[:, j])[0] for j in range(norm3.shape[1])]
            print(f"Level 3 vs truth: per-well Spearman median {np.median(rho):.3f}, min {np.min(rho):.3f}")
            assert np.median(rho) > 0.85
    assert stats["flip"][1] <= stats["no flip"][1] + 0.01  # flip correction does not add swaps


def test_make_compendium_beads_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bead_plates"):
        make_compendium(tmp_path / "a", "tiny", seed=0, beads=True, max_default_bead_plates=1)
    assert not (tmp_path / "a" / "level3.gctx").exists()  # refused before generating
    comp = make_compendium(tmp_path / "b", "tiny", seed=0, beads=True, bead_plates=1)
    info = comp.manifest["beads"]
    assert len(info["plates"]) == 1 and info["n_wells"] > 0
    assert len(list((comp.path / "lxb" / info["plates"][0]).glob("*.lxb"))) == info["n_wells"]
    assert (comp.path / "map" / f"{info['plates'][0]}.map").exists()
