"""The hash-chained audit log (DESIGN §8): every write appends; verify finds changed, removed and inserted events;
the database refuses UPDATE and DELETE; the admin page and the API; concurrent appends stay one linear chain."""

from __future__ import annotations

import itertools
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import cli
from app.audit import service as audit
from app.audit.models import AuditEvent
from app.config import Settings, get_settings
from app.core.clock import utcnow
from app.core.context import Actor
from app.db import Database, build_engine
from tests.support import clients as common
from tests.support import factories
from tests.support.web import DEMO_PASSWORDS, TEST_SECRET, login

# shared fixtures (open test clients, the demo county from a template)
_client_stack = common._client_stack
db_url = common.db_url
demo = common.demo
app = common.app

new_client, api_login, form_login = common.new_client, common.api_login, common.form_login
user_id, events, count = common.user_id, common.events, common.count

T = AuditEvent.__table__  # type: ignore[attr-defined]
K = 20  # the event in the middle of the demo chain that the attacker goes for


def all_events(db: Database) -> list[AuditEvent]:
    with db.read_txn() as s:
        return list(s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())


def last_event(db: Database) -> AuditEvent:
    return all_events(db)[-1]


def verify(db: Database, anchor: tuple[int, str] | None = None) -> list[audit.Violation]:
    with db.read_txn() as s:
        return audit.verify(s, anchor=anchor)


def head(db: Database) -> tuple[int, str]:
    with db.read_txn() as s:
        return audit.head(s)


# ---- every write audits -------------------------------------------------------------------------------------------

class Recorder:
    """Sends one request and returns the single event it appended, checking actor and request id."""

    def __init__(self, db: Database, client, actor_id: int) -> None:  # type: ignore[no-untyped-def]
        self.db, self.client, self.actor_id, self.n = db, client, actor_id, 0

    def __call__(self, method: str, path: str, body: dict | None, status: int, action: str,  # type: ignore[type-arg]
                 object_type: str) -> tuple[dict, AuditEvent]:  # type: ignore[type-arg]
        self.n += 1
        rid = f"req-{action}-{self.n}"
        before = count(self.db, AuditEvent)
        r = self.client.request(method, path, json=body, headers={"X-Request-ID": rid})
        assert r.status_code == status, r.text
        assert r.headers["x-request-id"] == rid
        assert count(self.db, AuditEvent) == before + 1
        ev = last_event(self.db)
        assert ev.action == action
        assert ev.actor_id == self.actor_id and ev.actor_name and "admin" in ev.actor_name
        assert ev.role == "county_admin"
        assert ev.request_id == rid
        assert ev.object_type == object_type
        return (r.json() if r.content else {}), ev


def test_org_writes_are_audited(app, demo, db):
    rec = Recorder(db, api_login(app, "admin"), user_id(db, "admin"))
    t, ev = rec("POST", "/api/v1/townships", {"code": "341000301", "name": "新设镇"}, 201,
                "org.township.create", "township")
    assert ev.object_id == str(t["id"]) and ev.summary == {"after": {"code": "341000301", "name": "新设镇"}}
    _, ev = rec("PATCH", f"/api/v1/townships/{t['id']}", {"name": "改名镇"}, 200, "org.township.rename", "township")
    assert ev.summary == {"before": {"name": "新设镇"}, "after": {"name": "改名镇"}}

    v, ev = rec("POST", "/api/v1/villages", {"township_id": t["id"], "code": "341000301001", "name": "新村"}, 201,
                "org.village.create", "village")
    assert ev.object_id == str(v["id"])
    assert ev.summary == {"after": {"township_id": t["id"], "code": "341000301001", "name": "新村"}}
    _, ev = rec("PATCH", f"/api/v1/villages/{v['id']}", {"name": "更名村"}, 200, "org.village.rename", "village")
    assert ev.summary == {"before": {"name": "新村"}, "after": {"name": "更名村"}}

    g, ev = rec("POST", f"/api/v1/villages/{v['id']}/groups", {"number": 3}, 201, "org.group.create", "group")
    assert ev.object_id == str(g["id"])
    assert ev.summary == {"after": {"village_id": v["id"], "number": 3, "name": "第三村民小组"}}
    _, ev = rec("PATCH", f"/api/v1/groups/{g['id']}", {"name": "东头组"}, 200, "org.group.rename", "group")
    assert ev.summary == {"before": {"name": "第三村民小组"}, "after": {"name": "东头组"}}
    _, ev = rec("PUT", f"/api/v1/groups/{g['id']}/active", {"active": False}, 200, "org.group.deactivate", "group")
    assert ev.summary == {"before": {"active": True}, "after": {"active": False}}

    _, ev = rec("PUT", f"/api/v1/villages/{v['id']}/active", {"active": False}, 200, "org.village.deactivate",
                "village")
    assert ev.object_id == str(v["id"]) and ev.summary == {"before": {"active": True}, "after": {"active": False}}
    _, ev = rec("PUT", f"/api/v1/townships/{t['id']}/active", {"active": False}, 200, "org.township.deactivate",
                "township")
    assert ev.object_id == str(t["id"]) and ev.summary == {"before": {"active": True}, "after": {"active": False}}
    assert verify(db) == []


def test_user_and_grant_writes_are_audited(app, demo, db):
    rec = Recorder(db, api_login(app, "admin"), user_id(db, "admin"))
    u, ev = rec("POST", "/api/v1/users", {"login": "newclerk", "display_name": "新文书", "password": "New-pass-2026"},
                201, "auth.user.create", "user")
    assert ev.object_id == str(u["id"]) and ev.summary == {"after": {"login": "newclerk", "display_name": "新文书"}}
    assert "New-pass-2026" not in str(ev.summary) and "argon2" not in str(ev.summary)
    vid = common.ids(db)["红旗村"]
    g, ev = rec("POST", f"/api/v1/users/{u['id']}/grants", {"role": "village_clerk", "village_id": vid}, 201,
                "auth.grant.create", "grant")
    assert ev.object_id == str(g["id"])
    assert ev.summary == {"after": {"user_id": u["id"], "role": "village_clerk", "granted": "红旗村 村文书", "village_id": vid}}
    _, ev = rec("PATCH", f"/api/v1/users/{u['id']}", {"display_name": "新文书甲"}, 200, "auth.user.update", "user")
    assert ev.summary["before"]["display_name"] == "新文书" and ev.summary["after"]["display_name"] == "新文书甲"
    _, ev = rec("PUT", f"/api/v1/users/{u['id']}/active", {"active": False}, 200, "auth.user.deactivate", "user")
    assert ev.summary == {"before": {"active": True}, "after": {"active": False}}
    _, ev = rec("DELETE", f"/api/v1/grants/{g['id']}", None, 204, "auth.grant.revoke", "grant")
    assert ev.summary == {"before": {"user_id": u["id"], "role": "village_clerk"}}


def test_login_failed_login_and_logout_are_audited(app, demo, db):
    uid = user_id(db, "clerk")
    c = new_client(app)
    r = form_login(c, "clerk", "wrong-password", **{"X-Request-ID": "req-bad-login"})
    assert r.status_code == 401
    ev = last_event(db)
    assert (ev.action, ev.actor_id, ev.object_type, ev.object_id) == ("auth.login_failed", None, "login", "clerk")
    assert ev.request_id == "req-bad-login" and ev.ip == "testclient" and ev.summary.get("note")

    r = form_login(c, "clerk", DEMO_PASSWORDS["clerk"], **{"X-Request-ID": "req-login"})
    assert r.status_code == 303
    ev = last_event(db)
    assert (ev.action, ev.actor_id, ev.object_type, ev.object_id) == ("auth.login", uid, "user", str(uid))
    assert ev.request_id == "req-login" and "clerk" in (ev.actor_name or "") and ev.role == "village_clerk"

    csrf = common.csrf_from(c.get("/account").text)
    r = c.post("/logout", data={"csrf_token": csrf}, headers={"X-Request-ID": "req-logout"}, follow_redirects=False)
    assert r.status_code == 303
    ev = last_event(db)
    assert (ev.action, ev.actor_id, ev.object_id, ev.request_id) == ("auth.logout", uid, str(uid), "req-logout")


def test_html_form_writes_are_audited_too(app, demo, db):
    c = new_client(app)
    csrf = login(c, "admin")
    r = c.post("/org/townships", data={"code": "341000301", "name": "表单镇", "csrf_token": csrf},
               headers={"X-Request-ID": "req-form"}, follow_redirects=False)
    assert r.status_code == 303
    ev = last_event(db)
    assert (ev.action, ev.actor_id, ev.request_id) == ("org.township.create", user_id(db, "admin"), "req-form")


def test_long_names_and_several_roles_do_not_break_audited_writes(app, demo, db):
    named = common.ids(db)
    with db.write_txn() as s:
        u = factories.make_user(s, login="l" * 40, name="长" * 40)
        factories.make_grant(s, u, "village_clerk", village_id=named["红旗村"])
        factories.make_grant(s, u, "committee_member", village_id=named["桃园村"])
        factories.make_grant(s, u, "township_reviewer", township_id=named["振风乡"])
        uid = u.id
    c = new_client(app)
    r = form_login(c, "l" * 40, "Passw0rd-test")
    assert r.status_code == 303, r.text[:300]
    ev = last_event(db)
    assert (ev.action, ev.actor_id) == ("auth.login", uid)
    assert ev.actor_name and ev.actor_name.startswith("长" * 40)
    csrf = common.csrf_from(c.get("/account").text)
    r = c.post(f"/org/villages/{named['红旗村']}/groups", data={"number": "9", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303
    assert last_event(db).action == "org.group.create"
    assert verify(db) == []


def test_failed_write_leaves_no_event(app, demo, db):
    admin = api_login(app, "admin")
    before = all_events(db)
    r = admin.post("/api/v1/townships", json={"code": "341000101", "name": "重复镇"})  # 城关镇's code
    assert r.status_code == 409
    assert [e.seq for e in all_events(db)] == [e.seq for e in before]


def test_chain_verifies_after_normal_use_and_head_matches(app, demo, db):
    admin = api_login(app, "admin")
    admin.post("/api/v1/townships", json={"code": "341000301", "name": "新设镇"})
    form_login(new_client(app), "clerk", "wrong-password")
    form_login(new_client(app), "clerk", DEMO_PASSWORDS["clerk"])
    evs = all_events(db)
    assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
    assert evs[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(evs))
    assert verify(db) == []
    assert head(db) == (evs[-1].seq, evs[-1].hash)
    assert verify(db, anchor=head(db)) == []
    assert verify(db, anchor=(evs[9].seq, evs[9].hash)) == []
    assert [v.kind for v in verify(db, anchor=(evs[9].seq, "f" * 64))] == ["changed"]
    assert admin.get("/api/v1/audit/head").json() == {"seq": evs[-1].seq, "hash": evs[-1].hash}


# ---- tampering ----------------------------------------------------------------------------------------------------

PG_TRIGGER = ("CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events "
              "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()")


@dataclass
class Attacker:
    url: str
    engine: Engine

    def verify(self, anchor: tuple[int, str] | None = None) -> list[audit.Violation]:
        with Session(self.engine) as s:
            return audit.verify(s, anchor=anchor)

    def shift(self, conn, from_seq: int, delta: int) -> None:  # type: ignore[no-untyped-def]
        """Renumber seq >= from_seq by delta (through negatives, so the unique index never sees a clash)."""
        conn.execute(update(T).where(T.c.seq >= from_seq).values(seq=-(T.c.seq + delta)))
        conn.execute(update(T).where(T.c.seq < 0).values(seq=-T.c.seq))


@pytest.fixture
def attacker(demo, db: Database, settings: Settings, tmp_path: Path) -> Iterator[Attacker]:
    """Someone with database access who drops the append-only trigger first.

    SQLite: on a copy of the database file. PostgreSQL: on the test database itself (the trigger is put back and
    the next test starts from TRUNCATE)."""
    if db.is_sqlite:
        target = tmp_path / "tampered.db"
        src, dst = sqlite3.connect(make_url(settings.database_url).database or ""), sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        url = f"sqlite:///{target}"
        drops = ["DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete"]
    else:
        url = settings.database_url
        drops = ["DROP TRIGGER audit_events_no_update_delete ON audit_events"]
    engine = build_engine(url)
    with engine.begin() as conn:
        for sql in drops:
            conn.execute(text(sql))
    try:
        yield Attacker(url, engine)
    finally:
        if not db.is_sqlite:
            with engine.begin() as conn:
                conn.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events"))
                conn.execute(text(PG_TRIGGER))
        engine.dispose()


def kinds(problems: list[audit.Violation]) -> list[tuple[str, int]]:
    return [(p.kind, p.seq) for p in problems]


@pytest.mark.parametrize(("column", "value"), [
    ("summary", {"after": {"name": "伪造的名字"}}),
    ("actor_name", "别人(someone)"),
    ("action", "org.township.rename"),
    ("object_id", "9999"),
])
def test_changed_event_is_named(attacker, db, column, value):
    assert attacker.verify() == []
    with attacker.engine.begin() as conn:
        conn.execute(update(T).where(T.c.seq == K).values(**{column: value}))
    problems = attacker.verify()
    assert kinds(problems) == [("changed", K)]
    assert f"第 {K} 号" in problems[0].message
    if db.is_sqlite:
        assert verify(db) == []  # the original is untouched


def test_changed_timestamp_is_named(attacker):
    with attacker.engine.begin() as conn:
        at = conn.execute(select(T.c.at).where(T.c.seq == K)).scalar_one()
        conn.execute(update(T).where(T.c.seq == K).values(at=at - timedelta(days=1)))
    assert kinds(attacker.verify()) == [("changed", K)]


def test_removed_event_is_named(attacker):
    with attacker.engine.begin() as conn:
        conn.execute(delete(T).where(T.c.seq == K))
    problems = attacker.verify()
    assert len(problems) == 1 and problems[0].kind in ("removed", "broken")
    assert f"第 {K}" in problems[0].message


def test_removed_event_with_renumbering_is_named(attacker):
    with attacker.engine.begin() as conn:
        conn.execute(delete(T).where(T.c.seq == K))
        attacker.shift(conn, K + 1, -1)
    problems = attacker.verify()
    assert any(p.kind in ("removed", "broken") and p.seq == K for p in problems), problems


def test_inserted_event_is_named(attacker):
    with attacker.engine.begin() as conn:
        prev = conn.execute(select(T.c.hash).where(T.c.seq == K - 1)).scalar_one()
        attacker.shift(conn, K, +1)
    forged = AuditEvent(seq=K, at=utcnow(), actor_id=None, actor_name="王建国(admin)", role="county_admin",
                        action="auth.grant.create", object_type="grant", object_id="77",
                        summary={"after": {"user_id": 77, "role": "county_admin"}}, request_id=None, ip=None,
                        prev_hash=prev, hash="")
    forged.hash = audit.chain_hash(prev, forged)
    with Session(attacker.engine) as s:
        s.add(forged)
        s.commit()
    problems = attacker.verify()
    assert any(p.kind in ("inserted", "broken") and p.seq == K for p in problems), kinds(problems)
    assert ("changed", K) not in kinds(problems)  # the forgery hashes correctly; its place in the chain betrays it


def test_wholesale_rewrite_is_caught_by_the_anchor(attacker, db):
    anchor = head(db)
    assert attacker.verify(anchor=anchor) == []
    with Session(attacker.engine) as s:
        rows = list(s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        rows[K - 1].summary = {"after": {"name": "悄悄改过"}}
        prev = rows[K - 2].hash
        for ev in rows[K - 1:]:
            ev.prev_hash = prev
            ev.hash = audit.chain_hash(prev, ev)
            prev = ev.hash
        s.commit()
    assert attacker.verify() == []  # a consistent rewrite passes the chain walk ...
    problems = attacker.verify(anchor=anchor)  # ... but not the head printed on paper
    assert kinds(problems) == [("changed", anchor[0])]
    assert "纸质" in problems[0].message


def _cli_verify(monkeypatch, capsys, tmp_path: Path, url: str, *args: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ZF_DATABASE_URL", url)
    monkeypatch.setenv("ZF_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("ZF_VAR_DIR", str(tmp_path / "cli-var"))
    get_settings.cache_clear()
    try:
        code = cli.main(["audit", "verify", *args])
    finally:
        get_settings.cache_clear()
    return code, capsys.readouterr().out


def test_cli_verify_clean_chain_exits_0(monkeypatch, capsys, tmp_path, demo, db, settings):
    seq, h = head(db)
    code, out = _cli_verify(monkeypatch, capsys, tmp_path, settings.database_url)
    assert code == 0 and "审计链完好" in out and f"共 {seq} 条" in out and h in out
    code, out = _cli_verify(monkeypatch, capsys, tmp_path, settings.database_url, "--anchor", f"{seq}:{h}")
    assert code == 0


def test_cli_verify_tampered_chain_exits_1(monkeypatch, capsys, tmp_path, db, attacker):
    anchor = head(db)
    with attacker.engine.begin() as conn:
        conn.execute(update(T).where(T.c.seq == K).values(summary={"after": {"name": "伪造"}}))
    code, out = _cli_verify(monkeypatch, capsys, tmp_path, attacker.url)
    assert code == 1
    assert "审计链校验失败" in out and "[changed]" in out and f"第 {K} 号" in out
    with attacker.engine.begin() as conn:
        conn.execute(delete(T).where(T.c.seq == K + 5))
    code, out = _cli_verify(monkeypatch, capsys, tmp_path, attacker.url, "--anchor", f"{anchor[0]}:{anchor[1]}")
    assert code == 1 and f"第 {K + 5}" in out


# ---- append-only in the database ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    "UPDATE audit_events SET action = 'org.nothing' WHERE seq = 2",
    "UPDATE audit_events SET hash = prev_hash",
    "DELETE FROM audit_events WHERE seq = 2",
    "DELETE FROM audit_events",
])
def test_database_refuses_update_and_delete(demo, db, sql):
    before = all_events(db)
    with pytest.raises(DBAPIError, match="append-only"), db.write_txn() as s:
        s.execute(text(sql))
    after = all_events(db)
    assert [(e.seq, e.action, e.hash) for e in after] == [(e.seq, e.action, e.hash) for e in before]
    assert verify(db) == []


def test_database_refuses_update_through_a_separate_connection(demo, db, settings):
    engine = build_engine(settings.database_url)
    try:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(update(T).where(T.c.seq == 1).values(summary={"after": {"x": 1}}))
    finally:
        engine.dispose()
    assert verify(db) == []


# ---- admin page and API -------------------------------------------------------------------------------------------

ROW_RE = re.compile(r"<tr><td>(\d+)</td><td>[^<]*</td><td>([^<]*)</td><td>[^<]*</td>\s*<td><code>([^<]+)</code>")


def page_rows(html: str) -> list[tuple[int, str, str]]:
    return [(int(s), actor, action) for s, actor, action in ROW_RE.findall(html)]


def test_admin_audit_page_filters_by_action_and_actor_and_shows_head(app, demo, db):
    c = new_client(app)
    csrf = login(c, "admin")
    assert c.post("/org/townships", data={"code": "341000301", "name": "新设镇", "csrf_token": csrf},
                  follow_redirects=False).status_code == 303
    evs = all_events(db)

    rows = page_rows(c.get("/admin/audit", params={"action": "org.township"}).text)
    expected = [e.seq for e in reversed(evs) if e.action.startswith("org.township")]
    assert [r[0] for r in rows] == expected and len(expected) == 3
    assert all(r[2].startswith("org.township") for r in rows)

    rows = page_rows(c.get("/admin/audit", params={"actor": "王建国"}).text)
    assert [r[0] for r in rows] == [e.seq for e in reversed(evs) if "王建国" in (e.actor_name or "")]
    assert {r[2] for r in rows} == {"auth.login", "org.township.create"}

    rows = page_rows(c.get("/admin/audit", params={"action": "org.township", "actor": "王建国"}).text)
    assert [r[2] for r in rows] == ["org.township.create"]

    page = c.get("/admin/audit").text
    seq, h = head(db)
    assert f'<code data-testid="chain-head">{h[:16]}</code>' in page
    assert re.search(rf"第 {seq} 号", page)
    first, second = page_rows(page), page_rows(c.get("/admin/audit", params={"page": 2}).text)
    assert len(first) == 50 and [r[0] for r in first + second] == list(range(seq, max(seq - 100, 0), -1))


def test_audit_page_and_api_are_for_auditors_only(app, demo, db):
    clerk = api_login(app, "clerk")
    assert clerk.get("/admin/audit").status_code == 404
    common.assert_api_error(clerk.get("/api/v1/audit/events"), 404)
    common.assert_api_error(clerk.get("/api/v1/audit/head"), 404)
    anonymous = new_client(app)
    common.assert_api_error(anonymous.get("/api/v1/audit/events"), 401)


def test_audit_api_paginates_and_filters(app, demo, db):
    admin = api_login(app, "admin")
    total = count(db, AuditEvent)
    seen: list[int] = []
    offset = 0
    while True:
        body = admin.get("/api/v1/audit/events", params={"offset": offset, "limit": 7}).json()
        assert body["total"] == total and body["offset"] == offset and body["limit"] == 7
        assert len(body["items"]) == min(7, total - offset)
        seen += [i["seq"] for i in body["items"]]
        offset += 7
        if offset >= total:
            break
    assert seen == list(range(total, 0, -1))
    assert admin.get("/api/v1/audit/events", params={"offset": total + 10}).json()["items"] == []
    item = admin.get("/api/v1/audit/events", params={"limit": 1}).json()["items"][0]
    assert set(item) >= {"seq", "at", "actor_id", "actor_name", "action", "object_type", "object_id", "summary",
                         "request_id", "prev_hash", "hash"}
    body = admin.get("/api/v1/audit/events", params={"action": "org.group", "limit": 200}).json()
    assert body["total"] == len(events(db, "org.group.create")) == 30
    assert {i["action"] for i in body["items"]} == {"org.group.create"}
    body = admin.get("/api/v1/audit/events", params={"object_type": "user", "object_id": str(user_id(db, "clerk"))}).json()
    assert {i["action"] for i in body["items"]} == {"auth.user.create"}
    common.assert_api_error(admin.get("/api/v1/audit/events", params={"limit": 500}), 422)
    common.assert_api_error(admin.get("/api/v1/audit/events", params={"offset": -1}), 422)


# ---- concurrency --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shared", [True, False], ids=["one-database", "database-per-thread"])
def test_concurrent_appends_keep_the_chain_linear(db, settings, shared):
    threads_n, writes = 8, 10
    start = count(db, AuditEvent)
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        database = db if shared else Database(settings.database_url)
        try:
            barrier.wait(timeout=30)
            for j in range(writes):
                with database.write_txn() as s:
                    audit.record(s, Actor.system(f"线程{i}"), "test.concurrent", object_type="thread",
                                 object_id=f"{i}-{j}", after={"i": i, "j": j})
        except BaseException as e:
            errors.append(e)
        finally:
            if not shared:
                database.dispose()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    evs = all_events(db)
    assert [e.seq for e in evs] == list(range(1, start + threads_n * writes + 1))
    assert len({e.object_id for e in evs if e.action == "test.concurrent"}) == threads_n * writes
    assert verify(db) == []
