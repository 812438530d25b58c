"""The CLUE collections (``perts``, ``sigs``, ``genes``, ``cells``, ``pcls``) built from a store.

Field names follow clue.io's API where this store has the data (see the package docstring for the
mapping); list-valued fields (``moa``, ``target``, ``cell_id`` of a perturbagen, PCL ``members``)
are Python lists, matched element-wise by :mod:`opencmap.api.clue.loopback`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from opencmap.api.catalogue import Catalogue
from opencmap.core.schema import parse_flags
from opencmap.query.store import Store

__all__ = ["ClueTables", "RESOURCES"]

RESOURCES = ("perts", "sigs", "genes", "cells", "pcls")


def _split(value: object) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [v for v in str(value).split("|") if v and v not in ("-666", "nan")]


def _entrez(ids: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(ids.astype(str), errors="coerce")
    if numbers.notna().all() and (numbers % 1 == 0).all():
        return numbers.astype(np.int64)
    return ids.astype(str)


@dataclass
class ClueTables:
    """One DataFrame per CLUE resource (see :data:`RESOURCES`)."""

    perts: pd.DataFrame
    sigs: pd.DataFrame
    genes: pd.DataFrame
    cells: pd.DataFrame
    pcls: pd.DataFrame

    def table(self, resource: str) -> pd.DataFrame:
        return getattr(self, resource)

    @classmethod
    def build(cls, store: Store, catalogue: Catalogue) -> ClueTables:
        sigs = catalogue.signatures.copy()

        p = catalogue.perturbagens
        perts = pd.DataFrame({
            "pert_id": p["pert_id"].astype(str),
            "pert_iname": p["pert_iname"] if "pert_iname" in p else p["pert_id"],
            "pert_type": p["pert_type"] if "pert_type" in p else "",
            "moa": [_split(v) for v in p["moa"]] if "moa" in p else [[] for _ in range(len(p))],
            "target": [_split(v) for v in p["target"]] if "target" in p else [[] for _ in range(len(p))],
            "num_sig": p["n_sigs"].astype(np.int64),
            "cell_id": [_split(v) for v in p["cells"]],
            "num_cell": p["n_cells"].astype(np.int64),
            "pcl_membership": [_split(v) for v in p["pcls"]],
        })  # fmt: skip

        g = store.genes.reset_index(drop=True)
        source = g["entrez_id"] if "entrez_id" in g.columns else g["pr_gene_id"]
        lm = pd.Series(parse_flags(g["pr_is_lm"]), index=g.index) if "pr_is_lm" in g else pd.Series(False, index=g.index)
        bing = pd.Series(parse_flags(g["pr_is_bing"]), index=g.index) if "pr_is_bing" in g else pd.Series(False, index=g.index)
        genes = pd.DataFrame({
            "entrez_id": _entrez(source),
            "gene_symbol": g["pr_gene_symbol"].astype(str) if "pr_gene_symbol" in g else g["pr_gene_id"].astype(str),
            "gene_title": g["pr_gene_title"].astype(str) if "pr_gene_title" in g else "",
            "l1000_type": np.where(lm, "landmark", np.where(bing, "best inferred", "inferred")),
        })  # fmt: skip
        for col in g.columns:  # the store's own gene fields too (pr_gene_id, pr_is_lm, ...)
            if col not in genes.columns:
                genes[col] = g[col].to_numpy()

        c = catalogue.cells
        cells = pd.DataFrame({
            "cell_id": c["cell_id"].astype(str),
            "cell_iname": c["cell_id"].astype(str),
            "num_sig": c["n_sigs"].astype(np.int64),
            "num_pert": c["n_perts"].astype(np.int64),
        })  # fmt: skip

        members = catalogue.pcl_members
        pcls = pd.DataFrame({
            "group_id": list(members),
            "name": list(members),
            "type": "PCL",
            "members": [list(m) for m in members.values()],
            "num_members": [len(m) for m in members.values()],
            "num_in_store": catalogue.pcls["n_in_store"].astype(np.int64).tolist() if len(catalogue.pcls) else [],
        })  # fmt: skip
        for frame, key in ((perts, "pert_id"), (sigs, "sig_id"), (genes, "entrez_id"), (cells, "cell_id"), (pcls, "group_id")):
            if "id" not in frame.columns:  # LoopBack records carry an id: here the primary id, as text
                frame.insert(0, "id", frame[key].astype(str).to_numpy())
        return cls(perts=perts, sigs=sigs, genes=genes, cells=cells, pcls=pcls)
