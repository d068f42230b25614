"""Ratings: the committee's agreed grades (consensus rounds, entered by the clerk) or each member's own (panel
rounds), recusal enforced; the grid as it stands and what is still missing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from app import rules
from app.audit import service as audit
from app.committee import service as committee
from app.core.clock import utcnow
from app.core.context import Actor
from app.errors import ValidationFailed
from app.evaluation.models import EvalRound, Rating
from app.evaluation.service.reading import CONSENSUS, _editable, eligibility_of, get_round, ruleset_of
from app.evaluation.service.roster import roster


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
        table = Rating.__table__
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
