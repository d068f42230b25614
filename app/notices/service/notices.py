"""Public notices (公示): drafting one from the records (read only), registering it with its PDF (a short code, the
content's and the PDF's SHA-256, the audit chain's head at that moment), superseding the one it replaces, and
checking a notice or a file against the register.

A notice is not its own witness: someone with the database file can rewrite a row and recompute its hash. A notice
is genuine only when (1) its content still hashes to what it says, (2) the audit event written when it was generated
(found in the chain, its own hash and its link to the next event intact) recorded that same code, content hash and
PDF hash, and the head printed on it is in the chain before that event, and (3) its seal, an HMAC under a key derived
from the server's secret (kept outside the database), matches. Forging one takes both a consistent rewrite of the
chain's tail (which the anchors catch: `audit verify`) and the key.

A notice's content is exactly what is printed, names already masked by the village's policy; ID numbers and phone
numbers are never part of it. Verification never needs a login: the code on the paper leads to the register."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.audit.models import AuditEvent
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.month import current_month, prev_month
from app.core.scope import Scope
from app.errors import ValidationFailed, get_or_not_found
from app.notices import kinds
from app.notices.models import Notice
from app.notices.service import render
from app.org.models import Township, Village

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0, 1, I, O: nothing to mistake when typed from paper
CODE_LENGTH = 8
MASKINGS = {"full": "全名（张三丰）", "middle": "中间隐去（张*丰）", "surname": "只留姓（张某）"}


def default_month(month: int | None) -> int:
    """The month asked for, or the month whose notices go up now: the previous one (as the rounds page offers)."""
    if month and 1 <= month % 100 <= 12:
        return month
    return prev_month(current_month())


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def display_code(code: str) -> str:
    """K7M2Q9XD -> K7M2-Q9XD, as printed."""
    return f"{code[:4]}-{code[4:]}"


def normalise_code(text: str) -> str:
    """What a person types from the paper: case, spaces and dashes forgiven (full-width too)."""
    import unicodedata

    return "".join(ch for ch in unicodedata.normalize("NFKC", text or "").upper() if ch.isascii() and ch.isalnum())


def canonical(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(content).encode("utf-8")).hexdigest()


@dataclass
class Draft:
    """A notice before it is registered: everything the PDF prints."""

    kind: str
    village_id: int
    period: int
    title: str
    content: dict[str, Any]
    masking: str
    code: str
    audit_seq: int
    audit_hash: str
    generated_at: datetime
    generated_by: str
    household_id: int | None = None
    round_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return meta_of(self)


def draft(session: Session, actor: Actor, kind: str, village_id: int, period: int, *, verify_base: str,
          household_id: int | None = None, code: str | None = None) -> Draft:
    """Gather a notice's content from the records (nothing is written). `verify_base`: the address the QR on the
    paper leads to (the public verification page is under it)."""
    spec = kinds.KINDS.get(kind)
    if spec is None:
        raise ValidationFailed(f"没有“{kind}”这种公示", details={"field": "kind"})
    village = get_or_not_found(session, Village, village_id, "没有这个村")
    township = session.get(Township, village.township_id)
    masking = village.name_masking if village.name_masking in MASKINGS else "middle"
    got = spec.gather(session, village, period, masking=masking, household_id=household_id)
    content = {"village": village.name, "village_code": village.code, "township": township.name if township else "",
               **got.content}
    seq, head = audit.head(session)
    code = code or new_code()
    content["verify_url"] = verify_url(verify_base, code)  # printed under the QR: part of what is verified
    return Draft(kind, village_id, period, got.title, content, masking, code, seq, head, utcnow(),
                 actor.name[:80], household_id=household_id, round_id=got.round_id)


def render_pdf(d: Draft) -> bytes:
    return render.pdf(render.html(d.meta(), d.content, for_pdf=True))


def verify_url(base: str, code: str) -> str:
    return f"{base.rstrip('/')}/v/{code}"


def notice_key(secret: str) -> bytes:
    """The key that seals notices, derived from the server's secret for this one purpose (not the cookie or card
    key)."""
    return hmac.new(secret.encode(), b"zhenfeng notice seal v1", hashlib.sha256).digest()


def seal_of(key: bytes, n: Notice) -> str:
    """HMAC-SHA256 over what the paper and the register must agree on: the code, what and whose it is, the
    content's and the PDF's hashes and the audit head printed on it."""
    fields = ("v1", n.code, n.kind, n.village_id, n.household_id or "", n.period, n.content_sha256,
              n.pdf_sha256 or "", n.audit_seq, n.audit_hash)
    return hmac.new(key, "|".join(str(f) for f in fields).encode(), hashlib.sha256).hexdigest()


def register(session: Session, actor: Actor, d: Draft, pdf: bytes | None, *, key: bytes) -> Notice:
    """Register the drafted notice (and the PDF made from it), sealed under `key`; the current notice of the same
    kind, village, period (and household) is superseded by it."""
    n = Notice(code=d.code, kind=d.kind, village_id=d.village_id, household_id=d.household_id, round_id=d.round_id,
               period=d.period, title=d.title[:120], content=d.content, content_sha256=content_hash(d.content),
               pdf_sha256=hashlib.sha256(pdf).hexdigest() if pdf is not None else None, masking=d.masking,
               audit_seq=d.audit_seq, audit_hash=d.audit_hash, generated_at=d.generated_at,
               generated_by=d.generated_by)
    n.mac = seal_of(key, n)
    previous = current(session, d.kind, d.village_id, d.period, household_id=d.household_id)
    session.add(n)
    try:
        session.flush()
    except IntegrityError:  # the same code drawn twice (1 in 10^12): the caller drafts again
        raise ValidationFailed("公示编号冲突，请重新生成") from None
    if previous is not None:
        session.execute(update(Notice).where(Notice.id == previous.id).values(superseded_by_id=n.id,
                                                                             superseded_at=utcnow()))
        session.refresh(previous)
    audit.record(session, actor, "notices.generate", object_type="notice", object_id=n.id,
                 after={"code": n.code, "kind": n.kind, "village_id": n.village_id, "period": n.period,
                        "content_sha256": n.content_sha256, "pdf_sha256": n.pdf_sha256,
                        "supersedes": previous.code if previous else None})
    return n


def current(session: Session, kind: str, village_id: int, period: int, *,
            household_id: int | None = None) -> Notice | None:
    stmt = select(Notice).where(Notice.kind == kind, Notice.village_id == village_id, Notice.period == period,
                                Notice.superseded_by_id.is_(None))
    stmt = stmt.where(Notice.household_id == household_id) if household_id else stmt.where(
        Notice.household_id.is_(None))
    return session.execute(stmt.order_by(Notice.id.desc()).limit(1)).scalar_one_or_none()


def village_notices(session: Session, village_id: int, *, limit: int = 100,
                    current_only: bool = False) -> list[Notice]:
    stmt = select(Notice).where(Notice.village_id == village_id, Notice.household_id.is_(None))
    if current_only:
        stmt = stmt.where(Notice.superseded_by_id.is_(None))
    return list(session.execute(stmt.order_by(Notice.generated_at.desc(), Notice.id.desc()).limit(limit)).scalars())


def get_notice(session: Session, notice_id: int) -> Notice:
    n = get_or_not_found(session, Notice, notice_id, "没有这份公示")
    return n


def by_code(session: Session, code: str) -> Notice | None:
    c = normalise_code(code)
    if len(c) != CODE_LENGTH:
        return None
    return session.execute(select(Notice).where(Notice.code == c)).scalar_one_or_none()


def scope_of_notice(session: Session, notice_id: int) -> Scope | None:
    row = session.execute(select(Notice.village_id, Notice.household_id, Village.township_id)
                          .join(Village, Village.id == Notice.village_id).where(Notice.id == notice_id)).first()
    if row is None:
        return None
    return Scope(township_id=row.township_id, village_id=row.village_id, household_id=row.household_id)


def meta_of(n: Notice | Draft) -> dict[str, Any]:
    """What the paper prints about a notice besides its content: the same for a draft and a registered notice."""
    return {"kind": n.kind, "code": n.code, "display_code": display_code(n.code), "title": n.title,
            "period": n.period, "generated_at": n.generated_at, "generated_by": n.generated_by,
            "audit_seq": n.audit_seq, "audit_hash": n.audit_hash, "masking": n.masking}


def page_of(n: Notice, *, for_pdf: bool = False) -> str:
    """The registered notice as its page, from the stored content (what was printed): the same content gives the
    same PDF, so a download later hashes as the one registered."""
    return render.html(meta_of(n), n.content, for_pdf=for_pdf)


GENERATE_ACTIONS = ("notices.generate", "notices.register")  # the second: notices registered by early versions


@dataclass(frozen=True)
class Check:
    """What the register says of a notice, and of a file if one was given."""

    notice: Notice
    intact: bool  # the stored content still hashes to what was registered
    current: bool
    superseded_by: Notice | None
    file_matches: bool | None = None  # None: no file was given
    recorded: bool = True  # the audit chain's record of its generation agrees with the row
    sealed: bool = True  # the seal under the server's key matches
    problems: tuple[str, ...] = ()  # why it is not genuine, in words for the county's staff

    @property
    def genuine(self) -> bool:
        return self.intact and self.recorded and self.sealed


def generation_event(session: Session, n: Notice) -> list[AuditEvent]:
    """The audit events that say this notice was generated (there must be exactly one)."""
    stmt = select(AuditEvent).where(AuditEvent.action.in_(GENERATE_ACTIONS), AuditEvent.object_type == "notice",
                                    or_(AuditEvent.object_id == str(n.id), AuditEvent.object_id == n.code))
    return list(session.execute(stmt.order_by(AuditEvent.seq)).scalars())


def chain_record(session: Session, n: Notice) -> list[str]:
    """What disagrees between the notice and the audit chain's record of its generation (empty: they agree).

    Local checks only, cheap enough for every public look: the event's own hash, its link to the next event, the
    printed head in the chain before it. A consistent rewrite of the chain's whole tail passes these; `audit verify`
    with the anchors (the heads printed on paper, the anchor files kept off the machine) is what catches that."""
    found = generation_event(session, n)
    if not found:
        return [f"审计链中没有这份公示（{display_code(n.code)}）生成时的记录"]
    if len(found) > 1:
        return [f"审计链中有 {len(found)} 条记录自称生成了这份公示"]
    ev = found[0]
    problems: list[str] = []
    if audit.chain_hash(ev.prev_hash, ev) != ev.hash:
        problems.append(f"记录这份公示生成的第 {ev.seq} 号审计事件被改动过")
    after_link = session.execute(select(AuditEvent.prev_hash).where(AuditEvent.seq == ev.seq + 1)).scalar_one_or_none()
    if after_link is not None and after_link != ev.hash:
        problems.append(f"第 {ev.seq} 号审计事件与下一条的哈希链接断开")
    if ev.seq > 1:
        before = session.execute(select(AuditEvent.hash).where(AuditEvent.seq == ev.seq - 1)).scalar_one_or_none()
        if before != ev.prev_hash:
            problems.append(f"第 {ev.seq} 号审计事件与前一条的哈希链接断开")
    after = ev.summary.get("after") if isinstance(ev.summary, dict) else None
    if ev.action == "notices.generate":
        recorded = after if isinstance(after, dict) else {}
        for key, value in (("code", n.code), ("content_sha256", n.content_sha256), ("pdf_sha256", n.pdf_sha256)):
            if recorded.get(key) != value:
                label = {"code": "编号", "content_sha256": "内容指纹", "pdf_sha256": "PDF 指纹"}[key]
                problems.append(f"{label}与生成时审计链记下的不同（第 {ev.seq} 号事件）")
    if not n.audit_seq < ev.seq:
        problems.append(f"公示上印的链头（第 {n.audit_seq} 号）不在它生成之前")
    printed = session.execute(select(AuditEvent.hash).where(AuditEvent.seq == n.audit_seq)).scalar_one_or_none()
    if n.audit_seq > 0 and printed != n.audit_hash:
        problems.append(f"公示上印的链头（第 {n.audit_seq} 号）与审计链不符")
    return problems


def check(session: Session, n: Notice, file: bytes | None = None, *, key: bytes) -> Check:
    """The notice against itself, the audit chain and its seal (and a file against the PDF handed out)."""
    newer = session.get(Notice, n.superseded_by_id) if n.superseded_by_id else None
    while newer is not None and newer.superseded_by_id:  # the newest in the chain
        newer = session.get(Notice, newer.superseded_by_id)
    matches = None
    if file is not None:
        matches = n.pdf_sha256 is not None and hashlib.sha256(file).hexdigest() == n.pdf_sha256
    intact = content_hash(n.content) == n.content_sha256
    problems = [] if intact else ["登记的内容与它的内容指纹不符"]
    chain = chain_record(session, n)
    sealed = n.mac is not None and hmac.compare_digest(n.mac, seal_of(key, n))
    if not sealed:
        problems.append("没有本系统的密封" if n.mac is None else "密封与登记的内容不符（不是用本系统的密钥生成的）")
    return Check(n, intact, n.superseded_by_id is None, newer, matches, recorded=not chain, sealed=sealed,
                 problems=tuple(problems + chain))


def seal_unsealed(session: Session, actor: Actor, key: bytes) -> list[str]:
    """Seal the notices registered before notices were sealed (run by `zhenfeng migrate`): each one whose content
    and audit record agree is sealed; the codes of those that do not are returned and stay unsealed (shown as not
    genuine)."""
    refused: list[str] = []
    sealed: list[str] = []
    for n in session.execute(select(Notice).where(Notice.mac.is_(None)).order_by(Notice.id)).scalars():
        if content_hash(n.content) != n.content_sha256 or chain_record(session, n):
            refused.append(n.code)
            continue
        session.execute(update(Notice).where(Notice.id == n.id).values(mac=seal_of(key, n)))
        sealed.append(n.code)
    if sealed:
        audit.record(session, actor, "notices.seal", object_type="notice", after={"codes": sealed})
    return refused


def verify_all(session: Session, key: bytes, *, codes: list[str] | None = None) -> list[tuple[Notice, Check]]:
    """Every notice (or those with these codes) that is not genuine, with why."""
    stmt = select(Notice).order_by(Notice.id)
    if codes:
        stmt = stmt.where(Notice.code.in_([normalise_code(c) for c in codes]))
    bad: list[tuple[Notice, Check]] = []
    for n in session.execute(stmt).scalars():
        c = check(session, n, key=key)
        if not c.genuine:
            bad.append((n, c))
    return bad


def count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(Notice)).scalar_one())


def anchors(session: Session) -> list[audit.Anchor]:
    """The audit heads printed on notices: each is a point the chain must still pass through, and the chain must go
    on past it (the notice's own generation event comes after it)."""
    rows = session.execute(select(Notice.code, Notice.audit_seq, Notice.audit_hash).where(Notice.audit_seq > 0)
                           .order_by(Notice.audit_seq.desc(), Notice.id)).all()
    return [audit.Anchor(r.audit_seq, r.audit_hash, f"公示 {display_code(r.code)} 上印的链头", followed=True)
            for r in rows]


def set_masking(session: Session, actor: Actor, village_id: int, masking: str) -> Village:
    if masking not in MASKINGS:
        raise ValidationFailed("请选择姓名显示方式：全名、中间隐去或只留姓", details={"field": "masking"})
    village = get_or_not_found(session, Village, village_id, "没有这个村")
    before = village.name_masking
    village.name_masking = masking
    session.flush()
    audit.record(session, actor, "notices.masking", object_type="village", object_id=village_id,
                 before={"masking": before}, after={"masking": masking})
    return village
