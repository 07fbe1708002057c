"""Paging query parameters shared by every listing, counted from 0."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from fastapi import Query

from fleetgate.store.database import MAX_PAGE

# Golioth's API allows at most 100 items per page. Fleetgate allows
# more, so every page size that Golioth accepts is accepted here too.
MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 100

PageQuery = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_PAGE,
        description=f"Page to return, counting from 0, at most {MAX_PAGE}.",
    ),
]
PerPageQuery = Annotated[
    int,
    Query(
        alias="perPage",
        ge=1,
        le=MAX_PER_PAGE,
        description=f"Items per page, 1-{MAX_PER_PAGE}.",
    ),
]

Item = TypeVar("Item")


def page_of(items: Sequence[Item], page: int, per_page: int) -> list[Item]:
    """Return the items of one page of an in-memory list."""
    start = page * per_page
    return list(items[start : start + per_page])
