"""``/signatures``: the store's signatures (``sig_info``), filtered and paged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue
from opencmap.api.paging import one_record
from opencmap.api.routers.params import Paging, Text, paged, paging
from opencmap.api.schemas import Page

__all__ = ["router"]

router = APIRouter(prefix="/signatures", tags=["signatures"])


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
    return one_record(catalogue.signatures, "sig_id", sig_id, missing=f"no signature {sig_id!r} in this store; search with GET /api/v1/signatures?q=...")
