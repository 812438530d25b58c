"""Regenerate the DE test tables in this folder (deterministic; see README.md for the layouts).

    python tests/data/de/make_de_tables.py

Values are synthetic; the *layouts* (column names, order, quoting, row names, NA spelling) are
those each tool writes. Genes are named for the synthetic store of tests/query (Entrez ids
1000..1399, symbols GENE0..GENE399).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
N = 60


def _base(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # 25 clearly up, 25 clearly down, 10 not significant
    lfc = np.concatenate([rng.uniform(1.0, 4.0, 25), -rng.uniform(1.0, 4.0, 25), rng.uniform(-0.3, 0.3, 10)])
    p = np.concatenate([10 ** -rng.uniform(4, 12, 50), rng.uniform(0.2, 0.9, 10)])
    padj = np.minimum(1.0, p * N / (np.argsort(np.argsort(p)) + 1))
    return pd.DataFrame({"lfc": lfc, "p": p, "padj": padj, "expr": rng.uniform(20, 2000, N), "se": rng.uniform(0.1, 0.4, N)})


def _fmt(x: float) -> str:
    return "NA" if x != x else f"{x:.6g}"


def deseq2(b: pd.DataFrame) -> None:
    # write.csv(as.data.frame(results(dds)), "deseq2_results.csv"): quoted header with an empty first name
    lines = ['"","baseMean","log2FoldChange","lfcSE","stat","pvalue","padj"']
    for i, r in b.iterrows():
        padj = np.nan if i == 55 else r.padj  # independent filtering
        lines.append(f'"GENE{i}",{_fmt(r.expr)},{_fmt(r.lfc)},{_fmt(r.se)},{_fmt(r.lfc / r.se)},{_fmt(r.p)},{_fmt(padj)}')
    lines.append('"GENE60",0,NA,NA,NA,NA,NA')  # all-zero counts
    (HERE / "deseq2_results.csv").write_text("\n".join(lines) + "\n")


def edger(b: pd.DataFrame) -> None:
    # write.table(topTags(qlf, n=Inf), "edger_toptags.tsv", sep="\t", quote=FALSE): header one field short
    t = b.assign(gene=[str(1000 + i) for i in range(N)]).sort_values("p")
    lines = ["logFC\tlogCPM\tF\tPValue\tFDR"]
    lines += [f"{r.gene}\t{_fmt(r.lfc)}\t{_fmt(np.log2(r.expr))}\t{_fmt(abs(r.lfc) * 10)}\t{_fmt(r.p)}\t{_fmt(r.padj)}" for r in t.itertuples()]
    (HERE / "edger_toptags.tsv").write_text("\n".join(lines) + "\n")


def limma(b: pd.DataFrame) -> None:
    # write.table(topTable(fit, coef=2, number=Inf), "limma_toptable.txt", sep="\t", quote=FALSE, row.names=FALSE)
    # on a fit whose genes annotation is an ID column
    t = b.assign(gene=[f"GENE{i}" for i in range(N)]).sort_values("p")
    lines = ["ID\tlogFC\tAveExpr\tt\tP.Value\tadj.P.Val\tB"]
    lines += [f"{r.gene}\t{_fmt(r.lfc)}\t{_fmt(np.log2(r.expr))}\t{_fmt(r.lfc / r.se)}\t{_fmt(r.p)}\t{_fmt(r.padj)}\t{_fmt(-np.log10(r.p) - 2)}" for r in t.itertuples()]
    (HERE / "limma_toptable.txt").write_text("\n".join(lines) + "\n")
    # write.csv(topTable(fit, coef=2, number=Inf), "limma_toptable_rownames.csv"): row names, quoted
    lines = ['"","logFC","AveExpr","t","P.Value","adj.P.Val","B"']
    lines += [f'"{r.gene}",{_fmt(r.lfc)},{_fmt(np.log2(r.expr))},{_fmt(r.lfc / r.se)},{_fmt(r.p)},{_fmt(r.padj)},{_fmt(-np.log10(r.p) - 2)}' for r in t.itertuples()]
    (HERE / "limma_toptable_rownames.csv").write_text("\n".join(lines) + "\n")


def scanpy(b: pd.DataFrame) -> None:
    # sc.get.rank_genes_groups_df(adata, group=None).to_csv("scanpy_rank_genes_groups.csv", index=False)
    # two groups; scanpy orders each group by score, descending
    parts = []
    for k, group in enumerate(("0", "1")):
        g = b.copy()
        g["names"] = [f"GENE{(i + 100 * k)}" for i in range(N)]
        g["scores"] = g.lfc * 5
        g = g.sort_values("scores", ascending=False)
        parts.append(pd.DataFrame({"group": group, "names": g.names, "scores": g.scores, "logfoldchanges": g.lfc,
                                   "pvals": g.p, "pvals_adj": g.padj}))
    pd.concat(parts).to_csv(HERE / "scanpy_rank_genes_groups.csv", index=False, float_format="%.6g")


def seurat(b: pd.DataFrame) -> None:
    # write.csv(FindAllMarkers(obj), "seurat_findallmarkers.csv"): row names made unique by R
    # (GENE1, GENE1.1, ...) for genes marking several clusters; a gene and a cluster column
    lines = ['"","p_val","avg_log2FC","pct.1","pct.2","p_val_adj","cluster","gene"']
    seen: dict[str, int] = {}
    for cluster, sign in (("0", 1.0), ("1", -1.0)):
        for i, r in b.iterrows():
            gene = f"GENE{i}"
            row_name = gene if gene not in seen else f"{gene}.{seen[gene]}"
            seen[gene] = seen.get(gene, 0) + 1
            lines.append(f'"{row_name}",{_fmt(r.p)},{_fmt(sign * r.lfc)},0.8,0.2,{_fmt(r.padj)},"{cluster}","{gene}"')
    (HERE / "seurat_findallmarkers.csv").write_text("\n".join(lines) + "\n")


def excel(b: pd.DataFrame) -> None:
    # DESeq2 results saved from R with openxlsx::write.xlsx(as.data.frame(res), rowNames=TRUE):
    # row names in a first column with an empty header cell
    frame = pd.DataFrame({"baseMean": b.expr.to_numpy(), "log2FoldChange": b.lfc.to_numpy(), "lfcSE": b.se.to_numpy(), "stat": (b.lfc / b.se).to_numpy(),
                          "pvalue": b.p.to_numpy(), "padj": b.padj.to_numpy()}, index=[f"GENE{i}" for i in range(N)])
    frame.to_excel(HERE / "deseq2_results.xlsx", index=True, index_label=None)


def rnk(b: pd.DataFrame) -> None:
    # a GSEA pre-ranked list: gene<TAB>score, sorted by score, with a comment line
    t = b.assign(gene=[f"GENE{i}" for i in range(N)], score=np.sign(b.lfc) * -np.log10(b.p)).sort_values("score", ascending=False)
    lines = ["# pre-ranked: sign(log2FC) * -log10(p)"] + [f"{r.gene}\t{r.score:.4f}" for r in t.itertuples()]
    (HERE / "ranked.rnk").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    base = _base()
    deseq2(base)
    edger(base)
    limma(base)
    scanpy(base)
    seurat(base)
    excel(base)
    rnk(base)
