"""Benchmark the reference store and the query engine on synthetic BING-space stores.

For each store size (default 10,000 signatures; ``--big`` adds 100,000, ``--full`` 473,647) it
builds a synthetic Level 5 GCTX (not timed), then measures:

* store build (GCTX -> store) and tau background build (``--bg-queries`` exemplar queries);
* single WTCS queries of 10+10, 50+50 and 150+150 genes (score only, and full: NCS, FDR, tau,
  summaries), and a batch of 100 queries of 150+150 genes;
* baseline (a): a straightforward numpy implementation that sorts every signature and walks the
  whole list (the R-peer approach), timed on a subset and scaled to the store size;
* baseline (b): the memory floor, the time to read the bytes a query touches (its genes' rank and
  score rows, page cache warm), measured in the same run two ways: numpy fancy-index copy + sum
  (``floor``), and streaming the rows in place on the engine's threads (``in-place read floor``,
  stricter);
* the generic gather-per-block engine path (copy the rows, then one kernel call per set), for
  comparison with the fused in-place path WTCS/CS use.

Every figure is printed with its ratio against the baselines. Memory stays under ~4 GB (blocks);
temporary files are removed unless ``--keep``.

    .venv/bin/python benchmarks/bench_query.py            # 10k signatures (~1.3 GB of temp files)
    .venv/bin/python benchmarks/bench_query.py --big      # + 100k (~13 GB temp disk, minutes)
    # 10k, 100k and 473,647 (GCTX 19.6 GB + store 29 GB at peak; ~30 min), with the previous
    # memmap builder timed on the sizes <= 100k (the engine prefetches on stores > RAM/2):
    nice .venv/bin/python benchmarks/bench_query.py --big --full --no-sig-major --spaces bing \
        --bg-queries 200 --legacy-build 100000
    # measure queries/background on a store kept from an earlier run (--keep); the store is
    # kept, its tau backgrounds are rebuilt:
    nice .venv/bin/python benchmarks/bench_query.py --store PATH

Memory is reported as peak RSS (which counts store pages mapped from the page cache, reclaimable,
and double-counts pages mapped twice) and, for the batch, the peak anonymous memory (sampled).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_BING = 10_174
N_LM = 978


def load() -> str:
    """Load average (1/5/15 min), printed next to the figures: the 2 cores are shared."""
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def rss() -> dict[str, float]:
    """Current and peak resident memory (GB) from /proc (peak since the last :func:`reset_peak_rss`)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1e6
    return out


def reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


class AnonPeak:
    """Peak anonymous (private, non-reclaimable) memory while active, sampled every 20 ms.

    The process's peak RSS also counts store pages mapped from the page cache, which the OS
    reclaims under pressure; the anonymous part is the memory a query really holds.
    """

    def __enter__(self):
        import threading

        self.peak = rss().get("RssAnon", 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss().get("RssAnon", 0.0))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def legacy_build(dest: Path, gctx: Path, block: int = 4096) -> None:
    """The previous store builder's data path (for comparison): read 4,096-signature blocks,
    rank, and scatter the transposed block into memory-mapped gene-major files."""
    from opencmap.io import gct_info, read_gct
    from opencmap.kernels.ranks import descending_ranks_rows

    info = gct_info(gctx)  # the shape only: no metadata is read
    g, n = info.n_rows, info.n_cols
    dest.mkdir()
    ranks_mm = np.lib.format.open_memmap(dest / "ranks.npy", mode="w+", dtype=np.uint16, shape=(g, n))
    scores_mm = np.lib.format.open_memmap(dest / "scores.npy", mode="w+", dtype=np.float32, shape=(g, n))
    for start in range(0, n, block):
        stop = min(start + block, n)
        by_sig = np.ascontiguousarray(np.asarray(read_gct(gctx, cidx=list(range(start, stop))).data, dtype=np.float32).T)
        ranks = descending_ranks_rows(by_sig, dtype=np.uint16)
        ranks[np.isnan(by_sig)] = 0
        ranks_mm[:, start:stop] = ranks.T
        scores_mm[:, start:stop] = by_sig.T
    ranks_mm.flush()
    scores_mm.flush()
    del ranks_mm, scores_mm


def _timeit(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def make_gctx(path: Path, n_sigs: int, *, bg_queries: int, seed: int = 0, block: int = 4096) -> None:
    """A synthetic Level 5 GCTX in BING space (standard-normal z-scores), written in blocks."""
    from opencmap.io import GCTXWriter

    rng = np.random.default_rng(seed)
    genes = pd.DataFrame(
        {
            "pr_gene_symbol": [f"G{i}" for i in range(N_BING)],
            "pr_is_lm": (np.arange(N_BING) < N_LM).astype(int),
            "pr_is_bing": np.ones(N_BING, dtype=int),
        },
        index=pd.Index([str(100 + i) for i in range(N_BING)], name="rid"),
    )
    cells = np.array(["A375", "A549", "HA1E", "HCC515", "HEPG2", "HT29", "MCF7", "PC3", "VCAP"])
    exemplar_every = max(n_sigs // max(bg_queries, 1), 1)
    with GCTXWriter(path, genes) as writer:
        for start in range(0, n_sigs, block):
            stop = min(start + block, n_sigs)
            idx = np.arange(start, stop)
            data = rng.standard_normal((N_BING, stop - start), dtype=np.float32)
            meta = pd.DataFrame(
                {
                    "pert_id": [f"BRD-{i // 6:06d}" for i in idx],
                    "pert_type": np.where(idx % 20 == 0, "ctl_vehicle", "trt_cp"),
                    "cell_id": cells[(idx // 2) % len(cells)],
                    "is_exemplar_sig": ((idx % exemplar_every) == 0).astype(int),
                },
                index=pd.Index([f"SIG{i:07d}" for i in idx], name="cid"),
            )
            writer.append(data, meta)


def straightforward_wtcs(scores: np.ndarray, up: np.ndarray, dn: np.ndarray) -> np.ndarray:
    """The R-peer approach: sort each signature, walk the full list, per signature (no store)."""
    n = scores.shape[0]
    out = np.empty(scores.shape[1])
    for s in range(scores.shape[1]):
        v = scores[:, s].astype(np.float64)
        order = np.argsort(-v, kind="stable")
        es = []
        for members in (up, dn):
            hit = np.isin(order, members)
            w = np.abs(v[order])
            step = np.where(hit, w / w[hit].sum(), -1.0 / (n - hit.sum()))
            walk = np.cumsum(step)
            es.append(walk[np.argmax(np.abs(walk))])
        out[s] = 0.0 if np.sign(es[0]) == np.sign(es[1]) else (es[0] - es[1]) / 2
    return out


def memory_floor(store, rows: np.ndarray, repeat: int = 3) -> float:
    """Time to read a query's rank and score rows of every signature (warm page cache).

    numpy: gather the rows (a copy, in groups of rows of at most 256 MB so a batch's union over
    a store larger than RAM stays bounded) and sum them -- what the engine did before the fused kernel.
    """
    from opencmap.query.store import prefetch_columns

    rows = np.sort(rows)

    def read():
        for seg in store._segments:
            group = max(1, (256 << 20) // (4 * seg.n))
            for kind in ("ranks", "scores"):
                mm = seg.array(store.default_space, kind)
                for lo in range(0, len(rows), group):
                    if store.random_access:  # no read-around: read the group's rows ahead, as a reader would
                        prefetch_columns(mm, rows[lo : lo + group], 0, seg.n)
                    np.asarray(mm[rows[lo : lo + group]]).sum()

    return _timeit(read, repeat=repeat)


def read_floor(store, rows: np.ndarray, threads: int) -> float:
    """Stricter floor: stream the same rows in place once, split over ``threads`` threads like
    the engine (no copy, no compute)."""
    from concurrent.futures import ThreadPoolExecutor

    from bench_wtcs_kernel import stream_sum as kernel  # benchmarks/ is on sys.path when run as a script

    rows = np.sort(np.asarray(rows, dtype=np.int64))
    pool = ThreadPoolExecutor(max_workers=threads)

    def read():
        for seg in store._segments:
            r, s = seg.array(store.default_space, "ranks"), seg.array(store.default_space, "scores")
            edges = np.linspace(0, seg.n, threads + 1).astype(int)
            list(pool.map(lambda lo, hi: kernel(r, s, rows, lo, hi), edges[:-1], edges[1:]))

    read()
    t = _timeit(read, repeat=5)
    pool.shutdown()
    return t


def gather_path(engine_module):
    """Context: score WTCS with the generic gather-per-block path (the engine before the fused kernel):
    the method's gathered-sets form (:func:`opencmap.query.methods.wtcs.score_sets`) through the
    same block runner."""
    import contextlib
    import dataclasses

    from opencmap.query.methods.wtcs import score_sets

    @contextlib.contextmanager
    def ctx():
        saved = engine_module.get_method
        gathered = dataclasses.replace(saved("wtcs"), access="gathered_sets", score=score_sets, block_kernel=None)
        engine_module.get_method = lambda name: gathered if str(name).lower() == "wtcs" else saved(name)
        try:
            yield
        finally:
            engine_module.get_method = saved

    return ctx()


def have_postprocessing() -> bool:
    for name, attr in (("ncs", "ncs"), ("tau", "tau_exact"), ("fdr", "fdr_gsea"), ("summarise", "group_maxq")):
        try:
            if not hasattr(importlib.import_module(f"opencmap.kernels.{name}"), attr):
                return False
        except ImportError:
            return False
    return True


def bench_size(n_sigs: int, work: Path, args: argparse.Namespace) -> dict[str, float]:
    from opencmap.query.store import Store, build_store

    if args.store is not None:  # measure an existing (kept) store: no GCTX, no build
        store = Store(args.store)
        print(f"\n=== {store.n_signatures:,} signatures x {store.space().n_features:,} genes ===")
        size = sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file())
        print(f"  existing store {store.path} ({store.n_signatures:,} signatures, {size / 1e9:.2f} GB)")
        return measure(store, size, {}, args)
    print(f"\n=== {n_sigs:,} signatures x {N_BING:,} BING genes ===")
    gctx = work / f"l5_{n_sigs}.gctx"
    t0 = time.perf_counter()
    make_gctx(gctx, n_sigs, bg_queries=args.bg_queries)
    print(f"  synthetic GCTX written in {time.perf_counter() - t0:.1f} s (not part of the benchmark)")

    print(f"  [{load()}] {rss()}", flush=True)
    reset_peak_rss()
    t0 = time.perf_counter()
    marks = {"written": None, "next": 0.1}

    def progress(done: int, total: int) -> None:
        if done >= marks["next"] * total or done == total:
            dt = time.perf_counter() - t0
            print(f"    build {done:,}/{total:,} in {dt:7.1f} s ({done / dt:,.0f} sig/s) [{load()}]", flush=True)
            marks["next"] += 0.1
        if done == total:
            marks["written"] = time.perf_counter() - t0

    store = build_store(
        work / f"store_{n_sigs}", gctx, spaces=args.spaces, signature_major=not args.no_sig_major,
        block_size=args.block_size, progress=progress,
    )
    t_build = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file())
    mem = rss()
    print(
        f"  store build:        {t_build:8.2f} s   ({n_sigs / t_build:,.0f} sig/s, {size / 1e9:.2f} GB on disk; "
        f"data written at {marks['written']:.1f} s, then checksums/metadata; peak RSS {mem['VmHWM']:.2f} GB) [{load()}]",
        flush=True,
    )
    out: dict[str, float] = {"build": t_build, "build_sig_s": n_sigs / t_build, "store_gb": size / 1e9}
    if args.legacy_build and n_sigs <= args.legacy_build:
        t0 = time.perf_counter()
        legacy_build(work / f"legacy_{n_sigs}", gctx)
        t_legacy = time.perf_counter() - t0
        shutil.rmtree(work / f"legacy_{n_sigs}")
        print(
            f"  previous builder (memmap scatter, data files only): {t_legacy:8.2f} s ({n_sigs / t_legacy:,.0f} sig/s) "
            f"-> new build's data phase ({marks['written']:.2f} s) {t_legacy / marks['written']:.2f}x faster [{load()}]",
            flush=True,
        )
        out["legacy_build"] = t_legacy
    gctx.unlink()
    return measure(store, size, out, args)


def measure(store, size: float, out: dict[str, float], args: argparse.Namespace) -> dict[str, float]:
    from opencmap.query.background import build_background
    from opencmap.query.engine import Engine
    from opencmap.query.genesets import Query
    from opencmap.query.store import Store

    n_sigs = store.n_signatures
    print(f"  store larger than half the RAM (random access, engine prefetches): {store.random_access}", flush=True)
    full = have_postprocessing()
    if full:
        t0 = time.perf_counter()
        build_background(store)
        t_bg = time.perf_counter() - t0
        nq = int(store.manifest["backgrounds"]["sig"]["n_queries"])
        print(f"  background build:   {t_bg:8.2f} s   ({nq} exemplar queries, {t_bg / nq * 1e3:.1f} ms/query) [{load()}]", flush=True)
        out["background"] = t_bg
        store = Store(store.path)
    else:
        print("  background / NCS / tau / FDR / summaries skipped: scoring kernels not installed yet")

    reset_peak_rss()
    rng = np.random.default_rng(1)
    engine = Engine(store)
    genes = store.space().gene_ids
    score_only = {"ncs": False, "fdr": False, "tau": False, "summaries": False}

    def make_query(k: int, name: str = "q") -> Query:
        pick = rng.choice(len(genes), 2 * k, replace=False)
        return Query(name, up=tuple(genes[pick[:k]]), down=tuple(genes[pick[k:]]))

    engine.run(make_query(10), **score_only)  # JIT warm-up
    engine.run(make_query(150), max_genes=150, **score_only)
    engine_module = importlib.import_module("opencmap.query.engine")
    floors = {}
    for k in (10, 50, 150):
        q = make_query(k)
        rows = store.space().positions(q.up + q.down)
        floor = memory_floor(store, rows)
        floor_read = read_floor(store, rows, __import__('numba').get_num_threads())
        floors[k] = floor
        t_score = _timeit(lambda: engine.run(q, max_genes=150, **score_only), repeat=5)
        with gather_path(engine_module):
            t_gather = _timeit(lambda: engine.run(q, max_genes=150, **score_only))
        line = (
            f"  {k:>3}+{k:<3} score only: {t_score * 1e3:8.1f} ms   floor {floor * 1e3:7.1f} ms ({t_score / floor:.2f}x)"
            f"   in-place read floor {floor_read * 1e3:7.1f} ms ({t_score / floor_read:.2f}x)"
            f"   gather path {t_gather * 1e3:8.1f} ms ({t_gather / t_score:.1f}x slower)"
        )
        out[f"score_{k}"] = t_score
        out[f"floor_{k}"] = floor
        out[f"readfloor_{k}"] = floor_read
        if full:
            t_full = _timeit(lambda: engine.run(q, max_genes=150), repeat=2)
            line += f"   full {t_full * 1e3:8.1f} ms ({t_full / floor:.2f}x floor)"
            out[f"full_{k}"] = t_full
        print(line + f" [{load()}]", flush=True)

    # baseline (a): straightforward implementation on a subset, scaled
    q = make_query(150)
    sub = min(args.baseline_subset, n_sigs)
    scores = store.signature_scores(np.arange(sub)).T
    up = store.space().positions(q.up)
    dn = store.space().positions(q.down)
    t_sub = _timeit(lambda: straightforward_wtcs(scores, up, dn), repeat=1)
    t_naive = t_sub * n_sigs / sub
    res = engine.run(q, **score_only).level("sig").metrics["wtcs"][:sub, 0]
    agree = np.max(np.abs(res - straightforward_wtcs(scores, up, dn)))
    print(
        f"  straightforward numpy (sort every signature), scaled from {sub} sigs: {t_naive:8.2f} s  "
        f"-> engine score-only is {t_naive / out['score_150']:,.0f}x faster (max |diff| {agree:.1e}) [{load()}]",
        flush=True,
    )
    out["naive_150"] = t_naive

    queries = [make_query(150, f"q{i}") for i in range(args.batch)]
    union_rows = np.unique(np.concatenate([store.space().positions(x.up + x.down) for x in queries]))
    floor_batch = memory_floor(store, union_rows, repeat=1 if len(union_rows) * n_sigs * 6 > 4e9 else 3)
    with AnonPeak() as anon:
        t_batch = _timeit(lambda: engine.run(queries, **score_only), repeat=1)
        if full:
            t_bfull = _timeit(lambda: engine.run(queries), repeat=1)
    line = (
        f"  batch of {args.batch} x 150+150, score only: {t_batch:6.2f} s ({t_batch / args.batch * 1e3:.1f} ms/query; "
        f"{t_batch / (args.batch * out['score_150']):.2f}x of {args.batch} single queries; floor of the union {floor_batch:.2f} s)"
    )
    if full:
        line += f"; full {t_bfull:6.2f} s"
        out["batch_full"] = t_bfull
    print(line + f" [{load()}]", flush=True)
    out["batch"] = t_batch
    mem = rss()
    print(
        f"  query-phase memory: peak RSS {mem['VmHWM']:.2f} GB (now {mem['VmRSS']:.2f} GB: {mem['RssAnon']:.2f} anon + "
        f"{mem['RssFile']:.2f} mapped store pages) vs store {size / 1e9:.2f} GB ({mem['VmHWM'] / (size / 1e9):.1%}); "
        f"peak anonymous memory during the batch {anon.peak:.2f} GB ({anon.peak / (size / 1e9):.1%} of the store)",
        flush=True,
    )
    out["batch_anon_gb"] = anon.peak
    out["query_peak_rss_gb"] = mem["VmHWM"]
    if not args.keep and args.store is None:  # never delete a store the user passed in
        shutil.rmtree(store.path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000], help="store sizes (signatures)")
    parser.add_argument("--big", action="store_true", help="also 100,000 signatures (~13 GB temp disk)")
    parser.add_argument("--full", action="store_true", help="also 473,647 signatures (GSE92742 size; ~60 GB)")
    parser.add_argument("--bg-queries", type=int, default=500, help="exemplar queries for the background")
    parser.add_argument("--batch", type=int, default=100, help="queries in the batch benchmark")
    parser.add_argument("--baseline-subset", type=int, default=200, help="signatures for the naive baseline")
    parser.add_argument("--no-sig-major", action="store_true", help="skip the signature-major copy")
    parser.add_argument("--workdir", type=Path, default=None, help="where temp stores go (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--threads", type=int, default=None, help="numba threads (default: numba's own)")
    parser.add_argument("--spaces", nargs="+", default=["bing", "lm"], help="feature spaces to build (bing only saves ~9%% disk)")
    parser.add_argument("--block-size", type=int, default=None, help="store build block (default: build_store's)")
    parser.add_argument("--store", type=Path, default=None, help="measure this existing store (no build; one size; never deleted, but its tau backgrounds are rebuilt)")
    parser.add_argument("--legacy-build", type=int, default=0, metavar="N",
                        help="also time the previous memmap builder on sizes <= N (same run, for the ratio)")
    args = parser.parse_args()
    if args.threads:
        import numba

        numba.set_num_threads(args.threads)
    print(f"numba threads: {__import__('numba').get_num_threads()}  [{load()}]")
    sizes = list(args.sizes) + ([100_000] if args.big else []) + ([473_647] if args.full else [])
    if args.store is not None:
        sizes = [0]
    work = Path(tempfile.mkdtemp(prefix="opencmap-bench-", dir=args.workdir))
    results = {}
    try:
        for n in sizes:
            results[n] = bench_size(n, work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if len(results) > 1:
        a, b = sorted(results)[0], sorted(results)[-1]
        print(f"\nscaling over {', '.join(f'{n:,}' for n in sorted(results))} signatures (last/first = {b / a:.1f}x) [{load()}]:")
        for key in results[a]:
            if key in results[b]:
                print(f"  {key:<18} " + "  ".join(f"{results[n][key]:10.4g}" for n in sorted(results)) + f"   ({results[b][key] / results[a][key]:6.1f}x)")


if __name__ == "__main__":
    main()
