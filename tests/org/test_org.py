"""The administrative tree through the API and the pages, scoped by role."""

from __future__ import annotations

from sqlalchemy import select

from app.db import Database
from app.org.models import Group, Village
from app.org.service import cn_number, default_group_name
from tests.support.web import login


def _village(db: Database, name: str) -> Village:
    with db.read_txn() as s:
        return s.execute(select(Village).where(Village.name == name)).scalar_one()


def test_admin_builds_the_tree(client, demo) -> None:
    csrf = login(client, "admin")
    h = {"X-CSRF-Token": csrf}
    t = client.post("/api/v1/townships", json={"code": "341000103", "name": "白沙镇"}, headers=h)
    assert t.status_code == 201, t.text
    v = client.post("/api/v1/villages", json={"township_id": t.json()["id"], "code": "341000103007", "name": "沙湾村"},
                    headers=h)
    assert v.status_code == 201, v.text
    g = client.post(f"/api/v1/villages/{v.json()['id']}/groups", json={"number": 12}, headers=h)
    assert g.status_code == 201 and g.json()["name"] == "第十二村民小组"
    r = client.patch(f"/api/v1/villages/{v.json()['id']}", json={"name": "沙湾社区"}, headers=h)
    assert r.json()["name"] == "沙湾社区"
    listed = client.get("/api/v1/villages", params={"township_id": t.json()["id"]}).json()
    assert [x["name"] for x in listed["items"]] == ["沙湾社区"] and listed["total"] == 1


def test_reviewer_sees_only_own_township(client, demo) -> None:
    login(client, "reviewer")
    names = {v["name"] for v in client.get("/api/v1/villages", params={"limit": 200}).json()["items"]}
    assert names == {"红旗村", "桃园村", "清水村"}
    assert [t["name"] for t in client.get("/api/v1/townships").json()["items"]] == ["城关镇"]
    page = client.get("/org")
    assert "红旗村" in page.text and "新民村" not in page.text


def test_clerk_manages_groups_of_own_village_only(client, demo, db: Database) -> None:
    csrf = login(client, "clerk")
    own, other = _village(db, "红旗村"), _village(db, "新民村")
    assert [v["name"] for v in client.get("/api/v1/villages").json()["items"]] == ["红旗村"]
    r = client.post(f"/org/villages/{own.id}/groups", data={"number": "9", "name": "", "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
    with db.read_txn() as s:
        assert s.execute(select(Group).where(Group.village_id == own.id, Group.number == 9)).scalar_one()
    r = client.post(f"/org/villages/{other.id}/groups", data={"number": "9", "csrf_token": csrf})
    assert r.status_code == 404
    with db.read_txn() as s:
        assert s.execute(select(Group).where(Group.village_id == other.id, Group.number == 9)).first() is None
    # a clerk may not create villages or townships
    r = client.post("/api/v1/townships", json={"code": "341000109", "name": "某镇"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404


def test_deactivation_keeps_history_and_guards_children(client, demo, db: Database) -> None:
    csrf = login(client, "admin")
    h = {"X-CSRF-Token": csrf}
    r = client.put("/api/v1/townships/2/active", json={"active": False}, headers=h)
    assert r.status_code == 409 and "在用的村" in r.json()["error"]["message"]
    for v in client.get("/api/v1/villages", params={"township_id": 2}).json()["items"]:
        assert client.put(f"/api/v1/villages/{v['id']}/active", json={"active": False}, headers=h).status_code == 200
    assert client.put("/api/v1/townships/2/active", json={"active": False}, headers=h).json()["active"] is False
    # nothing was deleted: the inactive villages are still listed, marked inactive
    items = client.get("/api/v1/villages", params={"township_id": 2}).json()["items"]
    assert len(items) == 3 and not any(v["active"] for v in items)
    # an inactive township takes no new village; an inactive village takes no new group
    r = client.post("/api/v1/villages", json={"township_id": 2, "code": "341000102009", "name": "新村"}, headers=h)
    assert r.status_code == 422 and "已停用" in r.json()["error"]["message"]
    r = client.post(f"/api/v1/villages/{items[0]['id']}/groups", json={"number": 30}, headers=h)
    assert r.status_code == 422


def test_pages_show_tree_and_forms_by_role(client, demo, db: Database) -> None:
    login(client, "clerk")
    own = _village(db, "红旗村")
    page = client.get(f"/org/villages/{own.id}")
    assert page.status_code == 200 and "新建小组" in page.text and "停用村" not in page.text
    login(client, "admin")
    page = client.get(f"/org/villages/{own.id}")
    assert "停用村" in page.text


def test_form_error_keeps_input(client, demo) -> None:
    csrf = login(client, "admin")
    r = client.post("/org/townships", data={"code": "12345", "name": "错码镇", "csrf_token": csrf})
    assert r.status_code == 422
    assert "乡镇代码必须是 9 位数字" in r.text and 'value="错码镇"' in r.text


def test_chinese_numbers_for_group_names() -> None:
    assert [cn_number(n) for n in (1, 10, 11, 20, 21, 100, 105, 110, 999)] == [
        "一", "十", "十一", "二十", "二十一", "一百", "一百零五", "一百一十", "九百九十九"]
    assert default_group_name(3) == "第三村民小组"
