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

Large stores (``--stream``, automatic when the matrix would take more than a quarter of the RAM):
the store is built in bounded memory (:func:`make_streamed_store`): a synthetic GCTX written block by
block (same gene table and signature metadata as :func:`bench_engine.make_store`), the store built
from the file with the ``bing`` and ``lm`` spaces only (no signature-major copy; ``lm`` is the
first 978 genes, ~10% more disk, so the tau background's exemplar queries are landmark genes as in
the small stores) and the GCTX deleted as soon as the store is built; tau backgrounds built
untimed. Disk at the peak: GCTX ``4 * genes * sigs`` + store ``6 * (genes + 978) * sigs`` bytes.
``--store PATH`` measures an existing store instead (kept; its tau backgrounds are rebuilt by
the background measurement, as in any run)::

    nice env PYTHONPATH=src .venv/bin/python benchmarks/bench_batch.py --work /work/bench-data/b473 \
        --sigs 473647 --sizes 10,100,1000 --rounds 1 --max-singles 100
    nice env PYTHONPATH=src .venv/bin/python benchmarks/bench_batch.py \
        --store /work/bench-data/b473/store_473647x10174_lm978_stream --sizes 10,100,1000 --rounds 1

Each measurement also prints the bytes the process read from the disk (``/proc/self/io``
read_bytes: page faults and read-ahead it caused; pages already in the page cache cost nothing)
and its threads' time by state, sampled every 20 ms from ``/proc/self/task/*/stat``: ``R``
running or runnable (computing), ``D`` uninterruptible sleep (waiting on the disk: a page fault
on a store page not in the page cache), summed over threads (thread-seconds).

On a store larger than the page cache the first measurement of a round to read a gene row pays
its tile-hash check (per open store, ~0.3-0.6 s CPU per 150+150 query's rows at 473,647
signatures) and most of the disk reads; the later one finds the rows checked and partly cached.
Use ``--rounds 2`` (the order alternates, the best round of each is kept) for a fair ratio.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from bench_engine import load, make_store, synthetic_genes, synthetic_signatures  # benchmarks/ is on sys.path when run as a script
from bench_query import AnonPeak

N_LM = 978
SCORE_ONLY = {"ncs": False, "fdr": False, "tau": False, "summaries": False}
SAMPLE_S = 0.02

#: I/O figures of the last :func:`timed` call: disk bytes read, thread-seconds running / in D state
LAST_IO: dict[str, float] = {}
IO: dict[str, dict[str, float]] = {}


def read_bytes() -> int:
    """Bytes this process (all its threads) caused to be read from the disk so far."""
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


class ThreadStates:
    """Thread-seconds spent by the process's threads in each scheduler state while active,
    sampled every :data:`SAMPLE_S` s from ``/proc/self/task/*/stat`` (``R`` running/runnable,
    ``D`` uninterruptible: waiting on the disk, ``S`` sleeping); the sampler thread excluded."""

    def __enter__(self):
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        me = str(threading.get_native_id())
        while not self._stop.wait(SAMPLE_S):
            for tid in os.listdir("/proc/self/task"):
                if tid == me:
                    continue
                try:
                    with open(f"/proc/self/task/{tid}/stat") as fh:
                        state = fh.read().rpartition(")")[2].split()[0]
                except OSError:
                    continue
                self.counts[state] = self.counts.get(state, 0) + 1

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def seconds(self, state: str) -> float:
        return self.counts.get(state, 0) * SAMPLE_S


def timed(fn) -> tuple[float, float]:
    """Wall and CPU (all threads of the process) seconds of one call; its disk reads and thread
    states in :data:`LAST_IO`."""
    b0 = read_bytes()
    with ThreadStates() as states:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    LAST_IO.clear()
    LAST_IO.update({"read_gb": (read_bytes() - b0) / 1e9, "R": states.seconds("R"), "D": states.seconds("D"), "wall": wall, "cpu": cpu})
    return wall, cpu


def io_text(io: dict[str, float], n: int) -> str:
    return (f"read {io['read_gb']:.2f} GB ({io['read_gb'] / n * 1e3:.0f} MB/query, {io['read_gb'] / max(io['wall'], 1e-9) * 1e3:.0f} MB/s), "
            f"threads R {io['R']:.1f} s D {io['D']:.1f} s over {io['wall']:.1f} s wall, CPU {io['cpu']:.1f} s")


def make_streamed_store(work: Path, n: int, n_genes: int, n_landmark: int, block: int = 4096) -> Path:
    """:func:`bench_engine.make_store`'s store (same gene table, signature metadata and exemplars;
    other random z-scores) built in bounded memory: a synthetic GCTX written ``block`` signatures
    at a time, the store built from the file (``bing`` and ``lm`` spaces, no signature-major
    copy), the GCTX deleted, then the tau backgrounds built (200 exemplar queries). Reused when
    already built."""
    from opencmap.io import GCTXWriter
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    dest = work / f"store_{n}x{n_genes}_lm{n_landmark}_stream"
    if (dest / "manifest.json").exists():
        return dest
    gctx = work / f"l5_{n}x{n_genes}.gctx"
    genes = synthetic_genes(n_genes, n_landmark)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with GCTXWriter(gctx, genes) as writer:
        for start in range(0, n, block):
            idx = np.arange(start, min(start + block, n))
            writer.append(rng.standard_normal((n_genes, len(idx)), dtype=np.float32), synthetic_signatures(idx, n))
    print(f"  synthetic GCTX {gctx} ({gctx.stat().st_size / 1e9:.1f} GB) written in {time.perf_counter() - t0:.0f} s [{load()}]", flush=True)
    marks = {"next": 0.1}
    t0 = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done >= marks["next"] * total or done == total:
            print(f"    build {done:,}/{total:,} in {time.perf_counter() - t0:7.1f} s [{load()}]", flush=True)
            marks["next"] += 0.1

    spaces = ["bing", "lm"] if n_landmark < n_genes else ["bing"]
    try:
        store = build_store(dest, gctx, spaces=spaces, signature_major=False, progress=progress)
    finally:
        gctx.unlink(missing_ok=True)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"  store {dest} ({size / 1e9:.1f} GB, spaces {spaces}, no signature-major copy) built in "
          f"{time.perf_counter() - t0:.0f} s; GCTX deleted [{load()}]", flush=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_background(store)
    print(f"  tau backgrounds built in {time.perf_counter() - t0:.0f} s (not timed) [{load()}]", flush=True)
    return dest


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
            if n == max(sizes) and r == args.rounds - 1:  # the largest batch of the last round: its memory too
                held = {}

                def run():
                    held["result"] = engine.run(batch, **SCORE_ONLY)

                with AnonPeak() as anon:
                    before = anon.peak
                    w, c = timed(run)
                args.anon = (before, anon.peak)
                args.per_score = result_bytes(held.pop("result"))
            else:
                w, c = timed(lambda: engine.run(batch, **SCORE_ONLY))
            out[f"batch {n}"] = (w / n, c / n)
            IO[f"batch {n}"] = dict(LAST_IO)

        def run_singles(singles=singles, n=n):
            w, c = timed(lambda: [engine.run(q, **SCORE_ONLY) for q in singles])
            out[f"single {n}"] = (w / len(singles), c / len(singles))
            IO[f"single {n}"] = dict(LAST_IO)

        for step in (run_batch, run_singles) if r % 2 == 0 else (run_singles, run_batch):
            step()
        print(f"  [round {r + 1}] {n:5d} queries: batch {out[f'batch {n}'][0] * 1e3:8.2f} ms/query wall, "
              f"single {out[f'single {n}'][0] * 1e3:8.2f} ms/query wall [{load()}]", flush=True)
        print(f"      batch of {n}: {io_text(IO[f'batch {n}'], n)}", flush=True)
        print(f"      {min(n, args.max_singles)} singles: {io_text(IO[f'single {n}'], min(n, args.max_singles))}", flush=True)

    def background():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, c = timed(lambda: build_background(str(store_path)))
        n_bg = args.n_background
        out["background"] = (w / n_bg, c / n_bg)
        IO["background"] = dict(LAST_IO)

    def bg_singles():
        engine = warm_engine(store_path, args)
        w, c = timed(lambda: [engine.run(q, **SCORE_ONLY) for q in args.bg_queries])
        out["single 50+50 score"] = (w / len(args.bg_queries), c / len(args.bg_queries))
        IO["single 50+50 score"] = dict(LAST_IO)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, c = timed(lambda: [engine.run(q, fdr=False) for q in args.bg_queries])
        out["single 50+50 full"] = (w / len(args.bg_queries), c / len(args.bg_queries))

    for step in (background, bg_singles) if r % 2 == 0 else (bg_singles, background):
        step()
    print(f"  [round {r + 1}] background {out['background'][0] * 1e3:8.2f} ms/exemplar query, single 50+50 "
          f"{out['single 50+50 score'][0] * 1e3:8.2f} ms score only, {out['single 50+50 full'][0] * 1e3:8.2f} ms full [{load()}]", flush=True)
    print(f"      background: {io_text(IO['background'], args.n_background)}", flush=True)
    print(f"      {len(args.bg_queries)} singles 50+50 score only: {io_text(IO['single 50+50 score'], len(args.bg_queries))}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the synthetic store (kept for reruns); required without --store")
    parser.add_argument("--store", type=Path, help="measure this existing store (no build; kept, its tau backgrounds rebuilt)")
    parser.add_argument("--stream", action="store_true",
                        help="build the store in bounded memory (via a GCTX on disk; automatic when the matrix would take over 1/4 of the RAM)")
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
    if args.store is not None:
        path = args.store
        print(f"existing store {path} [{load()}]", flush=True)
    else:
        if args.work is None:
            parser.error("--work is required without --store")
        args.work.mkdir(parents=True, exist_ok=True)
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        stream = args.stream or 4 * args.sigs * args.genes > ram / 4
        print(f"synthetic store {args.sigs:,} signatures x {args.genes:,} genes{' (streamed build)' if stream else ''} [{load()}]", flush=True)
        if stream:
            path = make_streamed_store(args.work, args.sigs, args.genes, min(N_LM, args.genes))
        else:
            path = make_store(args.work, args.sigs, args.genes, n_landmark=min(N_LM, args.genes))
    store = Store(path)
    if "sig" not in store.manifest.get("backgrounds", {}):
        from opencmap.query.background import build_background

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_background(store)
        store = Store(path)
    args.sigs, args.genes = store.n_signatures, store.space().n_features
    print(f"  {args.sigs:,} signatures x {args.genes:,} genes, store larger than half the RAM (random access, "
          f"engine prefetches): {store.random_access} [{load()}]", flush=True)
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
    print(f"  disk reads and thread states (round {args.rounds}; R: computing, D: waiting on the disk, thread-seconds):")
    for key, io in IO.items():
        n = args.n_background if key == "background" else len(args.bg_queries) if key.startswith("single 50") else (
            min(int(key.split()[1]), args.max_singles) if key.startswith("single") else int(key.split()[1]))
        print(f"    {key:<20} {io_text(io, n)}")
    (gw, gc), (sw, sc), (fw, fc) = best["background"], best["single 50+50 score"], best["single 50+50 full"]
    print(f"  tau background build ({args.n_background} exemplar queries of 50+50 landmark genes, NCS + summaries + write): "
          f"{gw * 1e3:.2f} ms wall ({gc * 1e3:.2f} CPU) per exemplar query")
    print(f"    vs a single 50+50 query, score only {sw * 1e3:.2f} ms wall ({sc * 1e3:.2f} CPU): {gw / sw:.2f}x wall, {gc / sc:.2f}x CPU")
    print(f"    vs a single 50+50 query, full (NCS, tau, summaries) {fw * 1e3:.2f} ms wall ({fc * 1e3:.2f} CPU): {gw / fw:.2f}x wall, {gc / fc:.2f}x CPU")

    n_mem = min(max(sizes), 100)
    engine = warm_engine(path, args)
    before, peak = args.anon  # measured during the largest batch of the last round
    print(f"  peak anonymous memory during the {max(sizes)}-query score-only batch: {peak:.2f} GB "
          f"({before:.2f} GB before; {(peak - before) * 1e9 / (args.sigs * max(sizes)):.1f} B per (signature, query))")
    per = args.per_score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_full = result_bytes(engine.run(queries[:n_mem], fdr=False))
    print("  result memory per (signature, query), score only: " + ", ".join(f"{k} {v:.1f} B" for k, v in per.items()))
    print(f"  result memory per (signature, query), full without FDR ({n_mem} queries): "
          + ", ".join(f"{k} {v:.1f} B" for k, v in per_full.items()), flush=True)


if __name__ == "__main__":
    main()
