"""The village's 文明新风评比委员会: who sits on it (users with an active committee grant for the village, each linked
to their own household) and whom each must not rate or vote on (their own household, and the households they
declared: relatives, a dispute). `Eligibility` answers "may member M rate or vote on household H" for a whole round
with two queries.

Services flush, never commit. Every change is audited.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.models import Role, RoleGrant, User
from app.committee.models import CommitteeMember, Recusal
from app.core.clock import utcnow
from app.core.context import Actor
from app.errors import Conflict, NotFound, ValidationFailed
from app.households.models import Household


@dataclass(frozen=True)
class MemberView:
    user_id: int
    name: str
    login: str
    member_id: int | None  # None: granted the role but not yet linked to a household
    household_id: int | None
    household_label: str
    title: str
    recusals: tuple[tuple[int, int, str, str], ...] = ()  # (recusal id, household id, household label, reason)


@dataclass
class Eligibility:
    """Who may rate whom in a village: `members` are user ids of linked, active members; `barred[user_id]` the
    households each must not rate (own household included)."""

    members: dict[int, str] = field(default_factory=dict)  # user id -> display name
    barred: dict[int, set[int]] = field(default_factory=dict)

    def may_rate(self, user_id: int, household_id: int) -> bool:
        return user_id in self.members and household_id not in self.barred.get(user_id, set())

    def eligible_for(self, household_id: int, among: Iterable[int] | None = None) -> list[int]:
        """The members who may rate this household (restricted to `among`, e.g. those present)."""
        pool = self.members if among is None else [u for u in among if u in self.members]
        return sorted(u for u in pool if household_id not in self.barred.get(u, set()))

    def snapshot(self) -> dict[str, Any]:
        """As stored on a round at submission (JSON: string keys)."""
        return {"members": {str(u): n for u, n in self.members.items()},
                "barred": {str(u): sorted(b) for u, b in self.barred.items()}}

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> Eligibility:
        return cls({int(u): str(n) for u, n in data.get("members", {}).items()},
                   {int(u): set(b) for u, b in data.get("barred", {}).items()})

    def why_not(self, user_id: int, household_id: int) -> str:
        if user_id not in self.members:
            return "您不是本村评比委员会的委员（或尚未关联本人农户），不能评分或表决"
        return "您已声明回避该户（本人或亲属家庭），不能对其评分或表决"


def _active_member_user_ids(session: Session, village_id: int) -> set[int]:
    rows = session.execute(select(RoleGrant.user_id).join(User, User.id == RoleGrant.user_id).where(
        RoleGrant.role == Role.COMMITTEE_MEMBER.value, RoleGrant.village_id == village_id,
        RoleGrant.revoked_at.is_(None), User.active.is_(True))).scalars()
    return set(rows)


def eligibility(session: Session, village_id: int) -> Eligibility:
    granted = _active_member_user_ids(session, village_id)
    rows = session.execute(select(CommitteeMember, User.display_name).join(User, User.id == CommitteeMember.user_id)
                           .where(CommitteeMember.village_id == village_id)).all()
    e = Eligibility()
    by_member: dict[int, int] = {}
    for m, name in rows:
        if m.user_id not in granted:
            continue
        e.members[m.user_id] = name
        e.barred[m.user_id] = {m.household_id}
        by_member[m.id] = m.user_id
    if by_member:
        for member_id, household_id in session.execute(select(Recusal.member_id, Recusal.household_id).where(
                Recusal.member_id.in_(list(by_member)), Recusal.withdrawn_at.is_(None))):
            e.barred[by_member[member_id]].add(household_id)
    return e


def proposal_refused(session: Session, village_id: int, user_id: int | None, household_id: int) -> str | None:
    """Why this user may not propose an award, a determination or a penalty for this household, if not: a committee
    member proposes nothing for a household he or she may not rate (the own household, or one declared a recusal
    for), and a holder of the committee role not yet linked to a household proposes nothing at all (the own
    household is not known yet). A clerk who is not on the committee proposes for anyone in the village."""
    if user_id is None:
        return None
    e = eligibility(session, village_id)
    if user_id in e.members:
        if household_id in e.barred.get(user_id, set()):
            return "您已声明回避该户（本人或亲属家庭），不能对其提出认定、加分或扣分：请由其他委员或村文书提出"
        return None
    if user_id in _active_member_user_ids(session, village_id):
        return "您是本村评比委员，但尚未关联本人农户：请村文书先在委员会页面关联后，再提出认定、加分或扣分"
    return None


def _label(h: Household | None) -> str:
    return f"{h.number} {h.head_name}" if h else ""


def members(session: Session, village_id: int) -> list[MemberView]:
    """Everyone holding the committee role in the village, linked or not, with their declared recusals."""
    granted = _active_member_user_ids(session, village_id)
    users = {u.id: u for u in session.execute(select(User).where(User.id.in_(granted))).scalars()} if granted else {}
    links = {m.user_id: m for m in session.execute(select(CommitteeMember).where(
        CommitteeMember.village_id == village_id)).scalars()}
    out = []
    for uid in sorted(users, key=lambda u: users[u].display_name):
        m = links.get(uid)
        rec: list[tuple[int, int, str, str]] = []
        if m is not None:
            for r, h in session.execute(select(Recusal, Household).join(Household, Household.id == Recusal.household_id)
                                        .where(Recusal.member_id == m.id, Recusal.withdrawn_at.is_(None))
                                        .order_by(Recusal.id)):
                rec.append((r.id, h.id, _label(h), r.reason))
        u = users[uid]
        out.append(MemberView(user_id=uid, name=u.display_name, login=u.login, member_id=m.id if m else None,
                              household_id=m.household_id if m else None,
                              household_label=_label(session.get(Household, m.household_id)) if m else "",
                              title=m.title if m else "委员", recusals=tuple(rec)))
    return out


def _village_household(session: Session, village_id: int, household_id: int) -> Household:
    h = session.get(Household, household_id)
    if h is None or h.village_id != village_id:
        raise ValidationFailed("所选农户不在本村，请从本村花名册中选择", details={"field": "household_id"})
    return h


def link(session: Session, actor: Actor, village_id: int, *, user_id: int, household_id: int,
         title: str = "委员") -> CommitteeMember:
    """Link a committee member to his or her own household (which the member then never rates)."""
    if user_id not in _active_member_user_ids(session, village_id):
        raise ValidationFailed("该用户没有本村评比委员的授权：请先在账号管理中授予“评比委员”角色")
    _village_household(session, village_id, household_id)
    title = (title or "委员").strip()[:20]
    m = session.execute(select(CommitteeMember).where(CommitteeMember.village_id == village_id,
                                                      CommitteeMember.user_id == user_id)).scalar_one_or_none()
    before = {"household_id": m.household_id, "title": m.title} if m else None
    if m is None:
        m = CommitteeMember(village_id=village_id, user_id=user_id, household_id=household_id, title=title)
    else:
        m.household_id, m.title = household_id, title
    session.add(m)
    session.flush()
    audit.record(session, actor, "committee.link", object_type="village", object_id=village_id, before=before,
                 after={"user_id": user_id, "household_id": household_id, "title": title})
    return m


def _member(session: Session, village_id: int, user_id: int) -> CommitteeMember:
    m = session.execute(select(CommitteeMember).where(CommitteeMember.village_id == village_id,
                                                      CommitteeMember.user_id == user_id)).scalar_one_or_none()
    if m is None:
        raise ValidationFailed("该委员尚未关联本人农户：请村文书先在委员会页面关联")
    return m


def declare_recusal(session: Session, actor: Actor, village_id: int, *, user_id: int, household_id: int,
                    reason: str) -> Recusal:
    """Member `user_id` must not rate or vote on `household_id` from now on."""
    m = _member(session, village_id, user_id)
    _village_household(session, village_id, household_id)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("请写明回避原因，例如“亲属”“邻里纠纷”", details={"field": "reason"})
    if household_id == m.household_id:
        raise Conflict("本人农户已自动回避，无需声明")
    exists = session.execute(select(Recusal.id).where(Recusal.member_id == m.id, Recusal.household_id == household_id,
                                                     Recusal.withdrawn_at.is_(None))).first()
    if exists:
        raise Conflict("已声明回避该户")
    r = Recusal(member_id=m.id, household_id=household_id, reason=reason[:100])
    session.add(r)
    session.flush()
    audit.record(session, actor, "committee.recuse", object_type="household", object_id=household_id,
                 after={"user_id": user_id, "reason": r.reason})
    return r


def withdraw_recusal(session: Session, actor: Actor, village_id: int, recusal_id: int) -> Recusal:
    r = session.get(Recusal, recusal_id)
    m = session.get(CommitteeMember, r.member_id) if r else None
    if r is None or m is None or m.village_id != village_id or r.withdrawn_at is not None:
        raise NotFound("没有这条回避声明")
    r.withdrawn_at = utcnow()
    session.add(r)
    session.flush()
    audit.record(session, actor, "committee.recuse_withdraw", object_type="household", object_id=r.household_id,
                 before={"user_id": m.user_id, "reason": r.reason})
    return r
