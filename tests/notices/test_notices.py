"""Public notices (公示): the monthly results notice renders to a PDF whose text holds the village, the household
numbers and the totals and never an ID number or phone; every notice is registered, its code verifies on the public
page, a modified copy does not, a superseded one says so and by which; the register itself refuses changes."""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import Database
from app.errors import Conflict
from app.evaluation.service import rounds
from app.households.service import households as hh
from app.notices.service import notices, render
from tests.support.eval_helpers import CLERK, REVIEWER, THEMES, agree_all, consensus_round, staffed_village
from tests.support.web import TEST_SECRET, login

PW = "Passw0rd-test"
MONTH = 202609
KEY = notices.notice_key(TEST_SECRET)
ID_NUMBER = "110101199003071233"
PHONE = "13912345678"


def _pdf_text(data: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


def _public_round(db: Database) -> tuple[object, int, int]:
    """The staffed village's September round, publicised; one household's head has an ID number and a phone."""
    ev, home = staffed_village(db)
    with db.write_txn() as s:
        hh.add_member(s, CLERK, ev.households[0], hh.MemberInput(name="李四", relation="儿子", id_number=ID_NUMBER,  # type: ignore[attr-defined]
                                                                 phone=PHONE))
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households, exceptions={(ev.households[1], THEMES[0]): "优"})
        rounds.submit(s, CLERK, rid)
        rounds.approve(s, REVIEWER, rid)
        start = rounds.month_start(rounds.next_month(MONTH))
        rounds.publicise(s, CLERK, rid, on=start)
    return ev, home, rid


def test_results_notice_pdf_and_verification(client: TestClient, db: Database) -> None:
    ev, _home, _rid = _public_round(db)
    login(client, "clerk1", PW)
    page = client.get(f"/villages/{ev.vid}/notices?month={MONTH}")  # type: ignore[attr-defined]
    assert page.status_code == 200 and "月度评比结果公示" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post(f"/villages/{ev.vid}/notices", data={"kind": "results", "month": MONTH,  # type: ignore[attr-defined]
                                                         "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    notice_url = r.headers["location"]
    with db.read_txn() as s:
        n = notices.get_notice(s, int(notice_url.rsplit("/", 1)[1]))
        code, pdf_hash, content = n.code, n.pdf_sha256, dict(n.content)
    pdf = client.get(f"{notice_url}/notice.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert hashlib.sha256(pdf.content).hexdigest() == pdf_hash  # the download is the registered file
    words = _pdf_text(pdf.content)
    assert f"{ev.village.name}2026年9月评比结果公示" in words.replace(" ", "")  # type: ignore[attr-defined]
    for row in content["rows"]:
        assert re.search(rf"\b{row['number']}\b", words), row["number"]
    totals = content["totals"]
    assert f"参评 {totals['households']} 户" in words and f"发放 {totals['issued']} 分" in words
    assert notices.display_code(code) in words and "第1页/共1页" in words.replace(" ", "")
    assert ID_NUMBER not in words and PHONE not in words and ID_NUMBER[-4:] not in words.replace(" ", "")
    assert "异议截止" in words and "村评比委员会（盖章）" in words

    # anyone, signed in or not, checks the code and the file
    client.cookies.clear()
    v = client.get(f"/v?code={code.lower()[:4]}-{code.lower()[4:]}")  # typed from the paper, as it comes
    assert v.status_code == 200 and "真实有效，是最新版本" in v.text and notices.display_code(code) in v.text
    ok = client.post(f"/v/{code}/check", files={"file": ("a.pdf", pdf.content, "application/pdf")})
    assert ok.status_code == 200 and "文件一致" in ok.text
    # a forged copy: the same notice with one household's total changed
    forged = dict(content)
    forged["rows"] = [dict(r_) for r_ in content["rows"]]
    forged["rows"][0]["total"] += 10
    with db.read_txn() as s:
        n = notices.by_code(s, code)
        assert n is not None
        fake = render.pdf(render.html(notices.meta_of(n), forged, for_pdf=True))
    assert notices.display_code(code) in _pdf_text(fake)  # it even carries the genuine code
    bad = client.post(f"/v/{code}/check", files={"file": ("a.pdf", fake, "application/pdf")})
    assert bad.status_code == 200 and "文件不一致" in bad.text
    assert client.get("/v/ZZZZ2222").status_code == 404
    assert "查无此公示" in client.get("/v?code=zzzz-2222").text


def test_a_new_notice_supersedes_the_old_one(client: TestClient, db: Database) -> None:
    ev, _home, _rid = _public_round(db)
    with db.write_txn() as s:
        first = notices.register(s, CLERK, notices.draft(s, CLERK, "results", ev.vid, MONTH,  # type: ignore[attr-defined]
                                                         verify_base="http://zf.test"), None, key=KEY)
        old_code = first.code
    with db.write_txn() as s:
        second = notices.register(s, CLERK, notices.draft(s, CLERK, "results", ev.vid, MONTH,  # type: ignore[attr-defined]
                                                          verify_base="http://zf.test"), None, key=KEY)
        new_code = second.code
    page = client.get(f"/v/{old_code}")
    assert "已被新版本取代" in page.text and notices.display_code(new_code) in page.text
    assert "真实有效，是最新版本" in client.get(f"/v/{new_code}").text
    with db.read_txn() as s:
        assert notices.current(s, "results", ev.vid, MONTH).code == new_code  # type: ignore[attr-defined, union-attr]


@pytest.mark.parametrize("statement", ["UPDATE notices SET title = '改过的标题'",
                                       "UPDATE notices SET content_sha256 = 'x'",
                                       "DELETE FROM notices"])
def test_the_register_refuses_changes(db: Database, statement: str) -> None:
    ev, _home, _rid = _public_round(db)
    with db.write_txn() as s:
        notices.register(s, CLERK, notices.draft(s, CLERK, "results", ev.vid, MONTH,  # type: ignore[attr-defined]
                                                 verify_base="http://zf.test"), None, key=KEY)
    with pytest.raises(Exception, match="notices are evidence"), db.write_txn() as s:
        s.execute(text(statement))


def test_masking_and_a_round_not_yet_public(client: TestClient, db: Database) -> None:
    ev, _home = staffed_village(db)
    with db.write_txn() as s:
        consensus_round(s, ev, MONTH)
    with db.read_txn() as s, pytest.raises(Conflict, match="还没有经乡镇审核并开始公示"):
        notices.draft(s, CLERK, "results", ev.vid, MONTH, verify_base="http://zf.test")  # type: ignore[attr-defined]
    with db.write_txn() as s:
        rid = rounds.round_of_month(s, ev.vid, MONTH).id  # type: ignore[attr-defined, union-attr]
        agree_all(s, rid, ev.households)  # type: ignore[attr-defined, arg-type]
        rounds.submit(s, CLERK, rid)  # type: ignore[arg-type]
        rounds.approve(s, REVIEWER, rid)  # type: ignore[arg-type]
        rounds.publicise(s, CLERK, rid, on=rounds.month_start(rounds.next_month(MONTH)))  # type: ignore[arg-type]
        notices.set_masking(s, CLERK, ev.vid, "surname")  # type: ignore[attr-defined]
        d = notices.draft(s, CLERK, "results", ev.vid, MONTH, verify_base="http://zf.test")  # type: ignore[attr-defined]
        names = {r["name"] for r in d.content["rows"]}
        heads = {hh.get_household(s, h).head_name for h in ev.households}  # type: ignore[attr-defined]
    assert names and all(n.endswith("某") and len(n) == 2 for n in names)
    assert not names & heads
    assert d.content["objections_close_on"] == (rounds.month_start(rounds.next_month(MONTH))
                                                + timedelta(days=4)).isoformat()


def test_healthz_says_whether_pdfs_can_be_made(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/healthz").json()["notices_pdf"] == "ok"
    monkeypatch.setattr(render, "missing_parts", lambda: ("fonts-noto-cjk（中文字体）",))
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and "apt-get install -y fonts-noto-cjk" in body["notices_pdf"]
    with pytest.raises(render.PdfUnavailable, match="fonts-noto-cjk"):
        render.pdf("<p>公示</p>")


def test_every_kind_renders_for_a_demo_village(db: Database, demo: dict) -> None:
    """The demo's first village: each kind's PDF holds the village, its title and no ID number or phone of anyone
    on the roster."""
    from sqlalchemy import func, select

    from app.evaluation.models import EvalRound
    from app.households.models import Household, Member
    from app.notices import kinds
    from app.org.models import Village

    with db.read_txn() as s:
        village = s.execute(select(Village).order_by(Village.id)).scalars().first()
        assert village is not None
        month = s.execute(select(func.max(EvalRound.month)).where(EvalRound.village_id == village.id,
                                                                  EvalRound.status == "finalised")).scalar_one()
        household = s.execute(select(Household.id).where(Household.village_id == village.id)
                              .order_by(Household.id)).scalars().first()
        secrets_ = {x for m in s.execute(select(Member.id_number, Member.phone)).all() for x in m if x}
        secrets_ |= {h for h in s.execute(select(Household.phone)).scalars() if h}
        assert secrets_, "the demo roster should hold ID numbers and phones to look for"
        for kind, spec in kinds.KINDS.items():
            period = month if spec.period == "month" else month // 100 * 100
            d = notices.draft(s, CLERK, kind, village.id, period, verify_base="http://zf.test",  # type: ignore[arg-type]
                              household_id=household if spec.per_household else None)
            words = _pdf_text(notices.render_pdf(d))
            flat = words.replace(" ", "")
            assert d.title.replace(" ", "") in flat, kind
            assert notices.display_code(d.code) in words, kind
            leaked = [x for x in secrets_ if x in flat]
            assert not leaked, (kind, leaked[:3])
