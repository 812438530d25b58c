#!/usr/bin/env python
"""A store build through a distributed backend (tasks in other processes) against the local build.

Builds the default store (lm + bing + full, signature-major copy) of one GEO-like ``.gctx`` of
``--sigs`` signatures x the 12,328 L1000 genes twice: locally (reader thread, ranking in this
process, writer thread: the baseline, measured in the same run) and with a backend whose
``map_blocks`` runs :func:`opencmap.io.store.writer.build_block_task` in a pool of ``--workers``
spawned processes (each block read from the file there, its ranks and scores pickled back; this
process writes). Prints both wall times and their ratio, and whether every file is the same.
On one machine the process pool only adds the pickling of each block's outputs: the ratio shows
that cost; a cluster's gain comes from more machines reading and ranking.

Usage::

    .venv/bin/python benchmarks/bench_distributed_build.py [--sigs 2000] [--block 256] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_store_build import _inputs  # noqa: E402

from opencmap.backends import LocalBackend  # noqa: E402
from opencmap.query.store import build_store  # noqa: E402


class ProcessPoolBackend(LocalBackend):
    """Tasks in a pool of spawned processes, results in task order (what a cluster backend does)."""

    distributed = True

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        super().__init__()
        self.pool = pool

    def map_blocks(self, kernel: Any, tasks: Any) -> Any:
        yield from self.pool.map(kernel, list(tasks))


def _files(store: Path) -> dict[str, bytes]:
    out = {str(f.relative_to(store)): f.read_bytes() for f in store.rglob("*") if f.is_file() and f.name != ".lock"}
    manifest = json.loads(out.pop("manifest.json"))
    manifest.pop("created")
    out["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigs", type=int, default=2000)
    ap.add_argument("--block", type=int, default=256, help="signatures per block (= per task)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        matrix, gene_info, sig_info = _inputs(folder, args.sigs)
        kw = {"sig_info": sig_info, "gene_info": gene_info, "block_size": args.block}
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            backend = ProcessPoolBackend(pool)
            # warm-up: imports and numba caches here and in every worker, outside the timings
            build_store(folder / "warm_local", matrix, spaces=["lm"], **kw)
            warm_block = max(1, args.sigs // (2 * args.workers))  # every worker gets a task
            build_store(folder / "warm_pool", matrix, spaces=["lm"], backend=backend, **{**kw, "block_size": warm_block})
            t = time.perf_counter()
            build_store(folder / "local", matrix, **kw)
            t_local = time.perf_counter() - t
            t = time.perf_counter()
            build_store(folder / "pool", matrix, backend=backend, **kw)
            t_pool = time.perf_counter() - t
        same = _files(folder / "local") == _files(folder / "pool")
        n_tasks = -(-args.sigs // args.block)
        print(f"{args.sigs} signatures x 12,328 genes, lm+bing+full with signature-major copy, {n_tasks} blocks of {args.block}")
        print(f"local build (baseline)            {t_local:7.2f} s  {args.sigs / t_local:8,.0f} sig/s")
        print(f"{args.workers} spawned worker processes    {t_pool:7.2f} s  {args.sigs / t_pool:8,.0f} sig/s")
        print(f"RATIO distributed/local wall time = {t_pool / t_local:.2f}; files identical: {same}")


if __name__ == "__main__":
    main()
