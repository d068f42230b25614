"""Opening a round and moving it through its states, each transition recorded and audited; finalisation posts the
explained points through the ledger's bulk posting, stores the results and has the list postings take effect
(through app.lists).

Services flush, never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.committee import service as committee
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.month import current_month, today_local
from app.errors import Conflict, NotFound, ValidationFailed
from app.evaluation.models import EvalRound, Objection, RoundEvent, RoundResult
from app.evaluation.service.compute import compute, progress
from app.evaluation.service.reading import (
    EDITABLE,
    MAX_OBJECTION_DAYS,
    MODE_LABELS,
    STATUS_LABELS,
    TRANSITIONS,
    RoundError,
    _editable,
    get_round,
    round_of_month,
    ruleset_of,
)
from app.evaluation.service.results import _line_dict, _posting_dict, grades_of
from app.evaluation.service.roster import roster
from app.ledger import service as ledger
from app.lists import service as lists
from app.org.models import Village
from app.rules.validate import valid_month
from app.rulesets import service as rulesets

# ---- opening a round -----------------------------------------------------------------------------------------------


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
        set_present(session, actor, rnd.id, present)
    _record(session, actor, rnd, "draft", "draft", f"开始{village.name} {rulesets.month_label(month)}评比")
    return rnd


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


# ---- transitions ---------------------------------------------------------------------------------------------------


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
