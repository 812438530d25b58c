"""What the server knows about its store: signatures, perturbagens, cell lines, genes and PCLs.

Built once at start-up from the store's tables (``sig_info``, gene table) and the engine's PCLs;
the routers only filter and page these frames. Gene names are resolved with the store's shared
:class:`~opencmap.query.reference.ReferenceIndex` (the engine's), not a lookup of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from opencmap.core.schema import PERT_FIELDS

from opencmap.query.genesets import GeneLookup
from opencmap.query.reference import ReferenceIndex
from opencmap.query.store import Store

__all__ = ["Catalogue", "PERT_FIELDS"]



def _joined(values: pd.Series) -> str:
    return "|".join(sorted(set(values.astype(str))))


@dataclass
class Catalogue:
    """Metadata tables of one store (see the module docstring)."""

    signatures: pd.DataFrame
    perturbagens: pd.DataFrame
    cells: pd.DataFrame
    genes: pd.DataFrame
    pcls: pd.DataFrame
    pcl_members: dict[str, tuple[str, ...]]
    lookup: GeneLookup

    @classmethod
    def build(
        cls, store: Store, *, pcl: Mapping[str, Sequence[str]] | None = None, index: ReferenceIndex | None = None
    ) -> Catalogue:
        """The catalogue of ``store``; ``index`` (default: the store's shared index for ``pcl``)
        gives the gene lookup."""
        sig = store.sig_info.reset_index(drop=True).copy()
        for col in ("pert_id", "cell_id", "pert_type", "pert_iname"):
            if col not in sig.columns:
                sig[col] = ""
        grouped = sig.groupby("pert_id", sort=True)
        perts = grouped.agg(
            **{f: (f, "first") for f in PERT_FIELDS if f in sig.columns},
            n_sigs=("sig_id", "size"),
            n_cells=("cell_id", "nunique"),
            cells=("cell_id", _joined),
        ).reset_index()
        members = {str(k): tuple(str(m) for m in v) for k, v in (pcl or {}).items()}
        pcl_of: dict[str, list[str]] = {}
        for name, ms in members.items():
            for m in ms:
                pcl_of.setdefault(m, []).append(name)
        perts["pcls"] = ["|".join(pcl_of.get(p, [])) for p in perts["pert_id"].astype(str)]
        cells = (
            sig.groupby("cell_id", sort=True)
            .agg(n_sigs=("sig_id", "size"), n_perts=("pert_id", "nunique"))
            .reset_index()
        )
        present = set(perts["pert_id"].astype(str))
        pcls = pd.DataFrame(
            {
                "pcl": list(members),
                "n_members": [len(m) for m in members.values()],
                "n_in_store": [sum(1 for x in m if x in present) for m in members.values()],
            }
        )
        genes = store.genes.reset_index(drop=True).copy()
        for name, sp in store.spaces.items():
            genes[f"in_{name}"] = genes["pr_gene_id"].astype(str).isin(set(sp.gene_ids)).astype(int)
        return cls(
            signatures=sig,
            perturbagens=perts,
            cells=cells,
            genes=genes,
            pcls=pcls,
            pcl_members=members,
            lookup=(index if index is not None else ReferenceIndex.of(store, pcl)).lookup,
        )
