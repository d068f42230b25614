"""积分卡: one card per household, its QR payload and the reading of a scanned payload.

The payload is short uppercase ASCII, because a USB scanner types it into a text field as keystrokes:

    ZF1-<card id>-<version>-<MAC>      e.g.  ZF1-1234-2-K7QM2X4RTA

MAC is the first 10 base32 characters (50 bits) of HMAC-SHA256 over "ZF1-<card id>-<version>" with a key derived
from the server's secret. A payload that is not of this form, or whose MAC does not match, is refused as forged or
altered; a MAC-valid payload with an older version than the card's is an old card, reported lost (此卡已挂失).
Services take the key as an argument: they never read settings or requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

import qrcode
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.context import Actor
from app.errors import AppError, NotFound, ValidationFailed
from app.households.models import Household
from app.store.models import Card, CardEvent

PREFIX = "ZF1"
_PAYLOAD = re.compile(r"^ZF1-([1-9][0-9]{0,9})-([1-9][0-9]{0,5})-([A-Z2-7]{10})$")


def card_key(secret: str) -> bytes:
    """The card key, derived from the server's secret (a different purpose from cookies: a separate key)."""
    return hmac.new(secret.encode(), b"zhenfeng card v1", hashlib.sha256).digest()


def _mac(key: bytes, card_id: int, version: int) -> str:
    digest = hmac.new(key, f"{PREFIX}-{card_id}-{version}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:10]


def qr_svg(text: str, *, size_mm: int = 24) -> str:
    """The QR code of `text` as a small inline SVG: one path, each row's dark runs as rectangles (a card sheet holds
    ten of these, so it stays a few kilobytes). Error correction M: a card survives a crease or a smudge."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    qr.add_data(text)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    n = len(matrix)
    parts: list[str] = []
    for y, row in enumerate(matrix):
        x = 0
        while x < n:
            if row[x]:
                start = x
                while x < n and row[x]:
                    x += 1
                parts.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {n}" width="{size_mm}mm" height="{size_mm}mm" '
            f'shape-rendering="crispEdges" role="img" aria-label="{text}"><rect width="{n}" height="{n}" fill="#fff"/>'
            f'<path d="{"".join(parts)}" fill="#000"/></svg>')


def payload(key: bytes, card: Card) -> str:
    return f"{PREFIX}-{card.id}-{card.version}-{_mac(key, card.id, card.version)}"


class CardRefused(AppError):
    """A scanned card that cannot be used. `keep_writes`: the refusal itself is audited, so the request's
    transaction commits what was written before the refusal (the audit event, and nothing else)."""

    status = 422
    keep_writes = True


@dataclass(frozen=True)
class Scanned:
    card: Card
    household: Household


def normalise(raw: str) -> str:
    """What a scanner or a person typed, made comparable: full-width characters from a Chinese input method become
    ASCII, spaces go, letters become upper case (a scanner with Caps Lock on types lower case)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw or "")).upper()


def looks_like_card(raw: str) -> bool:
    return normalise(raw).startswith(PREFIX + "-")


def read(session: Session, actor: Actor, key: bytes, raw: str, *, store_id: int | None = None) -> Scanned:
    """The card and household a scanned payload names, or CardRefused with what the clerk should do."""
    code = normalise(raw)
    m = _PAYLOAD.match(code)
    if m is None:
        raise CardRefused("无法识别的积分卡：请重新扫描；扫不出时可输入户号或户主姓名查找", code="card_unreadable")
    card_id, version, mac = int(m.group(1)), int(m.group(2)), m.group(3)
    card = session.get(Card, card_id)
    if not hmac.compare_digest(mac, _mac(key, card_id, version)) or card is None or version > card.version:
        audit.record(session, actor, "store.card.refused", object_type="card", object_id=card_id,
                     after={"why": "forged", "store_id": store_id, "version": version})
        raise CardRefused("积分卡校验失败：这张卡不是本系统发放的，或卡上的码被改动过。请核对身份后按户号查找，"
                          "并报告村委会", code="card_forged")
    household = session.get(Household, card.household_id)
    if version < card.version or card.status == "lost":
        audit.record(session, actor, "store.card.refused", object_type="card", object_id=card_id,
                     after={"why": "revoked", "store_id": store_id, "version": version,
                            "current_version": card.version, "household_id": card.household_id})
        if version < card.version:
            msg = f"此卡已挂失，请使用新卡（新卡为第 {card.version} 版）"
        else:
            msg = "此卡已挂失，尚未补办新卡：请核对身份后按户号查找，并提醒农户到村委会补卡"
        raise CardRefused(msg, code="card_revoked")
    assert household is not None
    return Scanned(card, household)


def household_of(session: Session, key: bytes, raw: str) -> int | None:
    """The household whose current card this payload is (the MAC matches, the card's version, not lost), else None.
    Reads only and audits nothing: for a question asked before the real reading (`read`), such as how long a portal
    PIN check of this card waits."""
    m = _PAYLOAD.match(normalise(raw))
    if m is None:
        return None
    card_id, version, mac = int(m.group(1)), int(m.group(2)), m.group(3)
    if not hmac.compare_digest(mac, _mac(key, card_id, version)):
        return None
    card = session.get(Card, card_id)
    if card is None or version != card.version or card.status == "lost":
        return None
    return card.household_id


# ---- issuing, losing, reissuing --------------------------------------------------------------------------------------

def card_of(session: Session, household_id: int) -> Card | None:
    return session.execute(select(Card).where(Card.household_id == household_id)).scalar_one_or_none()


def cards_of(session: Session, household_ids: list[int]) -> dict[int, Card]:
    if not household_ids:
        return {}
    rows = session.execute(select(Card).where(Card.household_id.in_(household_ids))).scalars()
    return {c.household_id: c for c in rows}


def ensure_cards(session: Session, actor: Actor, household_ids: list[int]) -> dict[int, Card]:
    """Every listed household's card, issuing the missing ones (first version) in one go."""
    have = cards_of(session, household_ids)
    missing = [hid for hid in household_ids if hid not in have]
    if missing:
        new = [Card(household_id=hid) for hid in missing]
        session.add_all(new)
        session.flush()
        session.add_all([CardEvent(card_id=c.id, version=1, action="issued", actor=actor.name[:80])
                         for c in new])
        session.flush()
        audit.record(session, actor, "store.card.issue", object_type="card", object_id=None,
                     after={"households": len(missing)})
        have.update({c.household_id: c for c in new})
    return have


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > 200:
        raise ValidationFailed("请写明原因（不超过 200 个字），例如：农户报告卡片丢失", details={"field": "reason"})
    return reason


def report_lost(session: Session, actor: Actor, household_id: int, reason: str) -> Card:
    """The card stops working at once; the household is served by identity check until a new card is issued."""
    reason = _reason(reason)
    card = card_of(session, household_id)
    if card is None:
        raise NotFound("该户还没有积分卡")
    if card.status == "lost":
        raise ValidationFailed("这张卡已经挂失，补办新卡即可")
    card.status, card.updated_at = "lost", utcnow()
    session.add(CardEvent(card_id=card.id, version=card.version, action="lost", reason=reason,
                          actor=actor.name[:80]))
    session.flush()
    audit.record(session, actor, "store.card.lost", object_type="card", object_id=card.id,
                 after={"household_id": household_id, "version": card.version, "reason": reason})
    return card


def reissue(session: Session, actor: Actor, household_id: int, reason: str) -> Card:
    """A new card: the version goes up, so every earlier print of this card is refused from now on."""
    reason = _reason(reason)
    if card_of(session, household_id) is None:  # never had one: this is its first card
        return ensure_cards(session, actor, [household_id])[household_id]
    card = ensure_cards(session, actor, [household_id])[household_id]
    card.version += 1
    card.status, card.updated_at = "active", utcnow()
    session.add(CardEvent(card_id=card.id, version=card.version, action="reissued", reason=reason,
                          actor=actor.name[:80]))
    session.flush()
    audit.record(session, actor, "store.card.reissue", object_type="card", object_id=card.id,
                 after={"household_id": household_id, "version": card.version, "reason": reason})
    return card


def events(session: Session, card_id: int) -> list[CardEvent]:
    return list(session.execute(select(CardEvent).where(CardEvent.card_id == card_id)
                                .order_by(CardEvent.id.desc())).scalars())
