"""SigCom LINCS rank enrichment: Mann-Whitney z of the up and down sets (spec §8, example 9.10)."""

from __future__ import annotations

from typing import Any

import numpy as np

from opencmap.kernels import fdr as _fdr
from opencmap.kernels import similarity as _k
from opencmap.query.methods import Method, SetBlock

__all__ = ["METHOD"]


def _score(up: SetBlock | None, down: SetBlock | None, *, n_features: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if up is not None:
        out["z_up"], out["p_up"] = _k.rank_z(up.ranks, n_features)
    if down is not None:
        out["z_dn"], out["p_dn"] = _k.rank_z(down.ranks, n_features)
    if up is not None and down is not None:
        out["score"] = _k.zsum(out["z_up"], out["z_dn"])
    else:
        out["score"] = out["z_up"] if up is not None else -out["z_dn"]
    return out


def _finalize(outputs: dict[str, np.ndarray], **_: Any) -> dict[str, np.ndarray]:
    """Benjamini-Hochberg q-values of each direction's p-values over all signatures."""
    out = dict(outputs)
    for side in ("up", "dn"):
        if f"p_{side}" in out:
            out[f"fdr_{side}"] = _fdr.bh(out[f"p_{side}"], axis=0).astype(np.float32)
    return out


METHOD = Method(
    name="rankz",
    title="Rank enrichment z-score (SigCom LINCS, Mann-Whitney U)",
    reference="Evangelista et al. 2022 NAR (SigCom LINCS); MaayanLab/enrichmentAPI",
    kind="geneset",
    access="gathered_sets",
    outputs=("score", "z_up", "z_dn", "p_up", "p_dn"),
    score=_score,
    finalize=_finalize,
)
