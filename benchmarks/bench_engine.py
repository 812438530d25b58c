"""Per-call cost of the query engine: ``run_query`` called repeatedly vs one reused ``Engine``.

Builds (once, not timed) a synthetic store of ``--n`` signatures (default 100,000) x ``--genes``
genes (default 978, all landmark; small on disk so the per-call overheads that depend on the
number of signatures - NCS groups, summaries, backgrounds, gene lookup - dominate) with tau
backgrounds, then times in one process:

* ``run_query``: ``run_query(store_path, up, down)`` called ``--repeat`` times (a new store handle
  and engine per call; what a script or notebook does);
* ``engine``: the same query through one :class:`~opencmap.query.Engine` reused;
* ``engine batch``: 20 queries in one :meth:`Engine.run`;
* ``first call``: a new engine's first query (every store-derived structure built).

Post-processing is on (NCS, tau, summaries; FDR with the ``cmap`` method so no random-query
null is built). With ``--base SRC`` the same figures are measured with another source tree (e.g.
``main``) in a subprocess of the same run (``--rounds`` times each, alternating the order; the
best round of each is kept, and with more than two rounds the median of the rounds too), and the
ratios before/after are printed. With ``--base`` the store is built by the base tree (folder
``store_<n>x<genes>_base``), in its store format, which both trees read::

    git archive main src | tar -x -C /tmp/base
    PYTHONPATH=src .venv/bin/python benchmarks/bench_engine.py --work /tmp/bench --base /tmp/base/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CELLS = np.array(["A375", "A549", "HA1E", "HCC515", "HEPG2", "HT29", "MCF7", "PC3", "VCAP"])


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def synthetic_genes(n_genes: int, n_landmark: int | None = None) -> pd.DataFrame:
    """The synthetic stores' gene table: ids 100.., the first ``n_landmark`` genes (default all) landmarks."""
    return pd.DataFrame(
        {
            "pr_gene_symbol": [f"G{i}" for i in range(n_genes)],
            "pr_is_lm": 1 if n_landmark is None else (np.arange(n_genes) < n_landmark).astype(int),
            "pr_is_bing": 1,
        },
        index=pd.Index([str(100 + i) for i in range(n_genes)], name="rid"),
    )


def synthetic_signatures(idx: np.ndarray, n: int) -> pd.DataFrame:
    """Metadata of signatures ``idx`` of an ``n``-signature synthetic store (6 per compound, every
    20th a vehicle control, 200 exemplars in all)."""
    return pd.DataFrame(
        {
            "pert_id": [f"BRD-{i // 6:06d}" for i in idx],
            "pert_iname": [f"drug{i // 6}" for i in idx],
            "pert_type": np.where(idx % 20 == 0, "ctl_vehicle", "trt_cp"),
            "cell_id": CELLS[(idx // 2) % len(CELLS)],
            "is_exemplar_sig": ((idx % max(n // 200, 1)) == 0).astype(int),
        },
        index=pd.Index([f"SIG{i:07d}" for i in idx], name="cid"),
    )


def make_store(work: Path, n: int, n_genes: int, *, n_landmark: int | None = None, suffix: str = "") -> Path:
    """A synthetic store (standard-normal z-scores) with tau backgrounds of 200 exemplar queries.

    ``n_landmark``: the first genes flagged landmark (the ``lm`` space background queries are
    picked from); default all of them."""
    from opencmap.core.gct import GCT
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    dest = work / ((f"store_{n}x{n_genes}" if n_landmark is None else f"store_{n}x{n_genes}_lm{n_landmark}") + suffix)
    if (dest / "manifest.json").exists():
        return dest
    rng = np.random.default_rng(0)
    genes = synthetic_genes(n_genes, n_landmark)
    meta = synthetic_signatures(np.arange(n), n)
    data = rng.standard_normal((n_genes, n), dtype=np.float32)
    gct = GCT(data, rids=list(genes.index), cids=list(meta.index), row_meta=genes, col_meta=meta)
    t0 = time.perf_counter()
    store = build_store(dest, gct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_background(store)
    print(f"  built {dest} in {time.perf_counter() - t0:.1f} s (not timed)", flush=True)
    return dest


def median_ms(fn, repeat: int, clock: Any = time.perf_counter) -> float:
    """Median time of ``repeat`` calls of ``fn`` in ms (``clock``: wall, or ``time.process_time``)."""
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return 1000 * float(np.median(times))


def measure(path: Path, repeat: int) -> dict[str, float]:
    from opencmap.query import Engine, Query, run_query

    warnings.simplefilter("ignore")
    genes = [f"G{i}" for i in range(200)]
    up, down = genes[:50], genes[50:100]
    opts = {"fdr_method": "cmap"}
    queries = [Query(f"q{j}", up=tuple(genes[j : j + 50]), down=tuple(genes[j + 100 : j + 150])) for j in range(20)]
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    engine = Engine(str(path))
    engine.run(Query("q", up=tuple(up), down=tuple(down)), **opts)
    out["first call"] = 1000 * (time.perf_counter() - t0)
    run_query(str(path), up, down, **opts)  # warm the page cache and compiled kernels
    out["run_query"] = median_ms(lambda: run_query(str(path), up, down, **opts), repeat)
    out["engine"] = median_ms(lambda: engine.run(Query("q", up=tuple(up), down=tuple(down)), **opts), repeat)
    out["engine batch 20"] = median_ms(lambda: engine.run(queries, **opts), max(3, repeat // 3))
    return out


def parse_args(doc: str, *, n: int, rounds: int) -> argparse.Namespace:
    """The options of the before/after engine benchmarks (this one and ``bench_engine_cpu.py``)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the synthetic store (kept for reruns)")
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--genes", type=int, default=978)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=rounds, help="measurements per tree, alternating the order")
    parser.add_argument("--base", type=Path, help="source tree (its src/) to measure as 'before' in a subprocess")
    parser.add_argument("--measure-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def alternating_rounds(script: str, args: argparse.Namespace, path: Path, show: Any = None) -> dict[str, list[Any]]:
    """``{"before"?, "after": [what `script --measure-only` printed (JSON), per round]}``: each
    tree (``args.base`` as "before", this one as "after") measured ``args.rounds`` times in a
    subprocess, alternating the order (before, after, after, before, ...: the cores are shared);
    ``show(measured)``: what to print of each round (default: all of it)."""
    trees = ([("before", args.base)] if args.base else []) + [("after", None)]
    rounds: dict[str, list[Any]] = {label: [] for label, _ in trees}
    for r in range(args.rounds):
        for label, src in trees if r % 2 == 0 else trees[::-1]:
            env = dict(os.environ)
            if src is not None:
                env["PYTHONPATH"] = str(src)
            cmd = [sys.executable, script, "--work", str(args.work), "--repeat", str(args.repeat), "--measure-only", str(path)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rounds[label].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"[round {r + 1} {label}] {load()} {rounds[label][-1] if show is None else show(rounds[label][-1])}", flush=True)
    return rounds


def before_after(script: str, doc: str, measure_fn: Any, *, n: int, rounds: int, show: Any = None) -> tuple[argparse.Namespace, dict | None]:
    """Parse the options; in a ``--measure-only`` subprocess print ``measure_fn(store, repeat)``
    as JSON and return no rounds; otherwise build the store and return :func:`alternating_rounds`."""
    args = parse_args(doc, n=n, rounds=rounds)
    if args.measure_only is not None:
        print(json.dumps(measure_fn(args.measure_only, args.repeat)))
        return args, None
    args.work.mkdir(parents=True, exist_ok=True)
    if args.build_only:  # (in the base tree's subprocess, below)
        print(make_store(args.work, args.n, args.genes, suffix="_base"))
        return args, None
    if args.base is None:
        path = make_store(args.work, args.n, args.genes)
    else:  # built by the older tree, in its store format: the newer tree reads older formats, not the reverse
        cmd = [sys.executable, script, "--work", str(args.work), "--n", str(args.n), "--genes", str(args.genes), "--build-only"]
        res = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(args.base)}, capture_output=True, text=True, check=True)
        path = Path(res.stdout.strip().splitlines()[-1])
    return args, alternating_rounds(script, args, path, show)


def main() -> None:
    args, rounds = before_after(__file__, __doc__, measure, n=100_000, rounds=2)
    if rounds is None:
        return
    # per figure, the best round of each tree (the least disturbed by other work on the machine)
    runs = {label: {key: min(x[key] for x in rs) for key in rs[0]} for label, rs in rounds.items()}
    print(f"\n{args.n:,} signatures x {args.genes} genes, median of {args.repeat} calls, best of {args.rounds} rounds (ms):")
    for key in runs["after"]:
        row = "  ".join(f"{label} {runs[label][key]:8.1f}" for label in runs)
        ratio = f"  before/after {runs['before'][key] / runs['after'][key]:5.2f}x" if "before" in runs else ""
        print(f"  {key:16s} {row}{ratio}")
    for label, r in runs.items():
        print(f"  [{label}] run_query / reused engine: {r['run_query'] / r['engine']:.2f}x")
    if "before" in runs and args.rounds > 2:  # the best round rides on one quiet moment; the median of rounds too
        med = {label: {key: float(np.median([x[key] for x in rs])) for key in rs[0]} for label, rs in rounds.items()}
        print(f"  median of the {args.rounds} rounds (ms):")
        for key in med["after"]:
            print(f"  {key:16s} before {med['before'][key]:8.1f}  after {med['after'][key]:8.1f}  "
                  f"before/after {med['before'][key] / med['after'][key]:5.2f}x")


if __name__ == "__main__":
    main()
