"""The running-sum (enrichment) walk of a gene set along one stored signature, for plotting.

The WTCS enrichment score (spec §6.3) is the extreme of a running sum that walks down the
signature's ranked gene list: each set gene (a *hit*) adds ``h_k = |v_k| / sum|v|`` (``1/G``
unweighted), every other gene subtracts ``1/(N - G)``. Between hits the walk is a straight
line, so the whole curve is given exactly by its values just before and just after each hit::

    (0, 0), (rank_1 - 1, E-_1), (rank_1, E+_1), ..., (rank_G, E+_G), (N, 0)

(the walk ends at 0, except when every gene of the list is a hit).

:func:`running_sum` returns those points (plus the ES, its position and the leading-edge genes)
for the up and down sets of a query and one signature of a store. The ES it reports is the
engine's (:func:`opencmap.kernels.wtcs.enrichment_scores`), so the plot always agrees with the
scores in a result table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from opencmap.errors import GeneSetError
from opencmap.query.store import Store

__all__ = ["RunningSum", "running_sum", "running_sum_curve"]


@dataclass(frozen=True)
class RunningSum:
    """The walk of one gene set along one signature.

    Attributes
    ----------
    direction: ``"up"`` or ``"down"``.
    n_features: length ``N`` of the ranked list.
    x, y: the curve's corner points (positions ``0..N`` and running-sum values), see module doc.
    hit_ranks: 1-based ranks of the set genes present, increasing.
    hit_genes: their gene ids, in the same order.
    es: the enrichment score (the engine's value).
    es_rank: position (rank) where the ES is reached.
    leading_edge: gene ids of the leading edge (hits up to the ES for ES >= 0, from it otherwise).
    """

    direction: str
    n_features: int
    x: np.ndarray
    y: np.ndarray
    hit_ranks: np.ndarray
    hit_genes: tuple[str, ...]
    es: float
    es_rank: int
    leading_edge: tuple[str, ...]


def running_sum_curve(
    hit_ranks: np.ndarray, hit_weights: np.ndarray | None, n_features: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Corner points of the running sum of hits at ``hit_ranks`` (1-based, distinct) in a list of ``N``.

    ``hit_weights`` are the hits' scores (``|w|`` is used) or ``None`` for the unweighted walk.
    Returns ``(x, y, pre, post)``: the curve (``2G + 2`` points) and the values just before and
    after each hit, all float64, hits ordered by rank.
    """
    ranks = np.asarray(hit_ranks, dtype=np.int64)
    order = np.argsort(ranks, kind="stable")
    ranks = ranks[order]
    g = len(ranks)
    if g == 0:
        return np.array([0.0, float(n_features)]), np.zeros(2), np.empty(0), np.empty(0)
    if hit_weights is None:
        steps = np.full(g, 1.0 / g)
    else:
        w = np.abs(np.asarray(hit_weights, dtype=np.float64)[order])
        total = w.sum()
        steps = w / total if total > 0 else np.zeros(g)
    miss = 1.0 if g == n_features else 1.0 / (n_features - g)
    post = np.cumsum(steps) - miss * (ranks - np.arange(1, g + 1))
    pre = post - steps
    x = np.concatenate([[0.0], np.column_stack([ranks - 1, ranks]).ravel().astype(np.float64), [float(n_features)]])
    end = post[-1] - miss * (n_features - ranks[-1])  # 0 up to rounding, unless every gene is a hit
    y = np.concatenate([[0.0], np.column_stack([pre, post]).ravel(), [end]])
    return x, y, pre, post


def running_sum(
    store: Store,
    sig_id: str,
    *,
    up: Sequence[str] = (),
    down: Sequence[str] = (),
    space: str | None = None,
    weighted: bool = True,
) -> dict[str, RunningSum]:
    """Running sums of the ``up`` and ``down`` gene ids along signature ``sig_id`` of ``store``.

    Genes are Entrez ids of the feature space ``space`` (default: the store's); genes outside the
    space are ignored (validate queries first with :func:`opencmap.query.genesets.validate_query`).
    Returns ``{"up": RunningSum, "down": RunningSum}`` for the directions given.
    :class:`~opencmap.errors.IdNotFoundError` for an unknown ``sig_id``; :class:`GeneSetError`
    if no gene of a given set is in the space.
    """
    from opencmap.kernels.wtcs import enrichment_scores

    sp = store.space(space)
    pos = store.sig_positions([sig_id])
    ranks = store.signature_ranks(pos, space=sp.name)[:, 0].astype(np.int64)  # (N,)
    scores = store.signature_scores(pos, space=sp.name)[0].astype(np.float64)  # (N,)
    out: dict[str, RunningSum] = {}
    for direction, genes in (("up", up), ("down", down)):
        if not genes:
            continue
        ids = [str(g) for g in genes]
        rows = sp.positions(ids)
        keep = (rows >= 0) & (ranks[np.maximum(rows, 0)] > 0) & np.isfinite(scores[np.maximum(rows, 0)])
        if not keep.any():
            raise GeneSetError(f"no {direction} gene is present in feature space {sp.name!r} of signature {sig_id!r}")
        rows = rows[keep]
        kept_ids = [g for g, k in zip(ids, keep, strict=True) if k]
        hit_ranks = ranks[rows]
        weights = scores[rows] if weighted else None
        order = np.argsort(hit_ranks, kind="stable")
        x, y, pre, post = running_sum_curve(hit_ranks, weights, sp.n_features)
        es_arr, _ = enrichment_scores(
            hit_ranks[:, None], None if weights is None else weights[:, None], sp.n_features, weighted=weighted
        )
        es = float(es_arr[0])
        # first hit whose pre/post value is the ES (CMap tie-breaks, spec §6.3)
        at = np.flatnonzero((np.isclose(post, es, rtol=0, atol=1e-9)) | (np.isclose(pre, es, rtol=0, atol=1e-9)))
        k = int(at[0]) if len(at) else int(np.argmax(np.abs(np.maximum(np.abs(pre), np.abs(post)))))
        sorted_ranks = hit_ranks[order]
        is_post = bool(np.isclose(post[k], es, rtol=0, atol=1e-9))
        es_rank = int(sorted_ranks[k]) if is_post else int(sorted_ranks[k]) - 1
        genes_sorted = tuple(kept_ids[i] for i in order)
        leading = genes_sorted[: k + 1] if es >= 0 else genes_sorted[k:]
        out[direction] = RunningSum(
            direction=direction,
            n_features=sp.n_features,
            x=x,
            y=y,
            hit_ranks=sorted_ranks,
            hit_genes=genes_sorted,
            es=es,
            es_rank=es_rank,
            leading_edge=leading,
        )
    return out
