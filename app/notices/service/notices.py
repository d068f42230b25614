"""Public notices (公示): drafting one from the records (read only), registering it with its PDF (a short code, the
content's and the PDF's SHA-256, the audit chain's head at that moment), superseding the one it replaces, and
checking a notice or a file against the register.

A notice's content is exactly what is printed, names already masked by the village's policy; ID numbers and phone
numbers are never part of it. Verification never needs a login: the code on the paper leads to the register."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import service as audit
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


def register(session: Session, actor: Actor, d: Draft, pdf: bytes | None) -> Notice:
    """Register the drafted notice (and the PDF made from it); the current notice of the same kind, village,
    period (and household) is superseded by it."""
    n = Notice(code=d.code, kind=d.kind, village_id=d.village_id, household_id=d.household_id, round_id=d.round_id,
               period=d.period, title=d.title[:120], content=d.content, content_sha256=content_hash(d.content),
               pdf_sha256=hashlib.sha256(pdf).hexdigest() if pdf is not None else None, masking=d.masking,
               audit_seq=d.audit_seq, audit_hash=d.audit_hash, generated_at=d.generated_at,
               generated_by=d.generated_by)
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


@dataclass(frozen=True)
class Check:
    """What the register says of a notice, and of a file if one was given."""

    notice: Notice
    intact: bool  # the stored content still hashes to what was registered
    current: bool
    superseded_by: Notice | None
    file_matches: bool | None = None  # None: no file was given


def check(session: Session, n: Notice, file: bytes | None = None) -> Check:
    newer = session.get(Notice, n.superseded_by_id) if n.superseded_by_id else None
    while newer is not None and newer.superseded_by_id:  # the newest in the chain
        newer = session.get(Notice, newer.superseded_by_id)
    matches = None
    if file is not None:
        matches = n.pdf_sha256 is not None and hashlib.sha256(file).hexdigest() == n.pdf_sha256
    return Check(n, content_hash(n.content) == n.content_sha256, n.superseded_by_id is None, newer, matches)


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
