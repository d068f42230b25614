"""The administrative tree: county > township > village > group (村民小组 / 网格), and the 振风超市 stores that
belong to villages (their catalog, stock and redemptions live in app/store/). Nothing here is hard-deleted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class County(SQLModel, table=True):
    __tablename__ = "counties"

    id: int = Field(default=None, primary_key=True)
    code: str = Field(max_length=6, unique=True)
    name: str = Field(max_length=50)
    created_at: datetime = Field(default_factory=utcnow)


class Township(SQLModel, table=True):
    __tablename__ = "townships"

    id: int = Field(default=None, primary_key=True)
    county_id: int = Field(foreign_key="counties.id", index=True)
    code: str = Field(max_length=9, unique=True)
    name: str = Field(max_length=50)
    active: bool = Field(default=True)
    deactivated_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Village(SQLModel, table=True):
    __tablename__ = "villages"

    id: int = Field(default=None, primary_key=True)
    township_id: int = Field(foreign_key="townships.id", index=True)
    code: str = Field(max_length=12, unique=True)
    name: str = Field(max_length=50)
    active: bool = Field(default=True)
    deactivated_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # how names appear on public notices and the portal: full 张三丰 | middle 张*丰 | surname 张某
    name_masking: str = Field(default="middle", max_length=8)


class Group(SQLModel, table=True):
    """村民小组 / 网格: numbered within its village."""

    __tablename__ = "village_groups"
    __table_args__ = (UniqueConstraint("village_id", "number"),)

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id", index=True)
    number: int
    name: str = Field(max_length=50)
    active: bool = Field(default=True)
    deactivated_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Store(SQLModel, table=True):
    __tablename__ = "stores"

    id: int = Field(default=None, primary_key=True)
    village_id: int = Field(foreign_key="villages.id", index=True)
    name: str = Field(max_length=60)
    active: bool = Field(default=True)
    daily_limit: int | None = None  # the most points one household may spend here in a day; None: no limit
    created_at: datetime = Field(default_factory=utcnow)


class StoreVillage(SQLModel, table=True):
    """Another village of the same township that a store serves, besides its own (a township-level supermarket, or
    a small village whose households shop next door)."""

    __tablename__ = "store_villages"

    store_id: int = Field(foreign_key="stores.id", primary_key=True)
    village_id: int = Field(foreign_key="villages.id", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
