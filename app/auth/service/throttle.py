"""Throttling of guesses: password logins (app.auth.service.accounts.login) and the portal's card PINs (app.notices.service.pins).

Both count the attempts kept in `login_attempts` (so the count holds across workers, machines and restarts), each
under a *subject* (a login name; `PIN:H<household>` or `PIN:X<hash>` for a card) and an *address* (the client's; a
PIN check's is `PIN:<address>`, so a household's failures never count against the village office's logins). Within
the window (`login_window_minutes`):

- subject and address: `per_subject` failures of one subject from one address lock that address out of that
  subject. Only the address that failed is refused: nobody can lock the county admin or a store clerk out of their
  account from somewhere else. The lock lifts when the window has passed, or at once when the subject succeeds from
  that address or staff set a new password or PIN (a success recorded under the address RESET).
- address: `per_address` failures from one address, whatever the subjects, lock the address out.
- elsewhere: a subject's failures from other addresses since its last success slow everyone else down: from
  `per_subject` such failures on, one second for each, at most `slow_max_seconds`. The caller waits before its
  write transaction begins (see app.deps.pause_before_write), holding no database connection, and the wait is
  audited.

An IPv6 address counts by its /64 network (what one phone, household or office is given).

Concurrent attempts: the count, the check and the recorded attempt happen in one write transaction that first takes
`lock` on the subject and on the address. On PostgreSQL (READ COMMITTED, many workers) those are transaction-scoped
advisory locks, taken in a fixed order, so attempts on one subject or from one address are decided one after
another, each seeing the attempts committed before it; SQLite has one writer (BEGIN IMMEDIATE) and needs none.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from app.auth.models import LoginAttempt

RESET = "*"  # the address of a success that reopens every address of its subject (a new password or PIN)
_PG_LOCK_CLASS = 7_332  # the two-key advisory locks' first key: throttle subjects and addresses


@dataclass(frozen=True)
class Limits:
    per_subject: int = 5
    per_address: int = 20
    window_minutes: int = 15
    slow_max_seconds: int = 5

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)


@dataclass(frozen=True)
class Slowdown:
    """How long an attempt waits before it is checked, and why (its subject's recent failures elsewhere)."""

    seconds: int = 0
    failures_elsewhere: int = 0

    def audit(self) -> dict[str, int]:
        return {"seconds": self.seconds, "failures_elsewhere": self.failures_elsewhere}


NO_WAIT = Slowdown()


def address_key(ip: str | None) -> str:
    """The address an attempt counts under: an IPv4 address itself, an IPv6 address its /64 network, anything else
    (a test client's name) as it is."""
    raw = (ip or "unknown").strip() or "unknown"
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)


def lock(session: Session, *keys: str) -> None:
    """Serialise the attempts on these keys until the transaction ends (PostgreSQL; SQLite has one writer). Taken
    before anything else the attempt reads or writes, in ascending order of the lock ids (so two attempts never wait
    for each other crosswise), and before the audit chain's lock (audit.record takes it later)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for lock_id in sorted({_lock_id(k) for k in keys}):
        session.execute(text("SELECT pg_advisory_xact_lock(:c, :k)"), {"c": _PG_LOCK_CLASS, "k": lock_id})


def _minutes_left(at: datetime, limits: Limits, now: datetime) -> int:
    return max(1, math.ceil((at + limits.window - now).total_seconds() / 60))


def _nth_newest_failure(session: Session, where: list[object], since: datetime, n: int) -> datetime | None:
    """The n-th newest failure matching `where` after `since`: while there is one, n failures are in the window, and
    the count drops below n when it leaves the window."""
    at: datetime | None = session.execute(
        select(LoginAttempt.at).where(*where, LoginAttempt.success.is_(False), LoginAttempt.at > since)
        .order_by(LoginAttempt.at.desc()).offset(n - 1).limit(1)).scalar()
    return at


def _last_success(session: Session, subject: str, address: str) -> tuple[datetime | None, datetime | None]:
    """The subject's last success from anywhere, and its last one that reopens `address` (from it, or a reset)."""
    row = session.execute(select(
        func.max(LoginAttempt.at),
        func.max(case((LoginAttempt.ip.in_([address, RESET]), LoginAttempt.at), else_=None)),
    ).where(LoginAttempt.login == subject, LoginAttempt.success.is_(True))).one()
    return row[0], row[1]


def address_wait(session: Session, limits: Limits, address: str, now: datetime) -> int | None:
    """Minutes until `address` may try again, if it failed too often (any subjects); None when it may now."""
    at = _nth_newest_failure(session, [LoginAttempt.ip == address], now - limits.window, limits.per_address)
    return None if at is None else _minutes_left(at, limits, now)


def subject_wait(session: Session, limits: Limits, subject: str, address: str, now: datetime) -> int | None:
    """Minutes until `address` may try `subject` again, if it failed that subject too often; None when it may now."""
    _anywhere, here = _last_success(session, subject, address)
    since = max(now - limits.window, here) if here else now - limits.window
    at = _nth_newest_failure(session, [LoginAttempt.login == subject, LoginAttempt.ip == address], since,
                             limits.per_subject)
    return None if at is None else _minutes_left(at, limits, now)


def slowdown(session: Session, limits: Limits, subject: str, address: str, now: datetime) -> Slowdown:
    """The wait before `address` may try `subject`: nothing while the subject's failures from other addresses since
    its last success stay under `per_subject`, then a second for each, at most `slow_max_seconds`. Nothing either
    for an attempt that will be refused anyway (that refusal costs nothing)."""
    if limits.slow_max_seconds <= 0:
        return NO_WAIT
    if address_wait(session, limits, address, now) or subject_wait(session, limits, subject, address, now):
        return NO_WAIT
    anywhere, _here = _last_success(session, subject, address)
    since = max(now - limits.window, anywhere) if anywhere else now - limits.window
    n = int(session.execute(select(func.count()).select_from(LoginAttempt).where(
        LoginAttempt.login == subject, LoginAttempt.ip != address, LoginAttempt.success.is_(False),
        LoginAttempt.at > since)).scalar_one())
    if n < limits.per_subject:
        return NO_WAIT
    return Slowdown(seconds=min(limits.slow_max_seconds, n - limits.per_subject + 1), failures_elsewhere=n)


def record(session: Session, subject: str, address: str, now: datetime, *, ok: bool) -> None:
    session.add(LoginAttempt(login=subject[:40], ip=address[:64], at=now, success=ok))


def reset(session: Session, subject: str, now: datetime) -> None:
    """Staff set a new password or PIN: every address may try the subject again at once, and nobody waits."""
    record(session, subject, RESET, now, ok=True)
