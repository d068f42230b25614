"""Stored rulesets (积分细则) and which one applies where and from when.

A ruleset version is immutable: its TOML text (the exact file, validated by app.rules) is the record. A change is a
new version with a higher number that takes effect from a chosen month; rounds keep the version they were closed
with. Assignments say which ruleset code a village (or, with no village, the whole county) uses from a month on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class RulesetVersion(SQLModel, table=True):
    __tablename__ = "rulesets"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: int = Field(default=None, primary_key=True)
    code: str = Field(max_length=40)
    version: int
    name: str = Field(max_length=80)
    effective_from: int  # YYYYMM
    toml: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=80)


class RulesetAssignment(SQLModel, table=True):
    __tablename__ = "ruleset_assignments"
    __table_args__ = (UniqueConstraint("village_id", "from_month"),)

    id: int = Field(default=None, primary_key=True)
    village_id: int | None = Field(default=None, foreign_key="villages.id", index=True)  # None: the whole county
    code: str = Field(max_length=40)
    from_month: int  # YYYYMM
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=80)
