"""Pages: login, logout, the home page, one's own account, and the county admin's account management."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.auth.deps import SESSION_COOKIE, authorize, client_ip, request_id
from app.auth.models import ROLE_LABELS, Role
from app.auth.permissions import Perm
from app.auth.security import generate_password, same
from app.auth.service import accounts as auth
from app.auth.service import throttle
from app.config import Settings
from app.deps import DbSession, pause_before_write
from app.errors import AppError, CsrfFailed, FormRejected, form_errors
from app.org import service as org
from app.web.templates import ANON_CSRF_COOKIE, LARGE_FONT_COOKIE, LOCALE_COOKIE, redirect, render

router = APIRouter(include_in_schema=False)

Public = Depends(authorize(Perm.PUBLIC))
SignedIn = Depends(authorize(Perm.SIGNED_IN))
UsersManage = Depends(authorize(Perm.USERS_MANAGE))


def _private(response: Response) -> Response:
    """Pages with an account's details or a secret shown once (a new token, a temporary password): no browser or
    proxy keeps a copy that the back button or the next user of a shared village PC could bring back."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target: str | None) -> str:
    """Only local paths: a crafted ?next= must not send the user to another site."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if (parsed.scheme or parsed.netloc or not target.startswith("/") or target[1:2] in ("/", "\\")
            or "\\" in target or any(ord(c) < 32 for c in target)):
        return "/"  # browsers read /\host as //host
    return target


@router.get("/login")
def login_form(request: Request, p: auth.Principal | None = Public, next: str | None = None) -> Response:
    if p is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "auth/login.html", {"next": _safe_next(next)})


async def _login_wait(request: Request) -> throttle.Slowdown:
    """The wait before this login's password is checked, when the account failed lately from other addresses:
    served here, before the request's database session opens (this dependency is declared before it), so a waiting
    login holds no connection, transaction or thread. Nothing is waited for a form that will be refused anyway."""
    form = await request.form()
    name, token = form.get("login"), form.get("csrf_token")
    if not isinstance(name, str) or not isinstance(token, str) or not same(token, request.cookies.get(ANON_CSRF_COOKIE)):
        return throttle.NO_WAIT
    settings, ip = request.app.state.settings, client_ip(request)
    return await pause_before_write(request, lambda s: auth.login_slowdown(s, settings, login=name[:100], ip=ip))


@router.post("/login")
def login_submit(
    request: Request,
    slowed: Annotated[throttle.Slowdown, Depends(_login_wait)],  # before the session: see _login_wait
    session: DbSession,
    login: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
    _p: auth.Principal | None = Public,
) -> Response:
    ctx = {"next": _safe_next(next), "login": login[:40]}
    if not same(csrf_token, request.cookies.get(ANON_CSRF_COOKIE)):
        raise FormRejected(CsrfFailed(), "auth/login.html", lambda _s: ctx)
    try:
        result = auth.login(session, request.app.state.settings, login=login, password=password,
                            ip=client_ip(request), user_agent=request.headers.get("user-agent"),
                            request_id=request_id(request), slowed=slowed)
    except AppError as e:
        # The failed attempt and its audit event are kept: the page is returned, not raised.
        return render(request, "auth/login.html", {**ctx, "error": e.message}, status_code=e.status)
    settings = request.app.state.settings
    target = "/account?must_change=1" if result.principal.must_change_password else ctx["next"]
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, result.token, httponly=True, samesite="lax", secure=settings.cookie_secure,
                        max_age=settings.session_absolute_hours * 3600)
    response.delete_cookie(ANON_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, session: DbSession, p: auth.Principal = SignedIn) -> Response:
    auth.logout(session, p)
    response = redirect("/login", request, "您已安全退出")
    response.delete_cookie(SESSION_COOKIE)
    # the browser drops what it cached and stored for this site while signed in (a shared PC in the village office)
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


@router.post("/preferences/display")
def anonymous_display(request: Request, large_font: Annotated[str, Form(max_length=5)] = "0",
                      locale: Annotated[str, Form(max_length=10)] = "", back: Annotated[str, Form(max_length=500)] = "/",
                      _p: auth.Principal | None = Public) -> Response:
    """Large-font mode and language for visitors who are not signed in (remembered in this browser)."""
    response = RedirectResponse(_safe_next(back), status_code=303)
    response.set_cookie(LARGE_FONT_COOKIE, "1" if large_font == "1" else "0", max_age=365 * 86400, samesite="lax")
    if locale in ("zh_CN", "en"):
        response.set_cookie(LOCALE_COOKIE, locale, max_age=365 * 86400, samesite="lax")
    return response


@router.get("/")
def home(request: Request, session: DbSession, p: auth.Principal | None = Public) -> Response:
    if p is None:
        return RedirectResponse("/login", status_code=303)
    return render(request, "home.html", {"grants": p.grants})


# ---- own account --------------------------------------------------------------------------------------------------

def _account_ctx(session: DbSession, p: auth.Principal, settings: Settings, **extra: object) -> dict[str, object]:
    return {"user": auth.get_user(session, p.user_id), "tokens": auth.list_api_tokens(session, p.user_id),
            "grants": p.grants, "sessions": auth.active_sessions(session, settings, p.user_id),
            "current_session_id": p.session_id, **extra}


@router.get("/account")
def account(request: Request, session: DbSession, p: auth.Principal = SignedIn,
            must_change: Annotated[int, Query(ge=0, le=1)] = 0) -> Response:
    ctx = _account_ctx(session, p, request.app.state.settings, must_change=bool(must_change))
    return _private(render(request, "auth/account.html", ctx))


@router.post("/account/password")
def change_password(request: Request, session: DbSession, p: auth.Principal = SignedIn,
                    current_password: Annotated[str, Form(max_length=256)] = "",
                    new_password: Annotated[str, Form(max_length=256)] = "",
                    new_password2: Annotated[str, Form(max_length=256)] = "") -> Response:
    with form_errors("auth/account.html", lambda s: _account_ctx(s, p, request.app.state.settings)):
        if new_password != new_password2:
            from app.errors import ValidationFailed

            raise ValidationFailed("两次输入的新密码不一致", details={"field": "new_password2"})
        auth.change_own_password(session, p.actor(), p.user_id, current=current_password, new=new_password,
                                 keep_session_id=p.session_id)
    return redirect("/account", request, "密码已修改；您在其他设备上的登录已退出")


@router.post("/account/sessions/end-others")
def end_other_sessions(request: Request, session: DbSession, p: auth.Principal = SignedIn,
                       password: Annotated[str, Form(max_length=256)] = "") -> Response:
    with form_errors("auth/account.html", lambda s: _account_ctx(s, p, request.app.state.settings)):
        ended = auth.end_other_sessions(session, p.actor(), p.user_id, password=password,
                                        keep_session_id=p.session_id)
    return redirect("/account", request, f"已退出其他 {ended} 处登录" if ended else "没有其他设备在登录")


@router.post("/account/preferences")
def preferences(request: Request, session: DbSession, p: auth.Principal = SignedIn,
                large_font: Annotated[str, Form(max_length=5)] = "",
                locale: Annotated[str, Form(max_length=10)] = "",
                back: Annotated[str, Form(max_length=500)] = "/account") -> Response:
    auth.set_preferences(session, p.actor(), p.user_id,
                         large_font=(large_font == "1") if large_font in ("0", "1") else None,
                         locale=locale or None)
    response = redirect(_safe_next(back), request, "显示设置已保存")
    if locale in ("zh_CN", "en"):
        response.set_cookie(LOCALE_COOKIE, locale, max_age=365 * 86400, samesite="lax")
    return response


@router.post("/account/tokens")
def create_token(request: Request, session: DbSession, p: auth.Principal = SignedIn,
                 name: Annotated[str, Form(max_length=100)] = "",
                 grant_id: Annotated[int, Form()] = 0,
                 days: Annotated[int, Form(ge=1, le=3650)] = 365) -> Response:
    with form_errors("auth/account.html", lambda s: _account_ctx(s, p, request.app.state.settings)):
        new = auth.create_api_token(session, p.actor(), user_id=p.user_id, grant_id=grant_id, name=name, days=days,
                                    via=p.via)
    ctx = _account_ctx(session, p, request.app.state.settings, new_token=new.secret)
    return _private(render(request, "auth/account.html", ctx))


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(request: Request, session: DbSession, token_id: int, p: auth.Principal = SignedIn) -> Response:
    auth.revoke_api_token(session, p.actor(), user_id=p.user_id, token_id=token_id, via=p.via)
    return redirect("/account", request, "令牌已吊销")


# ---- county admin: accounts and grants ----------------------------------------------------------------------------

def _scope_choices(session: DbSession, p: auth.Principal) -> dict[str, object]:
    flt = p.filter(Perm.USERS_MANAGE)
    return {"townships": org.list_townships(session, flt), "villages": org.list_villages(session, flt),
            "stores": org.list_stores(session, flt), "roles": [(r.value, ROLE_LABELS[r]) for r in Role]}


@router.get("/admin/users")
def users_page(request: Request, session: DbSession, p: auth.Principal = UsersManage,
               q: Annotated[str | None, Query(max_length=40)] = None,
               page: Annotated[int, Query(ge=1, le=100000)] = 1) -> Response:
    return _private(render(request, "auth/users.html", _users_ctx(session, q=q, page=page)))


def _users_ctx(session: DbSession, *, q: str | None = None, page: int = 1, **extra: object) -> dict[str, object]:
    rows, total = auth.list_users(session, q=q, offset=(page - 1) * 50, limit=50)
    return {"users": rows, "total": total, "q": q or "", "page": page, "pages": max(1, (total + 49) // 50), **extra}


@router.post("/admin/users")
def create_user(request: Request, session: DbSession, p: auth.Principal = UsersManage,
                login: Annotated[str, Form(max_length=40)] = "",
                display_name: Annotated[str, Form(max_length=40)] = "",
                phone: Annotated[str, Form(max_length=20)] = "") -> Response:
    password = generate_password()
    form = {"login": login, "display_name": display_name, "phone": phone}
    with form_errors("auth/users.html", lambda s: _users_ctx(s, form=form)):
        user = auth.create_user(session, p.actor(), login=login, display_name=display_name, password=password,
                                phone=phone or None)
    return _private(render(request, "auth/user_detail.html", {"user": user, "grants": [], "new_password": password,
                                                              **_scope_choices(session, p)}))


@router.get("/admin/users/{user_id}")
def user_page(request: Request, session: DbSession, user_id: int, p: auth.Principal = UsersManage) -> Response:
    return _private(render(request, "auth/user_detail.html", {"user": auth.get_user(session, user_id),
                                                              "grants": auth.grant_views(session, user_id),
                                                              **_scope_choices(session, p)}))


def _user_ctx(session: DbSession, p: auth.Principal, user_id: int) -> dict[str, object]:
    return {"user": auth.get_user(session, user_id), "grants": auth.grant_views(session, user_id),
            **_scope_choices(session, p)}


@router.post("/admin/users/{user_id}")
def update_user(request: Request, session: DbSession, user_id: int, p: auth.Principal = UsersManage,
                display_name: Annotated[str, Form(max_length=40)] = "",
                phone: Annotated[str, Form(max_length=20)] = "") -> Response:
    with form_errors("auth/user_detail.html", lambda s: _user_ctx(s, p, user_id)):
        auth.update_user(session, p.actor(), user_id, display_name=display_name, phone=phone or None)
    return redirect(f"/admin/users/{user_id}", request, "已保存")


@router.post("/admin/users/{user_id}/active")
def set_active(request: Request, session: DbSession, user_id: int, p: auth.Principal = UsersManage,
               active: Annotated[str, Form(max_length=5)] = "0") -> Response:
    with form_errors("auth/user_detail.html", lambda s: _user_ctx(s, p, user_id)):
        auth.set_user_active(session, p.actor(), user_id, active == "1")
    return redirect(f"/admin/users/{user_id}", request, "账号已启用" if active == "1" else "账号已停用，其登录已全部退出")


@router.post("/admin/users/{user_id}/reset-password")
def reset_password(request: Request, session: DbSession, user_id: int, p: auth.Principal = UsersManage) -> Response:
    password = generate_password()
    auth.admin_reset_password(session, p.actor(), user_id, password)
    return _private(render(request, "auth/user_detail.html", {**_user_ctx(session, p, user_id),
                                                              "new_password": password}))


@router.post("/admin/users/{user_id}/grants")
def add_grant(request: Request, session: DbSession, user_id: int, p: auth.Principal = UsersManage,
              role: Annotated[str, Form(max_length=30)] = "",
              township_id: Annotated[int | None, Form()] = None,
              village_id: Annotated[int | None, Form()] = None,
              store_id: Annotated[int | None, Form()] = None,
              household_id: Annotated[int | None, Form()] = None,
              confirm: Annotated[str, Form(max_length=1)] = "") -> Response:
    """Two steps: the first checks the grant and shows in one sentence what it will give (将授予 张三 “… 超市管理员”),
    the second (确认授予) makes it. Nothing is granted from a form that was only filled in."""
    scope = {"township_id": township_id, "village_id": village_id, "store_id": store_id,
             "household_id": household_id}
    form = {"role": role, **scope}
    with form_errors("auth/user_detail.html", lambda s: {**_user_ctx(s, p, user_id), "form": form}):
        if confirm != "1":
            plan = auth.plan_grant(session, user_id, role, **scope)
            return _private(render(request, "auth/user_detail.html",
                                   {**_user_ctx(session, p, user_id), "form": form, "pending": plan}))
        g = auth.grant_role(session, p.actor(), user_id, role, **scope)
    what = next((v.label for v in auth.grant_views(session, user_id) if v.id == g.id), "")
    return redirect(f"/admin/users/{user_id}", request, f"已授予：{what}")


@router.post("/admin/grants/{grant_id}/revoke")
def revoke_grant(request: Request, session: DbSession, grant_id: int, p: auth.Principal = UsersManage) -> Response:
    g = auth.revoke_grant(session, p.actor(), grant_id)
    return redirect(f"/admin/users/{g.user_id}", request, "授权已撤销")
