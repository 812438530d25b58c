"""The Dask backend against the local backend at equal cores, and its scaling from 1 to 2 workers.

Builds (once, not timed; reused from ``--work``) the synthetic store of ``bench_engine.py`` (``--n``
signatures x 978 landmark genes, standard-normal z-scores), then times the raw scan of ``--queries`` random
50 + 50 gene WTCS queries (no NCS/FDR/tau/summaries: those run on the client whatever the
backend), ``--rounds`` times each, keeping the best round:

* ``local 1 thread``  :class:`~opencmap.backends.LocalBackend` with ``Settings(threads=1)``;
* ``local 2 threads`` the same with ``threads=2``;
* ``dask 1 worker``   a :class:`~distributed.LocalCluster` of 1 worker process x 1 thread;
* ``dask 2 workers``  2 worker processes x 1 thread (loopback, no dashboard).

Dask tasks: ``Settings.task_signatures`` unset (about 4 tasks per worker thread). The first
Dask round of each cluster warms the workers (imports, numba compilation, open stores) and is
not counted. Printed ratios: the overhead of Dask against the local backend at equal cores
(1 worker vs 1 thread, 2 workers vs 2 threads) and the scaling efficiency from 1 to 2 workers
(t1 / (2 * t2); 1.0 is perfect). Results are checked equal (bit for bit) in every round::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_dask_backend.py --work /tmp/bench --n 20000 --queries 20
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

N_GENES = 978


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def queries(store, n_queries: int) -> list:
    from opencmap.query.genesets import Query

    rng = np.random.default_rng(1)
    ids = np.asarray(store.space(None).gene_ids, dtype=object)
    out = []
    for q in range(n_queries):
        pick = ids[rng.choice(len(ids), 100, replace=False)]
        out.append(Query(f"q{q}", up=tuple(pick[:50]), down=tuple(pick[50:])))
    return out


def scan(store, qs, backend) -> dict[str, np.ndarray]:
    from opencmap.query.scoring import score_only

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return score_only(store, qs, metric="wtcs", min_genes=1, backend=backend)


def timed(store, qs, backend, rounds: int, reference: dict[str, np.ndarray] | None) -> tuple[float, dict[str, np.ndarray]]:
    best, out = float("inf"), {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = scan(store, qs, backend)
        best = min(best, time.perf_counter() - t0)
        if reference is not None:
            for name, values in reference.items():
                assert np.asarray(out[name]).tobytes() == np.asarray(values).tobytes(), f"{name} differs from the local backend"
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the synthetic store (kept for reruns)")
    parser.add_argument("--n", type=int, default=100_000, help="signatures of the store")
    parser.add_argument("--queries", type=int, default=100, help="queries of the batch")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per configuration (best kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from distributed import Client, LocalCluster

    from opencmap.backends import DaskBackend, LocalBackend, Settings
    from opencmap.query.store import Store

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_engine import make_store  # the same synthetic store (and its folder under --work)

    args.work.mkdir(parents=True, exist_ok=True)
    path = make_store(args.work, args.n, N_GENES)
    store = Store(path)
    qs = queries(store, args.queries)
    print(f"store {args.n:,} signatures x {N_GENES} genes; {args.queries} queries of 50 + 50 genes; best of {args.rounds}; {load()}")
    times: dict[str, float] = {}
    times["local 1 thread"], reference = timed(store, qs, LocalBackend(Settings(threads=1)), args.rounds, None)
    times["local 2 threads"], _ = timed(store, qs, LocalBackend(Settings(threads=2)), args.rounds, reference)
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cl, \
                Client(cl, set_as_default=False) as client:  # fmt: skip
            backend = DaskBackend(client, Settings())
            timed(store, qs, backend, 1, reference)  # warm-up: imports, compilation, open stores
            name = f"dask {workers} worker{'s' if workers > 1 else ''}"
            times[name], _ = timed(store, qs, backend, args.rounds, reference)
            print(f"  {name}: {backend.task_signatures(args.n):,} signatures per task", flush=True)
    for name, t in times.items():
        print(f"  {name:16s} {t:8.3f} s   {args.n * args.queries / t / 1e6:8.2f} M scores/s")
    print(f"overhead dask 1 worker / local 1 thread:   {times['dask 1 worker'] / times['local 1 thread']:.2f}x")
    print(f"overhead dask 2 workers / local 2 threads: {times['dask 2 workers'] / times['local 2 threads']:.2f}x")
    print(f"scaling efficiency 1 -> 2 workers:         {times['dask 1 worker'] / (2 * times['dask 2 workers']):.2f} (1.0 = perfect)")
    print(f"local scaling 1 -> 2 threads (baseline):   {times['local 1 thread'] / (2 * times['local 2 threads']):.2f}")
    print(load())


if __name__ == "__main__":
    main()
