"""The roster import wizard in a real Chromium: template, a file with problems, the corrected file, confirmation,
search by pinyin initials, and an idempotent second import."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.core.cn_id import make_id_number
from tests.support.browser import login_via_form

pytestmark = pytest.mark.browser

HEADER = "户号,村民小组,户主姓名,与户主关系,性别,身份证号码,手机\n"


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_bytes((HEADER + "".join(r + "\n" for r in rows)).encode("gbk"))  # as Excel saves CSV in China
    return path


def test_clerk_imports_a_roster_through_the_wizard(page: Page, tmp_path: Path) -> None:
    head = make_id_number("341021", date(1968, 4, 2), 311, True)
    wife = make_id_number("341021", date(1970, 9, 9), 312, False)
    bad_wife = wife[:-1] + ("0" if wife[-1] != "0" else "1")
    login_via_form(page, "clerk")
    page.goto("/households")
    page.get_by_role("link", name="导入 / 导出花名册").click()
    with page.expect_download() as dl:
        page.get_by_test_id("template").click()
    assert "花名册模板" in dl.value.suggested_filename and dl.value.suggested_filename.endswith(".xlsx")

    # a file with a wrong check digit: the preview names row and column, and offers no confirmation
    page.set_input_files("input[name=file]", str(_csv(tmp_path / "bad.csv", [
        f"801,第二村民小组,欧阳建国,户主,男,{head},13800001111",
        f"801,第二村民小组,曾秀兰,配偶,女,{bad_wife},"])))
    with page.expect_navigation():
        page.get_by_role("button", name="上传并检查").click()
    problems = page.get_by_test_id("problems")
    expect(problems).to_contain_text("校验位不对")
    expect(problems.locator("tbody tr").first.locator("td").nth(0)).to_have_text("3")
    expect(problems.locator("tbody tr").first.locator("td").nth(1)).to_have_text("身份证号码")
    expect(page.get_by_test_id("confirm-form")).to_have_count(0)

    # the corrected file, with a group the village does not have yet
    page.goto("/villages/1/roster")
    good = _csv(tmp_path / "good.csv", [f"801,第九组,欧阳建国,户主,男,{head},13800001111",
                                         f"801,第九组,曾秀兰,配偶,女,{wife},"])
    page.set_input_files("input[name=file]", str(good))
    with page.expect_navigation():
        page.get_by_role("button", name="上传并检查").click()
    expect(page.get_by_test_id("summary")).to_contain_text("新建 1 户")
    expect(page.get_by_test_id("warnings")).to_contain_text("本村还没有第 9 组")
    with page.expect_navigation():
        page.get_by_test_id("confirm-form").get_by_role("button", name="确认导入").click()
    expect(page.locator(".flash-success")).to_contain_text("新建 1 户")

    # search by initials as the clerk types (htmx swaps the results in place)
    page.get_by_test_id("search").fill("oyjg")
    expect(page.get_by_test_id("total")).to_have_text("共 1 户")
    expect(page.get_by_test_id("households")).to_contain_text("欧阳建国")
    page.get_by_test_id("search").fill("zxl")  # 曾 read as zeng: 曾秀兰 -> zxl
    expect(page.get_by_test_id("households")).to_contain_text("801")

    # the same file again changes nothing
    page.goto("/villages/1/roster")
    page.set_input_files("input[name=file]", str(good))
    with page.expect_navigation():
        page.get_by_role("button", name="上传并检查").click()
    expect(page.get_by_test_id("summary")).to_contain_text("新建 0 户")
    expect(page.get_by_test_id("summary")).to_contain_text("2 人无变化")
    with page.expect_navigation():
        page.get_by_test_id("confirm-form").get_by_role("button", name="确认导入").click()
    expect(page.locator(".flash-success")).to_contain_text("新建 0 户、更新 0 户")
