"""Server-rendered pages: templates, filters, flash messages, navigation and the anonymous CSRF cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from jinja2_fragments.fastapi import Jinja2Blocks

from app.auth.models import ROLE_LABELS
from app.auth.permissions import Perm
from app.core.clock import format_local
from app.core.masking import mask_id_number, mask_phone
from app.web.i18n import pick_locale, translations

TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "templates"
env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=select_autoescape(["html"]),
                  extensions=["jinja2.ext.i18n"])
templates = Jinja2Blocks(env=env)
env.filters["dt"] = format_local
env.filters["mask_phone"] = mask_phone
env.filters["mask_id"] = mask_id_number
env.globals["ROLE_LABELS"] = ROLE_LABELS
env.globals["Perm"] = Perm

FLASH_COOKIE = "zf_flash"
ANON_CSRF_COOKIE = "zf_csrf"
LOCALE_COOKIE = "zf_lang"
LARGE_FONT_COOKIE = "zf_large"

# (label, url, permission): the navigation shows each user only what the roles allow.
NAV: list[tuple[str, str, Perm]] = [
    ("首页", "/", Perm.SIGNED_IN),
    ("农户", "/households", Perm.HOUSEHOLD_VIEW),
    ("积分", "/points", Perm.LEDGER_VIEW),
    ("评比", "/evaluation", Perm.EVAL_VIEW),
    ("红黑榜", "/lists", Perm.EVAL_VIEW),
    ("看板", "/dashboard", Perm.REPORTS_VIEW),
    ("公示", "/notices", Perm.NOTICES_VIEW),
    ("超市", "/stores", Perm.STORE_VIEW),
    ("积分细则", "/rulesets", Perm.RULESET_VIEW),
    ("行政区划", "/org", Perm.ORG_VIEW),
    ("账号管理", "/admin/users", Perm.USERS_MANAGE),
    ("审计日志", "/admin/audit", Perm.AUDIT_VIEW),
    ("我的账号", "/account", Perm.SIGNED_IN),
]


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]


def flash(response: Response, request: Request, message: str, kind: str = "success") -> None:
    """Show `message` on the next page this browser opens (a signed, short-lived cookie)."""
    payload = base64.urlsafe_b64encode(json.dumps([kind, message], ensure_ascii=False).encode()).decode()
    sig = _sign(request.app.state.settings.secret_key, payload)
    response.set_cookie(FLASH_COOKIE, f"{payload}.{sig}", max_age=60, httponly=True, samesite="lax",
                        secure=request.app.state.settings.cookie_secure)


def _pop_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw or "." not in raw:
        return None
    payload, sig = raw.rsplit(".", 1)
    if not hmac.compare_digest(sig, _sign(request.app.state.settings.secret_key, payload)):
        return None
    try:
        kind, message = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, TypeError):
        return None
    return str(kind), str(message)


def redirect(url: str, request: Request | None = None, message: str | None = None, kind: str = "success") -> Response:
    """303 after a POST (so a reload does not post again), optionally with a flash message."""
    response = RedirectResponse(url, status_code=303)
    if message and request is not None:
        flash(response, request, message, kind)
    return response


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


def anon_csrf_token(request: Request) -> str:
    token = request.cookies.get(ANON_CSRF_COOKIE)
    if not token:
        token = getattr(request.state, "new_anon_csrf", None)
    if not token:
        import secrets

        token = secrets.token_urlsafe(24)
        request.state.new_anon_csrf = token
    return token


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200,
           block_name: str | None = None) -> Response:
    principal = getattr(request.state, "principal", None)
    locale = pick_locale(request.cookies.get(LOCALE_COOKIE) or (principal.locale if principal else None),
                         request.headers.get("accept-language"))
    large = bool(principal.large_font) if principal else request.cookies.get(LARGE_FONT_COOKIE) == "1"
    t = translations(locale)
    ctx: dict[str, Any] = {
        "principal": principal,
        "csrf_token": principal.csrf_token if principal and principal.csrf_token else anon_csrf_token(request),
        "flash": _pop_flash(request),
        "locale": locale,
        "large_font": large,
        "nav": [(label, url) for label, url, perm in NAV if principal and principal.can(perm)],
        "current_path": request.url.path,
        "county_name": request.app.state.settings.county_name,
        "gettext": t.gettext,
        "ngettext": t.ngettext,
        "_": t.gettext,
    }
    ctx.update(context or {})
    if "nav_active" not in ctx:  # the entry whose address is the longest prefix of this page's (a page may say)
        matches = [url for _label, url in ctx["nav"] if request.url.path == url or request.url.path.startswith(url + "/")]
        ctx["nav_active"] = max(matches, key=len, default=None)
    if block_name:
        response = templates.TemplateResponse(request, template, ctx, status_code=status_code, block_name=block_name)
    else:
        response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    if ctx["flash"]:
        response.delete_cookie(FLASH_COOKIE)
    new_csrf = getattr(request.state, "new_anon_csrf", None)
    if new_csrf:
        response.set_cookie(ANON_CSRF_COOKIE, new_csrf, httponly=True, samesite="strict",
                            secure=request.app.state.settings.cookie_secure)
    return response


def download(content: tuple[bytes, str, str]) -> Response:
    """A file download from (bytes, file name, media type); the Chinese file name survives every browser."""
    data, filename, media_type = content
    return Response(data, media_type=media_type,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}"})


def wants_json(request: Request) -> bool:
    """The API, and a page's own script asking for JSON (the rating grid's autosave)."""
    return request.url.path.startswith("/api/") or request.headers.get("accept", "").startswith("application/json")
