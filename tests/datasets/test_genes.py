"""The bundled gene and cell tables are the real L1000 spaces (checked against CMap's own files)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from opencmap.datasets import TOUCHSTONE_CELLS, cell_table, gene_table, select_genes
from opencmap.errors import ConfigError


def test_gene_table_has_the_published_space_sizes():
    genes = gene_table()
    assert list(genes.columns) == ["pr_gene_id", "pr_gene_symbol", "pr_gene_title", "pr_is_lm", "pr_is_bing"]
    assert len(genes) == 12328  # AIG
    assert genes["pr_is_lm"].sum() == 978
    assert genes["pr_is_bing"].sum() == 10174
    assert (genes.loc[genes["pr_is_lm"] == 1, "pr_is_bing"] == 1).all()
    assert genes["pr_gene_id"].is_unique and genes["pr_gene_id"].str.fullmatch(r"[0-9]+").all()
    assert (genes["pr_is_lm"].iloc[:978] == 1).all()
    assert not genes["pr_gene_symbol"].isin(["", "-666"]).any()


def test_landmarks_match_cmap_row_meta(shared_data):
    ref = pd.read_csv(shared_data / "genes" / "row_meta_n978.txt", sep="\t", dtype=str)
    genes = gene_table()
    lm = genes[genes["pr_is_lm"] == 1].set_index("pr_gene_id")
    assert set(lm.index) == set(ref["pr_gene_id"])
    symbols = ref.set_index("pr_gene_id")["pr_gene_symbol"]
    assert (lm.loc[symbols.index, "pr_gene_symbol"] == symbols).mean() > 0.99


def test_spaces_match_lincs_gene_space(shared_data):
    ref = pd.read_csv(shared_data / "genes" / "LINCSGeneSpaceSub.txt", sep="\t", dtype=str)
    genes = gene_table().set_index("pr_gene_id")
    bing = set(ref.loc[ref["Type"].isin(["landmark", "best inferred"]), "Entrez ID"])
    aig = set(ref.loc[ref["Type"] != "not inferred", "Entrez ID"])
    assert set(genes.index) == aig
    assert set(genes.index[genes["pr_is_bing"] == 1]) == bing


def test_resource_gzip_is_reproducible():
    from importlib import resources

    raw = resources.files("opencmap.datasets").joinpath("resources", "genes_n12328.tsv.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0: the package data is byte-stable
    assert gzip.decompress(raw).startswith(b"pr_gene_id\t")


@pytest.mark.parametrize("n", [0, 1, 300, 1000, 5000])
def test_select_genes_keeps_landmarks_and_bing_share(n):
    genes = select_genes(n)
    assert len(genes) == 978 + n
    assert genes["pr_is_lm"].sum() == 978
    inferred = genes[genes["pr_is_lm"] == 0]
    if n >= 100:
        assert abs(inferred["pr_is_bing"].mean() - 9196 / 11350) < 0.01
    full = gene_table()
    # a subset in the table's order
    pos = full.reset_index().set_index("pr_gene_id").loc[genes["pr_gene_id"], "index"].to_numpy()
    assert np.all(np.diff(pos) > 0)


def test_select_genes_all_and_bad():
    assert len(select_genes(None)) == 12328
    assert len(select_genes(20000)) == 12328
    with pytest.raises(ConfigError):
        select_genes(-1)


def test_cell_table():
    cells = cell_table()
    assert tuple(cells["cell_id"].iloc[:9]) == TOUCHSTONE_CELLS
    assert cells["is_touchstone"].sum() == 9
    assert cells["cell_id"].is_unique and len(cells) >= 20
    some = cell_table(["MCF7", "A375"])
    assert some["cell_id"].tolist() == ["MCF7", "A375"]
    with pytest.raises(ConfigError, match="NOPE"):
        cell_table(["NOPE"])
