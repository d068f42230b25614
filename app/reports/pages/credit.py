"""Pages of the household credit file (信用档案): a village's file for a year with the grading rule it was graded by
(the credit section of the ruleset in force, in words, and which ruleset) and the consents, its export (only
households that consented), and a household's own line with the same rule."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import to_local, utcnow
from app.core.scope import EVERYTHING
from app.deps import DbSession
from app.errors import ValidationFailed, form_errors
from app.households.service import households as hh
from app.org import service as org
from app.reports.service import credit
from app.web.templates import download, redirect, render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.REPORTS_VIEW))
Consent = Depends(authorize(Perm.HOUSEHOLD_MANAGE))
Own = Depends(authorize(Perm.LEDGER_VIEW))
Year = Annotated[int | None, Query(ge=2000, le=2100)]
Text = Annotated[str, Form(max_length=200)]


def _year(year: int | None) -> int:
    return year or (to_local(utcnow()) or utcnow()).year


def _day(text: str) -> date:
    try:
        day = date.fromisoformat((text or "").strip())
    except ValueError:
        raise ValidationFailed("日期格式不对，应为 2026-05-01", details={"field": "given_on"}) from None
    if not 2000 <= day.year <= 2100 or day > (to_local(utcnow()) or utcnow()).date():
        raise ValidationFailed("日期不对：请填写农户实际同意的日期，不晚于今天", details={"field": "given_on"})
    return day


def _ctx(session: DbSession, p: Principal, village_id: int, year: int, **extra: Any) -> dict[str, Any]:
    village = org.get_village(session, EVERYTHING, village_id)
    by = credit.basis(session, village_id, year)
    lines = credit.credit_file(session, village_id, year, by=by)
    scope = org.scope_of_village(session, village_id)
    counts = {g: sum(1 for ln in lines if ln.grade == g) for g in by.rule.codes()}
    return {"village": village, "year": year, "lines": lines, "basis": by, "rule": by.rule.describe(), "counts": counts,
            "consented": sum(1 for ln in lines if ln.consent is not None),
            "can_consent": scope is not None and p.covers(Perm.HOUSEHOLD_MANAGE, scope),
            "today": (to_local(utcnow()) or utcnow()).date().isoformat(), "nav_active": "/dashboard", **extra}


@router.get("/villages/{village_id}/credit")
def village_credit(request: Request, session: DbSession, village_id: int, p: Principal = View,
                   year: Year = None) -> Response:
    return render(request, "reports/credit.html", _ctx(session, p, village_id, _year(year)))


@router.get("/villages/{village_id}/credit.xlsx")
def village_credit_xlsx(session: DbSession, village_id: int, p: Principal = View, year: Year = None) -> Response:
    village = org.get_village(session, EVERYTHING, village_id)
    data, name, media, _left_out = credit.export_file(session, village_id, village.name, _year(year))
    return download((data, name, media))


@router.post("/households/{household_id}/credit-consent")
def consent(request: Request, session: DbSession, household_id: int, p: Principal = Consent,
            given_on: Text = "", how: Text = "", year: Text = "") -> Response:
    h = hh.get_household(session, household_id)
    vid, number = h.village_id, h.number  # the form is shown again from a fresh session: keep plain values
    y = int(year) if year.isdigit() and len(year) == 4 else None
    with form_errors("reports/credit.html", lambda s: _ctx(
            s, p, vid, _year(y), form={"household_id": household_id, "given_on": given_on, "how": how})):
        credit.record_consent(session, p.actor(), household_id, given_on=_day(given_on), how=how)
    return redirect(f"/villages/{vid}/credit?year={_year(y)}", request, f"已登记 {number} 号户同意导出信用档案")


@router.post("/households/{household_id}/credit-consent/withdraw")
def withdraw(request: Request, session: DbSession, household_id: int, p: Principal = Consent,
             year: Text = "") -> Response:
    h = hh.get_household(session, household_id)
    vid, number = h.village_id, h.number
    y = int(year) if year.isdigit() and len(year) == 4 else None
    with form_errors("reports/credit.html", lambda s: _ctx(s, p, vid, _year(y))):
        credit.withdraw_consent(session, p.actor(), household_id, on=(to_local(utcnow()) or utcnow()).date())
    return redirect(f"/villages/{vid}/credit?year={_year(y)}", request, f"{number} 号户已撤回同意：以后的导出不再包含该户")


@router.get("/households/{household_id}/credit")
def household_credit(request: Request, session: DbSession, household_id: int, p: Principal = Own,
                     year: Year = None) -> Response:
    h = hh.get_household(session, household_id)
    y = _year(year)
    by = credit.basis(session, h.village_id, y)
    line = next(iter(credit.credit_file(session, h.village_id, y, household_id=household_id, by=by)), None)
    return render(request, "reports/credit_household.html", {"h": h, "year": y, "line": line, "basis": by,
                                                              "rule": by.rule.describe(), "nav_active": "/points"})
