"""Benchmark Level 2 → 3: LISS, censoring, QNORM and inference on synthetic plates.

Synthetic 384-well plates with two bead sets (490 genes + 10 invariant probes each, like the
EPSILON pool) are generated in memory (not timed). Measured, with the baselines of the same run:

* **LISS** (:func:`opencmap.pipeline.liss.liss_plate`, both bead sets) vs a naive baseline that
  fits each sample's calibration with ``scipy.optimize.curve_fit`` and no smoothing (the least a
  LISS implementation must do per sample);
* **QNORM** (:func:`opencmap.pipeline.qnorm.qnorm_plate`, CMap tie rule) vs the common pandas
  recipe (rank ``first`` → per-rank mean; no tie handling);
* **inference** (:func:`opencmap.pipeline.infer.apply_inference`, 978 → ``--genes`` genes,
  column blocks, clipping) vs the bare matrix product ``W @ X`` (the memory/compute floor).

    .venv/bin/python benchmarks/bench_level2to3.py               # 2 plates, 11,350 inferred genes
    .venv/bin/python benchmarks/bench_level2to3.py --plates 20   # bigger run (~1 GB peak)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from opencmap.core.gct import GCT
from opencmap.pipeline.censor import censor_plate
from opencmap.pipeline.infer import InferenceModel, apply_inference
from opencmap.pipeline.liss import LISS_REFERENCE, liss_plate
from opencmap.pipeline.qnorm import qnorm_plate

WELLS = 384


def bead_set(rng: np.random.Generator, prefix: str) -> GCT:
    levels = np.array(LISS_REFERENCE[1:11])
    gain = rng.uniform(0.8, 1.2, WELLS)
    offset = rng.uniform(-1, 1, WELLS)
    genes = rng.uniform(4, 14, (490, 1)) + rng.normal(0, 0.3, (490, WELLS))
    cal = levels[:, None] + rng.normal(0, 0.1, (10, WELLS))
    data = np.exp2(np.vstack([cal, genes]) * gain + offset)
    rids = [f"CAL{i:02d}" for i in range(1, 11)] + [f"{prefix}{i}" for i in range(490)]
    meta = pd.DataFrame(
        {"pert_type": ["trt_cp"] * WELLS, "count_mean": rng.uniform(60, 100, WELLS), "count_cv": rng.uniform(10, 20, WELLS)},
        index=[f"P:{i}" for i in range(WELLS)],
    )
    return GCT(data, rids=rids, col_meta=meta)


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def naive_liss(gex: GCT) -> np.ndarray:
    x = np.log2(np.maximum(gex.data.astype(np.float64), 1))
    ref = np.array(LISS_REFERENCE[:11])
    out = np.empty_like(x)
    for s in range(x.shape[1]):
        cobs = np.r_[max(np.percentile(x[:, s], 1), 1), x[:10, s]]
        p, _ = curve_fit(lambda v, a, b, c: a * v**b + c, cobs, ref, p0=(1, 1, 0), maxfev=5000)
        out[:, s] = np.clip(p[0] * np.maximum(x[:, s], 1) ** p[1] + p[2], 0, 15)
    return out


def pandas_qnorm(df: pd.DataFrame) -> pd.DataFrame:
    rank_mean = df.stack().groupby(df.rank(method="first").stack().astype(int)).mean()
    return df.rank(method="min").stack().astype(int).map(rank_mean).unstack()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plates", type=int, default=2)
    ap.add_argument("--genes", type=int, default=11_350, help="inferred genes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    plates = [{"dp52": bead_set(rng, "a"), "dp53": bead_set(rng, "b")} for _ in range(args.plates)]
    n_prof = args.plates * WELLS

    t_liss = t_censor = t_qnorm = t_naive = t_pandas = 0.0
    level3 = []
    for p in plates:
        (norm, qc), dt = timed(liss_plate, p)
        t_liss += dt
        (kept, _), dt = timed(censor_plate, norm, qc)
        t_censor += dt
        l3, dt = timed(qnorm_plate, kept)
        t_qnorm += dt
        level3.append(l3)
        _, dt = timed(naive_liss, p["dp52"])
        t_naive += 2 * dt  # two bead sets
        _, dt = timed(pandas_qnorm, norm.to_frame())
        t_pandas += dt

    lm = [f"L{i}" for i in range(978)]
    weights = rng.normal(0, 0.01, (args.genes, 979))
    weights[:, 0] = 8.0
    quality = pd.DataFrame({"r_holdout": rng.uniform(0, 1, args.genes)}, index=pd.Index([f"G{i}" for i in range(args.genes)], dtype=object))
    model = InferenceModel(tuple(lm), tuple(quality.index), weights, quality)
    x = GCT(rng.normal(8, 2, (978, n_prof)), rids=lm, cids=[f"S{i}" for i in range(n_prof)])
    _, t_inf = timed(apply_inference, x, model)
    xd = x.data.astype(np.float64)
    _, t_mm = timed(lambda: weights[:, 1:] @ xd + weights[:, [0]])

    print(f"{args.plates} plate(s) x {WELLS} wells, 2 bead sets x 500 analytes; inference 978 -> {args.genes}")
    print(f"LISS      {t_liss:8.2f} s  {n_prof / t_liss:9.0f} profiles/s   x{t_naive / t_liss:5.2f} faster than naive curve_fit loop ({t_naive:.2f} s)")
    print(f"censor    {t_censor:8.3f} s")
    print(f"QNORM     {t_qnorm:8.3f} s  {n_prof / t_qnorm:9.0f} profiles/s   x{t_pandas / t_qnorm:5.2f} vs pandas rank/mean recipe ({t_pandas:.3f} s)")
    print(f"inference {t_inf:8.2f} s  {n_prof / t_inf:9.0f} profiles/s   x{t_mm / t_inf:5.2f} of the bare W @ X time ({t_mm:.2f} s)")


if __name__ == "__main__":
    main()
