"""Paginated list responses for the JSON API."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")

MAX_LIMIT = 200


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


def paginate(rows: list[T], offset: int, limit: int) -> Page[T]:
    return Page[T](items=rows[offset: offset + limit], total=len(rows), offset=offset, limit=limit)
