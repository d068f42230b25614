"""Monthly rounds (评比轮次): one per village and month, a state machine whose every transition is recorded and
audited, the ratings (panel or consensus) with recusal enforced, and finalisation that posts the explained points
through the ledger's bulk posting and creates the red/black list postings.

    draft ──submit──▶ submitted ──approve──▶ approved ──publicise──▶ publicised ──finalise──▶ finalised
      ▲                   │
      └──── returned ◀─return (with comments)

While a round is in draft (or returned) its roster is the village's households of that month, read live; it is frozen
at submission. The ruleset version is fixed when the round opens and re-read at submission (a version published
meanwhile for that month applies); from then on the round keeps it.

Services flush, never commit.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from app import rules
from app.audit import service as audit
from app.committee import service as committee
from app.core.clock import DISPLAY_ZONE, to_local, utcnow
from app.core.context import Actor
from app.core.month import add_months as add_months  # re-exported: the scripts reach it here
from app.core.month import current_month, month_start, next_month, prev_month, today_local
from app.core.scope import Scope
from app.errors import AppError, Conflict, NotFound, ValidationFailed
from app.evaluation.models import EvalRound, Motion, Objection, Rating, RoundEvent, RoundResult
from app.households.models import Household, HouseholdStatus
from app.ledger import service as ledger
from app.lists import service as lists
from app.lists.service import postings_of_round as postings_of_round  # re-exported: the pages and tests read them here
from app.lists.service import rebuild_list_counts as rebuild_list_counts
from app.lists.service import refresh_list_counts as refresh_list_counts
from app.org.models import Group, Village
from app.rules.validate import valid_month
from app.rulesets import service as rulesets

STATUS_LABELS = {"draft": "草稿", "submitted": "待乡镇审核", "approved": "审核通过", "returned": "已退回修改",
                 "publicised": "公示中", "finalised": "已完成"}
MODE_LABELS = {"consensus": "委员会合议，文书录入", "panel": "委员各自评分"}
EDITABLE = frozenset({"draft", "returned"})
# action -> (from states, to state, label)
TRANSITIONS: dict[str, tuple[frozenset[str], str, str]] = {
    "submit": (EDITABLE, "submitted", "提交乡镇审核"),
    "approve": (frozenset({"submitted"}), "approved", "审核通过"),
    "return": (frozenset({"submitted"}), "returned", "退回修改"),
    "publicise": (frozenset({"approved"}), "publicised", "开始公示"),
    "finalise": (frozenset({"publicised"}), "finalised", "公示结束，积分入账"),
}
MAX_OBJECTION_DAYS = 30
CONSENSUS = 0  # rater_id of the committee's agreed grade


class RoundError(AppError):
    status = 409
    code = "round_state"


# ---- reading -------------------------------------------------------------------------------------------------------


def get_round(session: Session, round_id: int, *, lock: bool = False) -> EvalRound:
    """`lock`: for a change of the round (PostgreSQL: the row is locked until the transaction ends, so two clerks
    finalising at once do it one after the other and the second is refused; SQLite has one writer anyway)."""
    rnd = session.get(EvalRound, round_id, with_for_update=True, populate_existing=True) if lock else \
        session.get(EvalRound, round_id)
    if rnd is None:
        raise NotFound("没有这个评比轮次")
    return rnd


def scope_of_round(session: Session, round_id: int) -> Scope | None:
    row = session.execute(select(EvalRound.village_id, Village.township_id).join(Village, Village.id == EvalRound.village_id)
                          .where(EvalRound.id == round_id)).first()
    return Scope(township_id=row.township_id, village_id=row.village_id) if row else None


def rounds_of_village(session: Session, village_id: int) -> list[EvalRound]:
    return list(session.execute(select(EvalRound).where(EvalRound.village_id == village_id)
                                .order_by(EvalRound.month.desc())).scalars())


def round_of_month(session: Session, village_id: int, month: int) -> EvalRound | None:
    return session.execute(select(EvalRound).where(EvalRound.village_id == village_id,
                                                   EvalRound.month == month)).scalar_one_or_none()


def events(session: Session, round_id: int) -> list[RoundEvent]:
    return list(session.execute(select(RoundEvent).where(RoundEvent.round_id == round_id)
                                .order_by(RoundEvent.id)).scalars())


def eligibility_of(session: Session, rnd: EvalRound) -> committee.Eligibility:
    """Who may rate whom in this round: the committee as it is while the round is editable, as it was at
    submission afterwards."""
    if rnd.eligibility is not None and rnd.status not in EDITABLE:
        return committee.Eligibility.from_snapshot(rnd.eligibility)
    return committee.eligibility(session, rnd.village_id)


def ruleset_of(session: Session, rnd: EvalRound) -> rules.Ruleset:
    return rulesets.get(session, rnd.ruleset_code, rnd.ruleset_version).ruleset


# ---- the roster of a month ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RosterEntry:
    household_id: int
    number: str
    head_name: str
    group_id: int | None
    group_name: str
    note: str  # "" | 本月新增 | 本月迁出 | 本月注销


def _local_date(ts: datetime) -> date:
    local = to_local(ts if ts.tzinfo else ts.replace(tzinfo=UTC), DISPLAY_ZONE)
    assert local is not None
    return local.date()


def _live_roster(session: Session, village_id: int, month: int) -> list[RosterEntry]:
    """The households of the village in that month: registered by its end, and not gone before it began. Those that
    joined or left during the month are rated and flagged."""
    start, end = month_start(month), month_start(next_month(month))
    groups = {g.id: g.name for g in session.execute(select(Group).where(Group.village_id == village_id)).scalars()}
    out = []
    rows = session.execute(select(Household.id, Household.number, Household.head_name, Household.group_id,
                                  Household.created_at, Household.updated_at, Household.status, Household.status_date)
                           .where(Household.village_id == village_id)
                           .order_by(Household.group_sort, Household.number_sort, Household.id)).tuples()
    for hid, number, head, group_id, created_at, updated_at, status, status_date in rows:
        joined = _local_date(created_at)
        if joined >= end:
            continue
        note = "本月新增" if joined >= start else ""
        if status != HouseholdStatus.ACTIVE.value:
            gone = status_date or _local_date(updated_at)
            if gone < start:
                continue
            if gone < end:
                note = "本月迁出" if status == HouseholdStatus.MOVED_OUT.value else "本月注销"
        out.append(RosterEntry(hid, number, head, group_id, groups.get(group_id, "") if group_id else "", note))
    return out


def roster(session: Session, rnd: EvalRound) -> list[RosterEntry]:
    if rnd.roster is None:
        return _live_roster(session, rnd.village_id, rnd.month)
    frozen = {int(e["household_id"]): str(e.get("note", "")) for e in rnd.roster}
    if not frozen:
        return []
    groups = {g.id: g.name for g in session.execute(select(Group).where(Group.village_id == rnd.village_id)).scalars()}
    rows = session.execute(select(Household.id, Household.number, Household.head_name, Household.group_id)
                           .where(Household.id.in_(list(frozen)))
                           .order_by(Household.group_sort, Household.number_sort, Household.id)).tuples()
    return [RosterEntry(hid, number, head, gid, groups.get(gid, "") if gid else "", frozen[hid])
            for hid, number, head, gid in rows]


# ---- opening a round -------------------------------------------------------------------------------------------------


def _record(session: Session, actor: Actor, rnd: EvalRound, frm: str, to: str, comment: str | None = None) -> None:
    assert rnd.id is not None
    session.add(RoundEvent(round_id=rnd.id, from_status=frm, to_status=to, actor_id=actor.user_id,
                           actor_name=actor.name[:80], comment=comment))
    audit.record(session, actor, f"round.{to}" if frm != to else "round.update", object_type="round", object_id=rnd.id,
                 before={"status": frm}, after={"status": to, "village_id": rnd.village_id, "month": rnd.month},
                 note=comment)


def open_round(session: Session, actor: Actor, *, village_id: int, month: int, mode: str = "consensus",
               objection_days: int = 5, present: Sequence[int] = ()) -> EvalRound:
    if not valid_month(month):
        raise ValidationFailed(f"月份 {month} 无效，应写成 202611 这样的六位数字", details={"field": "month"})
    if month > current_month():
        raise ValidationFailed(f"{rulesets.month_label(month)}还没到，不能开始评比", details={"field": "month"})
    if mode not in MODE_LABELS:
        raise ValidationFailed("评分方式只能是“委员会合议，文书录入”或“委员各自评分”", details={"field": "mode"})
    if not 1 <= objection_days <= MAX_OBJECTION_DAYS:
        raise ValidationFailed(f"公示天数须在 1 到 {MAX_OBJECTION_DAYS} 天之间", details={"field": "objection_days"})
    village = session.get(Village, village_id)
    if village is None:
        raise NotFound("没有这个村")
    existing = round_of_month(session, village_id, month)
    if existing is not None:
        raise Conflict(f"{village.name}{rulesets.month_label(month)}的评比已经存在（{STATUS_LABELS[existing.status]}），"
                       "每村每月只能有一轮", details={"round_id": existing.id})
    stored = rulesets.applicable(session, village_id, month)
    rnd = EvalRound(village_id=village_id, month=month, mode=mode, objection_days=objection_days,
                    ruleset_code=stored.row.code, ruleset_version=stored.row.version, created_by=actor.name[:80])
    session.add(rnd)
    session.flush()
    if present:
        set_present(session, actor, rnd.id, present)  # type: ignore[arg-type]
    _record(session, actor, rnd, "draft", "draft", f"开始{village.name} {rulesets.month_label(month)}评比")
    return rnd


def _editable(rnd: EvalRound) -> None:
    if rnd.status not in EDITABLE:
        raise RoundError(f"本轮评比{STATUS_LABELS[rnd.status]}，不能再修改评分和认定"
                         + ("（如有错误，请乡镇审核员退回）" if rnd.status == "submitted" else ""))


def set_present(session: Session, actor: Actor, round_id: int, user_ids: Iterable[int]) -> list[int]:
    """Consensus rounds: the committee members present when the grades were agreed (the quorum counts them)."""
    rnd = get_round(session, round_id, lock=True)
    _editable(rnd)
    elig = committee.eligibility(session, rnd.village_id)
    ids = sorted(set(user_ids))
    bad = [u for u in ids if u not in elig.members]
    if bad:
        raise ValidationFailed("出席名单中有人不是本村评比委员（或尚未关联本人农户）", details={"user_ids": bad})
    rnd.present_member_ids = ids
    rnd.updated_at = utcnow()
    session.add(rnd)
    session.flush()
    audit.record(session, actor, "round.present", object_type="round", object_id=rnd.id,
                 after={"present": ids})
    return ids


# ---- ratings -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    household_id: int
    theme: str
    grade: str  # "" clears the cell


@dataclass
class SaveResult:
    saved: int = 0
    cleared: int = 0
    unchanged: int = 0


def _grade_problem(ruleset: rules.Ruleset, theme: str, grade: str) -> str | None:
    t = ruleset.theme(theme)
    if t is None:
        return f"没有评比项目“{theme}”"
    if grade and t.grade(grade) is None:
        return f"{t.name}的等级“{grade}”不在评分标准内（可填：{'、'.join(g.code for g in t.scale()[::-1])}）"
    return None


def save_ratings(session: Session, actor: Actor, round_id: int, cells: Sequence[Cell], *,
                 rater_id: int = CONSENSUS) -> SaveResult:
    """Save grades: the committee's agreed grades (consensus rounds, `rater_id` 0, entered by the clerk) or one
    member's own (panel rounds, `rater_id` = the member's user id). All cells are checked first; one bad cell saves
    nothing and every problem is named."""
    rnd = get_round(session, round_id, lock=True)
    _editable(rnd)
    if rnd.mode == "consensus" and rater_id != CONSENSUS:
        raise ValidationFailed("本轮由委员会合议评定，等级由文书录入；委员个人不单独评分")
    if rnd.mode == "panel" and rater_id == CONSENSUS:
        raise ValidationFailed("本轮由委员各自评分：请委员本人登录评分，或改用合议方式")
    ruleset = ruleset_of(session, rnd)
    members = {e.household_id: e for e in roster(session, rnd)}
    elig = committee.eligibility(session, rnd.village_id) if rater_id != CONSENSUS else None
    problems: list[str] = []
    for c in cells:
        entry = members.get(c.household_id)
        if entry is None:
            problems.append(f"农户 {c.household_id} 不在本月评比名单中")
            continue
        p = _grade_problem(ruleset, c.theme, c.grade)
        if p:
            problems.append(f"{entry.number} {entry.head_name}：{p}")
        elif elig is not None and not elig.may_rate(rater_id, c.household_id):
            problems.append(f"{entry.number} {entry.head_name}：{elig.why_not(rater_id, c.household_id)}")
    if problems:
        raise ValidationFailed("评分有误，均未保存：" + "；".join(problems[:10])
                               + (f" 等 {len(problems)} 处" if len(problems) > 10 else ""),
                               details={"problems": problems})
    wanted: dict[tuple[int, str], str] = {(c.household_id, c.theme): c.grade.strip() for c in cells}
    existing = {(hid, th): (rid, g) for rid, hid, th, g in session.execute(
        select(Rating.id, Rating.household_id, Rating.theme, Rating.grade).where(
            Rating.round_id == round_id, Rating.rater_id == rater_id))}
    result = SaveResult()
    now, who = utcnow(), actor.name[:80]
    inserts, updates, deletes = [], [], []
    for (hid, th), grade in wanted.items():
        old = existing.get((hid, th))
        if not grade:
            if old:
                deletes.append(old[0])
                result.cleared += 1
            continue
        if old is None:
            inserts.append({"round_id": round_id, "household_id": hid, "theme": th, "rater_id": rater_id,
                            "grade": grade, "updated_at": now, "updated_by": who})
        elif old[1] != grade:
            updates.append({"rid": old[0], "grade": grade, "updated_at": now, "updated_by": who})
        else:
            result.unchanged += 1
            continue
        result.saved += 1
    if inserts:
        session.execute(insert(Rating), inserts)
    if updates:
        table = Rating.__table__  # type: ignore[attr-defined]
        session.execute(update(table).where(table.c.id == bindparam("rid"))
                        .values(grade=bindparam("grade"), updated_at=bindparam("updated_at"),
                                updated_by=bindparam("updated_by")), updates)
    if deletes:
        session.execute(delete(Rating).where(Rating.id.in_(deletes)))
    if result.saved or result.cleared:
        rnd.updated_at = now
        session.add(rnd)
        session.flush()
        audit.record(session, actor, "round.ratings", object_type="round", object_id=round_id,
                     after={"rater_id": rater_id, "saved": result.saved, "cleared": result.cleared})
    return result


def fill_default(session: Session, actor: Actor, round_id: int, *, grade: str, group_id: int | None = None,
                 rater_id: int = CONSENSUS) -> SaveResult:
    """Give every empty cell (of one group, or of all) the same grade, for each theme that has it; the exceptions
    are then changed one by one."""
    rnd = get_round(session, round_id)
    ruleset = ruleset_of(session, rnd)
    themes = [t.code for t in ruleset.themes if t.grade(grade) is not None]
    if not themes:
        raise ValidationFailed(f"等级“{grade}”不在任何评比项目的评分标准内")
    have = set(session.execute(select(Rating.household_id, Rating.theme).where(
        Rating.round_id == round_id, Rating.rater_id == rater_id)).tuples())
    elig = committee.eligibility(session, rnd.village_id) if rater_id != CONSENSUS else None
    cells = [Cell(e.household_id, th, grade) for e in roster(session, rnd)
             if (group_id is None or e.group_id == group_id)
             and (elig is None or elig.may_rate(rater_id, e.household_id))
             for th in themes if (e.household_id, th) not in have]
    return save_ratings(session, actor, round_id, cells, rater_id=rater_id)


def missing_cells(session: Session, rnd: EvalRound, *, rater_id: int = CONSENSUS) -> int:
    """How many cells of the rater's grid are still empty (households the rater may not rate left out): the grid's
    count, cheap enough for every autosave (the quorum is checked at submission)."""
    ruleset = ruleset_of(session, rnd)
    themes = {t.code for t in ruleset.themes}
    hids = {e.household_id for e in roster(session, rnd)}
    if rater_id != CONSENSUS:
        elig = eligibility_of(session, rnd)
        hids = {h for h in hids if elig.may_rate(rater_id, h)}
    rows = session.execute(select(Rating.household_id, Rating.theme).where(
        Rating.round_id == rnd.id, Rating.rater_id == rater_id)).tuples()
    filled = len([1 for hid, th in rows if hid in hids and th in themes])
    return len(hids) * len(themes) - filled


def grid(session: Session, rnd: EvalRound, *, rater_id: int = CONSENSUS) -> dict[tuple[int, str], str]:
    return {(hid, th): g for hid, th, g in session.execute(select(Rating.household_id, Rating.theme, Rating.grade).where(
        Rating.round_id == rnd.id, Rating.rater_id == rater_id)).tuples()}


# ---- the engine's input --------------------------------------------------------------------------------------------


@dataclass
class Corrections:
    """What upheld objections change in the input."""

    grades: dict[tuple[int, str], str] = field(default_factory=dict)  # (household, theme) -> corrected grade
    suppressed: set[tuple[int, str]] = field(default_factory=set)  # (household, posting code)
    voided: set[int] = field(default_factory=set)  # determinations (motion ids) set aside


def corrections(session: Session, round_id: int, *, excluding: int | None = None) -> Corrections:
    """The upheld objections' corrections (`excluding` one of them: to measure its own effect)."""
    c = Corrections()
    for o in session.execute(select(Objection).where(Objection.round_id == round_id, Objection.status == "upheld",
                                                     Objection.id != (excluding or 0))
                             .order_by(Objection.id)).scalars():
        if o.target == "rating" and o.theme and o.corrected_grade:
            c.grades[(o.household_id, o.theme)] = o.corrected_grade
        elif o.target == "posting" and o.posting_code:
            c.suppressed.add((o.household_id, o.posting_code))
        elif o.target == "determination" and o.motion_id:
            c.voided.add(o.motion_id)
    return c


def _history(session: Session, rnd: EvalRound, ruleset: rules.Ruleset, households: set[int]) -> list[rules.WorstRun]:
    """Consecutive months before this one in which each household's theme was graded at the scale's lowest rank
    (from the finalised results; a month without a finalised round ends every run)."""
    rules_by_theme = {w.theme: w for w in ruleset.black_policy.worst_grade}
    if not rules_by_theme:
        return []
    lowest = {th: ruleset.theme(th).scale()[0].code for th in rules_by_theme if ruleset.theme(th)}  # type: ignore[union-attr]
    # a run posts once it reaches the rule's K months with this one: K - 1 months back decide it (a longer run is
    # counted as K - 1, which posts the same)
    depth = max(w.months for w in rules_by_theme.values()) - 1
    runs: dict[tuple[int, str], int] = {}
    alive = {(h, th) for h in households for th in lowest}
    month = prev_month(rnd.month)
    for _ in range(depth):
        if not alive:
            break
        past = round_of_month(session, rnd.village_id, month)
        if past is None or past.status != "finalised":
            break
        graded: dict[tuple[int, str], str] = {}
        for hid, grades in session.execute(select(RoundResult.household_id, RoundResult.grades).where(
                RoundResult.round_id == past.id)).tuples():
            for th, grade in grades.items():
                graded[(hid, th)] = grade
        for key in list(alive):
            if graded.get(key) == lowest[key[1]]:
                runs[key] = runs.get(key, 0) + 1
            else:
                alive.discard(key)
        month = prev_month(month)
    return [rules.WorstRun(h, th, n) for (h, th), n in sorted(runs.items())]


def build_input(session: Session, rnd: EvalRound, ruleset: rules.Ruleset, *,
                fixes: Corrections | None = None) -> rules.RoundInput:
    """The round as the engine sees it: the roster, the ratings of eligible members only (panel), or the agreed
    grades with the eligible members present (consensus), upheld corrections, passed determinations, history."""
    entries = roster(session, rnd)
    hids = {e.household_id for e in entries}
    elig = eligibility_of(session, rnd)
    fixes = fixes if fixes is not None else corrections(session, rnd.id)  # type: ignore[arg-type]
    ratings: list[rules.Rating] = []
    rows = session.execute(select(Rating.household_id, Rating.theme, Rating.rater_id, Rating.grade).where(
        Rating.round_id == rnd.id)).tuples().all()
    if rnd.mode == "consensus":
        present = list(rnd.present_member_ids or [])
        for hid, th, rater, grade in rows:
            if rater == CONSENSUS and hid in hids and (hid, th) not in fixes.grades:
                ratings.append(rules.Rating.agreed(hid, th, grade, elig.eligible_for(hid, present)))
    else:
        panel: dict[tuple[int, str], dict[int, str]] = defaultdict(dict)
        for hid, th, rater, grade in rows:
            if rater != CONSENSUS and hid in hids and elig.may_rate(rater, hid):
                panel[(hid, th)][rater] = grade
        for (hid, th), by_rater in panel.items():
            if (hid, th) not in fixes.grades:
                ratings.append(rules.Rating.panel(hid, th, by_rater))
    deciding = list(rnd.present_member_ids or []) if rnd.mode == "consensus" else None
    for (hid, th), grade in fixes.grades.items():  # the committee's decision on an objection, by those who decided
        if hid in hids:
            ratings.append(rules.Rating.agreed(hid, th, grade, elig.eligible_for(hid, deciding)))
    dets = []
    # a determination voided by an upheld objection counts when that objection is left out (`fixes` says)
    for m in session.execute(select(Motion).where(Motion.round_id == rnd.id, Motion.kind == "determination",
                                                  Motion.status.in_(["passed", "voided"]))).scalars():
        if m.household_id in hids and m.code and m.id not in fixes.voided:
            dets.append(rules.PassedDetermination(m.household_id, m.code, member_id=m.member_id,
                                                  member_name=m.member_name, note=m.description[:60], ref=m.id))
    return rules.RoundInput(village_id=rnd.village_id, month=rnd.month, households=tuple(sorted(hids)),
                            ratings=tuple(ratings), determinations=tuple(dets),
                            history=tuple(_history(session, rnd, ruleset, hids)))


def _suppress(result: rules.RoundResult, suppressed: set[tuple[int, str]]) -> rules.RoundResult:
    if not suppressed:
        return result
    households = tuple(dataclasses.replace(h, postings=tuple(p for p in h.postings
                                                             if (h.household_id, p.code) not in suppressed))
                       for h in result.households)
    return dataclasses.replace(result, households=households)


def compute(session: Session, rnd: EvalRound, *, ruleset: rules.Ruleset | None = None,
            fixes: Corrections | None = None) -> rules.RoundResult:
    """The round's results as they stand (nothing saved)."""
    ruleset = ruleset or ruleset_of(session, rnd)
    fixes = fixes if fixes is not None else corrections(session, rnd.id)  # type: ignore[arg-type]
    return _suppress(rules.evaluate(build_input(session, rnd, ruleset, fixes=fixes), ruleset), fixes.suppressed)


@dataclass(frozen=True)
class Progress:
    households: int
    themes: int
    cells: int
    filled: int
    problems: tuple[rules.Problem, ...]
    open_motions: int

    @property
    def missing(self) -> int:
        return self.cells - self.filled


def progress(session: Session, rnd: EvalRound, result: rules.RoundResult | None = None) -> Progress:
    ruleset = ruleset_of(session, rnd)
    result = result or compute(session, rnd, ruleset=ruleset)
    n = len(result.households) + len(result.skipped)
    themes = len(ruleset.themes)
    missing_lines = sum(1 for p in result.problems if p.theme)
    open_motions = int(session.execute(select(func.count()).select_from(Motion).where(
        Motion.round_id == rnd.id, Motion.status == "proposed")).scalar_one())
    return Progress(n, themes, n * themes, n * themes - missing_lines, result.problems, open_motions)


# ---- transitions -------------------------------------------------------------------------------------------------


def _move(session: Session, actor: Actor, rnd: EvalRound, action: str, comment: str | None = None) -> EvalRound:
    froms, to, label = TRANSITIONS[action]
    if rnd.status not in froms:
        allowed = "、".join(STATUS_LABELS[s] for s in sorted(froms))
        raise RoundError(f"本轮评比当前为“{STATUS_LABELS[rnd.status]}”，不能“{label}”（只有“{allowed}”时可以）")
    frm = rnd.status
    rnd.status = to
    rnd.updated_at = utcnow()
    session.add(rnd)
    session.flush()
    _record(session, actor, rnd, frm, to, comment)
    return rnd


def submit(session: Session, actor: Actor, round_id: int) -> EvalRound:
    """Send the round to the township: every household rated on every theme with quorum, every determination voted.
    The roster is frozen and the ruleset version re-read for the month."""
    rnd = get_round(session, round_id, lock=True)
    if rnd.status in EDITABLE:
        stored = rulesets.applicable(session, rnd.village_id, rnd.month)
        rnd.ruleset_code, rnd.ruleset_version = stored.row.code, stored.row.version
    pr = progress(session, rnd) if rnd.status in EDITABLE else None
    if pr is not None:
        if pr.problems:
            sample = "；".join(p.message for p in pr.problems[:5])
            raise RoundError(f"还有 {len(pr.problems)} 处评分不完整，不能提交：{sample}"
                             + ("……" if len(pr.problems) > 5 else ""), details={"problems": len(pr.problems)})
        if pr.open_motions:
            raise RoundError(f"还有 {pr.open_motions} 项认定未完成表决，请表决或撤回后再提交")
        if pr.households == 0:
            raise RoundError("本月评比名单中没有农户，不能提交")
    if rnd.status in EDITABLE:
        rnd.roster = [{"household_id": e.household_id, "note": e.note} for e in roster(session, rnd)]
        rnd.roster_size = len(rnd.roster)
        rnd.eligibility = committee.eligibility(session, rnd.village_id).snapshot()
    return _move(session, actor, rnd, "submit")


def approve(session: Session, actor: Actor, round_id: int, comment: str = "") -> EvalRound:
    rnd = get_round(session, round_id, lock=True)
    rnd.review_comment = comment.strip()[:1000] or None
    return _move(session, actor, rnd, "approve", rnd.review_comment)


def return_round(session: Session, actor: Actor, round_id: int, comment: str) -> EvalRound:
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("退回时请写明需要修改的地方", details={"field": "comment"})
    rnd = get_round(session, round_id, lock=True)
    rnd.review_comment = comment[:1000]
    if rnd.status == "submitted":  # the roster and the committee are live again while editable
        rnd.roster = rnd.eligibility = None
        rnd.roster_size = None
    return _move(session, actor, rnd, "return", comment[:1000])


def publicise(session: Session, actor: Actor, round_id: int, *, on: date | None = None) -> EvalRound:
    """Start the publicity (公示): objections are open until `objections_close_on` (inclusive)."""
    rnd = get_round(session, round_id, lock=True)
    start = on or today_local()
    rnd.objections_close_on = start + timedelta(days=rnd.objection_days - 1)  # N days, the first one included
    return _move(session, actor, rnd, "publicise",
                 f"公示 {rnd.objection_days} 天，异议受理至 {rnd.objections_close_on:%Y-%m-%d}")


@dataclass(frozen=True)
class Finalised:
    round: EvalRound
    households: int
    transactions: int
    points_issued: int
    points_deducted: int
    postings: int
    replayed: int


_LINE_FIELDS = tuple(f.name for f in dataclasses.fields(rules.PointsLine))
_POSTING_FIELDS = tuple(f.name for f in dataclasses.fields(rules.ListPosting))


def _line_dict(line: rules.PointsLine) -> dict[str, Any]:
    """A line as stored (JSON): empty fields left out. (Not dataclasses.asdict: it deep-copies, 30x slower.)"""
    d = {k: getattr(line, k) for k in _LINE_FIELDS}
    d["raters"] = list(line.raters)
    return {k: v for k, v in d.items() if v is not None and v != "" and v != []}


def _posting_dict(p: rules.ListPosting) -> dict[str, Any]:
    return {k: v for k in _POSTING_FIELDS if (v := getattr(p, k)) is not None and v != ""}


def grades_of(lines: Iterable[rules.PointsLine]) -> dict[str, str]:
    """The combined grade of each theme line."""
    return {ln.code: ln.grade for ln in lines if ln.kind == "theme" and ln.grade}


def points_memo(rnd: EvalRound, village: str = "") -> str:
    return f"{village} {rulesets.month_label(rnd.month)}评比积分".strip()


def finalise(session: Session, actor: Actor, round_id: int, *, on: date | None = None,
             at: datetime | None = None) -> Finalised:
    """After the publicity: the results are stored as explained, each household's total is posted through the ledger
    (one bulk posting; each household's transaction keyed by round and household, so it can never post twice) and
    the list postings take effect. `on` and `at` (the day it counts as, the time the postings carry) are for loading
    past months (the demo); they default to today and now."""
    rnd = get_round(session, round_id, lock=True)
    day = on or today_local()
    if rnd.status == "publicised":
        if rnd.objections_close_on and day <= rnd.objections_close_on:
            raise RoundError(f"公示期到 {rnd.objections_close_on:%Y-%m-%d} 结束，之后才能入账")
        open_count = len(session.execute(select(Objection.id).where(Objection.round_id == round_id,
                                                                    Objection.status == "open")).all())
        if open_count:
            raise RoundError(f"还有 {open_count} 条异议未处理，请委员会处理后再入账")
    _move(session, actor, rnd, "finalise")
    ruleset = ruleset_of(session, rnd)
    result = compute(session, rnd, ruleset=ruleset)
    if result.problems:  # cannot happen after a clean submission with the frozen committee; never post a partial round
        raise RoundError(f"本轮结果有 {len(result.problems)} 处不完整（{result.problems[0].message}），不能入账；"
                         "请乡镇审核员退回后补全")
    village = session.get(Village, rnd.village_id)
    memo = points_memo(rnd, village.name if village else "")
    notes = {int(e["household_id"]): str(e.get("note", "")) for e in (rnd.roster or [])}
    postings: list[ledger.Posting] = []
    owners: list[int] = []
    for h in result.households:
        if h.total == 0:
            continue
        key = f"round:{rnd.id}:household:{h.household_id}"
        ref = f"round:{rnd.id}"
        if h.total > 0:
            postings.append(ledger.award_posting(h.household_id, rnd.village_id, h.total, memo, reference=ref,
                                                 idempotency_key=key))
        else:
            postings.append(ledger.penalty_posting(h.household_id, rnd.village_id, -h.total, memo,
                                                   policy=ruleset.penalty_policy, reference=ref, idempotency_key=key))
        owners.append(h.household_id)
    bulk = ledger.post_many(session, actor, postings, occurred_at=at, note=f"round:{rnd.id}")
    tx_of = dict(zip(owners, bulk.transaction_ids, strict=True))
    result_rows = [{"round_id": rnd.id, "household_id": h.household_id, "total": h.total,
                    "lines": [_line_dict(ln) for ln in h.lines], "postings": [_posting_dict(p) for p in h.postings],
                    "grades": grades_of(h.lines), "note": notes.get(h.household_id, ""),
                    "ledger_tx_id": tx_of.get(h.household_id)}
                   for h in result.households]
    result_rows += [{"round_id": rnd.id, "household_id": s.household_id, "total": 0, "lines": [], "postings": [],
                     "grades": {}, "note": (notes.get(s.household_id, "") + " " + s.reason).strip()[:40],
                     "ledger_tx_id": None}
                    for s in result.skipped]
    if result_rows:
        session.execute(insert(RoundResult), result_rows)
    n_postings = lists.add_postings(session, round_id=rnd.id, village_id=rnd.village_id, month=rnd.month,
                                    postings=[p for h in result.households for p in h.postings])
    lists.refresh_list_counts(session, rnd.village_id, rnd.month // 100)
    rnd.finalised_at = at or utcnow()
    rnd.households_rated = len(result_rows)
    session.add(rnd)
    session.flush()
    t = result.totals
    audit.record(session, actor, "round.results", object_type="round", object_id=rnd.id,
                 after={"households": len(result_rows), "transactions": bulk.posted, "points_issued": t.points_issued,
                        "points_deducted": t.points_deducted, "postings": n_postings})
    return Finalised(rnd, len(result_rows), bulk.posted, t.points_issued, t.points_deducted, n_postings,
                     bulk.replayed)


# ---- finalised results ---------------------------------------------------------------------------------------------


def stored_results(session: Session, round_id: int) -> dict[int, RoundResult]:
    return {r.household_id: r for r in session.execute(select(RoundResult).where(
        RoundResult.round_id == round_id)).scalars()}


def previous_totals(session: Session, rnd: EvalRound) -> dict[int, int]:
    past = round_of_month(session, rnd.village_id, prev_month(rnd.month))
    if past is None or past.status != "finalised":
        return {}
    return {hid: total for hid, total in session.execute(select(RoundResult.household_id, RoundResult.total).where(
        RoundResult.round_id == past.id)).tuples()}


def household_rounds(session: Session, household_id: int, *, public_only: bool) -> list[tuple[EvalRound, RoundResult | None]]:
    """The rounds of a household's village that include it, newest first; for the household itself only the rounds
    made public (publicised or finalised)."""
    h = session.get(Household, household_id)
    if h is None:
        raise NotFound()
    q = select(EvalRound).where(EvalRound.village_id == h.village_id)
    if public_only:
        q = q.where(EvalRound.status.in_(["publicised", "finalised"]))
    found = list(session.execute(q.order_by(EvalRound.month.desc())).scalars())
    results = {r.round_id: r for r in session.execute(select(RoundResult).where(
        RoundResult.household_id == household_id, RoundResult.round_id.in_([r.id for r in found]))).scalars()}
    return [(rnd, results.get(rnd.id)) for rnd in found]  # type: ignore[arg-type]


def simulate(session: Session, rnd: EvalRound, draft: rules.Ruleset) -> rules.Simulation:
    """A draft ruleset applied to this round's input (ratings, determinations, corrections as they stand), next to
    the round's own ruleset. Nothing is saved."""
    current = ruleset_of(session, rnd)
    return rules.simulate(build_input(session, rnd, current), current, draft)


# ---- what the pages show -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HouseholdView:
    household_id: int
    total: int
    lines: list[dict[str, Any]]
    postings: list[dict[str, Any]]
    note: str = ""
    problems: tuple[str, ...] = ()
    ledger_tx_id: int | None = None
    stored: bool = False  # finalised: read from the stored results


def _views_from_result(result: rules.RoundResult, notes: dict[int, str]) -> dict[int, HouseholdView]:
    problems: dict[int, list[str]] = defaultdict(list)
    for p in result.problems:
        problems[p.household_id].append(p.message)
    views = {h.household_id: HouseholdView(h.household_id, h.total, [_line_dict(ln) for ln in h.lines],
                                           [_posting_dict(p) for p in h.postings], notes.get(h.household_id, ""),
                                           tuple(problems.get(h.household_id, ())))
             for h in result.households}
    for sk in result.skipped:
        views[sk.household_id] = HouseholdView(sk.household_id, 0, [], [], notes.get(sk.household_id, ""),
                                               tuple(problems.get(sk.household_id, ())) or (sk.reason,))
    return views


def views(session: Session, rnd: EvalRound, result: rules.RoundResult | None = None) -> dict[int, HouseholdView]:
    """Every household's result: stored once finalised, else computed as it stands."""
    if rnd.status == "finalised":
        return {r.household_id: HouseholdView(r.household_id, r.total, list(r.lines), list(r.postings), r.note,
                                              (), r.ledger_tx_id, True)
                for r in stored_results(session, rnd.id).values()}  # type: ignore[arg-type]
    notes = {e.household_id: e.note for e in roster(session, rnd)}
    return _views_from_result(result or compute(session, rnd), notes)


def household_view(session: Session, rnd: EvalRound, household_id: int) -> HouseholdView | None:
    return views(session, rnd).get(household_id)


def latest_by_village(session: Session, village_ids: Sequence[int]) -> dict[int, EvalRound]:
    """Each village's newest round."""
    out: dict[int, EvalRound] = {}
    if not village_ids:
        return out
    for rnd in session.execute(select(EvalRound).where(EvalRound.village_id.in_(list(village_ids)))
                               .order_by(EvalRound.village_id, EvalRound.month)).scalars():
        out[rnd.village_id] = rnd
    return out


@dataclass(frozen=True)
class MonthState:
    month: int
    status: str
    finalised_at: datetime | None
    households: int  # rated households (results kept at finalisation)
    roster: int  # households on the month's roster (frozen at submission)


def month_states(session: Session, village_ids: Sequence[int], from_month: int,
                 to_month: int) -> dict[int, dict[int, MonthState]]:
    """Per village and month of the period: the round's state, when it was finalised and how many households it
    rated, in two statements (for the township's and county's dashboards)."""
    out: dict[int, dict[int, MonthState]] = {v: {} for v in village_ids}
    if not village_ids:
        return out
    for vid, month, status, at, rated, size in session.execute(
            select(EvalRound.village_id, EvalRound.month, EvalRound.status, EvalRound.finalised_at,
                   EvalRound.households_rated, EvalRound.roster_size)
            .where(EvalRound.village_id.in_(list(village_ids)), EvalRound.month.between(from_month, to_month))):
        out[vid][month] = MonthState(month, status, at, int(rated or 0), int(size or 0))
    return out


def first_months(session: Session, village_ids: Sequence[int]) -> dict[int, int]:
    """Each village's first round (YYYYMM): months before it were not yet the village's to run."""
    if not village_ids:
        return {}
    return {int(v): int(m) for v, m in session.execute(
        select(EvalRound.village_id, func.min(EvalRound.month)).where(EvalRound.village_id.in_(list(village_ids)))
        .group_by(EvalRound.village_id))}


def panel_grades(session: Session, rnd: EvalRound) -> dict[tuple[int, str], dict[int, str]]:
    """Panel rounds: every member's grade per (household, theme), eligible raters only (for the review signals)."""
    elig = eligibility_of(session, rnd)
    out: dict[tuple[int, str], dict[int, str]] = defaultdict(dict)
    for hid, th, rater, grade in session.execute(select(Rating.household_id, Rating.theme, Rating.rater_id,
                                                        Rating.grade).where(Rating.round_id == rnd.id,
                                                                            Rating.rater_id != CONSENSUS)).tuples():
        if elig.may_rate(rater, hid):
            out[(hid, th)][rater] = grade
    return dict(out)


def identical_months(session: Session, rnd: EvalRound, result: rules.RoundResult | None = None,
                     depth: int = 12) -> dict[int, int]:
    """Per household: how many months running (this one included, then the finalised rounds before it) it got
    exactly the same grade on every theme. `result`: the round's, when the caller has computed it."""
    current = {h.household_id: tuple(sorted((ln["code"], ln["grade"]) for ln in h.lines
                                            if ln.get("kind") == "theme" and ln.get("grade")))
               for h in views(session, rnd, result).values()}
    count = {hid: 1 for hid, g in current.items() if g}
    alive = set(count)
    month = prev_month(rnd.month)
    for _ in range(depth):
        past = round_of_month(session, rnd.village_id, month)
        if past is None or past.status != "finalised" or not alive:
            break
        seen = set()
        for hid, stored in session.execute(select(RoundResult.household_id, RoundResult.grades).where(
                RoundResult.round_id == past.id, RoundResult.household_id.in_(list(alive)))).tuples():
            seen.add(hid)
            if tuple(sorted(stored.items())) == current[hid]:
                count[hid] += 1
            else:
                alive.discard(hid)
        alive &= seen
        month = prev_month(month)
    return count


@dataclass(frozen=True)
class StoredTotals:
    """A finalised round's figures, from its stored results (as corrected)."""

    households_eligible: int
    points_issued: int
    points_deducted: int
    red_households: int
    black_households: int


def stored_totals(results: Iterable[HouseholdView]) -> StoredTotals:
    rows = list(results)
    return StoredTotals(
        households_eligible=len(rows),
        points_issued=sum(ln["points"] for v in rows for ln in v.lines if ln.get("points", 0) > 0),
        points_deducted=-sum(ln["points"] for v in rows for ln in v.lines if ln.get("points", 0) < 0),
        red_households=sum(1 for v in rows if any(p.get("list") == "red" for p in v.postings)),
        black_households=sum(1 for v in rows if any(p.get("list") == "black" for p in v.postings)))
