"""CS: unweighted (KS-type) connectivity score, metric ``cs`` of cmapM (spec §6.1, §6.3).

Scored like WTCS (a fused set walk, :mod:`opencmap.query.methods.wtcs`) with hit steps of 1/G
instead of the signature's scores, so the walk does not read the scores.
"""

from __future__ import annotations

from functools import partial

from opencmap.kernels import wtcs as _k
from opencmap.query.methods import Method
from opencmap.query.methods.wtcs import combine_sets

__all__ = ["METHOD"]

METHOD = Method(
    name="cs",
    title="Unweighted connectivity score (KS enrichment, hit step 1/G)",
    reference="Subramanian et al. 2017; cmapM runCmapQuery.m metric 'cs'",
    kind="geneset",
    outputs=("score", "es_up", "es_dn", "leadf_up", "leadf_dn"),
    score=combine_sets,
    connectivity=True,
    params={"es_tail": "both"},
    access="fused_sets",
    block_kernel=partial(_k.set_enrichment_scores, weighted=False),
    reads_scores=False,
)
