#!/usr/bin/env python
"""Write an archive of every file format this opencmap writes, for later versions to read.

anndata's practice: files written by each release are kept under ``tests/data/archive/`` and read
by every later version (``tests/io/test_format_archive.py``), so a change that stops old files from
reading fails a test. This script writes a NEW folder ``tests/data/archive/v<version>/`` (or
``--out``); it never overwrites or adds to an existing folder.

Usage::

    .venv/bin/python tools/make_format_archive.py [--out DIR] [--label v0.1.0]

What it writes (all from a very small synthetic compendium; < 2 MB together):

* ``run/``      :func:`opencmap.pipeline.run_pipeline` outputs (``level4.gctx``, ``level5.gctx``,
  ``sig_info.txt``, ``manifest.json``) and its work-folder identity ``work/run.json``
* ``store/``    a reference store (:func:`build_store` of ``run/level5.gctx``) with a τ background
  (both-tail) and the random-query FDR null cache of the archived query
* ``query.json`` the query (up/down genes, options) whose results follow
* ``result/``   :meth:`QueryResult.write` (tsv), ``result.ocr`` (:meth:`QueryResult.save`)
* ``jobs.db`` + ``jobs-results/`` the API's job database holding that result (one done job)
* ``inference_model.h5`` + ``inferred.gct`` a trained inference model and what it infers
* ``matrix.gct`` / ``matrix.gctx`` :func:`write_gct` / :func:`write_gctx` of a Level 5 slice
* ``archive.json`` opencmap version, date and the format versions of everything above
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

#: the compendium: a few compounds, one cell line per time, few inferred genes (small files)
SPEC = {
    "cell_ids": ("A375", "MCF7"),
    "compound_times": (24,),
    "doses": (10.0,),
    "n_moa": 3,
    "compounds_per_moa": 2,
    "n_sh_targets": 0,
    "hairpins_per_target": 1,
    "n_oe_targets": 0,
    "dmso_per_compound_plate": 6,
    "vector_per_genetic_plate": 3,
    "dmso_per_genetic_plate": 3,
    "n_inferred": 22,
    "n_bead_batches": 2,
}
README = """# Files written by opencmap {version} ({date})

Written by `tools/make_format_archive.py` (do not edit; write a new folder with that script
instead). `tests/io/test_format_archive.py` reads them with the opencmap under test and checks
the values, so a later version that cannot read them fails its tests.

| file | written by | how |
|---|---|---|
| `run/level4.gctx`, `run/level5.gctx`, `run/sig_info.txt`, `run/manifest.json` | `opencmap.pipeline.run_pipeline` | Level 3 of a very small synthetic compendium (`opencmap.datasets.make_compendium`, spec `tiny` with the overrides `SPEC` of the script, seed 0) with its `inst_info` and `gene_info` |
| `run/work/run.json` | `run_pipeline(..., work_dir=run/work, keep_work=True)` | the work folder's identity (the other work files are removed) |
| `store/` | `opencmap.query.store.build_store` | `run/level5.gctx` + `run/sig_info.txt`, the compendium's gene table and PCLs |
| `store/backgrounds/` | `opencmap.query.background.build_background(store, tail="both")` | τ backgrounds, recorded in `store/manifest.json` |
| `store/fdr_null/` | `Engine.run(..., fdr_method="random_query_pooled", fdr_null_size=20)` | the random-query FDR null cache of the archived query's sizes |
| `query.json` | the script | the query (top / bottom genes of the first compound signature) and its options |
| `result/` | `QueryResult.write(result, format="tsv")` | that query's result as tables + `queries.tsv`, `notes.txt`, `describe.json` |
| `result.ocr` | `QueryResult.save` | the same result, archived (zip of npy + header.json) |
| `jobs.db`, `jobs-results/` | `opencmap.api.jobs.store.JobDB` | one done job (id `{job}`) holding that result (`save_result`) |
| `matrix.gct`, `matrix.gctx` | `opencmap.io.write_gct` / `write_gctx` | the first 30 genes x 8 signatures of `run/level5.gctx` |
| `inference_model.h5` | `opencmap.pipeline.infer.save_inference_model` | `train_inference` on the compendium's Level 3 (holdout 0.25, rng 0) |
| `inferred.gct` | `write_gct(apply_inference(...))` | that model applied to the first 4 Level 3 columns (`min_r=0.5`) |
| `archive.json` | the script | opencmap version, date, job id and the format version of each file above |
"""
N_GENES = 10  # up and down genes of the archived query
FDR_NULL_SIZE = 20


def main(argv: list[str] | None = None) -> int:
    import opencmap

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", default=f"v{opencmap.__version__}", help="folder name (default v<package version>)")
    ap.add_argument("--out", type=Path, help="write here instead of tests/data/archive/<label>")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "tests" / "data" / "archive" / args.label
    if out.exists():
        print(f"{out} exists; an archive is never overwritten (pick another --label)", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write_archive(tmp)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


def write_archive(out: Path) -> None:
    import numpy as np

    import opencmap
    from opencmap.datasets import make_compendium
    from opencmap.datasets.design import spec_for
    from opencmap.io import read_gct, read_gmt, write_gct, write_gctx
    from opencmap.pipeline.infer import apply_inference, save_inference_model, train_inference
    from opencmap.pipeline.run import run_pipeline
    from opencmap.query.background import build_background
    from opencmap.query.engine import Engine
    from opencmap.query.genesets import Query
    from opencmap.query.store import Store, build_store

    with tempfile.TemporaryDirectory() as scratch:
        comp = make_compendium(Path(scratch) / "compendium", spec_for("tiny", **SPEC), seed=0)
        run = run_pipeline(
            comp.file("level3"), out / "run", inst_info=comp.file("inst_info"), gene_info=comp.file("gene_info"),
            work_dir=out / "run" / "work", keep_work=True,
        )  # fmt: skip
        for extra in (out / "run" / "work").iterdir():  # keep only the work folder's identity
            if extra.name != "run.json":
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        pcl = {s.name: list(s.genes) for s in read_gmt(comp.file("pcl"))}
        store = build_store(out / "store", run.level5, sig_info=run.sig_info, gene_info=comp.file("gene_info"), pcl=pcl)
        level3 = read_gct(comp.file("level3"))
        model = train_inference(level3, holdout_fraction=0.25, rng=0, description="format archive")
        save_inference_model(model, out / "inference_model.h5")
        write_gct(apply_inference(level3.subset(cids=list(level3.cids[:4])), model, min_r=0.5), out / "inferred.gct")
    build_background(store, tail="both")
    store = Store(out / "store")

    # the query: the top / bottom genes of the first compound signature
    info = store.sig_info
    sig = str(info.loc[info["pert_type"] == "trt_cp", "sig_id"].iloc[0])
    level5 = read_gct(run.level5, cid=[sig])
    order = np.argsort(level5.data[:, 0], kind="stable")
    genes = [str(g) for g in level5.rids]
    up, down = [genes[i] for i in order[::-1][:N_GENES]], [genes[i] for i in order[:N_GENES]]
    options = {"fdr_method": "random_query_pooled", "fdr_null_size": FDR_NULL_SIZE}  # the null is cached in the store
    result = Engine(store).run([Query("archived", up=tuple(up), down=tuple(down))], **options)
    result.write(out / "result", format="tsv")
    result.save(out / "result.ocr")
    (out / "query.json").write_text(json.dumps({"name": "archived", "up": up, "down": down, "options": options}, indent=1) + "\n")

    from opencmap.api.jobs.store import JobDB

    db = JobDB(out / "jobs.db")
    job = db.create({"queries": [{"name": "archived", "up": up, "down": down}], **options}, n_queries=1, mode="batch")
    db.save_result(job, result, store_sig_info=store.sig_info)
    db.set_status(job, "done")
    db.close()
    for leftover in out.glob("jobs.db-*"):  # SQLite's -wal / -shm of a closed database
        leftover.unlink()

    piece = read_gct(run.level5).subset(rids=genes[:30], cids=[str(s) for s in info["sig_id"].iloc[:8]])
    write_gct(piece, out / "matrix.gct")
    write_gctx(piece, out / "matrix.gctx")

    from opencmap.api.jobs.store import DB_FORMAT_VERSION
    from opencmap.io.infer_model import INFER_MODEL_VERSION
    from opencmap.pipeline.params import PARAMS_VERSION
    from opencmap.pipeline.run import MANIFEST_VERSION as RUN_VERSION
    from opencmap.query.background import BACKGROUND_FORMAT_VERSION
    from opencmap.query.fdr_null import NULL_FORMAT_VERSION
    from opencmap.query.result import RESULT_FORMAT_VERSION
    from opencmap.query.store import STORE_FORMAT_VERSION

    (out / "archive.json").write_text(json.dumps({
        "opencmap": opencmap.__version__,
        "written": dt.date.today().isoformat(),
        "job_id": job,
        "format_versions": {
            "store": STORE_FORMAT_VERSION, "background": BACKGROUND_FORMAT_VERSION, "fdr_null": NULL_FORMAT_VERSION,
            "result": RESULT_FORMAT_VERSION, "job_database": DB_FORMAT_VERSION, "pipeline_run": RUN_VERSION,
            "pipeline_params": PARAMS_VERSION, "gctx": "GCTX1.0", "inference_model": INFER_MODEL_VERSION,
        },
    }, indent=1) + "\n")  # fmt: skip
    (out / "README.md").write_text(README.format(version=opencmap.__version__, date=dt.date.today().isoformat(), job=job))


if __name__ == "__main__":
    raise SystemExit(main())
