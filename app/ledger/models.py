"""The points ledger: accounts, transactions and their entries (DESIGN §5). Written only by app/ledger/service/.

- A household account keeps its balance and entry count on its own row (`balance`, `entry_count`), locked by every
  posting that touches it. Source and sink accounts (`village:<id>:issue` …) keep neither: their balance is a sum.
- Transactions and entries are append-only: migrations install triggers that refuse UPDATE and DELETE.
- An entry on a kept-balance account carries its place in the account's chain (`seq` 1, 2, 3 …, unique per
  account) and the balance after it, so a statement page is an index range and `verify` can replay the chain.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class AccountKind(StrEnum):
    HOUSEHOLD = "household"  # kept balance; a spend may never overdraw it
    ISSUE = "issue"  # village:<id>:issue, the source of awarded points
    EXPIRED = "expired"  # village:<id>:expired, the sink of expired points
    ADJUST = "adjust"  # village:<id>:adjust, the other side of corrections and penalties
    REDEEMED = "redeemed"  # store:<id>:redeemed, the sink of spent points


class TxKind(StrEnum):
    AWARD = "award"
    PENALTY = "penalty"
    REDEMPTION = "redemption"
    REVERSAL = "reversal"
    EXPIRY = "expiry"
    ADJUSTMENT = "adjustment"


TX_KIND_LABELS = {"award": "奖励", "penalty": "扣分", "redemption": "兑换", "reversal": "冲正",
                  "expiry": "到期清零", "adjustment": "调整"}


class ExpiryRule(StrEnum):
    NONE = "none"  # points never expire (the default)
    YEAR_END_NEXT = "year_end_next"  # 当年积分次年底清零
    MONTHS = "months"  # N months after the month they were earned


EXPIRY_RULE_LABELS = {"none": "积分长期有效", "year_end_next": "当年积分次年底清零", "months": "获得后满 N 个月清零"}


class PenaltyPolicy(StrEnum):
    FLOOR_AT_ZERO = "floor_at_zero"  # a deduction takes at most the balance (the default)
    ALLOW_DEBT = "allow_debt"  # the balance may go negative; spending waits until it is positive again


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("(kind = 'household') = (household_id IS NOT NULL)", name="household_has_household"),
        CheckConstraint("(kind = 'redeemed') = (store_id IS NOT NULL)", name="redeemed_has_store"),
        CheckConstraint("(kind = 'household') = (balance IS NOT NULL)", name="only_household_keeps_balance"),
    )

    id: int = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)  # household:12, village:3:issue, store:5:redeemed
    kind: str = Field(max_length=12)
    village_id: int = Field(foreign_key="villages.id", index=True)
    household_id: int | None = Field(default=None, foreign_key="households.id", unique=True)
    store_id: int | None = Field(default=None, foreign_key="stores.id")
    balance: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    entry_count: int = Field(default=0)  # entries on a kept-balance account: the seq of its last entry
    created_at: datetime = Field(default_factory=utcnow)


class LedgerTransaction(SQLModel, table=True):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        Index("ix_ledger_transactions_village_month", "village_id", "month", "kind"),
        Index("ix_ledger_transactions_reference", "reference"),
    )

    id: int = Field(default=None, primary_key=True)
    kind: str = Field(max_length=12)
    village_id: int = Field(foreign_key="villages.id")
    month: int  # YYYYMM of occurred_at in Asia/Shanghai, for summaries by month
    memo: str = Field(max_length=300)  # the reason, in words the household understands
    reference: str | None = Field(default=None, max_length=80)  # what caused it: round:12, redemption:55 …
    actor_id: int | None = Field(default=None, foreign_key="users.id")
    actor_name: str = Field(max_length=80)
    occurred_at: datetime = Field(default_factory=utcnow)
    idempotency_key: str | None = Field(default=None, max_length=120, unique=True)
    request_hash: str | None = Field(default=None, max_length=64)
    reverses_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("ledger_transactions.id"), unique=True, nullable=True))


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("account_id", "seq"),  # a kept chain cannot fork; also the index of statements and sums
        CheckConstraint("(seq IS NULL) = (balance_after IS NULL)", name="seq_with_balance"),
    )

    id: int = Field(default=None, primary_key=True)
    transaction_id: int = Field(foreign_key="ledger_transactions.id", index=True)
    account_id: int = Field(foreign_key="ledger_accounts.id")
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))  # 0 only for a penalty that found nothing to take
    seq: int | None = None  # place in a kept-balance account's chain
    balance_after: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class LedgerMonthTotal(SQLModel, table=True):
    """The points each kind of transaction moved on a village's household accounts in a month: kept by the posting
    itself, in the same database transaction as the entries (so it is as exact as the book; `ledger verify` checks
    it), for the dashboards. A village's month and kind is spread over `SLOTS` rows (the slot is the household
    account's id modulo SLOTS), so two counters redeeming in one village at once rarely wait on the same row."""

    __tablename__ = "ledger_month_totals"

    village_id: int = Field(foreign_key="villages.id", primary_key=True)
    month: int = Field(primary_key=True)  # YYYYMM, the transaction's month
    kind: str = Field(max_length=12, primary_key=True)
    slot: int = Field(primary_key=True)
    points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class LedgerPolicy(SQLModel, table=True):
    """The county's points policy for the ledger: when points expire."""

    __tablename__ = "ledger_policies"

    county_id: int = Field(foreign_key="counties.id", primary_key=True)
    expiry_rule: str = Field(default=ExpiryRule.NONE.value, max_length=16)
    expiry_months: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str | None = Field(default=None, max_length=80)
