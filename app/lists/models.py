"""The way off the black list (整改 / 教育转化): a rectification plan for a black-list posting, the check visits, and
the committee's decision that lifts the posting early. The postings (`list_postings`) are created when a round is
finalised; this domain keeps them, their counts, and follows them over time."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class Rectification(SQLModel, table=True):
    """One plan per black-list posting: what the household will do and who helps it (a party member, a committee
    member). `status`: open | lifted (the committee decided the household has changed)."""

    __tablename__ = "rectifications"

    id: int = Field(default=None, primary_key=True)
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

    id: int = Field(default=None, primary_key=True)
    rectification_id: int = Field(foreign_key="rectifications.id", index=True)
    visited_on: date
    notes: str = Field(max_length=500)
    by: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)


class ListPosting(SQLModel, table=True):
    """A red or black list posting (红榜/黑榜), created when a round is finalised: shown from `from_month` to
    `to_month`. `status`: effective | voided (an upheld objection) | lifted | expired."""

    __tablename__ = "list_postings"
    __table_args__ = (Index("ix_list_postings_village_months", "village_id", "from_month", "to_month"),)

    id: int = Field(default=None, primary_key=True)
    round_id: int | None = Field(default=None, foreign_key="eval_rounds.id", index=True)
    village_id: int = Field(foreign_key="villages.id")
    household_id: int | None = Field(default=None, foreign_key="households.id", index=True)  # None once erased
    list: str = Field(max_length=6)  # red | black
    source: str = Field(max_length=14)
    code: str = Field(max_length=40)
    theme: str | None = Field(default=None, max_length=20)
    member_id: int | None = Field(default=None, foreign_key="members.id")
    member_name: str | None = Field(default=None, max_length=40)
    reason: str = Field(max_length=200)
    explanation: str = Field(max_length=1000)
    from_month: int
    to_month: int
    status: str = Field(default="effective", max_length=10)
    motion_id: int | None = Field(default=None, foreign_key="eval_motions.id")
    objection_id: int | None = Field(default=None, foreign_key="eval_objections.id")
    created_at: datetime = Field(default_factory=utcnow)
    erased_at: datetime | None = None  # the personal details were erased after the retention period


class ListCount(SQLModel, table=True):
    """How many households a village's red and black lists reached in a period (`period`: YYYYMM for a month,
    YYYY00 for the whole year; each household counted once per period, voided postings left out). Rewritten from
    the postings whenever a round is finalised or an objection changes them; `frozen` once the postings' personal
    details are erased (the counts stay, the postings no longer say who)."""

    __tablename__ = "list_counts"

    village_id: int = Field(foreign_key="villages.id", primary_key=True)
    period: int = Field(primary_key=True)
    red: int = 0
    black: int = 0
    covered: int = 0  # on either list
    frozen: bool = False
