"""The pipeline reads the releases' instance and gene tables by their id columns, never by position."""

from __future__ import annotations

import pandas as pd
import pytest

from opencmap.errors import FormatError
from opencmap.pipeline.run import _merge_gene_info, _read_inst_info
from releases.replicas import write_lincs2020


def test_instinfo_beta_is_keyed_by_sample_id(tmp_path):
    files = write_lincs2020(tmp_path)
    inst = _read_inst_info(files["inst_info"])
    raw = pd.read_csv(files["inst_info"], sep="\t", dtype=str)
    assert list(inst.index) == raw["sample_id"].tolist()  # not bead_batch, its first column
    bad = tmp_path / "noid.txt"
    raw.drop(columns="sample_id").to_csv(bad, sep="\t", index=False)
    with pytest.raises(FormatError, match="noid.txt.*columns found.*bead_batch"):
        _read_inst_info(bad)


def test_geneinfo_beta_merged_by_gene_id(tmp_path):
    files = write_lincs2020(tmp_path)
    rows = pd.DataFrame(index=pd.Index(["5720", "16"], dtype=object))
    merged = _merge_gene_info(rows, files["gene_info"])
    assert merged.loc["5720", "pr_gene_symbol"] == "PSME1" and merged.loc["16", "pr_gene_symbol"] == "AARS"
    assert merged.loc["5720", "pr_is_lm"] == 1
