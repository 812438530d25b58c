"""Benchmark the REST API (``opencmap serve``) against the engine in-process, on loopback only.

Builds a synthetic BING-space store (default 2,000 signatures; ``--big`` 100,000) with tau
backgrounds (not timed), starts ``opencmap serve`` on 127.0.0.1 (random free port), and measures
single synchronous WTCS queries (``POST /api/v1/queries``, 50 up + 50 down genes, full result:
NCS, FDR, tau, summaries, stored in SQLite):

* baseline: the same queries with :meth:`Engine.run` in this process (same engine options);
* API with 1 client (sequential) and 8 concurrent clients: throughput (queries/s) and latency
  percentiles p50 / p90 / p99.

Every API figure is printed as a ratio to the in-process baseline measured in the same run.
Memory: the store is memory-mapped; the server holds one result per request (<~0.5 GB at 100k).

    .venv/bin/python benchmarks/bench_api.py                 # 2,000 signatures, ~1 min
    .venv/bin/python benchmarks/bench_api.py --big           # 100,000 signatures (~10 GB temp disk)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _bench_query_module():
    """``benchmarks/bench_query.py`` (its synthetic GCTX writer is reused, not copied)."""
    spec = importlib.util.spec_from_file_location("bench_query", HERE / "bench_query.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build(work: Path, n_sigs: int, bg_queries: int) -> Path:
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    gctx = work / "level5.gctx"
    _bench_query_module().make_gctx(gctx, n_sigs, bg_queries=bg_queries)
    store = build_store(work / "store", gctx, block_size=2048)
    gctx.unlink()
    build_background(store)
    return work / "store"


def make_queries(n: int, n_genes: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    bench = _bench_query_module()
    out = []
    for i in range(n):
        genes = rng.choice(bench.N_BING, 2 * n_genes, replace=False) + 100
        out.append({"name": f"q{i}", "up": [str(g) for g in genes[:n_genes]], "down": [str(g) for g in genes[n_genes:]]})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(latencies: list[float]) -> dict[str, float]:
    arr = np.asarray(latencies)
    return {f"p{p}": float(np.percentile(arr, p)) for p in (50, 90, 99)}


def run_clients(url: str, queries: list[dict], clients: int) -> tuple[float, list[float]]:
    import httpx

    def one(q: dict) -> float:
        with httpx.Client(base_url=url, timeout=600) as c:
            t0 = time.perf_counter()
            r = c.post("/api/v1/queries", json={"queries": [q]})
            r.raise_for_status()
            return time.perf_counter() - t0

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        lat = list(pool.map(one, queries))
    return time.perf_counter() - t0, lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-sigs", type=int, default=2000, help="signatures of the small store")
    parser.add_argument("--big", action="store_true", help="use a 100,000-signature store instead")
    parser.add_argument("--queries", type=int, default=24, help="queries per measurement")
    parser.add_argument("--genes", type=int, default=50, help="up and down genes per query")
    parser.add_argument("--bg-queries", type=int, default=100, help="exemplar queries of the tau background")
    parser.add_argument("--keep", type=Path, default=None, help="keep the store in this folder (and reuse it)")
    args = parser.parse_args()
    n_sigs = 100_000 if args.big else args.n_sigs

    import httpx

    from opencmap.query.engine import Engine
    from opencmap.query.genesets import Query
    from opencmap.query.store import Store

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_api_"))
    work.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        store_path = work / "store"
        if not (store_path / "manifest.json").exists():
            t0 = time.perf_counter()
            build(work, n_sigs, args.bg_queries)
            print(f"built store of {n_sigs:,} signatures in {time.perf_counter() - t0:.1f} s (not part of the benchmark)")
        queries = make_queries(args.queries, args.genes)

        # -- baseline: the engine in this process, same options as the API's sync route
        engine = Engine(Store(store_path))
        engine.run([Query("warm", up=tuple(queries[0]["up"]), down=tuple(queries[0]["down"]))])
        base = []
        for q in queries:
            t0 = time.perf_counter()
            engine.run([Query(q["name"], up=tuple(q["up"]), down=tuple(q["down"]))])
            base.append(time.perf_counter() - t0)
        base_p = percentiles(base)
        base_qps = 1.0 / float(np.mean(base))

        # -- the server
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(work / "server.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-c", "from opencmap.cli import main; main()", "serve", "--store", str(store_path),
             "--db", str(work / "jobs.sqlite"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start; see {work / 'server.log'}")
            time.sleep(0.2)
        run_clients(url, queries[:2], 1)  # warm-up (JIT, caches)

        print(f"\nstore: {n_sigs:,} signatures x 10,174 BING genes; {len(queries)} queries of {args.genes}+{args.genes} genes")
        print(f"{'':<28}{'queries/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}   ratio to in-process (p50 latency / throughput)")
        print(f"{'engine in-process':<28}{base_qps:>10.2f}{1e3 * base_p['p50']:>9.1f}{1e3 * base_p['p90']:>9.1f}{1e3 * base_p['p99']:>9.1f}   1.00 / 1.00")
        for clients in (1, 8):
            wall, lat = run_clients(url, queries, clients)
            p = percentiles(lat)
            qps = len(queries) / wall
            print(
                f"{f'API, {clients} client(s)':<28}{qps:>10.2f}{1e3 * p['p50']:>9.1f}{1e3 * p['p90']:>9.1f}{1e3 * p['p99']:>9.1f}"
                f"   {p['p50'] / base_p['p50']:.2f}x latency / {qps / base_qps:.2f}x throughput"
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
