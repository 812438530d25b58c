"""Plate flip correction against CMap's own output for plate TEST_A375_24H_X1_B20.

Given CMap's pre-flip peak calls (``dp52_RAW``/``dp53_RAW`` + ``_COUNT``), flip correction is
deterministic, so its output must equal CMap's ``dp52_GEX``/``dp53_GEX`` and ``flipstats``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from opencmap.errors import ConfigError, ValidationError
from opencmap.io import read_gct
from opencmap.pipeline.flip import FlipParams, flip_correct

NOT_DUO = [*range(1, 12), 499]


@pytest.fixture(scope="module")
def dpeak_dir(shared_data: Path) -> Path:
    return shared_data / "pipeline/test_plate/expected/dpeak"


def test_reproduces_cmap_flip_correction(dpeak_dir: Path) -> None:
    raw = [read_gct(dpeak_dir / f"{b}_RAW_n26x500.gct") for b in ("dp52", "dp53")]
    cnt = [read_gct(dpeak_dir / f"{b}_COUNT_n26x500.gct") for b in ("dp52", "dp53")]
    gex = [read_gct(dpeak_dir / f"{b}_GEX_n26x500.gct") for b in ("dp52", "dp53")]
    stats = read_gct(dpeak_dir / "flipstats_n26x500.gct")
    prob = [read_gct(dpeak_dir / f"{b}_PROB_n26x500.gct") for b in ("dp52", "dp53")]
    assert raw[0].row_meta["pr_analyte_num"].tolist() == list(range(1, 501))
    res = flip_correct(raw[0].data, raw[1].data, cnt[0].data, cnt[1].data, not_duo=NOT_DUO)
    np.testing.assert_array_equal(res.value_hi, gex[0].data)
    np.testing.assert_array_equal(res.value_lo, gex[1].data)
    np.testing.assert_array_equal(res.nflip, stats.data)
    assert res.nflip.sum() == 101
    duo = np.ones(500, dtype=bool)
    duo[np.array(NOT_DUO) - 1] = False
    # CMap writes posteriors with 4 decimals (0 for skipped analytes)
    np.testing.assert_allclose(res.posterior_hi[duo], prob[0].data[duo], atol=1e-4)
    np.testing.assert_allclose(res.posterior_lo[duo], prob[1].data[duo], atol=1e-4)
    assert np.isnan(res.posterior_hi[~duo]).all()
    # counts travel with their values
    swapped = res.nflip % 2 == 1
    np.testing.assert_array_equal(res.count_hi[swapped], cnt[1].data[swapped])


def test_options_and_shapes() -> None:
    with pytest.raises(ConfigError):
        FlipParams(cutoff=1.5)
    with pytest.raises(ConfigError):
        FlipParams(max_iter=0)
    a = np.ones((3, 4))
    with pytest.raises(ValidationError, match="one shape"):
        flip_correct(a, a, a, np.ones((3, 5)))
