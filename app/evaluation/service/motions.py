"""What the committee votes on: determinations (认定: 不诚信户, 文明家庭 …) in a round, and ad-hoc awards and penalties
between rounds (好人好事, a violation). Proposed by a member or the clerk with a description and evidence (text,
photos); voted on by the eligible members only (recusal applies); a motion passes when its `yes` votes reach the
rule (majority / two thirds / unanimous of the eligible members) and fails when they no longer can. Only a passed
determination reaches the rules engine; a passed ad-hoc motion is posted to the ledger at once, with its reason.

Services flush, never commit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.committee import service as committee
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.files import image_or_pdf_type
from app.core.month import current_month
from app.core.scope import Scope
from app.core.text import visible
from app.errors import Conflict, NotFound, ValidationFailed
from app.evaluation.models import Evidence, Motion, MotionVote
from app.evaluation.service import rounds
from app.households.models import Household, Member
from app.ledger import service as ledger
from app.org import service as org
from app.rules.schema import VOTE_LABELS
from app.rulesets import service as rulesets

KIND_LABELS = {"determination": "认定", "award": "好人好事加分", "penalty": "违规扣分"}
STATUS_LABELS = {"proposed": "待表决", "passed": "已通过", "rejected": "未通过", "withdrawn": "已撤回",
                 "voided": "异议成立已撤销"}
VOTE_CHOICES = {"yes": "同意", "no": "反对", "abstain": "弃权"}
MAX_EVIDENCE_BYTES = 5 * 1024 * 1024
EVIDENCE_TYPES = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "application/pdf": ".pdf"}
MAX_ADHOC_POINTS = 1000


def needed(rule: str, eligible: int) -> int:
    """Yes votes needed among `eligible` members."""
    if rule == "unanimous":
        return eligible
    if rule == "two_thirds":
        return -(-2 * eligible // 3)
    return eligible // 2 + 1


@dataclass(frozen=True)
class Tally:
    eligible: int
    needed: int
    yes: int
    no: int
    abstain: int

    @property
    def outstanding(self) -> int:
        return self.eligible - self.yes - self.no - self.abstain


def get_motion(session: Session, motion_id: int, *, lock: bool = False) -> Motion:
    m = session.get(Motion, motion_id, with_for_update=lock or None, populate_existing=lock)
    if m is None:
        raise NotFound("没有这项表决事项")
    return m


def scope_of_motion(session: Session, motion_id: int) -> Scope | None:
    m = session.get(Motion, motion_id)
    if m is None:
        return None
    return org.scope_of_village(session, m.village_id)


def _eligibility(session: Session, m: Motion) -> committee.Eligibility:
    if m.round_id is not None:
        return rounds.eligibility_of(session, rounds.get_round(session, m.round_id))
    return committee.eligibility(session, m.village_id)


def tally(session: Session, m: Motion, elig: committee.Eligibility | None = None) -> Tally:
    elig = elig or _eligibility(session, m)
    voters = set(elig.eligible_for(m.household_id))
    counts = {"yes": 0, "no": 0, "abstain": 0}
    for uid, vote in session.execute(select(MotionVote.user_id, MotionVote.vote).where(MotionVote.motion_id == m.id)):
        if uid in voters:
            counts[vote] += 1
    return Tally(len(voters), needed(m.vote_rule, len(voters)), counts["yes"], counts["no"], counts["abstain"])


def evidence_count(session: Session, motion_id: int) -> int:
    return int(session.execute(select(func.count()).select_from(Evidence).where(
        Evidence.motion_id == motion_id)).scalar_one())


def _has_evidence(session: Session, m: Motion) -> bool:
    return bool(m.evidence.strip()) or evidence_count(session, m.id) > 0


def _household(session: Session, village_id: int, household_id: int) -> Household:
    h = session.get(Household, household_id)
    if h is None or h.village_id != village_id:
        raise ValidationFailed("所选农户不在本村", details={"field": "household_id"})
    return h


def _may_propose(session: Session, actor: Actor, village_id: int, household_id: int) -> None:
    """Recusal covers proposing as it covers rating and voting."""
    why = committee.proposal_refused(session, village_id, actor.user_id, household_id)
    if why:
        raise ValidationFailed(why, code="recused", details={"field": "household_id"})


def propose_determination(session: Session, actor: Actor, round_id: int, *, household_id: int, code: str,
                          description: str, evidence: str = "", member_id: int | None = None,
                          member_name: str | None = None) -> Motion:
    rnd = rounds.get_round(session, round_id, lock=True)
    rounds._editable(rnd)
    ruleset = rounds.ruleset_of(session, rnd)
    det = ruleset.determination(code)
    if det is None:
        raise ValidationFailed(f"积分细则中没有认定事项“{code}”", details={"field": "code"})
    if household_id not in {e.household_id for e in rounds.roster(session, rnd)}:
        raise ValidationFailed("该户不在本月评比名单中", details={"field": "household_id"})
    _may_propose(session, actor, rnd.village_id, household_id)
    description = (description or "").strip()
    if not description:
        raise ValidationFailed("请写明认定的事实经过", details={"field": "description"})
    named = None
    if det.names_member:
        member = session.get(Member, member_id) if member_id else None
        if member is None and member_name and member_name.strip():
            member = session.execute(select(Member).where(Member.household_id == household_id,
                                                          Member.name == member_name.strip())).scalars().first()
        if member is None or member.household_id != household_id:
            raise ValidationFailed(f"“{det.name}”须指明该户的哪一位成员（填写该户成员的姓名）",
                                   details={"field": "member_name"})
        member_id, named = member.id, member.name
    m = Motion(village_id=rnd.village_id, round_id=rnd.id, kind="determination", household_id=household_id,
               code=det.code, member_id=member_id if det.names_member else None, member_name=named,
               description=description[:1000], evidence=(evidence or "").strip()[:2000], vote_rule=det.vote,
               proposed_by_id=actor.user_id, proposed_by=actor.name[:80])
    session.add(m)
    session.flush()
    audit.record(session, actor, "motion.propose", object_type="motion", object_id=m.id,
                 after={"round_id": rnd.id, "household_id": household_id, "code": det.code, "vote": det.vote})
    return m


def propose_adhoc(session: Session, actor: Actor, village_id: int, *, household_id: int, kind: str, points: int,
                  description: str, evidence: str = "") -> Motion:
    """An award (好人好事) or penalty (a violation) between rounds, for the committee to approve."""
    if kind not in ("award", "penalty"):
        raise ValidationFailed("类型只能是加分或扣分", details={"field": "kind"})
    if not 0 < points <= MAX_ADHOC_POINTS:
        raise ValidationFailed(f"分值须为 1 到 {MAX_ADHOC_POINTS} 之间的整数", details={"field": "points"})
    _household(session, village_id, household_id)
    _may_propose(session, actor, village_id, household_id)
    description = (description or "").strip()
    if not description:
        raise ValidationFailed("请写明事由（何时、何事），它会显示在该户的积分明细里", details={"field": "description"})
    m = Motion(village_id=village_id, kind=kind, household_id=household_id, points=points,
               description=description[:1000], evidence=(evidence or "").strip()[:2000],
               proposed_by_id=actor.user_id, proposed_by=actor.name[:80])
    session.add(m)
    session.flush()
    audit.record(session, actor, "motion.propose", object_type="motion", object_id=m.id,
                 after={"kind": kind, "household_id": household_id, "points": points})
    return m


def add_evidence(session: Session, actor: Actor, motion_id: int, *, file_name: str, media_type: str,
                 data: bytes) -> Evidence:
    m = get_motion(session, motion_id)
    if m.status != "proposed":
        raise Conflict(f"该事项{STATUS_LABELS[m.status]}，不能再补充证据")
    if not data:
        raise ValidationFailed("文件是空的，请重新选择")
    if len(data) > MAX_EVIDENCE_BYTES:
        raise ValidationFailed(f"文件太大：每个不超过 {MAX_EVIDENCE_BYTES // 1024 // 1024} MB（可先压缩照片）")
    # typed by its bytes, as item photos are: the browser's media_type (or the file's name) is only a claim
    found = image_or_pdf_type(data)
    if found is None or found not in EVIDENCE_TYPES:
        raise ValidationFailed("证据只能是照片（JPG、PNG、WebP）或 PDF 文件：这个文件的内容不是"
                               "（可能是改了扩展名的网页或其他文件）。请用手机拍照，或把文件另存为 PDF 后再上传")
    ev = Evidence(motion_id=m.id, file_name=visible(file_name or "证据")[:200], media_type=found, size=len(data),
                  sha256=hashlib.sha256(data).hexdigest(), data=data, uploaded_by=actor.name[:80])
    session.add(ev)
    session.flush()
    audit.record(session, actor, "motion.evidence", object_type="motion", object_id=m.id,
                 after={"file": ev.file_name, "size": ev.size, "sha256": ev.sha256})
    return ev


def evidence_list(session: Session, motion_id: int) -> list[Evidence]:
    return list(session.execute(select(Evidence).where(Evidence.motion_id == motion_id)
                                .order_by(Evidence.id)).scalars())


def get_evidence(session: Session, motion_id: int, evidence_id: int | None = None) -> Evidence:
    ev = session.get(Evidence, evidence_id) if evidence_id is not None else session.execute(
        select(Evidence).where(Evidence.motion_id == motion_id).order_by(Evidence.id).limit(1)).scalar_one_or_none()
    if ev is None or ev.motion_id != motion_id:
        raise NotFound("没有这份证据")
    return ev


def _open_for_votes(session: Session, m: Motion) -> None:
    if m.status != "proposed":
        raise Conflict(f"该事项{STATUS_LABELS[m.status]}，不能再表决")
    if m.round_id is not None:
        rounds._editable(rounds.get_round(session, m.round_id))


def _post_adhoc(session: Session, actor: Actor, m: Motion) -> None:
    month = current_month()
    memo = f"{KIND_LABELS[m.kind]}：{m.description}"
    key = f"motion:{m.id}"
    assert m.points is not None
    if m.kind == "award":
        posted = ledger.award(session, actor, household_id=m.household_id, points=m.points, memo=memo,
                              reference=f"motion:{m.id}", idempotency_key=key)
    else:
        try:
            policy = rulesets.applicable(session, m.village_id, month).ruleset.penalty_policy
        except NotFound:
            policy = "floor_at_zero"
        posted = ledger.penalize(session, actor, household_id=m.household_id, points=m.points, memo=memo,
                                 policy=policy, reference=f"motion:{m.id}", idempotency_key=key)
    m.ledger_tx_id = posted.tx.id if posted.tx else None


def vote(session: Session, actor: Actor, motion_id: int, choice: str) -> tuple[Motion, Tally]:
    """A member's vote (changeable while the motion is open). The motion is decided as soon as the outcome is
    certain; a passed ad-hoc motion is posted to the ledger in the same transaction."""
    if choice not in VOTE_CHOICES:
        raise ValidationFailed("表决只能是同意、反对或弃权")
    m = get_motion(session, motion_id, lock=True)
    _open_for_votes(session, m)
    elig = _eligibility(session, m)
    if actor.user_id is None or not elig.may_rate(actor.user_id, m.household_id):
        raise ValidationFailed(elig.why_not(actor.user_id or 0, m.household_id))
    if choice == "yes" and m.kind == "determination":
        ruleset = rounds.ruleset_of(session, rounds.get_round(session, m.round_id))
        det = ruleset.determination(m.code or "")
        if det is not None and det.evidence_required and not _has_evidence(session, m):
            raise ValidationFailed(f"“{det.name}”须有证据：请先补充文字说明或照片，再表决同意")
    if choice == "yes" and m.kind != "determination" and not _has_evidence(session, m):
        raise ValidationFailed("加分、扣分须有证据：请先补充文字说明或照片，再表决同意")
    row = session.execute(select(MotionVote).where(MotionVote.motion_id == m.id,
                                                   MotionVote.user_id == actor.user_id)).scalar_one_or_none()
    if row is None:
        row = MotionVote(motion_id=m.id, user_id=actor.user_id, vote=choice)
    else:
        row.vote, row.at = choice, utcnow()
    session.add(row)
    session.flush()
    t = tally(session, m, elig)
    decided = None
    if t.eligible and t.yes >= t.needed:
        decided = "passed"
    elif t.yes + t.outstanding < t.needed or t.eligible == 0:
        decided = "rejected"
    audit.record(session, actor, "motion.vote", object_type="motion", object_id=m.id,
                 after={"vote": choice, "yes": t.yes, "no": t.no, "abstain": t.abstain, "needed": t.needed,
                        "decided": decided})
    if decided:
        m.status, m.decided_at = decided, utcnow()
        if decided == "passed" and m.kind in ("award", "penalty"):
            _post_adhoc(session, actor, m)
        session.add(m)
        session.flush()
        audit.record(session, actor, f"motion.{decided}", object_type="motion", object_id=m.id,
                     after={"kind": m.kind, "code": m.code, "points": m.points,
                            "rule": VOTE_LABELS.get(m.vote_rule, m.vote_rule), "ledger_tx_id": m.ledger_tx_id})
    return m, t


def withdraw(session: Session, actor: Actor, motion_id: int, reason: str) -> Motion:
    m = get_motion(session, motion_id)
    _open_for_votes(session, m)
    if not (reason or "").strip():
        raise ValidationFailed("请写明撤回原因")
    m.status, m.decided_at = "withdrawn", utcnow()
    session.add(m)
    session.flush()
    audit.record(session, actor, "motion.withdraw", object_type="motion", object_id=m.id, note=reason.strip()[:300])
    return m


def motions_of_round(session: Session, round_id: int) -> list[Motion]:
    return list(session.execute(select(Motion).where(Motion.round_id == round_id).order_by(Motion.id)).scalars())


def adhoc_of_village(session: Session, village_id: int, limit: int = 100) -> list[Motion]:
    return list(session.execute(select(Motion).where(Motion.village_id == village_id, Motion.round_id.is_(None))
                                .order_by(Motion.id.desc()).limit(limit)).scalars())


def votes_of(session: Session, motion_id: int) -> dict[int, str]:
    return dict(session.execute(select(MotionVote.user_id, MotionVote.vote).where(
        MotionVote.motion_id == motion_id)).tuples().all())
