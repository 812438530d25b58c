"""Benchmark the Level 3 → 4 → 5 pipeline: throughput (profiles/s) and peak memory.

A synthetic Level 3 GCTX is written first (not timed): replicate sets of 3 plates × 384 wells
(8 vehicle wells, the rest 376 treatments, each on all 3 plates), AIG-sized rows by default.
Then, in fresh processes (so peak memory is the run's own):

* **runner**: :func:`opencmap.pipeline.run.run_pipeline` end to end (read plate by plate,
  z-score, MODZ + QC + self-rank, CGS, final GCTX/sig_info writes, resumable work folder);
* **core (ours)**: z-scores + MODZ on one replicate set in memory (kernels only, like the
  baselines), and the same with our QC metrics;
* **baseline pandas**: a straightforward pandas implementation of the same maths
  (``DataFrame.median``, ``DataFrame.corr("spearman")``, weighted sum), same replicate set;
* **baseline cmapPy kernels**: ``cmapPy.math.robust_zscore`` + ``agg_wt_avg`` in the pinned cmapPy
  venv created by ``tools/cmappy_interop.py`` on the same replicate set in memory (weights from the
  landmarks, consensus of all genes, as ours); skipped with a message when that helper is absent;
* **baseline cmapPy end to end**: the runner's job done the cmapPy way on the first ``--cmappy-sets``
  replicate sets: ``parse`` each set's columns from the Level 3 GCTX, ``robust_zscore`` per plate,
  ``write_gctx`` Level 4, ``agg_wt_avg`` per replicate group, ``write_gctx`` Level 5; scaled per
  profile;
* **I/O floor**: raw h5py/numpy time to read the Level 3 bytes and write the Level 4 and Level 5
  bytes (no computing), so the runner can be placed between the floor and the baselines.

Each figure is printed with its ratio against the baselines measured in the same run, and the
runner's time is extrapolated to GSE92742's 1.3 M profiles. The load average is printed too.

    .venv/bin/python benchmarks/bench_pipeline.py                   # 2 sets (2,304 profiles) x 12,328 genes
    .venv/bin/python benchmarks/bench_pipeline.py --genes 978       # landmark space
    .venv/bin/python benchmarks/bench_pipeline.py --big             # 87 sets = 100,224 profiles x 12,328 (~15 GB disk)
    .venv/bin/python benchmarks/bench_pipeline.py --big --data DIR  # keep / reuse the synthetic Level 3 in DIR
    .venv/bin/python benchmarks/bench_pipeline.py --big --tmp DIR   # outputs (~7 GB for --big) under DIR
    .venv/bin/python benchmarks/bench_pipeline.py --cmappy-sets 4   # cmapPy end to end on 4 sets (default 2)

The in-memory jobs are the best of ``--repeat`` runs (3); the runner runs once.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_LM = 978
WELLS = 384
N_VEHICLE = 8
REPS = 3
GSE92742_PROFILES = 1_319_138


# ------------------------------------------------------------------------------------------ data
def make_level3(folder: Path, n_sets: int, n_genes: int, *, seed: int = 0) -> tuple[Path, Path]:
    """Synthetic Level 3 GCTX + inst_info, streamed plate by plate."""
    from opencmap.io import GCTXWriter, write_table

    rng = np.random.default_rng(seed)
    genes = pd.DataFrame(
        {"pr_gene_symbol": [f"G{i}" for i in range(n_genes)], "pr_is_lm": (np.arange(n_genes) < N_LM).astype(int)},
        index=pd.Index([str(1000 + i) for i in range(n_genes)], dtype=object),
    )
    base = rng.normal(8, 2, size=(n_genes, 1)).astype(np.float32)
    records = []
    with GCTXWriter(folder / "level3.gctx", genes) as writer:
        for s in range(n_sets):
            set_name = f"BEN{s:03d}_A375_24H"
            effect = (rng.normal(0, 1, size=(n_genes, WELLS)) * (np.arange(WELLS) >= N_VEHICLE)).astype(np.float32)
            for rep in range(1, REPS + 1):
                plate = f"{set_name}_X{rep}"
                noise = rng.normal(0, 0.5, size=(n_genes, WELLS)).astype(np.float32)
                block = base + effect + noise
                ids = [f"{plate}:W{w:03d}" for w in range(WELLS)]
                meta = pd.DataFrame(
                    {
                        "rna_plate": plate,
                        "pert_id": ["DMSO" if w < N_VEHICLE else f"BRD-{s:03d}-{w:03d}" for w in range(WELLS)],
                        "pert_type": ["ctl_vehicle" if w < N_VEHICLE else "trt_cp" for w in range(WELLS)],
                        "pert_dose": [np.nan if w < N_VEHICLE else 10.0 for w in range(WELLS)],
                        "pert_time": 24,
                        "cell_id": "A375",
                    },
                    index=pd.Index(ids, dtype=object),
                )
                writer.append(block, meta)
                records.append(meta.reset_index(names="inst_id"))
    write_table(pd.concat(records), folder / "inst_info.txt")
    return folder / "level3.gctx", folder / "inst_info.txt"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------ measured jobs
def _job_runner(matrix: str, inst: str, out: str, queue: mp.Queue) -> None:
    from opencmap.pipeline.run import run_pipeline

    t0 = time.perf_counter()
    res = run_pipeline(matrix, out, inst_info=inst)
    queue.put({"seconds": time.perf_counter() - t0, "peak_mb": _peak_rss_mb(), "signatures": res.n_signatures})


def _load_set(matrix: str) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The first replicate set: (genes x 3*384) matrix, plate column positions, group positions."""
    from opencmap.io import read_gct

    g = read_gct(matrix, cidx=range(REPS * WELLS))
    data = np.asarray(g.data, dtype=np.float32)
    plates = [np.arange(p * WELLS, (p + 1) * WELLS) for p in range(REPS)]
    groups = [np.arange(N_VEHICLE) + p * WELLS for p in range(REPS)]
    groups = [np.concatenate(groups)] + [np.array([w + p * WELLS for p in range(REPS)]) for w in range(N_VEHICLE, WELLS)]
    return data, plates, groups


def _job_core(matrix: str, with_qc: bool, queue: mp.Queue) -> None:
    from opencmap.core.gct import GCT
    from opencmap.kernels.zscore import robust_zscore
    from opencmap.pipeline.modz import collapse_replicates
    from opencmap.pipeline.params import PipelineParams
    from opencmap.pipeline.signatures import build_signatures

    data, plates, groups = _load_set(matrix)
    lm = np.arange(N_LM)
    meta = rows = None
    if with_qc:
        from opencmap.io import read_meta

        meta = read_meta(matrix, "col").iloc[: REPS * WELLS]
        rows = pd.DataFrame(
            {"pr_is_lm": (np.arange(data.shape[0]) < N_LM).astype(int)},
            index=pd.Index([str(1000 + i) for i in range(data.shape[0])], dtype=object),  # string ids, as read
        )

    def job() -> None:  # plates are column-major (as read): joined as the runner joins them
        z = np.concatenate([robust_zscore(data[:, p]).T for p in plates], axis=0).T
        if with_qc:
            build_signatures(GCT(z, row_meta=rows, col_meta=meta), PipelineParams(), landmark_rows=lm)
        else:
            collapse_replicates(GCT(z), groups, lm, PipelineParams())

    job()  # warm-up: loads the compiled kernels (a one-off per process, paid once by a real run)
    t0 = time.perf_counter()
    job()
    queue.put({"seconds": time.perf_counter() - t0, "peak_mb": _peak_rss_mb(), "profiles": data.shape[1]})


def pandas_modz(data: np.ndarray, plates: list[np.ndarray], groups: list[np.ndarray]) -> pd.DataFrame:
    """The straightforward pandas implementation (baseline): same maths, idiomatic pandas."""
    frame = pd.DataFrame(data)
    zs = []
    for cols in plates:
        plate = frame.iloc[:, cols]
        med = plate.median(axis=1)
        mad = plate.sub(med, axis=0).abs().median(axis=1)
        zs.append(plate.sub(med, axis=0).div(mad.clip(lower=0.1) * 1.4826, axis=0))
    z = pd.concat(zs, axis=1).clip(-10, 10)
    out = {}
    for k, cols in enumerate(groups):
        sub = z.iloc[:, cols]
        corr = sub.iloc[:N_LM].corr(method="spearman").to_numpy(copy=True)
        np.fill_diagonal(corr, 0.0)
        corr = np.nan_to_num(np.clip(corr, 0, None))
        w = np.maximum(0.5 * corr.sum(axis=1), 0.01)
        out[k] = sub.to_numpy() @ (w / w.sum())
    return pd.DataFrame(out)


def _job_pandas(matrix: str, queue: mp.Queue) -> None:
    data, plates, groups = _load_set(matrix)
    t0 = time.perf_counter()
    pandas_modz(data, plates, groups)
    queue.put({"seconds": time.perf_counter() - t0, "peak_mb": _peak_rss_mb(), "profiles": data.shape[1]})


def _measure(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception:  # noqa: BLE001 - queue.Empty: check the child is still alive
            if not proc.is_alive():
                raise RuntimeError(f"{target.__name__} failed (exit code {proc.exitcode}); see its traceback above") from None
    proc.join()
    return result


# ------------------------------------------------------------------------------------------ cmapPy
_CMAPPY_SCRIPT = r"""
import sys, time, json
import numpy as np, pandas as pd
from cmapPy.math import robust_zscore, agg_wt_avg
data = np.load(sys.argv[1]); groups = [np.array(g) for g in json.loads(open(sys.argv[2]).read())]
frame = pd.DataFrame(data)
t0 = time.perf_counter()
zs = [robust_zscore.robust_zscore(frame.iloc[:, p * 384:(p + 1) * 384], min_mad=0.1) for p in range(3)]
z = pd.concat(zs, axis=1).clip(-10, 10)
sigs = []
for cols in groups:
    _, _, _, w = agg_wt_avg.agg_wt_avg(z.iloc[:978, cols])   # weights from landmarks, as the pipeline does
    sigs.append(z.iloc[:, cols].to_numpy() @ w.to_numpy())   # consensus of every gene
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

# The runner's job the cmapPy way, one replicate set at a time (Level 3 GCTX -> Level 4, Level 5 GCTX).
_CMAPPY_E2E_SCRIPT = r"""
import sys, os, re, time, json
import numpy as np, pandas as pd
from cmapPy.pandasGEXpress.parse import parse
from cmapPy.pandasGEXpress.GCToo import GCToo
from cmapPy.pandasGEXpress.write_gctx import write as write_gctx
from cmapPy.math import robust_zscore, agg_wt_avg
matrix, inst_path, out, n_sets = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t0 = time.perf_counter()
inst = pd.read_csv(inst_path, sep="\t", dtype=str).set_index("inst_id")
inst["set"] = inst["rna_plate"].str.replace(r"_X\d+$", "", regex=True)
profiles = 0
for set_name in list(dict.fromkeys(inst["set"]))[:n_sets]:
    meta = inst[inst["set"] == set_name]
    g = parse(matrix, cid=list(meta.index))
    zs = [robust_zscore.robust_zscore(g.data_df[list(m.index)], min_mad=0.1) for _, m in meta.groupby("rna_plate", sort=False)]
    z = pd.concat(zs, axis=1)
    write_gctx(GCToo(data_df=z, row_metadata_df=g.row_metadata_df, col_metadata_df=g.col_metadata_df.loc[z.columns]),
               os.path.join(out, set_name + "_level4.gctx"))
    z = z.clip(-10, 10)
    lm = g.row_metadata_df.index[g.row_metadata_df["pr_is_lm"].astype(int) == 1]
    sigs = {}
    for key, m in meta.fillna({"pert_dose": "-666"}).groupby(["pert_id", "pert_dose"], sort=False):
        cols = list(m.index)
        if len(cols) == 1:
            sigs[":".join(key)] = z[cols[0]]
        else:
            _, _, _, w = agg_wt_avg.agg_wt_avg(z.loc[lm, cols])  # weights from the landmarks
            sigs[":".join(key)] = z[cols].dot(w.to_numpy())  # consensus of every gene
    level5 = pd.DataFrame(sigs)
    write_gctx(GCToo(data_df=level5, row_metadata_df=g.row_metadata_df, col_metadata_df=pd.DataFrame(index=level5.columns)),
               os.path.join(out, set_name + "_level5.gctx"))
    profiles += len(meta)
print(json.dumps({"seconds": time.perf_counter() - t0, "profiles": profiles}))
"""


def _cmappy_python() -> Path | None:
    """Python of the pinned cmapPy venv, via tools/cmappy_interop.py, or None (with a message)."""
    helper = Path(__file__).resolve().parents[1] / "tools" / "cmappy_interop.py"
    if not helper.exists():
        print("cmapPy baseline skipped: tools/cmappy_interop.py (which creates the pinned cmapPy venv) is absent")
        return None
    spec = importlib.util.spec_from_file_location("cmappy_interop", helper)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    for name in ("ensure_cmappy_python", "ensure_venv", "create_venv"):
        fn = getattr(module, name, None)
        if callable(fn):
            try:
                found = Path(fn())
            except Exception as exc:  # noqa: BLE001 - report and skip the baseline
                print(f"cmapPy baseline skipped: {name}() failed: {exc}")
                return None
            python = found if found.is_file() else found / "bin" / "python"
            return python if python.exists() else None
    print("cmapPy baseline skipped: tools/cmappy_interop.py has no venv-creation function")
    return None


def _cmappy_e2e(python: Path, matrix: Path, inst: Path, work: Path, n_sets: int) -> dict | None:
    """The cmapPy end-to-end job on the first ``n_sets`` replicate sets (outputs deleted after)."""
    out = work / "cmappy_out"
    out.mkdir(exist_ok=True)
    (work / "cmappy_e2e.py").write_text(_CMAPPY_E2E_SCRIPT)
    proc = subprocess.run(
        [str(python), str(work / "cmappy_e2e.py"), str(matrix), str(inst), str(out), str(n_sets)],
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        print(f"cmapPy end-to-end baseline failed: {proc.stderr.strip().splitlines()[-3:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _job_floor(matrix: str, work: str, n_sigs: int, queue: mp.Queue) -> None:
    """I/O floor: read every Level 3 column (h5py, a replicate set at a time) and write as many
    Level 4 bytes and ``n_sigs`` Level 5 columns' bytes (numpy ``tofile``); no computing."""
    import h5py

    from opencmap.io.gctx import MATRIX_NODE

    t0 = time.perf_counter()
    folder = Path(work)
    with h5py.File(matrix, "r") as h5:
        ds = h5[MATRIX_NODE]
        n_cols, n_rows = ds.shape
        step = REPS * WELLS
        buf = np.empty((step, n_rows), dtype=np.float32)
        per_set = max(1, round(n_sigs * step / n_cols))
        with open(folder / "floor4.bin", "wb") as f4, open(folder / "floor5.bin", "wb") as f5:
            for a in range(0, n_cols, step):
                b = min(n_cols, a + step)
                ds.read_direct(buf, source_sel=np.s_[a:b, :], dest_sel=np.s_[: b - a, :])
                buf[: b - a].tofile(f4)
                buf[:per_set].tofile(f5)
    seconds = time.perf_counter() - t0
    (folder / "floor4.bin").unlink()
    (folder / "floor5.bin").unlink()
    queue.put({"seconds": seconds, "peak_mb": _peak_rss_mb()})


def _cmappy_inputs(matrix: Path, work: Path) -> None:
    """Write the replicate set, its groups and the job script for :func:`_cmappy_baseline` (once)."""
    data, _plates, groups = _load_set(str(matrix))
    np.save(work / "set.npy", data)
    (work / "groups.json").write_text(json.dumps([g.tolist() for g in groups]))
    (work / "cmappy_job.py").write_text(_CMAPPY_SCRIPT)


def _cmappy_baseline(python: Path, work: Path) -> dict | None:
    """One run of the cmapPy kernels on the inputs written by :func:`_cmappy_inputs`."""
    proc = subprocess.run(
        [str(python), str(work / "cmappy_job.py"), str(work / "set.npy"), str(work / "groups.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"cmapPy baseline failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=int, default=2, help="replicate sets of 3 x 384 profiles (default 2)")
    parser.add_argument("--genes", type=int, default=12_328, help="rows (default 12,328 = AIG; 978 = landmarks)")
    parser.add_argument("--big", action="store_true", help="87 sets = 100,224 profiles (~15 GB of temp files)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--repeat", type=int, default=3, help="in-memory jobs: best of this many runs (default 3)")
    parser.add_argument("--cmappy-sets", type=int, default=2, help="replicate sets for the cmapPy end-to-end baseline (default 2)")
    parser.add_argument(
        "--data",
        type=Path,
        help="folder for the synthetic Level 3 (level3.gctx + inst_info.txt): reused when present, "
        "written and kept otherwise (outputs still go to a temporary folder)",
    )
    parser.add_argument("--tmp", type=Path, help="folder for the temporary outputs (default: the system's)")
    args = parser.parse_args(argv)
    n_sets = 87 if args.big else args.sets
    if args.genes < N_LM:
        parser.error(f"--genes must be >= {N_LM}")
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_", dir=args.tmp))
    try:
        data_dir = args.data if args.data is not None else work
        if args.data is not None and (data_dir / "level3.gctx").exists() and (data_dir / "inst_info.txt").exists():
            from opencmap.io import gct_info

            info = gct_info(data_dir / "level3.gctx")
            matrix, inst = data_dir / "level3.gctx", data_dir / "inst_info.txt"
            n_sets, args.genes = info.n_cols // (REPS * WELLS), info.n_rows
            print(f"reusing synthetic Level 3 in {data_dir}: {info.n_cols:,} profiles x {info.n_rows:,} genes")
        else:
            print(f"writing synthetic Level 3: {n_sets * REPS * WELLS:,} profiles x {args.genes:,} genes ...")
            data_dir.mkdir(parents=True, exist_ok=True)
            matrix, inst = make_level3(data_dir, n_sets, args.genes)
        n_profiles = n_sets * REPS * WELLS

        def best(runs: list[dict | None]) -> dict | None:  # fastest of the repeats (least disturbed)
            done = [r for r in runs if r is not None]
            return min(done, key=lambda r: r["seconds"]) if done else None

        reps = range(max(1, args.repeat))
        pandas_res = best([_measure(_job_pandas, str(matrix)) for _ in reps])
        cmappy_python = _cmappy_python()  # found (or created) once; None: absent, said once
        cmappy_runs: list[dict | None] = []
        if cmappy_python is not None:
            _cmappy_inputs(matrix, work)
            for _ in reps:
                cmappy_runs.append(_cmappy_baseline(cmappy_python, work))
                if cmappy_runs[-1] is None:  # failed: said once
                    break
        cmappy_res = best(cmappy_runs)
        core = best([_measure(_job_core, str(matrix), False) for _ in reps])
        core_qc = best([_measure(_job_core, str(matrix), True) for _ in reps])
        e2e = None
        if cmappy_python is not None and cmappy_res is not None:
            e2e = _cmappy_e2e(cmappy_python, matrix, inst, work, min(args.cmappy_sets, n_sets))
        load_before = os.getloadavg()
        runner = _measure(_job_runner, str(matrix), str(inst), str(work / "out"))
        load_runner = os.getloadavg()
        shutil.rmtree(work / "out", ignore_errors=True)  # disk: the floor writes as many bytes again
        floor = _measure(_job_floor, str(matrix), str(work), runner["signatures"])

        set_profiles = REPS * WELLS

        def rate(res: dict, n: int) -> float:
            return n / res["seconds"]

        print(f"\none replicate set ({set_profiles} profiles x {args.genes} genes), in memory, z-score + MODZ:")
        print(f"  baseline pandas      {rate(pandas_res, set_profiles):10,.0f} profiles/s  peak {pandas_res['peak_mb']:8.0f} MB")
        if cmappy_res is not None:
            print(f"  baseline cmapPy      {rate(cmappy_res, set_profiles):10,.0f} profiles/s")
        for label, res in (("opencmap kernels", core), ("opencmap + QC", core_qc)):
            line = f"  {label:<20} {rate(res, set_profiles):10,.0f} profiles/s  peak {res['peak_mb']:8.0f} MB"
            line += f"  x{pandas_res['seconds'] / res['seconds']:.1f} vs pandas"
            if cmappy_res is not None:
                line += f", x{cmappy_res['seconds'] / res['seconds']:.1f} vs cmapPy"
            print(line)

        r = rate(runner, n_profiles)
        print(f"\nrunner end to end ({n_profiles:,} profiles, {runner['signatures']:,} signatures, GCTX in/out):")
        print(
            f"  {r:,.0f} profiles/s, {runner['seconds']:.1f} s, peak {runner['peak_mb']:.0f} MB "
            f"(load average {load_before[0]:.2f} before, {load_runner[0]:.2f} after)"
        )
        print(f"  x{r / rate(pandas_res, set_profiles):.2f} the in-memory pandas baseline's rate")
        if cmappy_res is not None:
            print(f"  x{r / rate(cmappy_res, set_profiles):.2f} the cmapPy kernels' rate (in memory, one set)")
        if e2e is not None:
            e2e_rate = e2e["profiles"] / e2e["seconds"]
            print(
                f"  x{r / e2e_rate:.2f} cmapPy end to end ({e2e_rate:,.0f} profiles/s: parse + robust_zscore + "
                f"write_gctx L4 + agg_wt_avg + write_gctx L5 on {e2e['profiles']:,} profiles)"
            )
        floor_rate = n_profiles / floor["seconds"]
        print(
            f"  I/O floor (raw h5py read of Level 3 + numpy write of Level 4 and 5 bytes): {floor['seconds']:.1f} s = "
            f"{floor_rate:,.0f} profiles/s; the runner takes x{runner['seconds'] / floor['seconds']:.2f} the floor's time"
        )
        hours = GSE92742_PROFILES / r / 3600
        print(f"  estimate for GSE92742 ({GSE92742_PROFILES:,} profiles, {args.genes:,} genes): {hours:.2f} h on this machine")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
