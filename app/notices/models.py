"""Public notices (公示) as generated, registered so that anyone can check a printed copy; the township's batch
prints; and the PIN a household uses to see its own points on the public portal."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, Index, LargeBinary
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class Notice(SQLModel, table=True):
    """One generated notice. `content` is exactly what was printed (names already masked, no ID number or phone), so
    the public verification page can show it beside the paper; `content_sha256` is its hash (canonical JSON) and
    `pdf_sha256` the PDF's as it was handed out. A later notice of the same kind, scope and period supersedes it.
    Nothing but the supersession is ever changed."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_scope", "village_id", "kind", "period"),)

    id: int = Field(default=None, primary_key=True)
    code: str = Field(max_length=12, unique=True)  # printed under the QR: 8 characters, no look-alikes
    kind: str = Field(max_length=12)  # results | red | black | ranking | finance | statement | review
    village_id: int = Field(foreign_key="villages.id")
    household_id: int | None = Field(default=None, foreign_key="households.id")  # a household's statement
    round_id: int | None = Field(default=None, foreign_key="eval_rounds.id")
    period: int  # YYYYMM, or YYYY00 for a year
    title: str = Field(max_length=120)
    content: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_sha256: str = Field(max_length=64)
    pdf_sha256: str | None = Field(default=None, max_length=64)
    masking: str = Field(max_length=8)
    audit_seq: int  # the audit chain's head when it was generated, printed on the notice
    audit_hash: str = Field(max_length=64)
    generated_at: datetime = Field(default_factory=utcnow)
    generated_by: str = Field(max_length=80)
    superseded_by_id: int | None = Field(default=None, foreign_key="notices.id")
    superseded_at: datetime | None = None
    # HMAC-SHA256 under a key derived from the server's secret (not in the database) over the code, the hashes and
    # the printed head (app.notices.service.notices.seal_of); set once, when registered (or sealed after an upgrade)
    mac: str | None = Field(default=None, max_length=64)


class NoticeBatch(SQLModel, table=True):
    """A township's notices for a month, built in the background into one PDF or a zip of per-village PDFs."""

    __tablename__ = "notice_batches"

    id: int = Field(default=None, primary_key=True)
    township_id: int = Field(foreign_key="townships.id", index=True)
    month: int
    form: str = Field(max_length=4)  # pdf | zip
    status: str = Field(default="queued", max_length=8)  # queued | running | done | failed
    total: int = 0
    done: int = 0
    error: str | None = Field(default=None, max_length=500)
    file_name: str | None = Field(default=None, max_length=200)
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_by: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class HouseholdPin(SQLModel, table=True):
    """The PIN a household enters with its card code on the public portal to see its own points (set by the
    village clerk; stored as a password hash)."""

    __tablename__ = "household_pins"

    household_id: int = Field(foreign_key="households.id", primary_key=True)
    pin_hash: str = Field(max_length=200)
    set_by: str = Field(max_length=80)
    set_at: datetime = Field(default_factory=utcnow)
