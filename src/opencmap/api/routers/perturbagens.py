"""``/perturbagens``: perturbagens of the store with their signatures, cell lines and PCLs."""

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

router = APIRouter(prefix="/perturbagens", tags=["perturbagens"])
Text = Annotated[str | None, Query(max_length=200)]


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
    perts = catalogue.perturbagens
    hit = perts[perts["pert_id"].astype(str) == pert_id]
    if hit.empty:
        raise IdNotFoundError(f"no perturbagen {pert_id!r} in this store; search with GET /api/v1/perturbagens?q=...")
    out = records(hit)[0]
    sigs = catalogue.signatures
    out["signatures"] = records(sigs[sigs["pert_id"].astype(str) == pert_id])
    return out
