"""The public portal (no login): a village's current notices, red list, ranking and supermarket accounts, and nothing
private (no ID number, phone, address or balance; the black list only as counts); a household's own points behind
its card code and a PIN the clerk sets: a wrong code and a wrong PIN get the same answer, a household of another
village is not read through this village's page, failures are throttled like a login and audited without the PIN."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app import deps
from app.audit.models import AuditEvent
from app.core.context import Actor
from app.core.masking import mask_name
from app.db import Database
from app.errors import Conflict, ValidationFailed
from app.households.models import Household, Member
from app.ledger import service as ledger
from app.lists import service as lists
from app.lists.models import ListPosting
from app.notices.service import pins
from app.org import service as org
from app.org.models import Village
from app.store.service import cards
from tests.support.concurrency import at_once, count_checks
from tests.support.web import TEST_SECRET, csrf_from, login

CLERK = Actor(user_id=None, name="村文书", role="village_clerk")
FIRST = "341000101001"  # the demo's first village (城关镇 红旗村)
PIN = "384907"
KEY = cards.card_key(TEST_SECRET)


def _household(db: Database, village_code: str, index: int = 0) -> tuple[int, str, str]:
    """(id, card code as printed, head's name) of the village's `index`-th household, with a card and a PIN."""
    with db.write_txn() as s:
        vid = s.execute(select(Village.id).where(Village.code == village_code)).scalar_one()
        h = s.execute(select(Household).where(Household.village_id == vid).order_by(Household.id)).scalars().all()[index]
        card = cards.ensure_cards(s, CLERK, [h.id])[h.id]  # type: ignore[list-item]
        pins.set_pin(s, CLERK, h.id, PIN)  # type: ignore[arg-type]
        return h.id, cards.payload(KEY, card), h.head_name  # type: ignore[return-value]


def _private_texts(db: Database) -> list[str]:
    """Every ID number, phone and address the demo holds: none may appear on a portal page."""
    with db.read_txn() as s:
        texts = [t for row in s.execute(select(Member.id_number, Member.phone)) for t in row if t]
        texts += [t for row in s.execute(select(Household.phone, Household.address)) for t in row if t]
    assert len(texts) > 20, "the demo holds ID numbers and phones: the check below would be empty"
    return texts


def _me(client: TestClient, card: str, pin: str, village: str = FIRST) -> Any:
    form = client.get(f"/public/villages/{village}/me")
    return client.post(f"/public/villages/{village}/me",
                       data={"card": card, "pin": pin, "csrf_token": csrf_from(form.text)})


def _refused(r: Any) -> bool:
    return r.status_code == 401 and pins.REFUSED in r.text and 'data-testid="balance"' not in r.text


def test_portal_pages_show_the_village_and_nothing_private(client: TestClient, db: Database, demo: dict) -> None:
    _hid, card, head = _household(db, FIRST)
    with db.write_txn() as s:
        vid = s.execute(select(Village.id).where(Village.code == FIRST)).scalar_one()
        # a black-list posting shown this month: the portal gives the count and the reason, not who
        black_hid = s.execute(select(Household.id).where(Household.village_id == vid).order_by(Household.id.desc())
                              ).scalars().first()
        month = lists.this_month()
        s.add(ListPosting(village_id=vid, household_id=black_hid, list="black", source="determination",
                          code="dishonest", reason="不诚信户", explanation="借钱不还，经委员会认定", from_month=month,
                          to_month=month))
        s.flush()
        shown = lists.shown_now(s, vid)
        red = [p for p in shown if p.list == "red"]
        heads = {h.id: (h.number, h.head_name) for h in s.execute(select(Household).where(Household.village_id == vid)
                                                                   ).scalars()}
        year = month // 100
        # a deduction this year: the ranking counts points earned less points deducted (the top household drops)
        top = max(ledger.household_kind_totals(s, vid, year * 100 + 1, year * 100 + 12).items(),
                  key=lambda kv: kv[1].get("award", 0))[0]
        ledger.penalize(s, CLERK, household_id=top, points=90, memo="扣分：测试", policy="allow_debt")
        earned = {h: k.get("award", 0) + k.get("penalty", 0)
                  for h, k in ledger.household_kind_totals(s, vid, year * 100 + 1, year * 100 + 12).items()}
    assert red, "the demo shows a red list this month"

    index = client.get("/public")
    assert index.status_code == 200 and "红旗村" in index.text and f'href="/public/villages/{FIRST}"' in index.text
    assert "noindex" in index.headers.get("x-robots-tag", "")

    page = client.get(f"/public/villages/{FIRST}")
    assert page.status_code == 200, page.text[:300]
    text = page.text
    # the current notices, with their verification pages and PDFs
    assert 'href="/v/DEMQ2345"' in text and 'href="/v/DEMQ2345/notice.pdf"' in text and "DEMQ-2345" in text
    # the red list: masked names (the village's policy, 张*丰), reason and period
    red_block = text.split('data-testid="red-list"', 1)[1].split('data-testid="black-list"', 1)[0]
    for p in red:
        number, name = heads[p.household_id]  # type: ignore[index]
        assert f"户号 {number} <strong>{name[0]}*" in red_block and p.reason in red_block
    assert "2026年" in red_block and "公示期" in red_block
    # the black list: how many and why, never who, and never the committee's explanation
    black_block = text.split('data-testid="black-list"', 1)[1].split("</div>", 1)[0]
    assert "不诚信户" in black_block and "户号" not in black_block
    number, name = heads[black_hid]  # type: ignore[index]
    assert name[0] + "*" not in black_block and "借钱不还" not in text
    # the ranking: the year's points earned less deducted, best first, masked
    ranking = text.split('data-testid="ranking"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'data-testid="rank-row"><td class="n">(\d+)</td><td class="hh">([^<]*)</td><td>([^<]*)</td>'
                      r'<td class="num pts">(-?\d+)</td>', ranking)
    want = sorted(((earned[h], heads[h][0]) for h in earned if earned[h] > 0), key=lambda t: (-t[0], t[1]))
    assert [(int(pts), number) for _rank, number, _name, pts in rows] == want[:20] and want
    full_by_number = dict(heads.values())
    assert all(name == mask_name(full_by_number[number], "middle") != full_by_number[number]
               for _rank, number, name, _pts in rows)
    # the supermarket's accounts of the year
    assert 'data-testid="money-in"' in text and "保障余额" in text
    # nothing private: no full name (the policy masks them), no ID number, phone, address, no balance
    for _number, full in heads.values():
        if len(full) >= 2:
            assert full not in text, f"full name {full} on the portal"
    for t in _private_texts(db):
        assert t not in text and t not in index.text
    assert "现有积分" not in text  # no household's balance

    # the look-up form and a household's own page carry nothing of anybody else's either
    form = client.get(f"/public/villages/{FIRST}/me")
    assert form.status_code == 200 and 'name="pin"' in form.text and form.headers["cache-control"] == "no-store"
    own = _me(client, card, PIN)
    assert own.status_code == 200
    for t in _private_texts(db):
        assert t not in own.text and t not in form.text
    assert head not in own.text  # the head's name is masked there too (a phone is read over shoulders)
    assert own.headers["cache-control"] == "no-store"


def test_the_right_pin_shows_the_balance_and_recent_lines(client: TestClient, db: Database, demo: dict) -> None:
    hid, card, _head = _household(db, FIRST)
    with db.read_txn() as s:
        balance = ledger.balance(s, hid)
        latest = ledger.statement(s, hid, limit=1).lines[0]
    # typed from the card: lower case, spaces instead of dashes' neighbours, full-width dashes are forgiven too
    typed = "  " + card.lower().replace("-", " - ", 1) + " "
    r = _me(client, typed, PIN)
    assert r.status_code == 200, r.text[:500]
    assert re.search(rf'data-testid="balance">.*<strong>{balance}</strong>', r.text)
    assert latest.memo in r.text
    assert "zf_session" not in r.headers.get("set-cookie", "")
    # no session: the next look needs the PIN again
    again = client.get(f"/public/villages/{FIRST}/me")
    assert 'data-testid="balance"' not in again.text and 'name="pin"' in again.text


def test_wrong_card_or_pin_gets_the_same_answer(client: TestClient, db: Database, demo: dict) -> None:
    hid, card, _head = _household(db, FIRST)
    no_pin_hid, no_pin_card, _ = _household(db, FIRST, 1)
    with db.write_txn() as s:
        pins.clear_pin(s, CLERK, no_pin_hid)
    forged = card[:-1] + ("A" if card[-1] != "A" else "B")  # one character of the MAC changed
    other_card = re.sub(r"^ZF1-(\d+)-", lambda m: f"ZF1-{int(m.group(1)) + 1000}-", card)
    answers = {
        "wrong PIN": _me(client, card, "384908"),
        "garbled card": _me(client, "ZF1-nonsense", PIN),
        "forged card": _me(client, forged, PIN),
        "no such card": _me(client, other_card, PIN),
        "household without PIN": _me(client, no_pin_card, PIN),
    }
    for what, r in answers.items():
        assert _refused(r), f"{what}: {r.status_code} {r.text[:300]}"
    bodies = {re.search(r'data-testid="error">([^<]*)<', r.text).group(1) for r in answers.values()}  # type: ignore[union-attr]
    assert bodies == {pins.REFUSED}
    # empty fields are asked for, not counted
    assert _me(client, "", "").status_code == 422
    # audited, without the PIN
    with db.read_txn() as s:
        events = list(s.execute(select(AuditEvent).where(AuditEvent.action.like("notices.portal_pin.%"))).scalars())
    failed = [e for e in events if e.action == "notices.portal_pin.failed"]
    assert len(failed) == len(answers)
    assert {(e.object_type, e.object_id) for e in failed} >= {("household", str(hid)), ("household", str(no_pin_hid))}
    assert all(PIN not in str(e.summary) and "384908" not in str(e.summary) for e in events)
    assert all(card not in str(e.summary) for e in events)
    ok = _me(client, card, PIN)
    assert ok.status_code == 200
    with db.read_txn() as s:
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "notices.portal_pin.ok",
                                                  AuditEvent.object_id == str(hid))).first() is not None


def test_a_household_of_another_village_is_not_read_here(client: TestClient, db: Database, demo: dict) -> None:
    _hid, card, _head = _household(db, "341000101002")  # 桃园村
    assert _refused(_me(client, card, PIN, FIRST))
    assert _me(client, card, PIN, "341000101002").status_code == 200


def test_failures_are_throttled_per_card_and_per_address(client: TestClient, db: Database, demo: dict) -> None:
    hid, card, _head = _household(db, FIRST)
    _other, other_card, _ = _household(db, FIRST, 1)
    for _ in range(5):  # the login's limit per account
        assert _refused(_me(client, card, "111119"))
    locked = _me(client, card, PIN)  # even the right PIN waits now
    assert locked.status_code == 429 and "分钟后再试" in locked.text and 'data-testid="balance"' not in locked.text
    assert _me(client, other_card, PIN).status_code == 200  # another card from the same address is not locked
    # an unknown card code is locked after as many tries: "locked" tells nothing about a code
    for _ in range(5):
        assert _refused(_me(client, "ZF1-999999-1-AAAAAAAAAA", PIN))
    assert _me(client, "ZF1-999999-1-AAAAAAAAAA", PIN).status_code == 429
    # the clerk sets a new PIN: the household may try at once
    with db.write_txn() as s:
        pins.set_pin(s, CLERK, hid, "508172")
    assert _me(client, card, "508172").status_code == 200
    with db.read_txn() as s:
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "notices.portal_pin.throttled")).first()

    # per address: a low limit, asked of the service directly
    limits = pins.Limits(per_card=50, per_address=3, window_minutes=15)
    here = Actor(user_id=None, name="公开查询", ip="10.9.8.7")
    for i in range(3):
        with db.write_txn() as s, pytest.raises(pins.PinRefused):
            pins.check(s, here, KEY, f"ZF1-{9000 + i}-1-AAAAAAAAAA", PIN, village_id=1, limits=limits)
    with db.write_txn() as s, pytest.raises(pins.PinThrottled, match="本机查询失败次数过多"):
        pins.check(s, here, KEY, card, PIN, village_id=1, limits=limits)
    with db.write_txn() as s:  # another address is not affected
        assert pins.check(s, Actor(user_id=None, name="公开查询", ip="10.9.8.8"), KEY, card, "508172",
                          village_id=1, limits=limits).id == hid


def test_sixty_wrong_pins_at_once_are_checked_only_up_to_the_limit(db: Database, demo: dict,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """60 wrong PINs for one card from one address at the same moment, each in its own transaction: exactly the
    limit are checked, the others refused unchecked."""
    hid, card, _head = _household(db, FIRST)
    limits = pins.Limits()
    checked = count_checks(monkeypatch, pins)
    here = Actor(user_id=None, name="公开查询", ip="10.1.2.3")

    def attempt(i: int) -> str:
        with db.write_session() as s:
            try:
                pins.check(s, here, KEY, card, f"{500000 + i}", village_id=1, limits=limits)
                outcome = "ok"
            except pins.PinThrottled:
                outcome = "throttled"
            except pins.PinRefused:
                outcome = "refused"
            s.commit()  # as the portal does: the refusal and its audit event are kept
            return outcome

    outcomes = Counter(at_once(60, attempt))
    assert outcomes == {"refused": limits.per_card, "throttled": 60 - limits.per_card}
    assert len(checked) == limits.per_card
    with db.read_txn() as s:
        actions = Counter(s.execute(select(AuditEvent.action).where(
            AuditEvent.action.like("notices.portal_pin.%"), AuditEvent.object_id == str(hid))).scalars())
    assert actions["notices.portal_pin.failed"] == limits.per_card
    assert actions["notices.portal_pin.throttled"] == 60 - limits.per_card


def test_wrong_pins_lock_the_card_at_that_address_only(client: TestClient, db: Database, demo: dict,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Five wrong PINs from one address lock that address out of the card; the household at home (another address)
    still sees its points, after a short wait served while the request holds no database connection (nor, on
    SQLite, the writer's turn), that the audit log records."""
    hid, card, _head = _household(db, FIRST)
    held_while_waiting: list[tuple[int, int, bool]] = []

    async def sleep(seconds: float) -> None:
        served = client.app.state.db  # type: ignore[attr-defined]
        held_while_waiting.append((int(seconds), served.engine.pool.checkedout(),
                                   bool(served._write_lock and served._write_lock._locked)))
        await asyncio.sleep(seconds)

    monkeypatch.setattr(deps, "asyncio", SimpleNamespace(sleep=sleep))
    for _ in range(5):
        assert _refused(_me(client, card, "111119"))
    locked = _me(client, card, PIN)
    assert locked.status_code == 429 and "锁定" in locked.text and "分钟后再试" in locked.text
    app = client.app
    with TestClient(app, base_url="http://testserver", client=("10.9.8.7", 40000)) as home:  # type: ignore[arg-type]
        started = time.monotonic()
        r = _me(home, card, PIN)
        assert r.status_code == 200 and 'data-testid="balance"' in r.text
        assert time.monotonic() - started >= 1
    assert held_while_waiting == [(1, 0, False)]
    assert _me(client, card, PIN).status_code == 429  # the address that failed stays locked
    with db.read_txn() as s:
        slowed = s.execute(select(AuditEvent).where(AuditEvent.action == "notices.portal_pin.slowed")).scalars().all()
        throttled = s.execute(select(AuditEvent).where(AuditEvent.action == "notices.portal_pin.throttled")
                              ).scalars().all()
    assert [(e.object_id, e.ip) for e in slowed] == [(str(hid), "10.9.8.7")]
    assert slowed[0].summary["after"] == {"seconds": 1, "failures_elsewhere": 5}
    assert PIN not in str(slowed[0].summary) and card not in str(slowed[0].summary)
    assert {e.ip for e in throttled} == {"testclient"}


@pytest.mark.parametrize("pin", ["000000", "888888", "123456", "654321", "890123", "121212", "123123", "112233",
                                 "12345", "1234567", "12345a", "１２３４５６", ""])
def test_pin_rules_refuse_trivial_and_malformed_pins(pin: str) -> None:
    assert pins.pin_problem(pin) is not None


def test_pin_rules_accept_a_fair_pin_and_random_pins_pass(db: Database, demo: dict) -> None:
    assert pins.pin_problem("384907") is None and pins.pin_problem("902731") is None
    assert all(pins.pin_problem(pins.random_pin()) is None for _ in range(200))
    hid, _card, _head = _household(db, FIRST)
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="太简单"):
        pins.set_pin(s, CLERK, hid, "123456")
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="6 位数字"):
        pins.set_pin(s, CLERK, hid, "12ab56")
    with db.write_txn() as s:
        row = pins.set_pin(s, CLERK, hid, "902731")
        assert row.pin_hash != "902731" and "902731" not in row.pin_hash
        pins.clear_pin(s, CLERK, hid)
        assert pins.pin_of(s, hid) is None
    with db.write_txn() as s, pytest.raises(Conflict):
        pins.clear_pin(s, CLERK, hid)


def test_the_clerk_sets_a_pin_on_the_staff_page(client: TestClient, db: Database, demo: dict) -> None:
    hid, card, _head = _household(db, FIRST)
    other, _c, _h = _household(db, "341000101002")
    csrf = login(client, "clerk")
    page = client.get(f"/households/{hid}/portal-pin")
    assert page.status_code == 200 and "已设置查询密码" in page.text
    url = f"/households/{hid}/portal-pin"
    mismatch = client.post(url, data={"csrf_token": csrf, "pin": "508172", "pin2": "508173"})
    assert mismatch.status_code == 422 and "不一致" in mismatch.text
    trivial = client.post(url, data={"csrf_token": csrf, "pin": "111111", "pin2": "111111"})
    assert trivial.status_code == 422 and "太简单" in trivial.text
    done = client.post(url, data={"csrf_token": csrf, "pin": "508172", "pin2": "508172"}, follow_redirects=False)
    assert done.status_code == 303
    shown = client.post(url, data={"csrf_token": csrf, "action": "random"})
    new = re.search(r'data-testid="shown-pin">.*?<strong[^>]*>(\d{6})</strong>', shown.text, re.S)
    assert shown.status_code == 200 and new is not None
    cleared = client.post(url, data={"csrf_token": csrf, "action": "clear"}, follow_redirects=False)
    assert cleared.status_code == 303
    assert client.get(url).text.count("还没有设置查询密码") == 1
    # another village's household: not found; a committee member may not set PINs
    assert client.get(f"/households/{other}/portal-pin").status_code == 404
    login(client, "member")
    assert client.get(url).status_code == 404
    client.cookies.clear()
    with db.read_txn() as s:
        assert pins.pin_of(s, hid) is None
    assert _refused(_me(client, card, "508172"))


def test_the_form_needs_its_csrf_token_and_the_village_must_be_open(client: TestClient, db: Database,
                                                                    demo: dict) -> None:
    _hid, card, _head = _household(db, FIRST)
    client.get(f"/public/villages/{FIRST}/me")
    r = client.post(f"/public/villages/{FIRST}/me", data={"card": card, "pin": PIN})
    assert r.status_code == 403 and 'data-testid="balance"' not in r.text
    assert client.get("/public/villages/341000999999").status_code == 404
    assert client.get("/public/villages/DEMQ2345").status_code == 404
    with db.write_txn() as s:
        vid = s.execute(select(Village.id).where(Village.code == "341000101003")).scalar_one()
        org.set_village_active(s, CLERK, vid, False)
    assert client.get("/public/villages/341000101003").status_code == 409
    assert "清水村" not in client.get("/public").text
