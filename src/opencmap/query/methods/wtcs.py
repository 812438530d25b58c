"""WTCS: weighted connectivity score (Subramanian et al. 2017; spec §6.3)."""

from __future__ import annotations

import numpy as np

from opencmap.kernels import wtcs as _k
from opencmap.query.methods import Method, SetBlock

__all__ = ["METHOD", "score_sets"]


def score_sets(
    up: SetBlock | None,
    down: SetBlock | None,
    *,
    n_features: int,
    es_tail: str = "both",
    weighted: bool = True,
) -> dict[str, np.ndarray]:
    """ES up/down, leading-edge fractions and their combination (WTCS, or one tail)."""
    out: dict[str, np.ndarray] = {}
    es_up = es_dn = None
    if up is not None:
        es_up, out["leadf_up"] = _k.enrichment_scores(up.ranks, up.scores if weighted else None, n_features, weighted=weighted)
        out["es_up"] = es_up
    if down is not None:
        es_dn, out["leadf_dn"] = _k.enrichment_scores(down.ranks, down.scores if weighted else None, n_features, weighted=weighted)
        out["es_dn"] = es_dn
    tail = es_tail
    if up is None:
        tail = "down"
    elif down is None:
        tail = "up"
    score = _k.combine_tails(es_up, es_dn, tail)
    return {"score": score, **out}


METHOD = Method(
    name="wtcs",
    title="Weighted connectivity score (WTCS)",
    reference="Subramanian et al. 2017, Cell 171:1437 (STAR methods, WTCS); cmapM fastESCore.m",
    kind="geneset",
    outputs=("score", "es_up", "es_dn", "leadf_up", "leadf_dn"),
    score=score_sets,
    connectivity=True,
    params={"es_tail": "both"},
)
