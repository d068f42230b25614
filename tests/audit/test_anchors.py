"""A cut audit tail does not go unnoticed: someone with the database file (the append-only triggers dropped) deletes
the newest events. The chain that is left walks clean, so `zhenfeng audit verify` checks every anchor it knows: the
head printed on each notice (which the database records) and anchor files kept off the machine
(`zhenfeng audit anchor --out FILE`), and names the truncation and the anchor. Runs on SQLite (a copy of the file)
and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from app import cli
from app.audit.models import AuditEvent
from app.config import Settings, get_settings
from app.demo.loader import DEMO_NOTICE
from app.notices.models import Notice
from app.notices.service import notices
from app.org.models import Village
from tests.support import clients as common
from tests.support.db import attacker_copy, tampering
from tests.support.web import TEST_SECRET

db_url, demo = common.db_url, common.demo

N = Notice.__table__  # type: ignore[attr-defined]
A = AuditEvent.__table__  # type: ignore[attr-defined]


@pytest.fixture
def stolen(demo, db, settings: Settings, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    db.dispose()
    with attacker_copy(settings.database_url, tmp_path) as url:
        yield url


def _cli(monkeypatch, capsys, tmp_path: Path, url: str, *args: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ZF_DATABASE_URL", url)
    monkeypatch.setenv("ZF_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("ZF_VAR_DIR", str(tmp_path / "cli-var"))
    get_settings.cache_clear()
    try:
        code = cli.main(list(args))
    finally:
        get_settings.cache_clear()
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _newest_printed_head(url: str) -> tuple[int, str]:
    """The newest head printed on a notice, and that notice's code."""
    with tampering(url) as conn:
        seq, code = conn.execute(select(N.c.audit_seq, N.c.code).order_by(N.c.audit_seq.desc(), N.c.id)).first()  # type: ignore[misc]
    return seq, code


@pytest.mark.parametrize("cut", ["below_the_head", "just_after_the_head"])
def test_cut_tail_below_a_printed_head_is_named(stolen, tmp_path, monkeypatch, capsys, cut):
    """Below the head: the events up from the printed head are gone. Just after: the head is kept, but the
    notice's own generation event (which comes after it) is gone."""
    assert _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "verify")[0] == 0
    seq, code = _newest_printed_head(stolen)
    with tampering(stolen) as conn:
        conn.execute(A.delete().where(A.c.seq >= seq if cut == "below_the_head" else A.c.seq > seq))
    status, out = _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "verify")
    assert status == 1, out
    assert "[truncated]" in out and "审计链被截断" in out
    assert f"公示 {notices.display_code(code)}" in out and f"第 {seq} 号" in out


def test_anchor_file_names_a_cut_the_database_cannot(stolen, tmp_path, monkeypatch, capsys):
    """The attacker also deletes the notices that printed later heads: only the anchor file kept off the machine
    still knows how far the chain went."""
    anchor = tmp_path / "anchor.json"
    status, out = _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "anchor", "--out", str(anchor))
    assert status == 0 and anchor.exists()
    doc = json.loads(anchor.read_text(encoding="utf-8"))
    assert doc["seq"] > 10 and len(doc["hash"]) == 64 and len(doc["mac"]) == 64
    assert _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "verify", "--anchor", str(anchor))[0] == 0
    cut_at = doc["seq"] - 3
    with tampering(stolen) as conn:
        conn.execute(N.update().values(superseded_by_id=None))
        conn.execute(N.delete().where(N.c.audit_seq >= cut_at - 1))
        conn.execute(A.delete().where(A.c.seq >= cut_at))
    status, out = _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "verify")
    assert status == 0, out  # what the database itself knows is consistent ...
    status, out = _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "verify", "--anchor", str(anchor))
    assert status == 1, out  # ... the file kept off the machine is not
    assert "[truncated]" in out and "锚点文件 anchor.json" in out and f"第 {doc['seq']} 号" in out


def test_forged_anchor_file_is_refused(stolen, tmp_path, monkeypatch, capsys):
    anchor = tmp_path / "anchor.json"
    _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "anchor", "--out", str(anchor))
    doc = json.loads(anchor.read_text(encoding="utf-8"))
    doc["seq"] -= 5  # made to fit a cut chain
    anchor.write_text(json.dumps(doc), encoding="utf-8")
    status, out = _cli(monkeypatch, capsys, tmp_path, stolen, "audit", "verify", "--anchor", str(anchor))
    assert status == 2 and "密封不符" in out


def test_portal_shows_the_current_head(demo, db, client):  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        seq, h = s.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc())).first()  # type: ignore[misc]
        village_code = s.execute(select(Village.code).join(Notice, Notice.village_id == Village.id)
                                 .where(Notice.code == DEMO_NOTICE)).scalar_one()
    for url in ("/public", f"/public/villages/{village_code}"):
        page = client.get(url).text
        assert 'data-testid="audit-head"' in page, url
        assert f"{seq}:{h}" in page and h[:16] in page
