"""Query parameters shared by the listing routes (paging, sorting, search)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import pandas as pd
from fastapi import Query

from opencmap.api.paging import page_frame, records
from opencmap.api.schemas import Page

__all__ = ["Paging", "paging", "paged", "Text"]

Text = Annotated[str | None, Query(max_length=200)]
Column = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_]+$", description="Column to sort by.")]


@dataclass
class Paging:
    limit: int
    offset: int
    sort: str | None
    descending: bool
    search: str | None


def paging(
    limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9, description="Rows to skip.")] = 0,
    sort: Column = None,
    order: Annotated[Literal["asc", "desc"], Query(description="Sort order.")] = "asc",
    q: Annotated[str | None, Query(max_length=200, description="Case-insensitive text search.")] = None,
) -> Paging:
    """Dependency collecting the paging parameters."""
    return Paging(limit=limit, offset=offset, sort=sort, descending=order == "desc", search=q)


def paged(
    frame: pd.DataFrame,
    page: Paging,
    *,
    search_columns: Sequence[str],
    equals: Mapping[str, str | None] | None = None,
) -> Page:
    """One page of a metadata table (filters, search, sort) as the API's :class:`Page`."""
    total, rows = page_frame(
        frame,
        equals=equals,
        search=page.search,
        search_columns=search_columns,
        sort=page.sort,
        descending=page.descending,
        limit=page.limit,
        offset=page.offset,
    )
    return Page(total=total, offset=page.offset, limit=page.limit, items=records(rows))
