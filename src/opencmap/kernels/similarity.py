"""Alternative similarity metrics used by peers (spec §8).

Vector queries (a numeric profile, or several) against a signature matrix, rows aligned to the
shared genes by the caller:

* :func:`cosine`, :func:`pearson`, :func:`spearman` (ties averaged). Genes that are NaN in the
  query or in a signature are left out of that pair (pairwise-complete).

Gene-set queries from the same gathered inputs as :func:`opencmap.kernels.wtcs.enrichment_scores`
(descending ranks, 0 = missing, and scores of the set genes):

* :func:`xsum` -- XSum (Cheng et al. 2013): sum of the scores of the set genes among each
  signature's ``k`` most up- and ``k`` most down-regulated genes, up minus down.
* :func:`rank_z` -- SigCom LINCS rank enrichment (Mann-Whitney U as a z-score, two-sided p);
  :func:`zsum` combines the up and down z.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from opencmap.errors import ValidationError
from opencmap.kernels.columns import as_columns
from opencmap.kernels.correlation import standardize_columns
from opencmap.kernels.ranks import average_ranks

__all__ = ["cosine", "pearson", "spearman", "xsum", "rank_z", "zsum"]


def _as_columns(query: np.ndarray, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    q, one_d = as_columns(query, name="query")
    s = np.asarray(signatures, dtype=np.float64)
    if s.ndim != 2 or q.shape[0] != s.shape[0]:
        raise ValidationError(
            f"query {np.shape(query)} and signatures {np.shape(signatures)} must share their gene rows"
        )
    return q, s, one_d


def _finish(out: np.ndarray, one_d: bool) -> np.ndarray:
    """(Q, S) -> (S,) for one query, else (S, Q)."""
    return out[0] if one_d else out.T


def _pairwise_moments(q: np.ndarray, s: np.ndarray, *, centred: bool) -> np.ndarray:
    """Cosine (``centred=False``) or Pearson of every query column with every signature column.

    Returns (Q, S). Uses matrix products; pairwise-complete when NaNs are present.
    """
    mq = ~np.isnan(q)
    ms = ~np.isnan(s)
    if mq.all() and ms.all():
        if centred:
            # standardized columns: their products are the correlations (constant -> NaN)
            return standardize_columns(q).T @ standardize_columns(s)
        num = q.T @ s
        den = np.sqrt(np.einsum("ij,ij->j", q, q))[:, None] * np.sqrt(np.einsum("ij,ij->j", s, s))[None, :]
    else:
        qv = np.where(mq, q, 0.0)
        sv = np.where(ms, s, 0.0)
        fq = mq.astype(np.float64)
        fs = ms.astype(np.float64)
        sqs = qv.T @ sv
        sq2 = (qv * qv).T @ fs
        ss2 = fq.T @ (sv * sv)
        if centred:
            n = fq.T @ fs
            sq = qv.T @ fs
            ss = fq.T @ sv
            with np.errstate(invalid="ignore", divide="ignore"):
                num = sqs - sq * ss / n
                den = np.sqrt(np.clip(sq2 - sq * sq / n, 0.0, None)) * np.sqrt(np.clip(ss2 - ss * ss / n, 0.0, None))
        else:
            num = sqs
            den = np.sqrt(sq2) * np.sqrt(ss2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[den == 0] = np.nan
    return out


def cosine(query: np.ndarray, signatures: np.ndarray) -> np.ndarray:
    """Cosine similarity of query vector(s) (G,) or (G, Q) with each column of ``signatures`` (G, S).

    Returns float64 (S,) for one query, else (S, Q); NaN where a vector is all zero.
    """
    q, s, one_d = _as_columns(query, signatures)
    return _finish(_pairwise_moments(q, s, centred=False), one_d)


def pearson(query: np.ndarray, signatures: np.ndarray) -> np.ndarray:
    """Pearson correlation of query vector(s) (G,) or (G, Q) with each column of ``signatures`` (G, S).

    Returns float64 (S,) or (S, Q); NaN where a vector is constant.
    """
    q, s, one_d = _as_columns(query, signatures)
    return _finish(_pairwise_moments(q, s, centred=True), one_d)


def spearman(query: np.ndarray, signatures: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Spearman correlation (Pearson on ranks, ties averaged) over the genes shared by each pair.

    Shapes as :func:`pearson`. Each pair is ranked over the genes valid (non-NaN) in both.
    ``threads > 1`` ranks the signatures on numba's threads (same values).
    """
    q, s, one_d = _as_columns(query, signatures)
    out = np.full((q.shape[1], s.shape[1]), np.nan)
    for j in range(q.shape[1]):
        rows = np.flatnonzero(~np.isnan(q[:, j]))
        sub = s[rows]
        rq = average_ranks(q[rows, j])
        clean = ~np.isnan(sub).any(axis=0)
        if clean.any():
            rs = average_ranks(sub[:, clean], axis=0, threads=threads)
            out[j, clean] = _pairwise_moments(rq[:, None], rs, centred=True)[0]
        for c in np.flatnonzero(~clean):
            ok = ~np.isnan(sub[:, c])
            if ok.sum() >= 2:
                out[j, c] = _pairwise_moments(
                    average_ranks(q[rows[ok], j])[:, None], average_ranks(sub[ok, c])[:, None], centred=True
                )[0, 0]
    return _finish(out, one_d)


def _check_set(ranks: np.ndarray, scores: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    r = np.asarray(ranks)
    if r.ndim != 2 or not np.issubdtype(r.dtype, np.integer):
        raise ValidationError(f"{name} ranks must be an integer array (genes x signatures), got {r.dtype} {r.shape}")
    if scores is None:
        return r, None
    v = np.asarray(scores, dtype=np.float64)
    if v.shape != r.shape:
        raise ValidationError(f"{name} scores {v.shape} and ranks {r.shape} differ in shape")
    return r, v


def xsum(
    up_ranks: np.ndarray | None,
    up_scores: np.ndarray | None,
    dn_ranks: np.ndarray | None,
    dn_scores: np.ndarray | None,
    n_features: int,
    *,
    k: int = 100,
) -> np.ndarray:
    """XSum of an up/down gene set in each signature (spec §8; Cheng et al. 2013).

    Parameters
    ----------
    up_ranks, up_scores, dn_ranks, dn_scores:
        (G, S) descending ranks (1 = most up; 0 = missing) and scores of the set genes, as
        gathered for :func:`~opencmap.kernels.wtcs.enrichment_scores`. Either set may be None.
    n_features:
        List length ``N``; a gene is extreme when its rank is ``<= k`` or ``> N - k``.
    k:
        Number of most up- and most down-regulated genes per signature.

    Returns float64 (S,): negative values mean reversal.
    """
    if k < 1:
        raise ValidationError(f"k must be >= 1, got {k}")
    total = None
    for ranks, scores, sign, name in ((up_ranks, up_scores, 1.0, "up"), (dn_ranks, dn_scores, -1.0, "down")):
        if ranks is None:
            continue
        r, v = _check_set(ranks, scores, name)
        if v is None:
            raise ValidationError(f"xsum needs the {name} set's scores")
        extreme = (r > 0) & ((r <= k) | (r > n_features - k))
        part = sign * np.where(extreme & ~np.isnan(v), v, 0.0).sum(axis=0)
        total = part if total is None else total + part
    if total is None:
        raise ValidationError("xsum needs an up or a down set")
    return total


def rank_z(ranks: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """SigCom LINCS rank enrichment of one gene set in each signature (spec §8, example 9.10).

    ``ranks`` (G, S): descending ranks of the set genes (0 = missing). With ascending ranks
    ``a = N + 1 - rank`` (1 = most down), ``n1`` genes present and ``n2 = N - n1``::

        U = sum(a) - n1 (n1 + 1) / 2,  z = (U - n1 n2 / 2) / sqrt(n1 n2 (n1 + n2 + 1) / 12)

    Returns ``z`` and the two-sided normal p-value, float64 (S,) each (NaN if ``n1`` or ``n2``
    is 0). Positive z: the set sits among the up-regulated genes.
    """
    r, _ = _check_set(ranks, None, "set")
    present = r > 0
    n1 = present.sum(axis=0).astype(np.float64)
    n2 = float(n_features) - n1
    asc = np.where(present, n_features + 1 - r.astype(np.float64), 0.0).sum(axis=0)
    u = asc - n1 * (n1 + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (u - n1 * n2 / 2) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    z[(n1 == 0) | (n2 <= 0)] = np.nan
    p = 2.0 * ndtr(-np.abs(z))
    return z, p


def zsum(z_up: np.ndarray, z_dn: np.ndarray) -> np.ndarray:
    """SigCom up/down combination ``z_up - z_dn`` (> 0 mimicker, < 0 reverser)."""
    return np.asarray(z_up, dtype=np.float64) - np.asarray(z_dn, dtype=np.float64)
