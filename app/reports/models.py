"""A household's consent to its credit file (信用档案) leaving the system, for the 信用村 / 信用户 evaluation."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class CreditConsent(SQLModel, table=True):
    """Given by the household (on paper or in person), recorded by the village clerk; withdrawn the same way. Only a
    household with a consent in force appears in an export."""

    __tablename__ = "credit_consents"

    id: int = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="households.id", index=True)
    given_on: date
    how: str = Field(max_length=100)  # 户主签字的同意书 / 户主本人到村委会当面同意
    recorded_by: str = Field(max_length=80)
    recorded_at: datetime = Field(default_factory=utcnow)
    withdrawn_on: date | None = None
    withdrawn_by: str | None = Field(default=None, max_length=80)
