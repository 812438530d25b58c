"""Enrichment scores (ES), weighted connectivity scores (WTCS) and leading-edge fractions.

Spec §6.3 and §13.2 (CMap-compat arithmetic of ``fastESCore``). For one signature and one gene
set with ``G`` genes present, hits are ordered by rank; with miss step ``d = 1/(N - G)`` (1 when
``G = N``) and hit step ``h_k`` (``|w_k| / sum|w|`` weighted, ``1/G`` unweighted) the running sum
is accumulated hit by hit::

    E+_k = E+_{k-1} + ((rank_k - rank_{k-1} - 1) * (-d) + h_k)     (rank_0 = 0, E+_0 = 0)
    E-_k = E+_k - h_k                                              (value just before the hit)

per hit the value of larger magnitude is kept (``E+`` unless ``|E-| > |E+|``) and the ES is the
*first* of largest magnitude over the hits. The leading-edge fraction is ``k*/G`` for ES >= 0 and
``(G - k* + 1)/G`` otherwise.

Arithmetic is float64 in CMap's order; CMap itself computes in float32 (single-precision
matrices), so its published values agree with ours to ~1e-7 (exact |E+| = |E-| or cross-hit ties
may resolve differently under the two roundings).

Inputs are the set genes' rows gathered from a gene-major reference store: the cost per
signature is ``O(G + N/64)`` (a bitmap over ranks orders the hits without comparisons),
never ``O(N)``; signatures run in parallel (numba ``prange``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from opencmap.errors import ConfigError, ValidationError

__all__ = ["enrichment_scores", "wtcs", "combine_tails", "ES_TAILS"]

#: allowed values of ``es_tail`` (spec §6.1)
ES_TAILS = ("both", "up", "down")

# signatures handled per parallel task: amortises scratch allocation, keeps memory reads local
_CHUNK = 2048


@intrinsic
def _popcount(typingctx, x):
    """Number of set bits of a uint64 (LLVM ``ctpop``; one instruction on current CPUs)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.ctpop.i64")
        return builder.call(fn, args)

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _sort_by_rank(n_hit, hit_rank, hit_w, bits, before, out_rank, out_w):
    """Place the ``n_hit`` (rank, weight) pairs in increasing rank order into ``out_*``.

    Branch-free bitmap sort: mark each rank in ``bits`` (one bit per rank), count the marks
    before each word, and send every hit to ``#marks below its rank``. ``bits`` is all zero on
    entry and on exit. Returns the number of distinct ranks (``< n_hit`` means duplicates).
    """
    one = np.uint64(1)
    for i in range(n_hit):
        r = hit_rank[i]
        bits[r >> 6] |= one << np.uint64(r & 63)
    total = 0
    for wi in range(bits.shape[0]):
        before[wi] = total
        total += _popcount(bits[wi])
    if total == n_hit:
        for i in range(n_hit):
            r = hit_rank[i]
            wi = r >> 6
            k = before[wi] + _popcount(bits[wi] & ((one << np.uint64(r & 63)) - one))
            out_rank[k] = r
            out_w[k] = hit_w[i]
    bits[:] = 0
    return total


@numba.njit(cache=True, nogil=True)
def _es_one(n_hit, srt_rank, srt_w, total, n_features, weighted):
    """ES and leading-edge fraction of one signature from its rank-sorted hits (CMap order).

    ``srt_w`` holds ``|w|`` (weighted; overwritten with the hit steps) and ``total`` their sum.
    """
    if n_hit == 0:
        return np.nan, np.nan
    if n_hit == n_features:
        miss = 1.0
    else:
        miss = 1.0 / (n_features - n_hit)
    if weighted:
        if total == 0.0:
            return 0.0, 0.0
        for k in range(n_hit):  # vectorised: hit steps |w| / sum|w|
            srt_w[k] = srt_w[k] / total
    else:
        unit = 1.0 / n_hit
        for k in range(n_hit):
            srt_w[k] = unit
    running = 0.0
    prev = 0
    best = 0.0
    best_abs = -1.0
    best_k = 0
    for k in range(n_hit):
        hit = srt_w[k]
        r = srt_rank[k]
        running += (r - prev - 1) * (-miss) + hit
        pre = running - hit
        val = pre if abs(running) < abs(pre) else running
        if abs(val) > best_abs:
            best_abs = abs(val)
            best = val
            best_k = k + 1
        prev = r
    if best >= 0.0:
        leadf = best_k / n_hit
    else:
        leadf = (n_hit - best_k + 1) / n_hit
    return best, leadf


@numba.njit(parallel=True, cache=True)
def _es_kernel(ranks, weights, n_features, weighted, es_out, leadf_out):
    n_genes, n_sig = ranks.shape
    n_chunks = (n_sig + _CHUNK - 1) // _CHUNK
    n_words = (n_features >> 6) + 1
    for c in numba.prange(n_chunks):
        # per-task scratch
        bits = np.zeros(n_words, dtype=np.uint64)
        before = np.empty(n_words, dtype=np.int64)
        hit_rank = np.empty(n_genes, dtype=np.int64)
        hit_w = np.empty(n_genes, dtype=np.float64)
        srt_rank = np.empty(n_genes, dtype=np.int64)
        srt_w = np.empty(n_genes, dtype=np.float64)
        start = c * _CHUNK
        stop = min(start + _CHUNK, n_sig)
        for s in range(start, stop):
            n_hit = 0
            total = 0.0
            for i in range(n_genes):
                r = np.int64(ranks[i, s])
                if r <= 0 or r > n_features:
                    continue
                if weighted:
                    w = abs(np.float64(weights[i, s]))
                    if math.isnan(w):
                        continue
                    hit_w[n_hit] = w
                    total += w
                else:
                    hit_w[n_hit] = 1.0
                hit_rank[n_hit] = r
                n_hit += 1
            if _sort_by_rank(n_hit, hit_rank, hit_w, bits, before, srt_rank, srt_w) != n_hit:
                # duplicate ranks within one signature: not a ranking, no defined score
                es_out[s] = np.nan
                leadf_out[s] = np.nan
                continue
            es, lf = _es_one(n_hit, srt_rank, srt_w, total, n_features, weighted)
            es_out[s] = es
            leadf_out[s] = lf


def enrichment_scores(
    ranks: np.ndarray,
    weights: np.ndarray | None,
    n_features: int,
    *,
    weighted: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Enrichment score and leading-edge fraction of one gene set in each of ``S`` signatures.

    Parameters
    ----------
    ranks:
        Integer array (G, S): 1-based descending rank of each set gene in each signature
        (1 = largest score). ``0`` (or anything outside ``1..n_features``) marks a gene missing
        from that signature (NaN score); it is dropped for that signature only, so the set size
        ``G`` (hit and miss steps) is counted per signature. Ranks of one signature must be
        distinct (they come from a permutation); a signature with duplicate set ranks gets NaN.
    weights:
        Float array (G, S) of the same genes' scores (``|w|`` is taken, exponent p = 1), or
        ``None`` for the unweighted score (metric ``cs``). A NaN weight also drops the gene.
    n_features:
        ``N``, the length of each ranked list (rows of the rank matrix, e.g. 10,174 for BING).
    weighted:
        ``False`` ignores ``weights`` (unweighted KS-type ES, hit step ``1/G``).

    Returns
    -------
    es, leadf:
        float64 arrays (S,). ES is in [-1, 1]; NaN (both) where no set gene is present in the
        signature; 0 (both) where every weight of the present genes is 0 (CMap gives NaN; the
        spec chooses 0).
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2:
        raise ValidationError(f"ranks must be 2-D (genes x signatures), got shape {ranks.shape}")
    if not np.issubdtype(ranks.dtype, np.integer):
        raise ValidationError(f"ranks must be an integer array, got {ranks.dtype}")
    n_features = int(n_features)
    if n_features < 1:
        raise ValidationError(f"n_features must be >= 1, got {n_features}")
    n_genes, n_sig = ranks.shape
    if weighted:
        if weights is None:
            raise ValidationError("weighted=True needs a weights array (or pass weighted=False)")
        weights = np.asarray(weights)
        if weights.shape != ranks.shape:
            raise ValidationError(f"weights shape {weights.shape} differs from ranks shape {ranks.shape}")
        if not np.issubdtype(weights.dtype, np.floating):
            weights = weights.astype(np.float64)
    else:
        weights = np.zeros((0, 0), dtype=np.float32)
    es = np.empty(n_sig, dtype=np.float64)
    leadf = np.empty(n_sig, dtype=np.float64)
    if n_sig == 0:
        return es, leadf
    if n_genes == 0:
        es.fill(np.nan)
        leadf.fill(np.nan)
        return es, leadf
    _es_kernel(ranks, weights, n_features, bool(weighted), es, leadf)
    return es, leadf


def wtcs(es_up: np.ndarray, es_dn: np.ndarray) -> np.ndarray:
    """Combine up and down ES into WTCS (spec §6.3): ``(es_up - es_dn)/2``, 0 if signs agree.

    ``sign(0) = 0``, so ``es_up = 0`` with ``es_dn < 0`` gives ``-es_dn/2``; NaN propagates.
    Any matching shapes; float64 output.
    """
    up = np.asarray(es_up, dtype=np.float64)
    dn = np.asarray(es_dn, dtype=np.float64)
    score = 0.5 * (up - dn)
    return np.where(np.sign(up) == np.sign(dn), 0.0, score)[()]


def combine_tails(es_up: np.ndarray | None, es_dn: np.ndarray | None, es_tail: str = "both") -> np.ndarray:
    """Query score for ``es_tail``: ``both`` = :func:`wtcs`, ``up`` = ES_up, ``down`` = -ES_dn."""
    if es_tail == "both":
        if es_up is None or es_dn is None:
            raise ValidationError("es_tail='both' needs both up and down enrichment scores")
        return wtcs(es_up, es_dn)
    if es_tail == "up":
        if es_up is None:
            raise ValidationError("es_tail='up' needs the up enrichment scores")
        return np.asarray(es_up, dtype=np.float64).copy()
    if es_tail == "down":
        if es_dn is None:
            raise ValidationError("es_tail='down' needs the down enrichment scores")
        return -np.asarray(es_dn, dtype=np.float64)
    raise ConfigError(f"es_tail must be one of {ES_TAILS}, got {es_tail!r}")
