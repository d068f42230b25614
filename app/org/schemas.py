"""JSON shapes of the administrative tree."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class TownshipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str
    active: bool
    created_at: datetime


class TownshipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=9, description="9 位统计用区划代码，前 6 位为县代码")
    name: str = Field(min_length=1, max_length=50)


class VillageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    township_id: int
    code: str
    name: str
    active: bool
    created_at: datetime


class VillageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    township_id: StrictInt
    code: str = Field(min_length=1, max_length=12, description="12 位统计用区划代码，前 9 位为乡镇代码")
    name: str = Field(min_length=1, max_length=50)


class GroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    village_id: int
    number: int
    name: str
    active: bool


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: StrictInt = Field(ge=1, le=999)
    name: str | None = Field(default=None, max_length=50)


class RenameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=50)


class ActiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: StrictBool


class StoreOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    village_id: int
    name: str
    active: bool
