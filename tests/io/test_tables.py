"""GEO-style tab-separated tables (opencmap.io.tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opencmap.errors import FormatError
from opencmap.io import read_table, write_table

SIG_INFO = (
    "sig_id\tpert_id\tpr_gene_id\tpert_dose\tdistil_nsample\tis_gold\tpert_iname\tcell_id\n"
    "S1\tBRD-K1\t780\t10\t3\t1\tvorinostat\t-666\n"
    "S2\t-666\t007\t-666\t2\t0\t-666\tA375\n"
)


def test_types_and_missing(tmp_path):
    path = tmp_path / "sig_info.txt"
    path.write_text(SIG_INFO)
    t = read_table(path)
    assert list(t.columns) == ["sig_id", "pert_id", "pr_gene_id", "pert_dose", "distil_nsample", "is_gold", "pert_iname", "cell_id"]
    assert t["pr_gene_id"].tolist() == ["780", "007"]  # *_id columns stay strings
    assert t["distil_nsample"].dtype == np.int64 and t["is_gold"].tolist() == [1, 0]
    assert t["pert_dose"].dtype == "Int64" and pd.isna(t["pert_dose"].iloc[1])
    assert pd.isna(t["pert_id"].iloc[1]) and pd.isna(t["cell_id"].iloc[0])
    indexed = read_table(path, index_col="sig_id")
    assert list(indexed.index) == ["S1", "S2"] and "sig_id" not in indexed.columns


def test_round_trip(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(SIG_INFO)
    t = read_table(path)
    write_table(t, tmp_path / "out.txt.gz")
    assert read_table(tmp_path / "out.txt.gz").equals(t)
    indexed = read_table(path, index_col=0)
    write_table(indexed, tmp_path / "i.txt")
    assert read_table(tmp_path / "i.txt", index_col="sig_id").equals(indexed)
    assert (tmp_path / "i.txt").read_text().splitlines()[2].split("\t")[1] == "-666"


def test_real_gene_info(shared_data):
    t = read_table(shared_data / "genes/geneinfo.tsv.gz")
    assert len(t) > 1000
    first = t.columns[0]
    assert t[first].map(type).eq(str).all()


def test_bad_tables(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(FormatError, match="empty"):
        read_table(tmp_path / "empty.txt")
    (tmp_path / "dup.txt").write_text("a\ta\n1\t2\n")
    with pytest.raises(FormatError, match="repeated column names"):
        read_table(tmp_path / "dup.txt")
    (tmp_path / "ragged.txt").write_text("a\tb\n1\t2\n3\n")
    with pytest.raises(FormatError, match="2 tab-separated fields|1 tab-separated fields") as info:
        read_table(tmp_path / "ragged.txt")
    assert info.value.line == 3
    (tmp_path / "idx.txt").write_text("a\tb\n1\t2\n1\t3\n")
    with pytest.raises(FormatError, match="repeated"):
        read_table(tmp_path / "idx.txt", index_col="a")
