"""CS: unweighted (KS-type) connectivity score, metric ``cs`` of cmapM (spec §6.1, §6.3)."""

from __future__ import annotations

from functools import partial

from opencmap.query.methods import Method
from opencmap.query.methods.wtcs import score_sets

__all__ = ["METHOD"]

METHOD = Method(
    name="cs",
    title="Unweighted connectivity score (KS enrichment, hit step 1/G)",
    reference="Subramanian et al. 2017; cmapM runCmapQuery.m metric 'cs'",
    kind="geneset",
    outputs=("score", "es_up", "es_dn", "leadf_up", "leadf_dn"),
    score=partial(score_sets, weighted=False),
    connectivity=True,
    params={"es_tail": "both"},
)
