"""Charts and .xlsx downloads beside the report tables: the dashboard and a village's red and black lists carry their
chart data as JSON matching the tables, the downloads hold the same numbers, and a household cannot fetch them."""

from __future__ import annotations

import html
import io
import json
import re
from typing import Any

from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import insert

from app.db import Database
from app.evaluation.service import rounds
from app.ledger import service as ledger
from app.lists import service as lists
from app.lists.models import ListPosting
from app.store.service import counter
from tests.support.eval_helpers import CLERK, staffed_village
from tests.support.factories import make_stocked_item, make_store
from tests.support.web import login

PW = "Passw0rd-test"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _post(db: Database, vid: int, hid: int, list_: str, month: int, reason: str = "文明家庭") -> None:
    with db.write_txn() as s:
        s.execute(insert(ListPosting).values(
            village_id=vid, household_id=hid, list=list_, source="determination", code="D-" + reason[:4],
            reason=reason, explanation="委员会认定", from_month=month, to_month=month, status="effective"))
        rounds.refresh_list_counts(s, vid, month // 100)  # as a round's finalisation does


def _chart(page: str, testid: str) -> dict[str, Any]:
    m = re.search("data-chart='([^']*)'[^>]*data-testid=\"" + re.escape(testid) + '"', page)
    assert m, f"no chart {testid}"
    return json.loads(html.unescape(m.group(1)))  # type: ignore[no-any-return]


def _table_rows(page: str, testid: str) -> list[list[str]]:
    table = page.split(f'data-testid="{testid}"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def _sheet(content: bytes, title: str | None = None) -> list[tuple[Any, ...]]:
    wb = load_workbook(io.BytesIO(content), read_only=True)
    ws = wb[title] if title else wb.worksheets[0]
    return [tuple(r) for r in ws.iter_rows(values_only=True)]


def _planted(db: Database) -> tuple[Any, int, int]:
    """The staffed village this year: 60 points issued, 2 redeemed; 4 red households in January, one red and one black
    in February (the black one's reason a would-be formula)."""
    ev, home = staffed_village(db)
    year = lists.this_month() // 100
    with db.write_txn() as s:
        store = make_store(s, ev.village)
        soap = make_stocked_item(s, store, points=1, stock=50)
        for hid in ev.households:
            ledger.award(s, CLERK, household_id=hid, points=10, memo="期初积分")
        counter.redeem(s, CLERK, store_id=store.id, household_id=ev.households[0], identity_note="户主本人",  # type: ignore[arg-type]
                       lines=[counter.Line(soap.id, 2)])  # type: ignore[arg-type]
    for hid in ev.households[:4]:
        _post(db, ev.vid, hid, "red", year * 100 + 1)
    _post(db, ev.vid, ev.households[4], "red", year * 100 + 2)
    _post(db, ev.vid, ev.households[5], "black", year * 100 + 2, reason="=HYPERLINK(\"x\")乱堆乱放")
    return ev, home, year


def test_dashboard_chart_and_export(client: TestClient, db: Database) -> None:
    ev, _home, year = _planted(db)
    login(client, "reviewer1", PW)
    page = client.get(f"/dashboard?year={year}").text
    assert '<script src="/static/vendor/echarts-5.6.0.min.js" defer></script>' in page
    assert '<script src="/static/js/charts.js" defer></script>' in page
    assert f'href="/dashboard.xlsx?year={year}&amp;from=1&amp;to=12"' in page and "导出 Excel" in page
    rows = [r[1:] for r in _table_rows(page, "villages")]  # past the rank
    names = [r[0] for r in rows]
    assert ev.village.name in names
    cov, pts = _chart(page, "chart-coverage"), _chart(page, "chart-points")
    assert cov["type"] == "bar" and cov["unit"] == "%" and cov["categories"] == names == pts["categories"]
    share, target = cov["series"]
    assert share["name"] == "覆盖率" and target["name"] == "目标" and target["type"] == "line"
    assert [f"{v:.0f}% / {t}%" for v, t in zip(share["data"], target["data"], strict=True)] == [r[9] for r in rows]
    issued, redeemed = pts["series"]
    assert issued["name"] == "发放积分" and redeemed["name"] == "兑换积分"
    assert [str(v) for v in issued["data"]] == [r[4] for r in rows]
    assert [str(v) for v in redeemed["data"]] == [r[5] for r in rows]
    i = names.index(ev.village.name)
    assert (issued["data"][i], redeemed["data"][i], share["data"][i], target["data"][i]) == (60, 2, 100.0, 60)
    # the months across the villages: the chart, the table beside it and the download's second sheet agree
    trend = _table_rows(page, "trend-table")
    assert len(trend) == 12 and trend[0][0] == f"{year}-01"
    tp, tl = _chart(page, "chart-trend-points"), _chart(page, "chart-trend-lists")
    assert tp["categories"][0] == "1月" and [str(v) for v in tp["series"][0]["data"]] == [t[1] for t in trend]
    assert [str(v) for v in tl["series"][0]["data"]] == [t[3] for t in trend]
    assert [t[3] for t in trend[:2]] == ["4", "1"] and [t[4] for t in trend[:2]] == ["0", "1"]  # planted lists
    assert sum(int(t[1]) for t in trend) == sum(int(r[4]) for r in rows)

    r = client.get(f"/dashboard.xlsx?year={year}&township_id={ev.village.township_id}")
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    assert "attachment; filename*=UTF-8''" in r.headers["content-disposition"]
    sheet = _sheet(r.content)
    header, data = sheet[0], sheet[1:]
    assert header[:4] == ("村", "应完成评比（月）", "已完成评比（月）", "延误（月）")
    assert [d[0] for d in data] == names
    col = {h: k for k, h in enumerate(header)}
    for d, row, v in zip(data, rows, share["data"], strict=True):
        assert (d[col["发放积分"]], d[col["兑换积分"]], d[col["未兑换积分"]]) == tuple(int(x) for x in row[4:7])
        assert (str(d[col["红榜户"]]), str(d[col["黑榜户"]])) == (row[7], row[8])
        assert d[col["覆盖率（%）"]] == v and f"{d[col['参评率（%）']]:.0f}%" == row[3]
        assert f"{d[col['已完成评比（月）']]} / {d[col['应完成评比（月）']]}" == row[1]
    mine = data[i]
    assert (mine[col["红榜户"]], mine[col["黑榜户"]], mine[col["覆盖率（%）"]], mine[col["覆盖目标（%）"]]) == (5, 1, 100.0, 60)
    months = _sheet(r.content, "逐月趋势")
    assert months[0][0] == "月份" and [list(map(str, m)) for m in months[1:]] == trend
    # another township's id shows none of this reviewer's villages
    assert len(_sheet(client.get(f"/dashboard.xlsx?year={year}&township_id=999999").content)) == 1


def test_village_chart_and_export(client: TestClient, db: Database) -> None:
    ev, _home, year = _planted(db)
    login(client, "clerk1", PW)
    page = client.get(f"/villages/{ev.vid}/lists?year={year}").text
    assert '<script src="/static/vendor/echarts-5.6.0.min.js" defer></script>' in page
    assert f'href="/villages/{ev.vid}/lists.xlsx?year={year}"' in page
    table = _table_rows(page, "by-month")
    assert table == [[f"{year}-01", "4", "0", "100%"], [f"{year}-02", "1", "1", "50%"]]
    chart = _chart(page, "chart-by-month")
    assert chart["type"] == "bar" and chart["categories"] == [t[0] for t in table]
    red, black = chart["series"]
    assert (red["name"], black["name"]) == ("红榜户数", "黑榜户数") and red["stack"] == black["stack"]
    assert [str(v) for v in red["data"]] == [t[1] for t in table]
    assert [str(v) for v in black["data"]] == [t[2] for t in table]

    r = client.get(f"/villages/{ev.vid}/lists.xlsx?year={year}")
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    months = _sheet(r.content, "按月")
    assert months[0] == ("月份", "红榜户数", "黑榜户数", "红榜占比（%）")
    assert [(m, str(a), str(b), f"{c}%") for m, a, b, c in months[1:]] == [tuple(t) for t in table]
    posts = _sheet(r.content, "本年全部记录")
    assert posts[0][:5] == ("榜单", "户号", "户主", "成员", "原因") and len(posts) == 1 + 6
    assert sorted(p[0] for p in posts[1:]) == ["红榜"] * 5 + ["黑榜"]
    black_row = next(p for p in posts[1:] if p[0] == "黑榜")
    assert black_row[1] == "006" and black_row[4] == "'=HYPERLINK(\"x\")乱堆乱放"  # a reason never runs as a formula
    assert black_row[5] == black_row[6] == f"{year}-02" and black_row[7] in ("公示中", "已期满")
    only_black = _sheet(client.get(f"/villages/{ev.vid}/lists.xlsx?year={year}&list=black").content, "本年全部记录")
    assert [p[0] for p in only_black[1:]] == ["黑榜"]


def test_household_cannot_download(client: TestClient, db: Database) -> None:
    ev, _home, year = _planted(db)
    login(client, "home5", PW)
    assert client.get(f"/dashboard.xlsx?year={year}").status_code == 404
    assert client.get(f"/villages/{ev.vid}/lists.xlsx?year={year}").status_code == 404
    login(client, "reviewer1", PW)  # a reviewer of the township may read the village's lists too
    assert client.get(f"/villages/{ev.vid}/lists.xlsx").status_code == 200
