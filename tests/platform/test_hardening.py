"""Protections added after a review of the whole change: each test names the hole it keeps closed."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from app.core.cn_id import make_id_number
from app.core.context import Actor
from app.db import Database
from app.errors import Conflict
from app.households.models import Household, ImportBatch, Member
from app.households.service import households as hh
from app.households.service import imports
from app.households.service.households import MemberInput
from app.households.service.roster import export_rows_csv, export_rows_xlsx, read_sheet
from app.org.models import Village
from tests.support.web import login

CLERK = Actor(user_id=None, name="测试文书", role="village_clerk")


def _village(db: Database, name: str = "红旗村") -> Village:
    with db.read_txn() as s:
        return s.execute(select(Village).where(Village.name == name)).scalar_one()


def test_an_api_token_cannot_mint_or_revoke_tokens(client, demo) -> None:
    """A token acts with one grant; minting another would reach the user's other grants."""
    csrf = login(client, "clerk")
    grant = client.get("/api/v1/me").json()["grants"][0]["id"]
    token = client.post("/api/v1/me/tokens", json={"name": "柜台", "grant_id": grant},
                        headers={"X-CSRF-Token": csrf}).json()["token"]
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    r = client.post("/api/v1/me/tokens", json={"name": "再来一个", "grant_id": grant}, headers=bearer)
    assert r.status_code == 422 and r.json()["error"]["code"] == "token_not_allowed"
    tid = client.get("/api/v1/me/tokens", headers=bearer).json()[0]["id"]
    assert client.delete(f"/api/v1/me/tokens/{tid}", headers=bearer).status_code == 422


def test_admin_reset_revokes_api_tokens(client, demo) -> None:
    csrf = login(client, "clerk")
    grant = client.get("/api/v1/me").json()["grants"][0]["id"]
    token = client.post("/api/v1/me/tokens", json={"name": "柜台", "grant_id": grant},
                        headers={"X-CSRF-Token": csrf}).json()["token"]
    clerk_id = client.get("/api/v1/me").json()["user_id"]
    csrf = login(client, "admin")
    assert client.post(f"/api/v1/users/{clerk_id}/password", json={"password": "Brand-new-2026"},
                       headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.clear()
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("target", ["/\\evil.example", "//evil.example", "https://evil.example/", "/\\/x", "/ok\x07"])
def test_login_never_redirects_off_site(client, demo, target: str) -> None:
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post("/login", data={"login": "clerk", "password": "Clerk-pass-2026", "csrf_token": token,
                                    "next": target}, follow_redirects=False)
    if "\x07" in target:  # a control character in any form field is refused before anything else (issue 17)
        assert r.status_code == 422 and "location" not in r.headers and "控制字符" in r.text
        return
    assert r.status_code == 303 and r.headers["location"] == "/"


def _csv(rows: list[str]) -> bytes:
    return ("户号,村民小组,姓名,与户主关系,身份证号,家庭住址\n" + "\n".join(rows) + "\n").encode("utf-8")


def test_a_head_change_by_file_is_refused(db: Database, demo) -> None:
    v = _village(db)
    ids = [make_id_number("341022", date(1970, 1, 1 + i), 700 + i, i % 2 == 0) for i in range(3)]
    with db.write_txn() as s:
        h = hh.create_household(s, CLERK, village_id=v.id, number="960",  # type: ignore[arg-type]
                                head=MemberInput(name="陈大", relation="户主", id_number=ids[0]))
        hh.add_member(s, CLERK, h.id, MemberInput(name="陈二", relation="儿子", id_number=ids[1]))  # type: ignore[arg-type]
    data = _csv([f"960,,陈大,父亲,{ids[0]},", f"960,,陈二,户主,{ids[1]},"])
    with db.write_txn() as s:
        batch = imports.preview(s, CLERK, village_id=v.id, file_name="r.csv", data=data)  # type: ignore[arg-type]
        codes = [p["code"] for p in batch.problems]
    assert "head_changed" in codes
    with db.read_txn() as s:
        assert s.get(Household, h.id).head_name == "陈大"  # type: ignore[union-attr]


def test_confirmed_batches_keep_no_id_numbers_and_confirm_once(db: Database, demo) -> None:
    v = _village(db)
    idn = make_id_number("341022", date(1981, 2, 3), 901, True)
    with db.write_txn() as s:
        batch = imports.preview(s, CLERK, village_id=v.id, file_name="r.csv", data=_csv([f"970,,林一,户主,{idn},"]))  # type: ignore[arg-type]
        bid = batch.id
    with db.write_txn() as s:
        imports.apply(s, CLERK, village_id=v.id, batch_id=bid)  # type: ignore[arg-type]
    with db.read_txn() as s:
        stored = s.get(ImportBatch, bid)
        assert stored is not None and stored.status == "applied" and stored.rows == []
    with db.write_txn() as s, pytest.raises(Conflict):
        imports.apply(s, CLERK, village_id=v.id, batch_id=bid)  # type: ignore[arg-type]


def test_exports_keep_formulas_inert() -> None:
    rows = [["001", "", "张三", "户主", "男", "", "110105194912310021", "", "否", "否", "=HYPERLINK(\"http://x\")", "@SUM(A1)"]]
    csv_text = export_rows_csv(rows).decode("utf-8-sig")
    assert "'=HYPERLINK" in csv_text and "'@SUM" in csv_text
    sheet = read_sheet("e.xlsx", export_rows_xlsx(rows))  # no formula reaches the workbook (the reader refuses them)
    assert sheet.rows[0][1]["address"].startswith("'=")


def test_dissolving_a_household_moves_its_members_out(db: Database, demo) -> None:
    v = _village(db)
    idn = make_id_number("341022", date(1950, 5, 5), 931, False)
    with db.write_txn() as s:
        h = hh.create_household(s, CLERK, village_id=v.id, number="980",  # type: ignore[arg-type]
                                head=MemberInput(name="吴老太", relation="户主", id_number=idn))
        hh.move_out(s, CLERK, h.id, status="dissolved", reason="户主去世，无其他成员")  # type: ignore[arg-type]
    with db.read_txn() as s:
        assert [m.status for m in s.execute(select(Member).where(Member.household_id == h.id)).scalars()] == ["moved_out"]
