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

Inputs are the set genes' rows of a gene-major reference store, either gathered
(:func:`enrichment_scores`, one set) or read in place (:func:`set_enrichment_scores`, many sets
in one pass over memory-mapped rows, no copies).

The kernel works on tiles of 512 signatures at once, with the signatures in SIMD lanes: each set
row's run of the tile is read once into a key buffer (``rank << 16 | gene``); a sorting network
(Batcher's odd-even merge sort, ``O(G log^2 G)`` min/max operations, the same for every
signature) orders all columns together without a branch; the hits' weights are gathered into
rank order; and the running sums of all signatures are walked together. Every signature's
arithmetic is the scalar walk above, in the same order, so the scores do not depend on the path
taken. Sets of more than ``network_max`` genes (default :data:`NETWORK_MAX`) (where the network loses) are ordered per signature
with a bitmap over ranks (``O(G + N/64)``). Large inputs are split into work units over the
``threads`` the caller gives, run on the caller's executor (the backend's thread pool, see
:mod:`opencmap.backends`; the kernel releases the GIL); small ones run on the calling thread,
avoiding a parallel launch.

Measured with ``benchmarks/bench_wtcs_kernel.py`` (50,000 signatures, an up and a down set of 150
genes read in place) on this project's 2-core machine (AMD EPYC, Zen 3: AVX2, 4 doubles per vector):
6.7 ns per (signature, gene) on one thread, 1.24x faster than the per-signature bitmap sort on two
threads (an earlier AVX-512 machine gave 3.5 ns). Where the time goes, and why sharing the work of a
batch cannot make it several times cheaper while staying bit-identical (the running-sum walk, about
half of it, is per set and signature whatever is shared): ``benchmarks/bench_wtcs_phases.py``.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import lru_cache

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from opencmap.errors import ConfigError, ValidationError
from opencmap.kernels.tilehash import TILE_COLS, ReadCheck, finish_hash, hash_key, verify_row_tiles

__all__ = ["enrichment_scores", "set_enrichment_scores", "wtcs", "combine_tails", "ES_TAILS", "NETWORK_MAX", "MIN_THREAD_WORK"]

#: allowed values of ``es_tail`` (spec §6.1)
ES_TAILS = ("both", "up", "down")

# signatures per tile: each set row's run of the tile is read once into cache-resident buffers
_TILE = 512
# row padding: a power-of-two stride would map every row of a column to the same cache sets
_PAD = 16
#: sets of more genes than this are sorted per signature with a rank bitmap (O(G + N/64)) instead
#: of the O(G log^2 G) network, which is slower from ~1,500 genes on
NETWORK_MAX = 1024
# sets scored together over a chunk's columns (a query's up and down set); a batch's other sets
# follow over the same columns. Interleaving all sets per tile instead touches every set row's
# pages each tile: with a 100-query batch that thrashes the TLB and ran ~2x slower per query
_SET_GROUP = 2
# lanes are processed in multiples of this (two AVX2 registers, one AVX-512 register, of uint32 keys)
_LANES = 16
#: (signatures x set genes) per extra thread: below it one thread is faster than waking others
MIN_THREAD_WORK = 1 << 19
_NO_WEIGHTS = np.zeros((1, 1), dtype=np.float32)
_NO_SUMS = np.zeros((1, 1), dtype=np.uint64)
_NO_SEEN = np.zeros((1, 1), dtype=np.uint8)
_NO_BITS = np.zeros((1, 1), dtype=np.uint32)


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
        if total == 0.0:  # every hit weight 0: hit steps 0/0, no defined ES (cmapM: NaN)
            return np.nan, np.nan
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


@lru_cache(maxsize=None)
def _sorting_network(n: int) -> np.ndarray:
    """Comparators ``(lo, hi)`` of Batcher's odd-even merge sort for ``n`` inputs, int64 (k, 2).

    Generated for the next power of two and pruned to the comparators inside ``0..n-1``: every
    comparator puts the smaller key at the lower index, so (virtual) +inf inputs above ``n - 1``
    never move and the comparators touching them are no-ops. 2,110 comparators for ``n = 150``.
    """
    p2 = 1
    while p2 < n:
        p2 *= 2
    parts = []
    p = 1
    while p < p2:
        k = p
        while k >= 1:
            j = np.arange(k % p, p2 - k, 2 * k, dtype=np.int64)
            a = (j[:, None] + np.arange(k, dtype=np.int64)[None, :]).ravel()
            b = a + k
            keep = (b < n) & (a // (2 * p) == b // (2 * p))
            parts.append(np.stack([a[keep], b[keep]], axis=1))
            k //= 2
        p *= 2
    net = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    net.flags.writeable = False
    return net


def _networks(sizes: np.ndarray, network_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated sorting networks for the set sizes up to ``network_max``, and each set's
    ``(lo, hi)`` comparator range."""
    uniq = sorted({int(g) for g in sizes if g <= network_max})
    start, parts, at = {}, [], 0
    for g in uniq:
        net = _sorting_network(g)
        start[g] = (at, at + len(net))
        parts.append(net)
        at += len(net)
    net = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    ranges = np.array([start.get(int(g), (0, 0)) for g in sizes], dtype=np.int64).reshape(-1, 2)
    return np.ascontiguousarray(net), ranges


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sort_lanes(keys, net, c_lo, c_hi, width):
    """Sort every column of ``keys[:, :width]`` with comparators ``net[c_lo:c_hi]``.

    Each comparator is a min/max of two rows over all columns, so the network runs on many
    signatures at once in SIMD lanes: no per-signature branches.
    """
    for c in range(c_lo, c_hi):
        ra = keys[net[c, 0]]
        rb = keys[net[c, 1]]
        for j in range(width):
            x = ra[j]
            y = rb[j]
            ra[j] = min(x, y)
            rb[j] = max(x, y)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _walk_lanes(keys, steps, g, width, shift, sent, total, n_hit, weighted, n_features, state_f, state_i):
    """Running-sum walk (CMap order) of the rank-sorted hits of each column, all columns at once.

    ``keys[k, j]`` is the ``k``-th smallest ``rank << shift | gene`` of column ``j`` (``sent`` for
    none), ``steps[k, j]`` that hit's ``|w|`` (weighted). Fills ``state_f[0]`` = ES,
    ``state_i[0]`` = 1-based hit index of the ES, ``state_i[2]`` = duplicate-rank flag.
    """
    best = state_f[0]
    running = state_f[1]
    miss = state_f[2]
    best_k = state_i[0]
    prev = state_i[1]
    dup = state_i[2]
    for j in range(width):
        n = n_hit[j]
        miss[j] = 1.0 if n == n_features else 1.0 / (n_features - n)
        running[j] = 0.0
        best[j] = 0.0
        best_k[j] = 0
        prev[j] = 0
        dup[j] = 0
    for k in range(g):
        krow = keys[k]
        wrow = steps[k]
        kk = k + 1
        for j in range(width):
            key = krow[j]
            valid = key < sent
            r = np.int64(key >> shift)
            if weighted:
                hit = wrow[j] / total[j]
            else:
                hit = 1.0 / n_hit[j]
            p = prev[j]
            run = running[j] + ((r - p - 1) * (-miss[j]) + hit)
            pre = run - hit
            val = pre if abs(run) < abs(pre) else run
            b = best[j]
            bk = best_k[j]
            better = valid and (abs(val) > abs(b) or bk == 0)
            best[j] = val if better else b
            best_k[j] = kk if better else bk
            running[j] = run if valid else running[j]
            prev[j] = r if valid else p
            dup[j] |= 1 if (valid and r == p) else 0


@numba.njit(cache=True, nogil=True, inline="always")
def _lane_result(state_f, state_i, total, n_hit, weighted, j):
    """ES and leading-edge fraction of lane ``j`` after :func:`_walk_lanes` (NaN, NaN when undefined)."""
    n = n_hit[j]
    if n == 0 or state_i[2, j] != 0:
        # no set gene present, or duplicate ranks (not a ranking): no defined score
        return np.nan, np.nan
    if weighted and total[j] == 0.0:
        # every hit weight 0: hit steps 0/0, no defined ES (cmapM fastESCore: NaN)
        return np.nan, np.nan
    best = state_f[0, j]
    k_best = state_i[0, j]
    return best, (k_best / n if best >= 0.0 else (n - k_best + 1) / n)


@numba.njit(cache=True, nogil=True, inline="always")
def _take_weighted(src, src_w, j, dk, dw, total, n_hit, n_features, shift, gene, sent):
    """Value ``j`` of a set row's run into the key and ``|w|`` buffers (missing -> ``sent``)."""
    r = np.int64(src[j])
    w = abs(np.float64(src_w[j]))
    ok = r > 0 and r <= n_features and not math.isnan(w)
    dk[j] = ((np.uint64(r) << shift) | gene) if ok else sent
    dw[j] = w
    total[j] += w if ok else 0.0
    n_hit[j] += 1 if ok else 0


@numba.njit(cache=True, nogil=True, inline="always")
def _take(src, j, dk, n_hit, n_features, shift, gene, sent):
    """Value ``j`` of a set row's run of ranks into the key buffer (unweighted)."""
    r = np.int64(src[j])
    ok = r > 0 and r <= n_features
    dk[j] = ((np.uint64(r) << shift) | gene) if ok else sent
    n_hit[j] += 1 if ok else 0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _es_columns(ranks, weights, rows, bounds, net, net_range, network_max, n_features, weighted, key_proto,
                shift, sent, check, r_sums, r_seen, w_bits, w_sums, w_seen, tile_cols, bad,
                q_lo, q_hi, c0, c1, es_out, leadf_out, out_offset):
    """ES of sets ``q_lo:q_hi`` (set ``q`` = rows ``rows[bounds[q]:bounds[q+1]]``) in columns ``c0:c1``
    of gene-major inputs.

    ``check``: before a set row's run of a tile is read, the hash tiles it touches (of the ranks,
    and of the weights' bits ``w_bits`` when weighted) are checked against ``r_sums`` / ``w_sums``
    unless marked in ``r_seen`` / ``w_seen`` (:func:`opencmap.kernels.tilehash.verify_row_tiles`);
    on a mismatch ``bad`` gets ``(0 ranks | 1 weights, row, tile)`` and the call returns early.

    Sets are taken ``_SET_GROUP`` at a time over all the columns. Per tile of ``_TILE`` columns
    and per set: each set row's run of the tile is read once (sequentially) into a key buffer
    (``rank << shift | gene``, ``sent`` for a missing gene) and a ``|w|`` buffer; the keys of all
    columns are sorted together by the set's sorting network (``net[net_range[q, 0]:net_range[q, 1]]``);
    the weights are gathered into rank order; and the running sums of all columns are walked
    together. Results go to ``es_out[q, out_offset + c - c0]``.
    """
    n_sets = bounds.shape[0] - 1
    g_max = 1
    for q in range(n_sets):
        g_max = max(g_max, bounds[q + 1] - bounds[q])
    width_max = _TILE + _PAD
    keys = np.empty((g_max, width_max), dtype=key_proto.dtype)
    absw = np.empty((g_max, width_max), dtype=weights.dtype)
    steps = np.empty((g_max, width_max), dtype=absw.dtype)
    total = np.empty(width_max, dtype=np.float64)
    n_hit = np.empty(width_max, dtype=np.int64)
    state_f = np.empty((3, width_max), dtype=np.float64)
    state_i = np.empty((3, width_max), dtype=np.int64)
    low = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    big = g_max > network_max  # buffers of the per-signature path for large sets
    bits = np.zeros((n_features >> 6) + 1 if big else 1, dtype=np.uint64)
    before = np.empty(bits.shape[0], dtype=np.int64)
    hit_rank = np.empty(g_max if big else 1, dtype=np.int64)
    hit_w = np.empty(hit_rank.shape[0], dtype=np.float64)
    srt_rank = np.empty(hit_rank.shape[0], dtype=np.int64)
    srt_w = np.empty(hit_rank.shape[0], dtype=np.float64)
    for q0 in range(q_lo, q_hi, _SET_GROUP):
        q1 = min(q0 + _SET_GROUP, q_hi)
        for t0 in range(c0, c1, _TILE):
            m = min(_TILE, c1 - t0)
            width = (m + _LANES - 1) // _LANES * _LANES
            o = out_offset + t0 - c0
            for q in range(q0, q1):
                a = bounds[q]
                g = bounds[q + 1] - a
                for j in range(width):
                    total[j] = 0.0
                    n_hit[j] = 0
                # a kernel tile that is one whole hash tile (blocks start on tile boundaries) is
                # hashed in the loop that reads it; other runs are checked whole tiles first
                tile = t0 // tile_cols
                fused = check and t0 % tile_cols == 0 and (m == tile_cols or t0 + m == ranks.shape[1])
                for i in range(g):  # one sequential run per set row; missing genes -> sent
                    row = rows[a + i]
                    fresh = fused and not (r_seen[row, tile] and (not weighted or w_seen[row, tile]))
                    if check and not fused:
                        t = verify_row_tiles(ranks, r_sums, r_seen, row, t0, t0 + m, tile_cols)
                        if t < 0 and weighted:
                            t = verify_row_tiles(w_bits, w_sums, w_seen, row, t0, t0 + m, tile_cols)
                            if t >= 0:
                                bad[0] = 1
                        if t >= 0:
                            bad[0] = max(bad[0], 0)
                            bad[1] = row
                            bad[2] = t
                            return
                    src = ranks[row, t0 : t0 + m]
                    dk = keys[i]
                    gene = np.uint64(i)
                    acc_r = np.uint64(0)
                    acc_w = np.uint64(0)
                    if weighted and fresh:
                        src_w = weights[row, t0 : t0 + m]
                        bits_w = w_bits[row, t0 : t0 + m]
                        dw = absw[i]
                        for j in range(m):
                            _take_weighted(src, src_w, j, dk, dw, total, n_hit, n_features, shift, gene, sent)
                            acc_r += np.uint64(src[j]) * hash_key(j)
                            acc_w += np.uint64(bits_w[j]) * hash_key(j)
                    elif weighted:
                        src_w = weights[row, t0 : t0 + m]
                        dw = absw[i]
                        for j in range(m):
                            _take_weighted(src, src_w, j, dk, dw, total, n_hit, n_features, shift, gene, sent)
                    elif fresh:
                        for j in range(m):
                            _take(src, j, dk, n_hit, n_features, shift, gene, sent)
                            acc_r += np.uint64(src[j]) * hash_key(j)
                    else:
                        for j in range(m):
                            _take(src, j, dk, n_hit, n_features, shift, gene, sent)
                    if fresh:
                        if finish_hash(acc_r, m) != r_sums[row, tile]:
                            bad[0] = 0
                            bad[1] = row
                            bad[2] = tile
                            return
                        if weighted and finish_hash(acc_w, m) != w_sums[row, tile]:
                            bad[0] = 1
                            bad[1] = row
                            bad[2] = tile
                            return
                        r_seen[row, tile] = 1
                        if weighted:
                            w_seen[row, tile] = 1
                    for j in range(m, width):
                        dk[j] = sent
                if g > network_max:
                    for j in range(m):
                        n = 0
                        for i in range(g):
                            key = keys[i, j]
                            if key < sent:
                                hit_rank[n] = np.int64(key >> shift)
                                hit_w[n] = absw[i, j] if weighted else 1.0
                                n += 1
                        if n == 0 or _sort_by_rank(n, hit_rank, hit_w, bits, before, srt_rank, srt_w) != n:
                            es_out[q, o + j] = np.nan
                            leadf_out[q, o + j] = np.nan
                        else:
                            es, lf = _es_one(n, srt_rank, srt_w, total[j], n_features, weighted)
                            es_out[q, o + j] = es
                            leadf_out[q, o + j] = lf
                    continue
                _sort_lanes(keys, net, net_range[q, 0], net_range[q, 1], width)
                if weighted:  # |w| of the hits in rank order
                    for k in range(g):
                        krow = keys[k]
                        out = steps[k]
                        for j in range(width):
                            out[j] = absw[np.int64(krow[j] & low), j]
                _walk_lanes(keys, steps, g, width, shift, sent, total, n_hit, weighted, n_features, state_f, state_i)
                for j in range(m):
                    es_out[q, o + j], leadf_out[q, o + j] = _lane_result(state_f, state_i, total, n_hit, weighted, j)


def set_enrichment_scores(
    ranks: np.ndarray,
    weights: np.ndarray | None,
    rows: np.ndarray,
    bounds: np.ndarray,
    n_features: int,
    *,
    weighted: bool = True,
    columns: tuple[int, int] | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    threads: int = 1,
    executor: Executor | None = None,
    network_max: int = NETWORK_MAX,
    min_thread_work: int = MIN_THREAD_WORK,
    verify: ReadCheck | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ES and leading-edge fraction of several gene sets, read straight from gene-major matrices.

    The fused form of :func:`enrichment_scores`: the set genes' rows are read in place (e.g. from
    a memory-mapped store) tile by tile, so no ``(G, S)`` copies are made, and all sets (the up
    and down sets of many queries) are scored in one pass over the signatures.

    Parameters
    ----------
    ranks:
        Integer array (n_rows, S): 1-based descending ranks, gene-major (``0`` = missing).
    weights:
        Float array (n_rows, S) of the scores (``|w|`` is used), or ``None`` with ``weighted=False``.
    rows, bounds:
        Set ``q`` is the rows ``rows[bounds[q]:bounds[q + 1]]`` (int arrays; ``bounds`` has
        ``n_sets + 1`` non-decreasing entries starting at 0). An empty set gives NaN.
    n_features:
        ``N``, the length of each ranked list.
    weighted:
        ``False``: unweighted ES (hit step ``1/G``), ``weights`` ignored.
    columns:
        ``(c0, c1)``: score only signatures ``c0:c1`` (default: all).
    out:
        Optional ``(es, leadf)`` float64 arrays (n_sets, c1 - c0) to fill (C-contiguous rows).
    threads:
        Worker threads (default 1); inputs of less than ``min_thread_work`` (signatures x set
        genes) per thread use fewer. The caller (a backend, :mod:`opencmap.backends`) decides.
    executor:
        Where the work units of ``threads > 1`` run (the backend's thread pool); default: a
        pool of ``threads`` threads made for this call.
    network_max, min_thread_work:
        Tuning (:data:`NETWORK_MAX`, :data:`MIN_THREAD_WORK`); no value changes a result.
    verify:
        Tile hashes of ``ranks`` (and ``weights``, when weighted) to check each run of a set row
        against as it is read (:class:`opencmap.kernels.tilehash.ReadCheck`; tiles of
        :data:`~opencmap.kernels.tilehash.TILE_COLS` columns, each hashed once per ``seen``
        bitmap). A mismatch stops the call with ``verify.bad`` set to ``(0 ranks | 1 weights,
        row, tile)`` (the outputs are then incomplete): the caller checks ``verify.bad[0] >= 0``.

    Returns
    -------
    es, leadf:
        float64 (n_sets, c1 - c0), as :func:`enrichment_scores` per set.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or not np.issubdtype(ranks.dtype, np.integer):
        raise ValidationError(f"ranks must be a 2-D integer array (genes x signatures), got {ranks.dtype} {ranks.shape}")
    n_features = int(n_features)
    if not 1 <= n_features < 0xFFFFFFFF:
        raise ValidationError(f"n_features must be in 1..{0xFFFFFFFF - 1:,}, got {n_features}")
    n_rows, n_sig = ranks.shape
    if weighted:
        if weights is None:
            raise ValidationError("weighted=True needs a weights array (or pass weighted=False)")
        weights = np.asarray(weights)
        if weights.shape != ranks.shape:
            raise ValidationError(f"weights shape {weights.shape} differs from ranks shape {ranks.shape}")
        if weights.dtype not in (np.float32, np.float64):
            weights = weights.astype(np.float64)
    else:
        weights = _NO_WEIGHTS
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    if bounds.ndim != 1 or len(bounds) < 1 or bounds[0] != 0 or bounds[-1] != len(rows) or np.any(np.diff(bounds) < 0):
        raise ValidationError("bounds must be non-decreasing offsets into rows, from 0 to len(rows)")
    if len(rows) and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValidationError(f"rows must be in 0..{n_rows - 1}")
    c0, c1 = (0, n_sig) if columns is None else (int(columns[0]), int(columns[1]))
    if not 0 <= c0 <= c1 <= n_sig:
        raise ValidationError(f"columns {columns} out of range 0..{n_sig}")
    n_sets = len(bounds) - 1
    if out is None:
        es = np.empty((n_sets, c1 - c0), dtype=np.float64)
        leadf = np.empty((n_sets, c1 - c0), dtype=np.float64)
    else:
        es, leadf = out
        if es.shape != (n_sets, c1 - c0) or leadf.shape != es.shape:
            raise ValidationError(f"out arrays must have shape {(n_sets, c1 - c0)}")
    if c1 == c0 or n_sets == 0:
        return es, leadf
    work = (c1 - c0) * max(len(rows), 1)
    n_threads = min(max(int(threads), 1), max(work // max(int(min_thread_work), 1), 1))
    g_max = int(np.diff(bounds).max())
    if n_features < 0xFFFF and g_max <= 0x10000:  # 16-bit rank | 16-bit gene keys (SIMD: 16 lanes)
        key_proto, shift, sent = np.empty(0, np.uint32), np.uint64(16), np.uint32(0xFFFF0000)
    else:
        key_proto, shift, sent = np.empty(0, np.uint64), np.uint64(32), np.uint64(0xFFFFFFFF00000000)
    network_max = int(network_max)
    net, net_range = _networks(np.diff(bounds), network_max)
    checks = _read_checks(verify, ranks, weights if weighted else None)
    args = (ranks, weights, rows, bounds, net, net_range, network_max, n_features, bool(weighted), key_proto, shift, sent, *checks)
    if n_threads == 1:
        _es_columns(*args, 0, n_sets, c0, c1, es, leadf, 0)
        return es, leadf
    # work units: (set range, column range), several per thread so a thread slowed by other load
    # does not hold up the rest. Many sets (a batch) are split by set, so each unit streams its
    # sets' rows across all the columns; few sets are split by columns.
    n_units = 4 * n_threads
    n_groups = -(-n_sets // _SET_GROUP)
    set_chunks = min(n_groups, n_units)
    col_chunks = min(-(-n_units // set_chunks), max((c1 - c0) // _TILE, 1))
    q_edges = np.linspace(0, n_groups, set_chunks + 1).astype(np.int64) * _SET_GROUP
    q_edges[-1] = n_sets
    edges = np.linspace(c0, c1, col_chunks + 1).astype(np.int64)
    edges[1:-1] -= (edges[1:-1] - c0) % _TILE
    units = [
        (int(q_lo), int(q_hi), int(lo), int(hi), int(lo - c0))
        for q_lo, q_hi in zip(q_edges[:-1], q_edges[1:])
        for lo, hi in zip(edges[:-1], edges[1:])
        if hi > lo and q_hi > q_lo
    ]
    if executor is None:
        with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="opencmap-wtcs") as own:
            _run_units(own, args, units, es, leadf)
    else:
        _run_units(executor, args, units, es, leadf)
    return es, leadf


def _read_checks(verify: ReadCheck | None, ranks: np.ndarray, weights: np.ndarray | None) -> tuple:
    """The ``check .. bad`` arguments of :func:`_es_columns` for ``verify``."""
    if verify is None:
        return (False, _NO_SUMS, _NO_SEEN, _NO_BITS, _NO_SUMS, _NO_SEEN, TILE_COLS, np.full(3, -1, dtype=np.int64))
    if verify.ranks is None or ranks.dtype.kind != "u" or ranks.dtype.itemsize > 4 or int(verify.cols) < 1:
        raise ValidationError("verify needs the tile hashes of an unsigned rank array of at most 32 bits")
    r_sums, r_seen = verify.ranks
    if weights is None:
        w_bits, (w_sums, w_seen) = _NO_BITS, (_NO_SUMS, _NO_SEEN)
    else:
        if verify.scores is None or weights.dtype.itemsize != 4:
            raise ValidationError("verify of weighted scores needs the tile hashes of float32 weights")
        w_bits, (w_sums, w_seen) = weights.view(np.uint32), verify.scores
    n_tiles = max(1, -(-ranks.shape[1] // int(verify.cols)))
    for sums, seen, arr in ((r_sums, r_seen, ranks), (w_sums, w_seen, weights)):
        if arr is not None and (sums.shape != (arr.shape[0], n_tiles) or seen.shape != sums.shape):
            raise ValidationError(f"tile hashes {sums.shape} do not fit an array of {arr.shape} in tiles of {verify.cols}")
    return (True, r_sums, r_seen, w_bits, w_sums, w_seen, int(verify.cols), verify.bad)


def _run_units(executor: Executor, args: tuple, units: list[tuple[int, int, int, int, int]], es: np.ndarray, leadf: np.ndarray) -> None:
    """Run the work units ``(set lo, set hi, column lo, column hi, output offset)`` on ``executor``."""
    futures = [executor.submit(_es_columns, *args, q_lo, q_hi, lo, hi, es, leadf, off) for q_lo, q_hi, lo, hi, off in units]
    for f in futures:
        f.result()


def enrichment_scores(
    ranks: np.ndarray,
    weights: np.ndarray | None,
    n_features: int,
    *,
    weighted: bool = True,
    threads: int = 1,
    executor: Executor | None = None,
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
    threads, executor:
        As :func:`set_enrichment_scores` (default: the calling thread only).

    Returns
    -------
    es, leadf:
        float64 arrays (S,). ES is in [-1, 1]; NaN (both) where no set gene is present in the
        signature, and (weighted) where every weight of the present genes is 0: the hit steps
        ``|w| / sum|w|`` are 0/0, and cmapM's ``fastESCore`` gives NaN too (spec §13.2; cmapM's
        leading edge there is an artefact of ``max`` over NaN, we give NaN).
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2:
        raise ValidationError(f"ranks must be 2-D (genes x signatures), got shape {ranks.shape}")
    n_genes = ranks.shape[0]
    es, leadf = set_enrichment_scores(
        ranks, weights, np.arange(n_genes), np.array([0, n_genes]), n_features, weighted=weighted,
        threads=threads, executor=executor,
    )  # fmt: skip
    return es[0], leadf[0]


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
