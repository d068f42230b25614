"""The application's error family. Every error carries a stable code and a Chinese message that says what to fix.

Rendered as `{"error": {"code", "message", "details"}}` under /api and as a page elsewhere (see app/web/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar


class AppError(Exception):
    status = 400
    code = "bad_request"
    # True for a refusal that is itself recorded (a lost card presented at the counter): the request's transaction
    # commits what was written before it was raised, the audit event of the refusal and nothing else.
    keep_writes = False

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.details = details


class ValidationFailed(AppError):
    status = 422
    code = "invalid"


class NotFound(AppError):
    """Also what a user sees for an object outside his or her scope: ids leak nothing."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "未找到该对象，或您没有查看它的权限", **kw: Any) -> None:
        super().__init__(message, **kw)


T = TypeVar("T")


class _Gets(Protocol):
    def get(self, entity: type[T], ident: Any) -> T | None: ...


def get_or_not_found(session: _Gets, model: type[T], ident: Any, message: str | None = None) -> T:
    """The row of `model` with primary key `ident`, or NotFound (with `message`, else NotFound's own words)."""
    row = session.get(model, ident)
    if row is None:
        raise NotFound() if message is None else NotFound(message)
    return row


class PermissionDenied(NotFound):
    """A denial that is answered as 404 and written to the audit log by the request's session dependency."""

    code = "not_found"

    def __init__(self, permission: str, *, object_type: str | None = None, object_id: Any = None) -> None:
        super().__init__()
        self.permission = permission
        self.object_type = object_type
        self.object_id = object_id


class NotAuthenticated(AppError):
    status = 401
    code = "not_authenticated"

    def __init__(self, message: str = "请先登录", **kw: Any) -> None:
        super().__init__(message, **kw)


class CsrfFailed(AppError):
    status = 403
    code = "csrf_failed"

    def __init__(self, message: str = "表单已过期或来源不明（CSRF 校验失败），请刷新页面后重新提交", **kw: Any) -> None:
        super().__init__(message, **kw)


class Conflict(AppError):
    status = 409
    code = "conflict"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"


class FormRejected(AppError):
    """A form that did not pass: the page is shown again with the user's input and the reason.

    Raised (not returned) so that the request's transaction is rolled back before the page is rendered; the page's
    context is then built by `context(session)` in a fresh read session (objects of the rolled-back one are stale).
    """

    def __init__(self, error: AppError, template: str, context: Callable[[Any], dict[str, Any]]) -> None:
        super().__init__(error.message, code=error.code, status=error.status, details=error.details)
        self.template = template
        self.context = context
        self.keep_writes = error.keep_writes


@contextmanager
def form_errors(template: str, context: Callable[[Any], dict[str, Any]]) -> Iterator[None]:
    """The work of a posted form: `with form_errors("org/village.html", lambda s: _village_ctx(s, p, village_id)):`.
    An AppError raised inside comes out as FormRejected: `template` is shown again with the reason, its context
    built by `context(session)` in a fresh read session (pass the user's input in it to keep what was typed)."""
    try:
        yield
    except AppError as e:
        raise FormRejected(e, template, context) from e
