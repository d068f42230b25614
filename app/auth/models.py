"""Users, role grants, server-side sessions, login attempts (for throttling) and API tokens."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Index
from sqlmodel import Field, SQLModel

from app.core.clock import utcnow


class Role(StrEnum):
    COUNTY_ADMIN = "county_admin"
    TOWNSHIP_REVIEWER = "township_reviewer"
    VILLAGE_CLERK = "village_clerk"
    COMMITTEE_MEMBER = "committee_member"
    STORE_CLERK = "store_clerk"
    HOUSEHOLD = "household"


ROLE_LABELS: dict[Role, str] = {
    Role.COUNTY_ADMIN: "县管理员",
    Role.TOWNSHIP_REVIEWER: "乡镇审核员",
    Role.VILLAGE_CLERK: "村文书",
    Role.COMMITTEE_MEMBER: "评比委员",
    Role.STORE_CLERK: "超市管理员",
    Role.HOUSEHOLD: "农户",
}

# Which scope column each role's grant must carry (and no other).
ROLE_SCOPE_COLUMN: dict[Role, str | None] = {
    Role.COUNTY_ADMIN: None,
    Role.TOWNSHIP_REVIEWER: "township_id",
    Role.VILLAGE_CLERK: "village_id",
    Role.COMMITTEE_MEMBER: "village_id",
    Role.STORE_CLERK: "store_id",
    Role.HOUSEHOLD: "household_id",
}


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int = Field(default=None, primary_key=True)
    login: str = Field(max_length=40, unique=True)
    display_name: str = Field(max_length=40)
    phone: str | None = Field(default=None, max_length=20)
    password_hash: str = Field(max_length=255)
    active: bool = Field(default=True)
    must_change_password: bool = Field(default=False)
    large_font: bool = Field(default=False)
    locale: str | None = Field(default=None, max_length=10)
    created_at: datetime = Field(default_factory=utcnow)
    deactivated_at: datetime | None = None
    password_changed_at: datetime | None = None


_GRANT_SHAPE = (
    "(role = 'county_admin' AND township_id IS NULL AND village_id IS NULL AND store_id IS NULL"
    " AND household_id IS NULL)"
    " OR (role = 'township_reviewer' AND township_id IS NOT NULL AND village_id IS NULL AND store_id IS NULL"
    " AND household_id IS NULL)"
    " OR (role IN ('village_clerk', 'committee_member') AND village_id IS NOT NULL AND township_id IS NULL"
    " AND store_id IS NULL AND household_id IS NULL)"
    " OR (role = 'store_clerk' AND store_id IS NOT NULL AND township_id IS NULL AND village_id IS NULL"
    " AND household_id IS NULL)"
    " OR (role = 'household' AND household_id IS NOT NULL AND township_id IS NULL AND village_id IS NULL"
    " AND store_id IS NULL)"
)


class RoleGrant(SQLModel, table=True):
    """One role over one scope. A user may hold several. Revoked grants are kept (revoked_at) for the history."""

    __tablename__ = "role_grants"
    __table_args__ = (CheckConstraint(_GRANT_SHAPE, name="scope_matches_role"),)

    id: int = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    role: str = Field(max_length=20)
    township_id: int | None = Field(default=None, foreign_key="townships.id")
    village_id: int | None = Field(default=None, foreign_key="villages.id")
    store_id: int | None = Field(default=None, foreign_key="stores.id")
    household_id: int | None = Field(default=None, foreign_key="households.id")
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class UserSession(SQLModel, table=True):
    """A server-side session. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "user_sessions"

    id: int = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=200)


class LoginAttempt(SQLModel, table=True):
    """Every login attempt, kept in the database so throttling holds across workers and restarts."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_login_at", "login", "at"),
        Index("ix_login_attempts_ip_at", "ip", "at"),
    )

    id: int = Field(default=None, primary_key=True)
    login: str = Field(max_length=40)
    ip: str = Field(max_length=64)
    at: datetime = Field(default_factory=utcnow)
    success: bool = Field(default=False)


class ApiToken(SQLModel, table=True):
    """A token for scripts. Shown once; the SHA-256 of the secret part is stored. Acts with exactly one grant."""

    __tablename__ = "api_tokens"

    id: int = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    grant_id: int = Field(foreign_key="role_grants.id")
    name: str = Field(max_length=60)
    prefix: str = Field(max_length=16, unique=True)
    token_hash: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
