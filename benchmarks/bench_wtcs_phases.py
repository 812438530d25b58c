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
   checked equal to the kernel's, and its time is printed next to the kernel's); ``totals`` is
   the part any exact scheme keeps: ``sum |w|`` and the hit count of each (set, signature), summed
   in the set's gene order (the kernel's order; a float sum in another order can differ in the
   last bit, which changes every hit step). The printed upper bounds on an exact shared walk are
   ``kernel / walk`` (sharing removes read, sort and gather but not the walk) and
   ``kernel / (walk + totals)``;
3. a prototype of the shared signature-major walk (numba, here): per signature, a ``totals``
   pass over each set's genes in set order reading the signature's own (cache-resident) rank and
   score rows, then one pass over the signature's genes in rank order (a signature-major
   ``gene at rank r`` array, as a store would have to keep) with an index gene -> the sets
   containing it, advancing each set's running state. Its ES and leading-edge fractions, and the
   WTCS, are checked bit for bit against the kernel's on a small case with missing genes (NaN
   scores, rank 0), tied scores and an all-zero signature; then it is timed on the same inputs
   as the kernel, with the ratio kernel / prototype per membership.

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
from opencmap.kernels.wtcs import _LANES, _PAD, _SET_GROUP, _TILE, _networks, _sort_lanes, _walk_lanes, set_enrichment_scores, wtcs

STAGES = ("totals", "read", "sort", "gather", "walk")
_SENT_GENE = 0xFFFF


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall time of ``repeat`` calls and the CPU time of that call."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best[0]:
            best = (wall, cpu)
    return best


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
@numba.njit(nogil=True, error_model="numpy")
def staged_es(ranks, weights, rows, bounds, net, net_range, n_features, shift, sent, stage,
              keys, absw, steps, total, n_hit, state_f, state_i, es_out, leadf_out):
    """The kernel's ``_es_columns`` loop (weighted, every set on the sorting-network path, one
    thread, all columns) stopping after phase ``stage`` (0 totals only, 1 read, 2 sort, 3 gather,
    4 walk + output). Buffers are passed in so no phase's writes can be optimised away.
    Returns a checksum of what the stages wrote."""
    n_sets = bounds.shape[0] - 1
    c1 = ranks.shape[1]
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
                        for j in range(m):
                            r = np.int64(src[j])
                            w = abs(np.float64(src_w[j]))
                            ok = r > 0 and r <= n_features and not math.isnan(w)
                            total[j] += w if ok else 0.0
                            n_hit[j] += 1 if ok else 0
                        continue
                    dk = keys[i]
                    gene = np.uint64(i)
                    dw = absw[i]
                    for j in range(m):
                        r = np.int64(src[j])
                        w = abs(np.float64(src_w[j]))
                        ok = r > 0 and r <= n_features and not math.isnan(w)
                        dk[j] = ((np.uint64(r) << shift) | gene) if ok else sent
                        dw[j] = w
                        total[j] += w if ok else 0.0
                        n_hit[j] += 1 if ok else 0
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
                for j in range(m):
                    n = n_hit[j]
                    if n == 0 or state_i[2, j] != 0 or total[j] == 0.0:
                        es_out[q, t0 + j] = np.nan
                        leadf_out[q, t0 + j] = np.nan
                    else:
                        best = state_f[0, j]
                        k_best = state_i[0, j]
                        es_out[q, t0 + j] = best
                        leadf_out[q, t0 + j] = k_best / n if best >= 0.0 else (n - k_best + 1) / n
    return check


def run_stage(ranks, weights, rows, bounds, n_features: int, stage: int, es: np.ndarray, leadf: np.ndarray) -> float:
    net, net_range = _networks(np.diff(bounds), 1 << 30)
    g_max = int(np.diff(bounds).max())
    width = _TILE + _PAD
    keys = np.empty((g_max, width), dtype=np.uint32)
    absw = np.empty((g_max, width), dtype=weights.dtype)
    steps = np.empty((g_max, width), dtype=weights.dtype)
    return staged_es(
        ranks, weights, rows, bounds, net, net_range, n_features, np.uint64(16), np.uint32(0xFFFF0000), stage,
        keys, absw, steps, np.empty(width), np.empty(width, dtype=np.int64), np.empty((3, width)),
        np.empty((3, width), dtype=np.int64), es, leadf,
    )  # fmt: skip


# ------------------------------------------------------------------ prototype: shared walk
@numba.njit(nogil=True, error_model="numpy")
def shared_walk(order, ranks_sig, scores_sig, rows, bounds, ptr, sets, n_features, walk, es_out, leadf_out):
    """ES and leading-edge fraction of every set in every signature, one signature at a time.

    Per signature ``s``: (1) for each set, ``sum |w|`` and the hit count over its genes in set
    order (the kernel's summation order) from the signature's rows ``ranks_sig[s]``,
    ``scores_sig[s]``; (2) unless ``walk`` is False, the genes in rank order ``order[s]``, each hit
    advancing the running state of the sets containing it (``sets[ptr[g]:ptr[g + 1]]``) with the
    kernel's arithmetic (``_walk_lanes``), in the same order per set. Outputs (n_sets, S).
    """
    n_sets = bounds.shape[0] - 1
    n_sigs, n_genes = order.shape
    total = np.empty(n_sets)
    miss = np.empty(n_sets)
    running = np.empty(n_sets)
    best = np.empty(n_sets)
    nhit = np.empty(n_sets, dtype=np.int64)
    prev = np.empty(n_sets, dtype=np.int64)
    best_k = np.empty(n_sets, dtype=np.int64)
    count = np.empty(n_sets, dtype=np.int64)
    for s in range(n_sigs):
        rk = ranks_sig[s]
        sc = scores_sig[s]
        for q in range(n_sets):
            t = 0.0
            n = 0
            for i in range(bounds[q], bounds[q + 1]):
                g = rows[i]
                r = np.int64(rk[g])
                w = abs(np.float64(sc[g]))
                ok = r > 0 and r <= n_features and not math.isnan(w)
                t += w if ok else 0.0
                n += 1 if ok else 0
            total[q] = t
            nhit[q] = n
            miss[q] = 1.0 if n == n_features else 1.0 / (n_features - n)
            running[q] = 0.0
            best[q] = 0.0
            prev[q] = 0
            best_k[q] = 0
            count[q] = 0
        if walk:
            orow = order[s]
            for k in range(n_genes):
                g = np.int64(orow[k])
                if g == _SENT_GENE:
                    break
                a = ptr[g]
                b = ptr[g + 1]
                if a == b:
                    continue
                w = abs(np.float64(sc[g]))
                if math.isnan(w):
                    continue
                r = np.int64(k + 1)
                for e in range(a, b):
                    q = sets[e]
                    hit = w / total[q]
                    p = prev[q]
                    run = running[q] + ((r - p - 1) * (-miss[q]) + hit)
                    pre = run - hit
                    val = pre if abs(run) < abs(pre) else run
                    c = count[q] + 1
                    count[q] = c
                    if abs(val) > abs(best[q]) or best_k[q] == 0:
                        best[q] = val
                        best_k[q] = c
                    running[q] = run
                    prev[q] = r
        for q in range(n_sets):
            n = nhit[q]
            if n == 0 or total[q] == 0.0:
                es_out[q, s] = np.nan
                leadf_out[q, s] = np.nan
            else:
                es_out[q, s] = best[q]
                kb = best_k[q]
                leadf_out[q, s] = kb / n if best[q] >= 0.0 else (n - kb + 1) / n


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit (NaN included)."""
    return a.shape == b.shape and np.array_equal(np.ascontiguousarray(a).view(np.uint64), np.ascontiguousarray(b).view(np.uint64))


def check_prototype(n_features: int, set_genes: int) -> None:
    """Prototype and staged copy against the kernel on a small case with the awkward inputs."""
    scores, ranks_sig, ranks, weights = make_reference(n_features, 700, seed=5, quirks=True)
    rows, bounds = make_queries(n_features, 12, set_genes, seed=6)
    es_k, lf_k = set_enrichment_scores(ranks, weights, rows, bounds, n_features, threads=1)
    es_p, lf_p = np.empty_like(es_k), np.empty_like(lf_k)
    ptr, sets = gene_index(rows, bounds, n_features)
    shared_walk(rank_order(ranks_sig), ranks_sig, scores, rows, bounds, ptr, sets, n_features, True, es_p, lf_p)
    es_s, lf_s = np.empty_like(es_k), np.empty_like(lf_k)
    run_stage(ranks, weights, rows, bounds, n_features, 4, es_s, lf_s)
    ok_p = same_bits(es_p, es_k) and same_bits(lf_p, lf_k) and same_bits(wtcs(es_p[0::2], es_p[1::2]), wtcs(es_k[0::2], es_k[1::2]))
    ok_s = same_bits(es_s, es_k) and same_bits(lf_s, lf_k)
    n_nan = int(np.isnan(es_k).sum())
    print(
        f"check (N={n_features}, 700 signatures, 12 queries of {set_genes}+{set_genes}; quantised scores with ties, 2% NaN, "
        f"an all-zero signature; {n_nan} NaN ES): prototype ES/leading edge/WTCS bit-identical to the kernel: {ok_p}; "
        f"staged copy: {ok_s}"
    )
    if not (ok_p and ok_s):
        bad = np.argwhere(~((es_p == es_k) | (np.isnan(es_p) & np.isnan(es_k))))
        raise SystemExit(f"mismatch at {len(bad)} (set, signature) pairs, first {bad[:5].tolist()}")


# ---------------------------------------------------------------------------------------- main
def measure(args: argparse.Namespace, n_queries: int, data) -> None:
    scores, ranks_sig, ranks, weights, order = data
    n_features, n_sigs = ranks.shape
    rows, bounds = make_queries(n_features, n_queries, args.set_genes, seed=10 + n_queries)
    members = n_sigs * len(rows)
    ns = 1e9 / members
    es_k, lf_k = set_enrichment_scores(ranks, weights, rows, bounds, n_features, threads=1)
    t_kernel, cpu_kernel = _best(lambda: set_enrichment_scores(ranks, weights, rows, bounds, n_features, threads=1), args.repeat)
    es, lf = np.empty_like(es_k), np.empty_like(lf_k)
    stage_t = {}
    for i, name in enumerate(STAGES):
        run_stage(ranks, weights, rows, bounds, n_features, i, es, lf)
        stage_t[name], _ = _best(lambda i=i: run_stage(ranks, weights, rows, bounds, n_features, i, es, lf), args.repeat)
    assert same_bits(es, es_k) and same_bits(lf, lf_k), "staged copy differs from the kernel"
    phase = {
        "read": stage_t["read"],
        "sort": stage_t["sort"] - stage_t["read"],
        "gather": stage_t["gather"] - stage_t["sort"],
        "walk": stage_t["walk"] - stage_t["gather"],
    }
    print(
        f"\nN={n_features:,} genes, S={n_sigs:,} signatures, {n_queries} queries of {args.set_genes}+{args.set_genes} genes "
        f"({members:,} memberships), 1 thread, best of {args.repeat} [{load()}]"
    )
    print(f"  kernel set_enrichment_scores: {t_kernel * 1e3:8.1f} ms wall ({cpu_kernel * 1e3:.1f} ms CPU) = {t_kernel * ns:5.2f} ns/membership")
    print(f"  staged copy, all phases:      {stage_t['walk'] * 1e3:8.1f} ms = {stage_t['walk'] * ns:5.2f} ns/membership "
          f"({stage_t['walk'] / t_kernel:.2f}x the kernel; ES bit-identical)")
    for name, t in phase.items():
        print(f"    {name:<7} {t * ns:5.2f} ns/membership ({t / stage_t['walk']:5.1%})")
    print(f"    (totals only: sum |w| and hit count per set and signature, in set order: {stage_t['totals'] * ns:5.2f} ns/membership)")
    walk = max(phase["walk"], 1e-12)
    print(f"  upper bound on an exact shared walk (removes read, sort, gather): kernel / walk = {t_kernel / walk:4.2f}x; "
          f"kernel / (walk + totals) = {t_kernel / (walk + stage_t['totals']):4.2f}x")

    ptr, sets = gene_index(rows, bounds, n_features)
    es_p, lf_p = np.empty_like(es_k), np.empty_like(lf_k)
    args_p = (order, ranks_sig, scores, rows, bounds, ptr, sets, n_features)
    shared_walk(*args_p, True, es_p, lf_p)
    same = same_bits(es_p, es_k) and same_bits(lf_p, lf_k)
    t_proto, cpu_proto = _best(lambda: shared_walk(*args_p, True, es_p, lf_p), args.repeat)
    t_pre, _ = _best(lambda: shared_walk(*args_p, False, es_p, lf_p), args.repeat)
    print(
        f"  prototype shared walk: {t_proto * 1e3:8.1f} ms wall ({cpu_proto * 1e3:.1f} ms CPU) = {t_proto * ns:5.2f} ns/membership "
        f"(totals pass {t_pre * ns:5.2f} + rank-order walk {(t_proto - t_pre) * ns:5.2f}; "
        f"{n_features / len(rows):.2f} rank positions walked per membership); ES bit-identical: {same}"
    )
    print(f"  -> kernel / prototype = {t_kernel / t_proto:4.2f}x per membership at {n_queries} queries "
          f"({'prototype faster' if t_proto < t_kernel else 'kernel faster'})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genes", type=int, default=978, help="genes per signature (N; 978 landmark, 10,174 BING)")
    ap.add_argument("--sigs", type=int, default=2000, help="signatures")
    ap.add_argument("--queries", default="50", help="queries per batch, comma-separated list (e.g. 20,100)")
    ap.add_argument("--set-genes", type=int, default=150, help="genes per side of a query")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.genes >= 0xFFFF or 2 * args.set_genes > args.genes:
        raise SystemExit(f"--genes must be in {2 * args.set_genes}..65534")
    print(f"numba threads available {numba.get_num_threads()} (all timings on 1 thread) [{load()}]")
    check_prototype(args.genes, args.set_genes)
    t0 = time.perf_counter()
    scores, ranks_sig, ranks, weights = make_reference(args.genes, args.sigs)
    order = rank_order(ranks_sig)
    print(f"inputs built in {time.perf_counter() - t0:.1f} s (not timed): gene-major ranks+scores {ranks.nbytes + weights.nbytes:,} B; "
          f"prototype's signature-major rank order {order.nbytes:,} B + rows {ranks_sig.nbytes + scores.nbytes:,} B")
    for q in (int(x) for x in args.queries.split(",")):
        measure(args, q, (scores, ranks_sig, ranks, weights, order))


if __name__ == "__main__":
    main()
