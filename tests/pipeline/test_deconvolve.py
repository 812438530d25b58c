"""Level 1 -> 2 deconvolution on synthetic bead data with known truth, and on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import ConfigError, FormatError, OpenCMapWarning, PipelineError
from opencmap.io import read_gct
from opencmap.io.beads import Beads, read_chip, read_detect_params
from opencmap.pipeline.deconvolve import (
    DpeakParams,
    call_peaks,
    deconvolve_plate,
    deconvolve_wells,
    simulate_plate,
    well_from_filename,
    write_level2,
)
from opencmap.pipeline.flip import flip_correct


@pytest.fixture(scope="module")
def chip(shared_data: Path) -> pd.DataFrame:
    return read_chip(shared_data / "genes/L1000_EPSILON.R2.chip")


@pytest.fixture(scope="module")
def sim():
    return simulate_plate(48, np.random.default_rng(7), beads_per_analyte=60, hi_fraction=0.62, bead_sd=0.3)


def swap_and_accuracy(sim, value_hi: np.ndarray, value_lo: np.ndarray) -> tuple[float, float]:
    """Swap rate over duo analytes whose genes differ by > 1 log2 unit; share within 0.3 log2."""
    duo = np.ones(value_hi.shape[0], dtype=bool)
    duo[np.array(sim.not_duo) - 1] = False
    th, tl = np.log2(sim.value_hi[duo]), np.log2(sim.value_lo[duo])
    eh, el = np.log2(value_hi[duo]), np.log2(value_lo[duo])
    apart = np.abs(th - tl) > 1.0
    swapped = (np.abs(eh - tl) + np.abs(el - th) < np.abs(eh - th) + np.abs(el - tl)) & apart
    within = np.concatenate([np.abs(eh - th).ravel(), np.abs(el - tl).ravel()]) < 0.3
    return swapped.sum() / apart.sum(), within.mean()


def test_synthetic_accuracy_and_swap_rate(sim) -> None:
    calls = call_peaks(sim.wells, seed=3, not_duo=sim.not_duo)
    raw_swap, raw_acc = swap_and_accuracy(sim, calls.value_hi, calls.value_lo)
    fr = flip_correct(calls.value_hi, calls.value_lo, calls.count_hi, calls.count_lo, not_duo=sim.not_duo)
    flip_swap, flip_acc = swap_and_accuracy(sim, fr.value_hi, fr.value_lo)
    # measured (hard case: 62 % hi beads, 60 beads/analyte): swaps 5.3 % -> 3.1 % with flip
    # correction; values within 0.3 log2 of truth 89.3 % -> 91.0 %
    print(f"swap rate {raw_swap:.4f} -> {flip_swap:.4f} with flip; within 0.3 log2 {raw_acc:.3f} -> {flip_acc:.3f}")
    assert raw_acc > 0.85 and flip_acc > raw_acc
    assert raw_swap < 0.08
    assert flip_swap < 0.8 * raw_swap
    corr = np.corrcoef(np.log2(np.r_[fr.value_hi.ravel(), fr.value_lo.ravel()]),
                       np.log2(np.r_[sim.value_hi.ravel(), sim.value_lo.ravel()]))[0, 1]
    assert corr > 0.97
    nd = np.array(sim.not_duo) - 1
    np.testing.assert_array_equal(calls.value_hi[nd], calls.value_lo[nd])
    err = np.abs(np.log2(calls.value_hi[nd]) - np.log2(sim.value_hi[nd]))
    assert np.median(err) < 0.1 and err.max() < 0.5  # medians of single-gene analytes


def test_reproducible_and_independent_of_other_wells(sim) -> None:
    wells = list(sim.wells.items())[:6]
    a = call_peaks(dict(wells), seed=5, not_duo=sim.not_duo, n_jobs=1)
    b = call_peaks(dict(wells[::-1]), seed=5, not_duo=sim.not_duo, chunk_wells=2, n_jobs=2)
    c = call_peaks(dict(wells), seed=6, not_duo=sim.not_duo)
    np.testing.assert_array_equal(a.value_hi, b.value_hi[:, ::-1])
    np.testing.assert_array_equal(a.count_lo, b.count_lo[:, ::-1])
    assert not np.array_equal(a.value_hi, c.value_hi)  # the seed matters (k-means seeding)
    assert (np.abs(np.log2(a.value_hi / c.value_hi)) < 0.5).mean() > 0.95
    progress: list[tuple[int, int]] = []
    call_peaks(dict(wells), seed=5, chunk_wells=4, progress=lambda d, t: progress.append((d, t)))
    assert progress == [(4, 6), (6, 6)]


def test_level2_layout(sim, chip: pd.DataFrame, tmp_path: Path) -> None:
    wells = dict(list(sim.wells.items())[:8])
    pmap = pd.DataFrame({"pert_id": [f"P{i}" for i in range(8)]}, index=list(wells))
    l2 = deconvolve_wells(wells, seed=1, chip=chip, plate="SIM_PLATE", plate_map=pmap)
    assert l2.gex.shape == (988, 8) and l2.count.shape == (988, 8)
    assert l2.gex.cids[0] == "SIM_PLATE:A01"
    rm = l2.gex.row_meta
    assert (rm["pr_type"].iloc[:978] == "LM").all() and rm["pr_is_lm"].iloc[:978].eq(1).all()
    assert rm.index[978:].tolist() == [f"CAL{i:02d}" for i in range(1, 11)]
    assert rm["pr_bset_id"].iloc[:489].eq("dp52").all() and rm["pr_bset_id"].iloc[489:978].eq("dp53").all()
    assert l2.gex.col_meta["pert_id"].tolist() == [f"P{i}" for i in range(8)]
    assert {"count_mean", "count_cv", "det_plate", "det_well", "bead_set"} <= set(l2.gex.col_meta.columns)
    # gene values are the flip-corrected peak calls of their analyte / bead set
    gene = rm.index[0]
    a = int(rm.loc[gene, "pr_analyte_num"])
    np.testing.assert_array_equal(l2.gex.data[0], l2.flips.value_hi[a - 1].astype(np.float32))
    assert set(l2.bead_sets) == {"dp52", "dp53"} and l2.bead_sets["dp52"].shape == (500, 8)
    np.testing.assert_array_equal(l2.bead_sets["dp52"].data, l2.flips.value_hi.astype(np.float32))
    # QC: mean/cv of good-bead counts over analytes 11..500
    good = l2.peaks.ngoodbead[10:]
    np.testing.assert_allclose(l2.qc["count_mean"], good.mean(axis=0))
    np.testing.assert_allclose(l2.qc["count_cv"], 100 * good.std(axis=0, ddof=1) / good.mean(axis=0))
    paths = write_level2(l2, tmp_path)
    back = read_gct(paths["gex"])
    np.testing.assert_array_equal(back.data, l2.gex.data)
    assert back.rids.tolist() == l2.gex.rids.tolist()
    assert paths["gex"].name == "SIM_PLATE_GEX_n8x988.gctx"
    dp53 = read_gct(paths["gex_dp53"])
    assert dp53.shape == (500, 8) and dp53.rids.tolist() == l2.bead_sets["dp53"].rids.tolist()
    qc = pd.read_csv(paths["qc"], sep="\t", index_col=0)
    np.testing.assert_allclose(qc["count_mean"], l2.qc["count_mean"])


def test_too_few_beads_and_unknown_analytes(chip: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    analyte = np.repeat(np.arange(1, 501, dtype=np.int32), 5)  # 5 beads per analyte: median fallback
    analyte = np.concatenate([analyte, [0, 0, 777]]).astype(np.int32)
    beads = Beads(analyte, np.round(2 ** rng.uniform(6, 12, analyte.size)))
    with pytest.warns(OpenCMapWarning, match="777"):
        l2 = deconvolve_wells({"A01": beads, "A02": beads}, seed=0, chip=chip, flip=None)
    assert (l2.peaks.method_names() == "median").all()
    np.testing.assert_array_equal(l2.peaks.value_hi, l2.peaks.value_lo)
    assert (l2.peaks.totbead == 5).all()
    empty = Beads(np.zeros(0, np.int32), np.zeros(0))
    with pytest.warns(OpenCMapWarning, match="A01 .in memory. has no classified beads") as rec:
        l2 = deconvolve_wells({"A01": empty, "A02": beads}, seed=0, chip=chip, flip=None)
    assert "2 case(s)" in str(rec[0].message) and "777" in str(rec[0].message)
    assert (l2.peaks.method_names()[:, 0] == "missing").all() and (l2.gex.data[:, 0] == 1).all()
    assert np.isnan(l2.qc["count_cv"].iloc[0]) and l2.qc["count_mean"].iloc[0] == 0
    with pytest.raises(PipelineError, match="non-finite"):
        deconvolve_wells({"A01": Beads(np.array([1], np.int32), np.array([np.nan]))}, seed=0, chip=chip)
    with pytest.raises(PipelineError, match="no wells"):
        call_peaks({}, seed=0)


def test_plate_files_and_errors(shared_data: Path, chip: pd.DataFrame, tmp_path: Path) -> None:
    src = shared_data / "pipeline/test_plate/lxb"
    for w in ("A03", "A04", "B01"):
        shutil.copy(src / f"TEST_A375_24H_X1_B20_{w}.lxb", tmp_path)
    pmap = shared_data / "pipeline/test_plate/expected/TEST_A375_24H_X1_B20.map"
    with pytest.warns(OpenCMapWarning, match="no bead file"):
        l2 = deconvolve_plate(tmp_path, pmap, seed=1, chip=chip)
    assert l2.gex.cids.tolist() == [f"TEST_A375_24H_X1_B20:{w}" for w in ("A03", "A04", "B01")]
    assert l2.gex.col_meta["pert_iname"].iloc[0] == "vorinostat"
    # without a map: all files, plate name from the file names
    l2b = deconvolve_plate(sorted(tmp_path.glob("*.lxb")), None, seed=1, chip=chip)
    np.testing.assert_array_equal(l2b.peaks.value_hi, l2.peaks.value_hi)
    assert l2b.gex.cids[0] == "TEST_A375_24H_X1_B20:A03"
    blob = (tmp_path / "TEST_A375_24H_X1_B20_B01.lxb").read_bytes()
    (tmp_path / "TEST_A375_24H_X1_B20_B01.lxb").write_bytes(blob[:5000])
    with pytest.raises(FormatError, match="truncated"):
        deconvolve_plate(tmp_path, None, seed=1, chip=chip)
    (tmp_path / "notes.lxb").write_bytes(b"x")
    with pytest.raises(PipelineError, match="cannot tell the well"):
        deconvolve_plate(tmp_path, None, seed=1, chip=chip)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PipelineError, match="no .lxb files"):
        deconvolve_plate(empty, None, seed=1, chip=chip)


def test_well_names_and_params(shared_data: Path, chip: pd.DataFrame) -> None:
    assert well_from_filename("PLATE_X1_B20_A03.lxb") == "A03"
    assert well_from_filename("a3.LXB") == "A03"
    assert well_from_filename("DPK.CP001_A549_24H_X1_B42_P24.txt") == "P24"
    assert well_from_filename("plate.lxb") is None
    p = DpeakParams.from_detect_params(read_detect_params(shared_data / "genes/detect_params.txt"))
    assert p == DpeakParams()
    with pytest.raises(ConfigError, match="not implemented"):
        DpeakParams.from_detect_params({"dpeak_method": "gmm"})
    with pytest.raises(ConfigError):
        DpeakParams(low=15, high=4)
    with pytest.raises(ConfigError, match="bead sets"):
        deconvolve_wells({}, seed=0, chip=chip, bead_sets=("dp52", "dp99"))


def test_default_chip_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import opencmap.io.beads as beads_io

    monkeypatch.setattr(beads_io, "DEFAULT_CHIP", "no_such.chip")
    with pytest.raises(ConfigError, match="pass chip="):
        deconvolve_wells({}, seed=0)
