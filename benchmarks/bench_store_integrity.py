"""Cost of the store's read-time integrity checks on a 150+150 WTCS query.

Format-3 stores carry a hash per tile of 512 signatures of every gene row
(:mod:`opencmap.kernels.tilehash`); the fused WTCS kernel checks the tiles of the query genes' rows
as it reads them, once per open store (a shared bitmap), and other readers (τ backgrounds, the
signature table) check what they read when they first read it.

Builds a synthetic store of ``--sigs`` signatures (default 100,000) in a ``--genes``-gene space
(default 400: a query reads only its 300 genes' rows, so the size of the space does not change
what a query reads or checks), then, page cache warm, per repetition and alternating:

* ``checked``: a freshly opened store's first query (every tile the query reads is hashed: the
  worst case, paid once per opened store and tile);
* ``checked again``: the same store's next query (tiles already checked: a bitmap lookup);
* ``unchecked``: a freshly opened store with every check switched off (the query without them),
  and its next query (``unchecked again``).

and the WTCS kernel alone on the query's rows of the store's first segment (one thread, CPU
time): without checks, with every tile hashed (a fresh bitmap), with every tile already marked.

Printed: the ratios checked / unchecked of first queries (fresh stores) and of next queries, and
the checks' cost on a first query (checked first - unchecked first) as a share of an unchecked
next query (the stricter ratio: a next query has no one-off opening costs to hide the checks in).

Score only (WTCS; no FDR null, τ or summaries) by default; ``--full`` runs the full query (NCS,
FDR from a cached random-query null of ``--fdr-null-size`` queries, built by the warm-up query; τ from
a background of ``--background-queries`` signatures, built first; summaries). The engine's
default threads. CPU times (all threads) are printed too: on a shared machine they move less with
the load than wall times. ``--store DIR`` keeps the synthetic store for later runs.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_store_integrity.py --sigs 20000
    PYTHONPATH=src .venv/bin/python benchmarks/bench_store_integrity.py --sigs 100000 --full
    PYTHONPATH=src .venv/bin/python benchmarks/bench_store_integrity.py --sigs 473647

``--verify`` measures ``store info --verify`` instead (:meth:`Store.verify`: every tile of every
data file hashed, every file's whole-file checksum, one streaming pass) on the synthetic store of
:func:`bench_engine.make_store` (``--sigs`` x ``--genes``, default 978 genes: spaces lm and bing,
signature-major scores, tau backgrounds; kept in ``--work``), in GB/s of the store's files,
against reading the same files (the memory floor: ``np.sum`` over each file memory-mapped, one
thread), alternating, in two states: ``warm`` (the files in the page cache; verify's drop-behind
of the pages it checked switched off, so both read from memory) and ``cold`` (every file dropped
from the page cache before each run: both read from disk). Printed: GB/s of each and the ratio
verify / floor.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_store_integrity.py --verify --sigs 100000 --work /work/bench-data/verify
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


@contextlib.contextmanager
def _unchecked():
    """Every read-time check of the store off (tile hashes, chunk checksums, whole small files)."""
    import opencmap.io.store.backgrounds as bg
    import opencmap.io.store.reader as rd

    saved = (rd.Store.read_check, rd.StoreSegment.check, rd._checked_file, bg._check_values)
    rd.Store.read_check = lambda self, *a, **k: None  # type: ignore[method-assign]
    rd.StoreSegment.check = lambda self, *a, **k: None  # type: ignore[method-assign]
    rd._checked_file = lambda path, expected: path
    bg._check_values = lambda *a, **k: None
    try:
        yield
    finally:
        rd.Store.read_check, rd.StoreSegment.check, rd._checked_file, bg._check_values = saved  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigs", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=None, help="genes of the store (default 400; 978 with --verify)")
    parser.add_argument("--verify", action="store_true", help="measure `store info --verify` against reading the files (see above)")
    parser.add_argument("--work", type=Path, default=None, help="--verify: folder of bench_engine.make_store's store (kept for reruns)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="the full query (NCS, FDR, tau, summaries) instead of scores only")
    parser.add_argument("--fdr-null-size", type=int, default=200, help="random queries of the FDR null (--full; built once, cached)")
    parser.add_argument("--background-queries", type=int, default=300, help="signatures used as tau background queries (--full)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--store", type=Path, default=None, help="keep the synthetic store here (built if missing, reused otherwise)")
    args = parser.parse_args()
    if args.verify:
        _verify_speed(args)
        return
    args.genes = args.genes or 400

    from opencmap.query import store as S
    from opencmap.query.engine import Engine
    from opencmap.query.genesets import Query

    work = Path(tempfile.mkdtemp(prefix="bench-integrity-", dir=args.workdir))
    path = args.store or work / "store"
    try:
        if (path / "manifest.json").exists() and S.Store(path).n_signatures == args.sigs:
            print(f"store: {args.sigs} signatures reused from {path}")
        else:
            _build(S, path, args.sigs, args.genes)
        st = S.Store(path)
        assert st.tile_checked, f"{path} is not a format-3 store (format {st.format_version}); rebuild it"
        if args.full and not st.manifest.get("backgrounds"):
            _background(path, args.background_queries)
        genes = list(st.space().gene_ids)
        q = Query("q", up=tuple(genes[:150]), down=tuple(genes[-150:]))
        opts = {"fdr_null_size": args.fdr_null_size} if args.full else {"summaries": False, "fdr": False, "ncs": False, "tau": False}

        def run(store: S.Store) -> tuple[float, float]:
            t, c = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Engine(store).run(q, **opts)
            return time.perf_counter() - t, time.process_time() - c

        run(S.Store(path))  # page cache warm, kernels compiled, FDR null cached (--full)
        with _unchecked():
            run(S.Store(path))
        wall: dict[str, list[float]] = {"checked": [], "again": [], "unchecked": [], "unchecked_again": []}
        cpu: dict[str, list[float]] = {k: [] for k in wall}
        for i in range(args.reps):
            order = ("checked", "unchecked") if i % 2 == 0 else ("unchecked", "checked")
            for mode in order:
                if mode == "unchecked":
                    with _unchecked():
                        fresh = S.Store(path)
                        w, c = run(fresh)
                        w2, c2 = run(fresh)
                        wall["unchecked_again"].append(w2)
                        cpu["unchecked_again"].append(c2)
                else:
                    fresh = S.Store(path)
                    w, c = run(fresh)
                    w2, c2 = run(fresh)
                    wall["again"].append(w2)
                    cpu["again"].append(c2)
                wall[mode].append(w)
                cpu[mode].append(c)
        med = {k: statistics.median(v) for k, v in wall.items()}
        lo = {k: min(v) for k, v in wall.items()}
        cm = {k: statistics.median(v) for k, v in cpu.items()}
        what = "full query (NCS, FDR, tau, summaries)" if args.full else "WTCS scores only"
        print(f"150+150 query, {what}, {args.sigs} signatures, median of {args.reps} alternating reps (load {os.getloadavg()[0]:.2f}):")
        print(f"  unchecked              {med['unchecked'] * 1e3:8.1f} ms")
        print(f"  checked, first query   {med['checked'] * 1e3:8.1f} ms  ratio {med['checked'] / med['unchecked']:.3f} "
              f"(cost {(med['checked'] / med['unchecked'] - 1) * 100:+.1f} %)")
        print(f"  unchecked, next query  {med['unchecked_again'] * 1e3:8.1f} ms")
        print(f"  checked, next query    {med['again'] * 1e3:8.1f} ms  ratio {med['again'] / med['unchecked_again']:.3f} "
              "(tiles already checked: bitmap lookups)")
        print(f"  checks of a first query: {(med['checked'] - med['unchecked']) * 1e3:.1f} ms = "
              f"{(med['checked'] - med['unchecked']) / med['unchecked_again'] * 100:.1f} % of an unchecked next query")
        print(f"  fastest of {args.reps}: unchecked {lo['unchecked'] * 1e3:.1f} ms, checked first {lo['checked'] * 1e3:.1f} ms "
              f"(ratio {lo['checked'] / lo['unchecked']:.3f})")
        print(f"  CPU time (all threads): unchecked {cm['unchecked'] * 1e3:.1f} ms, checked first {cm['checked'] * 1e3:.1f} ms "
              f"(ratio {cm['checked'] / cm['unchecked']:.3f}); next queries: unchecked {cm['unchecked_again'] * 1e3:.1f} ms, "
              f"checked {cm['again'] * 1e3:.1f} ms (ratio {cm['again'] / cm['unchecked_again']:.3f}); checks of a first query "
              f"{(cm['checked'] - cm['unchecked']) / cm['unchecked_again'] * 100:.1f} % of an unchecked next query")
        _kernel_alone(S.Store(path), q, args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _kernel_alone(store, q, reps: int) -> None:
    """The fused WTCS kernel over the query's rows of the first segment: plain, checking every tile
    it reads (fresh bitmap), and with every tile already marked; CPU time of this thread, alternating."""
    from opencmap.kernels.tilehash import ReadCheck
    from opencmap.kernels.wtcs import set_enrichment_scores

    seg, sp = store.segments[0], store.space()
    ranks, scores = seg.array(sp.name, "ranks"), seg.array(sp.name, "scores")
    rows = sp.positions(list(q.up) + list(q.down)).astype(np.int64)
    bounds = np.array([0, len(q.up), len(rows)])
    (r_sums, _, cols), (s_sums, _, _) = seg.tiles(sp.name, "ranks"), seg.tiles(sp.name, "scores")

    def check() -> ReadCheck:
        return ReadCheck((r_sums, np.zeros(r_sums.shape, np.uint8)), (s_sums, np.zeros(s_sums.shape, np.uint8)), cols, np.full(3, -1, np.int64))

    def timed(verify: ReadCheck | None) -> float:
        t = time.thread_time()
        set_enrichment_scores(ranks, scores, rows, bounds, sp.n_features, verify=verify)
        return time.thread_time() - t

    timed(check())
    out: dict[str, list[float]] = {"plain": [], "fresh": [], "marked": []}
    for _ in range(max(reps, 5)):
        out["plain"].append(timed(None))
        c = check()
        out["fresh"].append(timed(c))
        out["marked"].append(timed(c))
    m = {k: statistics.median(v) for k, v in out.items()}
    print(f"  WTCS kernel alone ({len(rows)} rows x {ranks.shape[1]} signatures, 1 thread, CPU): plain {m['plain'] * 1e3:.1f} ms, "
          f"checking every tile {m['fresh'] * 1e3:.1f} ms (ratio {m['fresh'] / m['plain']:.3f}), tiles already checked "
          f"{m['marked'] * 1e3:.1f} ms (ratio {m['marked'] / m['plain']:.3f})")


def _verify_speed(args: argparse.Namespace) -> None:
    """``Store.verify`` against ``np.sum`` over the same files memory-mapped (warm and cold cache)."""
    import sys

    import opencmap.io.store.verify as V
    from opencmap.io.store.checksums import drop_cached
    from opencmap.query.store import Store

    if args.work is None:
        raise SystemExit("--verify needs --work DIR (the synthetic store is built there once)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_engine import make_store

    path = make_store(args.work, args.sigs, args.genes or 978)
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.name != ".lock" and not f.name.endswith(".tmp"))

    def floor() -> int:
        n = 0
        for f in files:
            arr = np.load(f, mmap_mode="r") if f.suffix == ".npy" else np.memmap(f, dtype=np.uint8, mode="r")
            arr.sum()
            n += f.stat().st_size
            del arr
        return n

    def verify() -> int:
        report = Store(path).verify()
        return sum(t.bytes for t in report.totals)

    def cold() -> None:
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                drop_cached(fd)
            finally:
                os.close(fd)

    def warm() -> None:
        floor()

    keep, results = V.drop_cached, {}
    floor(), verify()  # kernels compiled
    for state, prepare in (("warm", warm), ("cold", cold)):
        rate: dict[str, list[float]] = {"verify": [], "floor": []}
        nbytes = {}
        for i in range(args.reps):
            for name in (("verify", "floor") if i % 2 == 0 else ("floor", "verify")):
                V.drop_cached = keep if state == "cold" else (lambda *a, **k: None)
                prepare()
                t = time.perf_counter()
                nbytes[name] = (verify if name == "verify" else floor)()
                rate[name].append(nbytes[name] / (time.perf_counter() - t) / 1e9)
        V.drop_cached = keep
        results[state] = {k: statistics.median(v) for k, v in rate.items()}
        print(f"  {state}: verify {results[state]['verify']:.2f} GB/s ({nbytes['verify'] / 1e9:.2f} GB checked), floor (np.sum over the "
              f"mmapped files) {results[state]['floor']:.2f} GB/s ({nbytes['floor'] / 1e9:.2f} GB), ratio verify / floor "
              f"{results[state]['verify'] / results[state]['floor']:.2f}")
    print(f"store info --verify on {args.sigs} signatures x {args.genes or 978} genes ({path}), median of {args.reps} alternating reps, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")


def _build(S, path: Path, n_sigs: int, n_genes: int) -> None:
    from opencmap.core.gct import GCT

    rng = np.random.default_rng(0)
    genes = [str(1000 + i) for i in range(n_genes)]
    data = rng.standard_normal((n_genes, n_sigs), dtype=np.float32)
    row_meta = pd.DataFrame({"pr_gene_symbol": [f"G{g}" for g in genes], "pr_is_lm": 1, "pr_is_bing": 1}, index=pd.Index(genes, name="rid"))
    sig_ids = [f"s{i}" for i in range(n_sigs)]
    col_meta = pd.DataFrame(
        {"pert_id": [f"p{i % 997}" for i in range(n_sigs)], "pert_iname": [f"drug{i % 997}" for i in range(n_sigs)],
         "pert_type": "trt_cp", "cell_id": [f"c{i % 7}" for i in range(n_sigs)]},
        index=pd.Index(sig_ids, name="cid"),
    )  # fmt: skip
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        S.build_store(path, GCT(data, row_meta=row_meta, col_meta=col_meta), spaces=["lm"], signature_major=False)
    print(f"store: {n_sigs} signatures x {n_genes} genes built in {time.perf_counter() - t0:.1f} s (tile hashes included); "
          f"load {os.getloadavg()[0]:.2f}")


def _background(path: Path, n_queries: int) -> None:
    from opencmap.query import store as S
    from opencmap.query.background import build_background

    t0 = time.perf_counter()
    sigs = S.Store(path).sig_ids
    picked = [str(s) for s in sigs[np.linspace(0, len(sigs) - 1, min(n_queries, len(sigs))).astype(int)]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_background(path, query_sigs=picked, same_cell=False, n_genes=50)
    print(f"tau backgrounds built in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
