"""Downloads beside the report pages: the dashboard's rows, and a village's red and black lists of a year (month by
month, and every posting), as .xlsx with the same figures the pages show."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.core.clock import to_local, utcnow
from app.core.scope import EVERYTHING
from app.core.spreadsheet import xlsx_sheets
from app.lists import service as lists
from app.org import service as org
from app.org.models import Village
from app.reports.service import dashboard as reports
from app.rulesets import service as rulesets

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DASHBOARD_HEADER = ["村", "应完成评比（月）", "已完成评比（月）", "延误（月）", "参评率（%）", "发放积分", "兑换积分",
                    "未兑换积分", "红榜户", "黑榜户", "覆盖率（%）", "覆盖目标（%）", "异议", "异议成立", "兑换笔数",
                    "库存（元）", "需要关注的原因"]
TREND_HEADER = ["月份", "发放积分", "兑换积分", "红榜户", "黑榜户", "已完成评比的村", "评比延误的村"]
MONTH_HEADER = ["月份", "红榜户数", "黑榜户数", "红榜占比（%）"]
POSTING_HEADER = ["榜单", "户号", "户主", "成员", "原因", "公示起", "公示止", "状态", "整改"]



def _stamp() -> str:
    return (to_local(utcnow()) or utcnow()).strftime("%Y%m%d")


def _month(m: int) -> str:
    return f"{m // 100}-{m % 100:02d}"


def dashboard_rows(rows: Sequence[reports.VillageRow]) -> list[list[Any]]:
    """The dashboard table as spreadsheet rows: numbers stay numbers (percentages to one decimal)."""
    return [[r.village.name, r.months_due, r.finalised, len(r.late), round(r.participation_pct, 1), r.issued,
             r.redeemed, r.outstanding, r.coverage.red, r.coverage.black, round(r.coverage.share_pct, 1),
             r.coverage.target_pct, r.filed, r.upheld, r.redemptions, Decimal(r.stock_value_fen) / 100,  # exact yuan
             "；".join(r.reasons)] for r in rows]


def dashboard_file(session: Session, villages: list[Village], first: int, last: int) -> tuple[bytes, str, str]:
    """(content, file name, media type): the dashboard of `villages` for the months `first` to `last`, lagging
    villages first, and a second sheet with the months' trends."""
    b = reports.board(session, villages, first, last)
    period = f"{b.year}" if (first % 100, last % 100) == (1, 12) else f"{b.year}年{first % 100}-{last % 100}月"
    data = xlsx_sheets([
        (f"工作看板{period}", DASHBOARD_HEADER, dashboard_rows(b.rows),
         [14, 10, 10, 8, 10, 10, 10, 10, 8, 8, 10, 10, 6, 8, 8, 11, 60]),
        ("逐月趋势", TREND_HEADER, [[_month(t.month), t.issued, t.redeemed, t.red, t.black, t.finalised, t.late]
                                for t in b.trends], [10, 10, 10, 10, 10, 12, 12]),
    ])
    return data, f"工作看板{period}（导出于{_stamp()}）.xlsx", XLSX


def village_lists_file(session: Session, village_id: int, year: int, list_: str = "") -> tuple[bytes, str, str]:
    """(content, file name, media type): a village's red and black lists of `year`: households per month (the
    page's 按月 table) and every posting of the year (optionally one list only), as the lists page shows them."""
    village = org.get_village(session, EVERYTHING, village_id)
    target = rulesets.coverage_targets(session, [village_id], min(lists.this_month(), year * 100 + 12))[village_id]
    cov = lists.coverage(session, village_id, year, target_pct=target)
    months = [[_month(m), r, b, round(100 * r / (r + b)) if r + b else None] for m, r, b in cov.by_month]
    posts = lists.postings(session, village_id, year=year, list_=list_ or None)
    people = lists.households_by_id(session, [p.household_id for p in posts])
    plans = lists.rectifications_of(session, [p.id for p in posts])
    now = lists.this_month()
    rows = []
    for p in posts:
        h = people.get(p.household_id) if p.household_id is not None else None
        plan = plans.get(p.id)
        fix = ("已移出" if plan.status == "lifted" else "整改中") if p.list == "black" and plan else ""
        rows.append([lists.LIST_LABELS.get(p.list, p.list), h.number if h else "",
                     h.head_name if h else ("（已按保存期限删除）" if p.erased_at else ""),
                     p.member_name or "", p.reason, _month(p.from_month), _month(p.to_month),
                     lists.STATUS_LABELS.get(lists.status_on(p, now), ""), fix])
    data = xlsx_sheets([("按月", MONTH_HEADER, months, [10, 10, 10, 12]),
                      ("本年全部记录", POSTING_HEADER, rows, [6, 8, 10, 10, 40, 9, 9, 16, 8])])
    return data, f"{village.name}红黑榜{year}（导出于{_stamp()}）.xlsx", XLSX
