"""The way off the black list (整改 / 教育转化): a rectification plan for a black-list posting, the check visits, and
the committee's decision that lifts the posting early. The postings themselves are the evaluation's
(`list_postings`, created when a round is finalised); this domain follows them over time."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class Rectification(SQLModel, table=True):
    """One plan per black-list posting: what the household will do and who helps it (a party member, a committee
    member). `status`: open | lifted (the committee decided the household has changed)."""

    __tablename__ = "rectifications"

    id: int | None = Field(default=None, primary_key=True)
    posting_id: int = Field(foreign_key="list_postings.id", unique=True)
    village_id: int = Field(foreign_key="villages.id", index=True)
    household_id: int | None = Field(default=None, foreign_key="households.id", index=True)  # None once erased
    measures: str = Field(sa_column=Column(Text, nullable=False))  # 整改措施, shown to the household
    helper: str = Field(max_length=60)  # 帮扶人: who helps, as the committee writes it
    status: str = Field(default="open", max_length=8)
    created_by: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
    # the committee's decision to lift the posting early
    decided_on: date | None = None
    members_present: int | None = None
    members_for: int | None = None
    decision: str | None = Field(default=None, max_length=300)
    lifted_by: str | None = Field(default=None, max_length=80)
    lifted_at: datetime | None = None
    erased_at: datetime | None = None  # the personal details were erased after the retention period


class RectificationVisit(SQLModel, table=True):
    """A check visit (回访): when, what was seen. History: never changed, never deleted."""

    __tablename__ = "rectification_visits"

    id: int | None = Field(default=None, primary_key=True)
    rectification_id: int = Field(foreign_key="rectifications.id", index=True)
    visited_on: date
    notes: str = Field(max_length=500)
    by: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
