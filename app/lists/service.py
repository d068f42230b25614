"""Red and black lists over time: each posting's status on a given month, a household's history, the list as it is
shown now, the way off the black list (a rectification plan, check visits, the committee's decision to lift), and the
yearly coverage against the policy's target (at least 60 % of a village's households recognised in a year).

A posting is shown from `from_month` to `to_month`. Its stored status is effective, lifted (the committee brought the
household back early), voided (an objection upheld) or expired (`expire_due` stores it once the period is over); an
effective posting whose period is over counts as expired at once, whether or not that has been stored yet, so no
view ever shows a posting after its period.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, delete, distinct, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from app import rules
from app.audit import service as audit
from app.committee import service as committee
from app.core.clock import local_day_start_utc, to_local, utcnow
from app.core.context import Actor
from app.core.month import add_months, month_of
from app.core.scope import Scope
from app.errors import Conflict, NotFound, ValidationFailed
from app.households.models import Household
from app.lists.models import ListCount, ListPosting, Rectification, RectificationVisit
from app.org.models import Village

STATUS_LABELS = {"effective": "公示中", "lifted": "已移出（教育转化）", "expired": "已期满", "voided": "已撤销（异议成立）"}
LIST_LABELS = {"red": "红榜", "black": "黑榜"}


def this_month(at: datetime | None = None) -> int:
    return month_of(to_local(at or utcnow()) or utcnow())


def status_on(p: ListPosting, month: int) -> str:
    """The posting's status as of `month`: an effective posting past its period is expired."""
    if p.status == "effective" and p.to_month < month:
        return "expired"
    return p.status


def is_shown(p: ListPosting, month: int) -> bool:
    return p.status == "effective" and p.from_month <= month <= p.to_month


# ---- reading ---------------------------------------------------------------------------------------------------------

def get_posting(session: Session, posting_id: int) -> ListPosting:
    p = session.get(ListPosting, posting_id)
    if p is None:
        raise NotFound("没有这条红黑榜记录")
    return p


def scope_of_posting(session: Session, posting_id: int) -> Scope | None:
    row = session.execute(select(ListPosting.village_id, ListPosting.household_id, Village.township_id)
                          .join(Village, Village.id == ListPosting.village_id)
                          .where(ListPosting.id == posting_id)).first()
    if row is None:
        return None
    return Scope(township_id=row.township_id, village_id=row.village_id, household_id=row.household_id)


def postings(session: Session, village_id: int, *, year: int | None = None, list_: str | None = None,
             household_id: int | None = None) -> list[ListPosting]:
    """A village's postings (of a year: those whose period starts in it), newest first."""
    stmt = select(ListPosting).where(ListPosting.village_id == village_id)
    if year is not None:
        stmt = stmt.where(ListPosting.from_month.between(year * 100 + 1, year * 100 + 12))
    if list_ in LIST_LABELS:
        stmt = stmt.where(ListPosting.list == list_)
    if household_id is not None:
        stmt = stmt.where(ListPosting.household_id == household_id)
    return list(session.execute(stmt.order_by(ListPosting.from_month.desc(), ListPosting.list.desc(),
                                              ListPosting.household_id, ListPosting.id)).scalars())


def shown_now(session: Session, village_id: int, month: int | None = None) -> list[ListPosting]:
    """What the village's red and black lists show in `month` (default: now): effective and within the period."""
    month = month or this_month()
    return list(session.execute(select(ListPosting).where(
        ListPosting.village_id == village_id, ListPosting.status == "effective",
        ListPosting.from_month <= month, ListPosting.to_month >= month)
        .order_by(ListPosting.list.desc(), ListPosting.from_month.desc(), ListPosting.household_id)).scalars())


def household_history(session: Session, household_id: int) -> list[ListPosting]:
    return list(session.execute(select(ListPosting).where(ListPosting.household_id == household_id)
                                .order_by(ListPosting.from_month.desc(), ListPosting.id.desc())).scalars())


def households_by_id(session: Session, ids: list[int | None]) -> dict[int, Household]:
    """The households by id (an erased posting's None is skipped)."""
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return {h.id: h for h in session.execute(select(Household).where(Household.id.in_(wanted))).scalars()}


def rectification_of(session: Session, posting_id: int) -> Rectification | None:
    return session.execute(select(Rectification).where(Rectification.posting_id == posting_id)).scalar_one_or_none()


def rectifications_of(session: Session, posting_ids: list[int]) -> dict[int, Rectification]:
    if not posting_ids:
        return {}
    return {r.posting_id: r for r in session.execute(select(Rectification).where(
        Rectification.posting_id.in_(posting_ids))).scalars()}


def visits(session: Session, rectification_id: int) -> list[RectificationVisit]:
    return list(session.execute(select(RectificationVisit).where(
        RectificationVisit.rectification_id == rectification_id).order_by(RectificationVisit.visited_on,
                                                                           RectificationVisit.id)).scalars())


# ---- a round's postings (the evaluation creates and corrects them through these) -------------------------------------

def postings_of_round(session: Session, round_id: int) -> list[ListPosting]:
    return list(session.execute(select(ListPosting).where(ListPosting.round_id == round_id)
                                .order_by(ListPosting.list.desc(), ListPosting.household_id, ListPosting.id)).scalars())


def effective_of_round(session: Session, round_id: int, household_id: int) -> list[ListPosting]:
    """The household's postings of the round that are still in effect (not voided, lifted or stored as expired)."""
    return list(session.execute(select(ListPosting).where(
        ListPosting.round_id == round_id, ListPosting.household_id == household_id,
        ListPosting.status == "effective")).scalars())


def add_postings(session: Session, *, round_id: int, village_id: int, month: int,
                 postings: Iterable[rules.ListPosting], objection_id: int | None = None) -> int:
    """The engine's postings of a round take effect: each shown from the round's month for its months. An
    objection upheld after finalisation that brings a posting names itself (`objection_id`). Returns how many."""
    now = utcnow()
    rows = [{"round_id": round_id, "village_id": village_id, "household_id": p.household_id, "list": p.list,
             "source": p.source, "code": p.code, "theme": p.theme, "member_id": p.member_id,
             "member_name": p.member_name, "reason": p.reason[:200], "explanation": p.explanation[:1000],
             "from_month": month, "to_month": add_months(month, max(p.months_shown, 1) - 1),
             "status": "effective", "motion_id": p.ref if p.source == "determination" else None,
             "objection_id": objection_id, "created_at": now} for p in postings]
    if rows:
        session.execute(insert(ListPosting), rows)
    return len(rows)


def void_postings(session: Session, *, round_id: int, household_id: int, codes: set[str], objection_id: int) -> int:
    """An objection upheld after finalisation withdraws the household's effective postings of the round with these
    codes: voided, naming the objection. Returns how many."""
    n = 0
    for lp in effective_of_round(session, round_id, household_id):
        if lp.code in codes:
            lp.status, lp.objection_id = "voided", objection_id
            session.add(lp)
            n += 1
    return n


def refresh_list_counts(session: Session, village_id: int, year: int) -> None:
    """Rewrite the village's list_counts of `year` (each month, and the year) from its postings: called whenever
    postings are added or voided. A frozen year (its postings' personal details erased) keeps its counts."""
    frozen = session.execute(select(ListCount.period).where(ListCount.village_id == village_id,
                                                            ListCount.period == year * 100,
                                                            ListCount.frozen.is_(True))).first()
    if frozen is not None:
        return
    live = select(ListPosting.from_month.label("period"), ListPosting.list, ListPosting.household_id).where(
        ListPosting.village_id == village_id, ListPosting.status != "voided",
        ListPosting.from_month.between(year * 100 + 1, year * 100 + 12)).subquery()
    year_wide = select(literal(year * 100).label("period"), live.c.list, live.c.household_id)
    rows = []
    for source in (select(live), year_wide):
        both = source.subquery()
        for period, red, black, covered in session.execute(
                select(both.c.period,
                       func.count(distinct(case((both.c.list == "red", both.c.household_id)))),
                       func.count(distinct(case((both.c.list == "black", both.c.household_id)))),
                       func.count(distinct(both.c.household_id))).group_by(both.c.period)):
            rows.append({"village_id": village_id, "period": int(period), "red": int(red), "black": int(black),
                         "covered": int(covered), "frozen": False})
    session.execute(delete(ListCount).where(ListCount.village_id == village_id,
                                            ListCount.period.between(year * 100, year * 100 + 12)))
    if rows:
        session.execute(insert(ListCount), rows)


def rebuild_list_counts(session: Session) -> int:
    """Rewrite every village's list_counts from the postings (after a load that wrote them directly), leaving
    the frozen years alone. Returns the village-years rewritten."""
    years = sorted({(int(v), int(m) // 100) for v, m in session.execute(
        select(ListPosting.village_id, ListPosting.from_month).distinct())})
    for village_id, year in years:
        refresh_list_counts(session, village_id, year)
    return len(years)


# ---- the way off the black list -------------------------------------------------------------------------------------

def _digest(text: str) -> dict[str, Any]:
    """What the audit log keeps of a free text about a household: its length and SHA-256, which prove the stored
    text unchanged while it is kept, and say nothing once it is erased after the retention period."""
    return {"chars": len(text), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def _text(value: str | None, label: str, limit: int, example: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > limit:
        raise ValidationFailed(f"请填写{label}（不超过 {limit} 个字），例如：{example}", details={"field": label})
    return value


def _open_black(session: Session, posting_id: int, month: int) -> ListPosting:
    p = get_posting(session, posting_id)
    if p.list != "black":
        raise ValidationFailed("只有黑榜才有整改和移出；红榜到期自然结束")
    now = status_on(p, month)
    if now != "effective":
        raise Conflict(f"这条黑榜已{STATUS_LABELS[now]}，不能再整改或移出", code="posting_not_effective")
    return p


def start_rectification(session: Session, actor: Actor, posting_id: int, *, measures: str, helper: str,
                        month: int | None = None) -> Rectification:
    """The plan the household agrees with the committee: what it will do, and who helps it."""
    p = _open_black(session, posting_id, month or this_month())
    if rectification_of(session, posting_id) is not None:
        raise Conflict("这条黑榜已经有整改方案了：请记录回访，或由委员会决定是否移出", code="plan_exists")
    r = Rectification(posting_id=posting_id, village_id=p.village_id, household_id=p.household_id,
                      measures=_text(measures, "整改措施", 1000, "每周清理院落和门前，垃圾按时分类投放"),
                      helper=_text(helper, "帮扶人", 60, "老党员 李德明"), created_by=actor.name[:80])
    session.add(r)
    session.flush()
    audit.record(session, actor, "lists.rectification.start", object_type="list_posting", object_id=posting_id,
                 after={"rectification_id": r.id, "measures": _digest(r.measures), "helper": _digest(r.helper)})
    return r


def record_visit(session: Session, actor: Actor, posting_id: int, *, visited_on: date, notes: str,
                 month: int | None = None) -> RectificationVisit:
    _open_black(session, posting_id, month or this_month())
    r = rectification_of(session, posting_id)
    if r is None:
        raise Conflict("请先和农户商定整改方案，再记录回访", code="no_plan")
    today = (to_local(utcnow()) or utcnow()).date()
    if visited_on > today or visited_on < r.created_at.date().replace(day=1):
        raise ValidationFailed("回访日期不对：须在整改方案之后、不晚于今天", details={"field": "visited_on"})
    v = RectificationVisit(rectification_id=r.id, visited_on=visited_on,
                           notes=_text(notes, "回访情况", 500, "院落已清理干净，邻居反映良好"), by=actor.name[:80])
    session.add(v)
    session.flush()
    audit.record(session, actor, "lists.rectification.visit", object_type="list_posting", object_id=posting_id,
                 after={"visit_id": v.id, "visited_on": visited_on.isoformat(), "notes": _digest(v.notes)})
    return v


def committee_size(session: Session, village_id: int) -> int:
    return len(committee.members(session, village_id))


def lift(session: Session, actor: Actor, posting_id: int, *, decided_on: date, members_present: int,
         members_for: int, decision: str, month: int | None = None) -> ListPosting:
    """The committee decides the household has changed (教育转化成功): the posting is lifted and leaves the public
    list at once. Needs a plan, at least one check visit, a quorum (more than half the committee present) and a
    majority of those present."""
    p = _open_black(session, posting_id, month or this_month())
    r = rectification_of(session, posting_id)
    if r is None:
        raise Conflict("移出黑榜之前，须有整改方案和至少一次回访", code="no_plan")
    if not visits(session, r.id):
        raise Conflict("移出黑榜之前，须至少回访一次并记录整改情况", code="no_visit")
    size = committee_size(session, p.village_id)
    for value, label in ((members_present, "到会委员人数"), (members_for, "同意人数")):
        if type(value) is not int or value < 0:
            raise ValidationFailed(f"{label}须为不小于 0 的整数", details={"field": label})
    if size == 0:
        raise ValidationFailed("本村还没有评比委员会成员：请先在“评比委员会”里登记委员")
    if members_present > size:
        raise ValidationFailed(f"到会委员 {members_present} 人，超过了委员会的 {size} 人", details={"field": "members_present"})
    if members_present * 2 <= size:
        raise ValidationFailed(f"到会委员须超过半数：委员会共 {size} 人，至少 {size // 2 + 1} 人到会才能作出决定",
                               code="no_quorum")
    if members_for > members_present:
        raise ValidationFailed("同意人数不能超过到会人数", details={"field": "members_for"})
    if members_for * 2 <= members_present:
        raise ValidationFailed(f"同意移出的须超过到会委员的半数：到会 {members_present} 人，至少 "
                               f"{members_present // 2 + 1} 人同意", code="no_majority")
    today = (to_local(utcnow()) or utcnow()).date()
    if decided_on > today:
        raise ValidationFailed("决定日期不能晚于今天", details={"field": "decided_on"})
    r.decided_on, r.members_present, r.members_for = decided_on, members_present, members_for
    r.decision = _text(decision, "决定理由", 300, "回访三次，院落保持整洁，群众认可，同意移出黑榜")
    r.status, r.lifted_by, r.lifted_at = "lifted", actor.name[:80], utcnow()
    p.status = "lifted"
    session.flush()
    audit.record(session, actor, "lists.posting.lift", object_type="list_posting", object_id=posting_id,
                 before={"status": "effective"},
                 after={"status": "lifted", "decided_on": decided_on.isoformat(), "present": members_present,
                        "for": members_for, "committee": size, "decision": _digest(r.decision)})
    return p


def expire_due(session: Session, actor: Actor, *, month: int | None = None) -> int:
    """Store `expired` on effective postings whose period is over (idempotent; the views already treat them as
    expired). Returns how many changed."""
    month = month or this_month()
    done = session.execute(update(ListPosting).where(ListPosting.status == "effective", ListPosting.to_month < month)
                           .values(status="expired"))
    n = int(done.rowcount or 0)
    if n:
        audit.record(session, actor, "lists.posting.expire", object_type="list_posting", object_id=None,
                     after={"month": month, "expired": n})
    return n


# ---- retention -------------------------------------------------------------------------------------------------------

ERASED = "（已按保存期限删除）"  # what an erased text reads; the database lets a check visit change to this only


@dataclass
class Erasure:
    cutoff_month: int  # postings whose period ended before this month
    postings: int
    rectifications: int
    visits: int
    years: list[tuple[int, int]]  # (village, year) whose list counts were frozen


def erase_due(session: Session, actor: Actor, *, years: int, month: int | None = None,
              dry_run: bool = False) -> Erasure:
    """Erase the personal details of postings whose period ended more than `years` years ago: the posting no
    longer says which household or member, nor why in words; its rectification plan, check visits and the
    committee's reasons are erased too. The list, the rule's reason, the months and the status stay, and each
    village's counts of the years concerned are frozen first, so the statistics keep them. Idempotent."""
    if type(years) is not int or years < 1:
        raise ValidationFailed("保存年限须为不小于 1 的整数（年）")
    month = month or this_month()
    cutoff = (month // 100 - years) * 100 + month % 100
    due = session.execute(select(ListPosting.id, ListPosting.village_id, ListPosting.from_month).where(
        ListPosting.to_month < cutoff, ListPosting.erased_at.is_(None))).all()
    ids = [r.id for r in due]
    plans = [pid for chunk in _chunks(ids) for pid in session.execute(
        select(Rectification.id).where(Rectification.posting_id.in_(chunk))).scalars()]
    n_visits = 0
    for chunk in _chunks(plans):
        n_visits += int(session.execute(select(func.count()).select_from(RectificationVisit).where(
            RectificationVisit.rectification_id.in_(chunk))).scalar_one())
    village_years = sorted({(r.village_id, r.from_month // 100) for r in due})
    run = Erasure(cutoff, len(ids), len(plans), n_visits, village_years)
    if dry_run or not ids:
        return run
    for village_id, year in village_years:  # the counts as they stand, then frozen
        refresh_list_counts(session, village_id, year)
        session.execute(update(ListCount).where(ListCount.village_id == village_id,
                                                ListCount.period.between(year * 100, year * 100 + 12))
                        .values(frozen=True))
    now = utcnow()
    for chunk in _chunks(plans):
        session.execute(update(RectificationVisit).where(RectificationVisit.rectification_id.in_(chunk))
                        .values(notes=ERASED))
        session.execute(update(Rectification).where(Rectification.id.in_(chunk)).values(
            household_id=None, measures=ERASED, helper=ERASED[:60],
            decision=case((Rectification.decision.is_(None), None), else_=ERASED), erased_at=now))
    for chunk in _chunks(ids):
        session.execute(update(ListPosting).where(ListPosting.id.in_(chunk)).values(
            household_id=None, member_id=None, member_name=None, explanation=ERASED, erased_at=now))
    audit.record(session, actor, "lists.retention.erase", object_type="list_posting", object_id=None,
                 after={"years": years, "cutoff_month": cutoff, "postings": run.postings,
                        "rectifications": run.rectifications, "visits": run.visits,
                        "village_years": len(village_years)})
    return run


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[k:k + size] for k in range(0, len(ids), size)]


# ---- coverage --------------------------------------------------------------------------------------------------------

@dataclass
class Coverage:
    village_id: int
    year: int
    target_pct: int
    households: int  # on the roll at some time in the year
    covered: int  # of those, recognised on the red or black list with a posting starting in the year (not voided)
    red: int
    black: int
    months_done: int  # months of the year gone by, or with postings if more (the pace is measured over these)
    by_month: list[tuple[int, int, int]] = field(default_factory=list)  # (month, red, black) households
    never: list[int] = field(default_factory=list)  # household ids not recognised in the year

    @property
    def share_pct(self) -> float:
        return 100.0 * self.covered / self.households if self.households else 0.0

    @property
    def target_households(self) -> int:
        return -(-self.households * self.target_pct // 100)  # rounded up, in integers

    @property
    def needed(self) -> int:
        return max(self.target_households - self.covered, 0)

    @property
    def projected(self) -> int:
        """Households recognised by the end of the year at the pace so far (new households per month), capped."""
        if self.months_done == 0:
            return self.covered
        return min(self.households, round(self.covered * 12 / self.months_done))

    @property
    def on_track(self) -> bool:
        """At the pace so far, the year reaches the target. Before a month of the year is over there is no pace to
        judge: on track."""
        return self.months_done == 0 or self.projected >= self.target_households

    @property
    def ratio(self) -> str:
        return f"{self.red}:{self.black}"


def coverage(session: Session, village_id: int, year: int, *, target_pct: int,
             as_of_month: int | None = None) -> Coverage:
    """How much of the village the year's red and black lists have reached, against the target, with the
    households never recognised in the year. The pace is measured over the months of the year gone by as of
    `as_of_month` (default: now)."""
    c = coverage_many(session, {village_id: target_pct}, year, as_of_month=as_of_month)[village_id]
    start, end = date(year, 1, 1), local_day_start_utc(date(year + 1, 1, 1))
    recognised = select(ListPosting.household_id).where(
        ListPosting.village_id == village_id, ListPosting.status != "voided", ListPosting.household_id.is_not(None),
        ListPosting.from_month.between(year * 100 + 1, year * 100 + 12))
    c.never = list(session.execute(select(Household.id).where(
        Household.village_id == village_id, _on_roll(start, end), Household.id.not_in(recognised))
        .order_by(Household.id)).scalars())
    return c


def _elapsed(year: int, as_of_month: int) -> int:
    """Whole months of `year` gone by as of `as_of_month` (the current month is not over)."""
    if year < as_of_month // 100:
        return 12
    if year > as_of_month // 100:
        return 0
    return as_of_month % 100 - 1


def _on_roll(start: date, end: datetime) -> Any:
    """A household on the village's roll at some time between `start` and `end`."""
    return and_(Household.created_at < end, or_(Household.status == "active", Household.status_date.is_(None),
                                                col(Household.status_date) >= start))


def coverage_many(session: Session, targets: dict[int, int], year: int, *,
                  as_of_month: int | None = None) -> dict[int, Coverage]:
    """`coverage` for many villages (village -> target %), without the households never recognised: two grouped
    statements, one over the households, one over the list counts the evaluation keeps (list_counts)."""
    elapsed = _elapsed(year, as_of_month or this_month())
    ids = list(targets)
    out = {v: Coverage(v, year, targets[v], 0, 0, 0, 0, 0) for v in ids}
    if not ids:
        return out
    start, end = date(year, 1, 1), local_day_start_utc(date(year + 1, 1, 1))
    for vid, n in session.execute(select(Household.village_id, func.count()).where(
            Household.village_id.in_(ids), _on_roll(start, end)).group_by(Household.village_id)):
        out[vid].households = int(n)
    last: dict[int, int] = {}
    for r in session.execute(select(ListCount).where(ListCount.village_id.in_(ids),
                                                     ListCount.period.between(year * 100, year * 100 + 12))
                             .order_by(ListCount.village_id, ListCount.period)).scalars():
        c = out[r.village_id]
        if r.period == year * 100:
            c.covered, c.red, c.black = r.covered, r.red, r.black
        else:
            c.by_month.append((r.period, r.red, r.black))
            last[r.village_id] = r.period % 100
    for v, c in out.items():
        c.months_done = max(last.get(v, 0), elapsed)  # months whose lists are in, or gone by
    return out


def month_counts(session: Session, village_ids: list[int], first: int, last: int) -> dict[int, tuple[int, int]]:
    """Per month, the households on the red and on the black list across the villages (each village's households
    counted once a month, from list_counts)."""
    out: dict[int, tuple[int, int]] = {}
    if not village_ids:
        return out
    for period, red, black in session.execute(
            select(ListCount.period, func.sum(ListCount.red), func.sum(ListCount.black))
            .where(ListCount.village_id.in_(village_ids), ListCount.period.between(first, last),
                   ListCount.period % 100 != 0)
            .group_by(ListCount.period)):
        out[int(period)] = (int(red or 0), int(black or 0))
    return out


def ratio_stability(c: Coverage) -> float | None:
    """How steady the monthly red share is: the standard deviation of red ÷ (red + black) over the months, in
    percentage points (None with fewer than two months). Small is steady."""
    shares = [100.0 * r / (r + b) for _m, r, b in c.by_month if r + b]
    if len(shares) < 2:
        return None
    mean = sum(shares) / len(shares)
    return math.sqrt(sum((s - mean) ** 2 for s in shares) / (len(shares) - 1))


def reasons(session: Session, village_id: int, year: int) -> list[tuple[str, str, int]]:
    """(list, reason, households) of the year, most frequent first."""
    rows = session.execute(select(ListPosting.list, ListPosting.reason, func.count(ListPosting.household_id.distinct()))
                           .where(ListPosting.village_id == village_id, ListPosting.status != "voided",
                                  ListPosting.from_month.between(year * 100 + 1, year * 100 + 12))
                           .group_by(ListPosting.list, ListPosting.reason)).all()
    return sorted(((r[0], r[1], int(r[2])) for r in rows), key=lambda t: (-t[2], t[0], t[1]))

