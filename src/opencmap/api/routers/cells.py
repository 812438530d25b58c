"""``/cells``: cell lines of the store."""

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

router = APIRouter(prefix="/cells", tags=["cells"])


@router.get("", response_model=Page, summary="List cell lines")
def list_cells(page: Annotated[Paging, Depends(paging)], catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> Page:
    return paged(catalogue.cells, page, search_columns=("cell_id",))


@router.get("/{cell_id}", summary="One cell line")
def get_cell(cell_id: str, catalogue: Annotated[Catalogue, Depends(get_catalogue)]) -> dict:
    cells = catalogue.cells
    hit = cells[cells["cell_id"].astype(str) == cell_id]
    if hit.empty:
        raise IdNotFoundError(f"no cell line {cell_id!r} in this store; list them with GET /api/v1/cells")
    return records(hit)[0]
