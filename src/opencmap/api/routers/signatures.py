"""``/signatures``: the store's signatures (``sig_info``), filtered and paged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue
from opencmap.api.paging import records
from opencmap.api.routers.params import Paging, paged, paging
from opencmap.api.schemas import Page
from opencmap.errors import IdNotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/signatures", tags=["signatures"])
Text = Annotated[str | None, Query(max_length=200)]


@router.get("", response_model=Page, summary="List signatures")
def list_signatures(
    page: Annotated[Paging, Depends(paging)],
    catalogue: Annotated[Catalogue, Depends(get_catalogue)],
    pert_id: Text = None,
    cell_id: Text = None,
    pert_type: Text = None,
) -> Page:
    return paged(catalogue.signatures, page, search_columns=("sig_id", "pert_id", "pert_iname", "cell_id", "moa"), equals={"pert_id": pert_id, "cell_id": cell_id, "pert_type": pert_type})


@router.get("/{sig_id}", summary="One signature's metadata")
def get_signature(sig_id: str, catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> dict:
    sig = catalogue.signatures
    hit = sig[sig["sig_id"].astype(str) == sig_id]
    if hit.empty:
        raise IdNotFoundError(f"no signature {sig_id!r} in this store; search with GET /api/v1/signatures?q=...")
    return records(hit)[0]
