#!/usr/bin/env python
"""Check that cmapPy reads the GCT/GCTX files opencmap writes, and that opencmap reads cmapPy's.

cmapPy is not a dependency of opencmap (and needs old numpy/pandas), so this script builds its own
virtual environment with pinned versions in a cache folder (default
``~/.cache/opencmap/cmappy-venv``; override with ``--venv`` or ``OPENCMAP_CMAPPY_VENV``) and runs
cmapPy there in a subprocess. It is a manual check, not part of CI.

Usage::

    .venv/bin/python tools/cmappy_interop.py [--venv DIR] [--keep TMPDIR]

Checks (each prints PASS/FAIL, the last line is ``N passed, M failed``):

1. cmapPy reads GCTX and GCT text written by opencmap (real CMap files re-written, plus a random
   matrix with integer-like ids and missing metadata): same ids, values (float32 exact for GCTX,
   1e-6 for text) and metadata (-666 -> missing both sides).
2. cmapPy's partial read (``cid=``/``rid=``) of an opencmap GCTX equals ours.
3. opencmap reads GCTX and GCT files written by cmapPy's own writers: same ids, values, metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
import warnings
from pathlib import Path

try:  # not needed by ensure_cmappy_python(), which .ci/run calls with the system python
    import numpy as np
    import pandas as pd
except ImportError:  # pragma: no cover
    np = pd = None  # type: ignore[assignment]

PINS = ["cmappy==4.0.1", "numpy==1.23.5", "pandas==1.5.3", "h5py==3.8.0"]
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OPENCMAP_SHARED_DATA") or REPO.parent / "shared" / "data")

# Runs inside the cmapPy venv: parse or write files and dump what cmapPy saw as .npy + JSON.
CMAPPY_SIDE = r'''
import json, sys
import numpy as np
from cmapPy.pandasGEXpress.parse import parse
from cmapPy.pandasGEXpress.write_gctx import write as write_gctx
from cmapPy.pandasGEXpress.write_gct import write as write_gct

def dump(g, out):
    np.save(out + ".npy", g.data_df.to_numpy(dtype=np.float64))
    def meta(df):
        return {c: [None if (isinstance(v, float) and v != v) else (v.item() if hasattr(v, "item") else v) for v in df[c].tolist()] for c in df.columns}
    with open(out + ".json", "w") as fh:
        json.dump({"rids": [str(x) for x in g.data_df.index], "cids": [str(x) for x in g.data_df.columns],
                   "row_meta": meta(g.row_metadata_df), "col_meta": meta(g.col_metadata_df)}, fh)

job = json.loads(sys.argv[1])
if job["op"] == "read":
    kw = {k: job[k] for k in ("rid", "cid") if job.get(k) is not None}
    dump(parse(job["path"], **kw), job["out"])
elif job["op"] == "write":
    g = parse(job["src"])
    if job["dst"].endswith(".gctx"):
        write_gctx(g, job["dst"])
    else:
        write_gct(g, job["dst"])
    dump(g, job["out"])
'''


def ensure_cmappy_python(venv_dir: Path | None = None) -> Path:
    """Python of a venv with the pinned cmapPy stack (created on first use)."""
    folder = Path(venv_dir or os.environ.get("OPENCMAP_CMAPPY_VENV") or Path.home() / ".cache" / "opencmap" / "cmappy-venv")
    python = folder / "bin" / "python"
    stamp = folder / "opencmap-pins.txt"
    if python.exists() and stamp.exists() and stamp.read_text().split() == PINS:
        return python
    print(f"creating {folder} with {' '.join(PINS)} ...", file=sys.stderr)
    folder.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    stamp.write_text(" ".join(PINS))
    return python


def cmappy(python: Path, job: dict) -> dict:
    """Run one cmapPy job; returns what cmapPy saw (data as float64)."""
    proc = subprocess.run([str(python), "-c", CMAPPY_SIDE, json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cmapPy failed on {job}:\n{proc.stderr[-2000:]}")
    with open(job["out"] + ".json") as fh:
        seen = json.load(fh)
    seen["data"] = np.load(job["out"] + ".npy")
    return seen


def _same_column(ours: pd.Series, theirs: list) -> bool:
    a = ours.astype(object).where(ours.notna(), None).tolist()
    b = [None if (v is None or v == -666 or v == "-666") else v for v in theirs]  # cmapPy may keep -666
    an = pd.to_numeric(pd.Series(a, dtype=object), errors="coerce")
    bn = pd.to_numeric(pd.Series(b, dtype=object), errors="coerce")
    a_missing = pd.Series([v is None for v in a])
    b_missing = pd.Series([v is None for v in b])
    if (an.notna() | a_missing).all() and (bn.notna() | b_missing).all():
        return bool(np.allclose(an.to_numpy(float), bn.to_numpy(float), rtol=1e-6, atol=1e-6, equal_nan=True))
    return [None if m else str(v) for v, m in zip(a, a_missing)] == [None if m else str(v) for v, m in zip(b, b_missing)]


def compare(ours, seen: dict, *, atol: float) -> list[str]:
    """Differences between our GCT and what cmapPy saw (empty list = agree)."""
    problems = []
    if list(ours.rids) != seen["rids"]:
        problems.append(f"row ids differ: {list(ours.rids)[:3]} vs {seen['rids'][:3]}")
    if list(ours.cids) != seen["cids"]:
        problems.append(f"column ids differ: {list(ours.cids)[:3]} vs {seen['cids'][:3]}")
    if ours.shape != seen["data"].shape:
        problems.append(f"shape {ours.shape} vs {seen['data'].shape}")
    elif not np.allclose(ours.data, seen["data"], atol=atol, rtol=0, equal_nan=True):
        problems.append(f"values differ by up to {np.nanmax(np.abs(ours.data - seen['data'])):.3g}")
    for axis, frame in (("row_meta", ours.row_meta), ("col_meta", ours.col_meta)):
        theirs = seen[axis]
        if set(frame.columns) != set(theirs):
            problems.append(f"{axis} fields differ: {sorted(set(frame.columns) ^ set(theirs))}")
        for field in set(frame.columns) & set(theirs):
            if not _same_column(frame[field], theirs[field]):
                problems.append(f"{axis} field {field!r} differs: {frame[field].tolist()[:3]} vs {theirs[field][:3]}")
    return problems


def _random_gct():
    from opencmap.core.gct import GCT

    rng = np.random.default_rng(0)
    data = rng.normal(size=(30, 12)).astype(np.float32)
    data[0, 0] = np.nan
    rids = [str(v) for v in rng.choice(100_000, 30, replace=False)]  # Entrez-like integer ids
    cids = [f"PLATE_X1:{chr(65 + i // 4)}{i % 4:02d}" for i in range(12)]
    dose = rng.uniform(0.1, 10, 12)
    dose[3] = np.nan
    row_meta = pd.DataFrame({"pr_gene_symbol": pd.array([f"G{i}" for i in range(30)], dtype="str"), "pr_is_lm": rng.integers(0, 2, 30)}, index=rids)
    col_meta = pd.DataFrame(
        {
            "pert_iname": pd.array([None if i == 2 else f"drug-{i}" for i in range(12)], dtype="str"),
            "pert_dose": dose,
            "pert_time": pd.array([24] * 11 + [None], dtype="Int64"),
        },
        index=cids,
    )
    return GCT(data, row_meta=row_meta, col_meta=col_meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=None, help="cmapPy venv folder (created if missing)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the files written in this folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    from opencmap.errors import OpenCMapWarning
    from opencmap.io import read_gct, write_gct, write_gctx

    warnings.simplefilter("ignore", OpenCMapWarning)
    python = ensure_cmappy_python(args.venv)
    versions = subprocess.run(
        [str(python), "-c", "import sys, numpy, pandas, h5py, importlib.metadata as m; print(sys.version.split()[0], 'cmapPy', m.version('cmapPy'), 'numpy', numpy.__version__, 'pandas', pandas.__version__, 'h5py', h5py.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    print(f"cmapPy side: Python {versions}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cmappy-interop-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, list[str]]] = []
    skipped: list[tuple[str, str]] = []

    sources = {
        "random_int_ids": _random_gct(),
        "gctv13_02": read_gct(SHARED / "formats/cmapm/gctv13_02.gctx"),
        "test_l1000": read_gct(SHARED / "formats/cmappy/test_l1000.gct"),
        "modzs_n272x978": read_gct(SHARED / "query/modzs_n272x978.gctx"),
    }
    # cmapPy decodes metadata as ASCII and fails on anything else (it cannot read this CMap file
    # itself: pert_idose holds Latin-1 "µ"); write that field in ASCII for the checks below.
    modz = sources["modzs_n272x978"]
    modz.col_meta["pert_idose"] = modz.col_meta["pert_idose"].str.replace("µ", "u")
    for name, gct in sources.items():
        for suffix, atol in ((".gctx", 0.0), (".gct", 1e-6)):
            path = work / f"ours_{name}{suffix}"
            (write_gctx if suffix == ".gctx" else write_gct)(gct, path)
            seen = cmappy(python, {"op": "read", "path": str(path), "out": str(work / f"seen_{name}{suffix}")})
            results.append((f"cmapPy reads our {path.name}", compare(gct, seen, atol=atol)))

    gct = sources["modzs_n272x978"]
    cid = list(gct.cids[[200, 3, 150, 7]])
    rid = list(gct.rids[[900, 1, 500]])
    seen = cmappy(python, {"op": "read", "path": str(work / "ours_modzs_n272x978.gctx"), "cid": cid, "rid": rid, "out": str(work / "seen_subset")})
    ours = read_gct(work / "ours_modzs_n272x978.gctx", cid=cid, rid=rid)
    # cmapPy returns subsets in file order, not in the order asked for
    ours_file_order = ours.take(np.argsort(gct.row_positions(rid)), np.argsort(gct.col_positions(cid)))
    results.append(("cmapPy partial read of our GCTX (rid+cid)", compare(ours_file_order, seen, atol=0.0)))

    for name, src in (
        ("gctv13_02", SHARED / "formats/cmapm/gctv13_02.gctx"),
        ("test_l1000", SHARED / "formats/cmappy/test_l1000.gct"),
        ("test_n5x10", SHARED / "formats/cmapr/test_n5x10.gctx"),
    ):
        for suffix in (".gctx", ".gct"):
            dst = work / f"cmappy_{name}{suffix}"
            try:
                seen = cmappy(python, {"op": "write", "src": str(src), "dst": str(dst), "out": str(work / f"wrote_{name}{suffix}")})
            except RuntimeError as exc:  # cmapPy's own writer failing is not ours to check
                skipped.append((f"we read cmapPy's {dst.name}", str(exc).strip().splitlines()[-1]))
                continue
            ours = read_gct(dst)
            results.append((f"we read cmapPy's {dst.name}", compare(ours, seen, atol=1e-4 if suffix == ".gct" else 1e-6)))

    passed = failed = 0
    for label, problems in results:
        if problems:
            failed += 1
            print(f"FAIL {label}")
            for p in problems[:8]:
                print(f"     {p}")
        else:
            passed += 1
            print(f"PASS {label}")
    for label, reason in skipped:
        print(f"SKIP {label}: cmapPy itself failed to write it ({reason})")
    print(f"files in {work}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
