"""A run's input tables: the instance table and the gene table, merged onto the matrix's metadata.

* :func:`read_inst_info` reads an instance table (GEO ``inst_info`` with ``inst_id``, or LINCS 2020
  ``instinfo_beta`` with ``sample_id``) indexed by instance id (strings);
* :func:`merge_inst_info` overrides/extends the matrix's column metadata with it (every matrix
  column must be described; extra rows are ignored and logged);
* :func:`merge_gene_info` adds the gene table's fields (``pr_is_lm``, ...) to the row metadata.
"""

from __future__ import annotations

import logging
from os import PathLike

import pandas as pd

from opencmap.errors import FormatError, PipelineError
from opencmap.io import read_table

__all__ = ["read_inst_info", "merge_inst_info", "merge_gene_info"]

log = logging.getLogger(__name__)


def read_inst_info(inst_info: str | PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(inst_info, pd.DataFrame):
        frame = inst_info.copy()
        if "inst_id" in frame.columns:
            frame = frame.set_index("inst_id")
    else:
        frame = read_table(inst_info)
        # GEO inst_info: inst_id; LINCS 2020 instinfo_beta: sample_id (never "the first column")
        key = next((k for k in ("inst_id", "sample_id") if k in frame.columns), None)
        if key is None:
            raise FormatError(
                f"instance table without an id column (inst_id, or sample_id in LINCS 2020 instinfo_beta); "
                f"columns found: {[str(c) for c in frame.columns[:25]]}",
                path=inst_info,
            )
        ids = frame[key].astype("str")
        if ids.duplicated().any():
            raise PipelineError(f"{inst_info}: repeated instance ids {ids[ids.duplicated()].unique()[:5].tolist()}")
        frame = frame.drop(columns=[key])
        frame.index = pd.Index(ids.to_numpy(), dtype=object)
    frame.index = pd.Index([str(i) for i in frame.index], dtype=object, name="cid")
    return frame


def merge_inst_info(col_meta: pd.DataFrame, inst_info: str | PathLike[str] | pd.DataFrame | None) -> pd.DataFrame:
    """Column metadata of the run: the matrix's own (``col_meta``), overridden/extended by ``inst_info``."""
    if inst_info is None:
        return col_meta
    table = read_inst_info(inst_info)
    cids = col_meta.index
    missing = cids.difference(table.index, sort=False)
    if len(missing):
        where = inst_info if not isinstance(inst_info, pd.DataFrame) else "the instance table"
        raise PipelineError(
            f"{len(missing)} of the {len(cids)} matrix columns are not in {where}, e.g. "
            f"{missing[:5].tolist()}; the instance table must describe every column (ids compared as strings)"
        )
    extra = len(table) - len(cids)
    if extra > 0:
        log.info("instance table describes %d instances not in the matrix; they are ignored", extra)
    meta = table.loc[cids]
    for field in col_meta.columns:
        if field not in meta.columns:
            meta[field] = col_meta[field].to_numpy()
    return meta


def merge_gene_info(row_meta: pd.DataFrame, gene_info: str | PathLike[str] | pd.DataFrame | None) -> pd.DataFrame:
    """Row metadata of the run: the matrix's own (``row_meta``), extended by the gene table's fields."""
    if gene_info is None:
        return row_meta
    from opencmap.io.releases import canonical_genes

    raw = gene_info if isinstance(gene_info, pd.DataFrame) else read_table(gene_info)
    # GEO gene_info (pr_gene_id) or LINCS 2020 geneinfo_beta (gene_id, feature_space); never row numbers
    genes = canonical_genes(raw, source=None if isinstance(gene_info, pd.DataFrame) else gene_info).set_index("pr_gene_id")
    if "feature_space" not in raw.columns:
        genes = genes.drop(columns="feature_space")
    genes.index = pd.Index([str(i) for i in genes.index], dtype=object)
    known = row_meta.index.intersection(genes.index)
    if len(known) == 0:
        raise PipelineError(
            "none of the matrix row ids are in the gene table's pr_gene_id column; "
            "the rows must be Entrez gene ids matching the gene table"
        )
    added = genes.reindex(row_meta.index)
    for field in added.columns:
        if field not in row_meta.columns:
            row_meta[field] = added[field].to_numpy()
    return row_meta
