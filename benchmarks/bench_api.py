"""Benchmark the REST API (``opencmap serve``) against the engine in-process, on loopback only.

Uses an existing store (``--store PATH``, e.g. the demo store ``opencmap-demo/store`` built by
``opencmap demo``; PCLs beside it are picked up like the server does) or builds a synthetic
BING-space store of ``--synthetic N`` signatures (default 2,000; ``--big`` = 100,000) with tau
backgrounds (not timed; gene-major only, i.e. ``build_store(..., signature_major=False)``, which
halves the disk). It starts ``opencmap serve`` on 127.0.0.1 (random free port) and measures
single synchronous WTCS queries (``POST /api/v1/queries``, ``--genes`` up + down genes drawn from
the store's default space, full result: NCS, FDR, tau, summaries, stored in SQLite):

* baseline: the same queries in this process through the API's own :class:`QueryService`
  (request -> :meth:`Engine.run`, same options and PCLs as the server);
* the rest of the route in-process: the server's own :meth:`JobRunner.run_now` (baseline + the
  job's status rows + saving the result, with the server's retention settings) + the top-20
  records of the summary levels (what the route adds before HTTP/JSON);
* API with 1 client (sequential) and 8 concurrent clients (one keep-alive connection each):
  throughput (queries/s) and latency percentiles p50 / p95 / p99; meanwhile ``GET /health`` is
  probed every 50 ms (does a running query keep the server from answering trivial requests?).

Every figure is printed as a ratio to the in-process baseline measured in the same run. Each
measurement is bounded by ``--queries`` requests and ``--max-seconds`` of wall time.

``--under-load`` measures instead (server only, so it also runs against older opencmap code):
sync p50/p99 idle and while a batch job of ``--load-queries`` queries runs (ratios to idle), the
job's throughput (queries/s), and the database and results-folder size after
``--retention-queries`` sync queries with ``--max-stored-results`` (default 50).

``--retention`` measures only the job database (server only): its size on disk (with its WAL,
checkpointed by a clean stop), its rows and tombstones, and the results folder after
``--retention-queries`` sync queries with ``--max-stored-results``, once with the default grace of
expired rows (``--expired-row-hours`` 24) and once with grace 0, each with a fresh database; with
``--base SRC`` also with another source tree's server (its defaults) as "before", and the ratios.
Memory: the store is memory-mapped; the server holds one result per request (<~0.5 GB at 100k).
Disk for ``--big``: ~4 GB temporary GCTX + ~6 GB store, all removed at the end (unless ``--keep``).

    .venv/bin/python benchmarks/bench_api.py                              # 2,000 signatures, ~1 min
    .venv/bin/python benchmarks/bench_api.py --store opencmap-demo/store  # an existing store
    .venv/bin/python benchmarks/bench_api.py --big                        # 100,000 signatures
    .venv/bin/python benchmarks/bench_api.py --sizes 10000,100000 --queries 12   # both, then a p50/p99 summary
    .venv/bin/python benchmarks/bench_api.py --sizes 10000,100000,473647 --n-genes 1000 --genes 150 \
        --keep /tmp/bench-api                 # the issue's sizes on a 1,000-gene space (~3 GB at 473,647)
    .venv/bin/python benchmarks/bench_api.py --under-load --synthetic 2000 --n-genes 1000 \
        --retention-queries 10000             # issue 15: load, throughput, sizes after 10,000 queries
    PYTHONPATH=src .venv/bin/python benchmarks/bench_api.py --retention --retention-queries 1000 \
        --base /tmp/base/src                  # job database size after 1,000 queries: before, grace 24 h, grace 0

Synchronous results are stored after the response (``JobRunner(defer_sync_save=True)``, as the
server runs it), so the API figures no longer include saving (the row "+ job rows, save marker,
top-20" is the route in-process: the job rows, the job folder's marker and the top-20 tables).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLIENTS = (1, 8)


def _bench_query_module():
    """``benchmarks/bench_query.py`` (its synthetic GCTX writer is reused, not copied)."""
    spec = importlib.util.spec_from_file_location("bench_query", HERE / "bench_query.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build(work: Path, n_sigs: int, bg_queries: int, n_genes: int | None = None) -> Path:
    """A synthetic BING-space store of ``n_sigs`` signatures in ``work/store`` (gene-major only);
    ``n_genes`` genes in the space (default: bench_query's 10,174; fewer keeps a 473,647-signature
    store small: a query's cost depends on its genes and the signatures, not on the space)."""
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    bench = _bench_query_module()
    if n_genes is not None:
        bench.N_BING, bench.N_LM = n_genes, min(bench.N_LM, n_genes)  # make_gctx reads these globals
    need = n_sigs * bench.N_BING * (4 + 6) * 1.05  # temporary GCTX (float32) + ranks (uint16) + scores
    free = shutil.disk_usage(work).free
    if need > 0.8 * free:
        raise SystemExit(f"building {n_sigs:,} signatures needs ~{need / 1e9:.1f} GB; {work} has {free / 1e9:.1f} GB free")
    gctx = work / "level5.gctx"
    bench.make_gctx(gctx, n_sigs, bg_queries=bg_queries)
    try:
        store = build_store(work / "store", gctx, spaces=["bing"], signature_major=False, block_size=2048)
    finally:
        gctx.unlink(missing_ok=True)
    build_background(store)
    return work / "store"


def make_queries(gene_ids: list[str], n: int, n_genes: int, seed: int = 1) -> list[dict]:
    """``n`` random queries of ``n_genes`` up + ``n_genes`` down genes from ``gene_ids``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        picks = rng.choice(len(gene_ids), 2 * n_genes, replace=False)
        genes = [gene_ids[j] for j in picks]
        out.append({"name": f"q{i}", "up": genes[:n_genes], "down": genes[n_genes:]})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(latencies: list[float]) -> dict[str, float]:
    arr = np.asarray(latencies)
    return {f"p{p}": float(np.percentile(arr, p)) for p in (50, 95, 99)}


def timed(fn, queries: list[dict], max_seconds: float) -> list[float]:
    """Latencies of ``fn(q)`` over ``queries``, stopping after ``max_seconds`` (at least 2 runs)."""
    out: list[float] = []
    start = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t0)
        if len(out) >= 2 and time.perf_counter() - start > max_seconds:
            break
    return out


def run_clients(
    url: str, queries: list[dict], clients: int, max_seconds: float, options: dict | None = None
) -> tuple[float, list[float], int, list[float]]:
    """(wall seconds, latencies, response bytes, health-probe latencies) for ``clients`` concurrent
    keep-alive clients, while a probe requests ``/health`` every 50 ms."""
    import httpx

    deadline = time.perf_counter() + max_seconds
    size = [0]
    pool_of_clients = [httpx.Client(base_url=url, timeout=600) for _ in range(clients)]
    local = threading.local()
    handed = iter(pool_of_clients)
    lock = threading.Lock()

    def one(q: dict) -> float | None:
        if time.perf_counter() > deadline:
            return None
        if not hasattr(local, "client"):
            with lock:
                local.client = next(handed)
        t0 = time.perf_counter()
        r = local.client.post("/api/v1/queries", json={"queries": [q], **(options or {})})
        r.raise_for_status()
        size[0] = len(r.content)
        return time.perf_counter() - t0

    probe: list[float] = []
    done = threading.Event()

    def health() -> None:  # responsiveness of the server to a trivial request while queries run
        with httpx.Client(base_url=url, timeout=600) as c:
            while not done.wait(0.05):
                t0 = time.perf_counter()
                c.get("/api/v1/health").raise_for_status()
                probe.append(time.perf_counter() - t0)

    prober = threading.Thread(target=health, daemon=True)
    prober.start()
    try:
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            lat = [x for x in pool.map(one, queries) if x is not None]
        return time.perf_counter() - t0, lat, size[0], probe
    finally:
        done.set()
        prober.join()
        for c in pool_of_clients:
            c.close()


def start_server(store_path: Path, work: Path, extra: tuple[str, ...] = (), src: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``opencmap serve`` on loopback with its database in ``work``; ``src``: another source tree."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-c", "from opencmap.cli import main; main()", "serve", "--store", str(store_path),
         "--db", str(work / "jobs.sqlite"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(src)} if src is not None else None,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"server did not start; see {work / 'server.log'}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--store", type=Path, default=None, help="benchmark this existing store (never modified)")
    source.add_argument("--synthetic", type=int, default=2000, metavar="N", help="build a synthetic store of N signatures")
    source.add_argument("--big", action="store_true", help="synthetic store of 100,000 signatures")
    parser.add_argument("--queries", type=int, default=24, help="queries per measurement (at most)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="wall-time bound of each measurement")
    parser.add_argument("--genes", type=int, default=50, help="up and down genes per query")
    parser.add_argument("--bg-queries", type=int, default=100, help="exemplar queries of the tau background")
    parser.add_argument("--fdr-method", default=None, choices=("random_query_pooled", "random_query", "cmap"),
                        help="FDR of the queries (default: the server's; cmap needs no random-query null, whose "
                        "first build costs 1,000 random queries: ~40 min at 473,647 signatures on 2 cores)")
    parser.add_argument("--n-genes", type=int, default=None,
                        help="genes of a synthetic store's space (default 10,174; >= 2 x --genes)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the synthetic store in this folder (and reuse it)")
    parser.add_argument("--under-load", action="store_true", help="sync latency idle vs under a batch job; retention sizes")
    parser.add_argument("--load-queries", type=int, default=500, help="queries of the batch job of --under-load")
    parser.add_argument("--retention-queries", type=int, default=1000, help="sync queries before the sizes of --under-load")
    parser.add_argument("--max-stored-results", type=int, default=50, help="server retention of --under-load")
    parser.add_argument("--retention", action="store_true", help="job database size after --retention-queries sync queries")
    parser.add_argument("--base", type=Path, default=None, help="with --retention: another source tree (its src/) as 'before'")
    parser.add_argument("--sizes", default=None, metavar="N,M",
                        help="synthetic stores of these sizes one after the other (e.g. 10000,100000), then a summary")
    args = parser.parse_args()
    if args.retention:
        retention_sizes(args, 100_000 if args.big else args.synthetic)
        return
    if args.under_load:
        under_load(args, 100_000 if args.big else args.synthetic)
        return
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [100_000 if args.big else args.synthetic]
    summaries = [measure(n, args) for n in sizes]
    print("\nsummary: sync query through the API (1 client) vs the engine in-process, interleaved")
    print(f"{'signatures':>12}{'engine p50':>12}{'API p50':>10}{'ratio':>7}{'engine p99':>12}{'API p99':>10}{'ratio':>7}")
    for s in summaries:
        e, a = s["engine"], s["api"]
        print(f"{s['n']:>12,}{1e3 * e['p50']:>10.1f}ms{1e3 * a['p50']:>8.1f}ms{a['p50'] / e['p50']:>6.2f}x"
              f"{1e3 * e['p99']:>10.1f}ms{1e3 * a['p99']:>8.1f}ms{a['p99'] / e['p99']:>6.2f}x")


def measure(n_sigs: int, args: argparse.Namespace) -> dict:
    """One store: in-process baseline, route in-process, API with 1 and 8 clients (printed); returns
    the engine's and the 1-client API's percentiles."""
    import httpx

    from opencmap.api.catalogue import Catalogue
    from opencmap.api.execution import QueryService
    from opencmap.api.jobs import JobDB, JobRunner
    from opencmap.api.routers.queries import _TOP_LEVELS, top_records
    from opencmap.api.settings import Settings
    from opencmap.query.engine import Engine
    from opencmap.query.store import Store

    work = (args.keep / f"n{n_sigs}" if args.keep and args.sizes else args.keep) or Path(tempfile.mkdtemp(prefix="bench_api_"))
    work.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        if args.store is not None:
            store_path = args.store.resolve()
        else:
            store_path = work / "store"
            if not (store_path / "manifest.json").exists():
                t0 = time.perf_counter()
                build(work, n_sigs, args.bg_queries, args.n_genes)
                print(f"built store of {n_sigs:,} signatures in {time.perf_counter() - t0:.1f} s (not part of the benchmark)")
        store = Store(store_path)
        space = store.space()
        queries = make_queries([str(g) for g in space.gene_ids], args.queries, args.genes)
        options = {"fdr_method": args.fdr_method} if args.fdr_method else {}

        # -- baseline: the API's QueryService in this process (same engine options and PCLs as the server)
        settings = Settings(store_path=store_path, db_path=work / "inprocess.sqlite")
        engine = Engine(store, pcl=settings.resolved_pcl_path())
        service = QueryService(engine, Catalogue.build(store, pcl=engine.pcl), settings)
        # the job database and runner as the server makes them (app._open_resources); never started: run_now only
        db = JobDB(
            settings.resolved_db_path(), max_results=settings.max_stored_results, result_ttl=settings.result_ttl_seconds()
        )
        runner = JobRunner(
            db, service.execute, sig_info=lambda: store.sig_info, cache_size=settings.result_cache, defer_sync_save=True
        )

        def engine_only(q: dict):
            return service.execute({"queries": [q], **options}, lambda done, total: None)

        def route_in_process(q: dict) -> None:
            _, result = runner.run_now({"queries": [q], **options}, n_queries=1)
            for level in _TOP_LEVELS:
                if level in result.levels:
                    top_records(result, level)

        engine_only(queries[0])  # warm-up (JIT, backgrounds, lazy caches)
        route_in_process(queries[0])
        base = timed(engine_only, queries, args.max_seconds)
        route = timed(route_in_process, queries, args.max_seconds)
        runner.flush()  # deferred saves of synchronous results (not in the timings, as in the server)
        db.close()
        base_p = percentiles(base)

        proc, url = start_server(store_path, work)
        run_clients(url, queries[:2], 1, args.max_seconds, options)  # warm-up (JIT, caches)

        print(f"\nstore: {store_path} ({store.n_signatures:,} signatures; space {space.name!r}, {space.n_features:,} genes)")
        print(f"{len(queries)} queries of {args.genes}+{args.genes} genes per measurement (at most {args.max_seconds:.0f} s each)"
              + (f"; fdr_method {args.fdr_method}" if args.fdr_method else ""))
        print(f"{'':<34}{'n':>4}{'queries/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}   ratio to in-process engine")
        rows = [("engine in-process (QueryService)", base, len(base) / sum(base)),
                ("+ job rows, save marker, top-20", route, len(route) / sum(route))]  # fmt: skip
        base_qps = rows[0][2]
        probes = []
        for clients in CLIENTS:
            wall, lat, size, probe = run_clients(url, queries, clients, args.max_seconds, options)
            rows.append((f"API, {clients} client(s)", lat, len(lat) / wall))
            probes.append((clients, probe))
        for label, lat, qps in rows:
            p = percentiles(lat)
            print(
                f"{label:<34}{len(lat):>4}{qps:>10.2f}{1e3 * p['p50']:>9.1f}{1e3 * p['p95']:>9.1f}{1e3 * p['p99']:>9.1f}"
                f"   {p['p50'] / base_p['p50']:.2f}x p50 latency, {qps / base_qps:.2f}x throughput"
            )
        served = 2 + sum(len(lat) for label, lat, _ in rows if label.startswith("API"))
        db_bytes = sum(f.stat().st_size for f in work.glob("jobs.sqlite*"))
        print(f"response body: {size / 1e3:.1f} kB; job database growth: {db_bytes / served / 1e6:.2f} MB per sync query")
        # interleaved: engine in-process and API one after the other per query, each on an idle
        # server (the previous result's save finished: GET /jobs/{id} waits for it, untimed), so
        # both see the same load of a shared machine
        eng, api = [], []
        with httpx.Client(base_url=url, timeout=600) as c:
            start = time.perf_counter()
            for q in queries:
                t0 = time.perf_counter()
                engine_only(q)
                eng.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                r = c.post("/api/v1/queries", json={"queries": [q], **options})
                api.append(time.perf_counter() - t0)
                r.raise_for_status()
                c.get(f"/api/v1/jobs/{r.json()['job']['id']}").raise_for_status()  # the save is done
                if time.perf_counter() - start > args.max_seconds and len(api) >= 2:
                    break
        pe, pa = percentiles(eng), percentiles(api)
        print(
            f"interleaved (n={len(api)}): engine p50 {1e3 * pe['p50']:.1f} ms p99 {1e3 * pe['p99']:.1f} ms; API 1 client "
            f"p50 {1e3 * pa['p50']:.1f} ms p99 {1e3 * pa['p99']:.1f} ms; ratio p50 {pa['p50'] / pe['p50']:.2f}x, p99 {pa['p99'] / pe['p99']:.2f}x"
        )
        summary = {"n": store.n_signatures, "engine": pe, "api": pa}
        for clients, probe in probes:
            if not probe:
                continue
            p = percentiles(probe)
            print(
                f"GET /health during the {clients}-client run: p50 {1e3 * p['p50']:.1f} ms, "
                f"p99 {1e3 * p['p99']:.1f} ms, max {1e3 * max(probe):.1f} ms ({len(probe)} probes)"
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return summary



def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _store_path(args: argparse.Namespace, work: Path, n_sigs: int) -> Path:
    """``--store``, or the synthetic store in ``work`` (built once, not timed)."""
    if args.store is not None:
        return args.store.resolve()
    if not (work / "store" / "manifest.json").exists():
        build(work, n_sigs, args.bg_queries, args.n_genes)
    return work / "store"


def retention_sizes(args: argparse.Namespace, n_sigs: int) -> None:
    """Job database and results folder after N sync queries: before (``--base``), grace 24 h, grace 0."""
    import sqlite3

    import httpx

    from opencmap.query.store import Store

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_api_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        store_path = _store_path(args, work, n_sigs)
        store = Store(store_path)
        queries = make_queries([str(g) for g in store.space().gene_ids], min(args.queries, 50), args.genes, seed=2)
        keep = ("--max-stored-results", str(args.max_stored_results))
        runs = ([("before (base tree, its defaults)", keep, args.base)] if args.base else []) + [
            ("grace 24 h (default)", keep, None), ("grace 0", (*keep, "--expired-row-hours", "0"), None)]  # fmt: skip
        sizes: dict[str, int] = {}
        print(f"store: {store.n_signatures:,} signatures; {args.retention_queries} sync queries of {args.genes}+{args.genes} genes, "
              f"--max-stored-results {args.max_stored_results}")  # fmt: skip
        for label, extra, src in runs:
            for old in work.glob("jobs*"):  # a fresh database each run
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            proc, url = start_server(store_path, work, extra, src)
            try:
                t0 = time.perf_counter()
                with httpx.Client(base_url=f"{url}/api/v1", timeout=600) as c:
                    for k in range(args.retention_queries):
                        c.post("/queries", json={"queries": [queries[k % len(queries)]]}).raise_for_status()
                wall = time.perf_counter() - t0
            finally:
                proc.terminate()  # a clean stop: the WAL is checkpointed into the file
                proc.wait(60)
            with contextlib.closing(sqlite3.connect(work / "jobs.sqlite")) as conn:
                rows = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                tombs = conn.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0] if "tombstones" in tables else 0
            sizes[label] = sum(f.stat().st_size for f in work.glob("jobs.sqlite*"))
            print(f"  {label:34s} database {sizes[label] / 1e3:9.1f} kB ({sizes[label] / args.retention_queries:7.1f} B/query)"
                  f"  rows {rows:>6}  tombstones {tombs:>6}  results folder {_folder_bytes(work / 'jobs-results') / 1e6:7.2f} MB"
                  f"  ({args.retention_queries / wall:.1f} queries/s)")  # fmt: skip
        if args.base:
            before = sizes[runs[0][0]]
            for label, size in list(sizes.items())[1:]:
                print(f"  database size before/after ({label}): {before / size:.2f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def under_load(args: argparse.Namespace, n_sigs: int) -> None:
    """Sync latency idle vs while a batch job runs; job throughput; database/results size after N queries."""
    import httpx

    from opencmap.query.store import Store

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_api_"))
    work.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        store_path = _store_path(args, work, n_sigs)
        for old in work.glob("jobs*"):  # a fresh database each run
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        store = Store(store_path)
        genes = [str(g) for g in store.space().gene_ids]
        sync_q = make_queries(genes, args.queries, args.genes, seed=2)
        batch = make_queries(genes, args.load_queries, args.genes, seed=3)
        proc, url = start_server(store_path, work, ("--max-stored-results", str(args.max_stored_results)))
        with httpx.Client(base_url=f"{url}/api/v1", timeout=600) as c:

            def sync(q: dict) -> None:
                c.post("/queries", json={"queries": [q]}).raise_for_status()

            sync(sync_q[0])  # warm-up
            idle = timed(sync, sync_q, args.max_seconds)
            job = c.post("/jobs", json={"queries": batch}).json()["id"]
            while c.get(f"/jobs/{job}").json()["status"] == "queued":
                time.sleep(0.01)
            loaded: list[float] = []
            for q in sync_q * 100:
                if c.get(f"/jobs/{job}").json()["status"] != "running" or len(loaded) >= 4 * len(sync_q):
                    break
                t0 = time.perf_counter()
                sync(q)
                loaded.append(time.perf_counter() - t0)
            while (status := c.get(f"/jobs/{job}").json())["status"] in ("queued", "running"):
                time.sleep(0.1)
            i, p = percentiles(idle), percentiles(loaded) if loaded else {"p50": float("nan"), "p99": float("nan")}
            print(f"store: {store.n_signatures:,} signatures; sync queries of {args.genes}+{args.genes} genes")
            print(f"sync idle:            n={len(idle):>4}  p50 {1e3 * i['p50']:8.1f} ms  p99 {1e3 * i['p99']:8.1f} ms")
            print(
                f"sync under batch load: n={len(loaded):>4}  p50 {1e3 * p['p50']:8.1f} ms  p99 {1e3 * p['p99']:8.1f} ms"
                f"   ratio to idle: p50 {p['p50'] / i['p50']:.2f}x, p99 {p['p99'] / i['p99']:.2f}x"
            )
            took = status["finished"] - status["started"]
            print(f"batch job: {args.load_queries} queries, {status['status']}, {took:.1f} s = {args.load_queries / took:.1f} queries/s")
            t0 = time.perf_counter()
            for k in range(args.retention_queries):
                sync(sync_q[k % len(sync_q)])
            wall = time.perf_counter() - t0
        db_bytes = sum(f.stat().st_size for f in work.glob("jobs.sqlite*"))
        res_bytes = _folder_bytes(work / "jobs-results")
        print(
            f"after {args.retention_queries} more sync queries ({args.retention_queries / wall:.1f}/s, --max-stored-results "
            f"{args.max_stored_results}): database {db_bytes / 1e6:.2f} MB, results folder {res_bytes / 1e6:.2f} MB"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
