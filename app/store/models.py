"""The 振风超市's books: cards, the catalog, stock movements, funding and redemptions.

Stock is kept on the item row (`stock`, `stock_value_fen`) so that a redemption can take it with one conditional
update, and every change to it is a row in `stock_movements`: the kept figures are always the sums of the movements
(`zhenfeng store verify` proves it). Movements, funding records and redemptions are never deleted; a mistake is
corrected by a new movement (a stock-take adjustment, a void) that says why. Money is in fen, points are integers.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class Card(SQLModel, table=True):
    """A household's 积分卡. One per household; reporting it lost and reissuing bumps `version`, so a QR code printed
    with an older version stops working at once."""

    __tablename__ = "cards"

    id: int = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="households.id", unique=True)
    version: int = Field(default=1)
    status: str = Field(default="active", max_length=10)  # active | lost (reported lost, not yet reissued)
    issued_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CardEvent(SQLModel, table=True):
    __tablename__ = "card_events"

    id: int = Field(default=None, primary_key=True)
    card_id: int = Field(foreign_key="cards.id", index=True)
    version: int
    action: str = Field(max_length=12)  # issued | lost | reissued
    reason: str | None = Field(default=None, max_length=200)
    actor: str = Field(max_length=80)
    at: datetime = Field(default_factory=utcnow)


class Item(SQLModel, table=True):
    """A catalog item (商品) of one store, with its point price, its reference cost and the stock on hand."""

    __tablename__ = "store_items"
    __table_args__ = (
        UniqueConstraint("store_id", "barcode"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("stock_value_fen >= 0", name="value_not_negative"),
        CheckConstraint("points > 0", name="points_positive"),
    )

    id: int = Field(default=None, primary_key=True)
    store_id: int = Field(foreign_key="stores.id", index=True)
    name: str = Field(max_length=40)
    unit: str = Field(max_length=8)  # 桶、袋、瓶、条 ...
    category: str = Field(default="日用品", max_length=12)
    barcode: str | None = Field(default=None, max_length=32)
    points: int  # the point price of one unit
    cost_fen: int = Field(default=0, sa_type=BigInteger)  # the usual purchase cost of one unit
    low_stock: int = Field(default=5)  # at or below this, the item is on the low-stock list
    active: bool = Field(default=True)
    stock: int = Field(default=0)
    stock_value_fen: int = Field(default=0, sa_type=BigInteger)  # the stock on hand at cost (moving average)
    photo: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    photo_type: str | None = Field(default=None, max_length=20)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class StockMovement(SQLModel, table=True):
    """One change of one item's stock. `quantity` and `value_fen` are signed (in > 0, out < 0)."""

    __tablename__ = "stock_movements"
    __table_args__ = (Index("ix_stock_movements_item", "item_id", "id"),
                      Index("ix_stock_movements_store_time", "store_id", "occurred_at"))

    id: int = Field(default=None, primary_key=True)
    store_id: int = Field(foreign_key="stores.id")
    item_id: int = Field(foreign_key="store_items.id")
    # purchase | donation | redemption | void | stocktake | transfer_out | transfer_in
    kind: str = Field(max_length=12)
    quantity: int
    value_fen: int = Field(sa_type=BigInteger)
    stock_after: int
    fund_id: int | None = Field(default=None, foreign_key="funds.id", index=True)
    donor: str | None = Field(default=None, max_length=60)
    reason: str | None = Field(default=None, max_length=200)
    redemption_id: int | None = Field(default=None, foreign_key="redemptions.id", index=True)
    transfer_of: int | None = Field(default=None)  # a transfer_in names its transfer_out
    actor: str = Field(max_length=80)
    occurred_at: datetime = Field(default_factory=utcnow)


class Fund(SQLModel, table=True):
    """Money or goods received for a village's supermarket: an allocation from the county, township or village, or
    a donation. Purchases draw on money funds (`spent_fen`, kept with a conditional update and equal to the sum of
    the purchases that name the fund); a donation of goods is spent when it is received."""

    __tablename__ = "funds"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("spent_fen >= 0 AND spent_fen <= amount_fen", name="spent_within_amount"),
        Index("ix_funds_village_year", "village_id", "year"),
    )

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id")
    year: int
    source: str = Field(max_length=10)  # county | township | village | donation
    form: str = Field(default="money", max_length=6)  # money | goods
    amount_fen: int = Field(sa_type=BigInteger)
    spent_fen: int = Field(default=0, sa_type=BigInteger)
    document_no: str | None = Field(default=None, max_length=60)  # 文号 / 收据号
    donor: str | None = Field(default=None, max_length=60)
    received_on: date
    note: str | None = Field(default=None, max_length=200)
    actor: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)


class Redemption(SQLModel, table=True):
    """One household's redemption at the counter: its lines, its ledger transaction and its stock movements were
    written in the same database transaction. A void posts a ledger reversal and returns the stock."""

    __tablename__ = "redemptions"
    __table_args__ = (Index("ix_redemptions_household_day", "household_id", "day"),
                      Index("ix_redemptions_store_day", "store_id", "day"),
                      Index("ix_redemptions_village_status_day", "village_id", "status", "day", "points"),
                      UniqueConstraint("store_id", "idempotency_key"))

    id: int = Field(default=None, primary_key=True)
    store_id: int = Field(foreign_key="stores.id")
    household_id: int = Field(foreign_key="households.id")
    village_id: int = Field(foreign_key="villages.id")  # the household's village, for the village's figures
    card_id: int | None = Field(default=None, foreign_key="cards.id")
    card_version: int | None = None
    identified_by: str = Field(max_length=8)  # card | manual (the clerk checked who it is)
    identity_note: str | None = Field(default=None, max_length=100)
    points: int
    value_fen: int = Field(sa_type=BigInteger)  # the goods at cost
    balance_after: int = Field(default=0)  # the household's balance right after (printed on the receipt)
    ledger_tx_id: int = Field(foreign_key="ledger_transactions.id", unique=True)
    status: str = Field(default="done", max_length=8)  # done | voided
    day: date  # the local day, for the daily limit and the same-day void
    idempotency_key: str | None = Field(default=None, max_length=80)  # unique per store
    request_hash: str | None = Field(default=None, max_length=64)
    actor: str = Field(max_length=80)
    created_at: datetime = Field(default_factory=utcnow)
    voided_at: datetime | None = None
    voided_by: str | None = Field(default=None, max_length=80)
    void_reason: str | None = Field(default=None, max_length=200)
    void_tx_id: int | None = Field(default=None, foreign_key="ledger_transactions.id")


class RedemptionLine(SQLModel, table=True):
    __tablename__ = "redemption_lines"

    id: int = Field(default=None, primary_key=True)
    redemption_id: int = Field(foreign_key="redemptions.id", index=True)
    item_id: int = Field(foreign_key="store_items.id")
    name: str = Field(max_length=40)  # as it was when redeemed
    unit: str = Field(max_length=8)
    quantity: int
    points_each: int
    points: int
    value_fen: int = Field(sa_type=BigInteger)
