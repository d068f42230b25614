"""Months as the app keeps them: an int YYYYMM (202611 is November 2026; a year's own period, as list counts and
notices use it, is YYYY00). The arithmetic on them, today's month in the display zone, and the label a page shows.

The rules engine (app.rules) keeps its own `valid_month` check: it depends on nothing of the app's.
"""

from __future__ import annotations

from datetime import date

from app.core.clock import to_local, utcnow


def month_of(day: date) -> int:
    """The month (YYYYMM) of a date, or of a datetime as it is (convert it to local time first)."""
    return day.year * 100 + day.month


def month_start(month: int) -> date:
    """The first day of the month."""
    return date(month // 100, month % 100, 1)


def next_month(month: int) -> int:
    y, m = divmod(month, 100)
    return y * 100 + m + 1 if m < 12 else (y + 1) * 100 + 1


def prev_month(month: int) -> int:
    y, m = divmod(month, 100)
    return y * 100 + m - 1 if m > 1 else (y - 1) * 100 + 12


def add_months(month: int, n: int) -> int:
    """The month `n` months later (earlier if `n` is negative)."""
    y, m = divmod(month, 100)
    k = y * 12 + (m - 1) + n
    return (k // 12) * 100 + k % 12 + 1


def today_local() -> date:
    """Today in the display zone (Asia/Shanghai)."""
    now = to_local(utcnow())
    assert now is not None
    return now.date()


def current_month() -> int:
    """This month (YYYYMM) in the display zone."""
    return month_of(today_local())


def month_label(month: int) -> str:
    """2026年11月."""
    return f"{month // 100}年{month % 100}月"
