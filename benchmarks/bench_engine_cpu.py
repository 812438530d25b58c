"""Per-query CPU cost of the query engine, before/after a change, with deterministic facts.

Wall-clock figures on a shared machine drift with other work; this benchmark prints, besides CPU
time, counts that do not drift, so a per-run overhead shows as a number that changed:

* ``python calls``: Python function calls of one query on the calling thread (``cProfile``:
  every call, primitive or not);
* ``kernel calls``: calls of the fused WTCS kernel (``set_enrichment_scores``), i.e. scan blocks;
* ``pool submits``: work items submitted to any ``concurrent.futures`` thread pool (the kernel's
  work units, the store's checker thread);
* ``peak traced KB``: peak memory allocated during the query as seen by ``tracemalloc`` (numpy
  arrays included), above what was allocated before it;

each for a reused engine (``engine``), a new engine per call (``run_query``) and a batch of 20
queries in one run (``engine batch 20``); then process CPU time per call (median of ``--repeat``
calls per round), with the min and the median over ``--rounds`` alternating rounds per tree and
their ratios before/after. The store (``--n`` signatures x ``--genes`` genes, tau backgrounds) is
the one of ``bench_engine.py``, built once (not timed) in ``--work``::

    git -C /work/main archive bbbd0bf src | tar -x -C /tmp/base
    PYTHONPATH=src .venv/bin/python benchmarks/bench_engine_cpu.py --work /tmp/bench --n 20000 --base /tmp/base/src
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import before_after, median_ms  # noqa: E402  (the same store, rounds and timing)

_KERNEL = "set_enrichment_scores"
_FACTS = ("python calls", "kernel calls", "pool submits", "peak traced KB")


def _facts(fn) -> dict[str, float]:
    """Deterministic counts of one call of ``fn`` (already warmed up)."""
    import cProfile
    import pstats
    import tracemalloc
    from concurrent.futures import ThreadPoolExecutor

    submits = [0]
    original = ThreadPoolExecutor.submit

    def counting_submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        submits[0] += 1
        return original(self, *args, **kwargs)

    ThreadPoolExecutor.submit = counting_submit  # type: ignore[method-assign]
    try:
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
    finally:
        ThreadPoolExecutor.submit = original  # type: ignore[method-assign]
    stats = pstats.Stats(prof)
    kernel = sum(v[1] for (path, _, name), v in stats.stats.items() if name == _KERNEL and path.endswith("wtcs.py"))  # type: ignore[attr-defined]
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"python calls": stats.total_calls, "kernel calls": kernel, "pool submits": submits[0], "peak traced KB": round((peak - base) / 1024)}  # type: ignore[attr-defined]


def measure(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    from opencmap.query import Engine, Query, run_query

    warnings.simplefilter("ignore")
    genes = [f"G{i}" for i in range(200)]
    up, down = genes[:50], genes[50:100]
    opts = {"fdr_method": "cmap"}
    query = Query("q", up=tuple(up), down=tuple(down))
    batch = [Query(f"q{j}", up=tuple(genes[j : j + 50]), down=tuple(genes[j + 100 : j + 150])) for j in range(20)]
    engine = Engine(str(path))
    calls = {
        "engine": lambda: engine.run(query, **opts),
        "run_query": lambda: run_query(str(path), up, down, **opts),
        "engine batch 20": lambda: engine.run(batch, **opts),
    }
    for fn in calls.values():  # warm: compiled kernels, the store's checks, the reference index, page cache
        fn()
        fn()
    out: dict[str, dict[str, float]] = {}
    for key, fn in calls.items():
        out[key] = _facts(fn)
        # process CPU time: all threads of the process
        out[key]["cpu ms"] = median_ms(fn, repeat if key != "engine batch 20" else max(3, repeat // 3), clock=time.process_time)
    return out


def main() -> None:
    show = lambda m: f"cpu ms { {k: round(v['cpu ms'], 1) for k, v in m.items()} }"  # noqa: E731
    args, rounds = before_after(__file__, __doc__, measure, n=20_000, rounds=3, show=show)
    if rounds is None:
        return
    labels = list(rounds)
    print(f"\n{args.n:,} signatures x {args.genes} genes; facts of one warmed call (last round):")
    for key in rounds["after"][0]:
        print(f"  {key}")
        for fact in _FACTS:
            vals = {label: rounds[label][-1][key][fact] for label in labels}
            ratio = f"  after/before {vals['after'] / vals['before']:5.2f}x" if "before" in vals and vals["before"] else ""
            print(f"    {fact:16s} " + "  ".join(f"{label} {vals[label]:>10,.0f}" for label in labels) + ratio)
    print(f"\nCPU ms per call (median of {args.repeat} calls per round; min and median over {args.rounds} rounds):")
    for key in rounds["after"][0]:
        cells, stats = [], {}
        for label in labels:
            xs = [rd[key]["cpu ms"] for rd in rounds[label]]
            stats[label] = (min(xs), float(np.median(xs)))
            cells.append(f"{label} min {stats[label][0]:8.1f} median {stats[label][1]:8.1f}")
        ratio = ""
        if "before" in stats:
            b, a = stats["before"], stats["after"]
            ratio = f"  before/after min {b[0] / a[0]:5.2f}x median {b[1] / a[1]:5.2f}x"
        print(f"  {key:16s} " + "  ".join(cells) + ratio)


if __name__ == "__main__":
    main()
