"""Where the WTCS set walk spends its time, and what a shared (batch) walk could save.

Issue #16 asks for a batch kernel that walks each signature's genes in rank order once for all
queries (cmapM ``fastWTCSCore``'s "wtcs of all queries, for one signature"), at >= 5x the
throughput of single queries, bit-identical to them. This script measures, per (query set,
signature) membership (one set gene in one signature) and on one thread:

1. the engine's fused kernel (:func:`opencmap.kernels.wtcs.set_enrichment_scores`) on gene-major
   uint16 ranks + float32 scores laid out as in a store (``--genes`` rows x ``--sigs`` columns,
   standard-normal scores ranked as the store builder ranks them), ``--queries`` queries of
   ``--set-genes`` up + ``--set-genes`` down genes scored in one call, as the engine does;
2. its phases, by running copies of the kernel's loop (``_es_columns``, sorting-network path)
   written here that stop after each phase, on the kernel's own phase functions
   (``_sort_lanes``, ``_walk_lanes``):

   * ``read``: each set row's run of a tile read into the key buffer (``rank << 16 | gene``) and
     ``|w|`` buffer, with the per-signature hit count and ``sum |w|``;
   * ``sort``: the sorting network over the keys of all signatures of the tile;
   * ``gather``: the hits' ``|w|`` gathered into rank order;
   * ``walk``: the running-sum walk (and the ES / leading-edge output);

   each phase is the difference between consecutive stopping points (the full copy's ES is
   checked equal to the kernel's, and its time is printed next to the kernel's: the two should
   agree, a gap means the cores were disturbed); ``totals`` is
   the part any exact scheme keeps: ``sum |w|`` and the hit count of each (set, signature), summed
   in the set's gene order (the kernel's order; a float sum in another order can differ in the
   last bit, which changes every hit step). The printed upper bounds on an exact shared walk are
   ``all phases / walk`` (sharing removes read, sort and gather but not the walk) and
   ``all phases / (walk + totals)``;
3. two prototypes of the shared signature-major walk (numba, here), both after a ``totals``
   pass over gene-major tiles (as above, the part kept): per signature, one pass over its genes
   in rank order (signature-major arrays ``gene at rank r`` and its ``|w|``, as a store would have
   to keep them) with an index gene -> the sets containing it:

   * A: each hit advances the running state of the sets containing it (scalar; per-set state in
     one 64-byte row, updated without branches);
   * B: each hit is appended, already in rank order, to the key/step buffers of those sets for a
     tile of 16 signatures (``--group`` sets per pass), which the kernel's SIMD ``_walk_lanes``
     then walks (no per-set read, sort or gather).

   * C: the sets in SIMD lanes instead of the signatures (``--width`` sets per lane group): per
     signature, each group's ``sum |w|`` and hit counts are gathered from the signature's row in
     each set's gene order (the kernel's order, so every hit step is the same double), one pass
     over the genes in rank order appends each hit to the buffers of the group's sets containing
     it, and the kernel's ``_walk_lanes`` walks all the group's sets at once (no sort, no gene-major
     read; signature-major scores and rank order only).

   Their ES, leading-edge fractions and WTCS are checked bit for bit against the kernel's on a
   small case with missing genes (NaN scores, rank 0), tied scores and an all-zero signature, and
   again on the timed inputs; the ratio kernel / prototype per membership is printed.

Building the signature-major inputs of the prototype is not timed (a store would build them
once: ``2 * genes`` bytes per signature for the rank order, plus its signature-major scores).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_wtcs_phases.py --genes 978 --sigs 2000 --queries 50
    PYTHONPATH=src .venv/bin/python benchmarks/bench_wtcs_phases.py --genes 10174 --sigs 2000 --queries 20,100

Memory: ``12 * genes * sigs`` bytes of inputs (244 MB for 10,174 x 2,000) plus the outputs
(``16 * 2 * queries * sigs`` bytes per scoring).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numba
import numpy as np

from opencmap.kernels.ranks import descending_ranks_rows
from opencmap.kernels.wtcs import (
    _LANES, _PAD, _SET_GROUP, _TILE, _lane_result, _networks, _sort_lanes, _take_weighted, _walk_lanes, set_enrichment_scores, wtcs,
)

STAGES = ("totals", "read", "sort", "gather", "walk")
_SENT_GENE = 0xFFFF


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of ``repeat`` calls (single-threaded code: CPU time is the
    less disturbed by other work on the shared cores)."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


# ---------------------------------------------------------------------------------------- inputs
def make_reference(n_genes: int, n_sigs: int, *, seed: int = 0, quirks: bool = False):
    """Signature-major float32 scores and their store ranks (1 = largest, ties in gene order,
    NaN -> rank 0), both (S, N); and the gene-major (N, S) copies the kernel reads.

    ``quirks``: quantised scores (many exact ties of ``|w|``), ~2% NaN (missing genes) and an
    all-zero signature (every hit weight 0), for the bit-for-bit check.
    """
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_sigs, n_genes), dtype=np.float32)
    if quirks:
        scores = np.round(scores * 4).astype(np.float32) / np.float32(4)
        scores[rng.random(scores.shape) < 0.02] = np.nan
        scores[0] = 0.0
    ranks = descending_ranks_rows(scores, dtype=np.uint16)
    ranks[np.isnan(scores)] = 0
    return scores, ranks, np.ascontiguousarray(ranks.T), np.ascontiguousarray(scores.T)


def make_queries(n_genes: int, n_queries: int, set_genes: int, *, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``rows``/``bounds`` of ``2 * n_queries`` sets: query ``q``'s up set is set ``2q``, its down set
    ``2q + 1`` (disjoint, ``set_genes`` genes each), as the engine passes a batch to the kernel."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(n_genes, 2 * set_genes, replace=False) for _ in range(n_queries)]).astype(np.int64)
    bounds = np.arange(0, 2 * n_queries + 1, dtype=np.int64) * set_genes
    return rows, bounds


def rank_order(ranks_sig: np.ndarray) -> np.ndarray:
    """(S, N) uint16: the gene at rank ``k + 1`` of each signature (``0xFFFF`` past its last rank)."""
    n_sigs, n_genes = ranks_sig.shape
    order = np.full((n_sigs, n_genes), _SENT_GENE, dtype=np.uint16)
    s, g = np.nonzero(ranks_sig)
    order[s, ranks_sig[s, g].astype(np.int64) - 1] = g
    return order


def gene_index(rows: np.ndarray, bounds: np.ndarray, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR index gene -> the sets containing it (``sets[ptr[g]:ptr[g + 1]]``, increasing)."""
    set_of = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    order = np.lexsort((set_of, rows))
    ptr = np.zeros(n_genes + 1, dtype=np.int64)
    np.add.at(ptr, rows + 1, 1)
    return np.cumsum(ptr), np.ascontiguousarray(set_of[order], dtype=np.int64)


# ------------------------------------------------------------------- the kernel, phase by phase
@numba.njit(nogil=True, inline="always")
def add_totals(src, src_w, m, n_features, total, n_hit):
    """Add one set row's ``|w|`` and presence over ``m`` columns to the hit totals (the kernel's
    read phase without the keys; a gene counts if its rank is in ``1..N`` and its score is not NaN)."""
    for j in range(m):
        r = np.int64(src[j])
        w = abs(np.float64(src_w[j]))
        ok = r > 0 and r <= n_features and not math.isnan(w)
        total[j] += w if ok else 0.0
        n_hit[j] += 1 if ok else 0


@numba.njit(nogil=True, inline="always")
def write_es(state_f, state_i, total, n_hit, m, q, c0, es_out, leadf_out):
    """ES and leading-edge fraction of set ``q`` in columns ``c0:c0 + m`` from ``_walk_lanes``'s
    state, as the kernel writes them (NaN: no hit, duplicate ranks, or every hit weight 0)."""
    for j in range(m):
        es_out[q, c0 + j], leadf_out[q, c0 + j] = _lane_result(state_f, state_i, total, n_hit, True, j)


@numba.njit(nogil=True, error_model="numpy")
def staged_es(ranks, weights, rows, bounds, net, net_range, n_features, shift, sent, stage, es_out, leadf_out):
    """The kernel's ``_es_columns`` loop (weighted, every set on the sorting-network path, one
    thread, all columns) stopping after phase ``stage`` (0 totals only, 1 read, 2 sort, 3 gather,
    4 walk + output). The buffers are local, as in the kernel (passed in, they could alias the
    inputs and the read loop would not vectorise); a checksum of what each phase wrote is returned
    so no phase can be optimised away."""
    n_sets = bounds.shape[0] - 1
    c1 = ranks.shape[1]
    g_max = 1
    for q in range(n_sets):
        g_max = max(g_max, bounds[q + 1] - bounds[q])
    keys = np.empty((g_max, _TILE + _PAD), dtype=np.uint32)
    absw = np.empty((g_max, _TILE + _PAD), dtype=weights.dtype)
    steps = np.empty((g_max, _TILE + _PAD), dtype=weights.dtype)
    total = np.empty(_TILE + _PAD)
    n_hit = np.empty(_TILE + _PAD, dtype=np.int64)
    state_f = np.empty((3, _TILE + _PAD))
    state_i = np.empty((3, _TILE + _PAD), dtype=np.int64)
    low = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    check = 0.0
    for q0 in range(0, n_sets, _SET_GROUP):
        q1 = min(q0 + _SET_GROUP, n_sets)
        for t0 in range(0, c1, _TILE):
            m = min(_TILE, c1 - t0)
            width = (m + _LANES - 1) // _LANES * _LANES
            for q in range(q0, q1):
                a = bounds[q]
                g = bounds[q + 1] - a
                for j in range(width):
                    total[j] = 0.0
                    n_hit[j] = 0
                for i in range(g):
                    row = rows[a + i]
                    src = ranks[row, t0 : t0 + m]
                    src_w = weights[row, t0 : t0 + m]
                    if stage == 0:  # sum |w| and hit count only
                        add_totals(src, src_w, m, n_features, total, n_hit)
                        continue
                    dk = keys[i]
                    gene = np.uint64(i)
                    dw = absw[i]
                    for j in range(m):
                        _take_weighted(src, src_w, j, dk, dw, total, n_hit, n_features, shift, gene, sent)
                    for j in range(m, width):
                        dk[j] = sent
                check += total[0] + n_hit[m - 1]
                if stage < 2:
                    continue
                _sort_lanes(keys, net, net_range[q, 0], net_range[q, 1], width)
                check += keys[g - 1, 0]
                if stage < 3:
                    continue
                for k in range(g):
                    krow = keys[k]
                    out = steps[k]
                    for j in range(width):
                        out[j] = absw[np.int64(krow[j] & low), j]
                check += steps[g - 1, 0]
                if stage < 4:
                    continue
                _walk_lanes(keys, steps, g, width, shift, sent, total, n_hit, True, n_features, state_f, state_i)
                write_es(state_f, state_i, total, n_hit, m, q, t0, es_out, leadf_out)
    return check


def run_stage(ranks, weights, rows, bounds, n_features: int, stage: int, es: np.ndarray, leadf: np.ndarray) -> float:
    net, net_range = _networks(np.diff(bounds), 1 << 30)
    return staged_es(ranks, weights, rows, bounds, net, net_range, n_features, np.uint64(16), np.uint32(0xFFFF0000), stage, es, leadf)


# ------------------------------------------------------------------ prototype: shared walk
@numba.njit(nogil=True, error_model="numpy")
def set_totals(ranks, weights, rows, bounds, n_features, tot_out, n_out):
    """``sum |w|`` and hit count of every set in every signature into ``tot_out``/``n_out`` (S, n_sets),
    summed in the set's gene order (the kernel's order) over tiles of signatures of the gene-major
    inputs, as the kernel's read phase does (the part of the kernel an exact shared walk keeps)."""
    n_sets = bounds.shape[0] - 1
    c1 = ranks.shape[1]
    total = np.empty(_TILE)
    n_hit = np.empty(_TILE, dtype=np.int64)
    for q in range(n_sets):
        for t0 in range(0, c1, _TILE):
            m = min(_TILE, c1 - t0)
            total[:] = 0.0
            n_hit[:] = 0
            for i in range(bounds[q], bounds[q + 1]):
                add_totals(ranks[rows[i], t0 : t0 + m], weights[rows[i], t0 : t0 + m], m, n_features, total, n_hit)
            for j in range(m):
                tot_out[t0 + j, q] = total[j]
                n_out[t0 + j, q] = n_hit[j]


@numba.njit(nogil=True, error_model="numpy")
def shared_walk(order, wsorted, ptr, sets, tot, nh, n_features, es_out, leadf_out):
    """ES and leading-edge fraction of every set in every signature, one signature at a time.

    Per signature ``s``: the genes in rank order (``order[s]``, their ``|w|`` in ``wsorted[s]``),
    each hit advancing the running state of the sets containing it (``sets[ptr[g]:ptr[g + 1]]``)
    with the kernel's arithmetic (``_walk_lanes``), in the same order per set; ``tot``/``nh``
    (S, n_sets) from :func:`set_totals`. Per-set state is packed in one 64-byte row and updated
    without branches. Outputs (n_sets, S).
    """
    n_sets = tot.shape[1]
    n_sigs, n_genes = order.shape
    # running, best, -miss, total, prev rank, best k, count, (pad)
    st = np.zeros((n_sets, 8))
    for s in range(n_sigs):
        for q in range(n_sets):
            n = nh[s, q]
            st[q, 0] = 0.0
            st[q, 1] = 0.0
            st[q, 2] = -(1.0 if n == n_features else 1.0 / (n_features - n))
            st[q, 3] = tot[s, q]
            st[q, 4] = 0.0
            st[q, 5] = 0.0
            st[q, 6] = 0.0
        orow = order[s]
        wrow = wsorted[s]
        for k in range(n_genes):
            g = np.int64(orow[k])
            if g == _SENT_GENE:
                break
            w = np.float64(wrow[k])
            r = np.float64(k + 1)
            for e in range(ptr[g], ptr[g + 1]):
                x = st[sets[e]]
                hit = w / x[3]
                run = x[0] + ((r - x[4] - 1.0) * x[2] + hit)
                pre = run - hit
                val = pre if abs(run) < abs(pre) else run
                c = x[6] + 1.0
                b = x[1]
                better = abs(val) > abs(b) or x[5] == 0.0
                x[1] = val if better else b
                x[5] = c if better else x[5]
                x[6] = c
                x[0] = run
                x[4] = r
        for q in range(n_sets):
            n = nh[s, q]
            if n == 0 or tot[s, q] == 0.0:
                es_out[q, s] = np.nan
                leadf_out[q, s] = np.nan
            else:
                best = st[q, 1]
                kb = np.int64(st[q, 5])
                es_out[q, s] = best
                leadf_out[q, s] = kb / n if best >= 0.0 else (n - kb + 1) / n


@numba.njit(nogil=True, error_model="numpy")
def bucket_walk(order, wsorted, ptr, sets, tot, nh, n_features, group, g_max, walk, es_out, leadf_out):
    """Variant B of the shared walk: the rank-order pass only distributes hits, and the walk
    stays the kernel's SIMD walk across signatures.

    Sets are taken ``group`` at a time (``ptr[gi]``/``sets``: the gene index of group ``gi``, set
    numbers local to it); per tile of ``_LANES`` signatures, each signature's genes are walked in
    rank order once and every hit is appended to the key/step buffers of the group's sets
    containing it (``rank << 16``, ``|w|``), already in rank order: no per-set read, sort or
    gather. Then (unless ``walk`` is False: the distribution alone) the kernel's ``_walk_lanes``
    walks each set's buffers for the tile's signatures.
    """
    n_sets = tot.shape[1]
    n_sigs, n_genes = order.shape
    width = _LANES
    keys = np.empty((group, g_max, width), dtype=np.uint32)
    steps = np.empty((group, g_max, width), dtype=np.float32)
    cnt = np.empty((group, width), dtype=np.int64)
    total = np.empty(width)
    n_hit = np.empty(width, dtype=np.int64)
    state_f = np.empty((3, width))
    state_i = np.empty((3, width), dtype=np.int64)
    sent = np.uint32(0xFFFF0000)
    for gi in range((n_sets + group - 1) // group):
        q0 = gi * group
        q1 = min(q0 + group, n_sets)
        gptr = ptr[gi]
        for t0 in range(0, n_sigs, width):
            m = min(width, n_sigs - t0)
            cnt[:] = 0
            for j in range(m):
                orow = order[t0 + j]
                wrow = wsorted[t0 + j]
                for k in range(n_genes):
                    g = np.int64(orow[k])
                    if g == _SENT_GENE:
                        break
                    key = np.uint32(k + 1) << np.uint32(16)
                    w = wrow[k]
                    for e in range(gptr[g], gptr[g + 1]):
                        ql = sets[e]
                        c = cnt[ql, j]
                        keys[ql, c, j] = key
                        steps[ql, c, j] = w
                        cnt[ql, j] = c + 1
            if not walk:
                es_out[q0, t0] = keys[0, 0, 0] + steps[0, 0, 0]  # keep the distribution
                continue
            for q in range(q0, q1):
                ql = q - q0
                g = 0
                for j in range(m):
                    total[j] = tot[t0 + j, q]
                    n_hit[j] = nh[t0 + j, q]
                    g = max(g, cnt[ql, j])
                for j in range(m, width):
                    total[j] = 1.0
                    n_hit[j] = 0
                    cnt[ql, j] = 0
                for j in range(width):
                    for c in range(cnt[ql, j], g):
                        keys[ql, c, j] = sent
                _walk_lanes(keys[ql], steps[ql], g, width, np.uint64(16), sent, total, n_hit, True, n_features, state_f, state_i)
                write_es(state_f, state_i, total, n_hit, m, q, t0, es_out, leadf_out)


def group_index(rows: np.ndarray, bounds: np.ndarray, n_genes: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Gene index of each group of ``group`` sets: ``ptr`` (n_groups, N + 1) into ``sets`` (local set numbers)."""
    n_sets = len(bounds) - 1
    ptrs, parts, at = [], [], 0
    for q0 in range(0, n_sets, group):
        q1 = min(q0 + group, n_sets)
        ptr, sets = gene_index(rows[bounds[q0] : bounds[q1]], bounds[q0 : q1 + 1] - bounds[q0], n_genes)
        ptrs.append(ptr + at)
        parts.append(sets)
        at += len(sets)
    return np.stack(ptrs), np.concatenate(parts)


def lane_tables(rows: np.ndarray, bounds: np.ndarray, n_genes: int, width: int):
    """Prototype C's per-group tables: ``ptr`` (n_groups, N + 1) into ``lanes`` (the lanes, i.e.
    group-local set numbers, containing each gene) and ``genes_t`` (n_groups, g_max, width): the
    ``i``-th gene of each lane's set in set order (-1 past its end)."""
    n_sets = len(bounds) - 1
    sizes = np.diff(bounds)
    n_groups = -(-n_sets // width)
    ptr = np.zeros((n_groups, n_genes + 1), dtype=np.int64)
    genes_t = np.full((n_groups, int(sizes.max()), width), -1, dtype=np.int64)
    parts, at = [], 0
    for gi in range(n_groups):
        q0, q1 = gi * width, min((gi + 1) * width, n_sets)
        r = rows[bounds[q0] : bounds[q1]]
        lane = np.repeat(np.arange(q1 - q0), sizes[q0:q1])
        ptr[gi, 1:] = np.cumsum(np.bincount(r, minlength=n_genes)) + at
        ptr[gi, 0] = at
        parts.append(lane[np.lexsort((lane, r))])
        at += len(r)
        for q in range(q0, q1):
            genes_t[gi, : sizes[q], q - q0] = rows[bounds[q] : bounds[q + 1]]
    return ptr, np.concatenate(parts).astype(np.int64), genes_t


@numba.njit(nogil=True, error_model="numpy")
def lane_walk(order, scores, ptr, lanes, genes_t, n_sets, n_features, stop, es_out, leadf_out):
    """Prototype C: per signature and per group of ``width`` sets (the lanes), the group's totals
    gathered in set order from the signature-major row, one rank-order pass distributing the hits
    into ``[hit, lane]`` buffers, and the kernel's ``_walk_lanes`` across the lanes. ``stop``: 1 =
    totals only, 2 = totals and distribution, 3 = everything (timing the phases)."""
    n_sigs, n_genes = order.shape
    n_groups, g_max, width = genes_t.shape
    keys = np.empty((g_max + 1, width), dtype=np.uint32)
    steps = np.empty((g_max + 1, width), dtype=np.float32)
    cnt = np.empty(width, dtype=np.int64)
    total = np.empty(width)
    n_hit = np.empty(width, dtype=np.int64)
    state_f = np.empty((3, width))
    state_i = np.empty((3, width), dtype=np.int64)
    rank = np.zeros(n_genes, dtype=np.int64)
    sent = np.uint32(0xFFFF0000)
    for s in range(n_sigs):
        orow = order[s]
        srow = scores[s]
        rank[:] = 0
        n_ranked = n_genes
        for k in range(n_genes):
            g = orow[k]
            if g == _SENT_GENE:
                n_ranked = k
                break
            rank[g] = k + 1
        for gi in range(n_groups):
            q0 = gi * width
            gt = genes_t[gi]
            for j in range(width):
                total[j] = 0.0
                n_hit[j] = 0
                cnt[j] = 0
            for i in range(g_max):  # sum |w| in each set's gene order, as the kernel
                grow = gt[i]
                for j in range(width):
                    g = grow[j]
                    if g >= 0:
                        w = abs(np.float64(srow[g]))
                        r = rank[g]
                        ok = r > 0 and r <= n_features and not math.isnan(w)
                        total[j] += w if ok else 0.0
                        n_hit[j] += 1 if ok else 0
            if stop < 2:
                continue
            gp = ptr[gi]
            for k in range(n_ranked):  # hits appended in rank order: no sort
                g = orow[k]
                w = srow[g]
                if math.isnan(w):
                    continue
                key = np.uint32(k + 1) << np.uint32(16)
                aw = abs(w)
                for e in range(gp[g], gp[g + 1]):
                    j = lanes[e]
                    c = cnt[j]
                    keys[c, j] = key
                    steps[c, j] = aw
                    cnt[j] = c + 1
            if stop < 3:
                continue
            g = 0
            for j in range(width):
                g = max(g, cnt[j])
            for j in range(width):
                for c in range(cnt[j], g):
                    keys[c, j] = sent
            _walk_lanes(keys, steps, g, width, np.uint64(16), sent, total, n_hit, True, n_features, state_f, state_i)
            for j in range(min(width, n_sets - q0)):
                es_out[q0 + j, s], leadf_out[q0 + j, s] = _lane_result(state_f, state_i, total, n_hit, True, j)


def run_lanes(scores, order, rows, bounds, n_features, width, es, leadf, stop: int = 3) -> None:
    """Prototype C on signature-major ``scores`` and rank ``order`` (tables not timed apart: they are per batch)."""
    ptr, lanes, genes_t = lane_tables(rows, bounds, n_features, width)
    lane_walk(order, scores, ptr, lanes, genes_t, len(bounds) - 1, n_features, stop, es, leadf)


def prototype_inputs(ranks_sig: np.ndarray, scores_sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The signature-major layout the shared walk reads: gene at each rank and its ``|w|`` (float32)."""
    order = rank_order(ranks_sig)
    rows = np.arange(order.shape[0])[:, None]
    wsorted = np.abs(scores_sig[rows, np.where(order == _SENT_GENE, 0, order)]).astype(np.float32)
    return order, wsorted


def run_prototype(proto, ranks, weights, rows, bounds, n_features, es, leadf, *, walk: bool | str = True, group: int = 0) -> None:
    """Totals over gene-major tiles, then the shared walk (``group=0``) or variant B (groups of
    ``group`` sets; ``walk="distribute"``: its distribution pass alone)."""
    order, wsorted = proto
    n_sets = len(bounds) - 1
    tot = np.empty((ranks.shape[1], n_sets))
    nh = np.empty((ranks.shape[1], n_sets), dtype=np.int64)
    set_totals(ranks, weights, rows, bounds, n_features, tot, nh)
    if walk and group:
        ptr, sets = group_index(rows, bounds, n_features, group)
        bucket_walk(order, wsorted, ptr, sets, tot, nh, n_features, group, int(np.diff(bounds).max()), walk != "distribute", es, leadf)
    elif walk:
        ptr, sets = gene_index(rows, bounds, n_features)
        shared_walk(order, wsorted, ptr, sets, tot, nh, n_features, es, leadf)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (NaN included)."""
    return a.shape == b.shape and np.array_equal(np.ascontiguousarray(a).view(np.uint64), np.ascontiguousarray(b).view(np.uint64))


def check_prototype(n_features: int, set_genes: int, group: int, width_c: int) -> None:
    """Prototypes and staged copy against the kernel on a small case with the awkward inputs."""
    scores, ranks_sig, ranks, weights = make_reference(n_features, 700, seed=5, quirks=True)
    rows, bounds = make_queries(n_features, 12, set_genes, seed=6)
    es_k, lf_k = set_enrichment_scores(ranks, weights, rows, bounds, n_features, threads=1)
    proto = prototype_inputs(ranks_sig, scores)
    oks = []
    for grp in (0, group, 5):  # A; B with the run's group and with a group that does not divide the sets
        es_p, lf_p = np.empty_like(es_k), np.empty_like(lf_k)
        run_prototype(proto, ranks, weights, rows, bounds, n_features, es_p, lf_p, group=grp)
        oks.append(same_bits(es_p, es_k) and same_bits(lf_p, lf_k) and same_bits(wtcs(es_p[0::2], es_p[1::2]), wtcs(es_k[0::2], es_k[1::2])))
    for width in (width_c, 7):  # C with the run's lane width and one that does not divide the sets
        es_p, lf_p = np.empty_like(es_k), np.empty_like(lf_k)
        run_lanes(scores, proto[0], rows, bounds, n_features, width, es_p, lf_p)
        oks.append(same_bits(es_p, es_k) and same_bits(lf_p, lf_k) and same_bits(wtcs(es_p[0::2], es_p[1::2]), wtcs(es_k[0::2], es_k[1::2])))
    es_s, lf_s = np.empty_like(es_k), np.empty_like(lf_k)
    run_stage(ranks, weights, rows, bounds, n_features, 4, es_s, lf_s)
    ok_s = same_bits(es_s, es_k) and same_bits(lf_s, lf_k)
    print(
        f"check (N={n_features}, 700 signatures, 12 queries of {set_genes}+{set_genes}; quantised scores with ties, 2% NaN, "
        f"an all-zero signature; {int(np.isnan(es_k).sum())} NaN ES): ES, leading edge and WTCS bit-identical to the kernel: "
        f"prototype A {oks[0]}, B (groups of {group} / 5 sets) {oks[1]} / {oks[2]}, "
        f"C (lanes of {width_c} / 7 sets) {oks[3]} / {oks[4]}; staged copy {ok_s}"
    )
    if not (all(oks) and ok_s):
        raise SystemExit("a prototype or the staged copy differs from the kernel")


# ---------------------------------------------------------------------------------------- main
def measure(args: argparse.Namespace, n_queries: int, data) -> dict[str, float]:
    """Per-membership figures (ns, from the best CPU time of one thread: the cores are shared)."""
    scores, ranks_sig, ranks, weights, proto = data
    n_features, n_sigs = ranks.shape
    rows, bounds = make_queries(n_features, n_queries, args.set_genes, seed=10 + n_queries)
    members = n_sigs * len(rows)
    ns = 1e9 / members
    es_k, lf_k = set_enrichment_scores(ranks, weights, rows, bounds, n_features, threads=1)
    w_kernel, t_kernel = _best(lambda: set_enrichment_scores(ranks, weights, rows, bounds, n_features, threads=1), args.repeat)
    es, lf = np.empty_like(es_k), np.empty_like(lf_k)
    stage_t = {}
    for i, name in enumerate(STAGES):
        run_stage(ranks, weights, rows, bounds, n_features, i, es, lf)
        _, stage_t[name] = _best(lambda i=i: run_stage(ranks, weights, rows, bounds, n_features, i, es, lf), args.repeat)
    if not (same_bits(es, es_k) and same_bits(lf, lf_k)):
        raise SystemExit("the staged copy differs from the kernel")
    phase = {
        "read": stage_t["read"],
        "sort": stage_t["sort"] - stage_t["read"],
        "gather": stage_t["gather"] - stage_t["sort"],
        "walk": stage_t["walk"] - stage_t["gather"],
    }
    print(
        f"\nN={n_features:,} genes, S={n_sigs:,} signatures, {n_queries} queries of {args.set_genes}+{args.set_genes} genes "
        f"({members:,} memberships), 1 thread, best of {args.repeat}, ns per membership from CPU time [{load()}]"
    )
    print(f"  kernel set_enrichment_scores: {t_kernel * 1e3:8.1f} ms CPU ({w_kernel * 1e3:.1f} ms wall) = {t_kernel * ns:5.2f} ns/membership")
    print(f"  staged copy of its loop, all phases: {stage_t['walk'] * ns:5.2f} ns/membership ({stage_t['walk'] / t_kernel:.2f}x the kernel; ES bit-identical)")
    for name, t in phase.items():
        print(f"    {name:<7} {t * ns:5.2f} ns/membership ({t / stage_t['walk']:5.1%})")
    print(f"    totals only (sum |w| and hit count per set and signature, set order): {stage_t['totals'] * ns:5.2f} ns/membership")
    walk = max(phase["walk"], 1e-12)
    whole = stage_t["walk"]  # the phases' sum: the bounds are ratios within one decomposition
    bound_walk = whole / walk
    bound_totals = whole / (walk + stage_t["totals"])
    print(f"  upper bound on an exact shared walk (it removes read, sort, gather): all phases / walk = {bound_walk:4.2f}x; "
          f"all phases / (walk + totals) = {bound_totals:4.2f}x")
    out = {"kernel": t_kernel * ns, "phases": whole * ns, **{k: v * ns for k, v in phase.items()}, "totals": stage_t["totals"] * ns,
           "bound_walk": bound_walk, "bound_totals": bound_totals}
    es_p, lf_p = np.empty_like(es_k), np.empty_like(lf_k)
    _, t_pre = _best(lambda: run_prototype(proto, ranks, weights, rows, bounds, n_features, es_p, lf_p, walk=False), args.repeat)
    for label, grp in (("A (scalar walk, all sets)", 0), (f"B (distribute + kernel SIMD walk, groups of {args.group} sets)", args.group)):
        call = lambda grp=grp: run_prototype(proto, ranks, weights, rows, bounds, n_features, es_p, lf_p, group=grp)  # noqa: E731
        es_p[:] = 0.0
        call()
        same = same_bits(es_p, es_k) and same_bits(lf_p, lf_k)
        w_proto, t_proto = _best(call, args.repeat)
        print(
            f"  prototype {label}: {t_proto * ns:5.2f} ns/membership ({w_proto * 1e3:.1f} ms wall) = totals {t_pre * ns:4.2f} "
            f"+ rank-order pass and walk {(t_proto - t_pre) * ns:5.2f}; ES/leading edge bit-identical: {same}"
        )
        if grp:
            _, t_dist = _best(lambda: run_prototype(proto, ranks, weights, rows, bounds, n_features, es_p, lf_p, group=grp, walk="distribute"), args.repeat)
            print(f"    of which the rank-order distribution {(t_dist - t_pre) * ns:5.2f} and the kernel's SIMD walk {(t_proto - t_dist) * ns:5.2f}")
            out["distribute_B"] = (t_dist - t_pre) * ns
        print(f"    -> kernel / prototype = {t_kernel / t_proto:4.2f}x at {n_queries} queries ({n_features / len(rows):.3f} rank positions walked per membership)")
        out[f"proto_{'A' if grp == 0 else 'B'}"] = t_proto * ns
    order = proto[0]
    es_p[:] = 0.0
    run_lanes(scores, order, rows, bounds, n_features, args.width, es_p, lf_p)
    same = same_bits(es_p, es_k) and same_bits(lf_p, lf_k)
    t_c = [_best(lambda stop=stop: run_lanes(scores, order, rows, bounds, n_features, args.width, es_p, lf_p, stop), args.repeat)[1] for stop in (1, 2, 3)]
    print(
        f"  prototype C (sets in SIMD lanes, {args.width} per group): {t_c[2] * ns:5.2f} ns/membership = totals gathered in set order "
        f"{t_c[0] * ns:4.2f} + rank-order distribution {(t_c[1] - t_c[0]) * ns:4.2f} + the kernel's SIMD walk {(t_c[2] - t_c[1]) * ns:4.2f}; "
        f"ES/leading edge bit-identical: {same}"
    )
    print(f"    -> kernel / prototype = {t_kernel / t_c[2]:4.2f}x at {n_queries} queries")
    out["proto_C"] = t_c[2] * ns
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genes", type=int, default=978, help="genes per signature (N; 978 landmark, 10,174 BING)")
    ap.add_argument("--sigs", type=int, default=2000, help="signatures")
    ap.add_argument("--queries", default="50", help="queries per batch, comma-separated list (e.g. 20,100)")
    ap.add_argument("--set-genes", type=int, default=150, help="genes per side of a query")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--width", type=int, default=256, help="sets per lane group in prototype C (its buffers: width x set genes x 8 B)")
    ap.add_argument("--group", type=int, default=16, help="sets per rank-order pass in prototype B (its buffers: group x set genes x 16 x 8 B)")
    args = ap.parse_args()
    if args.genes >= 0xFFFF or 2 * args.set_genes > args.genes:
        raise SystemExit(f"--genes must be in {2 * args.set_genes}..65534")
    print(f"numba threads available {numba.get_num_threads()} (all timings on 1 thread) [{load()}]")
    check_prototype(args.genes, args.set_genes, args.group, args.width)
    t0 = time.perf_counter()
    scores, ranks_sig, ranks, weights = make_reference(args.genes, args.sigs)
    proto = prototype_inputs(ranks_sig, scores)
    print(f"inputs built in {time.perf_counter() - t0:.1f} s (not timed): gene-major ranks+scores {ranks.nbytes + weights.nbytes:,} B; "
          f"prototype's signature-major gene at each rank + its |w| {proto[0].nbytes + proto[1].nbytes:,} B")
    results = {q: measure(args, q, (scores, ranks_sig, ranks, weights, proto)) for q in (int(x) for x in args.queries.split(","))}
    print(f"\nsummary, ns per membership (N={args.genes:,}, S={args.sigs:,}); speedups are kernel / x:")
    print("  queries  kernel phases   read   sort gather   walk totals | bound walk  bound walk+totals | proto A    x   | proto B    x   | proto C    x")
    for q, r in results.items():
        print(f"  {q:7d} {r['kernel']:7.2f} {r['phases']:6.2f} {r['read']:6.2f} {r['sort']:6.2f} {r['gather']:6.2f} {r['walk']:6.2f} {r['totals']:6.2f} | "
              f"{r['bound_walk']:9.2f}x {r['bound_totals']:17.2f}x | {r['proto_A']:7.2f} {r['kernel'] / r['proto_A']:5.2f}x | "
              f"{r['proto_B']:7.2f} {r['kernel'] / r['proto_B']:5.2f}x | {r['proto_C']:7.2f} {r['kernel'] / r['proto_C']:5.2f}x")


if __name__ == "__main__":
    main()
