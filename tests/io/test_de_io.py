"""Reading DE tables and ranked lists as the tools write them (opencmap.io.de)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from opencmap.errors import FormatError
from opencmap.io.de import ROW_NAMES, read_de_table, read_rnk

DATA = Path(__file__).resolve().parents[1] / "data" / "de"


def test_row_names_become_the_unnamed_column():
    deseq = read_de_table(DATA / "deseq2_results.csv")  # header field ""
    edger = read_de_table(DATA / "edger_toptags.tsv")  # header one field short
    for frame in (deseq, edger):
        assert frame.columns[0] == ROW_NAMES
    assert list(deseq.columns[1:]) == ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]
    assert deseq.iloc[0, 0] == "GENE0" and deseq.loc[60, "padj"] == "NA"
    assert edger.iloc[0, 0] == "1017" and list(edger.columns[1:]) == ["logFC", "logCPM", "F", "PValue", "FDR"]
    limma = read_de_table(DATA / "limma_toptable.txt")
    assert list(limma.columns) == ["ID", "logFC", "AveExpr", "t", "P.Value", "adj.P.Val", "B"]


def test_ids_stay_text_and_gzip(tmp_path):
    p = tmp_path / "t.tsv.gz"
    p.write_bytes(gzip.compress(b"gene\tlogFC\tFDR\n0780\t1.5\t0.01\n"))
    frame = read_de_table(p)
    assert frame.loc[0, "gene"] == "0780"


def test_bad_tables(tmp_path):
    with pytest.raises(FormatError, match="file not found"):
        read_de_table(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(FormatError, match="empty file"):
        read_de_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("gene,logFC\n")
    with pytest.raises(FormatError, match="no rows"):
        read_de_table(tmp_path / "header.csv")
    (tmp_path / "dup.csv").write_text("gene,logFC,logFC\na,1,2\n")
    with pytest.raises(FormatError, match="repeated column names"):
        read_de_table(tmp_path / "dup.csv")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(FormatError, match=r"\.xlsx or CSV"):
        read_de_table(tmp_path / "old.xls")


def test_rnk(tmp_path):
    ranked = read_rnk(DATA / "ranked.rnk")
    assert len(ranked) == 60 and ranked.index[0] == "GENE17" and ranked.name == "ranked"
    p = tmp_path / "spaces.rnk"
    p.write_text("Gene Score\nTP53  2.5\nMYC -1e-3\n")
    assert read_rnk(p).to_dict() == {"TP53": 2.5, "MYC": -0.001}
    (tmp_path / "three.rnk").write_text("A\t1\t2\n")
    with pytest.raises(FormatError, match="line 1"):
        read_rnk(tmp_path / "three.rnk")
    (tmp_path / "nan.rnk").write_text("A\t1\nB\tnan\n")
    with pytest.raises(FormatError, match="NaN"):
        read_rnk(tmp_path / "nan.rnk")
