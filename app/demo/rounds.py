"""The demo's monthly evaluation history, through the real services: a committee of five in every village (members
linked to their households, one declared recusal each), rounds with seeded grades, determinations with evidence and
votes, objections, finalisation through the ledger, and redemptions at the village store (catalog, funding, stock
and cards: app/demo/store.py).

- the first village (whose clerk, member and household have demo accounts): eleven finalised months (two to twelve
  months ago), redemptions every month; the others: finalised months from January of the dashboard's year (at least
  six), redemptions in the last six;
- the first village also has objections upheld before and after finalisation (three in the year: the dashboard
  asks to look at its ratings), a black-list posting lifted through rectification, credit-file consents of a third
  of its households (one withdrawn), last month publicised with an open objection, and this month's round in draft,
  half rated;
- the other villages' last month in every other state: submitted, returned, approved, and one not yet started;
- what the county's dashboard and the fairness page are for: the committees spread the red list over the village
  (the month's grades vary, and the committee commends households not yet recognised this year), except in 石桥村,
  which commends and names the same few families and falls short of the coverage target; 桃园村 finalised three
  months after the deadline (a lagging village); 清水村's members rate each household separately for the last six
  months, one of them out of line (app/demo/panel.py).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from app.auth.models import Role, User
from app.auth.security import generate_password
from app.auth.service import accounts as auth
from app.committee import service as committee
from app.core.clock import DISPLAY_ZONE, to_local, utcnow
from app.core.context import Actor
from app.core.month import add_months, month_of, month_start, next_month
from app.core.scope import ScopeFilter
from app.demo import panel as demo_panel
from app.demo import store as demo_store
from app.errors import AppError
from app.evaluation.service import motions, objections, rounds
from app.households.service import households
from app.lists import service as lists
from app.org.models import Village
from app.reports.service import credit

GRADES = ("优", "良", "中", "差")
MEMBER_NAMES = ["赵永福", "孙桂芳", "周建华", "吴秀兰", "郑国强"]
LATE_VILLAGE, PANEL_VILLAGE, SHORT_VILLAGE = 1, 2, 5  # 桃园村, 清水村, 石桥村 (by their place in demo.TOWNSHIPS)
LATE_BACK = (3, 5, 6)  # the months (this many months ago) the late village finalised after the deadline
PANEL_BACK = 7  # the panel village's members rate separately from this many months ago
STORE_BACK = 7  # redemptions from this many months ago (every month in the first village)
COMMENDED = 2  # households the committee commends each month (文明家庭), not yet recognised this year if any
SHOCK, SHOCK_OFFSET = 1.0, 0.35  # how much a household's month varies (its grades on every theme together)


def _months_back(now: datetime, k: int) -> int:
    return add_months(month_of(now), -k)


def _day(month: int, day: int) -> date:
    return month_start(month).replace(day=day)


def _at(d: date, hour: int = 10) -> datetime:
    return min(datetime(d.year, d.month, d.day, hour, tzinfo=DISPLAY_ZONE), utcnow())


def make_committee(session: Session, actor: Actor, village: Village, household_ids: Sequence[int],
                   first_user: User | None = None, names: Sequence[str] = MEMBER_NAMES) -> list[User]:
    """Five members: `first_user` (the demo's member account) and four more, each linked to a household (the i-th
    member to the i-th of `household_ids`)."""
    users: list[User] = []
    for i, name in enumerate(names):
        if i == 0 and first_user is not None:
            u = first_user
        else:
            u = auth.create_user(session, actor, login=f"m{village.code[-6:]}{i}", display_name=name,
                                 password=generate_password(), must_change_password=True)
            auth.grant_role(session, actor, u.id, Role.COMMITTEE_MEMBER.value, village_id=village.id)
        committee.link(session, actor, village.id, user_id=u.id, household_id=household_ids[i % len(household_ids)],
                       title="主任" if i == 0 else "委员")
        users.append(u)
    own = household_ids[1 % len(household_ids)]
    relative = next((h for h in (household_ids[i % len(household_ids)] for i in (7, 6, 5)) if h != own), None)
    if relative is not None:
        committee.declare_recusal(session, actor, village.id, user_id=users[1].id,
                                  household_id=relative, reason="亲属（姐妹家）")
    return users


def _grades(rng: random.Random, character: dict[int, float], ids: Sequence[int], themes: Sequence[str],
            dirty: set[int], *, varied: bool = False, steady: frozenset[int] = frozenset()) -> list[rounds.Cell]:
    """The committee's grades: each household's character plus chance; `varied`: plus how the household's month went
    (so that the month's best are not always the same households); `steady` households get 良 throughout."""
    cells = []
    for hid in ids:
        base = character[hid] + (rng.random() * SHOCK - SHOCK_OFFSET if varied else 0)
        for th in themes:
            x = base + rng.random() * 0.5
            grade = GRADES[0] if x > 1.05 else GRADES[1] if x > 0.55 else GRADES[2] if x > 0.2 else GRADES[3]
            if th == "ENV" and hid in dirty:
                grade = "差"
            if hid in steady:
                grade = demo_panel.STEADY_GRADE
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


_as = demo_panel.as_member
_COMMENDATIONS = ["家风好、常年照顾邻居孤寡老人", "儿女孝顺，悉心照料瘫痪在床的老人多年", "带头拆除违建、清理房前屋后",
                  "主动承担村道保洁，组织邻居参加义务劳动", "儿子婚事新办，不收彩礼，带动邻里移风易俗"]


def _determinations(session: Session, clerk: Actor, rng: random.Random, rid: int, ids: Sequence[int],
                    members: list[User], *, decide: bool = True, commend: Sequence[int] = (),
                    name: Sequence[int] = (), sure: bool = False) -> None:
    """The month's motions: the households in `commend` (else one drawn) commended as 文明家庭, one of `name` (else
    drawn) named 不诚信户, each with a photo as evidence; voted unless `decide` is false (the naming passes in six
    months in ten, always if `sure`)."""
    good = list(commend) or [rng.choice(ids[10:] or ids)]
    commended = [motions.propose_determination(session, clerk, rid, household_id=hid, code="CIVILISED_FAMILY",
                                               description=_COMMENDATIONS[(hid + i) % len(_COMMENDATIONS)],
                                               evidence="邻居联名推荐")
                 for i, hid in enumerate(good)]
    bad = rng.choice(list(name) or ids[10:] or ids)
    n = motions.propose_determination(session, clerk, rid, household_id=bad, code="DISHONEST",
                                      description="拖欠村民工钱半年未付", evidence="欠条复印件、三名村民证言")
    for motion in (*commended, n):
        motions.add_evidence(session, clerk, motion.id, file_name="现场照片.png", media_type="image/png",
                             data=_photo(rng))
    if not decide:
        return
    for motion, yes in [(m, 4) for m in commended] + [(n, 4 if sure or rng.random() < 0.6 else 2)]:
        for i, u in enumerate(members):
            choice = "yes" if i < yes else "no"
            try:
                done, _ = motions.vote(session, _as(u), motion.id, choice)
            except AppError:  # recused from this household
                continue
            if done.status != "proposed":
                break


@dataclass
class _Village:
    """What the history of one village needs from month to month."""

    index: int
    village: Village
    ids: list[int]
    members: list[User]
    character: dict[int, float]
    dirty: set[int]
    panel: demo_panel.Plan | None  # the village whose members rate separately (from PANEL_BACK months ago)

    @property
    def vid(self) -> int:
        assert self.village.id is not None
        return self.village.id

    def grades(self, rng: random.Random, themes: Sequence[str]) -> list[rounds.Cell]:
        return _grades(rng, self.character, self.ids, themes, self.dirty, varied=self.index != SHORT_VILLAGE,
                       steady=self.panel.steady if self.panel else frozenset())

    def open(self, session: Session, clerk: Actor, month: int, k: int) -> int:
        panel = self.panel is not None and k <= PANEL_BACK
        rnd = rounds.open_round(session, clerk, village_id=self.vid, month=month, mode="panel" if panel else "consensus",
                                present=() if panel else [u.id for u in self.members if u.id is not None])
        assert rnd.id is not None
        return rnd.id

    def rate(self, session: Session, clerk: Actor, rng: random.Random, rid: int, cells: Sequence[rounds.Cell]) -> None:
        if self.panel is not None and rounds.get_round(session, rid).mode == "panel":
            demo_panel.rate(session, rid, self.vid, cells, self.members, self.panel, rng)
        else:
            rounds.save_ratings(session, clerk, rid, cells)

    def motions(self, session: Session, clerk: Actor, rng: random.Random, rid: int, month: int, *,
                decide: bool = True, sure: bool = False) -> None:
        """The month's determinations: 石桥村 commends and names the same few families; the others commend
        households not yet on a list this year."""
        if self.index == SHORT_VILLAGE:
            best = sorted(self.ids, key=lambda h: -self.character[h])[:3]
            worst = sorted(self.ids, key=lambda h: self.character[h])[:2]
            _determinations(session, clerk, rng, rid, self.ids, self.members, decide=decide,
                            commend=[rng.choice(best)], name=worst, sure=sure)
            return
        never = lists.coverage(session, self.vid, month // 100, target_pct=60).never
        skip = set(self.panel.steady) if self.panel else set()
        pool = [h for h in never if h not in skip] or self.ids
        _determinations(session, clerk, rng, rid, self.ids, self.members, decide=decide,
                        commend=rng.sample(pool, min(COMMENDED, len(pool))), sure=sure)


def load_history(session: Session, actor: Actor, villages: list[Village], *, seed: int,
                 first_member: User | None, months: int = 12, now: datetime | None = None) -> None:
    """`months`: how far back the first village's rounds go (the others' go back to January, at least seven months);
    the tests load a short history. `now` (local time, default now): the history ends in its month."""
    rng = random.Random(seed + 7)
    now = to_local(now or utcnow()) or utcnow()
    clerk = Actor(user_id=None, name="村文书（演示）", role="village_clerk")
    reviewer = Actor(user_id=None, name="乡镇审核员（演示）", role="township_reviewer")
    storekeeper = Actor(user_id=None, name="超市管理员（演示）", role="store_clerk")
    rolls = {v.id: households.search(session, ScopeFilter(village_ids=frozenset({v.id})),
                                     village_id=v.id, limit=100_000).rows
             for v in villages}
    households_of = {vid: [h.id for h in rows] for vid, rows in rolls.items()}
    shops = demo_store.setup(session, actor, households_of, start=_day(_months_back(now, months), 1),
                             seed=seed)
    for index, v in enumerate(villages):
        ids: list[int] = households_of[v.id]
        shop = shops[v.id]
        panel = demo_panel.plan(ids, {h.id: h.head_name for h in rolls[v.id] if h.id is not None}) \
            if index == PANEL_VILLAGE and ids else None
        if panel is not None:
            members = make_committee(session, actor, v, demo_panel.homes(panel, ids),
                                     names=demo_panel.member_names(panel, MEMBER_NAMES))
        else:
            members = make_committee(session, actor, v, ids, first_member if index == 0 else None)
        character = {hid: rng.random() * 0.9 for hid in ids}
        steady = panel.steady if panel else frozenset()
        dirty = set(rng.sample([h for h in ids if h not in steady], min(3, len(ids) - len(steady))))
        vh = _Village(index, v, ids, members, character, dirty, panel)
        # the first village from `months` ago, the others from January (the dashboard's year), at least 7 months
        for k in range(months if index == 0 else min(months, max(7, now.month - 1)), 1, -1):
            month = _months_back(now, k)
            rid = vh.open(session, clerk, month, k)
            themes = [t.code for t in rounds.ruleset_of(session, rounds.get_round(session, rid)).themes]
            vh.rate(session, clerk, rng, rid, vh.grades(rng, themes))
            vh.motions(session, clerk, rng, rid, month, sure=index == 0 and k == 2)  # a black posting to lift
            rounds.submit(session, clerk, rid)
            rounds.approve(session, reviewer, rid, "同意公示")
            nxt = next_month(month)
            rounds.publicise(session, clerk, rid, on=_day(nxt, 3))
            if index == 0 and k in (5, 3):  # an objection upheld during the publicity
                hid = ids[(20 + k) % len(ids)]
                o = objections.file(session, clerk, rid, household_id=hid, target="rating", theme="ENV",
                                    text="评比当天正在清理院子，已整改", on_paper=True, day=_day(nxt, 4))
                objections.resolve(session, clerk, o.id, uphold=True, reason="复查属实，更正为良",
                                   corrected_grade="良")
            if index == 0 and k == 4:  # and one that was not upheld
                o = objections.file(session, clerk, rid, household_id=ids[30 % len(ids)], target="rating", theme="LAW",
                                    text="不同意评为中", on_paper=True, day=_day(nxt, 4))
                objections.resolve(session, clerk, o.id, uphold=False, reason="经查有赌博行为，维持原评")
            late = index == LATE_VILLAGE and k in LATE_BACK  # finalised after the 20th of the following month
            finalised_on = _day(nxt, 26 if late else 10)
            rounds.finalise(session, clerk, rid, on=finalised_on, at=_at(finalised_on))
            if index == 0 and k == 6:  # an objection upheld after finalisation: compensation, nothing reopened
                o = objections.file(session, clerk, rid, household_id=ids[40 % len(ids)], target="rating", theme="PUBLIC",
                                    text="当月参加了修路义务劳动，漏评", on_paper=True, day=now.date())
                objections.resolve(session, clerk, o.id, uphold=True, reason="核实参加义务劳动三天，更正为优",
                                   corrected_grade="优")
            if index == 0 or k <= STORE_BACK:
                demo_store.redemptions(session, storekeeper, rng, shop, ids, _day(nxt, 27 if late else 18))
        if index == 0:
            demo_store.extras(session, storekeeper, clerk, shop, ids)
            _consents(session, clerk, ids, now)
        _rectifications(session, clerk, vh.vid, now, lift_one=index == 0)
        _recent(session, clerk, reviewer, rng, vh, now)


def _consents(session: Session, clerk: Actor, ids: Sequence[int], now: datetime) -> None:
    """A third of the first village's households (the demo household among them) have agreed that their credit file
    may leave the system for the 信用户 evaluation; one of them has since withdrawn."""
    for n, hid in enumerate(ids[::3]):
        given = _day(_months_back(now, 2 + n % 5), 1 + n % 27)
        credit.record_consent(session, clerk, hid, given_on=given,
                              how="户主签字的同意书已存档" if n % 2 == 0 else "户主本人到村委会当面同意")
    if len(ids) > 6:
        credit.withdraw_consent(session, clerk, ids[6], on=now.date())


def _rectifications(session: Session, clerk: Actor, village_id: int, now: datetime, *, lift_one: bool) -> None:
    """The way off the black list in use: a plan and a visit for each black posting shown now, and in the first
    village one household the committee has brought back early (教育转化)."""
    month = month_of(now)
    black = [p for p in lists.shown_now(session, village_id, month) if p.list == "black"]
    today = (to_local(utcnow()) or utcnow()).date()  # the plans are recorded today: the visits cannot be earlier
    members = max(lists.committee_size(session, village_id), 1)
    for n, p in enumerate(black):
        lists.start_rectification(session, clerk, p.id, measures=_MEASURES.get(p.reason, "按村规民约整改，每月向评比委员会"
                                                                                       "汇报一次"),
                                  helper=["老党员 赵永福", "老教师 孙桂芳", "新乡贤 周建华"][n % 3], month=month)
        lists.record_visit(session, clerk, p.id, visited_on=today, notes="入户查看，已按整改措施开始改正", month=month)
        if lift_one and n == 0:
            lists.lift(session, clerk, p.id, decided_on=today, members_present=members, members_for=members,
                       decision="回访确认整改到位，群众认可，委员会一致同意提前移出黑榜", month=month)


_MEASURES = {"卫生不整洁户": "每周清理院落和门前，垃圾分类投放，由网格员每周查看",
             "不孝儿女": "每周至少看望老人两次，按月给付赡养费，由村调解委员会见证",
             "不诚信户": "按约归还欠款，公开作出诚信承诺"}


def _recent(session: Session, clerk: Actor, reviewer: Actor, rng: random.Random, vh: _Village,
            now: datetime) -> None:
    """Last month (and, in the first village, this month) in the states a county sees at any time."""
    state = ["publicised", "submitted", "returned", "approved", "none", "draft"][vh.index % 6]
    if state == "none":
        return
    last = _months_back(now, 1)
    rid = vh.open(session, clerk, last, 1)
    themes = [t.code for t in rounds.ruleset_of(session, rounds.get_round(session, rid)).themes]
    cells = vh.grades(rng, themes)
    vh.rate(session, clerk, rng, rid, cells if state != "draft" else cells[: len(cells) // 2])
    vh.motions(session, clerk, rng, rid, last, decide=state != "draft")
    if state == "draft":
        return
    rounds.submit(session, clerk, rid)
    if state == "returned":
        rounds.return_round(session, reviewer, rid, "第3组有8户环保卫生评分与上月照片不符，请复核")
    if state in ("approved", "publicised"):
        rounds.approve(session, reviewer, rid, "同意公示")
    if state == "publicised":
        rounds.publicise(session, clerk, rid, on=now.date())
        objections.file(session, clerk, rid, household_id=vh.ids[12 % len(vh.ids)], target="rating", theme="CUSTOMS",
                        text="儿子婚礼没有大操大办，不应评为中", on_paper=True, day=now.date())
        rid2 = vh.open(session, clerk, _months_back(now, 0), 0)
        rounds.save_ratings(session, clerk, rid2, vh.grades(rng, themes)[: len(vh.ids) * len(themes) // 2])
