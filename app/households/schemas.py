"""JSON shapes of the household registry. What a member shows is decided in one place,
app/households/service/privacy.py: the full record when the caller may see it (`full=True`), else the birth year,
the ID number's last two characters and the phone masked."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from app.households.models import Household, Member
from app.households.service.privacy import household_phone, show_member


class MemberOut(BaseModel):
    id: int
    household_id: int
    name: str
    relation: str
    gender: str | None
    birth_date: date | None = Field(description="出生日期；只有能看完整信息的账号才有，其他账号为 null，只给出生年份")
    birth_year: int | None
    id_number: str | None
    phone: str | None
    party_member: bool
    living_away: bool
    status: str

    @classmethod
    def build(cls, m: Member, full: bool) -> MemberOut:
        v = show_member(m, full=full)
        return cls(id=v.id, household_id=v.household_id, name=v.name, relation=v.relation, gender=v.gender,
                   birth_date=v.birth_date, birth_year=v.birth_year, id_number=v.id_number, phone=v.phone,
                   party_member=v.party_member, living_away=v.living_away, status=v.status)


class HouseholdOut(BaseModel):
    id: int
    village_id: int
    group_id: int | None
    number: str
    head_member_id: int | None
    head_name: str
    address: str | None
    phone: str | None
    status: str
    status_date: date | None
    status_reason: str | None
    notes: str | None
    updated_at: datetime

    @classmethod
    def build(cls, h: Household, full: bool) -> HouseholdOut:
        return cls(id=h.id, village_id=h.village_id, group_id=h.group_id, number=h.number,
                   head_member_id=h.head_member_id, head_name=h.head_name, address=h.address,
                   phone=household_phone(h, full=full), status=h.status, status_date=h.status_date,
                   status_reason=h.status_reason, notes=h.notes if full else None, updated_at=h.updated_at)


class HouseholdDetailOut(HouseholdOut):
    members: list[MemberOut]


class HouseholdPage(BaseModel):
    items: list[HouseholdOut]
    total: int = Field(description="符合条件的户数；total_exact 为 false 时表示“超过这个数”")
    total_exact: bool = True
    offset: int
    limit: int


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=40)
    relation: str = Field(min_length=1, max_length=10)
    gender: str | None = Field(default=None, max_length=2)
    birth_date: date | None = None
    id_number: str | None = Field(default=None, max_length=30)
    phone: str | None = Field(default=None, max_length=20)
    party_member: StrictBool = False
    living_away: StrictBool = False


class HouseholdIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str = Field(min_length=1, max_length=20)
    group_id: StrictInt | None = None
    address: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=20)
    notes: str | None = Field(default=None, max_length=500)
    head: MemberIn


class HouseholdPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=20)
    notes: str | None = Field(default=None, max_length=500)


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(max_length=12)
    on: date | None = None
    reason: str | None = Field(default=None, max_length=200)


class HeadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_id: StrictInt
    old_head_relation: str = Field(default="其他", max_length=10)


class GroupMoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_id: StrictInt | None


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_ids: list[StrictInt] = Field(min_length=1, max_length=50)
    new_head_id: StrictInt
    new_number: str | None = Field(default=None, max_length=20)
    group_id: StrictInt | None = None
    on: date | None = None
    reason: str = Field(default="分户", max_length=200)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_id: StrictInt
    on: date | None = None
    reason: str = Field(default="合户", max_length=200)


class MoveOutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str = Field(max_length=12, description="moved_out（迁出）或 dissolved（注销）")
    on: date | None = None
    reason: str = Field(min_length=1, max_length=200)


class ImportPreviewOut(BaseModel):
    batch_id: int
    status: str
    summary: dict[str, Any]
    problems: list[dict[str, Any]]
    can_confirm: bool


class ImportConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    create_missing_groups: StrictBool = False
