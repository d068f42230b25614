"""A month in the browser's terms (HTTP, real forms): the clerk opens a round and fills the grid, the township
reviews, the household sees its explained result and objects, the committee decides, the clerk finalises."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.db import Database
from app.evaluation.models import EvalRound, Rating
from app.evaluation.service import rounds
from app.ledger import service as ledger
from tests.support.eval_helpers import CLERK, THEMES, EvalVillage, consensus_round, eval_village, staffed_village
from tests.support.web import login

PW = "Passw0rd-test"
MONTH = 202609


def _setup(db: Database) -> tuple[EvalVillage, int]:
    return staffed_village(db)


def _round_id(db: Database) -> int:
    with db.read_txn() as s:
        return int(s.execute(select(EvalRound.id)).scalar_one())


def test_a_month_through_the_pages(client: TestClient, db: Database) -> None:
    ev, mine = _setup(db)
    csrf = login(client, "clerk1", PW)
    r = client.post(f"/villages/{ev.vid}/rounds", data={"csrf_token": csrf, "month": str(MONTH), "mode": "consensus",
                                                         "objection_days": "5"}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    rid = _round_id(db)
    r = client.post(f"/villages/{ev.vid}/rounds", data={"csrf_token": csrf, "month": str(MONTH)})
    assert r.status_code == 409 and "每村每月只能有一轮" in r.text
    r = client.post(f"/rounds/{rid}/present", data={"csrf_token": csrf, "member": [str(u.id) for u in ev.members]})
    assert r.status_code == 200 and "已记录出席委员 4 人" in r.text
    grid = client.get(f"/rounds/{rid}/grid")
    assert grid.status_code == 200 and grid.text.count('class="cell"') == 6 * len(THEMES)
    # autosave: one bad cell saves nothing and says why, in Chinese
    bad = client.post(f"/rounds/{rid}/grid", json={"cells": [{"h": mine, "t": "ENV", "g": "优"},
                                                             {"h": mine, "t": "LAW", "g": "甲"}]},
                      headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert bad.status_code == 422 and "等级“甲”不在评分标准内" in bad.json()["error"]["message"]
    ok = client.post(f"/rounds/{rid}/grid", json={"cells": [{"h": mine, "t": "ENV", "g": "差"}]},
                     headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert ok.status_code == 200 and ok.json()["saved"] == 1 and ok.json()["missing"] == 6 * len(THEMES) - 1
    r = client.post(f"/rounds/{rid}/grid/fill", data={"csrf_token": csrf, "grade": "良"})
    assert "已将 35 个空格填为“良”" in r.text
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(Rating)).scalar_one() == 36
    r = client.post(f"/rounds/{rid}/state", data={"csrf_token": csrf, "action": "publicise"})
    assert r.status_code == 409 and "当前为“草稿”" in r.text
    r = client.post(f"/rounds/{rid}/state", data={"csrf_token": csrf, "action": "submit"})
    assert r.status_code == 200 and "待乡镇审核" in r.text
    # the household sees nothing before the publicity
    csrf_h = login(client, "home5", PW)
    assert "还没有公示的评比结果" in client.get(f"/households/{mine}/evaluation").text
    assert client.get(f"/rounds/{rid}").status_code == 404
    # the township
    csrf_r = login(client, "reviewer1", PW)
    page = client.get(f"/rounds/{rid}/review")
    assert page.status_code == 200 and 'data-testid="signals"' in page.text
    r = client.post(f"/rounds/{rid}/review", data={"csrf_token": csrf_r, "decision": "return", "comment": ""})
    assert r.status_code == 422 and "写明需要修改" in r.text
    r = client.post(f"/rounds/{rid}/review", data={"csrf_token": csrf_r, "decision": "approve", "comment": "同意公示"})
    assert r.status_code == 200 and "已审核通过" in r.text
    csrf = login(client, "clerk1", PW)
    client.post(f"/rounds/{rid}/state", data={"csrf_token": csrf, "action": "publicise"})
    # the household reads its explained result and objects
    csrf_h = login(client, "home5", PW)
    page = client.get(f"/households/{mine}/evaluation")
    assert "环保卫生：" in page.text and "差" in page.text and 'data-testid="objection-form"' in page.text
    r = client.post(f"/households/{mine}/objections", data={"csrf_token": csrf_h, "round_id": str(rid),
                                                            "target": "rating", "theme": "ENV",
                                                            "text": "院子上周已清理干净"})
    assert r.status_code == 200 and "异议已提交" in r.text
    # the committee decides (recorded by the clerk); finalising waits for the end of the publicity
    csrf = login(client, "clerk1", PW)
    page = client.get(f"/rounds/{rid}")
    assert "院子上周已清理干净" in page.text
    oid = int(page.text.split('action="/objections/')[1].split("/")[0])
    r = client.post(f"/objections/{oid}/resolve", data={"csrf_token": csrf, "decision": "uphold", "reason": "现场核实",
                                                        "corrected_grade": "良"})
    assert r.status_code == 200 and "已记录处理结果" in r.text
    r = client.post(f"/rounds/{rid}/state", data={"csrf_token": csrf, "action": "finalise"})
    assert r.status_code == 409 and "之后才能入账" in r.text
    with db.write_txn() as s:
        s.execute(update(EvalRound).where(EvalRound.id == rid).values(objections_close_on=date(2026, 10, 1)))
    r = client.post(f"/rounds/{rid}/state", data={"csrf_token": csrf, "action": "finalise"})
    assert r.status_code == 200 and "已入账：6 户积分" in r.text
    r = client.post(f"/rounds/{rid}/state", data={"csrf_token": csrf, "action": "finalise"})
    assert r.status_code == 409
    with db.read_txn() as s:
        assert ledger.balance(s, mine) == 36 and ledger.verify(s) == []
    assert "<strong>36</strong>" in client.get(f"/rounds/{rid}/results").text
    login(client, "home5", PW)
    page = client.get(f"/households/{mine}/evaluation?round={rid}")
    assert "异议成立" in page.text and "+36" in page.text


def test_pages_render_for_each_role(client: TestClient, db: Database) -> None:
    ev, mine = _setup(db)
    with db.write_txn() as s:
        from tests.support.eval_helpers import agree_all, consensus_round
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households)
    login(client, "clerk1", PW)
    for url in ("/evaluation", f"/villages/{ev.vid}/rounds", f"/villages/{ev.vid}/committee",
                f"/villages/{ev.vid}/awards", f"/rounds/{rid}", f"/rounds/{rid}/grid", f"/rounds/{rid}/results",
                f"/rounds/{rid}/review", f"/rounds/{rid}/simulate", f"/rounds/{rid}/households/{mine}",
                f"/households/{mine}/evaluation"):
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[:300])
    sheet = client.get(f"/rounds/{rid}/sheet.xlsx")
    assert sheet.status_code == 200 and sheet.content[:2] == b"PK"
    login(client, ev.members[1].login, PW)
    assert client.get(f"/rounds/{rid}").status_code == 200
    with db.read_txn() as s:
        assert rounds.get_round(s, rid).status == "draft"


def test_in_a_consensus_round_only_the_clerk_writes_the_grid(client: TestClient, db: Database) -> None:
    ev, _mine = _setup(db)
    with db.write_txn() as s:
        from tests.support.eval_helpers import consensus_round
        rid = consensus_round(s, ev, MONTH)
    csrf = login(client, ev.members[0].login, PW)
    for cell in ({"h": ev.households[0], "t": "ENV", "g": "优"}, {"h": ev.households[3], "t": "ENV", "g": "优"}):
        r = client.post(f"/rounds/{rid}/grid", json={"cells": [cell]},
                        headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
        assert r.status_code == 422 and "由村文书录入" in r.json()["error"]["message"]
    assert 'disabled' in client.get(f"/rounds/{rid}/grid").text  # read-only for the member
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(Rating)).scalar_one() == 0


def test_bad_grid_and_form_values_get_clear_errors(client: TestClient, db: Database) -> None:
    ev, _mine = _setup(db)
    with db.write_txn() as s:
        from tests.support.eval_helpers import consensus_round
        rid = consensus_round(s, ev, MONTH)
    csrf = login(client, "clerk1", PW)
    headers = {"X-CSRF-Token": csrf, "Accept": "application/json", "Content-Type": "application/json"}
    for body in ('{"cells": [{"h": 12.7, "t": "ENV", "g": "优"}]}', '{"cells": [{"h": true, "t": "ENV", "g": "优"}]}',
                 '{"cells":' + "[" * 200_000, '{"cells": 5}', "not json"):
        r = client.post(f"/rounds/{rid}/grid", content=body.encode(), headers=headers)
        assert r.status_code == 422, (body[:40], r.status_code)
    r = client.post(f"/rounds/{rid}/grid/fill", data={"csrf_token": csrf, "grade": "良", "group": "²"})
    assert r.status_code == 422 and "不是有效的编号" in r.text
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(Rating)).scalar_one() == 0


def test_in_a_panel_round_each_member_fills_their_own_grid(client: TestClient, db: Database) -> None:
    ev, _mine = _setup(db)
    with db.write_txn() as s:
        rid = rounds.open_round(s, CLERK, village_id=ev.vid, month=MONTH, mode="panel").id
    csrf = login(client, ev.members[1].login, PW)
    page = client.get(f"/rounds/{rid}/grid")
    own_row = page.text.split(f'data-h="{ev.households[1]}"')[1].split("</tr>")[0]
    assert own_row.count("disabled") == len(THEMES) and "回避" in own_row
    headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
    r = client.post(f"/rounds/{rid}/grid", json={"cells": [{"h": ev.households[1], "t": "ENV", "g": "优"}]},
                    headers=headers)
    assert r.status_code == 422 and "回避" in r.json()["error"]["message"]
    r = client.post(f"/rounds/{rid}/grid", json={"cells": [{"h": ev.households[3], "t": "ENV", "g": "优"}]},
                    headers=headers)
    assert r.status_code == 200 and r.json()["missing"] == 5 * len(THEMES) - 1
    with db.read_txn() as s:
        assert rounds.grid(s, rounds.get_round(s, rid), rater_id=ev.members[1].id) == {(ev.households[3], "ENV"): "优"}  # type: ignore[arg-type]
    login(client, "clerk1", PW)
    assert "本轮由委员各自评分" in client.get(f"/rounds/{rid}/grid").text


def test_a_household_learns_nothing_from_round_ids(client: TestClient, db: Database) -> None:
    """An objection to another village's round and to no round at all get the same answer."""
    _ev, mine = _setup(db)
    with db.write_txn() as s:
        other = eval_village(s)
        theirs = consensus_round(s, other, MONTH)
    csrf_h = login(client, "home5", PW)

    def object_to(rid: int) -> tuple[int, str]:
        r = client.post(f"/households/{mine}/objections", data={"csrf_token": csrf_h, "round_id": str(rid),
                                                                "target": "rating", "theme": "ENV", "text": "有异议"})
        return r.status_code, r.text.split('data-testid="error"', 1)[1].split("</", 1)[0]

    assert object_to(theirs) == object_to(theirs + 1000)
    assert object_to(theirs)[0] == 422
