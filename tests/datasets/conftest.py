"""One tiny synthetic compendium per test session, plus plain replicate statistics on it."""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd
import pytest

from opencmap.datasets import Compendium, make_compendium
from opencmap.io import read_gct, read_table
from opencmap.kernels.percentile import prctile
from opencmap.kernels.ranks import average_ranks


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Compendium:
    return make_compendium(tmp_path_factory.mktemp("tiny") / "compendium", "tiny", seed=0)


@dataclass
class ReplicateStats:
    """Per replicate set (same plate group and well): mean landmark z-score and CC_Q75."""

    meta: pd.DataFrame  # one row per replicate set: inst_info fields + ground truth + cc_q75
    signatures: np.ndarray  # landmarks x replicate sets (mean robust z over replicates)
    level3: object
    inst: pd.DataFrame


def _plate_robust_z(x: np.ndarray) -> np.ndarray:
    """Plain robust z-score against the whole plate (median / 1.4826 MAD, MAD floor 0.1)."""
    med = np.median(x, axis=1, keepdims=True)
    mad = np.median(np.abs(x - med), axis=1, keepdims=True)
    return (x - med) / (1.4826 * np.maximum(mad, 0.1))


@pytest.fixture(scope="session")
def replicate_stats(tiny: Compendium) -> ReplicateStats:
    g = read_gct(tiny.file("level3"))
    inst = read_table(tiny.file("inst_info"))
    truth = read_table(tiny.file("ground_truth"))
    assert list(g.cids) == inst["inst_id"].tolist()
    lm = g.row_meta["pr_is_lm"].to_numpy() == 1
    x = g.data[lm].astype(np.float64)
    z = np.empty_like(x)
    for idx in inst.groupby("rna_plate").indices.values():
        z[:, idx] = _plate_robust_z(x[:, idx])
    group = inst["rna_plate"].str.replace(r"_X\d+$", "", regex=True)
    rows, sigs = [], []
    for (_, _), idx in inst.groupby([group, inst["rna_well"]]).indices.items():
        ranks = average_ranks(z[:, idx], axis=0)
        cc = np.corrcoef(ranks.T)[np.triu_indices(len(idx), 1)]
        rows.append((idx[0], float(prctile(np.clip(cc, 0, None), 75))))
        sigs.append(z[:, idx].mean(axis=1))
    first = [r[0] for r in rows]
    meta = inst.iloc[first].reset_index(drop=True)
    meta["cc_q75"] = [r[1] for r in rows]
    meta = meta.merge(truth.drop(columns=["pert_iname", "pert_type"]), on="pert_id", how="left", validate="many_to_one")
    return ReplicateStats(meta=meta, signatures=np.array(sigs).T, level3=g, inst=inst)
