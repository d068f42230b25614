"""The household registry: records, changes that keep history, search, and who may see what."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.core.cn_id import make_id_number
from app.core.context import Actor
from app.core.scope import EVERYTHING, ScopeFilter
from app.db import Database
from app.errors import Conflict, ValidationFailed
from app.households.models import Household, HouseholdMembership, Member
from app.households.service import households as hh
from app.households.service.households import MemberInput
from app.org.models import Group, Village
from tests.support.web import login

ACTOR = Actor(user_id=None, name="测试文书", role="village_clerk")


def _ids(n: int, area: str = "341022") -> list[str]:
    return [make_id_number(area, date(1960 + i % 40, 1 + i % 12, 1 + i % 27), 500 + i, i % 2 == 0) for i in range(n)]


@pytest.fixture
def village(db: Database, demo) -> Village:
    with db.read_txn() as s:
        return s.execute(select(Village).where(Village.name == "红旗村")).scalar_one()


def _family(db: Database, village: Village, number: str, names: list[str], ids: list[str]) -> Household:
    with db.write_txn() as s:
        group = s.execute(select(Group).where(Group.village_id == village.id, Group.number == 2)).scalar_one()
        h = hh.create_household(s, ACTOR, village_id=village.id, number=number, group_id=group.id,  # type: ignore[arg-type]
                                head=MemberInput(name=names[0], relation="户主", id_number=ids[0]))
        rel = ["配偶", "儿子", "儿媳", "孙子"]
        for i, name in enumerate(names[1:]):
            hh.add_member(s, ACTOR, h.id, MemberInput(name=name, relation=rel[i], id_number=ids[i + 1]))  # type: ignore[arg-type]
        return h


def test_member_fields_come_from_the_id_number_and_contradictions_are_refused(db: Database, village: Village) -> None:
    ids = _ids(2)
    h = _family(db, village, "900", ["曾广才", "单秀兰"], ids)
    with db.read_txn() as s:
        head = s.get(Member, h.head_member_id)
        assert head is not None and head.gender == "男" and head.birth_date == date(1960, 1, 1)
        assert (head.name_pinyin, head.name_initials) == ("zengguangcai", "zgc")
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="与身份证号不符"):
        hh.add_member(s, ACTOR, h.id, MemberInput(name="单小明", relation="儿子", gender="女",  # type: ignore[arg-type]
                                                  id_number=_ids(3)[2]))


def test_an_id_number_is_unique_across_the_county(db: Database, village: Village) -> None:
    ids = _ids(2)
    _family(db, village, "901", ["王大", "李二"], ids)
    with db.read_txn() as s:
        other = s.execute(select(Village).where(Village.name == "新民村")).scalar_one()
    with db.write_txn() as s, pytest.raises(Conflict, match="已登记在其他村"):  # no other village's details
        hh.create_household(s, ACTOR, village_id=other.id, number="901",  # type: ignore[arg-type]
                            head=MemberInput(name="王大", relation="户主", id_number=ids[0].lower()))


def test_split_moves_members_to_a_new_household_and_keeps_history(db: Database, village: Village) -> None:
    h = _family(db, village, "910", ["张福", "李桂兰", "张建国", "王秀英", "张小宝"], _ids(5))
    with db.read_txn() as s:
        members = {m.name: m for m in hh.members_of(s, h.id)}  # type: ignore[arg-type]
    moving = [members["张建国"].id, members["王秀英"].id, members["张小宝"].id]
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="原户主不能分出"):
        hh.split(s, ACTOR, h.id, member_ids=[h.head_member_id, *moving], new_head_id=moving[0])  # type: ignore[arg-type,list-item]
    with db.write_txn() as s:
        new = hh.split(s, ACTOR, h.id, member_ids=moving, new_head_id=moving[0], on=date(2026, 3, 1))  # type: ignore[arg-type]
        new_id, new_number = new.id, new.number
    assert new_number == "911"  # one more than the largest number in the village
    with db.read_txn() as s:
        moved = {m.name: m for m in hh.members_of(s, new_id)}  # type: ignore[arg-type]
        assert set(moved) == {"张建国", "王秀英", "张小宝"} and moved["张建国"].relation == "户主"
        assert s.get(Household, new_id).head_name == "张建国"  # type: ignore[union-attr]
        assert {m.name for m in hh.members_of(s, h.id)} == {"张福", "李桂兰"}  # type: ignore[arg-type]
        periods = s.execute(select(HouseholdMembership).where(HouseholdMembership.member_id == moving[0])
                            .order_by(HouseholdMembership.id)).scalars().all()
        assert [(p.household_id, p.ended_on) for p in periods] == [(h.id, date(2026, 3, 1)), (new_id, None)]
        kinds_old = [e.kind for e in hh.history(s, h.id)]  # type: ignore[arg-type]
        assert "split" in kinds_old and "created" in [e.kind for e in hh.history(s, new_id)]  # type: ignore[arg-type]
        assert s.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "households.split")
                         ).scalar_one() == 1


def test_merge_head_change_group_move_and_move_out(db: Database, village: Village) -> None:
    ids = _ids(5)
    a = _family(db, village, "920", ["刘一", "陈二"], ids[:2])
    b = _family(db, village, "921", ["刘三", "周四", "刘五"], ids[2:])
    with db.write_txn() as s:
        hh.merge(s, ACTOR, b.id, a.id, reason="老人随子女合户")  # type: ignore[arg-type]
    with db.read_txn() as s:
        src = s.get(Household, b.id)
        assert src is not None and src.status == "dissolved" and "并入户号 920" in (src.status_reason or "")
        assert {m.name for m in hh.members_of(s, a.id, include_former=False)} == {"刘一", "陈二", "刘三", "周四", "刘五"}  # type: ignore[arg-type]
        new_head = next(m for m in hh.members_of(s, a.id) if m.name == "刘三")  # type: ignore[arg-type]
        g3 = s.execute(select(Group).where(Group.village_id == village.id, Group.number == 3)).scalar_one()
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="户主"):
        hh.set_member_status(s, ACTOR, a.head_member_id, "deceased")  # type: ignore[arg-type]
    with db.write_txn() as s:
        hh.change_head(s, ACTOR, a.id, new_head.id, old_head_relation="父亲")  # type: ignore[arg-type]
        hh.move_group(s, ACTOR, a.id, g3.id)  # type: ignore[arg-type]
        hh.move_out(s, ACTOR, a.id, status="moved_out", reason="全家迁往县城")  # type: ignore[arg-type]
    with db.read_txn() as s:
        h = s.get(Household, a.id)
        assert h is not None and (h.head_name, h.group_id, h.status) == ("刘三", g3.id, "moved_out")
        assert all(m.status == "moved_out" for m in hh.members_of(s, a.id))  # type: ignore[arg-type]
        kinds = [e.kind for e in hh.history(s, a.id)]  # type: ignore[arg-type]
        for kind in ("merged_from", "head_changed", "moved_group", "moved_out"):
            assert kind in kinds
        # nothing was deleted: the dissolved household and all five members are still there
        assert s.execute(select(func.count()).select_from(Member).where(Member.household_id == a.id)).scalar_one() == 5


def test_search_by_name_pinyin_initials_number_and_id(db: Database, village: Village) -> None:
    ids = _ids(4)
    _family(db, village, "930", ["曾国强", "单丽"], ids[:2])
    _family(db, village, "1002", ["张三", "查美玲"], ids[2:])
    flt = ScopeFilter(village_ids=frozenset({village.id}))  # type: ignore[arg-type]

    def numbers(**kw: object) -> list[str]:
        with db.read_txn() as s:
            return [h.number for h in hh.search(s, flt, village_id=village.id, **kw).rows]  # type: ignore[arg-type]

    assert numbers(q="zs") == ["1002"] and numbers(q="zhangsan") == ["1002"] and numbers(q="ZhangS") == ["1002"]
    assert numbers(q="zgq") == ["930"] and numbers(q="zeng") == ["930"]  # 曾 read as zeng, not ceng
    assert numbers(q="zha") == ["1002"]  # 查 as a surname is zha
    assert numbers(q="单") == ["930"] and numbers(q="曾国") == ["930"]
    assert numbers(q="1002") == ["1002"]
    assert numbers(q=ids[3]) == ["1002"] and numbers(q=ids[3].lower()) == ["1002"]
    assert numbers(q="nobody") == []
    with db.read_txn() as s:
        page = hh.search(s, EVERYTHING, village_id=village.id, sort="pinyin", limit=100)  # type: ignore[arg-type]
        in_group2 = [h.head_pinyin for h in page.rows if h.number in ("930", "1002")]
        assert in_group2 == sorted(in_group2)  # zengguoqiang < zhangsan within the same group
        by_number = [h.number_sort for h in hh.search(s, EVERYTHING, village_id=village.id, limit=100).rows]  # type: ignore[arg-type]
        assert hh.number_sort_key("930") < hh.number_sort_key("1002") and len(by_number) == 6


def test_roles_see_their_scope_and_masked_ids(client, db: Database, village: Village) -> None:
    ids = _ids(2)
    h = _family(db, village, "940", ["赵大山", "钱小红"], ids)
    with db.read_txn() as s:
        other = s.execute(select(Household).join(Village, Village.id == Household.village_id)
                          .where(Village.name == "新民村")).scalars().first()
    # village clerk: own village, full record
    login(client, "clerk")
    r = client.get(f"/api/v1/households/{h.id}")
    assert r.status_code == 200 and r.json()["members"][0]["id_number"] == ids[0]
    assert client.get(f"/api/v1/households/{other.id}").status_code == 404  # type: ignore[union-attr]
    # township reviewer: read-only, masked
    login(client, "reviewer")
    body = client.get(f"/api/v1/households/{h.id}").json()
    assert body["members"][0]["id_number"] == "*" * 16 + ids[0][-2:]
    assert body["members"][0]["birth_date"] is None and body["members"][0]["birth_year"] == int(ids[0][6:10])
    assert ids[0] not in client.get(f"/households/{h.id}").text
    assert client.get(f"/api/v1/households/{other.id}").status_code == 404  # type: ignore[union-attr]
    # committee member: masked
    login(client, "member")
    assert ids[0] not in client.get(f"/households/{h.id}").text
    # household user: its own household only, in the limited view
    login(client, "household")
    me = client.get("/api/v1/me").json()["grants"][0]["household_id"]
    assert client.get(f"/api/v1/households/{me}").status_code == 200
    assert client.get(f"/api/v1/households/{h.id}").status_code == 404
    listed = client.get("/api/v1/households").json()
    assert [x["id"] for x in listed["items"]] == [me]


def test_clerk_edits_through_pages_and_id_never_reaches_the_log(client, db: Database, village: Village,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    csrf = login(client, "clerk")
    ids = _ids(2)
    r = client.post(f"/villages/{village.id}/households",
                    data={"csrf_token": csrf, "number": "950", "name": "孙志刚", "id_number": ids[0], "member_phone": ""},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    hid = int(r.headers["location"].rsplit("/", 1)[1])
    r = client.post(f"/households/{hid}/members", data={"csrf_token": csrf, "name": "吴芳", "relation": "配偶",
                                                        "id_number": ids[0]})
    assert r.status_code == 409 and "已登记在" in r.text and 'value="吴芳"' in r.text
    r = client.post(f"/households/{hid}/members", data={"csrf_token": csrf, "name": "吴芳", "relation": "配偶",
                                                        "id_number": ids[1]}, follow_redirects=True)
    assert "已添加成员 吴芳" in r.text
    client.get("/households", params={"q": ids[1]})
    logs = capsys.readouterr()
    assert ids[1] not in logs.out + logs.err and ids[0] not in logs.out + logs.err


def test_a_broad_name_search_walks_the_list_and_reports_more_than(db: Database, village: Village,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Past BROAD matching members the search stops counting and pages through households in list order."""
    monkeypatch.setattr(hh, "BROAD", 5)
    ids = _ids(12, area="341023")
    with db.write_txn() as s:
        for i in range(12):
            hh.create_household(s, ACTOR, village_id=village.id, number=f"7{i:02d}",  # type: ignore[arg-type]
                                head=MemberInput(name=f"张{'一二三四五六七八九十甲乙'[i]}", relation="户主", id_number=ids[i]))
    flt = ScopeFilter(village_ids=frozenset({village.id}))  # type: ignore[arg-type]
    with db.read_txn() as s:
        broad = hh.search(s, flt, q="z", village_id=village.id, limit=4)
        later = hh.search(s, flt, q="z", village_id=village.id, offset=4, limit=100)
        narrow = hh.search(s, flt, q="zhangsan", village_id=village.id, limit=50)
    assert broad.total_exact is False and broad.total == 5 and len(broad.rows) == 4
    walked = [h.number_sort for h in broad.rows + later.rows]
    assert walked == sorted(walked) and len(set(walked)) == len(walked) >= 12
    assert narrow.total_exact is True and [h.head_name for h in narrow.rows] == ["张三"]
