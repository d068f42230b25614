"""A township's notices for a month in one go: the batch builds in the background with its progress on the batch
row, uses each village's current notice or registers a new one, says which village was left out and why, and gives
one PDF or a zip of one PDF per village."""

from __future__ import annotations

import io
import re
import subprocess
import time
import zipfile

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db import Database
from app.evaluation.service import rounds
from app.notices.models import NoticeBatch
from app.notices.service import notices
from tests.support.eval_helpers import (
    CLERK,
    REVIEWER,
    EvalVillage,
    agree_all,
    consensus_round,
    eval_village,
    staffed_village,
)
from tests.support.web import TEST_SECRET, login

PW = "Passw0rd-test"
MONTH = 202609


def _text(data: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


def _wait(db: Database, batch_id: int) -> NoticeBatch:
    for _ in range(600):
        with db.read_txn() as s:
            b = s.get(NoticeBatch, batch_id)
            if b is not None and b.status in ("done", "failed"):
                return b
        time.sleep(0.1)
    raise AssertionError("the batch did not finish in 60 s")


def _publicise(s: Session, ev: EvalVillage) -> None:
    """The village's round of MONTH, graded, approved by the township and publicised."""
    rid = consensus_round(s, ev, MONTH)
    agree_all(s, rid, ev.households)
    rounds.submit(s, CLERK, rid)
    rounds.approve(s, REVIEWER, rid)
    rounds.publicise(s, CLERK, rid, on=rounds.month_start(rounds.next_month(MONTH)))


def _start(client: TestClient, township_id: int, form: str) -> int:
    page = client.get(f"/townships/{township_id}/notices?month={MONTH}")
    assert page.status_code == 200 and "批量打印公示" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post(f"/townships/{township_id}/notice-batches", data={"month": MONTH, "form": form, "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_township_batch_as_one_pdf_and_as_a_zip(client: TestClient, db: Database) -> None:
    ev, _home = staffed_village(db)
    with db.write_txn() as s:
        _publicise(s, ev)
        existing = notices.register(s, CLERK, notices.draft(s, CLERK, "results", ev.vid, MONTH,
                                                            verify_base="http://zf.test"), None,
                                    key=notices.notice_key(TEST_SECRET))
        existing_code = existing.code
        quiet = eval_village(s, households=2, members=0)  # no round this month
    township = ev.village.township_id
    assert quiet.village.township_id != township  # eval_village makes its own township: move it into ours
    with db.write_txn() as s:
        from app.org.models import Village
        s.get(Village, quiet.vid).township_id = township  # type: ignore[union-attr]
    login(client, "reviewer1", PW)
    batch_id = _start(client, township, "pdf")  # type: ignore[arg-type]
    b = _wait(db, batch_id)
    assert b.status == "done" and (b.done, b.total) == (2, 2), b.error
    assert quiet.village.name in (b.error or "") and "还没有开始" in (b.error or "")
    page = client.get(f"/notice-batches/{batch_id}")
    assert "已完成" in page.text and f"/notice-batches/{batch_id}/file" in page.text
    fragment = client.get(f"/notice-batches/{batch_id}", headers={"HX-Request": "true"})
    assert 'data-testid="batch-status"' in fragment.text and "<html" not in fragment.text
    pdf = client.get(f"/notice-batches/{batch_id}/file")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    words = _text(pdf.content)
    assert notices.display_code(existing_code) in words  # the current notice, not a new one
    assert f"{ev.village.name}2026年9月评比结果公示" in words.replace(" ", "")

    batch_id = _start(client, township, "zip")  # type: ignore[arg-type]
    assert _wait(db, batch_id).status == "done"
    z = zipfile.ZipFile(io.BytesIO(client.get(f"/notice-batches/{batch_id}/file").content))
    names = z.namelist()
    assert len(names) == 1 and ev.village.name in names[0] and names[0].endswith(".pdf")
    assert notices.display_code(existing_code) in _text(z.read(names[0]))


def test_a_batch_not_ready_and_out_of_scope(client: TestClient, db: Database) -> None:
    ev, _home = staffed_village(db)
    with db.write_txn() as s:
        b = NoticeBatch(township_id=ev.village.township_id, month=MONTH, form="pdf", total=1, created_by="测试")  # type: ignore[arg-type]
        s.add(b)
        s.flush()
        batch_id = b.id
    login(client, "reviewer1", PW)
    assert client.get(f"/notice-batches/{batch_id}/file").status_code == 409
    assert "正在生成" in client.get(f"/notice-batches/{batch_id}").text
    login(client, "clerk1", PW)  # a village clerk has no township to print for
    assert client.get(f"/notice-batches/{batch_id}").status_code == 404
    assert client.get(f"/townships/{ev.village.township_id}/notices").status_code == 404


def test_a_clerk_prints_the_month_in_one_click(client: TestClient, db: Database) -> None:
    ev, _home = staffed_village(db)
    with db.write_txn() as s:
        _publicise(s, ev)
    login(client, "clerk1", PW)
    page = client.get(f"/villages/{ev.vid}/notices?month={MONTH}")
    assert 'data-testid="print-month"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post(f"/villages/{ev.vid}/notices/month", data={"month": MONTH, "csrf_token": csrf})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf", r.text[:300]
    words = _text(r.content).replace(" ", "")
    assert f"{ev.village.name}2026年9月评比结果公示" in words
    with db.read_txn() as s:  # the results notice was registered on the way; a second click uses it
        code = notices.current(s, "results", ev.vid, MONTH).code  # type: ignore[union-attr]
    again = client.post(f"/villages/{ev.vid}/notices/month", data={"month": MONTH, "csrf_token": csrf})
    assert notices.display_code(code) in _text(again.content)
    # a month with nothing public yet: told why, nothing printed
    empty = client.post(f"/villages/{ev.vid}/notices/month", data={"month": 202601, "csrf_token": csrf})
    assert empty.status_code == 422 and "本月还没有可以张贴的公示" in empty.text
