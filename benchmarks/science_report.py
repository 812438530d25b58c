"""Scientific-correctness figures on the synthetic compendium (ground truth), at ``demo`` size.

The same checks as ``tests/science`` (which assert them on a small compendium), computed on a
bigger one and printed so they can be quoted; each figure is shown next to its baseline measured
in the same run (single hairpins for the CGS, non-BING genes for inference, chance for rankings):

1. **CGS**: correlation of consensus gene signatures and of single hairpins with the true target
   program (Pearson / Spearman over the 978 landmarks, cell lines where the program acts).
2. **Inference**: ``train_inference`` on the Level 3 compendium (20% held out): held-out r of
   BING vs other inferred genes, AUC of r for BING, accuracy of ``r >= threshold``.
3. **Self-retrieval**: each active compound queried with its own signature (top/bottom 50
   landmarks): AUC of same-MOA compounds vs other MOAs in the perturbagen summary, rank of its
   PCL (leave-self-out) among all PCLs.
4. **CGS -> compounds**: each CGS queried; AUC of the inhibitors of its target vs other compounds.

Stages are cached in ``--workdir`` (compendium, Level 5, store + backgrounds), so a second run
only recomputes the figures.

    .venv/bin/python benchmarks/science_report.py                     # demo size (~20,000 profiles)
    .venv/bin/python benchmarks/science_report.py --size tiny          # quick look
    .venv/bin/python benchmarks/science_report.py --size science       # the tests' compendium
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GROUND_TRUTH = Path(__file__).resolve().parents[1] / "tests" / "science" / "ground_truth.py"
INFERENCE_THRESHOLD = 0.7


def _load_ground_truth():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("opencmap_science_ground_truth", GROUND_TRUTH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _timed(label: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"  [{label}: {time.perf_counter() - start:.1f} s]")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="demo", help="compendium size: demo (default), tiny, or science (the tests')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="cache folder (default: <tmp>/opencmap-science-<size>-<seed>)")
    parser.add_argument("--max-queries", type=int, default=None, help="cap on self-retrieval queries")
    parser.add_argument("--memory-cap-gb", type=float, default=4.0, help="address-space cap (0 = none)")
    args = parser.parse_args(argv)
    if args.memory_cap_gb > 0:
        cap = int(args.memory_cap_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    gt = _load_ground_truth()
    size = gt.SCIENCE_SPEC if args.size == "science" else args.size
    work = args.workdir or Path(tempfile.gettempdir()) / f"opencmap-science-{args.size}-{args.seed}"
    print(f"compendium {args.size} (seed {args.seed}) in {work}")
    data = _timed("compendium -> Level 5 -> store + backgrounds (cached)", gt.prepare, work, size, seed=args.seed)
    m = data.compendium.manifest
    print(
        f"  {m['n_profiles']:,} profiles x {m['n_genes']:,} genes ({m['n_landmarks']} landmarks, "
        f"{m['n_bing'] - m['n_landmarks']} BING); {data.store.n_signatures:,} signatures"
    )

    print("\n1. CGS vs single hairpins: correlation with the true target program (landmarks)")
    c = _timed("cgs", gt.cgs_scores, data)
    for kind in ("pearson", "spearman"):
        cgs, hp = c[f"{kind}_cgs"].mean(), c[f"{kind}_hairpin"].mean()
        print(f"  {kind:8s} CGS {cgs:.3f}  single hairpin {hp:.3f}  (+{cgs - hp:.3f}, x{cgs / hp:.2f})")
    print(
        f"  best single hairpin (Pearson) {c['pearson_best_hairpin'].mean():.3f}; "
        f"CGS beats the mean of its hairpins in {np.mean(c['pearson_cgs'] > c['pearson_hairpin']):.0%} "
        f"and its best hairpin in {np.mean(c['pearson_cgs'] > c['pearson_best_hairpin']):.0%} of {len(c)} CGS"
    )

    print("\n2. Inference: held-out correlation of inferred genes (train_inference, 20% held out)")
    i = _timed("inference", gt.inference_scores, data)
    s = gt.summarise_inference(i, threshold=INFERENCE_THRESHOLD)
    print(
        f"  median r: BING {s['median_r_bing']:.3f} ({s['n_bing']} genes)  other {s['median_r_other']:.3f} "
        f"({s['n_other']} genes)\n  AUC of r for BING {s['auc']:.3f} (chance 0.5); accuracy of r >= "
        f"{INFERENCE_THRESHOLD} {s['accuracy']:.3f} (all-BING baseline {s['n_bing'] / (s['n_bing'] + s['n_other']):.3f}); "
        f"Spearman(r^2, designed R^2) {s['spearman_r2_designed']:.3f}"
    )

    print("\n3. Self-retrieval: a compound's own signature (top/bottom 50 landmarks)")
    r = _timed("retrieval", gt.retrieval_scores, data, max_queries=args.max_queries)
    ranks = r["pcl_rank"].dropna().to_numpy()
    n_pcls = int(r["n_pcls"].dropna().iloc[0]) if len(ranks) else 0
    print(
        f"  {len(r)} compounds; mean AUC same-MOA vs other MOAs (chance 0.5): perturbagen summary tau "
        f"{r['auc_tau'].mean():.3f}, NCS {r['auc_ncs'].mean():.3f}; query's cell line tau "
        f"{r['auc_tau_same_cell'].mean():.3f}\n  AUC > 0.5 in {np.mean(r['auc_tau'] > 0.5):.0%}, "
        f">= 0.8 in {np.mean(r['auc_tau'] >= 0.8):.0%} of queries"
    )
    if len(ranks):
        print(
            f"  true PCL rank of {n_pcls} ({len(ranks)} queries, PCL without the query compound): median "
            f"{np.median(ranks):g}, mean {ranks.mean():.2f} (chance {(n_pcls + 1) / 2:.1f}); rank 1 in "
            f"{np.mean(ranks == 1):.0%}, top 3 in {np.mean(ranks <= 3):.0%}"
        )
    weak = r.groupby("moa")[["auc_tau", "auc_tau_same_cell"]].mean().sort_values("auc_tau").head(3)
    print(
        "  weakest MOAs (mean AUC summary / query's cell line): "
        + ", ".join(f"{k} {v.auc_tau:.2f} / {v.auc_tau_same_cell:.2f}" for k, v in weak.iterrows())
    )

    print("\n4. CGS -> compounds inhibiting the knocked-down target")
    g = _timed("cgs queries", gt.cgs_compound_scores, data)
    if len(g):
        print(
            f"  {len(g)} CGS; mean AUC inhibitors vs other compounds (chance 0.5): tau {g['auc_tau'].mean():.3f}, "
            f"NCS {g['auc_ncs'].mean():.3f}; min {g['auc_tau'].min():.3f}\n  an inhibitor ranks first among "
            f"compounds in "
            f"{np.mean(g['best_rank'] == 1):.0%}, in the top 3 in {np.mean(g['best_rank'] <= 3):.0%}"
        )
        weak = g.groupby("target")["auc_tau"].mean().sort_values().head(3)
        print("  weakest targets (mean AUC): " + ", ".join(f"{k} {v:.2f}" for k, v in weak.items()))


if __name__ == "__main__":
    main()
