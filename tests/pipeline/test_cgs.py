"""Consensus gene signatures on any Level 5 input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.core.gct import GCT
from opencmap.errors import PipelineError
from opencmap.kernels.modz import modz
from opencmap.pipeline.cgs import cgs_groups, consensus_gene_signatures
from opencmap.pipeline.params import PipelineParams


def _level5(seed: int = 0) -> GCT:
    rng = np.random.default_rng(seed)
    n_genes = 40
    rows = pd.DataFrame({"pr_is_lm": [1] * 30 + [0] * 10}, index=[str(100 + i) for i in range(n_genes)])
    records = [
        # sig_id, pert_id (hairpin), pert_iname (target), pert_type, cell, time
        ("s0", "TRCN1", "TP53", "trt_sh", "A375", 96),
        ("s1", "TRCN2", "TP53", "trt_sh", "A375", 96),
        ("s2", "TRCN3", "TP53", "trt_sh", "A375", 96),
        ("s3", "TRCN1", "TP53", "trt_sh", "A375", 96),  # same hairpin again (another set)
        ("s4", "TRCN1", "TP53", "trt_sh", "PC3", 96),  # other cell: only one hairpin -> no CGS
        ("s5", "TRCN4", "MYC", "trt_sh", "A375", 96),
        ("s6", "TRCN4", "MYC", "trt_sh", "A375", 96),  # one distinct hairpin -> no CGS
        ("s7", "TRCN5", "KRAS", "trt_sh", "A375", 144),
        ("s8", "TRCN6", "KRAS", "trt_sh", "A375", 144),
        ("s9", "BRD-1", "TP53", "trt_cp", "A375", 96),  # compound: never in a CGS
    ]
    info = pd.DataFrame(records, columns=["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_time"]).set_index("sig_id")
    info["pert_time_unit"] = "h"
    return GCT(rng.normal(0, 2, size=(n_genes, len(info))), row_meta=rows, col_meta=info)


def test_groups() -> None:
    g = cgs_groups(_level5().col_meta)
    assert g["cgs_id"].tolist() == ["CGS:A375:96:TP53", "CGS:A375:144:KRAS"]
    assert g["sig_ids"].tolist() == [["s0", "s1", "s2", "s3"], ["s7", "s8"]]
    assert g["n_hairpins"].tolist() == [3, 2]


def test_cgs_is_modz_of_the_hairpin_signatures() -> None:
    level5 = _level5()
    cgs, info = consensus_gene_signatures(level5)
    assert cgs.shape == (40, 2) and list(cgs.cids) == ["CGS:A375:96:TP53", "CGS:A375:144:KRAS"]
    ref = modz(level5.data[:, :4], np.arange(30))
    np.testing.assert_allclose(cgs.data[:, 0], ref.consensus, rtol=1e-6, atol=1e-6)
    row = info.loc["CGS:A375:96:TP53"]
    assert row["pert_type"] == "trt_sh.cgs" and row["pert_iname"] == "TP53" and row["pert_id"] == "CGS-TP53"
    assert row["distil_id"] == "s0|s1|s2|s3" and row["distil_nsample"] == 4
    assert row["pert_itime"] == "96 h" and row["cell_id"] == "A375"
    np.testing.assert_allclose([float(w) for w in row["distil_wt"].split(",")], ref.weights, atol=5e-5)
    assert np.isfinite(row["tas"]) and row["is_gold"] == 0


def test_target_field_option_and_errors() -> None:
    level5 = _level5()
    meta = level5.col_meta.copy()
    meta["target"] = meta["pert_iname"].where(meta.index != "s2", "OTHER")
    params = PipelineParams(cgs_target_field="target")
    g = cgs_groups(meta, params)
    assert g["sig_ids"].iat[0] == ["s0", "s1", "s3"]
    with pytest.raises(PipelineError, match="cgs_target_field"):
        cgs_groups(meta.drop(columns=["target"]), params)


def test_no_shrna_gives_empty_output() -> None:
    level5 = _level5()
    meta = level5.col_meta.assign(pert_type="trt_cp")
    cgs, info = consensus_gene_signatures(GCT(level5.data, row_meta=level5.row_meta, col_meta=meta))
    assert cgs.shape == (40, 0) and info.empty


def test_subset_of_level5_with_explicit_table() -> None:
    level5 = _level5()
    sub = level5.subset(cids=["s7", "s8", "s9"])
    cgs, _ = consensus_gene_signatures(sub, level5.col_meta.loc[sub.cids])
    np.testing.assert_allclose(cgs.data[:, 0], modz(level5.data[:, 7:9], np.arange(30)).consensus, rtol=1e-6, atol=1e-6)
