"""The public portal (no login): a village's current notices, red list, ranking and supermarket accounts, readable
on a phone; and a household's own points behind its card code and PIN. Also the clerk's page that sets a household's
PIN (`/households/{household_id}/portal-pin`, NOTICES_MANAGE).

No session is opened for a household: its points are the answer to the POST that carried the card code and the PIN
(not cached, not kept), and every look needs the PIN again. A phone left on the table shows nothing after a reload
but the browser's "resend the form?" question, and there is no cookie for anybody to steal or forget to end.

Every page here says `noindex`: the red list and the ranking are posted for the village, not for search engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import Response

from app.audit import service as audit
from app.auth.deps import authorize, client_ip, request_id
from app.auth.permissions import Perm
from app.auth.security import same
from app.auth.service import throttle
from app.auth.service.accounts import Principal
from app.core.clock import format_local
from app.core.context import Actor
from app.core.scope import EVERYTHING
from app.deps import DbSession, pause_before_write
from app.errors import AppError, CsrfFailed, ValidationFailed, form_errors
from app.households.service import households
from app.ledger.service import TX_KIND_LABELS
from app.notices.service import notices, pins, render
from app.org import service as org
from app.store.service import cards
from app.store.service.stock import yuan
from app.web.templates import ANON_CSRF_COOKIE, redirect
from app.web.templates import render as render_page

router = APIRouter(include_in_schema=False)
Public = Depends(authorize(Perm.PUBLIC))
Manage = Depends(authorize(Perm.NOTICES_MANAGE))
VillageCode = Annotated[str, Path(max_length=20)]
NO_INDEX = {"X-Robots-Tag": "noindex, nofollow"}
NO_STORE = {**NO_INDEX, "Cache-Control": "no-store"}


def _page(request: Request, template: str, context: dict[str, Any], *, status_code: int = 200,
          headers: dict[str, str] | None = None) -> Response:
    response = render_page(request, template, {"month_label": render.month_label, "yuan": yuan,
                                               "display_code": notices.display_code, "format_local": format_local,
                                               **context}, status_code=status_code)
    response.headers.update(headers or NO_INDEX)
    return response


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str


def _head(session: Any) -> _Head:
    """The audit chain's head, shown so that anyone can keep a copy (an anchor off the machine)."""
    return _Head(*audit.head(session))


@router.get("/public")
def villages(request: Request, session: DbSession, p: object = Public) -> Response:
    """The county's villages to pick from."""
    return _page(request, "notices/portal_index.html", {"townships": pins.public_villages(session),
                                                        "audit_head": _head(session)})


@router.get("/public/villages/{village_code}")
def village(request: Request, session: DbSession, village_code: VillageCode, p: object = Public) -> Response:
    village = pins.village_by_code(session, village_code)
    return _page(request, "notices/portal_village.html", {"b": pins.board(session, village),
                                                          "audit_head": _head(session)})


def _me_ctx(session: Any, village_code: str, **extra: Any) -> dict[str, Any]:
    return {"village": pins.village_by_code(session, village_code), **extra}


@router.get("/public/villages/{village_code}/me")
def me_form(request: Request, session: DbSession, village_code: VillageCode, p: object = Public) -> Response:
    return _page(request, "notices/portal_me.html", _me_ctx(session, village_code), headers=NO_STORE)


def _csrf_expected(request: Request, p: Principal | None) -> str | None:
    """What the form carries: the session's token for a signed-in visitor, else the anonymous cookie's."""
    if p is not None and p.csrf_token:
        return p.csrf_token
    return request.cookies.get(ANON_CSRF_COOKIE)


def _limits(request: Request) -> pins.Limits:
    settings = request.app.state.settings
    return pins.Limits(per_card=settings.login_max_failures_per_account,
                       per_address=settings.login_max_failures_per_address,
                       window_minutes=settings.login_window_minutes,
                       slow_max_seconds=settings.login_slow_max_seconds)


def _actor(request: Request) -> Actor:
    return Actor(user_id=None, name="公开查询", request_id=request_id(request), ip=client_ip(request)[:64])


async def _pin_wait(request: Request) -> throttle.Slowdown:
    """The wait before this PIN is checked, when the card failed lately from other addresses: served here, before
    the request's database session opens (this dependency is declared before it), holding no connection,
    transaction or thread."""
    form = await request.form()
    card, pin = form.get("card"), form.get("pin")
    if not isinstance(card, str) or not isinstance(pin, str) or not card.strip() or not pin.strip():
        return throttle.NO_WAIT
    key, limits, actor = cards.card_key(request.app.state.settings.secret_key), _limits(request), _actor(request)
    return await pause_before_write(request, lambda s: pins.slowdown(s, actor, key, card[:200], limits=limits))


@router.post("/public/villages/{village_code}/me")
def me(request: Request, slowed: Annotated[throttle.Slowdown, Depends(_pin_wait)],  # before the session: _pin_wait
       session: DbSession, village_code: VillageCode, p: Principal | None = Public,
       card: Annotated[str, Form(max_length=200)] = "", pin: Annotated[str, Form(max_length=40)] = "",
       csrf_token: Annotated[str, Form(max_length=100)] = "") -> Response:
    """The household's balance, the points expiring soon and its latest lines, once the card code and PIN match."""
    village = pins.village_by_code(session, village_code)
    typed = {"card": card[:80]}
    if not same(csrf_token, _csrf_expected(request, p)):
        return _page(request, "notices/portal_me.html", {"village": village, "error": CsrfFailed().message, **typed},
                     status_code=CsrfFailed.status, headers=NO_STORE)
    settings = request.app.state.settings
    try:
        household = pins.check(session, _actor(request), cards.card_key(settings.secret_key), card, pin,
                               village_id=village.id, limits=_limits(request), slowed=slowed)
    except AppError as e:
        # Returned, not raised: the failed try and its audit event are kept (like a failed login).
        return _page(request, "notices/portal_me.html", {"village": village, "error": e.message, **typed},
                     status_code=e.status, headers=NO_STORE)
    return _page(request, "notices/portal_me.html", {
        "village": village, "own": pins.own(session, household, village), "kind_labels": TX_KIND_LABELS},
        headers=NO_STORE)


# ---- the clerk sets a household's PIN ---------------------------------------------------------------------------------

def _pin_ctx(session: Any, household_id: int, **extra: Any) -> dict[str, Any]:
    h = households.get_household(session, household_id)
    return {"h": h, "village": org.get_village(session, EVERYTHING, h.village_id),
            "pin": pins.pin_of(session, household_id), "card": cards.card_of(session, household_id),
            "format_local": format_local, "nav_active": "/households", **extra}


@router.get("/households/{household_id}/portal-pin")
def pin_form(request: Request, session: DbSession, household_id: int, p: Principal = Manage) -> Response:
    """Whether the household has a PIN, and the form to set (or clear) it."""
    return render_page(request, "notices/portal_pin.html", _pin_ctx(session, household_id))


@router.post("/households/{household_id}/portal-pin")
def pin_set(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
            action: Annotated[str, Form(max_length=10)] = "set", pin: Annotated[str, Form(max_length=40)] = "",
            pin2: Annotated[str, Form(max_length=40)] = "") -> Response:
    """`set` the PIN typed twice, `random`: a PIN drawn here and shown once, `clear`: no PIN (no portal look-up)."""
    back = f"/households/{household_id}/portal-pin"
    with form_errors("notices/portal_pin.html", lambda s: _pin_ctx(s, household_id)):
        if action == "clear":
            pins.clear_pin(session, p.actor(), household_id)
            return redirect(back, request, "已清除查询密码：这户在公开页面上查不到自己的积分了")
        if action == "random":
            new = pins.random_pin()
            pins.set_pin(session, p.actor(), household_id, new)
            response = render_page(request, "notices/portal_pin.html", _pin_ctx(session, household_id, shown=new))
            response.headers["Cache-Control"] = "no-store"
            return response
        pin, pin2 = pin.strip(), pin2.strip()
        if pin and pin != pin2:
            raise ValidationFailed("两次输入的查询密码不一致，请重新输入", details={"field": "pin2"})
        pins.set_pin(session, p.actor(), household_id, pin)
    return redirect(back, request, "已设置查询密码：请把密码当面告诉农户，农户凭积分卡上的卡号和这个密码查询自己的积分")
