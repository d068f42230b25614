from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class GrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    role: str
    township_id: int | None = None
    village_id: int | None = None
    store_id: int | None = None
    household_id: int | None = None
    label: str = ""


class MeOut(BaseModel):
    user_id: int
    login: str
    display_name: str
    via: str
    grants: list[GrantOut]


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    login: str
    display_name: str
    active: bool
    must_change_password: bool
    created_at: datetime


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login: str = Field(min_length=3, max_length=40)
    display_name: str = Field(min_length=1, max_length=40)
    phone: str | None = Field(default=None, max_length=20)
    password: str = Field(min_length=8, max_length=128)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: str = Field(min_length=1, max_length=40)
    phone: str | None = Field(default=None, max_length=20)


class ActiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active: StrictBool


class PasswordResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=8, max_length=128)


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=8, max_length=128)


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(max_length=30)
    township_id: StrictInt | None = None
    village_id: StrictInt | None = None
    store_id: StrictInt | None = None
    household_id: StrictInt | None = None


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=60)
    grant_id: StrictInt
    days: StrictInt | None = Field(default=365, ge=1, le=3650)


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    prefix: str
    grant_id: int
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="完整令牌，只显示这一次")
