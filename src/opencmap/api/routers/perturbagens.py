"""``/perturbagens``: perturbagens of the store with their signatures, cell lines and PCLs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue
from opencmap.api.paging import one_record, records, rows_matching
from opencmap.api.routers.params import Paging, Text, paged, paging
from opencmap.api.schemas import Page

__all__ = ["router"]

router = APIRouter(prefix="/perturbagens", tags=["perturbagens"])


@router.get("", response_model=Page, summary="List perturbagens")
def list_perturbagens(
    page: Annotated[Paging, Depends(paging)],
    catalogue: Annotated[Catalogue, Depends(get_catalogue)],
    pert_type: Text = None,
    moa: Text = None,
) -> Page:
    return paged(catalogue.perturbagens, page, search_columns=("pert_id", "pert_iname", "moa", "target"), equals={"pert_type": pert_type, "moa": moa})


@router.get("/{pert_id}", summary="One perturbagen, its signatures and PCLs")
def get_perturbagen(pert_id: str, catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> dict:
    out = one_record(
        catalogue.perturbagens,
        "pert_id",
        pert_id,
        missing=f"no perturbagen {pert_id!r} in this store; search with GET /api/v1/perturbagens?q=...",
    )
    out["signatures"] = records(rows_matching(catalogue.signatures, "pert_id", pert_id))
    return out
