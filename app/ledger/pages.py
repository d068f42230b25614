"""Pages of the points ledger: a household's points (balance, what expires when, the statement with its running
balance), a village's monthly summary, the county overview with the expiry policy, and the administrator's
adjustment and reversal forms. Every form posts plainly and carries a one-time key, so a double click posts once."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import to_local, utcnow
from app.core.scope import EVERYTHING
from app.deps import DbSession
from app.errors import AppError, FormRejected, ValidationFailed
from app.households.service import households as hh
from app.ledger import service as ledger
from app.ledger.service import exports
from app.org import service as org
from app.web.templates import download, redirect, render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.LEDGER_VIEW))
Manage = Depends(authorize(Perm.LEDGER_MANAGE))
PAGE = 30
Text = Annotated[str, Form(max_length=300)]
EXPIRY_CHOICES = [("none", "积分长期有效，不清零"), ("year_end_next", "当年积分次年底清零"),
                  ("months", "获得后满 N 个月清零")]


def _this_year() -> int:
    return (to_local(utcnow()) or utcnow()).year


def _form_key() -> str:
    return "form-" + secrets.token_urlsafe(18)


def _int(value: str, label: str) -> int:
    try:
        return int(value.strip().replace("+", ""))
    except ValueError:
        raise ValidationFailed(f"{label}须为整数，例如 10 或 -10") from None


# ---- a household's points -------------------------------------------------------------------------------------------

def _household_ctx(session: DbSession, p: Principal, household_id: int, page: int = 1, **extra: Any) -> dict[str, Any]:
    h = hh.get_household(session, household_id)
    scope = hh.scope_of_household(session, household_id)
    st = ledger.statement(session, household_id, offset=(page - 1) * PAGE, limit=PAGE)
    reversed_ids = ledger.reversed_among(session, [ln.transaction_id for ln in st.lines])
    return {"h": h, "village": org.get_village(session, EVERYTHING, h.village_id), "st": st, "page": page,
            "pages": max(1, -(-st.total // PAGE)), "expiring": ledger.expiring(session, household_id),
            "policy": ledger.get_policy(session), "reversed_ids": reversed_ids,
            "can_manage": scope is not None and p.covers(Perm.LEDGER_MANAGE, scope),
            "can_see_roster": scope is not None and p.covers(Perm.HOUSEHOLD_VIEW, scope),
            "form_key": _form_key(), "nav_active": "/points", **extra}


@router.get("/households/{household_id}/points")
def household_points(request: Request, session: DbSession, household_id: int, p: Principal = View,
                     page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    return render(request, "ledger/household.html", _household_ctx(session, p, household_id, page))


@router.get("/households/{household_id}/points.xlsx")
def household_points_xlsx(session: DbSession, household_id: int, p: Principal = View) -> Response:
    return download(exports.statement_file(session, household_id))


@router.post("/households/{household_id}/points/adjust")
def adjust(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
           amount: Text = "", reason: Text = "", form_key: Text = "") -> Response:
    try:
        result = ledger.adjust(session, p.actor(), household_id=household_id, amount=_int(amount, "调整积分"),
                               reason=reason, idempotency_key=form_key or None)
    except AppError as e:
        raise FormRejected(e, "ledger/household.html", lambda s: _household_ctx(
            s, p, household_id, form={"amount": amount, "reason": reason})) from e
    message = "这笔调整已经记过，没有重复记账" if result.replayed else f"已调整 {amount} 分"
    return redirect(f"/households/{household_id}/points", request, message)


@router.post("/ledger/transactions/{transaction_id}/reverse")
def reverse(request: Request, session: DbSession, transaction_id: int, p: Principal = Manage,
            reason: Text = "", form_key: Text = "") -> Response:
    scope = ledger.scope_of_transaction(session, transaction_id)
    household_id = scope.household_id if scope else None
    back = f"/households/{household_id}/points" if household_id else "/points"
    try:
        result = ledger.reverse(session, p.actor(), transaction_id, reason=reason,
                                idempotency_key=form_key or None)
    except AppError as e:
        if household_id is None:
            raise
        raise FormRejected(e, "ledger/household.html", lambda s: _household_ctx(s, p, household_id)) from e
    message = "这笔冲正已经记过，没有重复记账" if result.replayed else f"已冲正第 {transaction_id} 号交易"
    return redirect(back, request, message)


# ---- a village's summary ------------------------------------------------------------------------------------------

@router.get("/villages/{village_id}/points")
def village_points(request: Request, session: DbSession, village_id: int, p: Principal = View,
                   year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> Response:
    year = year or _this_year()
    village = org.get_village(session, EVERYTHING, village_id)
    months = ledger.village_summary(session, village_id, year)
    totals = ledger.village_totals(session, [village_id])[village_id]
    year_total = {k: sum(m.by_kind.get(k, 0) for m in months) for k in ledger.SUMMARY_KINDS}
    return render(request, "ledger/village.html", {
        "village": village, "year": year, "months": months, "totals": totals, "year_total": year_total,
        "years": list(range(_this_year(), _this_year() - 6, -1)),
        "can_see_roster": p.can(Perm.HOUSEHOLD_VIEW), "nav_active": "/points"})


# ---- the overview: villages one can see, the expiry policy ---------------------------------------------------------

def _index_ctx(session: DbSession, p: Principal, **extra: Any) -> dict[str, Any]:
    villages = org.list_villages(session, p.filter(Perm.LEDGER_VIEW))
    totals = ledger.village_totals(session, [v.id for v in villages])
    return {"villages": villages, "totals": totals, "policy": ledger.get_policy(session),
            "can_manage": p.can(Perm.LEDGER_MANAGE), "choices": EXPIRY_CHOICES, **extra}


@router.get("/points")
def index(request: Request, session: DbSession, p: Principal = View) -> Response:
    flt = p.filter(Perm.LEDGER_VIEW)
    if not flt.everything and not flt.township_ids and not flt.village_ids and len(flt.household_ids) == 1:
        return redirect(f"/households/{next(iter(flt.household_ids))}/points")  # a household: straight to its own
    return render(request, "ledger/index.html", _index_ctx(session, p))


@router.post("/points/policy")
def set_policy(request: Request, session: DbSession, p: Principal = Manage, expiry_rule: Text = "",
               expiry_months: Text = "") -> Response:
    try:
        months = _int(expiry_months, "月数") if expiry_months.strip() else None
        policy = ledger.set_policy(session, p.actor(), expiry_rule=expiry_rule, expiry_months=months)
    except AppError as e:
        raise FormRejected(e, "ledger/index.html", lambda s: _index_ctx(
            s, p, form={"expiry_rule": expiry_rule, "expiry_months": expiry_months})) from e
    return redirect("/points", request, f"积分有效期政策已改为：{policy.label}")
