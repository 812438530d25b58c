"""Benchmark reading a LINCS 2020 ``siginfo_beta.txt``-shaped table against plain pandas.

Writes a synthetic table with the real file's 37 columns in their order and realistic values
(repeated cell/compound names, empty fields as in the beta tables, floats, flags), ``--rows``
rows (default 200,000; the real file has 1,201,944: ``--rows 1200000``), then reads it, each
reader in a fresh subprocess (so peak memory is its own), ``--repeat`` times (best time kept):

* ``pandas``: plain ``pandas.read_csv(path, sep="\\t", low_memory=False)`` (the baseline);
* ``release``: :func:`opencmap.io.releases.read_release_table` (Arrow CSV reader, explicit
  types, Arrow-backed strings) -- what ``opencmap store build`` uses;
* ``read_table``: the generic :func:`opencmap.io.read_table` (per-line checks, content typing),
  the path the issue measured at 28 s / 4.0 GB for 1.2 M rows.

Printed per reader: wall time, peak RSS above the interpreter's after imports, the resulting
DataFrame's deep memory, and the ratios to pandas measured in the same run.

    .venv/bin/python benchmarks/bench_release_tables.py               # 200,000 rows, < 1 min
    .venv/bin/python benchmarks/bench_release_tables.py --rows 1200000
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["bead_batch", "nearest_dose", "pert_dose", "pert_dose_unit", "pert_idose", "pert_time", "pert_itime",
           "pert_time_unit", "cell_mfc_name", "pert_mfc_id", "nsample", "cc_q75", "ss_ngene", "tas",
           "pct_self_rank_q25", "wt", "median_recall_rank_spearman", "median_recall_rank_wtcs_50",
           "median_recall_score_spearman", "median_recall_score_wtcs_50", "batch_effect_tstat",
           "batch_effect_tstat_pct", "is_hiq", "qc_pass", "pert_id", "sig_id", "pert_type", "cell_iname", "det_wells",
           "det_plates", "distil_ids", "build_name", "project_code", "cmap_name", "is_exemplar_sig", "is_ncs_sig",
           "is_null_sig"]

RUNNER = r"""
import json, sys, time
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096
def hwm():  # peak RSS of this process image (ru_maxrss would carry the parent's peak across fork/exec)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
which, path = sys.argv[1], sys.argv[2]
import pandas as pd
if which == "release":
    from opencmap.io.releases import read_release_table
    read = lambda: read_release_table(path, id_column="sig_id", missing=("",))
elif which == "read_table":
    from opencmap.io import read_table
    read = lambda: read_table(path)
else:
    read = lambda: pd.read_csv(path, sep="\t", low_memory=False)
base = rss()
t0 = time.perf_counter()
frame = read()
seconds = time.perf_counter() - t0
peak = hwm()
print(json.dumps({"seconds": seconds, "peak_bytes": peak - base, "frame_bytes": int(frame.memory_usage(deep=True).sum()),
                  "shape": list(frame.shape)}))
"""


def make_table(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cells = np.array([f"CELL{i:03d}" for i in range(230)])
    perts = np.array([f"BRD-K{i:08d}" for i in range(34000)])
    names = np.array([f"compound-{i}" for i in range(34000)])
    p = rng.integers(0, len(perts), n)
    c = cells[rng.integers(0, len(cells), n)]
    dose = rng.choice([0.04, 0.12, 0.37, 1.11, 3.33, 10.0], n)
    time = rng.choice([6.0, 24.0, 96.0], n)
    plate = np.char.add("CPC0", rng.integers(10, 99, n).astype(str))
    sig = [f"{pl}_{ce}_{int(t)}H:{pe}:{d:g}_{i}" for i, (pl, ce, t, pe, d) in enumerate(zip(plate, c, time, perts[p], dose, strict=True))]
    empty = np.where(rng.random(n) < 0.4, "", np.round(rng.random(n), 4).astype(str))
    frame = pd.DataFrame({
        "bead_batch": rng.choice(["b17", "b19", "b36"], n), "nearest_dose": dose, "pert_dose": dose,
        "pert_dose_unit": "uM", "pert_idose": [f"{d:g} uM" for d in dose], "pert_time": time,
        "pert_itime": [f"{int(t)} h" for t in time], "pert_time_unit": "h", "cell_mfc_name": c,
        "pert_mfc_id": np.char.add(perts[p], "-001-01-1"), "nsample": rng.integers(1, 6, n),
        "cc_q75": np.round(rng.random(n), 4), "ss_ngene": rng.integers(0, 900, n), "tas": np.round(rng.random(n), 4),
        "pct_self_rank_q25": np.round(rng.random(n) * 100, 4), "wt": "0.33,0.33,0.34",
        "median_recall_rank_spearman": empty, "median_recall_rank_wtcs_50": empty, "median_recall_score_spearman": empty,
        "median_recall_score_wtcs_50": empty, "batch_effect_tstat": empty, "batch_effect_tstat_pct": empty,
        "is_hiq": rng.integers(0, 2, n), "qc_pass": rng.integers(0, 2, n), "pert_id": perts[p], "sig_id": sig,
        "pert_type": "trt_cp", "cell_iname": c, "det_wells": "A03|A04|A05",
        "det_plates": np.char.add(plate, "_X1_B3|X2_B3"), "distil_ids": sig, "build_name": "", "project_code": "CPC",
        "cmap_name": names[p], "is_exemplar_sig": rng.integers(0, 2, n), "is_ncs_sig": rng.integers(0, 2, n),
        "is_null_sig": 0,
    })[COLUMNS]
    frame.to_csv(path, sep="\t", index=False, quoting=csv.QUOTE_NONE, escapechar="\\")


def run(which: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", RUNNER, which, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--readers", default="pandas,release,read_table", help="comma-separated readers to run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "siginfo_beta.txt"
        make_table(path, args.rows)
        print(f"siginfo_beta-shaped table: {args.rows:,} rows x {len(COLUMNS)} columns, {path.stat().st_size / 1e6:.0f} MB")
        results = {}
        for which in args.readers.split(","):
            runs = [run(which, path) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["peak_bytes"] = max(r["peak_bytes"] for r in runs)
            results[which] = best
        base = results.get("pandas")
        print(f"{'reader':<12}{'seconds':>9}{'peak MB':>10}{'frame MB':>10}{'time/pandas':>13}{'peak/pandas':>13}{'frame/pandas':>14}")
        for which, r in results.items():
            ratio = (lambda k: f"{r[k] / base[k]:.2f}") if base else (lambda k: "-")
            print(f"{which:<12}{r['seconds']:>9.2f}{r['peak_bytes'] / 1e6:>10.0f}{r['frame_bytes'] / 1e6:>10.0f}"
                  f"{ratio('seconds'):>13}{ratio('peak_bytes'):>13}{ratio('frame_bytes'):>14}")


if __name__ == "__main__":
    main()
