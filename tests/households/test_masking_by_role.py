"""Masking by role (docs/security.md): everything a role can see of one member, put together, does not give the
member's ID number back, except to the roster's owners (county administrator, village clerk), who see it in full.

The count is an attacker's: the region code and the sex are given away (the worst case), the birth date is taken
from whatever date of the member's birth year appears anywhere in what was collected (else the whole year), and
every masked form that fits the true number must be fitted by a candidate, with a valid check digit."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from app.audit.models import AuditEvent
from app.core.cn_id import check_digit
from app.core.context import Actor
from app.db import Database
from app.households.models import Household, Member
from app.households.service import households as hh
from app.households.service.households import MemberInput
from app.org.models import Store, StoreVillage
from tests.support.web import csrf_from, login

ROLES = ["admin", "clerk", "reviewer", "member", "storekeeper", "household", None]  # None: nobody signed in
OWNERS = {"admin", "clerk"}
TOKEN = re.compile(r"(?<![\dX*])[\dX*]{18}(?![\dX*])")


def _dates_of_year(text: str, year: int) -> set[date]:
    found: set[date] = set()
    for y, m, d in re.findall(rf"({year})[-/年.]?(\d{{1,2}})[-/月.]?(\d{{1,2}})", text):
        try:
            found.add(date(int(y), int(m), int(d)))
        except ValueError:
            pass
    return found


def completions(true_id: str, male: bool, seen: str) -> int:
    """How many valid 18-digit numbers agree with everything in `seen` (region and sex given away)."""
    if true_id in seen:
        return 1
    fits_true = [t for t in set(TOKEN.findall(seen)) if all(c in ("*", true_id[i]) for i, c in enumerate(t))]
    year = int(true_id[6:10])
    days = _dates_of_year(seen, year)
    if not days:
        d, days = date(year, 1, 1), set()
        while d.year == year:
            days.add(d)
            d += timedelta(days=1)
    count = 0
    for d in days:
        stem = true_id[:6] + d.strftime("%Y%m%d")
        if not all(all(c in ("*", stem[i]) for i, c in enumerate(t[:14])) for t in fits_true):
            continue
        for seq in range(1000):
            if (seq % 2 == 1) != male:
                continue
            first17 = f"{stem}{seq:03d}"
            candidate = first17 + check_digit(first17)
            if all(all(c in ("*", candidate[i]) for i, c in enumerate(t)) for t in fits_true):
                count += 1
    return count


def _xlsx_text(data: bytes) -> str:
    wb = load_workbook(io.BytesIO(data), read_only=True)
    return "\n".join(" ".join("" if v is None else str(v) for v in row) for ws in wb.worksheets
                     for row in ws.iter_rows(values_only=True))


def _target(client, db: Database) -> tuple[Household, Member]:  # type: ignore[no-untyped-def]
    """The demo household account's household and its head, after a clerk's edit (so the audit log has it)."""
    login(client, "household")
    hid = client.get("/api/v1/me").json()["grants"][0]["household_id"]
    with db.write_txn() as s:
        h = s.get(Household, hid)
        assert h is not None and h.head_member_id is not None
        m = s.get(Member, h.head_member_id)
        assert m is not None and m.id_number and len(m.id_number) == 18
        hh.update_member(s, Actor(user_id=None, name="测试文书", role="village_clerk"), m.id, MemberInput(
            name=m.name, relation=m.relation, gender=m.gender, birth_date=m.birth_date, id_number=m.id_number,
            phone="13900001111" if m.phone != "13900001111" else "13900002222", party_member=m.party_member,
            living_away=m.living_away))
        s.expunge_all()
    return h, m


def _everything_seen(client, h: Household) -> str:  # type: ignore[no-untyped-def]
    """All a signed-in client can get of the household: pages, API, roster exports, the audit log."""
    parts: list[str] = []
    urls = [f"/households/{h.id}", f"/households?village_id={h.village_id}", f"/households/{h.id}/points",
            f"/households/{h.id}/store", f"/households/{h.id}/evaluation", f"/households/{h.id}/lists",
            f"/api/v1/households/{h.id}", f"/api/v1/households?village_id={h.village_id}&limit=200",
            f"/api/v1/households/{h.id}/points/statement", "/admin/audit", "/api/v1/audit/events?limit=200",
            f"/villages/{h.village_id}/roster/export.csv"]
    for url in urls:
        r = client.get(url)
        if r.status_code == 200:
            parts.append(r.text)
    for url in (f"/villages/{h.village_id}/roster/export.xlsx", f"/api/v1/villages/{h.village_id}/roster/export"):
        r = client.get(url)
        if r.status_code == 200 and "spreadsheetml" in r.headers.get("content-type", ""):
            parts.append(_xlsx_text(r.content))
    return "\n".join(parts)


@pytest.mark.parametrize("role", ROLES)
def test_what_a_role_sees_of_a_member_cannot_be_completed(client, db: Database, demo, role: str | None,  # type: ignore[no-untyped-def]
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    h, m = _target(client, db)
    assert m.id_number is not None and m.birth_date is not None
    client.cookies.clear()
    if role is not None:
        login(client, role)
    capsys.readouterr()
    seen = _everything_seen(client, h)
    logs = capsys.readouterr()
    assert m.id_number not in logs.out + logs.err  # no log line carries it, whoever asks
    n = completions(m.id_number, m.gender == "男", seen)
    if role in OWNERS:
        assert n == 1 and m.birth_date.isoformat() in seen  # the roster's owners: the full record
    else:
        assert n > 1000, f"{role} sees enough to narrow {m.id_number} down to {n} numbers"


def test_the_audit_log_stores_members_masked_and_says_what_changed(client, db: Database, demo) -> None:  # type: ignore[no-untyped-def]
    _h, m = _target(client, db)
    assert m.id_number is not None and m.birth_date is not None
    with db.read_txn() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "households.member.update",
                                                AuditEvent.object_id == str(m.id))).scalars().one()
        payload = repr(ev.summary)
    assert ev.summary["after"]["changed_fields"] == ["phone"]
    assert m.id_number[6:14] not in payload and m.birth_date.isoformat() not in payload
    assert completions(m.id_number, m.gender == "男", payload) > 1000


@pytest.mark.parametrize("role", ["reviewer", "member", "storekeeper"])
def test_a_guessed_id_number_finds_nothing_for_who_sees_it_masked(client, db: Database, demo, role: str) -> None:  # type: ignore[no-untyped-def]
    """The search would otherwise confirm a guess, one request per candidate."""
    h, m = _target(client, db)
    login(client, "clerk")
    found = client.get("/api/v1/households", params={"q": m.id_number}).json()["items"]
    assert [x["id"] for x in found] == [h.id]
    login(client, role)
    assert client.get("/api/v1/households", params={"q": m.id_number}).json()["items"] == []
    assert f"/households/{h.id}\"" not in client.get("/households", params={"q": m.id_number}).text


def test_a_guessed_id_number_finds_nothing_at_the_store_counter(client, db: Database, demo) -> None:  # type: ignore[no-untyped-def]
    """The counter's look-up (a household number, a name or a card) would confirm a typed ID number the same way."""
    login(client, "storekeeper")
    store_id = next(g["store_id"] for g in client.get("/api/v1/me").json()["grants"] if g.get("store_id"))
    with db.read_txn() as s:
        served = [*s.execute(select(StoreVillage.village_id).where(StoreVillage.store_id == store_id)).scalars(),
                  s.get(Store, store_id).village_id]
        m = s.execute(select(Member).join(Household, Member.id == Household.head_member_id)
                         .where(Household.village_id.in_(served), Household.status == "active",
                                Member.id_number.is_not(None)).order_by(Household.id).limit(1)).scalar_one()
    token = csrf_from(client.get(f"/stores/{store_id}/counter").text)
    by_name = client.post(f"/stores/{store_id}/counter/scan", data={"csrf_token": token, "code": m.name})
    assert by_name.status_code == 200 and m.name in by_name.text  # the household is there to be found
    by_id = client.post(f"/stores/{store_id}/counter/scan", data={"csrf_token": token, "code": m.id_number})
    assert by_id.status_code == 422 and "没有找到" in by_id.text
    assert m.name not in by_id.text.replace(m.id_number, "")
