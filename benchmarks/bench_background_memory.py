"""Client memory of a tau background build: one pass vs chunks of queries (Settings.background_memory).

Builds (once, not timed; ``bench_engine.make_store``) a synthetic store of ``--sigs`` signatures
x ``--genes`` genes in ``--work``, then builds the backgrounds of ``--queries`` queries (tail ``both``) twice, each in a
fresh child process: with a budget the whole build fits in (one pass, the baseline) and with
``--budget`` bytes (chunks of queries). Prints per build the peak RSS above the child's RSS
before the build (``resource.getrusage``; it includes the store's mapped file pages the scoring
reads) and the peak anonymous RSS above it (sampled every 5 ms: the process's own memory), wall and CPU time and bytes per (signature, query),
the chunked/one-pass ratios, and whether the background files are the same bytes.

    PYTHONPATH=src python benchmarks/bench_background_memory.py --work /tmp/bgmem --sigs 50000 --queries 300 --budget 200000000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import make_store  # noqa: E402  the same synthetic store (with 200-query backgrounds, not timed)

def _rss_now() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _anon_now() -> int:
    """Anonymous resident bytes (the process's own memory; not the store's mapped file pages)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class AnonPeak:
    """Samples :func:`_anon_now` every 5 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        self.peak = _anon_now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _anon_now())

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _anon_now())


def child(store: Path, n_queries: int, budget: int) -> None:
    """One background build in this process; prints JSON (peak RSS above the start, times, digest)."""
    from opencmap.backends import LocalBackend, Settings
    from opencmap.query.background import build_background
    from opencmap.query.store import Store

    st = Store(store)
    step = max(st.n_signatures // n_queries, 1)
    queries = list(st.sig_ids[::step][:n_queries])
    _ = st.sig_info, st.n_signatures
    before, anon_before = _rss_now(), _anon_now()
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(), AnonPeak() as anon:
        warnings.simplefilter("ignore")
        build_background(st, query_sigs=queries, backend=LocalBackend(settings=Settings(background_memory=budget)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    after = Store(store)
    digest = hashlib.sha256()
    for key in sorted(after.manifest["backgrounds"]):
        folder = after.path / after.manifest["backgrounds"][key]["dir"]
        for fname in ("values.npy", "counts.npy"):
            digest.update((folder / fname).read_bytes())
    print(json.dumps({"peak": peak - before, "anon": anon.peak - anon_before, "wall": wall, "cpu": cpu, "digest": digest.hexdigest()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the synthetic store (kept for reruns)")
    parser.add_argument("--sigs", type=int, default=50_000)
    parser.add_argument("--genes", type=int, default=978)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--budget", type=int, default=200_000_000, help="background_memory of the chunked build (bytes)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.queries, args.budget)
        return
    from opencmap.query.background import query_chunk

    args.work.mkdir(parents=True, exist_ok=True)
    store = make_store(args.work, args.sigs, args.genes)
    pairs = args.sigs * args.queries
    from opencmap.backends import Settings

    cfg = Settings()
    chunk = query_chunk(args.sigs, args.queries, args.budget, fixed=cfg.query_block_bytes + cfg.es_block_bytes)
    print(f"{args.sigs} signatures x {args.queries} queries; chunked budget {args.budget} bytes -> {chunk} queries per chunk "
          f"({-(-args.queries // chunk)} chunks); load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    res = {}
    for name, budget in (("one pass", 1 << 62), ("chunked", args.budget)):
        cmd = [sys.executable, __file__, "--work", str(args.work), "--queries", str(args.queries), "--budget", str(budget), "--child", str(store)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout.strip().splitlines()[-1]
        res[name] = r = json.loads(out)
        print(f"  {name:9s} peak RSS +{r['peak'] / 1e6:8.1f} MB ({r['peak'] / pairs:5.1f} B/pair), anonymous +{r['anon'] / 1e6:8.1f} MB "
              f"({r['anon'] / pairs:5.1f} B/pair)  wall {r['wall']:7.2f} s  cpu {r['cpu']:7.2f} s")
    a, b = res["one pass"], res["chunked"]
    print(f"chunked / one pass: peak RSS {b['peak'] / a['peak']:.3f}  anonymous {b['anon'] / a['anon']:.3f}  "
          f"wall {b['wall'] / a['wall']:.2f}  cpu {b['cpu'] / a['cpu']:.2f}")
    print(f"same background bytes: {a['digest'] == b['digest']}")


if __name__ == "__main__":
    main()
