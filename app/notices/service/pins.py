"""The public portal's service (no HTTP): a household's portal PIN (set by the village clerk, checked with the card
code, throttled like a login), and what the portal shows of a village, which is never more than its notices show.

PIN checks are throttled like a login (app.auth.service.throttle: `login_attempts`, per card and address, per address, and
a short wait when the card failed lately from other addresses) under keys that a login can never produce: a login
name is stored lower-case, so the upper-case `PIN:` prefix keeps the two apart, and a household's failed PINs never
lock a clerk out of the village office's computer (nor the other way round).

- per card: `PIN:H<household id>` for a genuine card; for a card code that is not genuine (mistyped, forged, an old
  version) `PIN:X<hash of the code>`, so that "this card is locked" says no more about a code than "wrong code or PIN"
  does (an unknown code is locked after as many tries as a real one, and waits the same);
- per address: `PIN:<address>`.
Only the address that failed is locked out of a card: a neighbour who tries a household's card cannot keep the
household itself from its points. A new PIN set by the clerk reopens the card at once for every address.
A wrong card code, a card of another village, a household without a PIN and a wrong PIN all get the same answer; the
PIN is checked (against a dummy hash when there is nothing to check against) every time, so they also take as long.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.security import hash_password, verify_password
from app.auth.service import throttle
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.scope import EVERYTHING
from app.errors import AppError, Conflict, NotFound, TooManyRequests, ValidationFailed
from app.households.models import Household
from app.households.service import households
from app.ledger import service as ledger
from app.lists import service as lists
from app.notices.kinds import ranking as ranking_kind
from app.notices.kinds.common import heads, sort_key
from app.notices.models import HouseholdPin, Notice
from app.notices.service import notices
from app.org import service as org
from app.org.models import Township, Village
from app.rulesets import service as evaluation
from app.store.service import cards
from app.store.service import stores as store

PIN_LENGTH = 6
PIN_RULE = "查询密码必须是 6 位数字"
TRIVIAL_PIN = "查询密码太简单，容易被人猜到（如 000000、123456、121212、123123）：请换一个 6 位数字"
REFUSED = "卡号或查询密码不正确。请核对积分卡上的卡号（字母大小写、空格和横线都可以不管）；忘记查询密码请到村委会重新设置"
# Well-known PINs that are not caught by the patterns below (keyboard columns, "我爱你" numbers, ...).
COMMON_PINS = frozenset({"112233", "123321", "147258", "258369", "369258", "159357", "520131", "201314", "111222",
                         "000111", "123654", "654123", "102030", "741852", "852963", "963852", "778899", "998877"})


# ---- the PIN itself --------------------------------------------------------------------------------------------------

def pin_problem(pin: str) -> str | None:
    """Why a new PIN is not acceptable, in Chinese; None when it is."""
    if not re.fullmatch(r"[0-9]{6}", pin or ""):  # ASCII digits only (\d takes any script's)
        return PIN_RULE
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if (len(set(pin)) == 1  # 000000, 888888
            or steps in ({1}, {-1}, {1, -9}, {-1, 9})  # 123456, 654321, 890123, 210987
            or pin == pin[:2] * 3 or pin == pin[:3] * 2  # 121212, 123123
            or pin in COMMON_PINS):
        return TRIVIAL_PIN
    return None


def random_pin() -> str:
    """A PIN for the clerk to hand out, never one of the trivial ones."""
    while True:
        pin = f"{secrets.randbelow(10**PIN_LENGTH):06d}"
        if pin_problem(pin) is None:
            return pin


def pin_of(session: Session, household_id: int) -> HouseholdPin | None:
    return session.get(HouseholdPin, household_id)


def _subject(household_id: int) -> str:
    return f"PIN:H{household_id}"


def set_pin(session: Session, actor: Actor, household_id: int, pin: str) -> HouseholdPin:
    """Set (or replace) the household's PIN. The household may use it at once, even if its card was locked by
    failed tries: a new PIN from the clerk clears that count."""
    pin = (pin or "").strip()
    problem = pin_problem(pin)
    if problem:
        raise ValidationFailed(problem, details={"field": "pin"})
    households.get_household(session, household_id)
    row = session.get(HouseholdPin, household_id)
    replaced = row is not None
    if row is None:
        row = HouseholdPin(household_id=household_id, pin_hash=hash_password(pin), set_by=actor.name[:80])
        session.add(row)
    else:
        row.pin_hash, row.set_by, row.set_at = hash_password(pin), actor.name[:80], utcnow()
    throttle.reset(session, _subject(household_id), utcnow())  # the card may be tried again at once, from anywhere
    session.flush()
    audit.record(session, actor, "notices.portal_pin.set", object_type="household", object_id=household_id,
                 after={"replaced": replaced})
    return row


def clear_pin(session: Session, actor: Actor, household_id: int) -> None:
    """The household can no longer look up its points on the portal until a new PIN is set."""
    households.get_household(session, household_id)
    row = session.get(HouseholdPin, household_id)
    if row is None:
        raise Conflict("该户还没有设置查询密码", code="no_pin")
    session.delete(row)
    session.flush()
    audit.record(session, actor, "notices.portal_pin.clear", object_type="household", object_id=household_id)


# ---- checking a card code and PIN ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """How many failures are allowed in the window, per card and address and per address, and the longest wait
    when the card failed from other addresses (the login's settings)."""

    per_card: int = 5
    per_address: int = 20
    window_minutes: int = 15
    slow_max_seconds: int = 5

    def rules(self) -> throttle.Limits:
        return throttle.Limits(per_subject=self.per_card, per_address=self.per_address,
                               window_minutes=self.window_minutes, slow_max_seconds=self.slow_max_seconds)


class PinRefused(AppError):
    """Wrong card code or wrong PIN (the same answer for both). The failure itself is recorded: the request's
    transaction keeps it."""

    status = 401
    code = "pin_refused"
    keep_writes = True


class PinThrottled(TooManyRequests):
    keep_writes = True


def _address(actor: Actor) -> str:
    return f"PIN:{throttle.address_key(actor.ip)}"[:64]


def _unknown_subject(code: str) -> str:
    return "PIN:X" + hashlib.sha256(code.encode()).hexdigest()[:20]


def card_code(text: str) -> str:
    """The card code as printed (ZF1-<card id>-<version>-<MAC>) from what a person typed: lower case, full-width
    characters, spaces or any other mark in place of the dashes, and spaces inside the MAC are all forgiven."""
    groups = re.findall(r"[0-9A-Z]+", unicodedata.normalize("NFKC", text or "").upper())
    if len(groups) >= 4 and groups[0] == cards.PREFIX and groups[1].isdigit() and groups[2].isdigit():
        return "-".join([*groups[:3], "".join(groups[3:])])
    return cards.normalise(text)


def slowdown(session: Session, actor: Actor, key: bytes, card_text: str, *,
             limits: Limits | None = None) -> throttle.Slowdown:
    """How long a PIN check of this card from `actor.ip` waits before the PIN is checked (the card failed lately
    from other addresses). Read only, nothing audited: the caller waits holding no transaction, then calls `check`."""
    limits = limits or Limits()
    code = card_code(card_text)[:80]
    if not code:
        return throttle.NO_WAIT
    household_id = cards.household_of(session, key, code)
    subject = _subject(household_id) if household_id is not None else _unknown_subject(code)
    return throttle.slowdown(session, limits.rules(), subject, _address(actor), utcnow())


def check(session: Session, actor: Actor, key: bytes, card_text: str, pin: str, *, village_id: int,
          limits: Limits | None = None, now: datetime | None = None,
          slowed: throttle.Slowdown = throttle.NO_WAIT) -> Household:
    """The household whose card code and PIN these are, if it belongs to `village_id`; else PinRefused (the same
    for a wrong code and a wrong PIN), or PinThrottled after too many failures. `actor.ip` is the address that asks;
    `slowed` the wait `slowdown` asked for, served by the caller before this transaction (audited here).
    Every outcome is audited (never the PIN, nor the card code)."""
    limits = limits or Limits()
    rules = limits.rules()
    code = card_code(card_text)[:80]
    pin = (pin or "").strip()[:20]
    if not code or not pin:
        raise ValidationFailed("请输入积分卡上的卡号和查询密码", details={"field": "card" if not code else "pin"})
    address = _address(actor)
    # Count, check and record as one, per card and per address. A genuine card has one current code, so the code
    # stands for the card here (the card itself is only known after reading it, which may write an audit event).
    throttle.lock(session, f"pin-card:{code}", f"addr:{address}")
    now = now or utcnow()
    minutes = throttle.address_wait(session, rules, address, now)
    if minutes:
        audit.record(session, actor, "notices.portal_pin.throttled", object_type="address", object_id=actor.ip,
                     note="本机（本网络）查询失败次数过多")
        raise PinThrottled(f"本机查询失败次数过多，请在 {minutes} 分钟后再试", code="pin_throttled")
    household: Household | None = None
    why = ""
    try:
        household = cards.read(session, actor, key, code).household
    except cards.CardRefused as e:
        why = "卡号无法识别" if e.code == "card_unreadable" else "卡号校验失败或此卡已挂失"
    subject = _subject(household.id) if household else _unknown_subject(code)
    object_type, object_id = ("household", household.id) if household else ("card", None)
    if slowed.seconds:
        audit.record(session, actor, "notices.portal_pin.slowed", object_type=object_type, object_id=object_id,
                     after=slowed.audit(), note="这张卡近期在其他地址多次输错查询密码，本次延后核对")
    minutes = throttle.subject_wait(session, rules, subject, address, now)
    if minutes:
        audit.record(session, actor, "notices.portal_pin.throttled", object_type=object_type, object_id=object_id,
                     note="本机（本网络）对这张卡输错查询密码次数过多")
        raise PinThrottled(f"这张卡的查询密码在本机输错次数过多，已暂时锁定，请在 {minutes} 分钟后再试；"
                           "忘记查询密码请到村委会重新设置", code="pin_throttled")
    stored = None
    if household is not None:
        if household.village_id != village_id:
            why = "不是本村的卡"
        elif (row := session.get(HouseholdPin, household.id)) is None:
            why = "该户没有设置查询密码"
        else:
            stored = row.pin_hash
    ok = verify_password(pin, stored)  # a dummy hash when there is none: every refusal takes as long
    if not ok:
        throttle.record(session, subject, address, now, ok=False)
        audit.record(session, actor, "notices.portal_pin.failed", object_type=object_type, object_id=object_id,
                     note=why or "查询密码错误")
        session.flush()
        raise PinRefused(REFUSED)
    assert household is not None
    throttle.record(session, subject, address, now, ok=True)
    session.flush()
    audit.record(session, actor, "notices.portal_pin.ok", object_type="household", object_id=household.id)
    return household


# ---- what the portal shows -------------------------------------------------------------------------------------------

PORTAL_KINDS = ("results", "red", "ranking", "finance")  # listed with links; the black list only as a count
RANKING_SIZE = 20
RECENT_LINES = 10


def public_villages(session: Session) -> list[tuple[Township, list[Village]]]:
    """The county's active townships, each with its active villages (by code)."""
    villages = org.list_villages(session, EVERYTHING, include_inactive=False)
    by_township: dict[int, list[Village]] = {}
    for v in villages:
        by_township.setdefault(v.township_id, []).append(v)
    return [(t, by_township[t.id]) for t in org.list_townships(session, EVERYTHING, include_inactive=False)
            if t.id in by_township]


def village_by_code(session: Session, code: str) -> Village:
    """An active village by its 12-digit code: NotFound for no such village, Conflict for one that is closed."""
    code = (code or "").strip()
    village = None
    if re.fullmatch(r"[0-9]{12}", code):
        village = session.execute(select(Village).where(Village.code == code)).scalar_one_or_none()
    if village is None:
        raise NotFound("没有这个村：请从列表中选择")
    township = session.get(Township, village.township_id)
    if not village.active or (township is not None and not township.active):
        raise Conflict(f"{village.name}已停用，没有公开页面", code="village_inactive")
    return village


@dataclass(frozen=True)
class RedRow:
    number: str
    name: str
    reason: str
    from_month: int
    to_month: int


@dataclass(frozen=True)
class RankRow:
    rank: int
    number: str
    name: str
    points: int


@dataclass
class Board:
    """A village's public page: what its notices show, no more."""

    village: Village
    township: str
    month: int  # YYYYMM: the red and black lists shown this month
    year: int
    notices: list[Notice]
    black_notices: int  # current black-list notices: on the notice board, not online
    red: list[RedRow]
    black: list[tuple[str, int]]  # (reason, households): the black list as counts only
    black_households: int
    ranking: list[RankRow]
    finance: store.Finance
    point_value_fen: int | None
    masking: str = "middle"
    sources: dict[str, str] = field(default_factory=dict)


def masking_of(village: Village) -> str:
    return village.name_masking if village.name_masking in notices.MASKINGS else "middle"


def board(session: Session, village: Village, *, month: int | None = None) -> Board:
    """The village's current notices, the red list shown this month (names by the village's policy, reason and
    period), the black list as counts by reason, this year's ranking (points earned less points deducted, top 20)
    and the supermarket's accounts for the year. Nothing of a household's balance, ID number, phone or address."""
    assert village.id is not None
    month = month or lists.this_month()
    year = month // 100
    masking = masking_of(village)
    made = notices.village_notices(session, village.id, current_only=True)
    shown = lists.shown_now(session, village.id, month)
    red = [p for p in shown if p.list == "red" and p.household_id is not None]
    black = [p for p in shown if p.list == "black"]
    names = heads(session, [p.household_id for p in red], masking)  # type: ignore[misc]
    red_rows = sorted((RedRow(*names.get(p.household_id, ("", "")), p.reason, p.from_month, p.to_month)
                       for p in red), key=lambda r: (sort_key(r.number), r.reason))
    # the ranking notice's own rows (points earned less deducted, ties sharing a rank), its top households with points
    ranked = ranking_kind.gather(session, village, year * 100, masking=masking).content["rows"]
    ranking = [RankRow(r["rank"], r["number"], r["name"], r["points"]) for r in ranked if r["points"] > 0][:RANKING_SIZE]
    reasons = Counter((p.reason, p.household_id) for p in black)
    by_reason = Counter(reason for reason, _hid in reasons)
    pv = evaluation.point_value(session, village.id, year)
    township = session.get(Township, village.township_id)
    return Board(village=village, township=township.name if township else "", month=month, year=year,
                 notices=[n for n in made if n.kind in PORTAL_KINDS][:12],
                 black_notices=sum(1 for n in made if n.kind == "black"),
                 red=red_rows, black=sorted(by_reason.items(), key=lambda t: (-t[1], t[0])),
                 black_households=len({p.household_id for p in black}), ranking=ranking,
                 finance=store.finance(session, village.id, year, point_value_fen=pv or 0), point_value_fen=pv,
                 masking=masking, sources=dict(store.SOURCES))


@dataclass(frozen=True)
class Own:
    """What a household sees of itself after its card code and PIN matched."""

    number: str
    name: str  # by the village's policy: the page may be read over a shoulder
    balance: int
    expiring: list[tuple[date, int]]
    lines: list[ledger.StatementLine]
    total_lines: int


def own(session: Session, household: Household, village: Village) -> Own:
    assert household.id is not None
    st = ledger.statement(session, household.id, limit=RECENT_LINES)
    return Own(household.number, heads(session, [household.id], masking_of(village)).get(household.id, ("", ""))[1],
               st.balance, ledger.expiring(session, household.id)[:3], st.lines, st.total)
