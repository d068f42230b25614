"""Appending to and verifying the hash-chained audit log. The only writer of `audit_events`.

hash = SHA-256(prev_hash + canonical JSON of the event). The first event chains from GENESIS. Appends are
serialised (SQLite: the single writer; PostgreSQL: a transaction-scoped advisory lock) so the chain never forks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.core.clock import utcnow
from app.core.context import Actor

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 7_330_001  # advisory lock key for the chain's tail


def canonical(ev: AuditEvent) -> str:
    body = {
        "seq": ev.seq,
        "at": ev.at.isoformat(timespec="microseconds") if isinstance(ev.at, datetime) else str(ev.at),
        "actor_id": ev.actor_id,
        "actor_name": ev.actor_name,
        "role": ev.role,
        "scope": ev.scope,
        "action": ev.action,
        "object_type": ev.object_type,
        "object_id": ev.object_id,
        "summary": ev.summary,
        "request_id": ev.request_id,
        "ip": ev.ip,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, ev: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + canonical(ev)).encode("utf-8")).hexdigest()


def _clean(value: Any) -> Any:
    """Make a before/after value JSON-plain and deterministic."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, float):
        return str(value)
    return value


def _clip(value: str | None, length: int) -> str | None:
    """Labels are cut to their column's length: a long name or several roles must not make a write fail."""
    return value[:length] if value else value


def lock(session: Session) -> None:
    """Take the audit chain's lock now (PostgreSQL; SQLite has one writer anyway). A write that will be audited and
    also locks rows others lock after the chain (the monthly close takes the chain first, then the points accounts)
    takes it before those rows, so the two always lock in the same order and never deadlock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: Any = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    note: str | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with the change it describes)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    head = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    summary: dict[str, Any] = {}
    if before is not None:
        summary["before"] = _clean(before)
    if after is not None:
        summary["after"] = _clean(after)
    if note:
        summary["note"] = note
    ev = AuditEvent(
        seq=(head.seq + 1) if head else 1,
        at=utcnow(),
        actor_id=actor.user_id,
        actor_name=_clip(actor.name, 80),
        role=_clip(actor.role, 20),
        scope=_clip(actor.scope, 60),
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else _clip(str(object_id), 60),
        summary=summary,
        request_id=_clip(actor.request_id, 64),
        ip=_clip(actor.ip, 64),
        prev_hash=head.hash if head else GENESIS,
        hash="",
    )
    ev.hash = chain_hash(ev.prev_hash, ev)
    session.add(ev)
    session.flush()
    return ev


def head(session: Session) -> tuple[int, str]:
    """The chain's head (seq, hash), printed on notices to anchor the history on paper."""
    row = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


@dataclass(frozen=True)
class Violation:
    kind: str  # changed | removed | inserted | broken | truncated | anchor
    seq: int
    event_id: int | None
    message: str


@dataclass(frozen=True)
class Anchor:
    """A point the chain must pass through: event `seq` with `hash`, as known from outside the chain (the head
    printed on a notice, an anchor file kept off the machine, a head copied from the public portal). `followed`:
    the chain is known to have gone on past it (a notice's own generation event comes after the head it prints)."""

    seq: int
    hash: str
    label: str = "纸质公示上的链头"
    followed: bool = False


ANCHOR_FORMAT = "zhenfeng-audit-anchor"


def anchor_key(secret: str) -> bytes:
    """The key that seals anchor files, derived from the server's secret for this one purpose."""
    return hmac.new(secret.encode(), b"zhenfeng audit anchor v1", hashlib.sha256).digest()


def _anchor_mac(key: bytes, county: str, seq: int, hash_: str, at: str) -> str:
    return hmac.new(key, f"v1|{county}|{seq}|{hash_}|{at}".encode(), hashlib.sha256).hexdigest()


def anchor_document(session: Session, *, county: str, key: bytes) -> dict[str, Any]:
    """The chain's current head as a small document to keep off the machine (`zhenfeng audit anchor --out`)."""
    seq, hash_ = head(session)
    at = utcnow().isoformat(timespec="seconds")
    return {"format": ANCHOR_FORMAT, "version": 1, "county": county, "seq": seq, "hash": hash_, "at": at,
            "mac": _anchor_mac(key, county, seq, hash_, at)}


class BadAnchorFile(ValueError):
    """The file is not an anchor file, or its seal does not match this server's key."""


def read_anchor(text_: str, *, key: bytes, name: str) -> Anchor:
    """An anchor file's (seq, hash), its seal checked: one made elsewhere (or edited) is refused, not trusted."""
    try:
        doc = json.loads(text_)
        county, seq, hash_, at, mac = doc["county"], int(doc["seq"]), str(doc["hash"]), str(doc["at"]), doc["mac"]
        if doc.get("format") != ANCHOR_FORMAT:
            raise ValueError(doc.get("format"))
    except (ValueError, KeyError, TypeError) as e:
        raise BadAnchorFile(f"{name} 不是审计链锚点文件") from e
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _anchor_mac(key, county, seq, hash_, at)):
        raise BadAnchorFile(f"{name} 的密封不符：不是本系统写出的锚点文件，或被改过")
    return Anchor(seq, hash_, f"锚点文件 {name}（{at[:10]}）")


def verify(session: Session, *, anchor: tuple[int, str] | None = None,
           anchors: list[Anchor] | tuple[Anchor, ...] = ()) -> list[Violation]:
    """Walk the chain; name every changed, inserted or removed event. Each anchor (a head known from outside the
    chain: paper, an anchor file) proves that nothing up to that point was rewritten wholesale or cut off."""
    checks = list(anchors) + ([Anchor(anchor[0], anchor[1])] if anchor is not None else [])
    wanted = {a.seq for a in checks}
    found: dict[int, str] = {}
    problems: list[Violation] = []
    prev_hash = GENESIS
    prev_prev_hash: str | None = None
    expected_seq = 1
    last_seq = 0
    stmt = select(AuditEvent).order_by(AuditEvent.seq, AuditEvent.id).execution_options(yield_per=2000)
    for ev in session.execute(stmt).scalars():
        recomputed = chain_hash(ev.prev_hash, ev)
        if ev.seq > expected_seq:
            problems.append(Violation("removed", ev.seq, ev.id,
                                      f"第 {expected_seq}–{ev.seq - 1} 号事件缺失（被删除）"))
        elif ev.seq < expected_seq:
            problems.append(Violation("inserted", ev.seq, ev.id, f"第 {ev.seq} 号事件重复或顺序错乱（疑似插入）"))
        elif ev.prev_hash != prev_hash:
            if prev_prev_hash is not None and ev.prev_hash == prev_prev_hash:
                problems.append(Violation("inserted", ev.seq - 1, None,
                                          f"第 {ev.seq - 1} 号事件不在原链上（被插入）"))
            else:
                problems.append(Violation("broken", ev.seq, ev.id,
                                          f"第 {ev.seq} 号事件与前一事件的哈希链接断开（前面的事件被删除、插入或改写）"))
        if recomputed != ev.hash:
            problems.append(Violation("changed", ev.seq, ev.id, f"第 {ev.seq} 号事件内容被修改（哈希不符）"))
        if ev.seq in wanted:
            found.setdefault(ev.seq, ev.hash)
        prev_prev_hash, prev_hash = prev_hash, ev.hash
        expected_seq = max(expected_seq, ev.seq) + 1
        last_seq = max(last_seq, ev.seq)
    named: set[tuple[str, int]] = set()
    for a in sorted(checks, key=lambda a: -a.seq):  # the newest anchor first: it names a cut tail best
        if a.seq > last_seq or (a.followed and a.seq == last_seq):
            if ("truncated", 0) in named:
                continue
            named.add(("truncated", 0))
            problems.append(Violation("truncated", a.seq, None,
                                      f"审计链被截断：链上最后一条是第 {last_seq} 号，而{a.label}是第 {a.seq} 号"
                                      f"{'，之后还有记录' if a.followed else ''}（截断在锚点第 {a.seq} 号之下，"
                                      "此后的记录被删除）"))
        elif found.get(a.seq) != a.hash and ("changed", a.seq) not in named:
            named.add(("changed", a.seq))
            problems.append(Violation("changed", a.seq, None,
                                      f"与{a.label}（第 {a.seq} 号，{a.hash[:12]}…）不符：此前的记录被整体改写或删除"))
    return problems


def count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def search(session: Session, *, action: str | None = None, actor: str | None = None, object_type: str | None = None,
           object_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
           offset: int = 0, limit: int = 50) -> tuple[list[AuditEvent], int]:
    stmt = select(AuditEvent)
    if action:
        stmt = stmt.where(AuditEvent.action.like(f"{action}%"))
    if actor:
        stmt = stmt.where(AuditEvent.actor_name.like(f"%{actor}%"))
    if object_type:
        stmt = stmt.where(AuditEvent.object_type == object_type)
    if object_id:
        stmt = stmt.where(AuditEvent.object_id == object_id)
    if since:
        stmt = stmt.where(AuditEvent.at >= since)
    if until:
        stmt = stmt.where(AuditEvent.at < until)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = list(session.execute(stmt.order_by(AuditEvent.seq.desc()).offset(offset).limit(limit)).scalars())
    return rows, int(total)
