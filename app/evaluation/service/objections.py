"""Objections (异议) during and after the publicity of a round.

A household (signed in) or the clerk on its behalf (a paper complaint) objects to one of its ratings (a theme), a
determination or a list posting. The committee's decision is recorded with a written reason:
- upheld before finalisation: the correction becomes part of the round's input (a corrected grade replaces the
  theme's ratings; a determination is voided; a posting is withdrawn) and the results are recomputed;
- upheld after finalisation: nothing is reopened. The household's result is recomputed with the correction and the
  difference is posted as a compensating ledger transaction that cites the objection; its stored result and list
  postings are updated (the objection keeps the figures before and after).

Services flush, never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.month import today_local
from app.core.scope import Scope
from app.errors import Conflict, NotFound, ValidationFailed
from app.evaluation.models import EvalRound, Motion, Objection, RoundResult
from app.evaluation.service import rounds
from app.ledger import service as ledger
from app.lists import service as lists

TARGET_LABELS = {"rating": "评分", "determination": "认定", "posting": "红黑榜"}
STATUS_LABELS = {"open": "待处理", "upheld": "异议成立", "rejected": "异议不成立"}
MAX_TEXT = 2000


def get_objection(session: Session, objection_id: int, *, lock: bool = False) -> Objection:
    o = session.get(Objection, objection_id, with_for_update=lock or None, populate_existing=lock)
    if o is None:
        raise NotFound("没有这条异议")
    return o


def scope_of_objection(session: Session, objection_id: int) -> Scope | None:
    o = session.get(Objection, objection_id)
    return rounds.scope_of_round(session, o.round_id) if o else None


def objections_of_round(session: Session, round_id: int) -> list[Objection]:
    return list(session.execute(select(Objection).where(Objection.round_id == round_id)
                                .order_by(Objection.id)).scalars())


def objections_of_household(session: Session, household_id: int) -> list[Objection]:
    return list(session.execute(select(Objection).where(Objection.household_id == household_id)
                                .order_by(Objection.id.desc())).scalars())


def open_for_objections(rnd: EvalRound, day: date | None = None) -> bool:
    """During the publicity window, and after finalisation (a late complaint is still heard; a correction then
    posts compensation)."""
    day = day or today_local()
    if rnd.status == "publicised":
        return rnd.objections_close_on is None or day <= rnd.objections_close_on
    return rnd.status == "finalised"


def file(session: Session, actor: Actor, round_id: int, *, household_id: int, target: str, text: str,
         theme: str | None = None, motion_id: int | None = None, posting_code: str | None = None,
         on_paper: bool = False, day: date | None = None) -> Objection:
    rnd = rounds.get_round(session, round_id, lock=True)
    if not open_for_objections(rnd, day):
        if rnd.status == "publicised":
            raise Conflict(f"公示期已于 {rnd.objections_close_on:%Y-%m-%d} 结束，异议受理已截止；如有新情况请联系村文书")
        raise Conflict(f"本轮评比{rounds.STATUS_LABELS[rnd.status]}，尚未公示，暂不受理异议")
    if household_id not in {int(e["household_id"]) for e in (rnd.roster or [])}:
        raise ValidationFailed("该户不在本轮评比名单中")
    text = (text or "").strip()
    if not text:
        raise ValidationFailed("请写明异议的内容和理由", details={"field": "text"})
    if target not in TARGET_LABELS:
        raise ValidationFailed("请选择对哪一项有异议：评分、认定或红黑榜", details={"field": "target"})
    ruleset = rounds.ruleset_of(session, rnd)
    if target == "rating":
        if not theme or ruleset.theme(theme) is None:
            raise ValidationFailed("请选择有异议的评比项目", details={"field": "theme"})
        motion_id = posting_code = None
    elif target == "determination":
        m = session.get(Motion, motion_id) if motion_id else None
        if m is None or m.round_id != rnd.id or m.household_id != household_id or m.status != "passed":
            raise ValidationFailed("请选择本轮对该户通过的认定", details={"field": "motion_id"})
        theme = posting_code = None
    else:
        codes = _posting_codes(session, rnd, household_id)
        if not posting_code or posting_code not in codes:
            raise ValidationFailed("该户本轮没有这项红黑榜", details={"field": "posting_code"})
        if codes[posting_code] == "determination":
            raise ValidationFailed("这项上榜来自委员会的认定：请对“认定”提出异议（认定撤销后，上榜和分数一并撤销）",
                                   details={"field": "target"})
        theme = motion_id = None
    o = Objection(round_id=rnd.id, household_id=household_id, target=target, theme=theme, motion_id=motion_id,
                  posting_code=posting_code, text=text[:MAX_TEXT], on_paper=on_paper, filed_by_id=actor.user_id,
                  filed_by=actor.name[:80], after_finalisation=rnd.status == "finalised")
    session.add(o)
    session.flush()
    audit.record(session, actor, "objection.file", object_type="round", object_id=rnd.id,
                 after={"objection_id": o.id, "household_id": household_id, "target": target, "theme": theme,
                        "motion_id": motion_id, "posting": posting_code, "on_paper": on_paper})
    return o


def _posting_codes(session: Session, rnd: EvalRound, household_id: int) -> dict[str, str]:
    """The household's postings in this round: code -> source (determination, red_policy, black_policy)."""
    if rnd.status == "finalised":
        return {p.code: p.source for p in lists.effective_of_round(session, rnd.id, household_id)}
    h = rounds.compute(session, rnd).household(household_id)
    return {p.code: p.source for p in h.postings} if h else {}


@dataclass(frozen=True)
class Resolution:
    objection: Objection
    delta: int | None = None  # after finalisation: the compensating points (signed)
    ledger_tx_id: int | None = None


def resolve(session: Session, actor: Actor, objection_id: int, *, uphold: bool, reason: str,
            corrected_grade: str | None = None) -> Resolution:
    """Record the committee's decision on an objection, with its written reason."""
    o = get_objection(session, objection_id)
    rnd = rounds.get_round(session, o.round_id, lock=True)  # one decision at a time per round (see _compensate)
    o = get_objection(session, objection_id, lock=True)
    if o.status != "open":
        raise Conflict(f"这条异议已处理（{STATUS_LABELS[o.status]}）")
    if rnd.status not in ("publicised", "finalised"):
        raise Conflict("本轮评比不在公示期，也未完成，不能处理异议")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("请写明委员会的处理意见和理由", details={"field": "reason"})
    ruleset = rounds.ruleset_of(session, rnd)
    if uphold and o.target == "rating":
        theme = ruleset.theme(o.theme or "")
        if theme is None or not corrected_grade or theme.grade(corrected_grade) is None:
            choices = "、".join(g.code for g in theme.scale()[::-1]) if theme else ""
            raise ValidationFailed(f"异议成立时请选择更正后的等级（{choices}）", details={"field": "corrected_grade"})
        o.corrected_grade = corrected_grade
    o.status = "upheld" if uphold else "rejected"
    o.resolution, o.resolved_by, o.resolved_at = reason[:MAX_TEXT], actor.name[:80], utcnow()
    session.add(o)
    session.flush()
    if uphold and o.target == "determination" and o.motion_id:
        m = session.get(Motion, o.motion_id)
        if m is not None:
            m.status = "voided"
            session.add(m)
            session.flush()
    result = Resolution(o)
    if uphold and rnd.status == "finalised":
        result = _compensate(session, actor, rnd, o)
    audit.record(session, actor, f"objection.{o.status}", object_type="round", object_id=rnd.id,
                 after={"objection_id": o.id, "household_id": o.household_id, "corrected_grade": o.corrected_grade,
                        "delta": result.delta, "ledger_tx_id": result.ledger_tx_id}, note=reason[:300])
    return result


def _compensate(session: Session, actor: Actor, rnd: EvalRound, o: Objection) -> Resolution:
    """After finalisation: the household's result with every upheld correction, against the same without this one
    (both with the committee as frozen at submission): the difference is this objection's, and only it is posted."""
    ruleset = rounds.ruleset_of(session, rnd)
    fixes = rounds.corrections(session, rnd.id)
    without = rounds.corrections(session, rnd.id, excluding=o.id)
    new = rounds.compute(session, rnd, ruleset=ruleset, fixes=fixes).household(o.household_id)
    old = rounds.compute(session, rnd, ruleset=ruleset, fixes=without).household(o.household_id)
    delta = (new.total if new else 0) - (old.total if old else 0)
    stored = session.execute(select(RoundResult).where(RoundResult.round_id == rnd.id,
                                                       RoundResult.household_id == o.household_id)
                             .with_for_update()).scalar_one()
    memo = f"{rounds.points_memo(rnd)}更正（异议 #{o.id} 成立：{(o.resolution or '')[:60]}）"
    key, ref = f"objection:{o.id}", f"objection:{o.id}"
    tx_id = None
    if delta > 0:
        tx_id = ledger.award(session, actor, household_id=o.household_id, points=delta, memo=memo, reference=ref,
                             idempotency_key=key).tx.id
    elif delta < 0:
        posted = ledger.penalize(session, actor, household_id=o.household_id, points=-delta, memo=memo,
                                 policy=ruleset.penalty_policy, reference=ref, idempotency_key=key)
        tx_id = posted.tx.id if posted.tx else None
    stored.total += delta
    stored.lines = [rounds._line_dict(ln) for ln in new.lines] if new else []
    stored.postings = [rounds._posting_dict(p) for p in new.postings] if new else []
    stored.grades = rounds.grades_of(new.lines) if new else {}
    session.add(stored)
    # postings this objection removes are voided; those it brings take effect
    before = {p.code for p in (old.postings if old else ())}
    after = {p.code: p for p in (new.postings if new else ())}
    lists.void_postings(session, round_id=rnd.id, household_id=o.household_id, codes=before - set(after),
                        objection_id=o.id)
    lists.add_postings(session, round_id=rnd.id, village_id=rnd.village_id, month=rnd.month,
                       postings=[p for c, p in after.items() if c not in before], objection_id=o.id)
    session.flush()
    lists.refresh_list_counts(session, rnd.village_id, rnd.month // 100)
    o.delta, o.ledger_tx_id = delta, tx_id
    session.add(o)
    session.flush()
    return Resolution(o, delta, tx_id)


def counts(session: Session, village_ids: list[int], from_month: int, to_month: int) -> dict[int, tuple[int, int]]:
    """Per village: (objections filed, objections upheld) on the rounds of the period."""
    out = {v: (0, 0) for v in village_ids}
    if not village_ids:
        return out
    for vid, status, n in session.execute(
            select(EvalRound.village_id, Objection.status, func.count()).join(EvalRound, EvalRound.id == Objection.round_id)
            .where(EvalRound.village_id.in_(village_ids), EvalRound.month.between(from_month, to_month))
            .group_by(EvalRound.village_id, Objection.status)):
        filed, upheld = out[vid]
        out[vid] = (filed + int(n), upheld + (int(n) if status == "upheld" else 0))
    return out
