"""Per-query cost of batch queries against the same queries run singly (issue #16, part 1).

Builds (once, kept in ``--work`` for reruns; not timed) a synthetic store of ``--sigs``
signatures x ``--genes`` genes (standard-normal z-scores; the first 978 genes are landmarks, the
space tau background queries are picked from) with tau backgrounds of 200 exemplar queries
(:func:`bench_engine.make_store`), then, ``--rounds`` times, alternating the order of the
measurements in each round (the cores are shared):

* for each batch size in ``--sizes``: one :meth:`Engine.run` of that many queries of
  ``--set-genes`` up + down random genes (score only: WTCS, no NCS/FDR/tau/summaries), and the
  first ``min(size, --max-singles)`` of the same queries run singly; per-query wall and CPU time
  of each, and the ratio single / batch (> 1: the batch is cheaper per query);
* the tau background build (:func:`build_background`, 200 exemplar queries of 50 + 50 landmark
  genes, NCS and summaries included, written to the store) per exemplar query, against a single
  query of 50 + 50 landmark genes, score only and full (NCS, tau, summaries; FDR off).

Figures are the best round of each. Also printed: the result memory per (signature, query) of
a score-only and a full batch (the result's arrays), and the peak anonymous memory of the process
during the largest batch.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_batch.py --work /tmp/bench-batch --sigs 20000
    PYTHONPATH=src .venv/bin/python benchmarks/bench_batch.py --work /tmp/bench-batch --sigs 473647 --rounds 2

Disk: about ``12 * genes * sigs`` bytes for the store (two feature spaces, gene-major ranks and
scores) plus its signature-major copy; memory: the GCT while the store is built
(``4 * genes * sigs`` bytes) and ``~16 * 4 * size * sigs`` bytes of results for the largest batch.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from bench_engine import load, make_store  # benchmarks/ is on sys.path when run as a script
from bench_query import AnonPeak

N_LM = 978
SCORE_ONLY = {"ncs": False, "fdr": False, "tau": False, "summaries": False}


def timed(fn) -> tuple[float, float]:
    """Wall and CPU (all threads of the process) seconds of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def make_queries(genes: np.ndarray, n: int, k: int, *, pool: int | None = None, seed: int = 1) -> list:
    """``n`` queries of ``k`` up + ``k`` down distinct genes drawn from the first ``pool`` genes."""
    from opencmap.query import Query

    rng = np.random.default_rng(seed)
    pool = len(genes) if pool is None else pool
    out = []
    for i in range(n):
        pick = rng.choice(pool, 2 * k, replace=False)
        out.append(Query(f"q{i}", up=tuple(genes[pick[:k]]), down=tuple(genes[pick[k:]])))
    return out


def result_bytes(result) -> dict[str, float]:
    """Bytes of the result's arrays per (signature, query): the signature level per metric, and
    all levels together (summary levels have fewer rows than signatures)."""
    n_sig = len(result.levels["sig"].index)
    n_q = len(result.queries)
    per = {f"sig/{name}": np.asarray(v).nbytes / (n_sig * n_q) for name, v in result.levels["sig"].metrics.items()}
    per["all levels"] = sum(np.asarray(v).nbytes for lv in result.levels.values() for v in lv.metrics.values()) / (n_sig * n_q)
    return per


def warm_engine(store_path: Path, args: argparse.Namespace):
    """An engine on the store's current generation (a background build makes a new one), its
    kernels compiled and reference index built by untimed queries."""
    from opencmap.query import Engine

    engine = Engine(str(store_path))
    engine.run(args.bg_queries[:2], **SCORE_ONLY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.run(args.bg_queries[0], fdr=False)
    return engine


def one_round(store_path: Path, queries: list, sizes: list[int], args: argparse.Namespace, r: int) -> dict[str, tuple[float, float]]:
    """Per-query (wall, CPU) of every measurement of one round; the order alternates by round."""
    from opencmap.query.background import build_background

    out: dict[str, tuple[float, float]] = {}
    engine = warm_engine(store_path, args)
    for n in sizes if r % 2 == 0 else sizes[::-1]:
        batch = queries[:n]
        singles = batch[: min(n, args.max_singles)]

        def run_batch(batch=batch, n=n):
            w, c = timed(lambda: engine.run(batch, **SCORE_ONLY))
            out[f"batch {n}"] = (w / n, c / n)

        def run_singles(singles=singles, n=n):
            w, c = timed(lambda: [engine.run(q, **SCORE_ONLY) for q in singles])
            out[f"single {n}"] = (w / len(singles), c / len(singles))

        for step in (run_batch, run_singles) if r % 2 == 0 else (run_singles, run_batch):
            step()
        print(f"  [round {r + 1}] {n:5d} queries: batch {out[f'batch {n}'][0] * 1e3:8.2f} ms/query wall, "
              f"single {out[f'single {n}'][0] * 1e3:8.2f} ms/query wall [{load()}]", flush=True)

    def background():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, c = timed(lambda: build_background(str(store_path)))
        n_bg = args.n_background
        out["background"] = (w / n_bg, c / n_bg)

    def bg_singles():
        engine = warm_engine(store_path, args)
        w, c = timed(lambda: [engine.run(q, **SCORE_ONLY) for q in args.bg_queries])
        out["single 50+50 score"] = (w / len(args.bg_queries), c / len(args.bg_queries))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, c = timed(lambda: [engine.run(q, fdr=False) for q in args.bg_queries])
        out["single 50+50 full"] = (w / len(args.bg_queries), c / len(args.bg_queries))

    for step in (background, bg_singles) if r % 2 == 0 else (bg_singles, background):
        step()
    print(f"  [round {r + 1}] background {out['background'][0] * 1e3:8.2f} ms/exemplar query, single 50+50 "
          f"{out['single 50+50 score'][0] * 1e3:8.2f} ms score only, {out['single 50+50 full'][0] * 1e3:8.2f} ms full [{load()}]", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the synthetic store (kept for reruns)")
    parser.add_argument("--sigs", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=10_174, help="genes (the first 978 are landmarks)")
    parser.add_argument("--sizes", default="10,100,1000", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set-genes", type=int, default=150, help="genes per side of a batch query")
    parser.add_argument("--max-singles", type=int, default=100, help="at most this many of a batch's queries are also run singly")
    parser.add_argument("--bg-singles", type=int, default=10, help="single 50+50 queries compared with the background build")
    args = parser.parse_args()
    from opencmap.query.store import Store

    sizes = [int(x) for x in args.sizes.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"synthetic store {args.sigs:,} signatures x {args.genes:,} genes [{load()}]", flush=True)
    path = make_store(args.work, args.sigs, args.genes, n_landmark=min(N_LM, args.genes))
    store = Store(path)
    args.n_background = int(store.manifest["backgrounds"]["sig"]["n_queries"])
    genes = np.asarray(store.space().gene_ids)
    queries = make_queries(genes, max(sizes), args.set_genes)
    args.bg_queries = make_queries(genes, args.bg_singles, 50, pool=min(N_LM, args.genes), seed=2)

    # untimed: compile the kernels and map the store pages the single queries read (the rounds
    # alternate their order, so what is left cold costs each side once; the best round is kept)
    warm_engine(path, args).run(queries[: min(max(sizes), args.max_singles)], **SCORE_ONLY)
    rounds = [one_round(path, queries, sizes, args, r) for r in range(args.rounds)]
    best = {key: (min(x[key][0] for x in rounds), min(x[key][1] for x in rounds)) for key in rounds[0]}
    print(f"\n{args.sigs:,} signatures x {args.genes:,} genes, {args.set_genes}+{args.set_genes}-gene queries, score only, "
          f"best of {args.rounds} rounds, per query [{load()}]:")
    print("   batch  batch wall   (CPU)  single wall   (CPU)   single/batch wall  (CPU)   singles run")
    for n in sizes:
        (bw, bc), (sw, sc) = best[f"batch {n}"], best[f"single {n}"]
        print(f"  {n:6d} {bw * 1e3:8.2f} ms {bc * 1e3:7.2f} {sw * 1e3:9.2f} ms {sc * 1e3:7.2f}   {sw / bw:14.2f}x {sc / bc:6.2f}x   "
              f"{min(n, args.max_singles)}")
    (gw, gc), (sw, sc), (fw, fc) = best["background"], best["single 50+50 score"], best["single 50+50 full"]
    print(f"  tau background build ({args.n_background} exemplar queries of 50+50 landmark genes, NCS + summaries + write): "
          f"{gw * 1e3:.2f} ms wall ({gc * 1e3:.2f} CPU) per exemplar query")
    print(f"    vs a single 50+50 query, score only {sw * 1e3:.2f} ms wall ({sc * 1e3:.2f} CPU): {gw / sw:.2f}x wall, {gc / sc:.2f}x CPU")
    print(f"    vs a single 50+50 query, full (NCS, tau, summaries) {fw * 1e3:.2f} ms wall ({fc * 1e3:.2f} CPU): {gw / fw:.2f}x wall, {gc / fc:.2f}x CPU")

    n_mem = min(max(sizes), 100)
    engine = warm_engine(path, args)
    with AnonPeak() as anon:
        before = anon.peak
        res = engine.run(queries[:max(sizes)], **SCORE_ONLY)
    print(f"  peak anonymous memory during a {max(sizes)}-query score-only batch: {anon.peak:.2f} GB "
          f"({before:.2f} GB before; {(anon.peak - before) * 1e9 / (args.sigs * max(sizes)):.1f} B per (signature, query))")
    per = result_bytes(res)
    del res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_full = result_bytes(engine.run(queries[:n_mem], fdr=False))
    print("  result memory per (signature, query), score only: " + ", ".join(f"{k} {v:.1f} B" for k, v in per.items()))
    print(f"  result memory per (signature, query), full without FDR ({n_mem} queries): "
          + ", ".join(f"{k} {v:.1f} B" for k, v in per_full.items()), flush=True)


if __name__ == "__main__":
    main()
