"""Time: stored as UTC (timezone-aware; SQLModel's UTCDateTime columns), shown in Asia/Shanghai."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DISPLAY_ZONE = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the form every timestamp column takes)."""
    return datetime.now(UTC)


def to_local(ts: datetime | None, zone: ZoneInfo = DISPLAY_ZONE) -> datetime | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(zone)


def format_local(ts: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    local = to_local(ts)
    return local.strftime(fmt) if local else ""


def local_day_start_utc(day: date, zone: ZoneInfo = DISPLAY_ZONE) -> datetime:
    """Midnight of a local calendar day, in UTC (for filtering stored timestamps by local date)."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


def day_bounds(since: date | None, until: date | None) -> tuple[datetime | None, datetime | None]:
    """[since 00:00, until+1 00:00) local, as UTC bounds."""
    return (local_day_start_utc(since) if since else None,
            local_day_start_utc(until + timedelta(days=1)) if until else None)
