"""评比审核记录: a round's record for the township's file: every step of the round (opened, submitted, approved or
returned with the reviewer's comment, publicised, finalised) with who and when, the objections filed and how the
committee resolved each, and the round's totals.

Of households it names only the objecting ones, by number and masked head name. An objection's own text is the
villager's words and may name or describe people: it is not printed, only what it was against. The comments and the
committee's reasons are staff's words, printed with any long run of digits (a phone or an ID number typed into them)
blotted out."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app import rules
from app.core.clock import format_local
from app.core.month import month_label
from app.errors import Conflict
from app.evaluation.models import Motion, Objection
from app.evaluation.service import objections, rounds
from app.notices.kinds.common import Gathered, heads, scrub
from app.org.models import Village

ACTIONS = {("draft", "draft"): "开始评比", ("draft", "submitted"): "提交乡镇审核", ("returned", "submitted"): "修改后重新提交",
           ("submitted", "approved"): "乡镇审核通过", ("submitted", "returned"): "乡镇退回修改",
           ("approved", "publicised"): "开始公示", ("publicised", "finalised"): "公示期满，积分入账"}


def _target(session: Session, o: Objection, ruleset: rules.Ruleset) -> str:
    """What the objection was against, in words: 评分·环保卫生, 认定·不诚信户, 红黑榜·红榜."""
    label = objections.TARGET_LABELS.get(o.target, o.target)
    what = ""
    if o.target == "rating" and o.theme:
        theme = ruleset.theme(o.theme)
        what = theme.name if theme else o.theme
    elif o.target == "determination" and o.motion_id:
        m = session.get(Motion, o.motion_id)
        det = ruleset.determination(m.code) if m is not None and m.code else None
        what = det.name if det else ""
    elif o.target == "posting" and o.posting_code:
        det = ruleset.determination(o.posting_code)
        what = det.name if det else ("月度评比红榜" if o.posting_code == "red_policy" else "")
    return f"{label}·{what}" if what else label


def gather(session: Session, village: Village, period: int, *, masking: str, **_: object) -> Gathered:
    assert village.id is not None
    rnd = rounds.round_of_month(session, village.id, period)
    if rnd is None or rnd.status == "draft":
        state = "还没有开始" if rnd is None else "还没有提交乡镇审核"
        raise Conflict(f"{month_label(period)}的评比{state}，没有审核记录", code="round_not_submitted")
    assert rnd.id is not None
    ruleset = rounds.ruleset_of(session, rnd)
    events = [{"at": format_local(e.at), "action": ACTIONS.get((e.from_status, e.to_status),
                                                           rounds.STATUS_LABELS.get(e.to_status, e.to_status)),
               "by": e.actor_name, "comment": scrub(e.comment or "")}
              for e in rounds.events(session, rnd.id)]
    filed = objections.objections_of_round(session, rnd.id)
    names = heads(session, [o.household_id for o in filed], masking)
    rows = []
    for o in filed:
        number, name = names.get(o.household_id, ("", ""))
        rows.append({"filed": format_local(o.created_at, "%Y-%m-%d"), "number": number, "name": name,
                     "target": _target(session, o, ruleset), "how": "书面或口头，文书登记" if o.on_paper else "本户在线提出",
                     "status": objections.STATUS_LABELS.get(o.status, o.status),
                     "resolution": scrub(o.resolution or ""), "resolved_by": o.resolved_by or "",
                     "resolved": format_local(o.resolved_at, "%Y-%m-%d") if o.resolved_at else "",
                     "after": o.after_finalisation, "delta": o.delta})
    views = rounds.views(session, rnd)
    t = rounds.stored_totals(views.values())
    members = (rnd.eligibility or {}).get("members", {})
    content = {
        "month": period, "status": rounds.STATUS_LABELS.get(rnd.status, rnd.status),
        "ruleset": f"{rnd.ruleset_code} 第{rnd.ruleset_version}版（{ruleset.name}）",
        "mode": rounds.MODE_LABELS.get(rnd.mode, rnd.mode), "committee": sorted(str(n) for n in members.values()),
        "opened": format_local(rnd.created_at), "opened_by": rnd.created_by,
        "objections_close_on": rnd.objections_close_on.isoformat() if rnd.objections_close_on else "",
        "events": events, "objections": rows,
        "totals": {"households": t.households_eligible, "rated": sum(1 for v in views.values() if v.lines),
                   "issued": t.points_issued, "deducted": t.points_deducted, "red": t.red_households,
                   "black": t.black_households, "objections": len(rows),
                   "upheld": sum(1 for o in filed if o.status == "upheld"),
                   "rejected": sum(1 for o in filed if o.status == "rejected"),
                   "open": sum(1 for o in filed if o.status == "open")},
        "final": rnd.status == "finalised",
    }
    return Gathered(f"{village.name}{month_label(period)}评比审核记录", content, rnd.id)
