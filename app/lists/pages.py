"""Pages of the red and black lists over time: the villages' coverage for a year (/lists), a village's lists and its
coverage against the target, a posting with its way off the black list (plan, check visits, the committee's
decision), and a household's own history with what it must do."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize, register_scope_resolver
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import format_local
from app.core.scope import EVERYTHING
from app.deps import DbSession
from app.errors import ValidationFailed, form_errors
from app.households.service import households as hh
from app.lists import service as lists
from app.org import service as org
from app.rulesets import service as rulesets
from app.web.templates import redirect, render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.EVAL_VIEW))
Manage = Depends(authorize(Perm.EVAL_MANAGE))
Text = Annotated[str, Form(max_length=1200)]
Year = Annotated[int | None, Query(ge=2000, le=2100)]
LABELS = {"status_labels": lists.STATUS_LABELS, "list_labels": lists.LIST_LABELS, "format_local": format_local}

register_scope_resolver("posting_id", lists.scope_of_posting)


def _year(year: int | None) -> int:
    return year or lists.this_month() // 100


def _targets(session: DbSession, village_ids: list[int], year: int) -> dict[int, int]:
    """Each village's coverage target under the ruleset in force (the year's last month so far); 60 % without one."""
    return rulesets.coverage_targets(session, village_ids, min(lists.this_month(), year * 100 + 12))


def _date(text: str, label: str) -> date:
    raw = (text or "").strip()
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{label}格式不对，应为 2026-05-01", details={"field": label}) from None
    if not 2000 <= day.year <= 2100:
        raise ValidationFailed(f"{label}不对：请填写实际的日期", details={"field": label})
    return day


def _count(text: str, label: str) -> int:
    raw = (text or "").strip()
    if not re.fullmatch(r"[0-9]{1,3}", raw):
        raise ValidationFailed(f"{label}须为整数，例如 5", details={"field": label})
    return int(raw)


@router.get("/lists")
def overview(request: Request, session: DbSession, p: Principal = View, year: Year = None) -> Response:
    """Every village in scope: this year's coverage against the target, red and black, on track or not."""
    y = _year(year)
    flt = p.filter(Perm.EVAL_VIEW)
    villages = org.list_villages(session, flt, include_inactive=False)
    if not villages and flt.household_ids:  # a household: its own history
        return redirect(f"/households/{sorted(flt.household_ids)[0]}/lists")
    ids = [v.id for v in villages if v.id is not None]
    cover = lists.coverage_many(session, _targets(session, ids, y), y)  # two grouped reads for all the villages
    rows = [(v, cover[v.id]) for v in villages if v.id is not None]
    return render(request, "lists/index.html", {"rows": rows, "year": y, "nav_active": "/lists", **LABELS})


def _village_ctx(session: DbSession, p: Principal, village_id: int, year: int, list_: str) -> dict[str, Any]:
    village = org.get_village(session, EVERYTHING, village_id)
    cov = lists.coverage(session, village_id, year, target_pct=_targets(session, [village_id], year)[village_id])
    rows = lists.postings(session, village_id, year=year, list_=list_ or None)
    month = lists.this_month()
    shown = lists.shown_now(session, village_id, month)
    wanted: list[int | None] = [r.household_id for r in rows] + [r.household_id for r in shown]
    people = lists.households_by_id(session, wanted + list(cov.never[:200]))
    return {"village": village, "year": year, "cov": cov, "stability": lists.ratio_stability(cov),
            "rows": rows, "shown": shown, "people": people, "month": month, "list_": list_,
            "status_on": lists.status_on, "plans": lists.rectifications_of(session, [r.id for r in rows]),
            "reasons": lists.reasons(session, village_id, year), "nav_active": "/lists", **LABELS}


@router.get("/villages/{village_id}/lists")
def village_lists(request: Request, session: DbSession, village_id: int, p: Principal = View, year: Year = None,
                  list_: Annotated[str, Query(alias="list", max_length=6)] = "") -> Response:
    return render(request, "lists/village.html", _village_ctx(session, p, village_id, _year(year), list_))


def _posting_ctx(session: DbSession, p: Principal, posting_id: int, **extra: Any) -> dict[str, Any]:
    post = lists.get_posting(session, posting_id)
    scope = lists.scope_of_posting(session, posting_id)
    plan = lists.rectification_of(session, posting_id)
    month = lists.this_month()
    return {"post": post, "h": hh.get_household(session, post.household_id) if post.household_id else None,
            "village": org.get_village(session, EVERYTHING, post.village_id), "plan": plan,
            "visits": lists.visits(session, plan.id) if plan else [],
            "now": lists.status_on(post, month), "shown": lists.is_shown(post, month),
            "can_manage": scope is not None and p.covers(Perm.EVAL_MANAGE, scope),
            "committee_size": lists.committee_size(session, post.village_id), "form": {},
            "today": date.today().isoformat(), "nav_active": "/lists", **LABELS, **extra}


@router.get("/postings/{posting_id}")
def posting_page(request: Request, session: DbSession, posting_id: int, p: Principal = View) -> Response:
    return render(request, "lists/posting.html", _posting_ctx(session, p, posting_id))


def _posting_form(p: Principal, posting_id: int, form: dict[str, str]) -> AbstractContextManager[None]:
    return form_errors("lists/posting.html", lambda s: _posting_ctx(s, p, posting_id, form=form))


@router.post("/postings/{posting_id}/rectification")
def start_plan(request: Request, session: DbSession, posting_id: int, p: Principal = Manage,
               measures: Text = "", helper: Text = "") -> Response:
    with _posting_form(p, posting_id, {"measures": measures, "helper": helper}):
        lists.start_rectification(session, p.actor(), posting_id, measures=measures, helper=helper)
    return redirect(f"/postings/{posting_id}", request, "已记录整改方案：请按方案帮扶并定期回访")


@router.post("/postings/{posting_id}/visits")
def add_visit(request: Request, session: DbSession, posting_id: int, p: Principal = Manage,
              visited_on: Text = "", notes: Text = "") -> Response:
    with _posting_form(p, posting_id, {"visited_on": visited_on, "notes": notes}):
        lists.record_visit(session, p.actor(), posting_id, visited_on=_date(visited_on, "回访日期"), notes=notes)
    return redirect(f"/postings/{posting_id}", request, "已记录回访")


@router.post("/postings/{posting_id}/lift")
def lift(request: Request, session: DbSession, posting_id: int, p: Principal = Manage, decided_on: Text = "",
         members_present: Text = "", members_for: Text = "", decision: Text = "") -> Response:
    typed = {"decided_on": decided_on, "members_present": members_present, "members_for": members_for,
             "decision": decision}
    with _posting_form(p, posting_id, typed):
        lists.lift(session, p.actor(), posting_id, decided_on=_date(decided_on, "决定日期"),
                   members_present=_count(members_present, "到会委员人数"),
                   members_for=_count(members_for, "同意人数"), decision=decision)
    return redirect(f"/postings/{posting_id}", request, "委员会决定移出黑榜：已从公示的黑榜上撤下")


@router.get("/households/{household_id}/lists")
def household_lists(request: Request, session: DbSession, household_id: int, p: Principal = View) -> Response:
    """A household's red and black history, and for a black posting being shown: what it must do to come off."""
    rows = lists.household_history(session, household_id)
    plans = lists.rectifications_of(session, [r.id for r in rows])
    month = lists.this_month()
    return render(request, "lists/household.html", {
        "h": hh.get_household(session, household_id), "rows": rows, "plans": plans, "month": month,
        "status_on": lists.status_on, "visits": {pid: lists.visits(session, r.id) for pid, r in plans.items()},
        "nav_active": "/lists", **LABELS})
