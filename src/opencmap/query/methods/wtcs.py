"""WTCS: weighted connectivity score (Subramanian et al. 2017; spec §6.3).

Scored by a fused set walk (access ``fused_sets``): the kernel
:func:`~opencmap.kernels.wtcs.set_enrichment_scores` computes the ES and leading-edge fraction of
every up and down set of a batch in one pass over the store, and :func:`combine_sets` (the
method's ``score``) combines each query's two sets. :func:`score_sets` is the same score from
gathered ranks and scores (one kernel call per set), kept as the reference form of the method.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from opencmap.kernels import wtcs as _k
from opencmap.query.methods import Method, SetBlock, SetStats

__all__ = ["METHOD", "combine_sets", "score_sets"]


def _tail(up: object | None, down: object | None, es_tail: str) -> str:
    """The tail a query is scored on: ``es_tail``, or the only side it has."""
    if up is None:
        return "down"
    if down is None:
        return "up"
    return es_tail


def combine_sets(up: SetStats | None, down: SetStats | None, *, es_tail: str = "both") -> dict[str, np.ndarray]:
    """The score of one query from its sets' ES (WTCS: (ES_up - ES_dn)/2, 0 if same sign; or one
    tail), with the sets' ES and leading-edge fractions."""
    out: dict[str, np.ndarray] = {
        "score": _k.combine_tails(None if up is None else up.es, None if down is None else down.es, _tail(up, down, es_tail))
    }
    if up is not None:
        out["es_up"], out["leadf_up"] = up.es, up.leadf
    if down is not None:
        out["es_dn"], out["leadf_dn"] = down.es, down.leadf
    return out


def score_sets(
    up: SetBlock | None,
    down: SetBlock | None,
    *,
    n_features: int,
    es_tail: str = "both",
    weighted: bool = True,
) -> dict[str, np.ndarray]:
    """ES up/down, leading-edge fractions and their combination (WTCS, or one tail) from
    gathered set blocks."""
    out: dict[str, np.ndarray] = {}
    es_up = es_dn = None
    if up is not None:
        es_up, out["leadf_up"] = _k.enrichment_scores(up.ranks, up.scores if weighted else None, n_features, weighted=weighted)
        out["es_up"] = es_up
    if down is not None:
        es_dn, out["leadf_dn"] = _k.enrichment_scores(down.ranks, down.scores if weighted else None, n_features, weighted=weighted)
        out["es_dn"] = es_dn
    score = _k.combine_tails(es_up, es_dn, _tail(up, down, es_tail))
    return {"score": score, **out}


METHOD = Method(
    name="wtcs",
    title="Weighted connectivity score (WTCS)",
    reference="Subramanian et al. 2017, Cell 171:1437 (STAR methods, WTCS); cmapM fastESCore.m",
    kind="geneset",
    outputs=("score", "es_up", "es_dn", "leadf_up", "leadf_dn"),
    score=combine_sets,
    connectivity=True,
    params={"es_tail": "both"},
    access="fused_sets",
    block_kernel=partial(_k.set_enrichment_scores, weighted=True),
    reads_scores=True,
)
