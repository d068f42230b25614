"""Rendering errors: JSON under /api (DESIGN §7 shape), a Chinese page elsewhere. No input ever yields a bare 500."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.audit import service as audit
from app.core.context import Actor
from app.core.text import bad_character, visible
from app.errors import AppError, FormRejected, NotAuthenticated, PermissionDenied, ValidationFailed
from app.logs import log
from app.web.templates import login_redirect, render, wants_json

FIELD_NAMES = {
    "login": "登录名", "password": "密码", "display_name": "姓名", "phone": "手机号", "name": "名称",
    "code": "代码", "number": "编号", "township_id": "乡镇", "village_id": "村", "role": "角色",
    "current_password": "当前密码", "new_password": "新密码", "store_id": "超市", "household_id": "农户",
    "days": "有效期", "grant_id": "授权", "active": "状态", "body": "请求内容",
    "amount": "积分", "points": "积分", "reason": "原因", "memo": "摘要", "reference": "来源",
    "expiry_rule": "有效期规则", "expiry_months": "月数", "Idempotency-Key": "幂等键（Idempotency-Key）",
    "lines": "商品明细", "item_id": "商品", "quantity": "数量", "card": "积分卡", "identity_note": "身份核对说明",
    "expected_points": "合计积分", "daily_limit": "每日上限", "day": "日期", "year": "年份",
}

PYDANTIC_MESSAGES = {
    "missing": "必须填写",
    "string_too_long": "太长：最多 {max_length} 个字符",
    "string_too_short": "太短：至少 {min_length} 个字符",
    "int_parsing": "必须是整数",
    "int_type": "必须是整数（不加引号，不能是 true/false 或小数）",
    "int_from_float": "必须是整数",
    "bool_parsing": "必须是 是/否（true/false）",
    "bool_type": "必须是 是/否（true/false，不加引号）",
    "string_type": "必须是文字",
    "string_pattern_mismatch": "格式不正确",
    "greater_than_equal": "不能小于 {ge}",
    "less_than_equal": "不能大于 {le}",
    "greater_than": "必须大于 {gt}",
    "less_than": "必须小于 {lt}",
    "json_invalid": "不是合法的 JSON",
    "model_attributes_type": "格式不正确",
    "dict_type": "必须是 JSON 对象",
    "list_type": "必须是列表",
    "enum": "取值不在允许范围内",
    "literal_error": "取值不在允许范围内",
    "extra_forbidden": "是不认识的字段",
    "date_from_datetime_parsing": "不是合法的日期",
    "date_parsing": "不是合法的日期（格式：2026-01-31）",
    "value_error": "不合法",
}


def translate_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    details: list[dict[str, Any]] = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path", "header", "form")]
        field = loc[-1] if loc else "body"
        label = FIELD_NAMES.get(field, field)
        template = PYDANTIC_MESSAGES.get(e.get("type", ""), "不合法")
        try:
            msg = template.format(**(e.get("ctx") or {}))
        except (KeyError, IndexError):
            msg = template
        if e.get("type") == "json_invalid":
            details.append({"field": "body", "message": "请求内容不是合法的 JSON，请检查括号、引号和逗号"})
        else:
            details.append({"field": ".".join(loc) or "body", "message": f"{label}{msg}"})
    summary = "；".join(d["message"] for d in details[:5]) or "提交的内容不合法"
    return "提交的内容有误：" + summary, details


# ---- text input: one check for every route --------------------------------------------------------------------------

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _refuse(field: str, what: str) -> ValidationFailed:
    label = FIELD_NAMES.get(field, visible(field)[:40] or "请求内容")
    message = f"“{label}”里有{what}：请删去后重新提交"
    return ValidationFailed("提交的内容有误：" + message, details=[{"field": visible(field)[:100], "message": message}])


def _check_pairs(pairs: Any) -> None:
    for key, value in pairs:
        for text in (key, value):
            if isinstance(text, str) and (what := bad_character(text)):
                raise _refuse(str(key), what)


def _check_json(data: Any) -> None:
    """Every key and string of a JSON document, without recursion (a document may nest hundreds deep)."""
    stack: list[tuple[str, Any]] = [("body", data)]
    while stack:
        field, value = stack.pop()
        if isinstance(value, str):
            if what := bad_character(value):
                raise _refuse(field, what)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and (what := bad_character(k)):
                    raise _refuse(k, what)
                stack.append((str(k), v))
        elif isinstance(value, list):
            stack.extend((field, v) for v in value)


async def refuse_bad_characters(request: Request) -> None:
    """A dependency of every route (before authentication and before the database session): a NUL, another control
    character (but tab, LF, CR) or a lone surrogate in the query, the path, a form field or a JSON string is bad input,
    a 422 naming the field, on SQLite exactly as on PostgreSQL (which refuses NUL in any text). Files are not text
    here: their readers check what they read, naming the row or line."""
    _check_pairs(request.query_params.multi_items())
    _check_pairs(request.path_params.items())
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(FORM_TYPES):
        if request._form is None:  # not parsed yet: keep the raw body for a route that reads it itself
            await request.body()
        form = await request.form()
        _check_pairs((k, v) for k, v in form.multi_items() if isinstance(v, str))
    elif ctype.startswith(JSON_TYPES) or ("+json" in ctype.split(";")[0]):
        body = await request.body()
        if not body:
            return
        try:
            data = await request.json()
        except (ValueError, RecursionError):  # not JSON: the route's own parsing says so
            return
        _check_json(data)


def _error_json(status: int, code: str, message: str, details: Any = None,
                headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status,
                        headers=headers)


def back_link(request: Request) -> str | None:
    """Where "返回上一页" may lead: the Referer only when it is a page of this site, as a path ("/households?page=2").
    A Referer naming another host, a scheme-relative "//evil.example" or "/\\evil.example" (browsers read both
    as another host) or a "javascript:" URL is never put in a link."""
    referer = request.headers.get("referer") or ""
    if not referer or len(referer) > 2000 or any(ord(ch) < 0x20 or ch == "\x7f" for ch in referer):
        return None
    try:
        parts = urlsplit(referer)
    except ValueError:
        return None
    same_site = parts.scheme in ("http", "https") and parts.netloc.lower() == (request.headers.get("host") or "").lower()
    if (parts.scheme or parts.netloc) and not same_site:  # an absolute URL: only one naming this very site
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        return None
    return path


def _error_page(request: Request, status: int, message: str) -> Response:
    titles = {400: "请求有误", 401: "请先登录", 403: "无法提交", 404: "未找到", 405: "不支持的操作",
              409: "操作冲突", 413: "内容过大", 422: "内容有误", 429: "操作过于频繁", 500: "系统出错",
              503: "系统繁忙"}
    return render(request, "error.html", {"status": status, "title": titles.get(status, "出错了"),
                                          "message": message, "back": back_link(request)}, status_code=status)


def _record_denial(request: Request, exc: PermissionDenied) -> None:
    principal = getattr(request.state, "principal", None)
    actor = principal.actor() if principal else Actor.anonymous(getattr(request.state, "request_id", None))
    with request.app.state.db.write_txn() as session:
        audit.record(session, actor, "auth.denied", object_type=exc.object_type, object_id=exc.object_id,
                     note=f"{request.method} {request.url.path} 需要权限 {exc.permission}")


def _render_rejected_form(request: Request, exc: FormRejected) -> Response:
    with request.app.state.db.read_txn() as session:
        context = exc.context(session)
        response = render(request, exc.template, {**context, "error": exc.message, "error_details": exc.details},
                          status_code=exc.status)
    response.headers["Cache-Control"] = "no-store"  # the page holds what the user typed
    return response


async def app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if isinstance(exc, PermissionDenied):
        await run_in_threadpool(_record_denial, request, exc)
    if isinstance(exc, FormRejected):
        return await run_in_threadpool(_render_rejected_form, request, exc)
    if wants_json(request):
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
        return _error_json(exc.status, exc.code, exc.message, exc.details, headers)
    if isinstance(exc, NotAuthenticated) and request.method in ("GET", "HEAD"):
        return login_redirect(request)
    return _error_page(request, exc.status, exc.message)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message, details = translate_validation(list(exc.errors()))
    if wants_json(request):
        return _error_json(422, "invalid", message, details)
    return _error_page(request, 422, message)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    messages = {404: "未找到该页面或对象", 405: "不支持这种请求方式", 400: "请求格式不正确"}
    message = messages.get(exc.status_code, str(exc.detail) if exc.detail else "请求有误")
    if wants_json(request):
        code = {413: "too_large", 408: "timeout"}.get(exc.status_code, f"http_{exc.status_code}")
        return _error_json(exc.status_code, code, message)
    return _error_page(request, exc.status_code, message)


def _out_of_range(exc: BaseException) -> bool:
    """A number too large for the database's integer columns (PostgreSQL: integer out of range; SQLite: the
    driver's OverflowError)."""
    orig = getattr(exc, "orig", None)
    if isinstance(exc, OverflowError) or isinstance(orig, OverflowError):
        return True
    return isinstance(exc, DataError) and "out of range" in str(orig or exc)


UNAVAILABLE_MESSAGE = "系统繁忙或数据库暂时连不上，这次操作没有保存。请过几秒钟再试一次"
NUL_MESSAGE = "文字里不能有空字符（\\0）：请删去后重新提交"


def _unavailable(exc: Exception) -> bool:
    """The database could not be reached, or did not answer in time: a lock waited for longer than the connection's
    lock timeout, no pooled connection came free, the server restarted under the request. Nothing was saved (the
    transaction is rolled back), and the same request a little later will do."""
    return isinstance(exc, SATimeoutError | InterfaceError | OperationalError)


def _nul(exc: Exception) -> bool:
    """NUL in text (PostgreSQL: "invalid byte sequence … 0x00"; in JSON: "unsupported Unicode escape sequence …
    \\u0000"); the same refusal the SQLite engine makes (app/db.py)."""
    orig = str(getattr(exc, "orig", None) or exc)
    return isinstance(exc, DataError) and ("0x00" in orig or "\\u0000" in orig)


async def database_error_handler(request: Request, exc: Exception) -> Response:
    """An id or number beyond the database's range is bad input (422); a unique key taken by a concurrent request
    is a conflict (409); a database that is busy or away is 503 with Retry-After. None is a server error."""
    if _unavailable(exc):
        log.warning("database_unavailable", path=request.url.path, error_type=type(exc).__name__,
                    error=str(getattr(exc, "orig", None) or exc)[:300])
        if wants_json(request):
            return _error_json(503, "unavailable", UNAVAILABLE_MESSAGE, headers={"Retry-After": "5"})
        page = _error_page(request, 503, UNAVAILABLE_MESSAGE)
        page.headers["Retry-After"] = "5"
        return page
    if _nul(exc):
        if wants_json(request):
            return _error_json(422, "invalid", NUL_MESSAGE)
        return _error_page(request, 422, NUL_MESSAGE)
    if isinstance(exc, IntegrityError):
        message = "提交时数据已被其他人修改（编号或身份证号已被占用），没有保存。请刷新页面后重试"
        if wants_json(request):
            return _error_json(409, "conflict", message)
        return _error_page(request, 409, message)
    if not _out_of_range(exc):
        return await unhandled_error_handler(request, exc)
    message = "数字超出允许的范围：编号等整数不能超过 2147483647，请检查输入"
    if wants_json(request):
        return _error_json(422, "out_of_range", message)
    return _error_page(request, 422, message)


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
    message = "系统内部出错，操作没有保存。请稍后重试；如果反复出现，请把页面右下角的请求编号告诉管理员"
    if wants_json(request):
        return _error_json(500, "internal", message, {"request_id": getattr(request.state, "request_id", None)})
    return _error_page(request, 500, message)
