"""Who is asking, and may they: `authorize(perm)` is the one permission check that every route declares.

- The principal comes from the session cookie or an `Authorization: Bearer` API token.
- Unsafe methods with a session cookie need the CSRF token (form field `csrf_token` or header `X-CSRF-Token`).
- Path parameters naming an object (`township_id`, `village_id`, `group_id`, `user_id` …) are resolved to the
  object's place in the tree; an object outside the user's scope, or a route the role may not use, answers 404
  exactly like a missing object, and the denial is audited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.permissions import Perm
from app.auth.security import same
from app.auth.service import accounts as auth
from app.core.scope import Scope
from app.deps import SAFE_METHODS, DbSession, write_after_read
from app.errors import CsrfFailed, NotAuthenticated, NotFound, PermissionDenied
from app.households.service import households
from app.logs import log
from app.org import service as org

SESSION_COOKIE = "zf_session"

ScopeResolver = Callable[[Session, int], Scope | None]

# Path parameter -> how to find where that object lives. Domains add theirs with `register_scope_resolver`.
SCOPE_RESOLVERS: dict[str, ScopeResolver] = {
    "township_id": org.scope_of_township,
    "village_id": org.scope_of_village,
    "group_id": org.scope_of_group,
    "store_id": org.scope_of_store,
    "household_id": households.scope_of_household,
    "member_id": households.scope_of_member,
}


def register_scope_resolver(param: str, resolver: ScopeResolver) -> None:
    SCOPE_RESOLVERS[param] = resolver


def _user_scope(session: Session, user_id: int) -> Scope | None:
    return Scope() if session.get(auth.User, user_id) is not None else None


def _grant_scope(session: Session, grant_id: int) -> Scope | None:
    return Scope() if session.get(auth.RoleGrant, grant_id) is not None else None


SCOPE_RESOLVERS["user_id"] = _user_scope
SCOPE_RESOLVERS["grant_id"] = _grant_scope


def request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _token_prefix(raw: str) -> str | None:
    """The public part of an API token (`zf_<prefix>_...`), when the value has that shape: enough to find the token
    in the account page, useless to sign in with."""
    parts = raw.split("_", 2)
    if len(parts) == 3 and parts[0] == auth.TOKEN_PREFIX and parts[1].isalnum() and len(parts[1]) <= 16:
        return parts[1]
    return None


def current_principal(request: Request, session: DbSession) -> auth.Principal | None:
    """The signed-in user, or None. Also remembered on request.state for error pages and audit."""
    if hasattr(request.state, "principal"):
        return request.state.principal
    principal: auth.Principal | None = None
    header = request.headers.get("authorization", "")
    rid, ip = request_id(request), client_ip(request)
    if header.lower().startswith("bearer "):
        raw = header[7:].strip()
        try:
            principal = auth.principal_from_token(session, raw, request_id=rid, ip=ip)
        except NotAuthenticated as e:
            # every refused credential is logged (never the token: at most its public prefix), ASVS 7.2.1
            log.warning("auth.token_refused", reason=e.message, token_prefix=_token_prefix(raw), ip=ip,
                        method=request.method, path=request.url.path)
            raise
    else:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            found = auth.principal_from_session(session, request.app.state.settings, token, request_id=rid, ip=ip)
            principal = found.principal
            request.state.session_problem = found.reason
            if found.reason:
                log.info("auth.session_refused", reason=found.reason, ip=ip, method=request.method,
                         path=request.url.path)
            if found.needs_touch and principal is not None and principal.session_id is not None:
                write_after_read(request, session, partial(_touch, session_id=principal.session_id))
    request.state.principal = principal
    return principal


def _touch(ws: Session, *, session_id: int) -> None:
    auth.touch_session(ws, session_id)


OptionalPrincipal = Annotated[auth.Principal | None, Depends(current_principal)]


async def _check_csrf(request: Request, principal: auth.Principal) -> None:
    if request.method in SAFE_METHODS or principal.via != "session":
        return
    sent = request.headers.get("x-csrf-token")
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
    if not same(sent, principal.csrf_token):
        raise CsrfFailed()


def authorize(perm: Perm) -> Callable[..., Awaitable[Any]]:
    """The dependency a route declares: `p: Principal = Depends(authorize(Perm.ORG_VIEW))`."""

    async def dependency(request: Request, session: DbSession, principal: OptionalPrincipal) -> Any:
        if perm is Perm.PUBLIC:
            return principal
        if principal is None:
            reason = getattr(request.state, "session_problem", None)
            raise NotAuthenticated(reason or "请先登录")
        await _check_csrf(request, principal)
        if not principal.can(perm):
            raise PermissionDenied(perm.value)
        for name, value in request.path_params.items():
            resolver = SCOPE_RESOLVERS.get(name)
            if resolver is None:
                continue
            try:
                object_id = int(value)
            except (TypeError, ValueError):
                raise NotFound() from None
            if not 0 < object_id < 2**31:  # no such id, and one the database could not even compare
                raise NotFound()
            scope = await run_in_threadpool(resolver, session, object_id)  # a query: never on the event loop
            if scope is None:
                raise NotFound()
            if not principal.covers(perm, scope):
                raise PermissionDenied(perm.value, object_type=name.removesuffix("_id"), object_id=object_id)
        return principal

    dependency.zf_permission = perm  # type: ignore[attr-defined]
    return dependency


def declared_permission(route: Any) -> Perm | None:
    """The permission a route declared through `authorize` (None if it declared none)."""
    dependant = getattr(route, "dependant", None)
    stack = [dependant] if dependant is not None else []
    while stack:
        d = stack.pop()
        perm = getattr(d.call, "zf_permission", None)
        if perm is not None:
            return perm
        stack.extend(d.dependencies)
    return None
