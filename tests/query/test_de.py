"""Queries from DE tables (DESeq2, edgeR, limma, scanpy) and pre-ranked lists.

The expected selections are computed independently with plain pandas from the generator's base
values (tests/data/de/make_de_tables.py), not with the code under test.
"""

from __future__ import annotations

import runpy
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import DESelectionWarning, FormatError, GeneSetError, ValidationError
from opencmap.query.de import (
    DEQueries,
    detect_de_columns,
    queries_from_de,
    queries_from_rnk,
    store_resolver,
)
from opencmap.query.engine import Engine

DATA = Path(__file__).resolve().parents[1] / "data" / "de"
_GEN = runpy.run_path(str(DATA / "make_de_tables.py"))
BASE = _GEN["_base"]()


def _expected(names: list[str], *, padj: float = 0.05, top: int = 150, exclude: tuple[int, ...] = ()) -> tuple[list[str], list[str]]:
    """Independent selection: padj <= threshold, sides by sign, sorted by |lfc|, first ``top``."""
    b = BASE.assign(gene=names).drop(index=list(exclude))
    sig = b[b.padj <= padj]
    up = sig[sig.lfc > 0].sort_values("lfc", ascending=False).gene.head(top).tolist()
    dn = sig[sig.lfc < 0].sort_values("lfc", ascending=True).gene.head(top).tolist()
    return up, dn


SYMBOLS = [f"GENE{i}" for i in range(60)]
ENTREZ = [str(1000 + i) for i in range(60)]


@pytest.mark.parametrize(
    ("file", "tool", "gene_col", "lfc_col", "padj_col", "names", "exclude"),
    [
        ("deseq2_results.csv", "DESeq2", "", "log2FoldChange", "padj", SYMBOLS, (55,)),
        ("edger_toptags.tsv", "edgeR", "", "logFC", "FDR", ENTREZ, ()),
        ("limma_toptable.txt", "limma", "ID", "logFC", "adj.P.Val", SYMBOLS, ()),
        ("limma_toptable_rownames.csv", "limma", "", "logFC", "adj.P.Val", SYMBOLS, ()),
    ],
)
def test_tool_tables(file, tool, gene_col, lfc_col, padj_col, names, exclude):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DESelectionWarning)
        de = queries_from_de(DATA / file)
    assert isinstance(de, DEQueries) and len(de) == 1
    sel = de.selections[0]
    assert (sel.tool, sel.columns.gene, sel.columns.lfc, sel.columns.padj) == (tool, gene_col, lfc_col, padj_col)
    up, dn = _expected(names, exclude=exclude)
    assert list(de[0].up) == up and list(de[0].down) == dn
    assert de[0].name == file.split(".")[0]
    total = sel.n_missing + sel.n_duplicates + sel.n_above_padj + sel.n_unmapped + sel.n_zero_lfc
    assert total + sel.n_candidates_up + sel.n_candidates_down == sel.n_rows


def test_deseq2_missing_values_reported():
    with pytest.warns(DESelectionWarning, match="2 rows set aside for missing values"):
        de = queries_from_de(DATA / "deseq2_results.csv")
    sel = de.selections[0]
    assert (sel.n_rows, sel.n_missing, sel.n_above_padj) == (61, 2, 9)
    assert not {"GENE55", "GENE60"} & set(de[0].up + de[0].down)
    assert any("independent filtering" in n for n in de.notes)
    assert de.table().loc[0, "n_missing"] == 2


def test_excel_export():
    pytest.importorskip("openpyxl")
    de = queries_from_de(DATA / "deseq2_results.xlsx")
    up, dn = _expected(SYMBOLS)
    assert (list(de[0].up), list(de[0].down)) == (up, dn)
    assert de.selections[0].tool == "DESeq2"


def test_scanpy_one_query_per_group():
    de = queries_from_de(DATA / "scanpy_rank_genes_groups.csv")
    assert [q.name for q in de] == ["0", "1"]
    assert list(de[0].up) == _expected(SYMBOLS)[0]
    assert list(de[1].down) == _expected([f"GENE{i + 100}" for i in range(60)])[1]
    assert de.selections[1].contrast == "1" and de.selections[1].columns.group == "group"
    named = queries_from_de(DATA / "scanpy_rank_genes_groups.csv", name="pbmc")
    assert [q.name for q in named] == ["pbmc:0", "pbmc:1"]


def test_top_and_threshold():
    de = queries_from_de(DATA / "limma_toptable.txt", top=10, padj=0.01)
    up, dn = _expected(SYMBOLS, top=10, padj=0.01)
    assert (list(de[0].up), list(de[0].down)) == (up, dn) and len(up) == 10
    assert any("10 of" in n and "up candidates taken" in n for n in de.notes)
    none = queries_from_de(DATA / "limma_toptable.txt", padj=None)
    assert none.selections[0].n_above_padj == 0
    assert none.selections[0].n_candidates_up + none.selections[0].n_candidates_down == 60


def _frame(**cols) -> pd.DataFrame:
    return pd.DataFrame(cols)


def _simple(n_up: int = 15, n_dn: int = 15) -> pd.DataFrame:
    genes = [f"GENE{i}" for i in range(n_up + n_dn)]
    lfc = [2.0 + i * 0.1 for i in range(n_up)] + [-2.0 - i * 0.1 for i in range(n_dn)]
    return _frame(gene=genes, log2FoldChange=lfc, padj=[0.001] * (n_up + n_dn))


def test_duplicates_keep_most_significant():
    frame = _simple()
    extra = pd.DataFrame({"gene": ["GENE0", "GENE20"], "log2FoldChange": [-5.0, 9.0], "padj": [1e-9, 0.04]})
    frame = pd.concat([frame, extra], ignore_index=True)
    with pytest.warns(DESelectionWarning, match="2 repeated genes"):
        de = queries_from_de(frame)
    # GENE0's second row is more significant: it moves to the down side; GENE20's first row wins
    assert "GENE0" in de[0].down and "GENE0" not in de[0].up
    assert de[0].down[0] == "GENE0"
    assert "GENE20" in de[0].down
    assert de.selections[0].n_duplicates == 2 and set(de.selections[0].duplicates) == {"GENE0", "GENE20"}


def test_no_gene_column_names_columns_and_flag():
    frame = _frame(foo=["a"] * 3, log2FoldChange=[1.0, 2.0, 3.0], padj=[0.01] * 3)
    with pytest.raises(ValidationError, match=r"no gene column.*'foo'.*--de-gene-col"):
        queries_from_de(frame)
    with pytest.warns(DESelectionWarning, match="no down gene"):
        de = queries_from_de(_frame(foo=[f"G{i}" for i in range(12)], log2FoldChange=np.arange(1.0, 13.0), padj=[0.01] * 12), gene_col="foo")
    assert len(de[0].up) == 12 and not de[0].down


def test_no_lfc_column_names_columns_and_flag():
    frame = _frame(gene=["a", "b"], effect=[1.0, 2.0], padj=[0.01, 0.01])
    with pytest.raises(ValidationError, match=r"no log fold change column.*'effect'.*--de-lfc-col"):
        queries_from_de(frame)
    with pytest.raises(ValidationError, match=r"no column 'nope'.*'effect'"):
        queries_from_de(frame, lfc_col="nope")
    cols = detect_de_columns(frame, lfc_col="EFFECT")
    assert cols.lfc == "effect"


def test_all_filtered_out():
    with pytest.raises(GeneSetError, match=r"all 60 genes were filtered out at adj.P.Val <= 1e-30.*--de-padj"):
        queries_from_de(DATA / "limma_toptable.txt", padj=1e-30)


def test_side_below_min_genes():
    with pytest.raises(GeneSetError, match=r"only 5 down genes.*need 10\.\.150"):
        queries_from_de(_simple(15, 5))
    de = queries_from_de(_simple(15, 5), min_genes=5)
    assert len(de[0].down) == 5


def test_one_sided_query_noted():
    with pytest.warns(DESelectionWarning, match="no down gene"):
        de = queries_from_de(_simple(12, 0))
    assert len(de[0].up) == 12 and de[0].down == ()


def test_contrast_column_and_overrides():
    a, b = _simple(), _simple()
    b["log2FoldChange"] = -b["log2FoldChange"]
    frame = pd.concat([a.assign(comparison="treated_vs_ctrl"), b.assign(comparison="ko_vs_wt")], ignore_index=True)
    frame = frame.rename(columns={"gene": "sym", "log2FoldChange": "effect", "padj": "q"})
    de = queries_from_de(frame, gene_col="sym", lfc_col="effect", padj_col="q")
    assert [q.name for q in de] == ["treated_vs_ctrl", "ko_vs_wt"]
    assert de[0].up == de[1].down


def test_resolver_takes_top_among_mapped():
    unmapped = {"GENE9", "GENE5"}  # the two largest up fold changes
    with pytest.warns(DESelectionWarning, match=r"2 candidate genes \(past the filters\) are not in the store"):
        de = queries_from_de(DATA / "limma_toptable.txt", top=10, resolver=lambda t: None if t in unmapped else t)
    up, _ = _expected(SYMBOLS, top=12)
    assert up[:2] == ["GENE9", "GENE5"]
    assert list(de[0].up) == up[2:12]
    assert de.selections[0].n_unmapped == 2 and set(de.selections[0].unmapped) == unmapped


def test_store_resolver_mixed_identifiers(built_store):
    genes = [f"GENE{i}" for i in range(12)] + [str(1000 + i) for i in range(12, 24)]
    genes += ["1005", "NOT_A_GENE", "GENE350"]  # same gene as GENE5; unknown; outside the bing space
    lfc = [3.0 - 0.01 * i for i in range(12)] + [-3.0 + 0.01 * i for i in range(12)] + [0.5, 5.0, 4.0]
    frame = _frame(gene=genes, logFC=lfc, FDR=[1e-5] * 24 + [1e-9, 1e-5, 1e-5])
    with pytest.warns(DESelectionWarning):
        de = queries_from_de(frame, resolver=store_resolver(built_store))
    sel = de.selections[0]
    assert sel.n_unmapped == 2 and set(sel.unmapped) == {"NOT_A_GENE", "GENE350"}
    assert sel.n_duplicates == 1 and sel.duplicates == ("GENE5 (= gene 1005)",)
    assert "1005" in de[0].up and "GENE5" not in de[0].up  # the more significant token is kept, as written
    result = Engine(built_store).run(de, metric="wtcs")
    assert result.queries[0].unknown == ()
    with pytest.warns(DESelectionWarning):
        by_store = queries_from_de(frame, store=built_store)
    assert by_store.queries == de.queries and by_store.selections[0].unmapped == sel.unmapped
    with pytest.raises(ValidationError, match="not both"):
        queries_from_de(frame, store=built_store, resolver=str)


def test_end_to_end_ranks_planted_programme(built_store, level5):
    _, _, programmes = level5
    up, dn = programmes["A_up"], programmes["A_dn"]
    frame = _frame(
        gene=up + dn + ["1399", "1398"],
        log2FoldChange=[3.0] * len(up) + [-3.0] * len(dn) + [4.0, -4.0],
        padj=[1e-6] * (len(up) + len(dn)) + [0.5, 0.5],  # strongest fold changes but not significant
    )
    de = queries_from_de(frame, top=40)
    assert "1399" not in de[0].up and "1398" not in de[0].down
    result = Engine(built_store).run(de)
    top = result.top(4, level="pert_summary")
    assert set(top["id"]) == {"BRD-000", "BRD-001", "BRD-002", "BRD-003"}


# ---------------------------------------------------------------------------------- rnk
def test_rnk_vector_query(built_store, tmp_path):
    de = queries_from_rnk(DATA / "ranked.rnk", resolver=store_resolver(built_store))
    vec = de[0].vector
    assert de[0].name == "ranked" and len(vec) == 60
    assert vec.index[0] == "1017" and vec.iloc[0] == pytest.approx(11.9608)
    result = Engine(built_store).run(de, metric="spearman")
    assert np.isfinite(result.level("sig").metrics["spearman"]).all()
    raw = queries_from_rnk(DATA / "ranked.rnk")
    assert raw[0].vector.index[0] == "GENE17"  # without a resolver: tokens as written


def test_rnk_duplicates_and_bad_lines(tmp_path):
    p = tmp_path / "dup.rnk"
    p.write_text("gene\tscore\nA\t1.0\nB\t-3\nA\t-2.5\nC\t0.1\n")
    with pytest.warns(DESelectionWarning, match="1 repeated genes"):
        de = queries_from_rnk(p)
    assert de[0].vector.to_dict() == {"B": -3.0, "A": -2.5, "C": 0.1}
    bad = tmp_path / "bad.rnk"
    bad.write_text("A\t1\nB\tx\n")
    with pytest.raises(FormatError, match="line 2"):
        queries_from_rnk(bad)


def test_de_vector_for_vector_metrics():
    de = queries_from_de(DATA / "limma_toptable.txt", vector=True)
    vec = de[0].vector
    assert len(vec) == 60 and vec["GENE17"] == pytest.approx(BASE.lfc[17], abs=1e-5)


def test_ensembl_versions_are_read_without_them():
    genes = [f"ENSG{i:011d}.{i % 3 + 1}" for i in range(12)]
    with pytest.warns(DESelectionWarning, match="no down gene"):
        de = queries_from_de(_frame(gene_id=genes, logFC=np.arange(1.0, 13.0), FDR=0.01), min_genes=10)
    assert de[0].up[0] == "ENSG00000000011" and all("." not in g for g in de[0].up)
    assert any("12 Ensembl ids written with a version suffix (e.g. ENSG00000000000.1)" in n for n in de.notes)


def test_seurat_findallmarkers_one_query_per_cluster():
    de = queries_from_de(DATA / "seurat_findallmarkers.csv")
    assert [q.name for q in de] == ["0", "1"]
    sel = de.selections[0]
    assert (sel.tool, sel.columns.gene, sel.columns.lfc, sel.columns.padj, sel.columns.group) == ("Seurat", "gene", "avg_log2FC", "p_val_adj", "cluster")
    up, dn = _expected(SYMBOLS)
    assert (list(de[0].up), list(de[0].down)) == (up, dn)
    assert (list(de[1].up), list(de[1].down)) == (dn, up)  # opposite fold changes; gene names, not R's GENE1.1


def test_semicolon_csv(tmp_path):
    p = tmp_path / "de.csv"
    rows = ["gene;log2FoldChange;padj"] + [f"G{i};{'-' if i % 2 else ''}2,{i + 1};0,001" for i in range(24)] + ["G99;1,5;NA"]
    p.write_text("\n".join(rows) + "\n")
    with pytest.warns(DESelectionWarning, match="1 rows set aside"):
        de = queries_from_de(p)
    assert len(de[0].up) == 12 and len(de[0].down) == 12
    assert de[0].up[0] == "G8" and de.selections[0].n_missing == 1  # 2,9 is the largest (2,23 < 2,9)
    assert any("decimal commas read as points in columns ['log2FoldChange', 'padj']" in n for n in de.notes)
