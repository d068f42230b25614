"""Who is acting, passed from the web or CLI layer into services (which know nothing of HTTP)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    name: str
    role: str | None = None
    scope: str | None = None
    request_id: str | None = None
    ip: str | None = None

    @classmethod
    def system(cls, name: str = "系统", request_id: str | None = None) -> Actor:
        return cls(user_id=None, name=name, role="system", request_id=request_id)

    @classmethod
    def anonymous(cls, request_id: str | None = None, ip: str | None = None) -> Actor:
        return cls(user_id=None, name="匿名", role=None, request_id=request_id, ip=ip)
