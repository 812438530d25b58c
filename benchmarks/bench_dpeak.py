#!/usr/bin/env python
"""Peak-calling (dpeak) benchmark: opencmap's numba kernels vs a plain scikit-learn KMeans
implementation of the same ``kmeans_viable`` procedure, measured in the same run.

Data: a synthetic plate (:func:`opencmap.pipeline.deconvolve.simulate_plate`): two log-normal
peaks per analyte, ~``--beads`` beads per analyte plus 20 % unclassified beads. With the defaults
for a full plate (``--wells 384 --beads 65``) that is ~15 M beads, like a real 384-well plate.

Timed:

* **ours**: :func:`opencmap.pipeline.deconvolve.call_peaks` (grouping, seeding randomness, 1-D
  k-means on sorted data with prefix sums, assignment) on ``--threads`` threads, then
  :func:`opencmap.pipeline.flip.flip_correct`; numba compilation is done (and reported) before.
* **baseline**: per analyte, ``sklearn.cluster.KMeans(k, n_init=5)`` for k = 2..4 with the same
  window, viability and 65/35 rules, numpy medians (one BLAS/OpenMP thread, which is fastest for
  these tiny problems); run on ``--baseline-analytes`` analytes of ``--baseline-wells`` wells and
  scaled to the plate (it would take hours on all of them).
* LXB reading speed on the real test-plate files, when the shared data is present.

Default size is modest (48 wells); ``--wells 384`` is the full plate (peak memory ~1.5 GB).

Usage::

    .venv/bin/python benchmarks/bench_dpeak.py [--wells 48] [--beads 65] [--threads 2]
        [--baseline-wells 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from opencmap.io.beads import Beads  # noqa: E402
from opencmap.io.lxb import read_lxb_beads  # noqa: E402
from opencmap.pipeline.deconvolve import call_peaks, simulate_plate  # noqa: E402
from opencmap.pipeline.flip import flip_correct  # noqa: E402


def baseline_well(beads: Beads, not_duo: set[int], seed: int, analytes: range) -> np.ndarray:
    """Plain kmeans_viable with scikit-learn for some analytes of one well: (len, 2) values."""
    from sklearn.cluster import KMeans

    out = np.ones((max(analytes) + 1, 2))
    for a in analytes:
        y = beads.intensity[beads.analyte == a]
        if y.size == 0:
            continue
        x = np.log2(np.maximum(y, 1))
        x = x[(x >= 4) & (x <= (14 if a in not_duo else 15))]
        med = np.floor(2 ** np.median(x) + 0.5) if x.size else 1.0
        if a in not_duo or x.size < 20:
            out[a - 1] = med
            continue
        n = x.size
        best, best_labels, best_viable = 70.0, np.zeros(n, dtype=int), np.array([True])
        for k in range(2, 5):
            km = KMeans(n_clusters=k, n_init=5, random_state=seed).fit(x.reshape(-1, 1))
            sup = np.bincount(km.labels_, minlength=k)
            if (sup > 0).sum() < 2:
                continue
            top = np.sort(sup)[::-1]
            dist = abs(100 * top[0] / n - 65) + abs(100 * top[1] / n - 35)
            viable = (sup >= 10) & (100 * sup / n >= 10)
            if viable.sum() > 1 and dist < best:
                best, best_labels, best_viable = dist, km.labels_, viable
        peaks = [(int((best_labels == j).sum()), np.median(x[best_labels == j])) for j in np.flatnonzero(best_viable)]
        peaks.sort(key=lambda p: -p[0])
        vals = [np.floor(2 ** p[1] + 0.5) for p in peaks[:2]] + [med] * (2 - min(2, len(peaks)))
        if len(peaks) < 2 or peaks[1][0] < 10 or 100 * peaks[1][0] / sum(p[0] for p in peaks) < 10:
            vals = [vals[0], vals[0]]
        out[a - 1] = vals
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wells", type=int, default=48)
    ap.add_argument("--beads", type=float, default=65.0, help="mean beads per analyte and well")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-wells", type=int, default=1)
    ap.add_argument("--baseline-analytes", type=int, default=50, help="analytes per baseline well (scaled to 500)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = time.perf_counter()
    sim = simulate_plate(args.wells, np.random.default_rng(args.seed), beads_per_analyte=args.beads)
    n_beads = sum(b.analyte.size for b in sim.wells.values())
    print(f"synthetic plate: {args.wells} wells, {n_beads / 1e6:.1f} M beads ({time.perf_counter() - t:.1f} s to simulate)")

    first = dict(list(sim.wells.items())[:1])
    t = time.perf_counter()
    calls = call_peaks(first, seed=1, not_duo=sim.not_duo, n_jobs=1)
    flip_correct(calls.value_hi, calls.value_lo, calls.count_hi, calls.count_lo, not_duo=sim.not_duo)
    print(f"numba compile + first well: {time.perf_counter() - t:.1f} s (cached on disk afterwards)")

    t = time.perf_counter()
    calls = call_peaks(sim.wells, seed=1, not_duo=sim.not_duo, n_jobs=args.threads)
    t_peaks = time.perf_counter() - t
    t = time.perf_counter()
    flip_correct(calls.value_hi, calls.value_lo, calls.count_hi, calls.count_lo, not_duo=sim.not_duo)
    t_flip = time.perf_counter() - t
    ours = t_peaks + t_flip
    print(
        f"ours ({args.threads} threads): peaks {t_peaks:.2f} s + flip {t_flip:.2f} s = {ours:.2f} s "
        f"-> {args.wells / ours:.1f} wells/s; a 384-well plate in {384 * ours / args.wells:.1f} s "
        f"(peak RSS {peak_rss_mb():.0f} MB)"
    )

    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("baseline skipped: scikit-learn is not installed (pip install scikit-learn)")
    else:
        from threadpoolctl import threadpool_limits

        nb = max(1, min(args.baseline_wells, args.wells))
        na = max(1, min(args.baseline_analytes, 500 - 11))
        analytes = range(12, 12 + na)  # duo analytes
        wells = list(sim.wells.items())[:nb]
        t = time.perf_counter()
        with threadpool_limits(1):  # tiny problems: OpenMP threads only add overhead
            base = [baseline_well(b, set(sim.not_duo), args.seed, analytes) for _, b in wells]
        t_base = (time.perf_counter() - t) / nb * (500 / na)
        ours_per_well = ours / args.wells
        rows = np.array(analytes) - 1
        agree = np.mean([np.mean(np.abs(np.log2(base[i][rows, 0] / calls.value_hi[rows, i])) < 0.1) for i in range(nb)])
        print(
            f"baseline (scikit-learn KMeans, {nb} well(s) x {na} analytes, scaled to 500): {t_base:.2f} s/well -> "
            f"{1 / t_base:.3f} wells/s; a 384-well plate in {384 * t_base / 60:.1f} min"
        )
        print(f"speed-up ours / baseline: {t_base / ours_per_well:.0f}x  (hi-gene values within 7 %: {agree:.3f})")

    data = REPO.parent / "shared/data/pipeline/test_plate/lxb"
    if data.is_dir():
        files = sorted(data.glob("*.lxb"))
        t = time.perf_counter()
        n = sum(read_lxb_beads(f).analyte.size for f in files)
        dt = time.perf_counter() - t
        print(f"LXB read: {len(files)} real wells, {n / 1e6:.2f} M beads in {dt:.2f} s ({1000 * dt / len(files):.1f} ms/well)")
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
