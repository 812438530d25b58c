"""The whole system on the embedded synthetic compendium, in one call.

:func:`run_demo` builds (or reuses, cached in ``workdir``) each stage:

1. the synthetic compendium (:func:`opencmap.datasets.make_compendium`), Level 3 + ground truth;
2. Level 4 / Level 5 signatures (:func:`opencmap.pipeline.run.run_pipeline`);
3. a reference store (:func:`opencmap.query.store.build_store`) and its tau backgrounds;
4. an example query made from the ground-truth gene program of one mechanism (MOA): its 50
   most up- and down-weighted landmark genes. The perturbagens of that MOA should rank first.

It returns a :class:`DemoResult` with the top perturbagens and PCLs and where the full results
were written; the ``opencmap demo`` command prints them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from opencmap.errors import ConfigError, OpenCMapError

__all__ = ["run_demo", "DemoResult", "DEFAULT_MOA"]

log = logging.getLogger(__name__)

DEFAULT_MOA = "HDAC inhibitor"
#: ``progress(stage, done, total)``; stages: compendium, pipeline, store, background, query.
DemoProgress = Callable[[str, int, int], None]


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    workdir: Path
    store: Path
    results_dir: Path
    moa: str
    query_up: tuple[str, ...]
    query_down: tuple[str, ...]
    top_perturbagens: pd.DataFrame
    top_pcls: pd.DataFrame
    moa_members: tuple[str, ...]
    hits_in_top: int  # MOA members among the top perturbagens listed


def _query_from_program(comp, moa: str, n_genes: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Up/down landmark genes of the MOA's shared ground-truth program, and the MOA's members."""
    from opencmap.io import read_table

    truth = read_table(comp.file("ground_truth"))
    members = truth[(truth["moa"].astype(str) == moa) & (truth["pert_type"].astype(str) == "trt_cp")]
    if members.empty:
        known = sorted(set(truth["moa"].dropna().astype(str)) - {"-666", "nan"})
        raise ConfigError(f"no compound with MOA {moa!r} in the compendium; choose one of {known[:40]}")
    active = members[pd.to_numeric(members["is_active"], errors="coerce").fillna(0) == 1]
    tokens = active["programs"].astype(str).str.split("|").str[0]
    token = tokens.mode().iloc[0] if len(tokens) else ""
    if not token or token == "nan":
        raise ConfigError(f"MOA {moa!r} has no active compound with a gene program")
    model = comp.model()
    sign = -1.0 if token.startswith("-") else 1.0
    program = sign * model.program(token.lstrip("-"))
    landmark_ids = model.genes["pr_gene_id"].astype(str).to_numpy()[: len(program)]
    order = np.argsort(-program, kind="stable")
    up = tuple(landmark_ids[order[:n_genes]])
    down = tuple(landmark_ids[order[::-1][:n_genes]])
    return up, down, tuple(members["pert_id"].astype(str))


def run_demo(
    workdir: str | os.PathLike[str],
    *,
    size: str = "demo",
    seed: int = 0,
    moa: str = DEFAULT_MOA,
    n_genes: int = 50,
    top: int = 10,
    progress: DemoProgress | None = None,
) -> DemoResult:
    """Run the synthetic-compendium demo in ``workdir`` (stages are cached there; see module doc).

    Parameters
    ----------
    workdir:
        Folder for the compendium, signatures, store and results (created; reused when run again).
    size:
        Compendium size (``tiny`` for a quick run, ``demo`` the embedded default).
    seed:
        Compendium seed.
    moa:
        Mechanism whose ground-truth program forms the example query.
    n_genes:
        Up and down genes in the query.
    top:
        Perturbagens / PCLs listed in the result.
    progress:
        ``progress(stage, done, total)``.
    """
    from opencmap.datasets import make_compendium, open_compendium
    from opencmap.io import read_gmt, read_table
    from opencmap.pipeline.run import run_pipeline
    from opencmap.query.background import build_background
    from opencmap.query.engine import Engine
    from opencmap.query.store import Store, build_store

    report = progress or (lambda stage, done, total: None)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)

    # 1. compendium
    comp_dir = work / f"compendium-{size}-{seed}"
    report("compendium", 0, 1)
    try:
        comp = open_compendium(comp_dir)
    except OpenCMapError:
        comp = make_compendium(comp_dir, size, seed=seed, overwrite=True, progress=lambda d, t: report("compendium", d, t))
    report("compendium", 1, 1)

    # 2. Level 5 signatures
    l5_dir = work / "signatures"
    level5, sig_info_path = l5_dir / "level5.gctx", l5_dir / "sig_info.txt"
    if not (level5.exists() and sig_info_path.exists() and (l5_dir / "manifest.json").exists()):
        run_pipeline(
            comp.file("level3"),
            l5_dir,
            inst_info=comp.file("inst_info"),
            gene_info=comp.file("gene_info"),
            progress=lambda stage, d, t: report(f"pipeline: {stage}", d, t),
        )

    # 3. store + backgrounds
    store_dir = work / "store"
    pcl_path = comp.file("pcl")
    store: Store | None = None
    try:
        store = Store(store_dir)
    except OpenCMapError:
        sig_info = read_table(sig_info_path)
        pert_info = read_table(comp.file("pert_info"))
        extra = [c for c in ("moa", "target") if c in pert_info.columns]
        if extra:
            sig_info = sig_info.drop(columns=[c for c in extra if c in sig_info.columns]).merge(
                pert_info[["pert_id", *extra]].drop_duplicates("pert_id"), on="pert_id", how="left"
            )
        store = build_store(
            store_dir,
            level5,
            sig_info=sig_info,
            gene_info=comp.file("gene_info"),
            overwrite=True,
            progress=lambda d, t: report("store", d, t),
        )
    # one background per tail, so two-sided and one-sided queries all get tau of their own kind
    built = store.manifest.get("backgrounds", {})
    missing = [tail for tail, key in (("both", "sig"), ("up", "up/sig"), ("down", "down/sig")) if key not in built]
    if missing:
        build_background(store, pcl=pcl_path, tail=missing, progress=lambda d, t: report("background", d, t))
        store = Store(store_dir)

    # 4. the example query
    up, down, members = _query_from_program(comp, moa, n_genes)
    report("query", 0, 1)
    engine = Engine(store, pcl={s.name: s.genes for s in read_gmt(pcl_path)})
    name = moa.replace(" ", "_")
    result = engine.run([_as_query(name, up, down)], min_genes=1, max_genes=max(150, n_genes))
    results_dir = work / "results"
    result.write(results_dir, format="tsv", overwrite=True)  # the demo's own folder, rewritten each run
    report("query", 1, 1)
    perts = result.top(top, level="pert_summary")
    perts = perts[[c for c in ("id", "pert_iname", "pert_type", "moa", "n_cells", "ncs", "tau") if c in perts.columns]]
    pcls = result.top(top, level="pcl_summary") if "pcl_summary" in result.levels else pd.DataFrame()
    if not pcls.empty:
        pcls = pcls[[c for c in ("id", "n_members", "ncs", "tau") if c in pcls.columns]]
    hits = int(perts["id"].isin(members).sum())
    return DemoResult(
        workdir=work,
        store=store_dir,
        results_dir=results_dir,
        moa=moa,
        query_up=up,
        query_down=down,
        top_perturbagens=perts.rename(columns={"id": "pert_id"}),
        top_pcls=pcls.rename(columns={"id": "pcl"}),
        moa_members=members,
        hits_in_top=hits,
    )


def _as_query(name: str, up: tuple[str, ...], down: tuple[str, ...]):  # type: ignore[no-untyped-def]
    from opencmap.query.genesets import Query

    return Query(name, up=up, down=down)
