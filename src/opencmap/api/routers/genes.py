"""``/genes``: the store's genes; look-up by Entrez id, Ensembl id or any symbol, saying how it matched."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue
from opencmap.api.paging import one_record
from opencmap.api.routers.params import Paging, paged, paging
from opencmap.api.schemas import Page
from opencmap.errors import IdNotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/genes", tags=["genes"])


@router.get("", response_model=Page, summary="List or search genes")
def list_genes(
    page: Annotated[Paging, Depends(paging)],
    catalogue: Annotated[Catalogue, Depends(get_catalogue)],
    space: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_\-]+$", description="Only genes of this feature space.")] = None,
) -> Page:
    genes = catalogue.genes
    if space is not None:
        col = f"in_{space}"
        if col not in genes.columns:
            raise IdNotFoundError(f"no feature space {space!r}; spaces: {[c[3:] for c in genes.columns if c.startswith('in_')]}")
        genes = genes[genes[col] == 1]
    return paged(genes, page, search_columns=("pr_gene_id", "pr_gene_symbol", "pr_gene_title"))


@router.get("/{gene}", summary="Look up a gene by Entrez id, Ensembl id, symbol, previous symbol or alias")
def get_gene(gene: str, catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> dict:
    m = catalogue.lookup.map(gene)
    if m.gene_id is None:
        suggestions = list(catalogue.lookup.suggest(gene, m))
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        if m.status == "ambiguous":
            cands = ", ".join(f"{s} (Entrez {e})" for e, s in m.candidates)
            raise IdNotFoundError(f"gene {gene!r} is ambiguous: a name of {cands}; write the Entrez id or current symbol{hint}")
        why = f" ({m.note})" if m.note else ""
        raise IdNotFoundError(f"unknown gene {gene!r}{why}: not an Entrez id, Ensembl id or symbol of this store{hint}")
    record = one_record(catalogue.genes, "pr_gene_id", m.gene_id, missing=f"gene {gene!r} resolved to {m.gene_id!r}, which is not in this store's gene table")
    via = (m.via or "") + (", case changed" if m.case_changed else "")
    return {**record, "query": gene, "via": via, "current_symbol": m.symbol, "entrez_id": m.entrez_id, "note": m.note}
