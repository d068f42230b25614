"""Fairness signals across months (answering 人情分): the pure report on planted data, then the service and the page
on a real database, with who may see it."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.committee import service as committee
from app.db import Database
from app.evaluation.service import rounds
from app.households.service import households as hh
from app.reports.service import fairness
from app.reports.service import fairness_data as service
from app.reports.service.fairness import HouseholdInfo
from tests.support.eval_helpers import CLERK, REVIEWER, THEMES, eval_village
from tests.support.factories import make_grant, make_group, make_user
from tests.support.web import login

THEME_CODES = ("T1", "T2", "T3", "T4", "T5", "T6")
# households 1..8: surnames 王 王 李 李 张 张 赵 赵; groups 一组 {1, 5}, 二组 {2, 6}, 三组 {3, 7}, 四组 {4, 8}; 9: 周, 一组
SURNAMES = {1: "王", 2: "王", 3: "李", 4: "李", 5: "张", 6: "张", 7: "赵", 8: "赵", 9: "周"}
GROUPS = {1: "一组", 2: "二组", 3: "三组", 4: "四组", 5: "一组", 6: "二组", 7: "三组", 8: "四组", 9: "一组"}
HOUSEHOLDS = {h: HouseholdInfo(label=f"{h:03d} {SURNAMES[h]}某", group=GROUPS[h], surname=SURNAMES[h]) for h in SURNAMES}
NAMES = {10: "委员甲", 11: "委员乙", 12: "委员丙", 13: "委员丁", 14: "委员戊"}


def _planted() -> dict[tuple[int, int, str], dict[int, int]]:
    """Two months; everyone grades position 2, except 委员丁 (13) who gives the 王 households 4 (+2 positions) and
    委员戊 (14) who gives 三组 4. Household 9 (周) is rated in the first month only: 委员丁 gives it 4 too, on 6 cells."""
    panel: dict[tuple[int, int, str], dict[int, int]] = {}
    for month in (202601, 202602):
        for h in range(1, 10):
            if h == 9 and month == 202602:
                continue
            for t in THEME_CODES:
                cell = {r: 2 for r in NAMES}
                if SURNAMES[h] in ("王", "周"):
                    cell[13] = 4
                if GROUPS[h] == "三组":
                    cell[14] = 4
                panel[(month, h, t)] = cell
    return panel


def test_a_member_who_favours_a_surname_or_a_group_is_flagged_with_the_numbers() -> None:
    report = fairness.fairness_report(panel=_planted(), households=HOUSEHOLDS, member_names=NAMES)
    by_id = {m.rater_id: m for m in report.members}
    ding, wu = by_id[13], by_id[14]
    # 委员丁: 102 comparable cells (8 households x 6 themes x 2 months + 6), +2 on 24 (王) + 6 (周)
    assert ding.cells == 102 and ding.months == 2 and ding.apart == 30
    assert ding.mean_signed == Fraction(60, 102) and ding.mean_abs == Fraction(60, 102)
    wang = next(b for b in ding.biases if b.dimension == "surname" and b.value == "王")
    assert wang.cells == 24 and wang.households == 2 and wang.mean == 2 and wang.excess == 2 - Fraction(60, 102)
    assert wang.flagged and wang.enough
    zhou = next(b for b in ding.biases if b.dimension == "surname" and b.value == "周")
    assert zhou.cells == 6 and not zhou.enough and not zhou.flagged  # as far off, but too little data
    assert not any(b.flagged for b in ding.biases if b.dimension == "group")  # 一组 mixes 王 and 张
    sanzu = next(b for b in wu.biases if b.dimension == "group" and b.value == "三组")
    assert sanzu.flagged and sanzu.cells == 24 and sanzu.excess == 2 - Fraction(48, 102)
    favours = [s for s in report.signals if s.kind == "rater_favours"]
    assert [(s.rater_id, s.dimension, s.value, s.level) for s in favours] == [
        (13, "surname", "王", "look"), (14, "group", "三组", "look")]
    assert "委员丁 对姓“王”的户（2 户，24 项可对照评分）" in favours[0].message
    assert "+2 个等级" in favours[0].message and "+0.59 个等级" in favours[0].message and "偏高 1.41 个等级" in favours[0].message
    assert "委员戊 对村民小组“三组”的户（2 户，24 项可对照评分）" in favours[1].message
    assert all(s.message.startswith("请留意") for s in report.signals)
    # neither is far from the others overall (0.59 and 0.47 < 0.6), nor lenient overall: no rater_far / rater_lenient
    assert {s.kind for s in report.signals} == {"rater_favours"}
    # the others agree with the median everywhere: nothing flagged, and flagged members are listed first
    assert [m.rater_id for m in report.members] == [13, 14, 10, 11, 12]
    assert not any(m.flagged for m in report.members[2:])


def test_a_member_far_from_the_median_and_a_lenient_one() -> None:
    panel: dict[tuple[int, int, str], dict[int, int]] = {}
    for h in range(1, 11):
        for t in THEME_CODES[:2]:
            # 4 alternates 5 and 1 around the others' 3 (far, not lenient); 5 is one position above everywhere
            panel[(202603, h, t)] = {1: 3, 2: 3, 3: 3, 4: 5 if h % 2 else 1, 5: 4}
    report = fairness.fairness_report(panel=panel, households={})
    far = [s for s in report.signals if s.kind == "rater_far"]
    lenient = [s for s in report.signals if s.kind == "rater_lenient"]
    assert [(s.rater_id, s.level) for s in far] == [(4, "look"), (5, "look")]
    assert "委员 #4 在所选期间 1 个月中有 20 项评分可与其他委员对照，与其他委员评分的中位数平均相差 2 个等级（20 项不一致）" \
        in far[0].message
    assert [(s.rater_id, s.level) for s in lenient] == [(5, "look")]
    assert "平均比其他委员高 1 个等级" in lenient[0].message
    assert report.signals[0].level == "look"


def test_too_little_data_flags_nothing() -> None:
    # 9 comparable cells for a member two positions above the others: not enough to say anything
    panel = {(202601, h, "T1"): {1: 2, 2: 2, 3: 2, 4: 4} for h in range(1, 10)}
    panel[(202601, 10, "T1")] = {1: 2, 4: 4}  # only one other member: not comparable
    report = fairness.fairness_report(panel=panel, households=HOUSEHOLDS)
    assert report.signals == ()
    row = next(m for m in report.members if m.rater_id == 4)
    assert row.cells == 9 and not row.enough and not row.flagged and row.mean_signed == 2


def test_the_order_does_not_depend_on_the_input_order() -> None:
    panel = _planted()
    shuffled = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(panel.items()))}
    households = dict(reversed(list(HOUSEHOLDS.items())))
    a = fairness.fairness_report(panel=panel, households=HOUSEHOLDS, member_names=NAMES)
    b = fairness.fairness_report(panel=shuffled, households=households, member_names=NAMES)
    assert a == b


def test_uniform_months_and_households_unchanged_for_months() -> None:
    grades: dict[int, dict[int, dict[str, str]]] = {}
    for month in range(202601, 202608):
        grades[month] = {h: {"ENV": "优" if (h + month) % 2 else "良", "LAW": "良"} for h in range(3, 8)}
        grades[month][1] = {"ENV": "中", "LAW": "良"}  # the same for six months, then 优 优 with everyone
        if month != 202604:  # household 2: the same grades, but a month missing breaks the run (3 + 3)
            grades[month][2] = {"ENV": "差", "LAW": "良"}
    grades[202607] = {h: {"ENV": "优", "LAW": "优"} for h in range(1, 8)}
    report = fairness.fairness_report(panel={}, households=HOUSEHOLDS, grades=grades)
    kinds = [(s.kind, s.level) for s in report.signals]
    assert kinds == [("uniform_months", "look"), ("unchanged", "notice")]
    uniform, unchanged = report.signals
    assert uniform.months == (202607,) and "2026年7月（7 户，优）" in uniform.message
    assert unchanged.household_ids == (1,) and "001 王某（6 个月，至2026年6月）" in unchanged.message
    assert report.result_months == tuple(range(202601, 202608)) and report.households == 7
    # fewer than five households graded alike is no uniform month
    small = fairness.fairness_report(panel={}, households={}, grades={202601: {h: {"ENV": "优"} for h in range(4)}})
    assert small.signals == ()


# --- the service and the page on a real database --------------------------------------------------------------------

MONTHS = (202606, 202607, 202608)


def _lenient_village(db: Database) -> tuple[int, list[int], list[str], str]:
    """12 households in three groups of four; four members each rating every household but their own, in three panel
    rounds taken to the end. Members 1-3 grade everything 中; member 4 (委员4) grades the third group 优 (+2)."""
    with db.write_txn() as s:
        ev = eval_village(s, households=12, members=4)
        groups = [make_group(s, ev.village, n) for n in (1, 2, 3)]
        for i, hid in enumerate(ev.households):
            g = groups[i // 4]
            hh.move_group(s, CLERK, hid, g.id)  # type: ignore[arg-type]
        reviewer = make_user(s, "reviewer1", name="乡镇审核员")
        make_grant(s, reviewer, "township_reviewer", township_id=ev.village.township_id)  # type: ignore[arg-type]
        home = make_user(s, "home5", name="户主五")
        make_grant(s, home, "household", household_id=ev.households[4])
        favoured = set(ev.households[8:])
        for month in MONTHS:
            rid = rounds.open_round(s, CLERK, village_id=ev.vid, month=month, mode="panel").id
            assert rid is not None
            elig = committee.eligibility(s, ev.vid)
            for i, m in enumerate(ev.members):
                assert m.id is not None
                cells = [rounds.Cell(h, t, "优" if i == 3 and h in favoured else "中")
                         for h in ev.households for t in THEMES if elig.may_rate(m.id, h)]
                rounds.save_ratings(s, ev.actor(i), rid, cells, rater_id=m.id)
            rounds.submit(s, CLERK, rid)
            rounds.approve(s, REVIEWER, rid)
            start = rounds.month_start(rounds.next_month(month))
            rounds.publicise(s, CLERK, rid, on=start)
            rounds.finalise(s, CLERK, rid, on=start + timedelta(days=10))
        # a draft panel round with wild grades is not counted (it still changes)
        rid = rounds.open_round(s, CLERK, village_id=ev.vid, month=202609, mode="panel").id
        assert rid is not None and ev.members[0].id is not None
        rounds.save_ratings(s, ev.actor(0), rid, [rounds.Cell(h, t, "差") for h in ev.households[1:] for t in THEMES],
                            rater_id=ev.members[0].id)
        return ev.vid, ev.households, [g.name for g in groups], ev.members[3].display_name


def test_service_finds_the_member_lenient_towards_one_group(db: Database) -> None:
    vid, _hids, group_names, member4 = _lenient_village(db)
    with db.read_txn() as s:
        view = service.village_fairness(s, vid, service.year_period(2026))
    assert view.rounds == 4 and view.panel_rounds == 3 and view.finalised_rounds == 3
    report = view.report
    assert report.panel_months == MONTHS and report.result_months == MONTHS and report.households == 12
    row = next(m for m in report.members if m.name == member4)
    # member 4 rates 11 households (not his own) x 6 themes x 3 months; +2 on the third group's 4 households
    assert row.cells == 198 and row.months == 3 and row.mean_signed == Fraction(144, 198) and row.flagged
    assert report.members[0] is row
    assert [b.value for b in row.biases if b.dimension == "group"] == group_names  # in the groups' order
    favours = [s for s in report.signals if s.kind == "rater_favours" and s.dimension == "group"]
    assert [(s.rater_id, s.value, s.cells) for s in favours] == [(row.rater_id, group_names[2], 72)]
    assert {s.kind for s in report.signals if s.rater_id == row.rater_id} >= {"rater_far", "rater_favours"}
    assert not any(s.rater_id not in (None, row.rater_id) for s in report.signals)  # the others agree
    # an empty period
    with db.read_txn() as s:
        empty = service.village_fairness(s, vid, service.year_period(2025))
    assert empty.rounds == 0 and empty.report.signals == () and empty.report.members == ()
    assert service.last_months(3, now_month=202602) == service.Period(202512, 202602)
    assert service.Period(202601, 202612).label == "2026年" and service.Period(202512, 202602).label == "2025年12月至2026年2月"


def test_page_shows_the_member_signal_and_a_household_gets_404(app: FastAPI, db: Database) -> None:
    vid, _hids, group_names, member4 = _lenient_village(db)
    with TestClient(app, base_url="http://testserver") as client:
        login(client, "reviewer1", "Passw0rd-test")
        page = client.get(f"/villages/{vid}/fairness?year=2026")
        assert page.status_code == 200, page.text[:500]
        assert 'data-testid="explanation"' in page.text and "不是结论" in page.text
        signals = page.text.split('data-testid="fairness-signals"')[1].split("</ul>")[0]
        assert f"{member4} 对村民小组“{group_names[2]}”的户（4 户，72 项可对照评分）" in signals
        assert 'data-kind="rater_favours"' in signals
        assert client.get(f"/villages/{vid}/fairness?months=6").status_code == 200
        assert client.get(f"/villages/{vid}/fairness?year=1999").status_code == 422
        login(client, "home5", "Passw0rd-test")
        assert client.get(f"/villages/{vid}/fairness?year=2026").status_code == 404
