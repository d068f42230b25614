"""The evaluation committee (评议会) of a village: its members, each linked to his or her own household, and the
households a member declared he or she must not rate (recusals)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class CommitteeMember(SQLModel, table=True):
    """A user with the committee role in a village, linked to his or her own household (which the member never rates).
    Whether the member is active is the role grant's business; this row holds the link and the title."""

    __tablename__ = "committee_members"
    __table_args__ = (UniqueConstraint("village_id", "user_id"),)

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id", index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    household_id: int = Field(foreign_key="households.id")
    title: str = Field(default="委员", max_length=20)  # 主任 / 副主任 / 委员
    created_at: datetime = Field(default_factory=utcnow)


class Recusal(SQLModel, table=True):
    """A household a member declared he or she must not rate or vote on (a relative, a dispute). Withdrawn, never
    deleted."""

    __tablename__ = "committee_recusals"

    id: int = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="committee_members.id", index=True)
    household_id: int = Field(foreign_key="households.id")
    reason: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    withdrawn_at: datetime | None = None
