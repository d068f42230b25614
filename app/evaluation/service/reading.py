"""A round's states and the transitions between them (see `rounds`), and reading rounds: one round, a village's, and
the rounds across villages that the dashboards read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import rules
from app.committee import service as committee
from app.core.scope import Scope
from app.errors import AppError, NotFound
from app.evaluation.models import EvalRound, RoundEvent
from app.org.models import Village
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


def _editable(rnd: EvalRound) -> None:
    if rnd.status not in EDITABLE:
        raise RoundError(f"本轮评比{STATUS_LABELS[rnd.status]}，不能再修改评分和认定"
                         + ("（如有错误，请乡镇审核员退回）" if rnd.status == "submitted" else ""))


# ---- across villages (the dashboards) ------------------------------------------------------------------------------


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
