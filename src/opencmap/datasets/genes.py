"""Bundled gene and cell-line tables: the real L1000 gene spaces and the Touchstone cell lines.

* :func:`gene_table` -- the 12,328 AIG genes (978 landmarks first, then inferred genes, each block
  sorted by Entrez id) with GSE92742 ``gene_info`` columns ``pr_gene_id, pr_gene_symbol,
  pr_gene_title, pr_is_lm, pr_is_bing``. ``pr_is_bing`` is 1 for the 10,174 BING genes.
* :func:`select_genes` -- all landmarks plus a deterministic subset of the inferred genes that
  keeps the BING / non-BING proportion (small compendia).
* :func:`cell_table` -- 25 real cell lines (the 9 Touchstone lines first) with GSE92742
  ``cell_info`` columns.

Sources and licences are listed in ``resources/README.md``.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import pandas as pd

from opencmap.errors import ConfigError

__all__ = ["gene_table", "select_genes", "cell_table", "TOUCHSTONE_CELLS", "N_LANDMARKS"]

N_LANDMARKS = 978
TOUCHSTONE_CELLS: tuple[str, ...] = ("A375", "A549", "HA1E", "HCC515", "HEPG2", "HT29", "MCF7", "PC3", "VCAP")

_GENES = "genes_n12328.tsv.gz"
_CELLS = "cells_n25.tsv"


def _resource(name: str) -> pd.DataFrame:
    ref = resources.files("opencmap.datasets").joinpath("resources", name)
    with resources.as_file(ref) as path:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


@functools.cache
def _gene_table() -> pd.DataFrame:
    df = _resource(_GENES)
    for col in ("pr_is_lm", "pr_is_bing"):
        df[col] = df[col].astype(np.int64)
    return df


def gene_table() -> pd.DataFrame:
    """The 12,328 AIG genes: landmarks first, then inferred genes, each block sorted by Entrez id.

    Columns ``pr_gene_id`` (Entrez id as text), ``pr_gene_symbol``, ``pr_gene_title``,
    ``pr_is_lm`` and ``pr_is_bing`` (0/1, int64). A fresh copy on each call.
    """
    return _gene_table().copy()


def select_genes(n_inferred: int | None = None) -> pd.DataFrame:
    """All 978 landmarks plus ``n_inferred`` inferred genes (``None`` = all 11,350).

    The subset takes evenly spaced genes from the BING and the non-BING inferred genes separately,
    in proportion to their sizes (9,196 : 2,154), so the BING fraction of the full space is kept.
    The result keeps the table order (landmarks first) and a fresh RangeIndex.
    """
    genes = _gene_table()
    inferred = genes[genes["pr_is_lm"] == 0]
    if n_inferred is None or n_inferred >= len(inferred):
        return genes.copy()
    if n_inferred < 0:
        raise ConfigError(f"n_inferred must be >= 0 or None (all), got {n_inferred}")
    bing = inferred.index[inferred["pr_is_bing"] == 1]
    other = inferred.index[inferred["pr_is_bing"] == 0]
    n_bing = int(round(n_inferred * len(bing) / len(inferred)))
    n_other = n_inferred - n_bing

    def spaced(idx: pd.Index, k: int) -> np.ndarray:
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        pos = np.floor((np.arange(k) + 0.5) * len(idx) / k).astype(np.int64)
        return idx.to_numpy()[pos]

    keep = np.concatenate([genes.index[genes["pr_is_lm"] == 1].to_numpy(), spaced(bing, n_bing), spaced(other, n_other)])
    return genes.loc[np.sort(keep)].reset_index(drop=True)


@functools.cache
def _cell_table() -> pd.DataFrame:
    df = _resource(_CELLS)
    df["is_touchstone"] = df["is_touchstone"].astype(np.int64)
    return df


def cell_table(cell_ids: list[str] | tuple[str, ...] | None = None) -> pd.DataFrame:
    """GSE92742 ``cell_info`` rows of the bundled cell lines (all 25, or ``cell_ids`` in that order)."""
    cells = _cell_table()
    if cell_ids is None:
        return cells.copy()
    known = set(cells["cell_id"])
    unknown = [c for c in cell_ids if c not in known]
    if unknown:
        raise ConfigError(
            f"unknown cell line(s) {unknown}; the synthetic compendium knows {sorted(known)}"
        )
    return cells.set_index("cell_id").loc[list(cell_ids)].reset_index()
