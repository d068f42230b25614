from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    at: datetime
    actor_id: int | None
    actor_name: str | None
    role: str | None
    scope: str | None
    action: str
    object_type: str | None
    object_id: str | None
    summary: dict[str, Any]
    request_id: str | None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    total: int
    offset: int
    limit: int


class ChainHead(BaseModel):
    seq: int
    hash: str
