"""A township's notices for a month printed in one go: one PDF, or a zip of per-village PDFs, built in the
background with its progress shown."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth.deps import authorize  # noqa: F401
from app.web import render  # noqa: F401

router = APIRouter(include_in_schema=False)
