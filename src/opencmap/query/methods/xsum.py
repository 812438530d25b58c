"""XSum: summed scores of the query genes among each signature's extreme genes (spec §8)."""

from __future__ import annotations

import numpy as np

from opencmap.kernels import similarity as _k
from opencmap.query.methods import Method, SetBlock

__all__ = ["METHOD"]


def _score(up: SetBlock | None, down: SetBlock | None, *, n_features: int, k: int = 100) -> dict[str, np.ndarray]:
    return {
        "score": _k.xsum(
            None if up is None else up.ranks,
            None if up is None else up.scores,
            None if down is None else down.ranks,
            None if down is None else down.scores,
            n_features,
            k=k,
        )
    }


METHOD = Method(
    name="xsum",
    title="XSum (extreme sum)",
    reference="Cheng et al. 2013 PSB, 2014 Genome Med; Samart et al. 2021 Brief Bioinform",
    kind="geneset",
    access="gathered_sets",
    outputs=("score",),
    score=_score,
    params={"k": 100},
)
