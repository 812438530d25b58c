"""Benchmark the synthetic compendium generator: profiles/s and peak memory at several sizes.

For each size, :func:`opencmap.datasets.make_compendium` runs in a fresh subprocess (so its peak
RSS is its own) and is compared with two baselines measured in the same run, also in fresh
subprocesses, for a matrix of the same shape written plate by plate:

* **h5py write** -- the raw cost of writing the same bytes: pre-made float32 plates appended to a
  resizable HDF5 dataset (the I/O floor);
* **rng + write** -- drawing the same number of float32 normals per plate and writing them (the
  floor of any generator with per-value noise).

Ratios > 1 say how much slower the generator is than the floor. Peak memory (RSS of the child,
including the interpreter and imports) should stay flat as the size grows.

    .venv/bin/python benchmarks/bench_datasets.py                      # 10k and 40k profiles
    .venv/bin/python benchmarks/bench_datasets.py --sizes 100000 400000 --n-inferred 0
    .venv/bin/python benchmarks/bench_datasets.py --sizes 1300000 --n-inferred 0 --ids-only  # 5 GB on disk
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

MEMORY_CAP = 4 * 1024**3

_GENERATE = textwrap.dedent(
    """
    import json, resource, sys, time
    from opencmap.datasets import make_compendium
    out, n, n_inferred, col_meta = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
    inferred = None if n_inferred == "all" else int(n_inferred)
    t = time.perf_counter()
    comp = make_compendium(out, "demo", n_profiles=n, n_inferred=inferred, overwrite=True, level3_col_meta=col_meta)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "profiles": comp.manifest["n_profiles"], "genes": comp.manifest["n_genes"],
                      "plates": comp.manifest["n_plates"], "bytes": comp.manifest["files"]["level3"]["bytes"],
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    """
)

_BASELINE = textwrap.dedent(
    """
    import json, resource, sys, time
    import h5py, numpy as np
    out, profiles, genes, plates, draw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    per = -(-profiles // plates)
    rng = np.random.default_rng(0)
    template = rng.standard_normal((per, genes), dtype=np.float32)
    t = time.perf_counter()
    with h5py.File(out, "w") as f:
        ds = f.create_dataset("0/DATA/0/matrix", shape=(0, genes), maxshape=(None, genes), dtype=np.float32,
                              chunks=(max(1, 65536 // (4 * genes)), genes))
        done = 0
        while done < profiles:
            k = min(per, profiles - done)
            block = rng.standard_normal((k, genes), dtype=np.float32) if draw else template[:k]
            ds.resize((done + k, genes))
            ds[done:done + k] = block
            done += k
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    """
)


def _run(code: str, *args: object) -> dict[str, float]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, preexec_fn=cap, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000], help="profiles per run (>= ~10,000: the demo design with one compound per MOA)")
    parser.add_argument("--n-inferred", default="1000", help="inferred genes per profile (number or 'all')")
    parser.add_argument("--ids-only", action="store_true", help="Level 3 column metadata = ids only (for huge runs)")
    parser.add_argument("--keep", type=Path, default=None, help="write into this folder instead of a temporary one")
    args = parser.parse_args()

    header = f"{'profiles':>9} {'genes':>6} {'plates':>6} {'MB':>8} {'gen s':>7} {'prof/s':>8} {'peak MB':>8} " \
             f"{'h5py s':>7} {'x h5py':>7} {'rng+h5 s':>8} {'x rng+h5':>8}"  # fmt: skip
    print(header)
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        for n in args.sizes:
            out = Path(tmp) / f"n{n}"
            gen = _run(_GENERATE, out, n, args.n_inferred, 0 if args.ids_only else 1)
            profiles, genes, plates = int(gen["profiles"]), int(gen["genes"]), int(gen["plates"])
            raw = _run(_BASELINE, Path(tmp) / "raw.h5", profiles, genes, plates, 0)
            rng = _run(_BASELINE, Path(tmp) / "rng.h5", profiles, genes, plates, 1)
            print(
                f"{profiles:>9} {genes:>6} {plates:>6} {gen['bytes'] / 1e6:>8.1f} {gen['seconds']:>7.2f} "
                f"{profiles / gen['seconds']:>8.0f} {gen['peak_rss'] / 1e6:>8.0f} {raw['seconds']:>7.2f} "
                f"{gen['seconds'] / raw['seconds']:>7.1f} {rng['seconds']:>8.2f} {gen['seconds'] / rng['seconds']:>8.1f}",
                flush=True,
            )
            for f in Path(tmp).iterdir():
                if f.is_file():
                    f.unlink()
            for f in out.iterdir():
                f.unlink()
            out.rmdir()


if __name__ == "__main__":
    main()
