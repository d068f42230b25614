"""The demo's monthly evaluation history, through the real services: a committee of five in every village (members
linked to their households, one declared recusal each), consensus rounds with seeded grades, determinations with
evidence and votes, objections, finalisation through the ledger, and redemptions at the village store (catalog,
funding, stock and cards: app/demo_store.py).

- every village: six finalised months (two to seven months ago);
- the first village (whose clerk, member and household have demo accounts): twelve months in all: eleven
  finalised, some with objections upheld before and after finalisation, last month publicised with an open
  objection, and this month's round in draft, half rated;
- the other villages' last month in every other state: submitted, returned, approved, and one not yet started.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy.orm import Session

from app import demo_store
from app.auth import service as auth
from app.auth.models import Role, User
from app.auth.security import generate_password
from app.core.clock import DISPLAY_ZONE, to_local, utcnow
from app.core.context import Actor
from app.core.scope import ScopeFilter
from app.errors import AppError
from app.evaluation import committee, motions, objections, rounds
from app.households import service as households
from app.lists import service as lists
from app.org.models import Village

GRADES = ("优", "良", "中", "差")
MEMBER_NAMES = ["赵永福", "孙桂芳", "周建华", "吴秀兰", "郑国强"]


def _months_back(now: datetime, k: int) -> int:
    n = now.year * 12 + now.month - 1 - k
    return (n // 12) * 100 + n % 12 + 1


def _day(month: int, day: int) -> date:
    return date(month // 100, month % 100, day)


def _at(d: date, hour: int = 10) -> datetime:
    return min(datetime(d.year, d.month, d.day, hour, tzinfo=DISPLAY_ZONE), utcnow())


def make_committee(session: Session, actor: Actor, village: Village, household_ids: Sequence[int],
                   first_user: User | None = None) -> list[User]:
    """Five members: `first_user` (the demo's member account) and four more, each linked to a household."""
    users: list[User] = []
    for i, name in enumerate(MEMBER_NAMES):
        if i == 0 and first_user is not None:
            u = first_user
        else:
            u = auth.create_user(session, actor, login=f"m{village.code[-6:]}{i}", display_name=name,
                                 password=generate_password(), must_change_password=True)
            auth.grant_role(session, actor, u.id, Role.COMMITTEE_MEMBER.value, village_id=village.id)  # type: ignore[arg-type]
        committee.link(session, actor, village.id, user_id=u.id, household_id=household_ids[i % len(household_ids)],  # type: ignore[arg-type]
                       title="主任" if i == 0 else "委员")
        users.append(u)
    own = household_ids[1 % len(household_ids)]
    relative = next((h for h in (household_ids[i % len(household_ids)] for i in (7, 6, 5)) if h != own), None)
    if relative is not None:
        committee.declare_recusal(session, actor, village.id, user_id=users[1].id,  # type: ignore[arg-type]
                                  household_id=relative, reason="亲属（姐妹家）")
    return users


def _grades(rng: random.Random, character: dict[int, float], ids: Sequence[int], themes: Sequence[str],
            dirty: set[int]) -> list[rounds.Cell]:
    cells = []
    for hid in ids:
        base = character[hid]
        for th in themes:
            x = base + rng.random() * 0.5
            grade = GRADES[0] if x > 1.05 else GRADES[1] if x > 0.55 else GRADES[2] if x > 0.2 else GRADES[3]
            if th == "ENV" and hid in dirty:
                grade = "差"
            cells.append(rounds.Cell(hid, th, grade))
    return cells


def _photo(rng: random.Random, size: int = 48) -> bytes:
    """A small PNG standing in for a photo taken on a phone (a plain colour; real ones are uploaded by the clerk)."""
    colour = bytes(rng.randrange(90, 230) for _ in range(3))
    raw = b"".join(b"\x00" + colour * size for _ in range(size))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _as(user: User) -> Actor:
    return Actor(user_id=user.id, name=f"{user.display_name}({user.login})", role="committee_member")


def _determinations(session: Session, clerk: Actor, rng: random.Random, rid: int, ids: Sequence[int],
                    members: list[User], *, decide: bool = True) -> None:
    good = rng.choice(ids[10:] or ids)
    m = motions.propose_determination(session, clerk, rid, household_id=good, code="CIVILISED_FAMILY",
                                      description="家风好、常年照顾邻居孤寡老人", evidence="邻居联名推荐")
    bad = rng.choice(ids[10:] or ids)
    n = motions.propose_determination(session, clerk, rid, household_id=bad, code="DISHONEST",
                                      description="拖欠村民工钱半年未付", evidence="欠条复印件、三名村民证言")
    for motion in (m, n):
        motions.add_evidence(session, clerk, motion.id, file_name="现场照片.png", media_type="image/png",  # type: ignore[arg-type]
                             data=_photo(rng))
    if not decide:
        return
    for motion, yes in ((m, 4), (n, 4 if rng.random() < 0.6 else 2)):
        for i, u in enumerate(members):
            choice = "yes" if i < yes else "no"
            try:
                done, _ = motions.vote(session, _as(u), motion.id, choice)  # type: ignore[arg-type]
            except AppError:  # recused from this household
                continue
            if done.status != "proposed":
                break


def load_history(session: Session, actor: Actor, villages: list[Village], *, seed: int,
                 first_member: User | None, months: int = 12) -> None:
    """`months`: how far back the first village's rounds go (the others go back at most seven months); the tests
    load a short history."""
    rng = random.Random(seed + 7)
    now = to_local(utcnow()) or utcnow()
    clerk = Actor(user_id=None, name="村文书（演示）", role="village_clerk")
    reviewer = Actor(user_id=None, name="乡镇审核员（演示）", role="township_reviewer")
    storekeeper = Actor(user_id=None, name="超市管理员（演示）", role="store_clerk")
    households_of = {v.id: [h.id for h in households.search(session, ScopeFilter(village_ids=frozenset({v.id})),  # type: ignore[arg-type]
                                                            village_id=v.id, limit=100_000).rows]
                     for v in villages}
    shops = demo_store.setup(session, actor, households_of, start=_day(_months_back(now, months), 1),  # type: ignore[arg-type]
                             seed=seed)
    for index, v in enumerate(villages):
        ids = households_of[v.id]  # type: ignore[index]
        shop = shops[v.id]  # type: ignore[index]
        members = make_committee(session, actor, v, ids, first_member if index == 0 else None)  # type: ignore[arg-type]
        character = {hid: rng.random() * 0.9 for hid in ids}
        dirty = set(rng.sample(ids, min(3, len(ids))))
        for k in range(months if index == 0 else min(months, 7), 1, -1):
            month = _months_back(now, k)
            rid = rounds.open_round(session, clerk, village_id=v.id, month=month,  # type: ignore[arg-type]
                                    present=[u.id for u in members]).id  # type: ignore[misc]
            themes = [t.code for t in rounds.ruleset_of(session, rounds.get_round(session, rid)).themes]  # type: ignore[arg-type]
            rounds.save_ratings(session, clerk, rid, _grades(rng, character, ids, themes, dirty))  # type: ignore[arg-type]
            _determinations(session, clerk, rng, rid, ids, members)  # type: ignore[arg-type]
            rounds.submit(session, clerk, rid)  # type: ignore[arg-type]
            rounds.approve(session, reviewer, rid, "同意公示")  # type: ignore[arg-type]
            nxt = rounds.next_month(month)
            rounds.publicise(session, clerk, rid, on=_day(nxt, 3))  # type: ignore[arg-type]
            if index == 0 and k in (5, 3):  # an objection upheld during the publicity
                hid = ids[(20 + k) % len(ids)]
                o = objections.file(session, clerk, rid, household_id=hid, target="rating", theme="ENV",  # type: ignore[arg-type]
                                    text="评比当天正在清理院子，已整改", on_paper=True, day=_day(nxt, 4))
                objections.resolve(session, clerk, o.id, uphold=True, reason="复查属实，更正为良",  # type: ignore[arg-type]
                                   corrected_grade="良")
            if index == 0 and k == 4:  # and one that was not upheld
                o = objections.file(session, clerk, rid, household_id=ids[30 % len(ids)], target="rating", theme="LAW",  # type: ignore[arg-type]
                                    text="不同意评为中", on_paper=True, day=_day(nxt, 4))
                objections.resolve(session, clerk, o.id, uphold=False, reason="经查有赌博行为，维持原评")  # type: ignore[arg-type]
            finalised_on = _day(nxt, 10)
            rounds.finalise(session, clerk, rid, on=finalised_on, at=_at(finalised_on))  # type: ignore[arg-type]
            if index == 0 and k == 6:  # an objection upheld after finalisation: compensation, nothing reopened
                o = objections.file(session, clerk, rid, household_id=ids[40 % len(ids)], target="rating", theme="PUBLIC",  # type: ignore[arg-type]
                                    text="当月参加了修路义务劳动，漏评", on_paper=True)
                objections.resolve(session, clerk, o.id, uphold=True, reason="核实参加义务劳动三天，更正为优",  # type: ignore[arg-type]
                                   corrected_grade="优")
            demo_store.redemptions(session, storekeeper, rng, shop, ids, _day(nxt, 18))  # type: ignore[arg-type]
        if index == 0:
            demo_store.extras(session, storekeeper, clerk, shop, ids)  # type: ignore[arg-type]
        _rectifications(session, clerk, v.id, now, lift_one=index == 0)  # type: ignore[arg-type]
        _recent(session, clerk, reviewer, rng, index, v, ids, members, character, dirty, now)  # type: ignore[arg-type]


def _rectifications(session: Session, clerk: Actor, village_id: int, now: datetime, *, lift_one: bool) -> None:
    """The way off the black list in use: a plan and a visit for each black posting shown now, and in the first
    village one household the committee has brought back early (教育转化)."""
    month = now.year * 100 + now.month
    black = [p for p in lists.shown_now(session, village_id, month) if p.list == "black"]
    today = now.date()
    members = max(lists.committee_size(session, village_id), 1)
    for n, p in enumerate(black):
        lists.start_rectification(session, clerk, p.id, measures=_MEASURES.get(p.reason, "按村规民约整改，每月向评比委员会"  # type: ignore[arg-type]
                                                                                       "汇报一次"),
                                  helper=["老党员 赵永福", "老教师 孙桂芳", "新乡贤 周建华"][n % 3], month=month)
        lists.record_visit(session, clerk, p.id, visited_on=today, notes="入户查看，已按整改措施开始改正", month=month)  # type: ignore[arg-type]
        if lift_one and n == 0:
            lists.lift(session, clerk, p.id, decided_on=today, members_present=members, members_for=members,  # type: ignore[arg-type]
                       decision="回访确认整改到位，群众认可，委员会一致同意提前移出黑榜", month=month)


_MEASURES = {"卫生不整洁户": "每周清理院落和门前，垃圾分类投放，由网格员每周查看",
             "不孝儿女": "每周至少看望老人两次，按月给付赡养费，由村调解委员会见证",
             "不诚信户": "按约归还欠款，公开作出诚信承诺"}


def _recent(session: Session, clerk: Actor, reviewer: Actor, rng: random.Random, index: int, v: Village,
            ids: list[int], members: list[User], character: dict[int, float], dirty: set[int], now: datetime) -> None:
    """Last month (and, in the first village, this month) in the states a county sees at any time."""
    state = ["publicised", "submitted", "returned", "approved", "none", "draft"][index % 6]
    if state == "none":
        return
    last = _months_back(now, 1)
    rid = rounds.open_round(session, clerk, village_id=v.id, month=last,  # type: ignore[arg-type]
                            present=[u.id for u in members]).id  # type: ignore[misc]
    themes = [t.code for t in rounds.ruleset_of(session, rounds.get_round(session, rid)).themes]  # type: ignore[arg-type]
    cells = _grades(rng, character, ids, themes, dirty)
    rounds.save_ratings(session, clerk, rid, cells if state != "draft" else cells[: len(cells) // 2])  # type: ignore[arg-type]
    _determinations(session, clerk, rng, rid, ids, members, decide=state != "draft")  # type: ignore[arg-type]
    if state == "draft":
        return
    rounds.submit(session, clerk, rid)  # type: ignore[arg-type]
    if state == "returned":
        rounds.return_round(session, reviewer, rid, "第3组有8户环保卫生评分与上月照片不符，请复核")  # type: ignore[arg-type]
    if state in ("approved", "publicised"):
        rounds.approve(session, reviewer, rid, "同意公示")  # type: ignore[arg-type]
    if state == "publicised":
        rounds.publicise(session, clerk, rid)  # type: ignore[arg-type]
        objections.file(session, clerk, rid, household_id=ids[12 % len(ids)], target="rating", theme="CUSTOMS",  # type: ignore[arg-type]
                        text="儿子婚礼没有大操大办，不应评为中", on_paper=True)
        this = _months_back(now, 0)
        rid2 = rounds.open_round(session, clerk, village_id=v.id, month=this,  # type: ignore[arg-type]
                                 present=[u.id for u in members]).id  # type: ignore[misc]
        cells = _grades(rng, character, ids, themes, dirty)
        rounds.save_ratings(session, clerk, rid2, cells[: len(cells) // 2])  # type: ignore[arg-type]
