"""JSON shapes of the points ledger (/api/v1). Points are integers; times are UTC ISO 8601."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.ledger import service as ledger


class EntryOut(BaseModel):
    account: str
    amount: int
    seq: int | None
    balance_after: int | None


class TransactionOut(BaseModel):
    id: int
    kind: str
    kind_label: str
    village_id: int
    month: int
    memo: str
    reference: str | None
    actor_name: str
    occurred_at: datetime
    reverses_id: int | None
    reversed_by: int | None = None
    entries: list[EntryOut]

    @classmethod
    def build(cls, tx: ledger.TxView, reversed_by: int | None = None) -> TransactionOut:
        return cls(id=tx.id, kind=tx.kind, kind_label=tx.kind_label, village_id=tx.village_id, month=tx.month,
                   memo=tx.memo, reference=tx.reference, actor_name=tx.actor_name, occurred_at=tx.occurred_at,
                   reverses_id=tx.reverses_id, reversed_by=reversed_by,
                   entries=[EntryOut(account=e.account, amount=e.amount, seq=e.seq, balance_after=e.balance_after)
                            for e in tx.entries])


class PostedOut(BaseModel):
    """The answer to a write that moves points. `replayed`: the Idempotency-Key had already been used for this very
    request, and this is the first answer again (nothing new was posted)."""

    transaction: TransactionOut | None
    replayed: bool
    balance: int
    requested: int | None = None
    applied: int | None = None


class ExpiringOut(BaseModel):
    date: date
    points: int


class PointsOut(BaseModel):
    household_id: int
    balance: int
    expiring: list[ExpiringOut]
    expiry_rule: str


class StatementLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the service's StatementLine
    seq: int
    transaction_id: int
    kind: str
    kind_label: str
    memo: str
    reference: str | None
    actor_name: str
    occurred_at: datetime
    amount: int
    balance_after: int
    reverses_id: int | None


class StatementOut(BaseModel):
    household_id: int
    balance: int
    items: list[StatementLineOut]
    total: int
    offset: int
    limit: int

    @classmethod
    def build(cls, st: ledger.Statement) -> StatementOut:
        return cls(household_id=st.household_id, balance=st.balance, total=st.total, offset=st.offset,
                   limit=st.limit,
                   items=[StatementLineOut.model_validate(ln) for ln in st.lines])


class AdjustIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: StrictInt = Field(ge=-1_000_000, le=1_000_000, description="正数加分，负数减分，不能为 0")
    reason: str = Field(min_length=2, max_length=200, description="原因，会显示在农户的积分明细里")


class ReverseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=2, max_length=200, description="冲正原因，会显示在农户的积分明细里")


class MonthSummaryOut(BaseModel):
    month: int
    opening: int
    issued: int
    penalty: int
    redeemed: int
    expired: int
    adjustment: int
    reversal: int
    closing: int

    @classmethod
    def build(cls, m: ledger.MonthSummary) -> MonthSummaryOut:
        k = m.by_kind
        return cls(month=m.month, opening=m.opening, issued=m.issued, penalty=-k.get("penalty", 0),
                   redeemed=m.redeemed, expired=m.expired, adjustment=k.get("adjustment", 0),
                   reversal=k.get("reversal", 0), closing=m.closing)


class VillageSummaryOut(BaseModel):
    village_id: int
    year: int
    households_with_points: int
    outstanding: int
    households_in_debt: int
    months: list[MonthSummaryOut]


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expiry_rule: str = Field(pattern="^(none|year_end_next|months)$")
    expiry_months: StrictInt | None = Field(default=None, ge=1, le=120)


class PolicyOut(BaseModel):
    expiry_rule: str
    expiry_months: int | None
    label: str

    @classmethod
    def build(cls, p: ledger.Policy) -> PolicyOut:
        return cls(expiry_rule=p.expiry_rule.value, expiry_months=p.expiry_months, label=p.label)
