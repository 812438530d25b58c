"""``/genes``: the store's genes; look-up by Entrez id or symbol with suggestions."""

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


@router.get("/{gene}", summary="Look up a gene by Entrez id or symbol")
def get_gene(gene: str, catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> dict:
    gid = catalogue.lookup.resolve(gene)
    if gid is None:
        suggestions = list(catalogue.lookup.suggest(gene))
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        raise IdNotFoundError(f"unknown gene {gene!r} (not an Entrez id or symbol of this store){hint}")
    return one_record(catalogue.genes, "pr_gene_id", gid, missing=f"gene {gene!r} resolved to {gid!r}, which is not in this store's gene table")
