"""The household credit file: the grading rule of the ruleset in force (the county's), the year's record per household,
consent before export."""

from __future__ import annotations

import dataclasses
import io
from datetime import date

import openpyxl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from app import rules
from app.audit.models import AuditEvent
from app.db import Database
from app.errors import Conflict, ValidationFailed
from app.ledger import service as ledger
from app.lists import service as lists
from app.lists.models import ListPosting
from app.reports.service import credit
from app.rulesets import service as rulesets
from tests.support.eval_helpers import CLERK, staffed_village
from tests.support.web import login

PW = "Passw0rd-test"
YEAR = lists.this_month() // 100


@pytest.mark.parametrize(("earned", "deducted", "red", "black", "expected"), [
    (150, 10, 2, 0, "AAA"), (100, 0, 2, 0, "AAA"), (99, 0, 2, 0, "AA"), (30, 0, 1, 0, "AA"), (60, 0, 0, 0, "AA"),
    (20, 0, 0, 0, "A"), (200, 0, 3, 1, "不评级"), (0, 0, 1, 0, "不评级"), (10, 30, 0, 0, "不评级"),
])
def test_the_county_rule(earned: int, deducted: int, red: int, black: int, expected: str) -> None:
    assert credit.grade(earned, deducted, red, black) == expected


def _post(db: Database, vid: int, hid: int, list_: str, status: str = "effective") -> None:
    month = YEAR * 100 + 1
    with db.write_txn() as s:
        s.execute(insert(ListPosting).values(village_id=vid, household_id=hid, list=list_, source="d", code="c",
                                             reason="文明家庭" if list_ == "red" else "卫生不整洁户", explanation="e",
                                             from_month=month, to_month=month, status=status))


def test_credit_file_consent_and_export(client: TestClient, db: Database) -> None:
    ev, home = staffed_village(db)
    h = ev.households
    with db.write_txn() as s:
        for hid, points in ((h[0], 120), (h[1], 40), (h[2], 200), (home, 15)):
            ledger.award(s, CLERK, household_id=hid, points=points, memo="评比积分")
        ledger.penalize(s, CLERK, household_id=h[2], points=5, memo="乱倒垃圾")
    _post(db, ev.vid, h[0], "red")
    _post(db, ev.vid, h[0], "red")
    _post(db, ev.vid, h[1], "red")
    _post(db, ev.vid, h[2], "black")  # standing: not graded however many points
    _post(db, ev.vid, home, "black", status="lifted")  # rectified: does not count against it
    _post(db, ev.vid, h[3], "red", status="voided")  # an upheld objection: not counted
    with db.read_txn() as s:
        lines = {ln.household_id: ln for ln in credit.credit_file(s, ev.vid, YEAR)}
    assert (lines[h[0]].grade, lines[h[0]].red, lines[h[0]].earned) == ("AAA", 2, 120)
    assert lines[h[1]].grade == "AA"
    assert (lines[h[2]].grade, lines[h[2]].black, lines[h[2]].deducted) == ("不评级", 1, 5)
    assert (lines[home].grade, lines[home].black, lines[home].rectified) == ("A", 0, 1)
    assert (lines[h[3]].grade, lines[h[3]].red) == ("不评级", 0)
    # consent: recorded by the clerk with how it was given; once; withdrawable; audited
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="如何同意"):
        credit.record_consent(s, CLERK, h[0], given_on=date.today(), how=" ")
    with db.write_txn() as s:
        credit.record_consent(s, CLERK, h[0], given_on=date.today(), how="户主签字的同意书已存档")
    with db.write_txn() as s, pytest.raises(Conflict, match="已经登记过"):
        credit.record_consent(s, CLERK, h[0], given_on=date.today(), how="再来一次")
    # the export holds the consenting households only
    login(client, "reviewer1", PW)  # the township sees the file and the export, and records no consent
    page = client.get(f"/villages/{ev.vid}/credit?year={YEAR}")
    assert page.status_code == 200 and "AAA" in page.text and "户主签字的同意书已存档" in page.text
    assert "/credit-consent\"" not in page.text
    book = openpyxl.load_workbook(io.BytesIO(client.get(f"/villages/{ev.vid}/credit.xlsx?year={YEAR}").content))
    rows = list(book.active.iter_rows(values_only=True))
    assert rows[0][0] == "户号" and len(rows) == 2 and rows[1][9] == "AAA"
    # the clerk records another consent through the page, then withdraws the first
    csrf = login(client, "clerk1", PW)
    r = client.post(f"/households/{h[1]}/credit-consent", data={"csrf_token": csrf, "given_on": "2000-13-01",
                                                                 "how": "当面同意", "year": str(YEAR)})
    assert r.status_code == 422 and "日期格式不对" in r.text
    r = client.post(f"/households/{h[1]}/credit-consent", data={"csrf_token": csrf, "given_on": date.today().isoformat(),
                                                                 "how": "户主本人到村委会当面同意", "year": str(YEAR)})
    assert r.status_code == 200 and "同意导出信用档案" in r.text
    r = client.post(f"/households/{h[0]}/credit-consent/withdraw", data={"csrf_token": csrf, "year": str(YEAR)})
    assert r.status_code == 200 and "已撤回同意" in r.text
    with db.read_txn() as s:
        assert set(credit.in_force(s, h)) == {h[1]}
        assert len(s.execute(select(AuditEvent).where(AuditEvent.action.like("reports.credit.%"))).all()) == 3
    # the household sees its own line, and nobody else's
    login(client, "home5", PW)
    own = client.get(f"/households/{home}/credit?year={YEAR}")
    assert own.status_code == 200 and "不会离开本系统" in own.text
    assert client.get(f"/households/{h[0]}/credit").status_code == 404
    assert client.get(f"/villages/{ev.vid}/credit.xlsx").status_code == 404


STRICTER = rules.CreditRule(grades=(
    rules.CreditGrade("AAA", min_red=3, min_net=100),  # three red postings, not two
    rules.CreditGrade("AA", min_red=1, min_net=60, red_or_net=True, lifted_black_counts=True),
    rules.CreditGrade("A", min_net=1, lifted_black_counts=True),  # a black posting, even lifted, rules out any grade
), fallback="未评级")


def test_the_grades_follow_the_credit_rule_of_the_ruleset_in_force(client: TestClient, db: Database) -> None:
    ev, home = staffed_village(db)
    h = ev.households
    with db.write_txn() as s:
        for hid, points in ((h[0], 120), (h[1], 40), (home, 15)):
            ledger.award(s, CLERK, household_id=hid, points=points, memo="评比积分")
    _post(db, ev.vid, h[0], "red")
    _post(db, ev.vid, h[0], "red")
    _post(db, ev.vid, h[1], "red")
    _post(db, ev.vid, home, "black", status="lifted")
    with db.read_txn() as s:
        before = {ln.household_id: ln.grade for ln in credit.credit_file(s, ev.vid, YEAR)}
        assert credit.basis(s, ev.vid, YEAR).version == 1
    assert (before[h[0]], before[h[1]], before[home], before[h[2]]) == ("AAA", "AA", "A", "不评级")

    # the county saves a version 2 with a stricter credit rule, in force from January of this year
    with db.write_txn() as s:
        v1 = rulesets.applicable(s, ev.vid, YEAR * 100 + 1).ruleset
        rulesets.import_toml(s, CLERK, rules.dumps(dataclasses.replace(v1, version=2, effective_from=YEAR * 100 + 1,
                                                                       credit=STRICTER)))
    with db.read_txn() as s:
        by = credit.basis(s, ev.vid, YEAR)
        after = {ln.household_id: ln.grade for ln in credit.credit_file(s, ev.vid, YEAR)}
        last_year = credit.basis(s, ev.vid, YEAR - 1)  # graded by the version in force at the end of that year
        none = credit.basis(s, ev.vid, 2020)  # before any ruleset: the default rule, and said so
    assert (by.code, by.version, by.rule) == (v1.code, 2, STRICTER)
    assert (after[h[0]], after[h[1]], after[home], after[h[2]]) == ("AA", "AA", "未评级", "未评级")
    assert (last_year.version, last_year.rule) == (1, rules.CreditRule())
    assert none.code is None and none.rule == rules.CreditRule() and "没有适用的积分细则" in none.source

    # the pages grade by it and show it in words, naming the version
    login(client, "reviewer1", PW)
    page = client.get(f"/villages/{ev.vid}/credit?year={YEAR}")
    assert page.status_code == 200
    assert "全年上红榜至少 3 次，且净得积分至少 100 分" in page.text and "全年上红榜至少 2 次" not in page.text
    assert f"积分细则 {v1.code} 第 2 版" in page.text and f"/rulesets/view?code={v1.code}&version=2" in page.text
    assert "<strong>AAA</strong>" not in page.text and "AA 2 户 · A 0 户 · 未评级 4 户" in page.text
    old = client.get(f"/villages/{ev.vid}/credit?year={YEAR - 1}")
    assert "全年上红榜至少 2 次" in old.text and f"积分细则 {v1.code} 第 1 版" in old.text
    # the export: each row names the ruleset, and a sheet states the rule
    with db.write_txn() as s:
        credit.record_consent(s, CLERK, h[0], given_on=date.today(), how="户主签字的同意书已存档")
    book = openpyxl.load_workbook(io.BytesIO(client.get(f"/villages/{ev.vid}/credit.xlsx?year={YEAR}").content))
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert rows[0][-1] == "评级依据" and rows[1][9] == "AA" and rows[1][-1] == f"{v1.code} 第2版"
    rule = list(book[credit.RULE_SHEET].iter_rows(values_only=True))
    assert rule[1] == ("评级依据", f"积分细则 {v1.code} 第 2 版（{v1.name}）")
    assert [r[0] for r in rule[2:]] == ["AAA", "AA", "A", "未评级"]
    # the household's own page, by the same rule
    login(client, "home5", PW)
    own = client.get(f"/households/{home}/credit?year={YEAR}")
    assert "<strong>未评级</strong>" in own.text and "经整改移出的也算" in own.text
