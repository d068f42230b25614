"""The demo's year of history shows what the dashboard, the fairness page and the credit file are for: a village
that finalised months late, one short of the coverage target, villages with nothing to point at, a committee member
out of line in the village whose members rate separately, households rated identically for many months, a black-list
posting lifted through rectification, and credit-file consents that the export lists.

The demo is loaded once for the module, with 30 households a village and a fixed end (NOW), so that what it shows
does not depend on the day the tests run (the shared `demo` fixture has 4 households a village and ends today)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.core.clock import DISPLAY_ZONE
from app.core.context import Actor
from app.core.scope import EVERYTHING
from app.db import Database
from app.demo import loader as demo
from app.lists import service as lists
from app.main import create_app
from app.org import service as org
from app.org.models import Village
from app.reports.service import credit
from app.reports.service import dashboard as reports
from app.reports.service import fairness_data as fairness
from tests.support.web import DEMO_PASSWORDS, TEST_SECRET, login

NOW = datetime(2026, 11, 21, 10, tzinfo=DISPLAY_ZONE)  # not after the day the tests run
YEAR = 2026


@pytest.fixture(scope="module")
def county(_sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a database holding the demo county (SQLite whatever the suite runs on: it is only read)."""
    tmp = tmp_path_factory.mktemp("demo-year")
    path = tmp / "demo.db"
    shutil.copyfile(_sqlite_template, path)
    settings = Settings(var_dir=tmp / "var", database_url=f"sqlite:///{path}", secret_key=TEST_SECRET,
                        log_level="WARNING")
    database = Database(settings.database_url)
    try:
        with database.write_txn() as session:
            org.ensure_county(session, Actor.system("测试"), code=settings.county_code, name=settings.county_name)
            demo.load(session, settings, passwords=DEMO_PASSWORDS, households_per_village=30, history_months=12,
                      now=NOW)
    finally:
        database.dispose()
    yield settings


@pytest.fixture(scope="module")
def db(county: Settings) -> Iterator[Database]:
    database = Database(county.database_url)
    yield database
    database.dispose()


def _villages(db: Database) -> dict[str, Village]:
    with db.read_txn() as s:
        return {v.name: v for v in org.list_villages(s, EVERYTHING, include_inactive=False)}


def test_dashboard_points_at_a_late_village_and_one_short_of_coverage(db: Database) -> None:
    with db.read_txn() as s:
        villages = list(_villages(db).values())
        rows = {r.village.name: r for r in reports.dashboard(s, villages, YEAR, now=NOW)}
    late = rows["桃园村"]
    assert late.lagging and [m % 100 for m in late.late] == [5, 6, 8, 10]
    assert len(late.reasons) == 1 and "4 个月的评比没有按时完成（5月、6月、8月、10月）" in late.reasons[0]
    short = rows["石桥村"]
    assert short.coverage.households == 30 and not short.coverage.on_track
    assert short.lagging and any(r.startswith("红黑榜覆盖率") for r in short.reasons)
    assert any("异议成立" in r for r in rows["红旗村"].reasons)  # three objections upheld in the year
    # the others have nothing to point at: the list of villages needing attention is not the whole county
    fine = [name for name, r in rows.items() if not r.lagging]
    assert sorted(fine) == sorted(["清水村", "新民村", "杨柳村"])
    assert all(rows[name].coverage.on_track and len(rows[name].late) <= 1 for name in fine)


def test_fairness_signals_flag_the_member_out_of_line(db: Database) -> None:
    vid = _villages(db)["清水村"].id
    assert vid is not None
    with db.read_txn() as s:
        view = fairness.village_fairness(s, vid, fairness.year_period(YEAR))
    report = view.report
    assert view.panel_rounds == 6 and len(report.panel_months) == 6
    outlier = report.members[0]
    assert outlier.flagged and outlier.name.endswith("国强") and outlier.enough
    assert not any(m.flagged for m in report.members[1:]) and len(report.members) == 5
    mine = {(sig.kind, sig.dimension, sig.value) for sig in report.signals if sig.rater_id == outlier.rater_id}
    assert ("rater_far", None, None) in mine
    assert ("rater_favours", "surname", outlier.name[0]) in mine  # he rates his own clan higher
    assert all(sig.rater_id in (None, outlier.rater_id) for sig in report.signals)  # nobody else
    unchanged = next(sig for sig in report.signals if sig.kind == "unchanged")
    assert len(unchanged.household_ids) >= 4  # rated 良 on every theme month after month


def test_a_black_list_posting_was_lifted_through_rectification(db: Database) -> None:
    vid = _villages(db)["红旗村"].id
    with db.read_txn() as s:
        lifted = [p for p in lists.postings(s, vid, year=YEAR) if p.status == "lifted"]  # type: ignore[arg-type]
    assert lifted and all(p.list == "black" for p in lifted)


def test_credit_consents_are_recorded_and_the_export_lists_them(db: Database) -> None:
    village = _villages(db)["红旗村"]
    assert village.id is not None
    with db.read_txn() as s:
        lines = credit.credit_file(s, village.id, YEAR)
        data, _name, _media, left_out = credit.export_file(s, village.id, village.name, YEAR)
    consenting = [ln for ln in lines if ln.consent is not None]
    assert len(lines) == 30 and len(consenting) == 9  # a third of the households, less one withdrawn
    assert left_out == 30 - 9
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    numbers = [row[0] for row in sheet.iter_rows(min_row=2, values_only=True) if row[0]]
    assert sorted(numbers) == sorted(ln.number for ln in consenting)


def test_fairness_page_of_the_demo_village_shows_the_member(county: Settings, db: Database) -> None:
    vid = _villages(db)["清水村"].id
    with db.read_txn() as s:
        name = fairness.village_fairness(s, vid, fairness.year_period(YEAR)).report.members[0].name  # type: ignore[arg-type]
    application = create_app(county)
    try:
        with TestClient(application, base_url="http://testserver") as client:
            login(client, "reviewer")  # 城关镇, which 清水村 belongs to
            page = client.get(f"/villages/{vid}/fairness?year={YEAR}")
            assert page.status_code == 200, page.text[:500]
            signals = page.text.split('data-testid="fairness-signals"')[1].split("</ul>")[0]
            assert f"{name} 对姓“{name[0]}”的户" in signals and 'data-kind="rater_far"' in signals
    finally:
        application.state.db.dispose()
