"""Cost of the store's read-time checksum checks (chunk xxh3, :meth:`StoreSegment.check` in
:mod:`opencmap.io.store.reader`) on a 150+150 WTCS query.

Builds a synthetic store of ``--sigs`` signatures (default 100,000) in a ``--genes``-gene space
(default 400: a query reads only its 300 genes' rows, so the gene count of the space does not
change what a query reads or checks; it keeps the build to ~1 GB and a minute or two), then, page
cache warm, times per repetition:

* ``checked first``: a freshly opened store's first query (every chunk the query reads is
  checked: the worst case, paid once per opened store and chunk);
* ``checked again``: the same store's second query (chunks already checked: a bitmap lookup);
* ``unchecked``: a freshly opened store with the checks switched off (the query without them);
* ``checks alone``: the check calls of that query on a fresh store, without the scoring.

Scoring only (WTCS; no FDR null, tau or summaries), one thread per the engine's defaults. The
473,647-signature figure printed at the end is an extrapolation (reads and checks both scale with
the signatures); ``--sigs 473647`` measures it. CPU times (all threads) are printed too: on a
shared machine they move less with the load than wall times. ``--store DIR`` keeps the synthetic
store for later runs.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_store_integrity.py            # 100k, ~2 min
    PYTHONPATH=src .venv/bin/python benchmarks/bench_store_integrity.py --sigs 20000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigs", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=400)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--store", type=Path, default=None, help="keep the synthetic store here (built if missing, reused otherwise)")
    args = parser.parse_args()

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
        genes = list(S.Store(path).space().gene_ids)
        q = Query("q", up=tuple(genes[:150]), down=tuple(genes[-150:]))

        cpu: dict[str, list[float]] = {"first": [], "unchecked": [], "alone": []}

        inside: dict[str, list[float]] = {"first": [], "unchecked": []}

        def timed(store: S.Store, label: str) -> None:
            """Time spent inside the store's block iterator (where the checks the query waits for run)."""
            orig_iter = store.iter_blocks
            spent = [0.0]
            inside[label].append(0.0)

            def wrapper(*a, **k):  # noqa: ANN002, ANN003
                it = orig_iter(*a, **k)
                while True:
                    t0 = time.perf_counter()
                    try:
                        item = next(it)
                    except StopIteration:
                        spent[0] += time.perf_counter() - t0
                        inside[label][-1] = spent[0]
                        return
                    spent[0] += time.perf_counter() - t0
                    inside[label][-1] = spent[0]
                    yield item

            store.iter_blocks = wrapper  # type: ignore[method-assign]

        def run(store: S.Store, label: str = "") -> float:
            if label:
                timed(store, label)
            t, c = time.perf_counter(), time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Engine(store).run(q, summaries=False, fdr=False, ncs=False, tau=False)
            if label:
                cpu[label].append(time.process_time() - c)
            return time.perf_counter() - t

        run(S.Store(path))  # page cache warm
        seg_cls = getattr(S, "StoreSegment", None) or S._Segment  # (older checkouts: _Segment)
        orig = seg_cls.check
        first, again, unchecked, alone = [], [], [], []
        rows = S.Store(path).space().positions(list(q.up) + list(q.down))
        for _ in range(args.reps):
            st = S.Store(path)
            first.append(run(st, "first"))
            again.append(run(st))
            seg_cls.check = lambda *a, **k: None  # type: ignore[method-assign]
            try:
                unchecked.append(run(S.Store(path), "unchecked"))
            finally:
                seg_cls.check = orig  # type: ignore[method-assign]
            st = S.Store(path)
            t, c = time.perf_counter(), time.process_time()
            for _ in st.iter_blocks(rows, space="lm", block_size=65536):
                pass
            alone.append(time.perf_counter() - t)
            cpu["alone"].append(time.process_time() - c)
        med = {k: statistics.median(v) for k, v in (("first", first), ("again", again), ("unchecked", unchecked), ("alone", alone))}
        print(f"150+150 WTCS query, {args.sigs} signatures, median of {args.reps} (load {os.getloadavg()[0]:.2f}):")
        print(f"  unchecked            {med['unchecked'] * 1e3:8.1f} ms")
        print(f"  checked, first query {med['first'] * 1e3:8.1f} ms  (+{(med['first'] / med['unchecked'] - 1) * 100:.1f} %)")
        print(f"  checked, next query  {med['again'] * 1e3:8.1f} ms  (+{(med['again'] / med['unchecked'] - 1) * 100:.1f} %)")
        print(f"  checks alone         {med['alone'] * 1e3:8.1f} ms  ({med['alone'] / med['unchecked'] * 100:.1f} % of the unchecked query)")
        lo = {k: min(v) for k, v in (("first", first), ("unchecked", unchecked), ("alone", alone))}
        print(f"  fastest of {args.reps} (least disturbed by other load): unchecked {lo['unchecked'] * 1e3:.1f} ms, checked first "
              f"{lo['first'] * 1e3:.1f} ms (+{(lo['first'] / lo['unchecked'] - 1) * 100:.1f} %), checks alone {lo['alone'] * 1e3:.1f} ms")
        im = {k: statistics.median(v) for k, v in inside.items()}
        print(f"  waiting in the block iterator (checks on the query's path): checked first {im['first'] * 1e3:.1f} ms, "
              f"unchecked {im['unchecked'] * 1e3:.1f} ms -> {(im['first'] - im['unchecked']) * 1e3:.1f} ms = "
              f"{(im['first'] - im['unchecked']) / med['unchecked'] * 100:.1f} % of the unchecked query")
        cm = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"  CPU time (all threads): unchecked {cm['unchecked'] * 1e3:.1f} ms, checked first {cm['first'] * 1e3:.1f} ms "
              f"(+{(cm['first'] / cm['unchecked'] - 1) * 100:.1f} %), checks alone {cm['alone'] * 1e3:.1f} ms "
              f"({cm['alone'] / cm['unchecked'] * 100:.1f} % of the unchecked query)")
        scale = 473_647 / args.sigs
        print(f"  extrapolated to 473,647 signatures (x{scale:.2f}, linear): query {med['unchecked'] * scale * 1e3:.0f} ms, "
              f"first-query checks {med['alone'] * scale * 1e3:.0f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(S, path: Path, n_sigs: int, n_genes: int) -> None:
    from opencmap.core.gct import GCT

    rng = np.random.default_rng(0)
    genes = [str(1000 + i) for i in range(n_genes)]
    data = rng.standard_normal((n_genes, n_sigs), dtype=np.float32)
    row_meta = pd.DataFrame({"pr_gene_symbol": [f"G{g}" for g in genes], "pr_is_lm": 1, "pr_is_bing": 1}, index=pd.Index(genes, name="rid"))
    sig_ids = [f"s{i}" for i in range(n_sigs)]
    col_meta = pd.DataFrame({"pert_id": "p", "cell_id": "c"}, index=pd.Index(sig_ids, name="cid"))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        S.build_store(path, GCT(data, row_meta=row_meta, col_meta=col_meta), spaces=["lm"], signature_major=False)
    build_s = time.perf_counter() - t0
    print(f"store: {n_sigs} signatures x {n_genes} genes built in {build_s:.1f} s (checksums included); load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
