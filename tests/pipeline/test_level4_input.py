"""Level 4 input: ``process --level 4`` (Level 4 -> 5 only), and Level 4 given as Level 3 refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from opencmap.cli import cli
from opencmap.errors import OpenCMapWarning, PipelineError
from opencmap.io import read_gct, read_table
from opencmap.pipeline.levels import level4_evidence
from opencmap.pipeline.params import PipelineParams
from opencmap.pipeline.run import run_pipeline

from .test_run import make_level3

REAL_LEVEL3 = [
    "pipeline/level2to4/level3_n376x490.gct",
    "pipeline/plate_qnorm_zscore/gctv13_01.gctx",
    "pipeline/plate_qnorm_zscore/gctv13_01.gct",
    "pipeline/plate_qnorm_zscore/gctv13_01_qnorm.gctx",
    "pipeline/test_plate/expected/TEST_A375_24H_X1_B20_QNORM_n23x978.gct",
    "pipeline/level2to4/gex2norm_QNORM_n192x500.gct",
    "formats/cmappy/test_l1000.gct",
    "formats/cmapm/gctv13_02.gctx",
]
REAL_LEVEL4 = [
    "pipeline/level2to4/level4_n376x490.gct",
    "pipeline/plate_qnorm_zscore/gctv13_01_zs.gctx",
    "pipeline/test_plate/expected/TEST_A375_24H_X1_B20_ZSPCQNORM_n23x978.gct",
]


@pytest.mark.parametrize("name", REAL_LEVEL3)
def test_real_level3_is_never_flagged(shared_data: Path, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OpenCMapWarning)  # cmapPy's .gctx that is GCT text
        evidence = level4_evidence(read_gct(shared_data / name).data)
    assert not evidence.looks_like_level4, evidence
    assert evidence.centred_fraction < 0.05


@pytest.mark.parametrize("name", REAL_LEVEL4)
def test_real_level4_is_always_flagged(shared_data: Path, name: str) -> None:
    evidence = level4_evidence(read_gct(shared_data / name).data)
    assert evidence.looks_like_level4, evidence
    assert evidence.centred_fraction > 0.99 and 0.8 < evidence.median_mad < 1.1


def test_real_level5_is_not_flagged(shared_data: Path) -> None:
    assert not level4_evidence(read_gct(shared_data / "query" / "modzs_n272x978.gctx").data).looks_like_level4


@pytest.fixture(scope="module")
def level3_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("l3")
    make_level3(folder)
    result = run_pipeline(folder / "level3.gctx", folder / "out", inst_info=folder / "inst_info.txt")
    return folder, result


def test_level4_given_as_level3_is_refused(level3_run, tmp_path: Path) -> None:
    folder, result = level3_run
    with pytest.raises(PipelineError, match=r"looks like Level 4 .*100% of 70 genes.*z-score it twice.*--level 4") as exc:
        run_pipeline(result.level4, tmp_path / "again", inst_info=folder / "inst_info.txt")
    assert str(result.level4) in str(exc.value)
    assert not (tmp_path / "again" / "level5.gctx").exists()


def test_level4_to_level5_equals_the_level3_run(level3_run, tmp_path: Path) -> None:
    folder, result = level3_run
    with warnings.catch_warnings():
        warnings.simplefilter("error", OpenCMapWarning)  # real Level 4: no "does not look like Level 4" warning
        l4 = run_pipeline(result.level4, tmp_path / "l4", inst_info=folder / "inst_info.txt", params=PipelineParams(start_level=4))
    a, b = read_gct(result.level5), read_gct(l4.level5)
    assert list(a.cids) == list(b.cids) and list(a.rids) == list(b.rids)
    np.testing.assert_allclose(b.data, a.data, rtol=0, atol=1e-6)
    info_a = read_table(result.sig_info, index_col="sig_id")
    info_b = read_table(l4.sig_info, index_col="sig_id")
    assert info_a.index.equals(info_b.index)
    np.testing.assert_allclose(info_b["distil_cc_q75"].astype(float), info_a["distil_cc_q75"].astype(float), atol=1e-6)
    np.testing.assert_array_equal(read_gct(l4.level4).data, read_gct(result.level4).data)  # Level 4 passed through


def test_cli_process_level4(level3_run, tmp_path: Path) -> None:
    folder, result = level3_run
    res = CliRunner().invoke(cli, ["process", "--level", "4", str(result.level4), str(tmp_path / "o"),
                                   "--inst-info", str(folder / "inst_info.txt"), "--no-progress"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(read_gct(tmp_path / "o" / "level5.gctx").data, read_gct(result.level5).data, atol=1e-6)
    res = CliRunner().invoke(cli, ["process", str(result.level4), str(tmp_path / "p"), "--inst-info", str(folder / "inst_info.txt"), "--no-progress"])
    assert res.exit_code != 0 and isinstance(res.exception, PipelineError)


def test_level3_given_as_level4_warns(level3_run, tmp_path: Path) -> None:
    folder, _ = level3_run
    with pytest.warns(OpenCMapWarning, match="does not look like plate z-scores"):
        run_pipeline(folder / "level3.gctx", tmp_path / "x", inst_info=folder / "inst_info.txt", params=PipelineParams(start_level=4))
