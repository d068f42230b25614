"""Sessions, CSRF, login throttling, passwords, API tokens and production settings (DESIGN §8).

HTTP-visible behaviour is driven through TestClient; the rest through the services. conftest makes Argon2id cheap
for the suite (same algorithm, small cost); `test_passwords_are_argon2id` checks the production parameters.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import time
from collections import Counter
from datetime import timedelta
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app import deps
from app import models as _all_tables  # noqa: F401  (registers every table, for the PostgreSQL demo copy)
from app.audit.models import AuditEvent
from app.auth import security
from app.auth.models import ApiToken, LoginAttempt, User, UserSession
from app.auth.security import sha256_hex
from app.auth.service import accounts as auth_service
from app.config import Settings, UnsafeSettingsError
from app.core.clock import utcnow
from app.errors import NotAuthenticated, TooManyRequests
from app.main import create_app
from app.org.models import Township
from tests.support import clients as common
from tests.support import factories
from tests.support.clients import (
    SESSION_COOKIE,
    api_login,
    assert_api_error,
    count,
    events,
    form_login,
    grant_id_of,
    ids,
    new_client,
    user_id,
)
from tests.support.concurrency import at_once, count_checks
from tests.support.web import DEMO_PASSWORDS, TEST_SECRET, csrf_from, login

CSRF_MESSAGE = "CSRF 校验失败"

# shared fixtures (open test clients, the demo county from a template)
_client_stack = common._client_stack
db_url = common.db_url
demo = common.demo
app = common.app


# ---- helpers ------------------------------------------------------------------------------------------------------

def set_cookie_header(r, name: str = SESSION_COOKIE) -> str:  # type: ignore[no-untyped-def]
    found = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert found, f"no {name} cookie set: {r.headers.get_list('set-cookie')}"
    return found[0]


def cookie_value(r, name: str = SESSION_COOKIE) -> str:  # type: ignore[no-untyped-def]
    return set_cookie_header(r, name).split(";", 1)[0].split("=", 1)[1].strip('"')


def with_cookie(app, token: str) -> TestClient:  # type: ignore[no-untyped-def]
    return new_client(app, cookies={SESSION_COOKIE: token})


def sessions_of(db, login_name: str) -> list[UserSession]:  # type: ignore[no-untyped-def]
    uid = user_id(db, login_name)
    with db.read_txn() as s:
        return list(s.execute(select(UserSession).where(UserSession.user_id == uid).order_by(UserSession.id)).scalars())


# ---- sessions -----------------------------------------------------------------------------------------------------

def test_login_sets_httponly_samesite_cookie_and_stores_only_hash(client, demo, db):
    r = form_login(client, "clerk", DEMO_PASSWORDS["clerk"])
    assert r.status_code == 303
    header = set_cookie_header(r)
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in header.split(";")[1:]}
    assert "httponly" in attrs
    assert attrs["samesite"].lower() in ("samesite=lax", "samesite=strict")
    raw = cookie_value(r)
    assert len(raw) >= 32
    (row,) = sessions_of(db, "clerk")
    assert row.token_hash == sha256_hex(raw)
    assert raw not in {str(getattr(row, c)) for c in UserSession.model_fields}
    assert client.get("/api/v1/me").json()["login"] == "clerk"


def test_new_session_id_at_every_login(app, demo, db):
    fixated = "attacker-chosen-session-value-0123456789"
    c = new_client(app, cookies={SESSION_COOKIE: fixated})
    r1 = form_login(c, "clerk", DEMO_PASSWORDS["clerk"])
    assert r1.status_code == 303
    t1 = cookie_value(r1)
    assert t1 != fixated
    r2 = form_login(new_client(app), "clerk", DEMO_PASSWORDS["clerk"])
    t2 = cookie_value(r2)
    assert t1 != t2
    hashes = {s.token_hash for s in sessions_of(db, "clerk")}
    assert hashes == {sha256_hex(t1), sha256_hex(t2)}
    assert sha256_hex(fixated) not in hashes
    assert with_cookie(app, fixated).get("/api/v1/me").status_code == 401
    assert with_cookie(app, t1).get("/api/v1/me").status_code == 200


def test_logout_revokes_session_even_if_cookie_replayed(app, demo, db):
    c = new_client(app)
    csrf = login(c, "clerk")
    (row,) = sessions_of(db, "clerk")
    raw = c.cookies.get(SESSION_COOKIE)
    assert c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert sessions_of(db, "clerk")[0].revoked_at is not None
    replay = with_cookie(app, raw)
    assert_api_error(replay.get("/api/v1/me"), 401, text="会话已失效")
    r = replay.get("/account", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert row.revoked_at is None and sessions_of(db, "clerk")[0].id == row.id


def test_deactivating_a_user_revokes_all_his_sessions(app, demo, db):
    clerk_a, clerk_b = api_login(app, "clerk"), api_login(app, "clerk")
    assert clerk_a.get("/api/v1/me").status_code == 200
    admin = api_login(app, "admin")
    r = admin.put(f"/api/v1/users/{user_id(db, 'clerk')}/active", json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    assert all(s.revoked_at is not None for s in sessions_of(db, "clerk"))
    for c in (clerk_a, clerk_b):
        assert_api_error(c.get("/api/v1/me"), 401)
        r = c.get("/org", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert admin.get("/api/v1/me").status_code == 200


@pytest.mark.parametrize("column", ["last_seen_at", "expires_at"])
def test_idle_and_absolute_expiry_end_the_session(app, demo, db, settings, column):
    c = new_client(app)
    csrf = login(c, "clerk")
    assert c.get("/api/v1/me").status_code == 200
    if column == "last_seen_at":
        value = utcnow() - timedelta(minutes=settings.session_idle_minutes, seconds=5)
    else:
        value = utcnow() - timedelta(seconds=1)
    with db.write_txn() as s:
        s.execute(update(UserSession).values(**{column: value}))
    reason = "长时间未操作，已自动退出，请重新登录"
    assert_api_error(c.get("/api/v1/me"), 401, code="not_authenticated", text=reason)
    before = count(db, AuditEvent)
    r = c.post("/account/preferences", data={"csrf_token": csrf, "large_font": "1"}, follow_redirects=False)
    assert r.status_code == 401 and reason in r.text
    assert count(db, AuditEvent) == before
    with db.read_txn() as s:
        assert s.get(User, user_id(db, "clerk")).large_font is False  # type: ignore[union-attr]
    r = c.get("/account", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/account"


def test_session_within_limits_is_kept_and_touched(app, demo, db, settings):
    c = new_client(app)
    login(c, "clerk")
    old = utcnow() - timedelta(minutes=settings.session_idle_minutes - 1)
    with db.write_txn() as s:
        s.execute(update(UserSession).values(last_seen_at=old))
    assert c.get("/api/v1/me").status_code == 200
    assert sessions_of(db, "clerk")[0].last_seen_at > old + timedelta(minutes=1)


# ---- CSRF ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sent", [None, "wrong-token"])
def test_html_post_without_right_csrf_token_is_refused(app, demo, db, sent):
    c = new_client(app)
    login(c, "admin")
    data = {"code": "341000301", "name": "新设镇"}
    if sent is not None:
        data["csrf_token"] = sent
    before = count(db, Township), count(db, AuditEvent)
    r = c.post("/org/townships", data=data, follow_redirects=False)
    assert r.status_code == 403 and CSRF_MESSAGE in r.text
    r = c.post("/account/preferences", data={k: v for k, v in {"csrf_token": sent, "large_font": "1"}.items() if v},
               follow_redirects=False)
    assert r.status_code == 403 and CSRF_MESSAGE in r.text
    assert (count(db, Township), count(db, AuditEvent)) == before
    with db.read_txn() as s:
        assert s.get(User, user_id(db, "admin")).large_font is False  # type: ignore[union-attr]


def test_html_post_with_right_csrf_token_works(app, demo, db):
    c = new_client(app)
    csrf = login(c, "admin")
    r = c.post("/org/townships", data={"code": "341000301", "name": "新设镇", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303
    with db.read_txn() as s:
        assert s.execute(select(Township).where(Township.code == "341000301")).scalar_one().name == "新设镇"
    r = c.post("/account/preferences", data={"csrf_token": csrf, "large_font": "1"}, follow_redirects=False)
    assert r.status_code == 303
    with db.read_txn() as s:
        assert s.get(User, user_id(db, "admin")).large_font is True  # type: ignore[union-attr]


def test_json_with_session_cookie_needs_csrf_header(app, demo, db):
    c = new_client(app)
    csrf = login(c, "admin")
    body = {"code": "341000301", "name": "新设镇"}
    assert_api_error(c.post("/api/v1/townships", json=body), 403, code="csrf_failed", text=CSRF_MESSAGE)
    assert_api_error(c.post("/api/v1/townships", json=body, headers={"X-CSRF-Token": "nope"}), 403)
    assert count(db, Township) == 2
    assert c.post("/api/v1/townships", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_csrf_token_of_another_session_is_refused(app, demo, db):
    a, b = new_client(app), new_client(app)
    login(a, "admin")
    csrf_b = login(b, "admin")
    r = a.post("/org/townships", data={"code": "341000301", "name": "新设镇", "csrf_token": csrf_b})
    assert r.status_code == 403
    assert count(db, Township) == 2


@pytest.mark.parametrize("sent", [None, "wrong-token"])
def test_login_form_refuses_missing_or_wrong_anonymous_csrf(app, demo, db, sent):
    c = new_client(app)
    c.get("/login")  # sets the anonymous CSRF cookie
    data = {"login": "clerk", "password": DEMO_PASSWORDS["clerk"]}
    if sent:
        data["csrf_token"] = sent
    r = c.post("/login", data=data, follow_redirects=False)
    assert r.status_code == 403 and CSRF_MESSAGE in r.text
    assert SESSION_COOKIE not in " ".join(r.headers.get_list("set-cookie"))
    assert 'value="clerk"' in r.text  # the form comes back with what was typed
    assert count(db, UserSession) == 0 and count(db, LoginAttempt) == 0
    # without the cookie at all, a token in the form is not enough either
    bare = new_client(app)
    r = bare.post("/login", data={**data, "csrf_token": "made-up"}, follow_redirects=False)
    assert r.status_code == 403
    assert count(db, UserSession) == 0


# ---- throttling ---------------------------------------------------------------------------------------------------

def test_account_throttle_refuses_even_right_password(app, demo, db, settings):
    n = settings.login_max_failures_per_account
    c = new_client(app)
    tok = csrf_from(c.get("/login").text)
    for _ in range(n):
        r = form_login(c, "clerk", "not-the-password", tok)
        assert r.status_code == 401 and "登录名或密码不正确" in r.text
    r = form_login(c, "clerk", DEMO_PASSWORDS["clerk"])
    assert r.status_code == 429
    m = re.search(r"请在 (\d+) 分钟后再试", r.text)
    assert m and 1 <= int(m.group(1)) <= settings.login_window_minutes
    assert count(db, UserSession) == 0
    failed = events(db, "auth.login_failed")
    assert len(failed) == n and {e.object_id for e in failed} == {"clerk"}
    throttled = events(db, "auth.login_throttled")
    assert len(throttled) == 1 and throttled[0].object_id == "clerk"
    # the count lives in the database: a fresh app (another worker, a restart) still refuses
    other = create_app(settings)
    try:
        r = form_login(new_client(other), "clerk", DEMO_PASSWORDS["clerk"])
        assert r.status_code == 429
    finally:
        other.state.db.dispose()
    # other accounts from the same address are not locked by one account's failures
    assert form_login(new_client(app), "member", DEMO_PASSWORDS["member"]).status_code == 303


def lock_out_clerk(app, settings) -> tuple[TestClient, str]:  # type: ignore[no-untyped-def]
    """As many wrong passwords for clerk as the account allows, from one new client: that address is locked out of the
    account, even with the right password (429). Returns the client and its login form's CSRF token."""
    c = new_client(app)
    tok = csrf_from(c.get("/login").text)
    for _ in range(settings.login_max_failures_per_account):
        form_login(c, "clerk", "not-the-password", tok)
    assert form_login(c, "clerk", DEMO_PASSWORDS["clerk"], tok).status_code == 429
    return c, tok


def test_account_throttle_ends_after_the_window(app, demo, db, settings):
    c, _ = lock_out_clerk(app, settings)
    with db.write_txn() as s:
        s.execute(update(LoginAttempt).values(at=utcnow() - timedelta(minutes=settings.login_window_minutes + 1)))
    assert form_login(c, "clerk", DEMO_PASSWORDS["clerk"]).status_code == 303


def test_address_throttle_across_login_names(app, demo, db, settings):
    n = settings.login_max_failures_per_address
    c = new_client(app)
    tok = csrf_from(c.get("/login").text)
    for i in range(n):
        assert form_login(c, f"nobody{i:02d}", "whatever-pass", tok).status_code == 401
    r = form_login(c, "admin", DEMO_PASSWORDS["admin"], tok)
    assert r.status_code == 429
    assert re.search(r"本机登录失败次数过多，请在 \d+ 分钟后再试", r.text)
    assert len(events(db, "auth.login_failed")) == n
    assert [e.object_id for e in events(db, "auth.login_throttled")] == ["admin"]
    assert count(db, UserSession) == 0
    # another address is not affected
    elsewhere = new_client(app, client=("10.9.8.7", 40000))
    assert form_login(elsewhere, "admin", DEMO_PASSWORDS["admin"]).status_code == 303


def test_success_resets_the_account_counter(app, demo, db, settings):
    n = settings.login_max_failures_per_account
    c = new_client(app)
    tok = csrf_from(c.get("/login").text)
    for _ in range(n - 1):
        assert form_login(c, "clerk", "not-the-password", tok).status_code == 401
    assert form_login(new_client(app), "clerk", DEMO_PASSWORDS["clerk"]).status_code == 303
    for _ in range(n - 1):
        assert form_login(c, "clerk", "not-the-password", tok).status_code == 401
    assert form_login(new_client(app), "clerk", DEMO_PASSWORDS["clerk"]).status_code == 303
    assert events(db, "auth.login_throttled") == []


def test_sixty_wrong_passwords_at_once_are_checked_only_up_to_the_limit(demo, db, settings, monkeypatch):
    """60 wrong passwords for one account from one address, sent at the same moment, each in its own transaction (as
    60 requests in the workers of a county deployment): exactly the limit are checked, the rest refused unchecked."""
    n = settings.login_max_failures_per_account
    checked = count_checks(monkeypatch, auth_service)

    def attempt(i: int) -> str:
        with db.write_session() as s:
            try:
                auth_service.login(s, settings, login="clerk", password=f"wrong-pass-{i}", ip="10.1.2.3",
                                   user_agent=None, request_id=f"req-{i}")
                outcome = "ok"
            except TooManyRequests:
                outcome = "throttled"
            except NotAuthenticated:
                outcome = "failed"
            s.commit()  # as the login page does: a refusal and its audit event are kept
            return outcome

    outcomes = Counter(at_once(60, attempt))
    assert outcomes == {"failed": n, "throttled": 60 - n}
    assert len(checked) == n
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.login == "clerk")
                         ).scalar_one() == n
    assert len(events(db, "auth.login_failed")) == n and len(events(db, "auth.login_throttled")) == 60 - n


def test_failures_lock_out_the_address_that_failed_not_the_account(app, demo, db, settings, monkeypatch):
    """Five wrong passwords from address A lock A out of the account, even with the right password; the rightful
    user at address B still gets in, after a short wait served while the request holds no database connection (nor,
    on SQLite, the writer's turn), and the audit log says who was refused and who was slowed."""
    n = settings.login_max_failures_per_account
    held_while_waiting: list[tuple[int, int, bool]] = []

    async def sleep(seconds: float) -> None:
        served = app.state.db
        held_while_waiting.append((int(seconds), served.engine.pool.checkedout(),
                                   bool(served._write_lock and served._write_lock._locked)))
        await asyncio.sleep(seconds)

    monkeypatch.setattr(deps, "asyncio", SimpleNamespace(sleep=sleep))
    a = new_client(app)  # address "testclient"
    tok = csrf_from(a.get("/login").text)
    for _ in range(n):
        assert form_login(a, "clerk", "not-the-password", tok).status_code == 401
    locked = form_login(a, "clerk", DEMO_PASSWORDS["clerk"], tok)
    assert locked.status_code == 429 and "锁定" in locked.text and re.search(r"请在 \d+ 分钟后再试", locked.text)

    b = new_client(app, client=("10.9.8.7", 40000))
    started = time.monotonic()
    r = form_login(b, "clerk", DEMO_PASSWORDS["clerk"])
    assert r.status_code == 303, r.text[:500]
    assert time.monotonic() - started >= 1  # 5 failures elsewhere: one second, served before the transaction
    assert held_while_waiting == [(1, 0, False)]
    assert len(sessions_of(db, "clerk")) == 1

    throttled = events(db, "auth.login_throttled")
    assert [(e.object_id, e.ip) for e in throttled] == [("clerk", "testclient")]
    slowed = events(db, "auth.login_slowed")
    assert [(e.object_id, e.ip) for e in slowed] == [("clerk", "10.9.8.7")]
    assert slowed[0].summary["after"] == {"seconds": 1, "failures_elsewhere": n}
    assert DEMO_PASSWORDS["clerk"] not in str(slowed[0].summary) and "not-the-password" not in str(slowed[0].summary)
    assert [e.ip for e in events(db, "auth.login")] == ["10.9.8.7"]

    # B's success does not reopen A (the address that failed stays refused for its window) ...
    assert form_login(a, "clerk", DEMO_PASSWORDS["clerk"], tok).status_code == 429
    # ... and B, now known, is not slowed again
    again = new_client(app, client=("10.9.8.7", 40001))
    assert form_login(again, "clerk", DEMO_PASSWORDS["clerk"]).status_code == 303
    assert len(events(db, "auth.login_slowed")) == 1


def test_an_administrators_reset_reopens_a_locked_address(app, demo, db, settings):
    """"如忘记密码，请联系管理员重置": after the reset the user gets in at once, from the address that was locked."""
    a, tok = lock_out_clerk(app, settings)
    admin = api_login(app, "admin")
    uid = user_id(db, "clerk")
    assert admin.post(f"/api/v1/users/{uid}/password", json={"password": "Fresh-pass-2026"}).status_code == 204
    assert form_login(a, "clerk", "Fresh-pass-2026", tok).status_code == 303


def test_an_ipv6_network_counts_as_one_address(demo, db, settings):
    """A phone or a household's router holds a whole /64: its addresses are one address to the throttle."""
    n = settings.login_max_failures_per_account
    for i in range(n):
        with db.write_session() as s, pytest.raises(NotAuthenticated):
            try:
                auth_service.login(s, settings, login="clerk", password="not-the-password", ip=f"2409:8a00:1:2::{i + 1}",
                                   user_agent=None, request_id=None)
            finally:
                s.commit()
    with db.write_session() as s, pytest.raises(TooManyRequests):
        try:
            auth_service.login(s, settings, login="clerk", password=DEMO_PASSWORDS["clerk"],
                               ip="2409:8a00:1:2:aaaa:bbbb:cccc:dddd", user_agent=None, request_id=None)
        finally:
            s.commit()
    with db.write_txn() as s:  # another network still gets in
        auth_service.login(s, settings, login="clerk", password=DEMO_PASSWORDS["clerk"], ip="2409:8a00:1:3::1",
                           user_agent=None, request_id=None)


# ---- passwords ----------------------------------------------------------------------------------------------------

def test_passwords_are_argon2id():
    assert security.ARGON2_MEMORY_KIB >= 19_456 and security.ARGON2_TIME_COST >= 2  # OWASP's minimum in production
    h = security.hash_password("Some-pass-2026")
    assert h.startswith("$argon2id$")
    assert security.verify_password("Some-pass-2026", h)
    assert not security.verify_password("Some-pass-2027", h)
    assert not security.verify_password("Some-pass-2026", "not-a-hash")


def _change(c: TestClient, csrf: str, current: str, new: str, again: str | None = None):  # type: ignore[no-untyped-def]
    return c.post("/account/password", data={"csrf_token": csrf, "current_password": current, "new_password": new,
                                             "new_password2": new if again is None else again},
                  follow_redirects=False)


@pytest.mark.parametrize(("current", "new", "again", "message"), [
    ("wrong-current-1", "Brand-new-pass-1", None, "当前密码不正确"),
    (DEMO_PASSWORDS["storekeeper"], "Sh0rt!", None, "密码至少需要 8 个字符"),
    (DEMO_PASSWORDS["storekeeper"], "storekeeper", None, "密码不能与登录名相同"),
    (DEMO_PASSWORDS["storekeeper"], "aaaaaaaaaaaa", None, "密码过于简单"),
    (DEMO_PASSWORDS["storekeeper"], DEMO_PASSWORDS["storekeeper"], None, "新密码不能与当前密码相同"),
    (DEMO_PASSWORDS["storekeeper"], "Brand-new-pass-1", "Brand-new-pass-2", "两次输入的新密码不一致"),
    (DEMO_PASSWORDS["storekeeper"], "x" * 129 + "abcd", None, "密码不能超过 128 个字符"),
])
def test_password_change_refused(app, demo, db, current, new, again, message):
    c = new_client(app)
    csrf = login(c, "storekeeper")
    with db.read_txn() as s:
        old_hash = s.get(User, user_id(db, "storekeeper")).password_hash  # type: ignore[union-attr]
    other = api_login(app, "storekeeper")
    r = _change(c, csrf, current, new, again)
    assert r.status_code == 422 and message in r.text
    with db.read_txn() as s:
        assert s.get(User, user_id(db, "storekeeper")).password_hash == old_hash  # type: ignore[union-attr]
    assert other.get("/api/v1/me").status_code == 200
    assert events(db, "auth.password.change") == []


def test_password_change_revokes_other_sessions_keeps_current(app, demo, db):
    c = new_client(app)
    csrf = login(c, "clerk")
    other, third = api_login(app, "clerk"), api_login(app, "clerk")
    r = _change(c, csrf, DEMO_PASSWORDS["clerk"], "Fresh-pass-2026")
    assert r.status_code == 303
    assert c.get("/api/v1/me").status_code == 200
    for o in (other, third):
        assert_api_error(o.get("/api/v1/me"), 401)
    live = [s for s in sessions_of(db, "clerk") if s.revoked_at is None]
    assert len(live) == 1
    assert form_login(new_client(app), "clerk", DEMO_PASSWORDS["clerk"]).status_code == 401
    assert form_login(new_client(app), "clerk", "Fresh-pass-2026").status_code == 303
    assert len(events(db, "auth.password.change")) == 1


def test_password_change_through_api(app, demo, db):
    c, other = api_login(app, "member"), api_login(app, "member")
    assert_api_error(c.post("/api/v1/me/password", json={"current_password": "nope-nope",
                                                         "new_password": "Fresh-pass-2026"}), 422, text="当前密码不正确")
    r = c.post("/api/v1/me/password", json={"current_password": DEMO_PASSWORDS["member"],
                                            "new_password": "Fresh-pass-2026"})
    assert r.status_code == 204
    assert c.get("/api/v1/me").status_code == 200
    assert other.get("/api/v1/me").status_code == 401


def test_admin_reset_revokes_sessions_and_forces_change(app, demo, db):
    clerk = api_login(app, "clerk")
    admin = api_login(app, "admin")
    uid = user_id(db, "clerk")
    assert admin.post(f"/api/v1/users/{uid}/password", json={"password": "Temp-pass-4321"}).status_code == 204
    assert_api_error(clerk.get("/api/v1/me"), 401)
    assert all(s.revoked_at is not None for s in sessions_of(db, "clerk"))
    with db.read_txn() as s:
        assert s.get(User, uid).must_change_password is True  # type: ignore[union-attr]
    assert [e.object_id for e in events(db, "auth.user.reset_password")] == [str(uid)]
    c = new_client(app)
    assert form_login(c, "clerk", DEMO_PASSWORDS["clerk"]).status_code == 401
    r = form_login(c, "clerk", "Temp-pass-4321")
    assert r.status_code == 303 and r.headers["location"].startswith("/account")
    page = c.get(r.headers["location"])
    assert 'data-testid="must-change"' in page.text
    r = _change(c, csrf_from(page.text), "Temp-pass-4321", "Own-pass-2026")
    assert r.status_code == 303
    with db.read_txn() as s:
        assert s.get(User, uid).must_change_password is False  # type: ignore[union-attr]
    r = form_login(new_client(app), "clerk", "Own-pass-2026")
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_admin_reset_through_the_page(app, demo, db):
    admin = new_client(app)
    csrf = login(admin, "admin")
    clerk = api_login(app, "clerk")
    uid = user_id(db, "clerk")
    r = admin.post(f"/admin/users/{uid}/reset-password", data={"csrf_token": csrf})
    assert r.status_code == 200
    m = re.search(r'data-testid="new-password">[^<]*<code class="secret">([^<]+)</code>', r.text)
    assert m
    assert clerk.get("/api/v1/me").status_code == 401
    r = form_login(new_client(app), "clerk", m.group(1))
    assert r.status_code == 303 and r.headers["location"] == "/account?must_change=1"


# ---- API tokens ---------------------------------------------------------------------------------------------------

def _make_token(c: TestClient, grant_id: int, name: str = "导出脚本") -> dict:  # type: ignore[type-arg]
    r = c.post("/api/v1/me/tokens", json={"name": name, "grant_id": grant_id})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def bearer(app, token: str) -> TestClient:  # type: ignore[no-untyped-def]
    return new_client(app, headers={"Authorization": f"Bearer {token}"})


def test_api_token_is_shown_once_and_stored_hashed(app, demo, db):
    c = api_login(app, "clerk")
    out = _make_token(c, grant_id_of(db, "clerk", "village_clerk"))
    raw = out["token"]
    assert raw.startswith("zf_") and len(raw) > 40
    listed = c.get("/api/v1/me/tokens").json()
    assert [t["id"] for t in listed] == [out["id"]] and "token" not in listed[0]
    assert raw not in c.get("/account").text
    with db.read_txn() as s:
        (row,) = s.execute(select(ApiToken)).scalars()
    assert row.token_hash == sha256_hex(raw)
    assert all(raw not in str(getattr(row, col)) for col in ApiToken.model_fields)
    assert [e.object_id for e in events(db, "auth.token.create")] == [str(row.id)]
    me = bearer(app, raw).get("/api/v1/me")
    assert me.status_code == 200 and me.json()["via"] == "token" and me.json()["login"] == "clerk"


def test_api_token_is_scoped_to_exactly_the_chosen_grant(app, demo, db):
    named = ids(db)
    with db.write_txn() as s:
        factories.make_grant(s, s.get(User, user_id(db, "clerk")), "township_reviewer",  # type: ignore[arg-type]
                             township_id=named["振风乡"])
    c = api_login(app, "clerk")
    assert c.get("/api/v1/villages").json()["total"] == 4  # 红旗村 as clerk + 3 villages of 振风乡 as reviewer
    assert c.get(f"/api/v1/townships/{named['振风乡']}").status_code == 200
    clerk_token = _make_token(c, grant_id_of(db, "clerk", "village_clerk"))["token"]
    reviewer_token = _make_token(c, grant_id_of(db, "clerk", "township_reviewer"))["token"]

    as_clerk = bearer(app, clerk_token)
    assert [g["role"] for g in as_clerk.get("/api/v1/me").json()["grants"]] == ["village_clerk"]
    assert [v["name"] for v in as_clerk.get("/api/v1/villages").json()["items"]] == ["红旗村"]
    assert_api_error(as_clerk.get(f"/api/v1/townships/{named['振风乡']}"), 404)
    assert_api_error(as_clerk.get(f"/api/v1/villages/{named['新民村']}"), 404)

    as_reviewer = bearer(app, reviewer_token)
    assert sorted(v["name"] for v in as_reviewer.get("/api/v1/villages").json()["items"]) == ["新民村", "杨柳村", "石桥村"]
    assert_api_error(as_reviewer.get(f"/api/v1/villages/{named['红旗村']}"), 404)
    # the reviewer grant may not manage groups, even in the village the same user is clerk of
    assert_api_error(as_reviewer.post(f"/api/v1/villages/{named['红旗村']}/groups", json={"number": 50}), 404)
    # Bearer requests need no CSRF token
    r = as_clerk.post(f"/api/v1/villages/{named['红旗村']}/groups", json={"number": 50})
    assert r.status_code == 201, r.text


def test_bearer_write_needs_no_csrf_but_cookie_write_does(app, demo, db):
    c = api_login(app, "admin")
    token = _make_token(c, grant_id_of(db, "admin", "county_admin"))["token"]
    cookie_only = new_client(app, cookies={SESSION_COOKIE: c.cookies.get(SESSION_COOKIE)})
    assert_api_error(cookie_only.post("/api/v1/townships", json={"code": "341000301", "name": "新设镇"}), 403,
                     code="csrf_failed")
    r = bearer(app, token).post("/api/v1/townships", json={"code": "341000301", "name": "新设镇"})
    assert r.status_code == 201
    (ev,) = events(db, "org.township.create")[-1:]
    assert ev.actor_id == user_id(db, "admin")


def test_revoked_token_answers_401(app, demo, db):
    c = api_login(app, "clerk")
    out = _make_token(c, grant_id_of(db, "clerk", "village_clerk"))
    b = bearer(app, out["token"])
    assert b.get("/api/v1/me").status_code == 200
    assert c.delete(f"/api/v1/me/tokens/{out['id']}").status_code == 204
    assert_api_error(b.get("/api/v1/me"), 401, code="bad_token", text="吊销")
    assert_api_error(b.post(f"/api/v1/villages/{ids(db)['红旗村']}/groups", json={"number": 51}), 401)
    assert b.get("/api/v1/me").headers.get("www-authenticate") == "Bearer"


def test_token_of_deactivated_user_or_revoked_grant_answers_401(app, demo, db):
    c = api_login(app, "clerk")
    token = _make_token(c, grant_id_of(db, "clerk", "village_clerk"))["token"]
    admin = api_login(app, "admin")
    assert admin.put(f"/api/v1/users/{user_id(db, 'clerk')}/active", json={"active": False}).status_code == 200
    assert_api_error(bearer(app, token).get("/api/v1/me"), 401, code="bad_token")
    assert admin.put(f"/api/v1/users/{user_id(db, 'clerk')}/active", json={"active": True}).status_code == 200
    assert bearer(app, token).get("/api/v1/me").status_code == 200
    assert admin.delete(f"/api/v1/grants/{grant_id_of(db, 'clerk', 'village_clerk')}").status_code == 204
    assert_api_error(bearer(app, token).get("/api/v1/me"), 401, code="bad_token")


def test_expired_token_answers_401(app, demo, db):
    c = api_login(app, "clerk")
    token = _make_token(c, grant_id_of(db, "clerk", "village_clerk"))["token"]
    with db.write_txn() as s:
        s.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert_api_error(bearer(app, token).get("/api/v1/me"), 401, code="bad_token", text="过期")


@pytest.mark.parametrize("value", ["garbage", "zf_", "zf_onlyprefix", "xx_abcdefgh_secret", "zf_nosuchpx_" + "a" * 43])
def test_bad_token_format_answers_401(app, demo, db, value):
    assert_api_error(bearer(app, value).get("/api/v1/me"), 401, code="bad_token")


def test_token_with_right_prefix_and_wrong_secret_answers_401(app, demo, db):
    c = api_login(app, "clerk")
    token = _make_token(c, grant_id_of(db, "clerk", "village_clerk"))["token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert_api_error(bearer(app, forged).get("/api/v1/me"), 401, code="bad_token", text="无效")


def test_token_only_for_own_active_grant(app, demo, db):
    c = api_login(app, "clerk")
    before = count(db, ApiToken)
    assert_api_error(c.post("/api/v1/me/tokens", json={"name": "偷用", "grant_id": grant_id_of(db, "admin", "county_admin")}),
                     422, text="授权")
    assert count(db, ApiToken) == before


# ---- production settings ------------------------------------------------------------------------------------------

def _prod(tmp_path, db_url, **kw) -> Settings:  # type: ignore[no-untyped-def]
    base = {"var_dir": tmp_path / "prod", "database_url": db_url, "production": True, "secret_key": TEST_SECRET,
            "cookie_secure": True, "log_level": "WARNING"}
    return Settings(**{**base, **kw})


@pytest.mark.parametrize(("override", "named"), [
    ({"secret_key": "too-short"}, "ZF_SECRET_KEY"),
    ({"cookie_secure": False}, "ZF_COOKIE_SECURE"),
])
def test_production_refuses_unsafe_settings(tmp_path, db_url, override, named):
    s = _prod(tmp_path, db_url, **override)
    with pytest.raises(UnsafeSettingsError, match=named):
        s.check_safe()
    with pytest.raises(UnsafeSettingsError, match=named):
        create_app(s)
    # the same values are accepted outside production mode
    dev = _prod(tmp_path, db_url, production=False, **override)
    dev.check_safe()


def test_production_with_safe_settings_starts_and_sets_secure_cookie(tmp_path, db_url, db, demo):
    s = _prod(tmp_path, db_url)
    application = create_app(s)
    try:
        c = new_client(application, base_url="https://testserver")
        r = form_login(c, "clerk", DEMO_PASSWORDS["clerk"])
        assert r.status_code == 303
        assert "secure" in [a.strip().lower() for a in set_cookie_header(r).split(";")]
    finally:
        application.state.db.dispose()


def test_secret_key_generated_once_with_mode_0600(tmp_path, db_url, monkeypatch):
    monkeypatch.delenv("ZF_SECRET_KEY", raising=False)
    var = tmp_path / "fresh-var"
    first = Settings(var_dir=var, database_url=db_url)
    path = var / "secret_key"
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first.secret_key) >= 32 and path.read_text().strip() == first.secret_key
    second = Settings(var_dir=var, database_url=db_url)
    assert second.secret_key == first.secret_key
    assert Settings(var_dir=tmp_path / "other-var", database_url=db_url).secret_key != first.secret_key
