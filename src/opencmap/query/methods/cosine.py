"""Cosine similarity of a numeric query profile with each signature, over the genes it gives (spec §8)."""

from __future__ import annotations

import numpy as np

from opencmap.kernels import similarity as _k
from opencmap.query.methods import Method

__all__ = ["METHOD"]


def _score(vector: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    return {"score": _k.cosine(vector, scores)}


METHOD = Method(
    name="cosine",
    title="Cosine similarity",
    reference="signatureSearch gess_cor; Samart et al. 2021 Brief Bioinform",
    kind="vector",
    access="vectors",
    outputs=("score",),
    score=_score,
)
