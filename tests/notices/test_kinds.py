"""The notice kinds besides the monthly results: 红榜, 黑榜, 积分排行, 超市收支公示, a household's 积分对账单 and a round's
评比审核记录. One village is built through the real services (two finalised rounds with determinations, an
objection, a return by the township, groups, a store with funds, a purchase and a redemption); each kind is rendered
to PDF and read back with `pdftotext -layout`: the expected Chinese text, household numbers and totals are there,
and never an ID number or a phone number (a member has both, a household has a phone)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, update

from app.core.masking import mask_id_number, mask_phone
from app.db import Database
from app.errors import Conflict, ValidationFailed
from app.evaluation.service import motions, objections, rounds
from app.households.service import households as hh
from app.ledger import service as ledger
from app.lists import service as lists
from app.lists.models import ListPosting
from app.notices import kinds
from app.notices.kinds.common import competition_ranks, scrub
from app.notices.service import notices
from app.store.service import counter, stock
from app.store.service import stores as store_service
from app.store.service.stock import yuan
from tests.support import eval_helpers
from tests.support.eval_helpers import CLERK, NAMES, REVIEWER, THEMES, EvalVillage, agree_all, consensus_round, staffed_village
from tests.support.factories import make_group, make_store
from tests.support.web import TEST_SECRET, login

PW = "Passw0rd-test"
AUG, SEP, YEAR = 202608, 202609, 202600
ID_NUMBER = "110101199003071233"
PHONE = "13912345678"
HOUSE_PHONE = "13800138000"
SECRETS = (ID_NUMBER, PHONE, HOUSE_PHONE, mask_id_number(ID_NUMBER), mask_phone(PHONE), mask_phone(HOUSE_PHONE))
OBJECTION_TEXT = "我家院子每天打扫，邻居可以作证"
BASE = "http://zf.test"


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 2, tzinfo=UTC)  # 10:00 in the village


def _pdf_text(data: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True).stdout.decode()


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@dataclass
class Village:
    ev: EvalVillage
    hs: list[int]
    posting_ids: dict[str, int]


def _approve_and_publicise(s: object, rid: int, month: int) -> None:
    rounds.approve(s, REVIEWER, rid, "同意公示")  # type: ignore[arg-type]
    rounds.publicise(s, CLERK, rid, on=rounds.month_start(rounds.next_month(month)))  # type: ignore[arg-type]


def _pass(s: object, ev: EvalVillage, motion_id: int) -> None:
    """Every member votes yes (a member is recused from his own household) until the motion passes."""
    for i in range(len(ev.members)):
        try:
            done, _ = motions.vote(s, ev.actor(i), motion_id, "yes")  # type: ignore[arg-type]
        except ValidationFailed:
            continue
        if done.status == "passed":
            return
    raise AssertionError("motion did not pass")


@pytest.fixture
def village(db: Database) -> Village:
    """Six households 001-006 in two groups; August: 002's son 李四 (who has an ID number and a phone) named 不孝儿女,
    003 不诚信户, 004 文明家庭, 001 graded 优 once; September: returned once by the township, 001 graded 优 on
    everything (the red list by the red policy), 005's 环保卫生 corrected by an upheld objection; a penalty on 006
    in October; points of 2025 for 001 (brought forward); a store with a county grant, a donation, a purchase and
    001's redemption. Then 003's black posting is lifted through rectification, and postings voided, expired, past
    their period and erased are added: none of them may appear on the September lists."""
    ev, _home = staffed_village(db)
    hs = ev.households
    with db.write_txn() as s:
        g1, g2 = make_group(s, ev.village, 1), make_group(s, ev.village, 2)
        for i, hid in enumerate(hs):
            hh.move_group(s, CLERK, hid, (g1 if i < 3 else g2).id)
        son = hh.add_member(s, CLERK, hs[1], hh.MemberInput(name="李四", relation="儿子", id_number=ID_NUMBER,
                                                             phone=PHONE))
        hh.update_household(s, CLERK, hs[0], address="一组8号", phone=HOUSE_PHONE, notes=None)
        ledger.post(s, CLERK, ledger.award_posting(hs[0], ev.vid, 20, "2025年12月评比积分"),
                    occurred_at=_at(date(2025, 12, 10)))

        rid = consensus_round(s, ev, AUG)
        agree_all(s, rid, hs, exceptions={(hs[0], THEMES[0]): "优"})
        proposed = [
            motions.propose_determination(s, CLERK, rid, household_id=hs[1], code="UNFILIAL", description="不赡养母亲",
                                          member_id=son.id, member_name="李四"),
            motions.propose_determination(s, CLERK, rid, household_id=hs[2], code="DISHONEST",
                                          description="拖欠工钱半年未付"),
            motions.propose_determination(s, CLERK, rid, household_id=hs[3], code="CIVILISED_FAMILY",
                                          description="家风良好")]
        for m in proposed:
            motions.add_evidence(s, CLERK, m.id, file_name="证据.jpg", media_type="image/jpeg",  # type: ignore[arg-type]
                                 data=b"\xff\xd8\xffjpeg")
            _pass(s, ev, m.id)  # type: ignore[arg-type]
        rounds.submit(s, CLERK, rid)
        _approve_and_publicise(s, rid, AUG)
        rounds.finalise(s, CLERK, rid, on=date(2026, 9, 10), at=_at(date(2026, 9, 10)))

        rid = consensus_round(s, ev, SEP)
        agree_all(s, rid, hs, exceptions={**{(hs[0], t): "优" for t in THEMES}, (hs[4], "ENV"): "差"})
        rounds.submit(s, CLERK, rid)
        rounds.return_round(s, REVIEWER, rid, "第二组环保卫生请复核，联系人电话 13912345678")
        rounds.submit(s, CLERK, rid)
        _approve_and_publicise(s, rid, SEP)
        o = objections.file(s, CLERK, rid, household_id=hs[4], target="rating", theme="ENV", text=OBJECTION_TEXT,
                            on_paper=True, day=date(2026, 10, 2))
        objections.resolve(s, CLERK, o.id, uphold=True, corrected_grade="优",  # type: ignore[arg-type]
                           reason="复查属实，更正为优（已电话 13912345678 回复本户）")
        rounds.finalise(s, CLERK, rid, on=date(2026, 10, 10), at=_at(date(2026, 10, 10)))
        ledger.post(s, CLERK, ledger.penalty_posting(hs[5], ev.vid, 4, "乱倒垃圾，按村规民约扣分", policy="floor_at_zero"),
                    occurred_at=_at(date(2026, 10, 12)))

        shop = make_store(s, ev.village)
        grant = store_service.record_fund(s, CLERK, village_id=ev.vid, source="county", amount_fen=10100,
                                          received_on=date(2026, 1, 5), document_no="县财〔2026〕8号")
        store_service.record_fund(s, CLERK, village_id=ev.vid, source="donation", amount_fen=250050,
                                  received_on=date(2026, 3, 2), document_no="捐赠收据第001号", donor="王大富商行")
        item = stock.create_item(s, CLERK, shop.id, stock.ItemInput(name="洗衣粉", unit="袋", points=10,  # type: ignore[arg-type]
                                                                    cost_fen=500))
        stock.purchase(s, CLERK, item.id, quantity=20, cost_fen=10000, fund_id=grant.id,  # type: ignore[arg-type]
                       at=_at(date(2026, 1, 6)))
        counter.redeem(s, CLERK, store_id=shop.id, household_id=hs[0], lines=[counter.Line(item.id, 2)],  # type: ignore[arg-type]
                       identity_note="户主本人", at=_at(date(2026, 10, 15)))

    with db.write_txn() as s:  # 003's 不诚信户 lifted: the committee decided the household has changed
        dishonest = next(p for p in lists.household_history(s, hs[2]) if p.code == "DISHONEST")
        lists.start_rectification(s, CLERK, dishonest.id, measures="按约归还欠款", helper="老党员 李德明",  # type: ignore[arg-type]
                                  month=SEP)
        lists.record_visit(s, CLERK, dishonest.id, visited_on=date.today(), notes="已还清", month=SEP)  # type: ignore[arg-type]
        lists.lift(s, CLERK, dishonest.id, decided_on=date.today(), members_present=4, members_for=4,  # type: ignore[arg-type]
                   decision="欠款已还清，同意移出", month=SEP)
        ids = {"lifted": dishonest.id}
        for key, hid, status, months in (("voided", hs[5], "voided", (SEP, SEP)),
                                         ("expired", hs[4], "expired", (SEP, SEP)),
                                         ("past", hs[0], "effective", (202606, AUG)),
                                         ("erased", None, "effective", (SEP, SEP))):
            ids[key] = int(s.execute(insert(ListPosting).values(
                village_id=ev.vid, household_id=hid, list="black", source="determination", code="UNHYGIENIC",
                reason="卫生不整洁户", explanation="委员会认定", from_month=months[0], to_month=months[1],
                status=status).returning(ListPosting.id)).scalar_one())
        s.execute(update(ListPosting).where(ListPosting.id == ids["erased"]).values(erased_at=_at(date(2026, 10, 1))))
    return Village(ev, hs, ids)


def _render(db: Database, kind: str, vid: int, period: int, **kw: object) -> tuple[dict[str, object], str]:
    with db.write_txn() as s:
        d = notices.draft(s, CLERK, kind, vid, period, verify_base=BASE, **kw)  # type: ignore[arg-type]
        pdf = notices.render_pdf(d)
        notices.register(s, CLERK, d, pdf, key=notices.notice_key(TEST_SECRET))
    words = _pdf_text(pdf)
    for secret in SECRETS:
        assert secret not in words and secret not in _flat(words), f"{kind}: {secret} printed"
    assert notices.display_code(d.code) in words and "第1页/共" in _flat(words)
    return d.content, words


def _rows(words: str, numbers: list[str]) -> list[str]:
    """The lines of the text that start a row of these household numbers (the numbers in print order)."""
    found = []
    for line in words.splitlines():
        for n in numbers:
            if re.search(rf"(^|\s){n}\s", line):
                found.append(n)
    return found


def test_red_list(db: Database, village: Village) -> None:
    _content, words = _render(db, "red", village.ev.vid, SEP)
    flat = _flat(words)
    assert f"{village.ev.village.name}2026年9月红榜" in flat
    assert _rows(words, ["001", "002", "003", "004", "005", "006"]) == ["001", "004"]
    assert "2026年9月评比总分60分，在本村参评农户中排第1名" in flat  # the red policy, in plain words
    assert "文明家庭" in words and "家风良好、邻里和睦、热心公益的模范家庭" in flat  # the ruleset's own words
    assert "2026年8月至2026年10月" in flat  # 文明家庭: three months
    assert "上榜2户" in flat
    assert NAMES[0] not in words and "张*国" in words  # the village's masking (middle by default)
    assert "黑榜" not in words.replace("移出黑榜", "")


def test_black_list_follows_the_retention_rules(db: Database, village: Village) -> None:
    content, words = _render(db, "black", village.ev.vid, SEP)
    flat = _flat(words)
    assert f"{village.ev.village.name}2026年9月黑榜" in flat
    # only 002's 不孝儿女 is shown: 003's was lifted; the voided, expired, past and erased postings never appear
    assert _rows(words, ["001", "002", "003", "004", "005", "006"]) == ["002"]
    assert [r["number"] for r in content["rows"]] == ["002"]  # type: ignore[attr-defined, index]
    assert "不孝儿女" in words and "卫生不整洁户" not in words and "不诚信户" not in words
    assert "李*" in words and "李四" not in words  # the named member follows the masking policy too
    assert "李*英" in words and NAMES[1] not in words
    assert "2026年8月至2026年10月" in flat and "不赡养、虐待或遗弃老人" in flat
    assert "怎样移出黑榜" in words and "整改" in words and "委员会" in words
    assert "按约归还欠款" not in flat and "李德明" not in flat  # nobody's measures, nobody's helper
    with db.write_txn() as s:  # October: publicised, not finalised: its lists are not known yet
        rid = consensus_round(s, village.ev, 202610)
        agree_all(s, rid, village.hs)
        rounds.submit(s, CLERK, rid)
        _approve_and_publicise(s, rid, 202610)
    for month, state in ((202610, "还没有公示期满入账（目前：公示中）"), (202607, "还没有开始")):
        for kind in ("red", "black"):
            with db.read_txn() as s, pytest.raises(Conflict, match=re.escape(state)):
                notices.draft(s, CLERK, kind, village.ev.vid, month, verify_base=BASE)


def test_black_list_surname_masking(db: Database, village: Village) -> None:
    with db.write_txn() as s:
        notices.set_masking(s, CLERK, village.ev.vid, "surname")
    _content, words = _render(db, "black", village.ev.vid, SEP)
    assert "李某" in words and "李*" not in words and "李秀英" not in words and "李四" not in words


def test_ranking_with_ties_and_groups(db: Database, village: Village) -> None:
    content, words = _render(db, "ranking", village.ev.vid, YEAR)
    flat = _flat(words)
    assert f"{village.ev.village.name}2026年积分排行" in flat
    # August: 良 on all six themes = 36; 001 one 优 = 40; 002 and 003 named (-10) = 26; 004 文明家庭 (+20) = 56.
    # September: 001 优 everywhere = 60; 005's 环保卫生 corrected from 差 to 优 = 40; the others 36. 006: -4 in October.
    expected = [("001", 1, 1, 100), ("004", 2, 1, 92), ("005", 3, 2, 76), ("006", 4, 3, 68),
                ("002", 5, 2, 62), ("003", 5, 2, 62)]
    got = [(r["number"], r["rank"], r["group_rank"], r["points"]) for r in content["rows"]]  # type: ignore[attr-defined, index]
    assert got == expected
    assert _rows(words, [e[0] for e in expected]) == [e[0] for e in expected]  # printed in rank order
    for number, rank, group_rank, points in expected:
        line = next(ln for ln in words.splitlines() if re.search(rf"\s{number}\s", ln))
        assert re.match(rf"\s*{rank}\s+{number}\s.*\s{group_rank}\s.*\s{points}\s*$", line), line
    assert "第一村民小组" in words and "第二村民小组" in words
    assert "6 户；奖励 464 分，扣分 4 分，净得 460 分" in words  # 001's 20 points of 2025 do not count


def test_finance(db: Database, village: Village) -> None:
    content, words = _render(db, "finance", village.ev.vid, YEAR)
    flat = _flat(words)
    assert f"{village.ev.village.name}2026年振风超市收支公示" in flat
    assert re.search(r"县级拨款\s+101\.00", words) and re.search(r"社会捐赠\s+2,500\.50", words)
    assert re.search(r"资金合计\s+2,601\.50", words)
    assert re.search(r"采购商品（用去资金）\s+100\.00", words)
    assert re.search(r"兑换出的商品（按进价）\s+10\.00", words) and re.search(r"兑换用去的积分\s+20 分", words)
    assert re.search(r"资金余额（历年收到减已用）\s+2,501\.50", words)
    assert "18 件" in words and re.search(r"按进价）\s+90\.00", words)
    # the households' points: 100 + 62 + 62 + 92 + 76 + 68 = 460, worth 460.00 yuan at 1.00 a point
    assert re.search(r"农户尚未兑换的积分\s+460 分", words) and "460 分 × 1.00 元/分" in words
    assert re.search(r"保障余额\s+2,131\.50", words)
    assert "县财〔2026〕8号" in words and "王大富商行" not in words  # the document number, not the donor
    assert content["cover"] == "2,131.50"
    with db.write_txn() as s:  # a village with no store, no money and no points has no accounts to post
        quiet = eval_helpers.eval_village(s, households=2, members=0)
    with db.read_txn() as s, pytest.raises(Conflict, match="没有收支可以公示"):
        notices.draft(s, CLERK, "finance", quiet.vid, YEAR, verify_base=BASE)


def test_statement(db: Database, village: Village) -> None:
    hid = village.hs[0]
    content, words = _render(db, "statement", village.ev.vid, YEAR, household_id=hid)
    flat = _flat(words)
    assert "农户积分对账单（2026年·户号001）" in flat
    assert NAMES[0] in words  # the household's own paper: its head's name in full
    assert re.search(r"上年结转\s+20\b", words)
    lines = [ln for ln in words.splitlines() if re.match(r"\s*2026-\d\d-\d\d\s", ln)]
    assert [re.split(r"\s+", ln.strip())[0] for ln in lines] == ["2026-09-10", "2026-10-10", "2026-10-15"]
    assert re.search(r"\+40\s+60\s*$", lines[0]) and re.search(r"\+60\s+120\s*$", lines[1])
    assert re.search(r"-20\s+100\s*$", lines[2]) and "兑换" in lines[2]
    assert re.search(r"本年结余\s+100\b", words) and "得分 100 分，用去和扣减 20 分，共 3 笔" in words
    assert (content["opening"], content["closing"]) == (20, 100)
    with db.read_txn() as s, pytest.raises(ValidationFailed, match="户号"):
        notices.draft(s, CLERK, "statement", village.ev.vid, YEAR, verify_base=BASE)


def test_review_record(db: Database, village: Village) -> None:
    _content, words = _render(db, "review", village.ev.vid, SEP)
    flat = _flat(words)
    assert f"{village.ev.village.name}2026年9月评比审核记录" in flat
    steps = ["开始评比", "提交乡镇审核", "乡镇退回修改", "修改后重新提交", "乡镇审核通过", "开始公示", "公示期满，积分入账"]
    at = [flat.index(step) for step in steps]
    assert at == sorted(at), "the steps in the order they happened"
    assert "第二组环保卫生请复核" in flat and "同意公示" in flat and "乡镇审核员" in words
    assert "005" in words and "刘*强" in words and NAMES[4] not in words
    assert "评分·环保卫生" in flat and "异议成立" in words and "复查属实，更正为优" in flat
    assert OBJECTION_TEXT not in flat  # the villager's own words stay in the file, not on the record
    # September: 001 60, 005 40 (corrected), the others 36; 001 on the red list by the red policy
    assert "参评 6 户（有得分 6 户）；发放 244 分，扣减 0 分；红榜 1 户，黑榜 0 户" in words
    assert "共 1 件：成立 1 件，不成立 0 件" in words
    with db.write_txn() as s:
        consensus_round(s, village.ev, 202610)
    with db.read_txn() as s, pytest.raises(Conflict, match="还没有提交乡镇审核"):
        notices.draft(s, CLERK, "review", village.ev.vid, 202610, verify_base=BASE)


def test_every_kind_is_registered_with_its_period() -> None:
    assert {k: (v.period, v.per_household) for k, v in kinds.KINDS.items()} == {
        "results": ("month", False), "red": ("month", False), "black": ("month", False),
        "ranking": ("year", False), "finance": ("year", False), "review": ("month", False),
        "statement": ("year", True)}


def test_helpers() -> None:
    assert competition_ranks([9, 9, 7, 5, 5, 1]) == [1, 1, 3, 4, 4, 6]
    assert yuan(123456) == "1,234.56" and yuan(-5) == "-0.05" and yuan(0) == "0.00"
    assert scrub("异议受理至 2026-10-05，电话 13912345678、139-1234-5678，证号 11010119900307123X") == \
        "异议受理至 2026-10-05，电话 ＊＊＊＊、＊＊＊＊，证号 ＊＊＊＊"


def test_pages_generate_the_year_kinds_and_a_statement(client: TestClient, db: Database, village: Village) -> None:
    vid = village.ev.vid
    csrf = login(client, "clerk1", PW)
    page = client.get(f"/villages/{vid}/notices?month={SEP}")
    assert page.status_code == 200
    for label in ("红榜", "黑榜", "积分排行", "超市收支公示", "评比审核记录"):
        assert label in page.text
    assert 'data-testid="statement-form"' in page.text and "2026年" in page.text
    r = client.post(f"/villages/{vid}/notices", data={"kind": "ranking", "month": SEP, "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    with db.read_txn() as s:
        n = notices.get_notice(s, int(r.headers["location"].rsplit("/", 1)[1]))
        assert (n.kind, n.period) == ("ranking", YEAR)  # a year's kind gets YYYY00
    again = client.get(f"/villages/{vid}/notices?month={SEP}")
    assert f'href="/notices/{n.id}"' in again.text  # the current version beside the kind

    bad = client.post(f"/villages/{vid}/statements", data={"number": "999", "year": 2026, "csrf_token": csrf},
                      follow_redirects=False)
    assert bad.status_code in (400, 409, 422) and "本村没有户号 999" in bad.text and 'value="999"' in bad.text
    r = client.post(f"/villages/{vid}/statements", data={"number": "001", "year": 2026, "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    notice_url = r.headers["location"]
    shown = client.get(notice_url)
    assert shown.status_code == 200 and f'href="/households/{village.hs[0]}/points"' in shown.text
    with db.read_txn() as s:
        n = notices.get_notice(s, int(notice_url.rsplit("/", 1)[1]))
        assert (n.kind, n.period, n.household_id) == ("statement", YEAR, village.hs[0])
        code = n.code
    pdf = client.get(f"{notice_url}/notice.pdf")
    assert pdf.status_code == 200 and re.search(r"本年结余\s+100\b", _pdf_text(pdf.content))
    client.cookies.clear()
    public = client.get(f"/v/{code}")  # anyone may check it is genuine, nobody reads it there
    assert public.status_code == 200 and "真实有效" in public.text and NAMES[0] not in public.text
    assert "本年结余" not in public.text
