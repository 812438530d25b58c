"""Lamb 2006 connectivity score: KS statistics of the up and down tags (spec §6.2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from opencmap.kernels import lamb as _k
from opencmap.query.methods import Method, SetBlock

__all__ = ["METHOD"]


def _score(up: SetBlock | None, down: SetBlock | None, *, n_features: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if up is not None:
        out["ks_up"] = _k.ks_score(up.ranks, n_features)
    if down is not None:
        out["ks_dn"] = _k.ks_score(down.ranks, n_features)
    if up is not None and down is not None:
        out["score"] = _k.instance_scores(out["ks_up"], out["ks_dn"])
    else:
        out["score"] = out["ks_up"] if up is not None else -out["ks_dn"]
    return out


def _finalize(outputs: dict[str, np.ndarray], **_: Any) -> dict[str, np.ndarray]:
    """Scale instance scores to [-1, 1] over all signatures of each query (Lamb's S)."""
    raw = outputs["score"]
    return {**outputs, "score": _k.connectivity_scores(raw, axis=0).astype(np.float32), "instance_score": raw}


METHOD = Method(
    name="lamb",
    title="Connectivity score of the 2006 Connectivity Map (Kolmogorov-Smirnov)",
    reference="Lamb et al. 2006, Science 313:1929; signatureSearch gess_cmap",
    kind="geneset",
    access="gathered_sets",
    outputs=("score", "ks_up", "ks_dn"),
    score=_score,
    finalize=_finalize,
)
