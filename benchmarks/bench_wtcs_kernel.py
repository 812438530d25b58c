"""Benchmark the ES kernels of :mod:`opencmap.kernels.wtcs`.

1. :func:`enrichment_scores` on gathered (genes x signatures) inputs: the set genes' rank rows
   (int32, a random permutation position per signature) and score rows (float32).
2. :func:`set_enrichment_scores`, the fused form the engine uses: an up and a down set scored in
   one call, read in place from a memory-mapped gene-major ``(N, S)`` uint16 + float32 pair laid
   out like a store segment (a sparse temporary file: only the set rows are written, so
   GSE92742's 473,647 signatures need ~``12 * genes * S`` bytes of disk, not 29 GB).

Each figure is printed with its ratio against baselines measured in the same run:

* ``numpy``: the vectorised CMap approach (``fastESCore``: sort the set's ranks per signature
  with ``np.argsort``, cumulative sums) -- timed on at most 100,000 signatures and scaled;
* ``floor``: one pass reading the same bytes (gathered: ``ranks.sum() + weights.sum()``;
  fused: the rows streamed in place, split over the same threads as the kernel).

    .venv/bin/python benchmarks/bench_wtcs_kernel.py                   # 50,000 signatures
    .venv/bin/python benchmarks/bench_wtcs_kernel.py --signatures 473647 --genes 150

Memory: about ``8 * genes * signatures`` bytes of inputs (570 MB for 150 x 473,647) plus the
numpy baseline's temporaries on its capped subset (< 1 GB) and the fused inputs' page cache.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np

from opencmap.backends import default_backend
from opencmap.kernels.wtcs import enrichment_scores, set_enrichment_scores

# the threads and pool the engine gives the kernel (the local backend's)
PAR = {"threads": default_backend().pool_threads(), "executor": default_backend().executor()}

N_BING = 10_174


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and the CPU time of that run (all threads)."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best[0]:
            best = (wall, cpu)
    return best


def make_inputs(n_genes: int, n_sigs: int, n_features: int, seed: int = 0):
    """Distinct random ranks per signature and N(0,1) scores, generated quickly.

    The set is ``n_genes`` fixed genes ``g`` (as for a real query); in signature ``s`` gene ``g``
    sits at ``(a_s * g + b_s) mod N + 1`` with ``a_s`` coprime to ``N`` -- a random affine
    permutation, so ranks are distinct within each signature.
    """
    rng = np.random.default_rng(seed)
    genes = rng.choice(n_features, n_genes, replace=False).astype(np.int64)
    candidates = np.arange(1, n_features, dtype=np.int64)
    candidates = candidates[np.gcd(candidates, n_features) == 1]
    a = rng.choice(candidates, n_sigs)
    b = rng.integers(0, n_features, n_sigs)
    ranks = np.empty((n_genes, n_sigs), dtype=np.int32)
    for i, g in enumerate(genes):
        ranks[i] = (a * g + b) % n_features + 1
    weights = rng.standard_normal((n_genes, n_sigs), dtype=np.float32)
    return ranks, weights


def numpy_es(ranks: np.ndarray, weights: np.ndarray, n_features: int) -> np.ndarray:
    """Vectorised fastESCore (no missing genes): sort per column, cumulative sums, first max."""
    g = ranks.shape[0]
    order = np.argsort(ranks, axis=0)
    r = np.take_along_axis(ranks, order, axis=0).astype(np.float64)
    w = np.abs(np.take_along_axis(weights, order, axis=0).astype(np.float64))
    hit = w / w.sum(axis=0)
    miss = 1.0 / (n_features - g)
    gaps = np.diff(np.vstack([np.zeros((1, r.shape[1])), r]), axis=0) - 1.0
    es = np.cumsum(gaps * -miss + hit, axis=0)
    pre = es - hit
    es = np.where(np.abs(es) < np.abs(pre), pre, es)
    idx = np.argmax(np.abs(es), axis=0)
    return es[idx, np.arange(es.shape[1])]


def gene_major_memmaps(folder: Path, up: tuple, down: tuple, n_features: int):
    """Sparse (N, S) uint16 ranks + float32 scores .npy files with only the set rows written."""
    from numpy.lib.format import open_memmap

    (r_up, w_up), (r_dn, w_dn) = up, down
    n_sigs = r_up.shape[1]
    rng = np.random.default_rng(1)
    rows = rng.choice(n_features, len(r_up) + len(r_dn), replace=False)
    ranks = open_memmap(folder / "ranks.npy", mode="w+", dtype=np.uint16, shape=(n_features, n_sigs))
    scores = open_memmap(folder / "scores.npy", mode="w+", dtype=np.float32, shape=(n_features, n_sigs))
    for row, r, w in zip(rows, np.vstack([r_up, r_dn]), np.vstack([w_up, w_dn])):
        ranks[row] = r
        scores[row] = w
    ranks.flush()
    scores.flush()
    del ranks, scores
    return np.load(folder / "ranks.npy", mmap_mode="r"), np.load(folder / "scores.npy", mmap_mode="r"), rows


@numba.njit(nogil=True, cache=True)
def stream_sum(ranks, scores, rows, c0, c1):
    """Sum rows ``rows``, columns ``c0:c1`` of two gene-major arrays: streams the bytes once."""
    total = 0.0
    for k in range(rows.shape[0]):
        r = rows[k]
        a = 0
        b = np.float32(0)
        for j in range(c0, c1):
            a += ranks[r, j]
            b += scores[r, j]
        total += a + b
    return total


def bench_fused(args, ranks, weights, n: int, t_np: float) -> None:
    """Up + down sets (two independent draws) scored by the fused kernel from memory maps."""
    r_dn, w_dn = make_inputs(args.genes, args.signatures, n, seed=7)
    folder = Path(tempfile.mkdtemp(prefix="opencmap-wtcs-", dir=args.workdir))
    try:
        r_mm, s_mm, rows = gene_major_memmaps(folder, (ranks, weights), (r_dn, w_dn), n)
        bounds = np.array([0, args.genes, 2 * args.genes])
        threads = numba.get_num_threads()
        pool = ThreadPoolExecutor(threads)
        edges = np.linspace(0, args.signatures, threads + 1).astype(int)
        srt = np.sort(rows)

        def floor():
            list(pool.map(lambda lo, hi: stream_sum(r_mm, s_mm, srt, lo, hi), edges[:-1], edges[1:]))

        floor()
        set_enrichment_scores(r_mm, s_mm, rows, bounds, n, **PAR)  # compile / fault the pages in
        t_floor, _ = _best(floor, args.repeat)
        es, _ = set_enrichment_scores(r_mm, s_mm, rows, bounds, n, **PAR)
        check = enrichment_scores(r_dn[:, :2000], w_dn[:, :2000], n, **PAR)[0]
        assert np.array_equal(es[1, :2000], check)
        print(f"fused up+down set_enrichment_scores from memory maps: 2 x {args.genes} genes, S={args.signatures:,}")
        print(f"  baseline floor (stream the {2 * args.genes} rows in place, {threads} threads): {t_floor:8.3f} s")
        print(f"  baseline numpy (2 sets):                {2 * t_np:8.3f} s")
        # baseline: the same kernel ordering each signature's hits with a rank bitmap (the path
        # it keeps for sets above wtcs.NETWORK_MAX genes; the engine's kernel until session 3)
        t_bitmap, _ = _best(lambda: set_enrichment_scores(r_mm, s_mm, rows, bounds, n, network_max=0, **PAR), args.repeat)
        assert np.array_equal(set_enrichment_scores(r_mm, s_mm, rows, bounds, n, columns=(0, 4096), network_max=0, **PAR)[0], es[:, :4096])
        print(f"  baseline bitmap sort per signature ({threads} threads): {t_bitmap:8.3f} s")
        for label, th in ((f"{threads} threads", None), ("1 thread", 1)):
            kw = PAR if th is None else {"threads": th}
            wall, cpu = _best(lambda kw=kw: set_enrichment_scores(r_mm, s_mm, rows, bounds, n, **kw), args.repeat)
            print(
                f"  {label:<16} {wall:8.3f} s wall ({cpu:.3f} s CPU)  "
                f"x{2 * t_np / wall:6.1f} faster than numpy, x{wall / t_floor:5.1f} the read floor"
                + (f", x{t_bitmap / wall:4.2f} faster than the bitmap sort" if th is None else "")
            )
        pool.shutdown()
        del r_mm, s_mm
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--signatures", type=int, default=50_000)
    ap.add_argument("--genes", type=int, default=150)
    ap.add_argument("--features", type=int, default=N_BING)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="where the fused benchmark's temp files go")
    args = ap.parse_args()

    ranks, weights = make_inputs(args.genes, args.signatures, args.features)
    n = args.features
    enrichment_scores(ranks[:, :64], weights[:, :64], n, **PAR)  # compile / load the numba cache
    enrichment_scores(ranks[:, :64], None, n, weighted=False, **PAR)

    sub = min(args.signatures, 100_000)
    r_sub, w_sub = np.ascontiguousarray(ranks[:, :sub]), np.ascontiguousarray(weights[:, :sub])
    t_np, _ = _best(lambda: numpy_es(r_sub, w_sub, n), 1)
    t_np *= args.signatures / sub
    t_floor, _ = _best(lambda: (ranks.sum(dtype=np.int64), weights.sum(dtype=np.float64)), args.repeat)
    check = enrichment_scores(r_sub, w_sub, n, **PAR)[0]
    assert np.allclose(check, numpy_es(r_sub, w_sub, n), atol=1e-9)

    print(
        f"enrichment_scores: G={args.genes}, S={args.signatures:,}, N={n:,}, "
        f"{numba.get_num_threads()} numba threads"
    )
    print(f"  baseline numpy (vectorised fastESCore): {t_np:8.3f} s (scaled from {sub:,})")
    print(f"  baseline floor (read the inputs once):  {t_floor:8.3f} s")
    for label, kwargs in (("weighted (wtcs)", {}), ("unweighted (cs)", {"weighted": False})):
        w = None if kwargs else weights
        wall, cpu = _best(lambda w=w, kw=kwargs: enrichment_scores(ranks, w, n, **kw, **PAR), args.repeat)
        print(
            f"  {label:<16} {wall:8.3f} s wall ({cpu:.3f} s CPU)  "
            f"x{t_np / wall:6.1f} faster than numpy, x{wall / t_floor:5.1f} the read floor"
        )

    bench_fused(args, ranks, weights, n, t_np)


if __name__ == "__main__":
    main()
