"""Grants are never given by accident: the role is named (no default), the scope fits the role (anything else is
refused with what to choose), and the page says in one sentence what will be granted before granting it. The same
rules hold in the API."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.models import RoleGrant
from app.auth.service import accounts as auth
from app.core.context import Actor
from app.db import Database
from app.errors import ValidationFailed
from app.org.models import Store, Township, Village
from tests.support.factories import make_user
from tests.support.web import csrf_from, login

ADMIN = Actor(user_id=None, name="县管理员", role="county_admin")


def _grants(db: Database, user_id: int) -> list[tuple[str, int | None, int | None, int | None, int | None]]:
    with db.read_txn() as s:
        rows = s.execute(select(RoleGrant).where(RoleGrant.user_id == user_id, RoleGrant.revoked_at.is_(None))).scalars()
        return [(g.role, g.township_id, g.village_id, g.store_id, g.household_id) for g in rows]


def _places(db: Database) -> dict[str, int]:
    with db.read_txn() as s:
        store = s.execute(select(Store).order_by(Store.id)).scalars().first()
        assert store is not None
        return {"store": store.id, "village": store.village_id,  # type: ignore[dict-item]
                "township": s.get(Village, store.village_id).township_id}  # type: ignore[union-attr]


@pytest.mark.parametrize(("role", "scope", "message"), [
    ("", {"store_id": "store"}, "请先选择要授予的角色"),  # what went wrong: only a store chosen, no role
    ("county_admin", {"store_id": "store"}, "县管理员管理全县，不选择范围：请清空超市；选超市的请授予“超市管理员”"),
    ("store_clerk", {"store_id": "store", "village_id": "village"}, "超市管理员只选择超市，不选村"),
    ("village_clerk", {"township_id": "township"}, "村文书只选择村，不选乡镇"),
    ("township_reviewer", {}, "乡镇审核员必须指定所属乡镇"),
    ("committee_member", {"village_id": 987_654}, "所选村不存在"),
])
def test_a_grant_that_does_not_fit_is_refused_and_grants_nothing(db: Database, demo: dict, role: str,
                                                                 scope: dict[str, object], message: str) -> None:
    places = _places(db)
    with db.write_txn() as s:
        u = make_user(s, "newcomer", name="张三")
    given = {k: places[v] if isinstance(v, str) else v for k, v in scope.items()}
    with pytest.raises(ValidationFailed, match=re.escape(message)), db.write_txn() as s:
        auth.grant_role(s, ADMIN, u.id, role, **given)  # type: ignore[arg-type]
    assert _grants(db, u.id) == []  # type: ignore[arg-type]


def test_the_plan_says_in_one_sentence_what_will_be_granted(db: Database, demo: dict) -> None:
    places = _places(db)
    with db.write_txn() as s:
        u = make_user(s, "zhangsan", name="张三")
        store = s.get(Store, places["store"])
        plan = auth.plan_grant(s, u.id, "store_clerk", store_id=places["store"])  # type: ignore[arg-type]
        assert plan.sentence == f"将授予 张三（zhangsan）“{store.name} 超市管理员”"  # type: ignore[union-attr]
        town = s.get(Township, places["township"])
        assert auth.plan_grant(s, u.id, "township_reviewer", township_id=places["township"]).what == \
            f"{town.name} 乡镇审核员"  # type: ignore[union-attr, arg-type]
        assert auth.plan_grant(s, u.id, "county_admin").what.endswith(" 县管理员")  # type: ignore[arg-type]
    assert _grants(db, u.id) == []  # type: ignore[arg-type]  # a plan grants nothing


def test_the_api_keeps_the_same_rules(client: TestClient, db: Database, demo: dict) -> None:
    places = _places(db)
    with db.write_txn() as s:
        u = make_user(s, "lisi", name="李四")
    headers = {"X-CSRF-Token": login(client, "admin")}
    for body, code in [({"store_id": places["store"]}, "invalid"),  # no role: FastAPI's own 422
                       ({"role": "", "store_id": places["store"]}, "role_required"),
                       ({"role": "county_admin", "store_id": places["store"]}, "scope_mismatch"),
                       ({"role": "store_clerk", "store_id": places["store"], "township_id": places["township"]},
                        "scope_mismatch")]:
        r = client.post(f"/api/v1/users/{u.id}/grants", json=body, headers=headers)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (body, r.text)
    assert _grants(db, u.id) == []  # type: ignore[arg-type]
    r = client.post(f"/api/v1/users/{u.id}/grants", json={"role": "store_clerk", "store_id": places["store"]},
                    headers=headers)
    assert r.status_code == 201, r.text
    assert _grants(db, u.id) == [("store_clerk", None, None, places["store"], None)]  # type: ignore[arg-type]


def test_the_page_confirms_before_granting(client: TestClient, db: Database, demo: dict) -> None:
    places = _places(db)
    with db.write_txn() as s:
        u = make_user(s, "wangwu", name="王五")
        store_name = s.get(Store, places["store"]).name  # type: ignore[union-attr]
    login(client, "admin")
    page = client.get(f"/admin/users/{u.id}")
    assert '<option value="" selected>请选择角色</option>' in page.text  # no role is chosen for the admin
    csrf = csrf_from(page.text)
    only_store = client.post(f"/admin/users/{u.id}/grants", data={"csrf_token": csrf, "role": "",
                                                                  "store_id": str(places["store"])})
    assert only_store.status_code == 422 and "请先选择要授予的角色" in only_store.text
    first = client.post(f"/admin/users/{u.id}/grants", data={"csrf_token": csrf, "role": "store_clerk",
                                                             "store_id": str(places["store"])})
    assert first.status_code == 200 and f"将授予 王五（wangwu）“{store_name} 超市管理员”" in first.text
    assert _grants(db, u.id) == []  # type: ignore[arg-type]  # shown, not granted
    done = client.post(f"/admin/users/{u.id}/grants", data={"csrf_token": csrf, "role": "store_clerk",
                                                            "store_id": str(places["store"]), "confirm": "1"},
                       follow_redirects=True)
    assert done.status_code == 200 and "已授予" in done.text
    assert _grants(db, u.id) == [("store_clerk", None, None, places["store"], None)]  # type: ignore[arg-type]
