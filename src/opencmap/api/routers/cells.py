"""``/cells``: cell lines of the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue
from opencmap.api.paging import one_record
from opencmap.api.routers.params import Paging, paged, paging
from opencmap.api.schemas import Page

__all__ = ["router"]

router = APIRouter(prefix="/cells", tags=["cells"])


@router.get("", response_model=Page, summary="List cell lines")
def list_cells(page: Annotated[Paging, Depends(paging)], catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> Page:
    return paged(catalogue.cells, page, search_columns=("cell_id",))


@router.get("/{cell_id}", summary="One cell line")
def get_cell(cell_id: str, catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> dict:
    return one_record(catalogue.cells, "cell_id", cell_id, missing=f"no cell line {cell_id!r} in this store; list them with GET /api/v1/cells")
