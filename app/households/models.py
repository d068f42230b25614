"""Households (农户) and their members, with history: nothing is hard-deleted, and who belonged where and when is
kept in `household_memberships`; every change to a household is also a `household_events` row for its history page.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class HouseholdStatus(StrEnum):
    ACTIVE = "active"
    MOVED_OUT = "moved_out"
    DISSOLVED = "dissolved"


HOUSEHOLD_STATUS_LABELS = {"active": "在册", "moved_out": "已迁出", "dissolved": "已注销"}


class MemberStatus(StrEnum):
    PRESENT = "present"
    MOVED_OUT = "moved_out"
    DECEASED = "deceased"


MEMBER_STATUS_LABELS = {"present": "在户", "moved_out": "已迁出", "deceased": "已故"}

RELATIONS = ["户主", "配偶", "子女", "儿子", "女儿", "儿媳", "女婿", "父母", "父亲", "母亲", "孙子女", "孙子", "孙女",
             "兄弟姐妹", "祖父母", "外孙子女", "其他"]
HEAD = "户主"
NO_GROUP_SORT = 1_000_000


class Household(SQLModel, table=True):
    __tablename__ = "households"
    __table_args__ = (
        UniqueConstraint("village_id", "number"),
        # the list order (village, group number, household number or head's pinyin), walked in order by search
        Index("ix_households_order_number", "village_id", "group_sort", "number_sort"),
        Index("ix_households_order_pinyin", "village_id", "group_sort", "head_pinyin"),
        Index("ix_households_roll", "village_id", "status", "created_at", "status_date"),  # who was on a year's roll
    )

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id")
    group_id: int | None = Field(default=None, foreign_key="village_groups.id")
    group_sort: int = Field(default=1_000_000)  # the group's number (kept with group_id), or last without a group
    number: str = Field(max_length=20)  # 户号, unique in the village, as the clerk writes it
    number_sort: str = Field(max_length=60)  # zero-padded digits, for natural order (2 before 10)
    # The head is a member; the foreign key is added after both tables exist (use_alter).
    head_member_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("members.id", use_alter=True,
                                                           name="fk_households_head_member_id_members")))
    head_name: str = Field(default="", max_length=40)
    head_pinyin: str = Field(default="", max_length=120)
    address: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=20)
    status: str = Field(default=HouseholdStatus.ACTIVE.value, max_length=12)
    status_date: date | None = None
    status_reason: str | None = Field(default=None, max_length=200)
    notes: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Member(SQLModel, table=True):
    __tablename__ = "members"
    __table_args__ = (
        Index("ix_members_village_pinyin", "village_id", "name_pinyin"),
        Index("ix_members_village_initials", "village_id", "name_initials"),
        Index("ix_members_village_name", "village_id", "name"),
        Index("ix_members_pinyin", "name_pinyin"),
        Index("ix_members_initials", "name_initials"),
        Index("ix_members_name", "name"),
    )

    id: int = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="households.id", index=True)
    village_id: int = Field(foreign_key="villages.id")
    name: str = Field(max_length=40)
    name_pinyin: str = Field(max_length=120)
    name_initials: str = Field(max_length=40)
    relation: str = Field(max_length=10)
    gender: str | None = Field(default=None, max_length=2)
    birth_date: date | None = None
    id_number: str | None = Field(default=None, max_length=18)  # as given (18, or a valid legacy 15)
    id_key: str | None = Field(default=None, max_length=18, unique=True)  # 18-digit canonical form
    phone: str | None = Field(default=None, max_length=20)
    party_member: bool = Field(default=False)
    living_away: bool = Field(default=False)  # 外出务工
    status: str = Field(default=MemberStatus.PRESENT.value, max_length=12)
    status_date: date | None = None
    status_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class HouseholdMembership(SQLModel, table=True):
    """One period of one member in one household (a split or merge ends one period and starts another)."""

    __tablename__ = "household_memberships"

    id: int = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="members.id", index=True)
    household_id: int = Field(foreign_key="households.id", index=True)
    relation: str = Field(max_length=10)
    started_on: date
    ended_on: date | None = None
    reason: str | None = Field(default=None, max_length=200)


class HouseholdEvent(SQLModel, table=True):
    """The household's own history (created, moved group, head changed, split, merged, moved out, edited …)."""

    __tablename__ = "household_events"

    id: int = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="households.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=30)
    description: str = Field(max_length=500)
    details: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor_id: int | None = None
    actor_name: str | None = Field(default=None, max_length=80)


class ImportBatch(SQLModel, table=True):
    """An uploaded roster waiting for the clerk's confirmation: parsed rows and problems are kept here, so the
    preview and the confirmation may be served by different workers and nothing is written before confirming."""

    __tablename__ = "roster_imports"

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="users.id")
    file_name: str = Field(max_length=200)
    file_sha256: str = Field(max_length=64)
    rows: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    problems: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    summary: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="preview", max_length=12)  # preview | applied | discarded
    created_at: datetime = Field(default_factory=utcnow)
    applied_at: datetime | None = None
