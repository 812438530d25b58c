#!/usr/bin/env python
"""Store build rate and disk per signature on a synthetic Level 5 matrix of the real gene space.

Builds, from one GEO-like ``.gctx`` of ``--sigs`` signatures x the 12,328 L1000 genes (bundled
gene table: LM/BING/AIG spaces), (a) a BING-only store without the signature-major copy and
(b) the default store (lm + bing + full, signature-major copy), and prints for each the wall and
CPU time, signatures per second and the disk per signature, then the linear extrapolation to the
real releases' signature counts (labelled as such: the rate depends on the disk and the load;
on a shared machine the CPU-time rate says what a quiet one would do, roughly).
Baseline in the same run: reading the matrix alone (h5py, whole), the floor of any build.
Default 2,000 signatures (~100 MB): well under 2 min on a quiet 2-core machine.

Usage::

    .venv/bin/python benchmarks/bench_store_build.py [--sigs 2000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from opencmap.core.gct import GCT  # noqa: E402
from opencmap.datasets import gene_table  # noqa: E402
from opencmap.io import write_gctx  # noqa: E402
from opencmap.query.store import build_store  # noqa: E402

RELEASE_SIGS = {"GSE92742": 473_647, "GSE70138": 118_050, "LINCS2020 trt_cp": 720_216}


def _inputs(folder: Path, n_sigs: int) -> tuple[Path, Path, Path]:
    genes = gene_table()
    rids = genes["pr_gene_id"].astype(str).tolist()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((len(rids), n_sigs), dtype=np.float32)
    cids = [f"SIG{i:07d}" for i in range(n_sigs)]
    matrix = folder / "level5.gctx"
    write_gctx(GCT(data, rids=rids, cids=cids), matrix)
    gene_info = folder / "gene_info.txt"
    genes[["pr_gene_id", "pr_gene_symbol", "pr_is_lm", "pr_is_bing"]].to_csv(gene_info, sep="\t", index=False)
    sig_info = folder / "sig_info.txt"
    pd.DataFrame({"sig_id": cids, "pert_id": [f"BRD-K{i % 997:05d}" for i in range(n_sigs)],
                  "pert_iname": [f"cpd{i % 997}" for i in range(n_sigs)], "pert_type": "trt_cp",
                  "cell_id": [("A375", "MCF7", "PC3")[i % 3] for i in range(n_sigs)]}).to_csv(sig_info, sep="\t", index=False)
    return matrix, gene_info, sig_info


def _timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sigs", type=int, default=2000)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        matrix, gene_info, sig_info = _inputs(folder, args.sigs)

        def read() -> None:
            with h5py.File(matrix, "r") as h5:
                h5["0/DATA/0/matrix"][...]

        read()  # page cache warm, as for the builds
        build_store(folder / "warmup", matrix, sig_info=sig_info, gene_info=gene_info, spaces=["lm"],
                    signature_major=False)  # numba compilation and imports, outside the timings
        t_read, _ = _timed(read)
        print(f"{args.sigs} signatures x 12,328 genes; reading the matrix alone: {t_read:.2f} s "
              f"({args.sigs / t_read:,.0f} sig/s)")
        cases = {
            "bing only, no signature-major": {"spaces": ["bing"], "signature_major": False},
            "lm+bing+full, signature-major": {},
        }
        for i, (label, kw) in enumerate(cases.items()):
            dest = folder / f"store{i}"
            wall, cpu = _timed(lambda dest=dest, kw=kw: build_store(dest, matrix, sig_info=sig_info, gene_info=gene_info, **kw))
            per_sig = _disk(dest) / args.sigs
            rate = args.sigs / wall
            print(f"{label:<32} {wall:7.2f} s wall {cpu:7.2f} s CPU  {rate:8,.0f} sig/s ({args.sigs / cpu:,.0f} per CPU s)  "
                  f"{per_sig / 1e3:7.1f} KB/signature  RATIO build/read-only = {t_read / wall:.2f}")
            for name, n in RELEASE_SIGS.items():
                print(f"    extrapolated (linear) {name:<17} {n / rate / 60:7.1f} min  {n * per_sig / 1e9:7.1f} GB")


if __name__ == "__main__":
    main()
