"""The ruleset (积分细则) form editor: the form <-> ruleset mapping (pure), and the pages that open a stored version
as a form, add and remove rows on the server, and save the result as the next version (nothing saved on error)."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import rules
from app.core.context import Actor
from app.db import Database
from app.rulesets import form
from app.rulesets import service as rulesets
from app.rulesets.models import RulesetVersion
from app.rulesets.service import RulesRefused
from tests.support.factories import make_grant, make_user, make_village
from tests.support.web import login

PASSWORD = "Editor-pass-2026"


@pytest.fixture
def people(db: Database) -> None:
    """A county administrator, a village clerk (both with PASSWORD) and the county default ruleset stored as
    version 1: all these tests need (the demo county would do, but takes longer to load)."""
    with db.write_txn() as s:
        admin, clerk = make_user(s, "admin", PASSWORD), make_user(s, "clerk", PASSWORD)
        make_grant(s, admin, "county_admin")
        make_grant(s, clerk, "village_clerk", village_id=make_village(s).id)  # type: ignore[arg-type]
        rulesets.ensure_default(s, Actor.system("测试"), from_month=202601)

# ---- helpers --------------------------------------------------------------------------------------------------------


class _FormScraper(HTMLParser):
    """What a browser would post for the page's ruleset form (no button pressed): text inputs, ticked
    checkboxes, textareas and the selected option of each select."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._textarea: str | None = None
        self._select: str | None = None
        self._option: str | None = None
        self._first_option: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._in_form = a.get("data-testid") == "ruleset-form"
        if not self._in_form:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.fields[a["name"]] = a.get("value", "on")
            else:
                self.fields[a["name"]] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields[a["name"]] = ""
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select:
            self._first_option.setdefault(self._select, a.get("value", ""))
            if "selected" in a:
                self.fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "textarea":
            self._textarea = None
        elif tag == "select" and self._select:
            self.fields.setdefault(self._select, self._first_option.get(self._select, ""))
            self._select = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data


def scrape(html: str) -> dict[str, str]:
    p = _FormScraper()
    p.feed(html)
    assert p.fields, "page has no ruleset form"
    return p.fields


def _count(db: Database) -> int:
    with db.read_txn() as s:
        return int(s.execute(select(func.count()).select_from(RulesetVersion)).scalar_one())


def _stored(db: Database) -> RulesetVersion:
    with db.read_txn() as s:
        return rulesets.list_versions(s)[0]


def _theme_index(fields: dict[str, str], code: str) -> int:
    return next(int(k.split("-")[1]) for k, v in fields.items()
                if k.startswith("themes-") and k.endswith("-code") and "grades" not in k and v == code)


def _grade_index(fields: dict[str, str], theme: int, code: str) -> int:
    prefix = f"themes-{theme}-grades-"
    return next(int(k.removeprefix(prefix).split("-")[0]) for k, v in fields.items()
                if k.startswith(prefix) and k.endswith("-code") and v == code)


# ---- the form <-> ruleset mapping (pure) ----------------------------------------------------------------------------


def test_the_form_of_a_ruleset_reads_back_as_the_same_ruleset() -> None:
    default = rules.default_ruleset()
    assert form.to_ruleset(form.state_from_fields(form.to_fields(default))) == default
    # blanks that mean "not set", unticked boxes and a determination counted toward no theme survive too
    varied = dataclasses.replace(
        default, red_policy=rules.RedPolicy(threshold=None, top_percent=None, months_shown=2, commendations_count=False,
                                            exclude_black=False),
        black_policy=rules.BlackPolicy(determinations_count=False),
        determinations=(rules.Determination("LATE", "迟交", "none", -2, 0, theme=None),),
        credit=rules.CreditRule(grades=(rules.CreditGrade("信用户", min_net=-5, max_black=2, lifted_black_counts=True),
                                        rules.CreditGrade("一般", min_red=1, min_net=0, red_or_net=True, max_black=3)),
                                fallback="失信", ungraded_without_points=False))
    fields = form.to_fields(varied)
    assert fields["red_policy-threshold"] == "" and "red_policy-exclude_black" not in fields
    assert fields["determinations-0-theme"] == ""
    assert fields["credit-grades-0-min_red"] == "" and fields["credit-grades-0-lifted_black_counts"] == "1"
    assert fields["credit-fallback"] == "失信" and "credit-ungraded_without_points" not in fields
    assert form.to_ruleset(form.state_from_fields(fields)) == varied


def test_numbers_are_read_leniently_and_garbage_is_a_chinese_problem_not_a_crash() -> None:
    fields = form.to_fields(rules.default_ruleset())
    fields |= {"version": " ２ ", "effective_from": "2026-07", "themes-3-monthly_cap": "1，000",
               "themes-4-grades-3-points": "－5", "red_policy-top_percent": "",
               "determinations-0-description": "欠债不还\r\n弄虚作假"}
    r = form.to_ruleset(form.state_from_fields(fields))
    assert (r.version, r.effective_from, r.themes[3].monthly_cap, r.red_policy.top_percent) == (2, 202607, 1000, None)
    assert r.themes[4].grades[3].points == -5  # full-width digits, comma and minus, as a Chinese keyboard types them
    assert r.determinations[0].description == "欠债不还\n弄虚作假"

    fields |= {"themes-0-grades-1-points": "abc", "themes-1-monthly_cap": "", "quorum": "2.5",
               "effective_from": "2026", "black_policy-worst_grade-0-months": "1e999"}
    with pytest.raises(RulesRefused) as exc:  # the engine's RulesetInvalid, as the application refuses it
        form.to_ruleset(form.state_from_fields(fields))
    problems = exc.value.problems
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert "第 1 个评比项目（勤劳致富）第 2 个等级（良）的分值“abc”不是数字" in joined
    assert "第 2 个评比项目（孝老爱亲）的月上限未填写" in joined
    assert "“2.5”不是整数" in joined and "“2026”不是月份" in joined and "“1e999”不是数字" in joined
    assert all("请" in p for p in problems)  # each says what to do

    with pytest.raises(RulesRefused):  # an empty post: problems, not an exception of another kind
        form.to_ruleset(form.state_from_fields({}))


def test_buttons_add_and_remove_rows_and_keep_the_rest() -> None:
    state = form.state_from_ruleset(rules.default_ruleset())
    state["themes"][0]["name"] = "勤劳致富（改）"
    more = form.apply_action(state, "add_theme")
    assert len(more["themes"]) == 7 and more["themes"][0]["name"] == "勤劳致富（改）"
    assert [g["code"] for g in more["themes"][6]["grades"]] == ["优", "良", "中", "差"]
    assert len(state["themes"]) == 6  # the state given is not changed
    assert len(form.apply_action(state, "add_grade-2")["themes"][2]["grades"]) == 5
    fewer = form.apply_action(state, "remove_theme-1")
    assert [t["code"] for t in fewer["themes"]] == ["DILIGENT", "CUSTOMS", "ENV", "LAW", "PUBLIC"]
    assert [g["code"] for g in form.apply_action(state, "remove_grade-0-0")["themes"][0]["grades"]] == ["良", "中", "差"]
    assert len(form.apply_action(state, "add_determination")["determinations"]) == 7
    assert len(form.apply_action(state, "remove_worst_grade-0")["black_policy"]["worst_grade"]) == 0
    def codes(st: form.State) -> list[str]:
        return [g["code"] for g in st["credit"]["grades"]]

    added = form.apply_action(state, "add_credit_grade")
    assert codes(added) == ["AAA", "AA", "A", ""] and added["credit"]["grades"][3]["max_black"] == "0"
    assert codes(form.apply_action(state, "remove_credit_grade-1")) == ["AAA", "A"]
    assert codes(form.apply_action(state, "up_credit_grade-2")) == ["AAA", "A", "AA"]  # tried one place earlier
    for nonsense in ("remove_theme-99", "add_grade-99", "remove_grade-0", "drop_table", "add_theme-1",
                     "up_credit_grade-0", "up_credit_grade-9", "remove_credit_grade-3", "up_theme-1"):
        assert form.apply_action(state, nonsense) == state


# ---- the pages ------------------------------------------------------------------------------------------------------


def test_admin_edits_a_stored_version_in_the_form_and_saves_the_next_version(client: TestClient, db: Database,
                                                                              people: None) -> None:
    login(client, "admin", PASSWORD)
    row = _stored(db)
    view = client.get("/rulesets/view", params={"code": row.code, "version": row.version})
    assert f'href="/rulesets/edit?code={row.code}&version={row.version}"' in view.text
    page = client.get("/rulesets/edit", params={"code": row.code, "version": row.version})
    assert page.status_code == 200 and "环保卫生" in page.text and "卫生不整洁户" in page.text
    fields = scrape(page.text)
    assert fields["version"] == str(row.version + 1)  # prefilled: the next version
    env = _theme_index(fields, "ENV")
    best = _grade_index(fields, env, "优")
    fields |= {f"themes-{env}-grades-{best}-points": "12", f"themes-{env}-monthly_cap": "15", "action": "save"}
    before = _count(db)
    saved = client.post("/rulesets/edit", data=fields, follow_redirects=False)
    assert saved.status_code == 303, saved.text[:2000]
    assert saved.headers["location"] == f"/rulesets/view?code={row.code}&version={row.version + 1}"
    assert _count(db) == before + 1
    with db.read_txn() as s:
        new = rulesets.get(s, row.code, row.version + 1).ruleset
        old = rulesets.get(s, row.code, row.version).ruleset
    theme = new.theme("ENV")
    assert theme is not None and theme.monthly_cap == 15 and theme.grade("优") is not None
    assert theme.grade("优").points == 12  # type: ignore[union-attr]
    # nothing else changed: the form carried every other field through unchanged
    assert dataclasses.replace(new, version=old.version, themes=old.themes) == old
    assert [t for t in new.themes if t.code != "ENV"] == [t for t in old.themes if t.code != "ENV"]
    shown = client.get(saved.headers["location"])
    assert "已保存积分细则" in shown.text and "优 +12" in shown.text and '<td class="num">15</td>' in shown.text


def test_an_invalid_form_lists_every_problem_keeps_the_input_and_saves_nothing(client: TestClient, db: Database,
                                                                                people: None) -> None:
    login(client, "admin", PASSWORD)
    row = _stored(db)
    fields = scrape(client.get("/rulesets/edit", params={"code": row.code, "version": row.version}).text)
    before = _count(db)
    bad = fields | {"themes-1-code": fields["themes-0-code"], "themes-2-monthly_cap": "-3",
                    "themes-2-name": "移风易俗（新）", "action": "save"}
    r = client.post("/rulesets/edit", data=bad)
    assert r.status_code == 422 and 'data-testid="problems"' in r.text
    assert f"评比项目编号“{fields['themes-0-code']}”重复出现 2 次" in r.text
    assert "月上限须在 0 到 10000 之间，现在是 -3" in r.text
    again = scrape(r.text)  # the page shows what was typed, not the stored version
    assert again["themes-2-monthly_cap"] == "-3" and again["themes-2-name"] == "移风易俗（新）"
    assert again["themes-1-code"] == fields["themes-0-code"]

    garbage = client.post("/rulesets/edit", data=fields | {"quorum": "三", "action": "save"})
    assert garbage.status_code == 422 and "法定人数“三”不是数字" in garbage.text

    same = client.post("/rulesets/edit", data=fields | {"version": str(row.version), "action": "save"})
    assert same.status_code == 409 and f"新版本号须大于 {row.version}" in same.text
    assert scrape(same.text)["version"] == str(row.version)
    assert _count(db) == before


def test_add_and_remove_buttons_render_the_form_again_with_the_values_kept(client: TestClient, db: Database,
                                                                           people: None) -> None:
    login(client, "admin", PASSWORD)
    row = _stored(db)
    fields = scrape(client.get("/rulesets/edit", params={"code": row.code, "version": row.version}).text)
    before = _count(db)
    typed = fields | {"name": "县积分细则（草稿）", "themes-0-grades-0-points": "11"}
    added = client.post("/rulesets/edit", data=typed | {"action": "add_theme"})
    assert added.status_code == 200 and added.text.count('data-testid="theme"') == 7
    after_add = scrape(added.text)
    assert after_add["name"] == "县积分细则（草稿）" and after_add["themes-0-grades-0-points"] == "11"
    assert after_add["themes-6-code"] == "" and after_add["themes-6-grades-3-code"] == "差"

    grade = client.post("/rulesets/edit", data=after_add | {"action": "add_grade-0"})
    after_grade = scrape(grade.text)
    assert "themes-0-grades-4-code" in after_grade and "themes-1-grades-4-code" not in after_grade
    assert after_grade["themes-0-grades-0-points"] == "11" and len(after_grade) == len(after_add) + 4

    removed = scrape(client.post("/rulesets/edit", data=typed | {"action": "remove_theme-1"}).text)
    assert [removed[f"themes-{i}-code"] for i in range(5)] == ["DILIGENT", "CUSTOMS", "ENV", "LAW", "PUBLIC"]
    assert "themes-5-code" not in removed
    det = scrape(client.post("/rulesets/edit", data=typed | {"action": "add_determination"}).text)
    assert det["determinations-6-list"] == "none" and det["determinations-6-vote"] == "majority"
    worst = scrape(client.post("/rulesets/edit", data=typed | {"action": "add_worst_grade"}).text)
    assert "black_policy-worst_grade-1-months" in worst
    assert _count(db) == before  # a button that adds or removes a row saves nothing


def test_the_county_edits_the_credit_rule_in_the_form(client: TestClient, db: Database, people: None) -> None:
    login(client, "admin", PASSWORD)
    row = _stored(db)
    page = client.get("/rulesets/edit", params={"code": row.code, "version": row.version})
    assert 'data-testid="credit"' in page.text and page.text.count('data-testid="credit-grade"') == 3
    fields = scrape(page.text)
    assert [fields[f"credit-grades-{i}-code"] for i in range(3)] == ["AAA", "AA", "A"]
    assert fields["credit-grades-1-red_or_net"] == "1" and fields["credit-fallback"] == "不评级"
    before = _count(db)

    moved = scrape(client.post("/rulesets/edit", data=fields | {"action": "up_credit_grade-1"}).text)
    assert [moved[f"credit-grades-{i}-code"] for i in range(3)] == ["AA", "AAA", "A"]
    refused = client.post("/rulesets/edit", data=moved | {"action": "save"})
    assert refused.status_code == 422 and "“AAA”永远评不上" in refused.text and "请调整顺序或条件" in refused.text
    typo = client.post("/rulesets/edit", data=fields | {"credit-grades-0-min_red": "三", "action": "save"})
    assert typo.status_code == 422
    assert "信用等级第 1 级（AAA）的至少上红榜次数“三”不是数字：请填写整数，如 10；不设此项请留空" in typo.text
    same = client.post("/rulesets/edit", data=fields | {"credit-grades-2-code": "AA", "action": "save"})
    assert same.status_code == 422 and "信用等级代码“AA”重复出现 2 次" in same.text
    assert scrape(same.text)["credit-grades-2-code"] == "AA"  # what was typed is shown again
    assert _count(db) == before

    stricter = fields | {"credit-grades-0-min_red": "3", "credit-grades-2-lifted_black_counts": "1", "action": "save"}
    saved = client.post("/rulesets/edit", data=stricter, follow_redirects=False)
    assert saved.status_code == 303, saved.text[:2000]
    with db.read_txn() as s:
        new = rulesets.get(s, row.code, row.version + 1).ruleset
        old = rulesets.get(s, row.code, row.version).ruleset
    assert new.credit.grades[0] == rules.CreditGrade("AAA", min_red=3, min_net=100)
    assert new.credit.grades[2] == rules.CreditGrade("A", min_net=1, lifted_black_counts=True)
    assert dataclasses.replace(new, version=old.version, credit=old.credit) == old
    shown = client.get(saved.headers["location"])
    assert 'data-testid="credit-rule"' in shown.text and "全年上红榜至少 3 次，且净得积分至少 100 分" in shown.text
    assert "全年没有上过黑榜（经整改移出的也算）" in shown.text


def test_only_the_county_administrator_reaches_the_editor(client: TestClient, db: Database, people: None) -> None:
    row = _stored(db)
    csrf = login(client, "clerk", PASSWORD)
    assert client.get("/rulesets/edit", params={"code": row.code, "version": row.version}).status_code == 404
    fields = form.to_fields(dataclasses.replace(rules.loads(row.toml), version=row.version + 1))
    r = client.post("/rulesets/edit", data=fields | {"csrf_token": csrf, "action": "save"})
    assert r.status_code == 404 and _count(db) == 1
    view = client.get("/rulesets/view", params={"code": row.code, "version": row.version})
    assert view.status_code == 200 and "/rulesets/edit" not in view.text
    login(client, "admin", PASSWORD)
    missing = client.get("/rulesets/edit", params={"code": row.code, "version": row.version + 5})
    assert missing.status_code == 404 and "没有积分细则" in missing.text
