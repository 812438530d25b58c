"""``/pcls``: perturbagen classes (PCLs) known to the server."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue
from opencmap.api.paging import records
from opencmap.api.routers.params import Paging, paged, paging
from opencmap.api.schemas import Page
from opencmap.errors import IdNotFoundError

__all__ = ["router"]

router = APIRouter(prefix="/pcls", tags=["pcls"])


@router.get("", response_model=Page, summary="List PCLs")
def list_pcls(page: Annotated[Paging, Depends(paging)], catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> Page:
    return paged(catalogue.pcls, page, search_columns=("pcl",))


@router.get("/{pcl}", summary="One PCL and its member perturbagens")
def get_pcl(pcl: str, catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> dict:
    if pcl not in catalogue.pcl_members:
        raise IdNotFoundError(f"no PCL {pcl!r}; list them with GET /api/v1/pcls")
    members = catalogue.pcl_members[pcl]
    perts = catalogue.perturbagens
    return {
        "pcl": pcl,
        "members": list(members),
        "perturbagens": records(perts[perts["pert_id"].astype(str).isin(set(members))]),
    }
