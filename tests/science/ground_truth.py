"""Score the whole system against the synthetic compendium's ground truth.

Shared by ``tests/science`` (tiny custom compendium, assertions) and
``benchmarks/science_report.py`` (demo size, printed figures). Each ``*_scores`` function returns
one row per item scored; the ``summarise_*`` helpers reduce them to the quoted figures.

The ground truth comes from the generator (:mod:`opencmap.datasets`): ``ground_truth.txt``
(MOA, target, programs, responsive cells of every perturbagen), the PCL GMT and the generative
model itself (gene programs, designed inference R^2). Statistics here are plain, obviously
correct implementations (rank-sum AUC, Pearson/Spearman by definition) so they do not reuse the
code under test.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from opencmap.datasets import SIZES, Compendium, CompendiumSpec, make_compendium, open_compendium
from opencmap.errors import OpenCMapError, StoreError
from opencmap.io import read_gct, read_gmt, read_table
from opencmap.query import Engine, Store, build_background, build_store, signature_queries

# ------------------------------------------------------------------------------------ data set
#: The tests' compendium: "tiny" widened to 3 cell lines and 2 time points (~2,900 profiles,
#: enough training profiles per landmark for the inference check; ~15 s end to end).
SCIENCE_SPEC = dataclasses.replace(
    SIZES["tiny"], name="science", cell_ids=("A375", "MCF7", "PC3"), compound_times=(6, 24), n_inferred=400
)


@dataclass
class ScienceData:
    """A compendium run end to end: Level 3 + truth -> Level 5 (with CGS) -> store + backgrounds."""

    compendium: Compendium
    level5: Path
    sig_info: pd.DataFrame  # the store's signature table (with moa, target from pert_info)
    store: Store
    pcl: dict[str, tuple[str, ...]]
    truth: pd.DataFrame  # ground_truth.txt, indexed by pert_id


def prepare(workdir: str | Path, size: str | CompendiumSpec = SCIENCE_SPEC, *, seed: int = 0) -> ScienceData:
    """Build (or reuse, cached in ``workdir``) compendium, Level 5, store and tau backgrounds."""
    from opencmap.pipeline.run import run_pipeline

    work = Path(workdir)
    comp_dir = work / "compendium"
    name = size if isinstance(size, str) else size.name
    try:
        comp = open_compendium(comp_dir)
        if comp.manifest["size"] != name or comp.seed != seed:
            raise ValueError("another compendium")
    except (OpenCMapError, ValueError):  # absent or another compendium: rebuild it and what follows
        comp = make_compendium(comp_dir, size, seed=seed, overwrite=True)
        for stale in ("level5", "store"):
            shutil.rmtree(work / stale, ignore_errors=True)
    l5 = work / "level5"
    if not (l5 / "manifest.json").exists():
        shutil.rmtree(work / "store", ignore_errors=True)
        run_pipeline(comp.file("level3"), l5, inst_info=comp.file("inst_info"), gene_info=comp.file("gene_info"), restart=True)
    store_dir = work / "store"
    try:
        store = Store(store_dir)
        if "sig" not in store.manifest.get("backgrounds", {}):
            raise StoreError("no background")
    except OpenCMapError:  # absent, unfinished or without backgrounds: rebuild
        sig_info = read_table(l5 / "sig_info.txt")
        pert_info = read_table(comp.file("pert_info"))
        sig_info = sig_info.drop(columns=[c for c in ("moa", "target") if c in sig_info.columns]).merge(
            pert_info[["pert_id", "moa", "target"]].drop_duplicates("pert_id"), on="pert_id", how="left"
        )
        store = build_store(store_dir, l5 / "level5.gctx", sig_info=sig_info, gene_info=comp.file("gene_info"), overwrite=True)
        build_background(store, pcl=comp.file("pcl"))
        store = Store(store_dir)
    truth = read_table(comp.file("ground_truth")).astype({"pert_id": str}).set_index("pert_id", drop=False)
    pcl = {s.name: tuple(s.genes) for s in read_gmt(comp.file("pcl"))}
    return ScienceData(comp, l5 / "level5.gctx", store.sig_info, store, pcl, truth)


# ------------------------------------------------------------------------------------ statistics
def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2 (by definition, O(n*m)).

    NaN scores (not ranked) count as the lowest."""
    p = np.nan_to_num(np.asarray(positive, dtype=np.float64), nan=-np.inf)[:, None]
    n = np.nan_to_num(np.asarray(negative, dtype=np.float64), nan=-np.inf)[None, :]
    if p.size == 0 or n.size == 0:
        return float("nan")
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    return float((x @ y) / np.sqrt((x @ x) * (y @ y)))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    return pearson(rankdata(x), rankdata(y))


def _responsive(truth: pd.DataFrame, pert_id: str, cell: str) -> bool:
    cells = str(truth.at[pert_id, "responsive_cells"]) if pert_id in truth.index else "-666"
    return cell in cells.split("|")


# ------------------------------------------------------------------------- 1. CGS vs hairpins
def cgs_scores(data: ScienceData) -> pd.DataFrame:
    """Each CGS (in a cell line where its target program acts) and its hairpins, correlated with
    the true target program ``TARGET:<gene>`` of that cell line over the 978 landmarks."""
    info = data.sig_info.set_index("sig_id", drop=False)
    cgs = info[info["pert_type"].astype(str) == "trt_sh.cgs"]
    model = data.compendium.model()
    lm_ids = model.genes["pr_gene_id"].astype(str).to_numpy()[: len(model.mu0)]
    hairpin_ids = [s for ids in cgs["distil_id"].astype(str) for s in ids.split("|")]
    level5 = read_gct(data.level5, rid=list(lm_ids), cid=list(cgs.index) + hairpin_ids)
    col = {c: j for j, c in enumerate(level5.cids)}
    rows = []
    for sig_id, r in cgs.iterrows():
        target, cell = str(r["pert_iname"]), str(r["cell_id"])
        hairpins = str(r["distil_id"]).split("|")
        hp_perts = info.loc[hairpins, "pert_id"].astype(str)
        if not all(_responsive(data.truth, p, cell) for p in hp_perts):
            continue  # the target program does not act in this line: nothing to recover
        program = model.cell_program(f"TARGET:{target}", cell)
        own = level5.data[:, col[sig_id]]
        hp = [level5.data[:, col[h]] for h in hairpins]
        rows.append(
            {
                "sig_id": sig_id,
                "cell_id": cell,
                "target": target,
                "n_hairpins": len(set(hp_perts)),
                "pearson_cgs": pearson(own, program),
                "spearman_cgs": spearman(own, program),
                "pearson_hairpin": float(np.mean([pearson(h, program) for h in hp])),
                "spearman_hairpin": float(np.mean([spearman(h, program) for h in hp])),
                "pearson_best_hairpin": float(np.max([pearson(h, program) for h in hp])),
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- 2. inference
def inference_scores(data: ScienceData, *, holdout_fraction: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Train ``train_inference`` on the Level 3 compendium; per inferred gene: held-out r, BING flag,
    designed R^2 (within a cell line) of the generator."""
    from opencmap.pipeline.infer import train_inference

    level3 = read_gct(data.compendium.file("level3"))
    failed = set(data.compendium.manifest.get("failed_inst_ids", []))
    if failed:
        level3 = level3.subset(cids=[c for c in level3.cids if c not in failed])
    # refit_all=False: the final refit on every profile would not change the held-out figures
    model = train_inference(level3, holdout_fraction=holdout_fraction, rng=seed, refit_all=False)
    genes = read_table(data.compendium.file("gene_info")).astype({"pr_gene_id": str}).set_index("pr_gene_id")
    designed = data.compendium.model().inference_r2()
    designed.index = designed.index.astype(str)
    q = model.fit_quality
    return pd.DataFrame(
        {
            "r_holdout": q["r_holdout"].to_numpy(),
            "r_train": q["r_train"].to_numpy(),
            "is_bing": genes.loc[q.index, "pr_is_bing"].astype(int).to_numpy(),
            "designed_r2": designed.reindex(q.index).to_numpy(),
        },
        index=q.index,
    )


def summarise_inference(scores: pd.DataFrame, *, threshold: float) -> dict[str, float]:
    """BING vs other genes: median held-out r, AUC of r for BING, accuracy of ``r >= threshold``."""
    bing = scores["is_bing"].to_numpy() == 1
    r = scores["r_holdout"].to_numpy()
    called = r >= threshold
    return {
        "n_bing": int(bing.sum()),
        "n_other": int((~bing).sum()),
        "median_r_bing": float(np.median(r[bing])),
        "median_r_other": float(np.median(r[~bing])),
        "auc": auc(r[bing], r[~bing]),
        "threshold": threshold,
        "accuracy": float((called == bing).mean()),
        "spearman_r2_designed": spearman(r**2, scores["designed_r2"].to_numpy()),
    }


# ------------------------------------------------------------------------- 3. self-retrieval
def _query_signature(data: ScienceData, pert_id: str) -> str | None:
    """The compound's signature at its highest dose and latest time in a cell line where its
    program acts (the highest-TAS one if several lines qualify)."""
    info = data.sig_info
    sigs = info[(info["pert_id"].astype(str) == pert_id)]
    sigs = sigs[[_responsive(data.truth, pert_id, c) for c in sigs["cell_id"].astype(str)]]
    dose = pd.to_numeric(sigs["pert_dose"], errors="coerce")
    time = pd.to_numeric(sigs["pert_time"], errors="coerce")
    sigs = sigs[(dose == dose.max()) & (time == time.max())]
    if sigs.empty:
        return None
    return str(sigs.sort_values("tas", ascending=False, kind="stable")["sig_id"].iloc[0])


def _rank_of(values: np.ndarray, i: int) -> int:
    """1-based rank of row ``i`` when ``values`` are sorted in decreasing order (NaN last)."""
    v = np.where(np.isfinite(values), values, -np.inf)
    return int((v > v[i]).sum() + 1)


def retrieval_scores(data: ScienceData, *, n_genes: int = 50, max_queries: int | None = None) -> pd.DataFrame:
    """Query with one signature of each active compound (top/bottom ``n_genes`` landmarks).

    Per query: AUC (by tau and by NCS of the perturbagen summary; and by tau of the
    perturbagen x cell level in the query's cell line) of the other active compounds
    of the same MOA against the compounds of other MOAs (compounds sharing the query's MOA
    program as their second, dual MOA are left out of both), and the rank of the compound's
    true PCL among all PCLs (PCLs without the query compound, so its self-connection does not
    count; classes left with < 2 members are skipped).
    """
    truth = data.truth
    cp = truth[(truth["pert_type"].astype(str) == "trt_cp")]
    active = cp[cp["is_active"].astype(int) == 1]
    rows = []
    for pert_id, t in active.iterrows():
        sig = _query_signature(data, str(pert_id))
        if sig is None:
            continue
        rows.append((str(pert_id), sig, str(t["moa"]), str(t["programs"]).split("|")[0]))
        if max_queries is not None and len(rows) >= max_queries:
            break
    queries = signature_queries(data.store, [s for _, s, _, _ in rows], n_genes=n_genes)
    result = Engine(data.store).run(queries, min_genes=1, max_genes=max(150, n_genes))
    ps = result.level("pert_summary")
    ids = ps.ids.to_numpy(dtype=object)
    pc = result.level("pert_cell")
    pc_pert = pc.index["pert_id"].astype(str).to_numpy(dtype=object)
    pc_cell = pc.index["cell_id"].astype(str).to_numpy(dtype=object)
    sig_cell = data.sig_info.set_index("sig_id")["cell_id"].astype(str)
    out = []
    for j, (pert_id, sig, moa, program) in enumerate(rows):
        shares = cp["programs"].fillna("").astype(str).str.split("|").map(lambda ps_, p=program: p in ps_).astype(bool)
        positive = set(cp.index[(cp["moa"].astype(str) == moa) & (cp["is_active"].astype(int) == 1)]) - {pert_id}
        negative = set(cp.index[(cp["moa"].astype(str) != moa) & ~shares])
        is_pos = np.isin(ids, list(positive))
        is_neg = np.isin(ids, list(negative))
        rec = {"pert_id": pert_id, "sig_id": sig, "moa": moa, "n_positive": int(is_pos.sum())}
        for metric in ("tau", "ncs"):
            v = ps.metrics[metric][:, j]
            rec[f"auc_{metric}"] = auc(v[is_pos], v[is_neg])
        # the same, per perturbagen in the query's own cell line (no summary across lines)
        here = pc_cell == sig_cell[sig]
        v = pc.metrics["tau"][:, j]
        rec["auc_tau_same_cell"] = auc(v[here & np.isin(pc_pert, list(positive))], v[here & np.isin(pc_pert, list(negative))])
        rec.update(_pcl_rank(data, queries[j], pert_id, moa, n_genes))
        out.append(rec)
    return pd.DataFrame(out)


def _pcl_rank(data: ScienceData, query, pert_id: str, moa: str, n_genes: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    own = "CP_" + moa.upper().replace(" ", "_").replace("-", "_")
    pcl = {k: tuple(m for m in v if m != pert_id) for k, v in data.pcl.items()}
    if len(pcl.get(own, ())) < 2:
        return {"pcl_rank": np.nan, "n_pcls": np.nan}
    res = Engine(data.store, pcl=pcl).run([query], min_genes=1, max_genes=max(150, n_genes))
    lv = res.level("pcl_summary")
    i = int(np.flatnonzero(lv.ids.to_numpy(dtype=object) == own)[0])
    return {"pcl_rank": _rank_of(lv.metrics["tau"][:, 0], i), "n_pcls": len(lv.ids)}


# ------------------------------------------------------------------------- 4. CGS -> compounds
def cgs_compound_scores(data: ScienceData, *, n_genes: int = 50) -> pd.DataFrame:
    """Query with each CGS (cell lines where the target program acts); per CGS: AUC (tau, NCS of
    the perturbagen summary) of the active compounds inhibiting its target against the other
    compounds, and the best rank of such a compound among all compounds."""
    truth = data.truth
    info = data.sig_info
    cgs = info[info["pert_type"].astype(str) == "trt_sh.cgs"]
    cp = truth[truth["pert_type"].astype(str) == "trt_cp"]
    inhibitors = cp[(cp["is_active"].astype(int) == 1) & cp["action"].astype(str).isin(["inhibitor", "antagonist"])]
    rows = []
    for _, r in cgs.iterrows():
        target, cell = str(r["pert_iname"]), str(r["cell_id"])
        hp = truth[(truth["pert_type"].astype(str) == "trt_sh") & (truth["target"].astype(str) == target)]
        if not (inhibitors["target"].astype(str) == target).any() or not _responsive(truth, str(hp.index[0]), cell):
            continue
        rows.append((str(r["sig_id"]), target, cell))
    if not rows:
        return pd.DataFrame(columns=["sig_id", "target", "cell_id", "n_positive", "auc_tau", "auc_ncs", "best_rank"])
    queries = signature_queries(data.store, [s for s, _, _ in rows], n_genes=n_genes)
    result = Engine(data.store).run(queries, min_genes=1, max_genes=max(150, n_genes))
    ps = result.level("pert_summary")
    ids = ps.ids.to_numpy(dtype=object)
    is_cp = np.isin(ids, list(cp.index))
    out = []
    for j, (sig, target, cell) in enumerate(rows):
        # compounds with the target but acting through its negative (agonists) are left out
        positive = set(inhibitors.index[inhibitors["target"].astype(str) == target])
        other_target = set(cp.index[cp["target"].astype(str) == target]) - positive
        is_pos = np.isin(ids, list(positive))
        is_neg = is_cp & ~is_pos & ~np.isin(ids, list(other_target))
        rec = {"sig_id": sig, "target": target, "cell_id": cell, "n_positive": int(is_pos.sum())}
        for metric in ("tau", "ncs"):
            v = ps.metrics[metric][:, j]
            rec[f"auc_{metric}"] = auc(v[is_pos], v[is_neg])
        tau = np.where(is_cp, ps.metrics["tau"][:, j], np.nan)
        rec["best_rank"] = min(_rank_of(tau, i) for i in np.flatnonzero(is_pos))
        out.append(rec)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------- 5. FDR calibration
# Queries: the up/down 50 landmarks of each planted program of active compounds (as ``opencmap
# demo`` builds its query) and of programs planted in no perturbagen (``NULL:<i>``, a complete
# null). Per query program, a signature is *true* (its perturbagen acts through the program in a
# cell line where it acts), *zero-effect* (noise-free signature 0: controls, inactive compounds,
# compounds in lines where none of their programs act) or *unrelated* (a real effect through other
# programs). See benchmarks/bench_fdr_calibration.py for the figures' definitions.
#: FDR methods compared by :func:`fdr_calibration`
FDR_METHODS = ("cmap", "random_query", "random_query_pooled")


def program_query(model: Any, token: str, n_genes: int = 50) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Top / bottom ``n_genes`` landmarks of a program (the demo's query)."""
    program = model.program(token)
    ids = model.genes["pr_gene_id"].astype(str).to_numpy()[: len(program)]
    order = np.argsort(-program, kind="stable")
    return tuple(ids[order[:n_genes]]), tuple(ids[order[::-1][:n_genes]])


def _programs(truth: pd.DataFrame, row: pd.Series) -> list[str]:
    if str(row["pert_type"]) == "trt_sh.cgs":
        return [f"TARGET:{row['pert_iname']}"]
    pid = str(row["pert_id"])
    if pid not in truth.index:
        return []
    text = str(truth.at[pid, "programs"])
    return [] if text in ("-666", "nan", "") else text.split("|")


def classify(data: ScienceData, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``true`` (S, T) bool per program token, and ``zero`` (S,) bool (noise-free signature 0)."""
    info = data.sig_info
    truth = data.truth
    model = data.compendium.model()
    n = len(info)
    true = np.zeros((n, len(tokens)), dtype=bool)
    zero = np.zeros(n, dtype=bool)
    col = {t: j for j, t in enumerate(tokens)}
    for i, row in enumerate(info.itertuples(index=False)):
        r = pd.Series(row._asdict())
        ptype, cell = str(r["pert_type"]), str(r["cell_id"])
        if ptype.startswith("ctl_"):
            zero[i] = True
            continue
        progs = _programs(truth, r)
        if ptype == "trt_cp":
            pid = str(r["pert_id"])
            active = pid in truth.index and int(truth.at[pid, "is_active"]) == 1
            sens = [model.sensitivity(p.lstrip("-"), cell) for p in progs]
            if not active or not any(s > 0 for s in sens):
                zero[i] = True  # inactive, or no program acts here: the effect is exactly 0
                continue
        for p in progs:
            name = p.lstrip("-")
            if name in col and model.sensitivity(name, cell) > 0:
                true[i, col[name]] = True
    return true, zero


def fdr_calibration(
    data: ScienceData, *, n_null_queries: int = 10, alpha: float = 0.05, methods: tuple[str, ...] = FDR_METHODS, n_random: int = 1000
) -> pd.DataFrame:
    """One row per FDR method: discoveries at q < ``alpha``, false-discovery proportions (strict:
    false = not true; zero-effect: false = zero-effect, unrelated signatures left out), power, and
    the complete-null queries' FWER (fraction with any discovery) and mean discoveries."""
    from opencmap.query.genesets import Query

    truth = data.truth
    cp = truth[(truth["pert_type"].astype(str) == "trt_cp") & (truth["is_active"].astype(int) == 1)]
    tokens = sorted({p.lstrip("-") for text in cp["programs"].astype(str) for p in text.split("|")})
    model = data.compendium.model()
    planted = [Query(t, *program_query(model, t)) for t in tokens]
    nulls = [Query(f"NULL:{i}", *program_query(model, f"NULL:{i}")) for i in range(n_null_queries)]
    true, zero = classify(data, tokens)
    engine = Engine(data.store)
    rows = []
    for method in methods:
        start = time.perf_counter()
        opts: dict[str, Any] = {} if method == "cmap" else {"fdr_null_size": n_random}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = engine.run(planted + nulls, fdr_method=method, min_genes=1, max_genes=150, tau=False, summaries=False, **opts)
        seconds = time.perf_counter() - start
        q = res.level("sig").metrics["fdr_q"]
        hit = np.nan_to_num(q, nan=1.0) < alpha
        fdp, fdp_zero, power, n_disc = [], [], [], []
        v_all = r_all = v0_all = r0_all = 0
        for j in range(len(planted)):
            d = hit[:, j]
            t = true[:, j]
            r, v = int(d.sum()), int((d & ~t).sum())
            v0, r0 = int((d & zero).sum()), int((d & (t | zero)).sum())
            v_all, r_all, v0_all, r0_all = v_all + v, r_all + r, v0_all + v0, r0_all + r0
            fdp.append(v / max(r, 1))
            fdp_zero.append(v0 / max(r0, 1))
            power.append((d & t).sum() / max(t.sum(), 1))
            n_disc.append(r)
        dn = hit[:, len(planted) :]
        rows.append(
            {
                "method": method,
                "queries": len(planted),
                "mean_discoveries": float(np.mean(n_disc)),
                "fdp_strict_mean": float(np.mean(fdp)),
                "fdp_strict_pooled": v_all / max(r_all, 1),
                "fdp_zero_effect_mean": float(np.mean(fdp_zero)),
                "fdp_zero_effect_pooled": v0_all / max(r0_all, 1),
                "power_mean": float(np.mean(power)),
                "null_queries": dn.shape[1],
                "null_fwer": float(np.mean(dn.any(axis=0))) if dn.size else float("nan"),
                "null_mean_discoveries": float(dn.sum(axis=0).mean()) if dn.size else float("nan"),
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows)
