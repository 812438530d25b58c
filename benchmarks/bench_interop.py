"""Benchmark the interoperability layer against plain pandas doing the same selection.

* CLUE API filters (:mod:`opencmap.api.clue.loopback`) on a ``sigs``-like table of ``--rows``
  rows (default 500,000; ``sig_id pert_id cell_id pert_idose``): equality + limit, ``inq`` of 50
  perturbagens with a projection, ``and`` with a range and an order, and a ``like`` pattern. Each
  against the plain pandas expression that selects the same records (same result checked).
* DE selection (:func:`opencmap.query.de.queries_from_de`) of a ``--genes``-row table (default
  60,000, DESeq2 columns) with a resolver mapping half the genes, against a pandas baseline
  (filter by padj, map, ``nlargest``/``nsmallest`` 150 by log fold change; same genes checked).

Every figure is printed as seconds and as a ratio to its baseline measured in the same run
(best of ``--repeat``).

    .venv/bin/python benchmarks/bench_interop.py          # ~30 s
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--genes", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from opencmap.api.clue.loopback import apply_filter, parse_filter
    from opencmap.errors import DESelectionWarning
    from opencmap.query.de import queries_from_de

    rng = np.random.default_rng(0)
    n = args.rows
    sigs = pd.DataFrame({
        "sig_id": [f"SIG{i}" for i in range(n)],
        "pert_id": rng.choice([f"BRD-{i:05d}" for i in range(20_000)], n),
        "cell_id": rng.choice(["A375", "MCF7", "PC3", "VCAP", "HA1E"], n),
        "pert_idose": rng.uniform(0, 10, n),
    })  # fmt: skip
    perts = [f"BRD-{i:05d}" for i in range(50)]
    cases = [
        ("eq + limit 100", {"where": {"cell_id": "A375"}, "limit": 100},
         lambda: sigs[sigs["cell_id"] == "A375"].head(100)),
        ("inq 50 perts + fields", {"where": {"pert_id": {"inq": perts}}, "fields": {"sig_id": True}},
         lambda: sigs.loc[sigs["pert_id"].isin(perts), ["sig_id"]]),
        ("and + gt + order + limit", {"where": {"and": [{"cell_id": "MCF7"}, {"pert_idose": {"gt": 5}}]}, "order": "pert_idose DESC", "limit": 10},
         lambda: sigs[(sigs["cell_id"] == "MCF7") & (sigs["pert_idose"] > 5)].sort_values("pert_idose", ascending=False, kind="stable").head(10)),
        ("like 'BRD-123%' + limit", {"where": {"pert_id": {"like": "BRD-123%"}}, "limit": 10},
         lambda: sigs[sigs["pert_id"].str.contains("BRD-123.*", regex=True)].head(10)),
    ]  # fmt: skip
    print(f"CLUE filters on {n:,} signatures (best of {args.repeat}):")
    for label, flt, baseline in cases:
        parsed = parse_filter(flt)
        t_ours, ours = best(lambda: apply_filter(sigs, parsed, max_rows=10_000), args.repeat)
        t_base, base = best(baseline, args.repeat)
        same = [r["sig_id"] for r in ours] == list(base["sig_id"])  # type: ignore[index]
        print(f"  {label:28s} {t_ours:7.3f} s  pandas {t_base:7.3f} s  ratio {t_ours / t_base:5.1f}x  same records: {same}")

    m = args.genes
    de = pd.DataFrame({
        "": [f"G{i}" for i in range(m)],
        "baseMean": rng.uniform(1, 1000, m),
        "log2FoldChange": rng.normal(0, 1.5, m),
        "pvalue": rng.uniform(0, 0.1, m),
        "padj": rng.uniform(0, 0.2, m),
    })  # fmt: skip
    known = {f"G{i}" for i in range(0, m, 2)}

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DESelectionWarning)
            return queries_from_de(de, resolver=lambda t: t if t in known else None)

    def baseline():
        sig = de[(de["padj"] <= 0.05) & de[""].isin(known)]
        return sig.nlargest(150, "log2FoldChange")[""].tolist(), sig.nsmallest(150, "log2FoldChange")[""].tolist()

    t_ours, q = best(ours, args.repeat)
    t_base, (up, dn) = best(baseline, args.repeat)
    same = list(q[0].up) == up and list(q[0].down) == dn  # type: ignore[index]
    print(f"DE selection of {m:,} genes (padj <= 0.05, top 150 per side, half the genes unmapped):")
    print(f"  queries_from_de              {t_ours:7.3f} s  pandas {t_base:7.3f} s  ratio {t_ours / t_base:5.1f}x  same genes: {same}")


if __name__ == "__main__":
    main()
