"""API shapes of the store: scanning a card, the catalog, a redemption."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=120, description="扫码枪读到的积分卡内容，例如 ZF1-1234-2-K7QM2X4RTA")


class ExpiringOut(BaseModel):
    date: date
    points: int


class HouseholdAtCounterOut(BaseModel):
    household_id: int
    village_id: int
    number: str
    head_name: str
    balance: int
    expiring: list[ExpiringOut]
    spent_today: int
    daily_limit: int | None
    card_version: int


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    unit: str
    category: str
    barcode: str | None
    points: int
    stock: int
    active: bool


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: StrictInt = Field(ge=1, le=2**31 - 1)
    quantity: StrictInt = Field(ge=1, le=99, description="件数（1–99）")


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    household_id: StrictInt = Field(ge=1, le=2**31 - 1)
    card: str | None = Field(default=None, max_length=120, description="刷卡时：卡上的内容；不刷卡时留空并写明身份核对")
    identity_note: str | None = Field(default=None, max_length=100, description="未刷卡时如何核对了身份")
    lines: list[LineIn] = Field(min_length=1, max_length=40)
    expected_points: StrictInt | None = Field(default=None, ge=0, le=10_000_000,
                                        description="收银端显示的合计积分；价格若已变动则不兑换并说明")


class LineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    item_id: int
    name: str
    unit: str
    quantity: int
    points_each: int
    points: int


class RedemptionOut(BaseModel):
    id: int
    store_id: int
    household_id: int
    points: int
    balance_after: int
    ledger_transaction_id: int
    status: str
    day: date
    created_at: datetime
    identified_by: str
    lines: list[LineOut]
    replayed: bool


class VoidIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=200)
