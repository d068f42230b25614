"""The public portal (no login): a village's current notices, red list, ranking and supermarket accounts, readable
on a phone; and a household's own points behind its card code and PIN."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth.deps import authorize  # noqa: F401  (the portal's routes declare Perm.PUBLIC)
from app.web import render  # noqa: F401

router = APIRouter(include_in_schema=False)
