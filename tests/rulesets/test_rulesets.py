"""Rulesets (积分细则) stored and versioned: import (validated, nothing saved on error), export, assignment to the
county or a village from a month on, and which version applies to a village in a month."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import cli, rules
from app.core.context import Actor
from app.db import Database
from app.errors import Conflict, NotFound, ValidationFailed
from app.org.models import Village
from app.rulesets import service as rulesets
from app.rulesets.models import RulesetVersion
from tests.support.factories import make_village
from tests.support.web import login

ADMIN = Actor(user_id=None, name="县管理员", role="county_admin")


def _toml(version: int, effective_from: int, code: str = "COUNTY", **changes: object) -> str:
    return rules.dumps(dataclasses.replace(rules.default_ruleset(), code=code, version=version,
                                           effective_from=effective_from, **changes))


def _count(db: Database) -> int:
    with db.read_txn() as s:
        return int(s.execute(select(func.count()).select_from(RulesetVersion)).scalar_one())


def test_versions_take_effect_from_their_month_and_villages_can_use_a_variant(db: Database) -> None:
    with db.write_txn() as s:
        v1, v2 = make_village(s).id, make_village(s).id
        rulesets.import_toml(s, ADMIN, _toml(1, 202601))
        rulesets.import_toml(s, ADMIN, _toml(2, 202607, name="县积分细则（修订）"))
        rulesets.import_toml(s, ADMIN, _toml(1, 202601, code="HILL", name="山区村细则"))
        rulesets.assign(s, ADMIN, code="COUNTY", from_month=202601)
        rulesets.assign(s, ADMIN, code="HILL", from_month=202604, village_id=v2)
    with db.read_txn() as s:
        def used(village: int | None, month: int) -> tuple[str, int]:
            row = rulesets.applicable(s, village, month).row  # type: ignore[arg-type]
            return row.code, row.version
        assert used(v1, 202603) == ("COUNTY", 1) and used(v1, 202607) == ("COUNTY", 2)
        assert used(v2, 202603) == ("COUNTY", 1) and used(v2, 202604) == ("HILL", 1)
        with pytest.raises(NotFound, match="没有适用的积分细则"):
            rulesets.applicable(s, v1, 202512)
        with pytest.raises(ValidationFailed, match="六位数字"):
            rulesets.applicable(s, v1, 202613)


def test_a_bad_file_or_an_old_version_number_saves_nothing(db: Database) -> None:
    with db.write_txn() as s:
        rulesets.import_toml(s, ADMIN, _toml(3, 202601))
    with pytest.raises(Conflict, match="新版本号须大于 3"), db.write_txn() as s:
        rulesets.import_toml(s, ADMIN, _toml(3, 202602))
    broken = _toml(4, 202602).replace("monthly_cap = 10", "monthly_cap = 1", 1)
    with pytest.raises(rulesets.RulesRefused) as exc, db.write_txn() as s:
        rulesets.import_toml(s, ADMIN, broken)
    assert isinstance(exc.value.__cause__, rules.RulesetInvalid)
    assert exc.value.problems and all(isinstance(p, str) and p for p in exc.value.problems)
    with pytest.raises(rulesets.RulesRefused) as exc, db.write_txn() as s:
        rulesets.import_toml(s, ADMIN, "code = \"X\"\nversion = ")
    assert isinstance(exc.value.__cause__, rules.RulesetInvalid)
    with pytest.raises(ValidationFailed, match="没有代码为 NOPE"), db.write_txn() as s:
        rulesets.assign(s, ADMIN, code="NOPE", from_month=202601)
    assert _count(db) == 1


def test_the_engine_refuses_with_its_own_error_and_the_rulesets_service_turns_it_into_the_apps() -> None:
    """The rules engine imports nothing of the application; its refusal becomes a 422 in one place."""
    assert not issubclass(rules.RulesError, ValidationFailed)
    with pytest.raises(rules.RulesetInvalid) as raw:
        rules.loads('code = "X"')
    with pytest.raises(rulesets.RulesRefused) as refused:
        rulesets.read_toml('code = "X"')
    assert isinstance(refused.value, ValidationFailed) and refused.value.status == 422
    assert refused.value.code == "ruleset_invalid" == raw.value.code
    assert refused.value.message == raw.value.message and refused.value.problems == raw.value.problems
    assert refused.value.details == {"problems": list(raw.value.problems)}


def test_export_is_the_stored_file_and_imports_again(db: Database) -> None:
    with db.write_txn() as s:
        rulesets.import_toml(s, ADMIN, _toml(1, 202601))
    with db.read_txn() as s:
        data, name, media = rulesets.export_file(s, "COUNTY", 1)
    assert name == "积分细则-COUNTY-第1版.toml" and media.startswith("application/toml")
    again = rules.loads(data)
    assert again == dataclasses.replace(rules.default_ruleset(), code="COUNTY", version=1, effective_from=202601)


def test_api_rulesets_for_admin_and_readers(client: TestClient, db: Database, demo: dict) -> None:
    with db.read_txn() as s:
        vid = s.execute(select(Village.id).where(Village.name == "红旗村")).scalar_one()
    login(client, "household")  # the rules are public to everyone signed in
    listed = client.get("/api/v1/rulesets").json()
    assert len(listed) == 1
    code = listed[0]["code"]
    body = client.get("/api/v1/ruleset", params={"code": code, "version": 1}).json()
    assert [t["name"] for t in body["themes"]] == ["勤劳致富", "孝老爱亲", "移风易俗", "环保卫生", "遵纪守法", "热心公益"]
    text = client.get("/api/v1/ruleset.toml", params={"code": code, "version": 1}).text
    new = text.replace("version = 1", "version = 2", 1)
    csrf = login(client, "clerk")
    assert client.get(f"/api/v1/villages/{vid}/ruleset").json()["code"] == code
    assert client.post("/api/v1/rulesets", json={"toml": new}, headers={"X-CSRF-Token": csrf}).status_code == 404
    csrf = login(client, "admin")
    r = client.post("/api/v1/rulesets", json={"toml": new}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["version"] == 2
    bad = client.post("/api/v1/rulesets", json={"toml": new.replace("version = 2", "version = 3", 1)
                                                .replace('combine = "median"', 'combine = "mode"')},
                      headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "ruleset_invalid"
    assert bad.json()["error"]["details"]["problems"]
    a = client.post("/api/v1/ruleset-assignments", json={"code": code, "from_month": 202001, "village_id": vid},
                    headers={"X-CSRF-Token": csrf})
    assert a.status_code == 201


def test_pages_show_the_rules_and_take_an_edited_version(client: TestClient, db: Database, demo: dict) -> None:
    csrf = login(client, "admin")
    index = client.get("/rulesets")
    assert index.status_code == 200 and "适用范围" in index.text and "全县" in index.text
    with db.read_txn() as s:
        row = rulesets.list_versions(s)[0]
    page = client.get("/rulesets/view", params={"code": row.code, "version": row.version})
    assert "环保卫生" in page.text and "卫生不整洁户" in page.text and "校验并保存为新版本" in page.text
    edited = row.toml.replace(f"version = {row.version}", f"version = {row.version + 1}", 1)
    bad = client.post("/rulesets/import", data={"csrf_token": csrf, "text": edited.replace('combine = "median"',
                                                                                          'combine = "mode"'),
                                                "back_code": row.code, "back_version": str(row.version)})
    assert bad.status_code == 422 and 'data-testid="problems"' in bad.text and "mode" in bad.text
    ok = client.post("/rulesets/import", data={"csrf_token": csrf, "text": edited, "back_code": row.code,
                                               "back_version": str(row.version)}, follow_redirects=True)
    assert ok.status_code == 200 and f"第 {row.version + 1} 版" in ok.text
    up = client.post("/rulesets/import", data={"csrf_token": csrf},
                     files={"file": ("细则.toml", edited.encode(), "application/toml")})
    assert up.status_code == 409 and "新版本号须大于" in up.text
    r = client.post("/rulesets/assign", data={"csrf_token": csrf, "code": row.code, "from_month": "2026-1"})
    assert r.status_code == 422 and "六位数字" in r.text
    login(client, "member")
    assert "导入新版本" not in client.get("/rulesets").text


def test_a_file_from_before_the_credit_rule_imports_with_the_former_rule(client: TestClient, db: Database,
                                                                         demo: dict) -> None:
    text = _toml(1, 202601, code="OLD")
    text = text[:text.index("\n[credit]\n")] + text[text.index("\n[[themes]]\n"):]  # as written before
    custom = _toml(1, 202601, code="NEW", credit=rules.CreditRule(grades=(rules.CreditGrade("信用户", min_red=1),),
                                                                  fallback="未评"))
    with db.write_txn() as s:
        old = rulesets.import_toml(s, ADMIN, text)
        new = rulesets.import_toml(s, ADMIN, custom)
    assert "\n[credit]\n" in old.toml  # stored with the section written out
    with db.read_txn() as s:
        assert rulesets.get(s, "OLD", 1).ruleset.credit == rules.CreditRule()
        assert rulesets.get(s, "NEW", 1).ruleset.credit.fallback == "未评"
    login(client, "household")  # the rules, the credit rule among them, are public to everyone signed in
    page = client.get("/rulesets/view", params={"code": new.code, "version": 1})
    assert 'data-testid="credit-rule"' in page.text and "<dt>信用户</dt><dd>全年上红榜至少 1 次；没有未移出的黑榜" in page.text
    body = client.get("/api/v1/ruleset", params={"code": "OLD", "version": 1}).json()
    assert [g["code"] for g in body["credit"]["grades"]] == ["AAA", "AA", "A"]


def test_cli_imports_exports_and_assigns(db: Database, cli_env: None, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path
    good = folder / "county.toml"
    good.write_text(_toml(1, 202601), encoding="utf-8")
    assert cli.main(["rules", "import", str(good)]) == 0
    assert "已导入积分细则 COUNTY 第 1 版" in capsys.readouterr().out
    bad = folder / "bad.toml"
    bad.write_text(_toml(2, 202601).replace('combine = "median"', 'combine = "mode"'), encoding="utf-8")
    assert cli.main(["rules", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "未能导入" in err and "\n- " in err
    out = folder / "back.toml"
    assert cli.main(["rules", "export", "COUNTY", "1", "--out", str(out)]) == 0
    assert rules.loads(out.read_bytes()).version == 1
    assert cli.main(["rules", "assign", "COUNTY", "--from", "202601"]) == 0
    assert cli.main(["rules", "assign", "NOPE", "--from", "202601"]) == 2
    assert cli.main(["rules", "export", "COUNTY", "9"]) == 2
    assert _count(db) == 1


# ---- hostile TOML (issue 17, item 6) ---------------------------------------------------------------------------------

DEEP = 10_000
HOSTILE_TOML = {
    # tomllib recurses once per level and raised RecursionError (a 500) near 500 levels
    "arrays-10000-deep": ("x = 1\nthemes = " + "[" * DEEP + "]" * DEEP, "第 2 行"),
    "inline-tables-10000-deep": ("x = 1\ncredit = " + "{a = " * DEEP + "1" + "}" * DEEP, "第 2 行"),
    "mixed-deep": ("code = [" + "{a = [" * 400 + "]}" * 400 + "]", "第 1 行"),
    # dotted keys nest without brackets; tomllib takes time growing with the square of their number
    "dotted-key-100000": ("x = 1\n\nname" + ".a" * 100_000 + " = 1", "第 3 行"),
    "table-header-100000": ("[" + ".".join(["a"] * 100_000) + "]\nx = 1", "第 1 行"),
    # every unknown key was looked up by a pass over the whole file: 20,000 keys took minutes (no answer at all)
    "20000-unknown-keys": ("".join(f"k{i} = 1\n" for i in range(20_000)), "第 1 行"),
    "unterminated-string": ('code = "COUNTY\nversion = 1\n', "第 1 行"),
    "bad-date": ("code = 1979-13-45\n", "第 1 行"),
    "control-character": ('code = "A\x01B"\n', "第 1 行"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TOML))
def test_hostile_toml_is_refused_in_chinese_naming_the_line(case: str) -> None:
    import time

    text, line = HOSTILE_TOML[case]
    started = time.monotonic()
    with pytest.raises(rules.RulesetInvalid) as exc:
        rules.loads(text)
    assert time.monotonic() - started < 5, "refusing it took too long"
    assert line in exc.value.message, exc.value.message
    assert len(str(exc.value.problems)) < 100_000  # the problems are listed up to a point, then counted
    with pytest.raises(rules.RulesetInvalid):
        rules.loads(text.encode())


@pytest.mark.parametrize("case", ["arrays-10000-deep", "inline-tables-10000-deep", "20000-unknown-keys"])
def test_hostile_toml_through_every_door_is_a_422(client: TestClient, db: Database, demo: dict, case: str) -> None:
    """The API import, the import page (text and file) and the simulation page, which a committee member opens."""
    text, line = HOSTILE_TOML[case]
    before = _count(db)
    csrf = login(client, "admin")
    r = client.post("/api/v1/rulesets", json={"toml": text}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and line in r.json()["error"]["message"], r.text[:500]
    r = client.post("/rulesets/import", data={"csrf_token": csrf, "text": text})
    assert r.status_code == 422 and line in r.text, r.text[:500]
    r = client.post("/rulesets/import", data={"csrf_token": csrf}, files={"file": ("细则.toml", text.encode(), "")})
    assert r.status_code == 422 and line in r.text, r.text[:500]
    from app.evaluation.models import EvalRound
    with db.read_txn() as s:
        round_id = s.execute(select(EvalRound.id).order_by(EvalRound.id)).scalars().first()
    csrf = login(client, "member")
    r = client.post(f"/rounds/{round_id}/simulate", data={"csrf_token": csrf, "text": text})
    assert r.status_code == 422 and line in r.text, r.text[:500]
    assert _count(db) == before
