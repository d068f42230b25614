"""A forged notice is not vouched for: someone with the database file (the append-only triggers dropped) rewrites a
registered notice's content and recomputes its hash in the same row, and goes further, rewriting the audit event of
its generation, then the chain's whole tail. The public check page and `zhenfeng notices verify` must say the notice
is not genuine every time: the row is checked against the audit chain's record of its generation and against its
seal under the server's key, which is not in the file. Runs on SQLite (a copy of the file) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app import cli
from app.audit import service as audit
from app.audit.models import AuditEvent
from app.config import Settings, get_settings
from app.demo.loader import DEMO_NOTICE
from app.main import create_app
from app.notices.models import Notice
from app.notices.service import notices
from tests.support import clients as common
from tests.support.db import attacker_copy, tampering
from tests.support.web import TEST_SECRET

db_url, demo = common.db_url, common.demo

N = Notice.__table__  # type: ignore[attr-defined]
A = AuditEvent.__table__  # type: ignore[attr-defined]
GENUINE = "真实有效，是最新版本"


@pytest.fixture
def stolen(demo, db, settings: Settings, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    db.dispose()
    with attacker_copy(settings.database_url, tmp_path) as url:
        yield url


def _page(url: str, tmp_path: Path, code: str = DEMO_NOTICE) -> str:
    app = create_app(Settings(var_dir=tmp_path / "var-copy", database_url=url, secret_key=TEST_SECRET,
                              log_level="WARNING"))
    try:
        with TestClient(app) as c:
            r = c.get(f"/v/{code}")
            assert r.status_code == 200
            return r.text
    finally:
        app.state.db.dispose()


def _notices_verify(monkeypatch, capsys, tmp_path: Path, url: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ZF_DATABASE_URL", url)
    monkeypatch.setenv("ZF_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("ZF_VAR_DIR", str(tmp_path / "cli-var"))
    get_settings.cache_clear()
    try:
        code = cli.main(["notices", "verify"])
    finally:
        get_settings.cache_clear()
    return code, capsys.readouterr().out


def _rewrite_row(conn: Connection) -> tuple[int, str]:
    """One household's total raised by 10 in the notice's content, its hash recomputed in the same row."""
    nid, content = conn.execute(select(N.c.id, N.c.content).where(N.c.code == DEMO_NOTICE)).one()
    forged = dict(content)
    forged["rows"] = [dict(r) for r in content["rows"]]
    forged["rows"][0]["total"] += 10
    new_hash = notices.content_hash(forged)
    conn.execute(update(N).where(N.c.id == nid).values(content=forged, content_sha256=new_hash))
    return nid, new_hash


def _rewrite_event(conn: Connection, nid: int, new_hash: str, *, whole_tail: bool) -> None:
    """The generation event made to record the forged hash, its own hash recomputed (and, with `whole_tail`, every
    later event re-chained so that the chain walks clean)."""
    rows = [dict(r) for r in conn.execute(select(A).order_by(A.c.seq)).mappings()]
    at = next(i for i, r in enumerate(rows) if r["action"] == "notices.generate" and r["object_id"] == str(nid))
    rows[at]["summary"] = {**rows[at]["summary"],
                           "after": {**rows[at]["summary"]["after"], "content_sha256": new_hash}}
    for r in rows[at:] if whole_tail else rows[at:at + 1]:
        ev = AuditEvent(**r)
        ev.hash = audit.chain_hash(ev.prev_hash, ev)
        conn.execute(update(A).where(A.c.id == r["id"]).values(summary=r["summary"], hash=ev.hash))
        if whole_tail and r is not rows[-1]:
            rows[rows.index(r) + 1]["prev_hash"] = ev.hash
            conn.execute(update(A).where(A.c.id == rows[rows.index(r) + 1]["id"]).values(prev_hash=ev.hash))


@pytest.mark.parametrize("depth", ["row", "row_and_event", "row_and_whole_chain_tail"])
def test_rewritten_notice_is_shown_as_not_genuine(stolen, tmp_path, monkeypatch, capsys, depth):
    assert GENUINE in _page(stolen, tmp_path)  # before: genuine
    assert _notices_verify(monkeypatch, capsys, tmp_path, stolen)[0] == 0
    with tampering(stolen) as conn:
        nid, new_hash = _rewrite_row(conn)
        if depth != "row":
            _rewrite_event(conn, nid, new_hash, whole_tail=depth == "row_and_whole_chain_tail")
    page = _page(stolen, tmp_path)
    assert GENUINE not in page and "真实，但已被新版本取代" not in page
    assert "不是真实有效的公示" in page and "请向乡镇核实" in page
    code, out = _notices_verify(monkeypatch, capsys, tmp_path, stolen)
    assert code == 1 and notices.display_code(DEMO_NOTICE) in out and "不是真实有效的" in out
    if depth == "row":
        assert "内容指纹与生成时审计链记下的不同" in out
    if depth == "row_and_event":
        assert "与下一条的哈希链接断开" in out
    assert "密封与登记的内容不符" in out  # every time: the seal needs a key the file does not hold
    if depth == "row_and_whole_chain_tail":  # the chain itself walks clean: only the seal (and anchors) can tell
        with tampering(stolen) as conn:
            assert audit.verify(Session(bind=conn)) == []


def test_notice_without_seal_is_not_genuine(stolen, tmp_path):
    """Clearing the seal is no way round it: a notice without one is not shown as genuine."""
    with tampering(stolen) as conn:
        conn.execute(update(N).where(N.c.code == DEMO_NOTICE).values(mac=None))
    page = _page(stolen, tmp_path)
    assert GENUINE not in page and "不是真实有效的公示" in page


def test_notice_with_a_deleted_generation_event_is_not_genuine(stolen, tmp_path, monkeypatch, capsys):
    with tampering(stolen) as conn:
        nid = conn.execute(select(N.c.id).where(N.c.code == DEMO_NOTICE)).scalar_one()
        conn.execute(A.delete().where(A.c.action == "notices.generate", A.c.object_id == str(nid)))
    assert "不是真实有效的公示" in _page(stolen, tmp_path)
    code, out = _notices_verify(monkeypatch, capsys, tmp_path, stolen)
    assert code == 1 and "没有这份公示" in out
