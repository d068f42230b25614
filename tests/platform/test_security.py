"""The security review (docs/security.md, OWASP ASVS 4.0.3 level 2): one test per checked behaviour that no other file
covers, each named after what it keeps true. The ASVS item numbers are in the docstrings."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.audit.models import AuditEvent
from app.auth import security
from app.auth.models import User, UserSession
from app.core.clock import utcnow
from app.db import Database
from app.logs import configure as configure_logs
from app.logs import log
from tests.support import factories
from tests.support.web import DEMO_PASSWORDS, csrf_from, login

SESSION_COOKIE = "zf_session"


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """Logs at INFO into this test's captured stderr (call `start_logs()` in the test body: the stream a fixture
    sees while it is set up is not the one the test runs with); afterwards back to the process's stderr."""
    yield capsys
    configure_logs("WARNING", True)
    structlog.configure(logger_factory=structlog.WriteLoggerFactory(sys.__stderr__))


def start_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logs("INFO", True)
    capsys.readouterr()


def _log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:  # type: ignore[type-arg]
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _form_login(client: TestClient, name: str, password: str):  # type: ignore[no-untyped-def]
    client.cookies.clear()
    token = csrf_from(client.get("/login").text)
    return client.post("/login", data={"login": name, "password": password, "csrf_token": token},
                       follow_redirects=False)


def _user(db: Database, login_name: str) -> User:
    with db.read_txn() as s:
        return s.execute(select(User).where(User.login == login_name)).scalar_one()


def _events(db: Database, action: str) -> list[AuditEvent]:
    with db.read_txn() as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == action)).scalars())


# ---- V2 authentication --------------------------------------------------------------------------------------------

def test_a_temporary_password_stops_working_after_a_week_unless_changed(client, db: Database) -> None:
    """2.3.1: a password made by an administrator must be changed; left unchanged it expires and cannot become the
    long-term password."""
    with db.write_txn() as s:
        factories.make_user(s, login="newcomer", password="Temp-pass-4321", must_change_password=True)
    r = _form_login(client, "newcomer", "Temp-pass-4321")
    assert r.status_code == 303 and r.headers["location"] == "/account?must_change=1"
    with db.write_txn() as s:
        s.execute(update(User).where(User.login == "newcomer").values(
            password_changed_at=utcnow() - timedelta(days=security.TEMP_PASSWORD_DAYS, minutes=1)))
    r = _form_login(client, "newcomer", "Temp-pass-4321")
    assert r.status_code == 401 and "临时密码超过 7 天没有修改" in r.text and "重新重置密码" in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert _events(db, "auth.login_failed")[-1].summary["note"] == "临时密码已过期"
    # a password the user chose himself never expires (2.1.10), however old
    with db.write_txn() as s:
        s.execute(update(User).where(User.login == "newcomer").values(must_change_password=False))
    assert _form_login(client, "newcomer", "Temp-pass-4321").status_code == 303


@pytest.mark.parametrize("password", [
    "correct horse battery staple",  # spaces (2.1.3)
    "我家的猫叫小白今年三岁了",  # 12 Chinese characters (2.1.4)
    "🐖🐄🐑🐓🌾🌽🥬🍚🥚🧧🏠🌙",  # 12 emoji, one code point each (2.1.4)
    "a-long-passphrase-" * 3 + "of-64-chars-and-more",  # 64+ characters (2.1.2)
    "onlylowercaseletters",  # no rule on kinds of characters (2.1.9)
])
def test_passwords_may_hold_spaces_unicode_and_64_characters_and_are_never_cut(client, db: Database,
                                                                                password: str) -> None:
    """2.1.2, 2.1.3, 2.1.4, 2.1.9: such passwords are accepted and the whole password is checked."""
    assert security.password_problem(password, "someone") is None
    with db.write_txn() as s:
        factories.make_user(s, login="someone", password=password)
    assert _form_login(client, "someone", password).status_code == 303
    assert _form_login(client, "someone", password[:-1]).status_code == 401  # no truncation
    assert _form_login(client, "someone", password + "x").status_code == 401


@pytest.mark.parametrize("password", ["password123", "Password123", "1qaz2wsx3edc", "woaini1314", "12345678"])
def test_the_most_guessed_passwords_are_refused(password: str) -> None:
    """2.1.7 (in part): the best-known passwords are refused even where the length rule lets them through."""
    problem = security.password_problem(password, "clerk")
    assert problem is not None and "密码过于简单" in problem


def test_each_password_hash_has_its_own_salt_of_16_bytes() -> None:
    """2.4.1, 2.4.2: Argon2id, a fresh random salt per hash (stored in the hash), at least 32 bits (here 128)."""
    import base64

    a, b = security.hash_password("Same-pass-2026"), security.hash_password("Same-pass-2026")
    assert a != b and a.startswith("$argon2id$") and b.startswith("$argon2id$")
    salts = [h.split("$")[4] for h in (a, b)]
    assert salts[0] != salts[1]
    assert all(len(base64.b64decode(s + "=" * (-len(s) % 4))) >= 16 for s in salts)


def test_the_login_form_lets_password_managers_and_paste_work(client) -> None:
    """2.1.11: autocomplete hints for password managers; nothing blocks paste."""
    page = client.get("/login").text
    assert 'autocomplete="username"' in page and 'autocomplete="current-password"' in page
    assert "onpaste" not in page.lower() and "oncopy" not in page.lower()


# ---- V3 sessions --------------------------------------------------------------------------------------------------

def test_the_session_token_is_long_random_and_never_in_an_address_or_page(client, demo, db: Database) -> None:
    """3.1.1, 3.2.2, 3.2.4: 256 random bits in an HttpOnly cookie; no redirect, link or page carries it."""
    r = _form_login(client, "clerk", DEMO_PASSWORDS["clerk"])
    token = client.cookies.get(SESSION_COOKIE)
    assert token is not None and len(token) >= 43 and re.fullmatch(r"[A-Za-z0-9_\-]+", token)
    assert token not in r.headers["location"]
    for path in ("/", "/account", "/api/v1/me"):
        assert token not in client.get(path).text
    r2 = _form_login(client, "clerk", DEMO_PASSWORDS["clerk"])
    assert r2.status_code == 303 and client.cookies.get(SESSION_COOKIE) != token


def test_a_user_sees_his_sessions_and_ends_the_others_after_typing_the_password(client, demo, db: Database,
                                                                                app) -> None:
    """3.3.4: the account page lists the active sessions; ending the others needs the password again."""
    other = TestClient(app, base_url="http://testserver")
    with other:
        _form_login(other, "clerk", DEMO_PASSWORDS["clerk"])
        csrf = login(client, "clerk")
        page = client.get("/account").text
        table = page.split('data-testid="sessions"', 1)[1].split("</table>", 1)[0]
        assert table.count("<tr><td>") == 2 and "本机" in table
        r = client.post("/account/sessions/end-others", data={"csrf_token": csrf, "password": "wrong-pass-2026"})
        assert r.status_code == 422 and "密码不正确" in r.text
        assert other.get("/api/v1/me").status_code == 200
        r = client.post("/account/sessions/end-others",
                        data={"csrf_token": csrf, "password": DEMO_PASSWORDS["clerk"]}, follow_redirects=False)
        assert r.status_code == 303
        assert other.get("/api/v1/me").status_code == 401
        assert client.get("/api/v1/me").status_code == 200
        (ev,) = _events(db, "auth.session.end_others")
        assert ev.summary["after"] == {"ended": 1}
        r = client.post("/account/sessions/end-others", data={"password": DEMO_PASSWORDS["clerk"]})
        assert r.status_code == 403  # a form like any other: no CSRF token, no change


# ---- V7 logging and errors ----------------------------------------------------------------------------------------

def test_refused_api_tokens_and_sessions_are_logged_without_the_secret(client, demo, db: Database, logs) -> None:
    """7.2.1: refused credentials are logged with the reason and the address; the token itself never."""
    start_logs(logs)
    csrf = login(client, "clerk")
    grant = client.get("/api/v1/me").json()["grants"][0]["id"]
    token = client.post("/api/v1/me/tokens", json={"name": "柜台", "grant_id": grant},
                        headers={"X-CSRF-Token": csrf}).json()["token"]
    session_token = client.cookies.get(SESSION_COOKIE)
    client.post("/logout", data={"csrf_token": csrf})
    capsys = logs
    capsys.readouterr()
    wrong = token[:-4] + "AAAA"
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, session_token or "")
    assert client.get("/api/v1/me").status_code == 401
    lines = _log_lines(capsys)
    refused = [ln for ln in lines if ln.get("event") == "auth.token_refused"]
    assert refused and refused[0]["token_prefix"] == token.split("_")[1] and refused[0]["ip"]
    assert refused[0]["reason"] == "API 令牌无效" and refused[0]["level"] == "warning"
    assert any(ln.get("event") == "auth.session_refused" and ln["reason"] == "会话已失效，请重新登录" for ln in lines)
    text = json.dumps(lines, ensure_ascii=False)
    assert token not in text and wrong not in text and (session_token or "x" * 40) not in text


def test_a_failed_login_keeps_the_password_out_of_logs_and_audit(client, demo, db: Database, logs) -> None:
    """7.1.1, 7.1.3: the failure is recorded (who, from where, why) and the typed password is nowhere."""
    start_logs(logs)
    typed = "Clerk-pass-2026-but-wrong"
    assert _form_login(client, "clerk", typed).status_code == 401
    ev = _events(db, "auth.login_failed")[-1]
    assert (ev.object_id, ev.ip) == ("clerk", "testclient") and ev.request_id
    with db.read_txn() as s:
        everything = json.dumps([[e.summary, e.actor_name, e.object_id] for e in s.execute(select(AuditEvent))
                                 .scalars()], ensure_ascii=False)
    assert typed not in everything and typed not in logs.readouterr().err


def test_log_lines_cannot_be_split_or_forged_by_input(logs) -> None:
    """7.3.1: every log record is one JSON object on one line, whatever the values hold."""
    start_logs(logs)
    log.info("request", path='/x\n{"event": "forged", "level": "error"}\r\n', client="1.2.3.4")
    lines = [ln for ln in logs.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "request" and record["path"].startswith("/x\n")


def test_an_unexpected_error_shows_a_generic_chinese_message_with_the_request_id(client, demo,
                                                                              monkeypatch: pytest.MonkeyPatch,
                                                                              logs) -> None:
    """7.4.1, 7.4.3: the last-resort handler answers a generic message and an id to quote; the details go to the
    log only."""
    start_logs(logs)
    from app.auth.service import accounts as auth_service

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("secret internal detail /etc/zhenfeng")

    login(client, "clerk")
    monkeypatch.setattr(auth_service, "list_api_tokens", boom)
    page = TestClient(client.app, base_url="http://testserver", raise_server_exceptions=False, cookies=client.cookies)
    with page:
        r = page.get("/account", headers={"X-Request-ID": "req-boom-1"})
        assert r.status_code == 500 and "系统内部出错" in r.text and "req-boom-1" in r.text
        assert "secret internal detail" not in r.text and "Traceback" not in r.text
        api = page.get("/api/v1/me/tokens", headers={"X-Request-ID": "req-boom-2"})
        assert api.status_code == 500
        assert api.json()["error"]["code"] == "internal" and api.json()["error"]["details"] == {"request_id": "req-boom-2"}
        assert "secret internal detail" not in api.text
    err = logs.readouterr().err
    assert "unhandled_error" in err and "secret internal detail" in err


# ---- V8 data protection -------------------------------------------------------------------------------------------

def test_pages_with_account_details_or_a_secret_are_not_cached(client, demo, db: Database) -> None:
    """8.1.1, 8.2.1 (for the account pages): a new token or a temporary password shown once is never kept by the
    browser or a proxy."""
    csrf = login(client, "clerk")
    assert client.get("/account").headers["cache-control"] == "no-store"
    grant = client.get("/api/v1/me").json()["grants"][0]["id"]
    r = client.post("/account/tokens", data={"csrf_token": csrf, "name": "柜台", "grant_id": grant, "days": 30})
    assert 'data-testid="new-token"' in r.text and r.headers["cache-control"] == "no-store"
    r = client.post("/api/v1/me/tokens", json={"name": "脚本", "grant_id": grant}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    r = client.post("/account/password", data={"csrf_token": csrf, "current_password": "wrong-pass-2026",
                                                "new_password": "Brand-new-2026", "new_password2": "Brand-new-2026"})
    assert r.status_code == 422 and r.headers["cache-control"] == "no-store"
    csrf = login(client, "admin")
    clerk_id = _user(db, "clerk").id
    r = client.post(f"/admin/users/{clerk_id}/reset-password", data={"csrf_token": csrf})
    assert 'data-testid="new-password"' in r.text and r.headers["cache-control"] == "no-store"
    assert client.get(f"/admin/users/{clerk_id}").headers["cache-control"] == "no-store"


def test_logout_tells_the_browser_to_drop_what_it_kept(client, demo) -> None:
    """8.2.3: after logout the browser clears this site's cache and storage (a shared PC in the village office)."""
    csrf = login(client, "clerk")
    r = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["clear-site-data"] == '"cache", "storage"'
    assert client.get("/account", follow_redirects=False).status_code == 303  # back to the login page


# ---- V5 encoding, V12 files and resources, security headers -------------------------------------------------------

def test_names_typed_by_users_are_escaped_in_pages(client, demo, db: Database) -> None:
    """5.3.1, 5.3.3: a stored name that is markup comes back as text, on the admin's list and detail pages."""
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    with db.write_txn() as s:
        u = factories.make_user(s, login="mallory", name=evil[:40])
        uid = u.id
    login(client, "admin")
    for path in ("/admin/users?q=mallory", f"/admin/users/{uid}"):
        page = client.get(path).text
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_every_answer_carries_the_security_headers(client, demo) -> None:
    """5.3.3 (CSP as defence in depth), 12.5.2 (nosniff: nothing uploaded is run as a page), 4.3.2 (no framing)."""
    login(client, "clerk")
    for r in (client.get("/account"), client.get("/api/v1/nothing-here"), client.get("/static/css/app.css"),
              client.get("/login")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp


@pytest.mark.parametrize("path", ["/static/", "/static/js/", "/static/vendor/", "/static/../app/config.py",
                                  "/static/%2e%2e/config.py", "/static/vendor/SHA256SUMS.bak", "/.git/config",
                                  "/static/.gitignore"])
def test_no_directory_listing_and_nothing_outside_the_static_folder(client, path: str) -> None:
    """4.3.2, 12.5.1: directories are not listed, no path leaves app/static, no backup or VCS files."""
    r = client.get(path)
    assert r.status_code == 404
    assert "Index of" not in r.text and "ZF_" not in r.text and "htmx-2.0.11.min.js\n" not in r.text


def test_user_sessions_store_only_the_token_hash(client, demo, db: Database) -> None:
    """3.2.3 / 8.3.7 (session secrets at rest): the database holds the SHA-256 of the cookie, never the cookie."""
    _form_login(client, "clerk", DEMO_PASSWORDS["clerk"])
    token = client.cookies.get(SESSION_COOKIE) or ""
    with db.read_txn() as s:
        rows = list(s.execute(select(UserSession)).scalars())
    assert rows and all(token not in json.dumps(r.model_dump(), default=str) for r in rows)
    assert any(r.token_hash == security.sha256_hex(token) for r in rows)


def test_a_forged_flash_cookie_is_ignored(client, demo) -> None:
    """5.5.1: the only state the browser carries for the server besides the session (the flash message) is signed;
    a cookie made up by someone else is dropped."""
    import base64

    payload = base64.urlsafe_b64encode(json.dumps(["error", "请拨打 400-000-0000 领取积分"],
                                                  ensure_ascii=False).encode()).decode()
    client.cookies.set("zf_flash", f"{payload}.{'0' * 32}")
    assert "400-000-0000" not in client.get("/login").text
    login(client, "clerk")
    r = client.post("/account/preferences", data={"csrf_token": csrf_from(client.get("/account").text),
                                                 "large_font": "1"})
    assert "显示设置已保存" in r.text  # a genuine flash, signed by the server, is shown


# ---- fixes of the second review round (12.2.1, 8.3.5, open redirect on the error page, 12.6.1) --------------------

PNG_1PX = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
           b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


def test_an_item_photo_is_typed_by_its_bytes_not_by_what_the_browser_claims(db: Database) -> None:
    """12.2.1: a page or script sent as "image/png" is refused; a PNG sent as "image/jpeg" is stored as PNG."""
    from app.errors import ValidationFailed
    from app.store.service import stock
    from tests.support.eval_helpers import CLERK

    with db.write_txn() as s:
        v = factories.make_village(s)
        item_id = factories.make_stocked_item(s, factories.make_store(s, v), stock=0).id
    for claimed, body in (("image/png", b"<html><script>alert(1)</script></html>"),
                          ("image/jpeg", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
                          ("image/webp", b"RIFF\x10\x00\x00\x00WAVEfmt ")):
        with pytest.raises(ValidationFailed, match="照片须为 JPG、PNG 或 WebP 图片：这个文件的内容不是"), db.write_txn() as s:
            stock.set_photo(s, CLERK, item_id, body, claimed)
    with db.write_txn() as s:
        stock.set_photo(s, CLERK, item_id, PNG_1PX, "image/jpeg")
    with db.write_txn() as s:
        stock.set_photo(s, CLERK, item_id, b"\xff\xd8\xff\xe0" + b"\0" * 20, "application/octet-stream")
        assert stock.get_item(s, item_id).photo_type == "image/jpeg"
        stock.set_photo(s, CLERK, item_id, b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\0" * 8, "")
        assert stock.get_item(s, item_id).photo_type == "image/webp"
    with db.read_txn() as s:
        assert stock.get_item(s, item_id).photo_type == "image/webp"
    assert stock.photo_type(PNG_1PX) == "image/png"


def test_opening_a_full_record_and_a_full_roster_export_are_audited(client, db: Database, demo) -> None:
    """8.3.5: reading unmasked ID numbers and phones, on a page or through the API, leaves an audit event (who,
    which household or village, how many rows), written after the read (the page reads in a read-only transaction)
    and never holding an ID number. The masked view of a township reviewer is not audited."""
    from app.households.models import Household
    from tests.support.clients import api_login

    with db.read_txn() as s:
        h = s.execute(select(Household).order_by(Household.id)).scalars().first()
        hid, vid = h.id, h.village_id
    login(client, "reviewer")  # masked only
    assert client.get(f"/households/{hid}").status_code == 200
    assert client.get(f"/villages/{vid}/roster/export.csv").status_code == 200
    assert _events(db, "households.view_full") == [] and _events(db, "households.export") == []

    login(client, "clerk")
    page = client.get(f"/households/{hid}")
    assert page.status_code == 200
    csv = client.get(f"/villages/{vid}/roster/export.csv")
    assert csv.status_code == 200
    api = api_login(client.app, "clerk")
    assert api.get(f"/api/v1/households/{hid}").status_code == 200
    assert api.get(f"/api/v1/villages/{vid}/roster/export", params={"format": "xlsx", "q": "张"}).status_code == 200

    views = _events(db, "households.view_full")
    assert [(e.object_type, e.object_id) for e in views] == [("household", str(hid))] * 2
    assert all(e.actor_name.endswith("(clerk)") or "clerk" in e.actor_name for e in views), [e.actor_name for e in views]
    exports_ = _events(db, "households.export")
    assert [(e.object_id, e.summary["after"]["format"], e.summary["after"]["q"]) for e in exports_] == [
        (str(vid), "csv", False), (str(vid), "xlsx", True)]
    assert exports_[0].summary["after"]["rows"] == csv.text.count("\n") - 1
    ids = re.findall(r"\d{17}[\dX]", csv.text)
    assert ids and not any(i in json.dumps([e.summary for e in views + exports_]) for i in ids)


@pytest.mark.parametrize(("referer", "back"), [
    ("http://testserver/households?page=2", "/households?page=2"),
    ("/stores/1", "/stores/1"),
    ("https://evil.example/phish", None),
    ("//evil.example/phish", None),
    ("/\\evil.example/phish", None),
    ("javascript:alert(1)", None),
    ("http://testserver.evil.example/x", None),
    ("ftp://testserver/x", None),
])
def test_the_error_page_links_back_only_to_a_page_of_this_site(client, referer: str, back: str | None) -> None:
    """The "返回上一页" link of an error page never leads off the site (no open redirect from a forged Referer)."""
    r = client.get("/no-such-page", headers={"Referer": referer, "Accept": "text/html"})
    assert r.status_code == 404
    links = re.findall(r'<a href="([^"]*)">返回上一页</a>', r.text)
    assert links == ([back.replace("&", "&amp;")] if back else [])
    assert "evil.example" not in r.text and "javascript:" not in r.text


def test_a_notice_pdf_fetches_nothing_but_the_apps_own_files(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """12.6.1, 5.2.6: WeasyPrint's fetcher refuses file:///etc/passwd, a file outside the app, http(s) and ftp;
    it serves data: URIs and the app's own templates and static files."""
    import base64
    import http.server
    import threading
    from urllib import request as urllib_request

    from app.notices.service import render

    if render.missing_parts():
        pytest.skip("WeasyPrint's system libraries or fonts are missing")
    hits: list[str] = []

    class Counting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *_a: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opened: list[str] = []
    real_open = urllib_request.OpenerDirector.open

    def spy(self, req, *a, **k):  # type: ignore[no-untyped-def]
        opened.append(req if isinstance(req, str) else req.full_url)
        return real_open(self, req, *a, **k)

    monkeypatch.setattr(urllib_request.OpenerDirector, "open", spy)
    outside = tmp_path / "secret.png"
    outside.write_bytes(PNG_1PX)
    port = server.server_address[1]
    try:
        page = (f'<p>公示</p><img src="file:///etc/passwd"><img src="http://127.0.0.1:{port}/a.png">'
                f'<img src="{outside.as_uri()}"><img src="../../../../../../etc/hostname">'
                f'<link rel="stylesheet" href="http://127.0.0.1:{port}/s.css">'
                f'<img src="data:image/png;base64,{base64.b64encode(PNG_1PX).decode()}">')
        assert render.pdf(page).startswith(b"%PDF")
    finally:
        server.shutdown()
    assert hits == []
    assert not [u for u in opened if "passwd" in u or "127.0.0.1" in u or "secret.png" in u or "hostname" in u]
    assert render.fetch_allowed("data:image/png;base64,AAAA")
    assert render.fetch_allowed((render.FETCH_ROOTS[1] / "app.css").as_uri())
    for url in ("file:///etc/passwd", f"http://127.0.0.1:{port}/a.png", "https://example.com/x.png",
                outside.as_uri(), (render.FETCH_ROOTS[0] / ".." / ".." / "pyproject.toml").as_uri(),
                "file://evil.example/share/x.png", "ftp://example.com/x"):
        assert not render.fetch_allowed(url), url


# ---- issue 17, item 6: evidence is typed by its bytes, as item photos are ---------------------------------------------

def test_evidence_is_typed_by_its_bytes_not_by_its_name_or_the_browsers_claim(db: Database) -> None:
    """A page named 借条.jpg and sent as image/jpeg is refused (it would be served back to the committee as the type
    it claimed); a PNG sent as application/octet-stream is stored as image/png, a PDF as application/pdf."""
    from app.errors import ValidationFailed
    from app.evaluation.models import Evidence
    from app.evaluation.service import motions
    from tests.support.eval_helpers import CLERK, consensus_round, eval_village

    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = consensus_round(s, ev, 202609)
        m = motions.propose_determination(s, CLERK, rid, household_id=ev.households[1], code="DISHONEST",
                                          description="拖欠邻居借款两年不还")
    for name, claimed, body in (("借条.jpg", "image/jpeg", b"<html><script>alert(1)</script></html>"),
                                ("借条.pdf", "application/pdf", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
                                ("借条.png", "image/png", b"GIF89a\x01\x00\x01\x00")):
        with pytest.raises(ValidationFailed, match="这个文件的内容不是"), db.write_txn() as s:
            motions.add_evidence(s, CLERK, m.id, file_name=name, media_type=claimed, data=body)  # type: ignore[arg-type]
    with db.read_txn() as s:
        assert motions.evidence_list(s, m.id) == []  # type: ignore[arg-type]
    with db.write_txn() as s:
        motions.add_evidence(s, CLERK, m.id, file_name="照片", media_type="application/octet-stream",  # type: ignore[arg-type]
                             data=PNG_1PX)
        motions.add_evidence(s, CLERK, m.id, file_name="借条.jpg", media_type="image/jpeg",  # type: ignore[arg-type]
                             data=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    with db.read_txn() as s:
        stored = [e.media_type for e in s.execute(select(Evidence).where(Evidence.motion_id == m.id)
                                                  .order_by(Evidence.id)).scalars()]
    assert stored == ["image/png", "application/pdf"]
