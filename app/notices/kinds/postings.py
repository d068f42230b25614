"""What the 红榜 and 黑榜 notices share: the month's postings of one list as the village shows them, each with its
reason in plain words and its period. A month's list is printed once its round is finalised (the postings take
effect then); an empty list is printed as such (本月没有上黑榜的农户 is news too).

Only what the list shows that month is printed (`lists.shown_now`): a posting in effect and within its period. A
posting the committee lifted (教育转化), one an objection voided, one expired (stored or past its period) and one whose
personal details were erased after the retention period never appear, whatever month is asked for. Names follow the
village's masking policy, the household head's and a named member's (不孝儿女, 好婆婆好媳妇) alike."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from app import rules
from app.core.masking import mask_name
from app.errors import Conflict
from app.evaluation.service import rounds
from app.lists import service as lists
from app.notices.kinds.common import Gathered, heads, sort_key
from app.notices.service.render import month_label
from app.org.models import Village

WAY_OFF = ("上黑榜的农户按与村评比委员会商定的措施整改（教育转化），经委员会回访核实、到会委员过半数同意，可提前移出黑榜；"
           "公示期满即不再公示。")
RED_NOTE = "红榜表彰本村在月度评比和委员会认定中表现突出的农户，向他们学习。"
_TOTAL = re.compile(r"本月总分\s*(-?\d+)\s*分")
_PLACE = re.compile(r"排第\s*(\d+)\s*名")
_RUN = re.compile(r"连续\s*(\d+)\s*个月评为\s*([^（(，,\s]+)")


def period_text(p: Any) -> str:
    """2026年9月 (one month) or 2026年9月至2026年11月."""
    if p.from_month == p.to_month:
        return month_label(p.from_month)
    return f"{month_label(p.from_month)}至{month_label(p.to_month)}"


def plain_reason(p: Any, ruleset: rules.Ruleset | None) -> str:
    """Why the household is on the list, in words a villager reads at the notice board (not the rule's trace): a
    determination's description as the ruleset words it, the month's total and place for the red policy, the theme
    graded lowest month after month for the black policy."""
    month = month_label(p.from_month)
    if p.source == "red_policy":
        total, place = _TOTAL.search(p.explanation or ""), _PLACE.search(p.explanation or "")
        words = f"{month}评比总分 {total.group(1)} 分" if total else f"{month}评比成绩优秀"
        return words + (f"，在本村参评农户中排第 {place.group(1)} 名" if place else "，居本村前列")
    if p.source == "black_policy":
        theme = ruleset.theme(p.theme) if ruleset and p.theme else None
        name = theme.name if theme else "同一评比项目"
        run = _RUN.search(p.explanation or "")
        return f"{name}连续 {run.group(1)} 个月评为“{run.group(2)}”" if run else f"{name}连续多月评为最低等级"
    det = ruleset.determination(p.code) if ruleset else None
    if det is not None and det.description:
        return f"经村评比委员会认定：{det.description}"
    return "经村评比委员会认定"


def gather_list(session: Session, village: Village, period: int, list_: str, *, masking: str) -> Gathered:
    """The list as it stands once the month's round is finalised (its postings take effect then); before, the month's
    list is not known yet and nothing is printed."""
    assert village.id is not None
    month = period
    label = lists.LIST_LABELS[list_]
    rnd = rounds.round_of_month(session, village.id, month)
    if rnd is None or rnd.status != "finalised":
        state = "还没有开始" if rnd is None else f"还没有公示期满入账（目前：{rounds.STATUS_LABELS[rnd.status]}）"
        raise Conflict(f"{month // 100}年{month % 100}月的评比{state}，{label}要等入账后才能生成",
                       code="round_not_final")
    shown = [p for p in lists.shown_now(session, village.id, month)
             if p.list == list_ and p.household_id is not None and p.erased_at is None and lists.is_shown(p, month)]
    names = heads(session, [p.household_id for p in shown if p.household_id is not None], masking)
    rulesets: dict[int, rules.Ruleset | None] = {}
    rows = []
    for p in shown:
        if p.round_id is not None and p.round_id not in rulesets:
            rulesets[p.round_id] = rounds.ruleset_of(session, rounds.get_round(session, p.round_id))
        ruleset = rulesets.get(p.round_id) if p.round_id is not None else None
        number, name = names.get(p.household_id, ("", ""))
        rows.append({"number": number, "name": name,
                     "member": mask_name(p.member_name, masking) if p.member_name else "",
                     "reason": p.reason, "why": plain_reason(p, ruleset), "period": period_text(p),
                     "from_month": p.from_month, "to_month": p.to_month})
    rows.sort(key=lambda r: (sort_key(str(r["number"])), r["from_month"], r["reason"]))
    content = {
        "month": month, "list": list_, "list_label": label, "rows": rows,
        "totals": {"households": len({r["number"] for r in rows}), "postings": len(rows)},
        "way_off": WAY_OFF if list_ == "black" else "", "note": RED_NOTE if list_ == "red" else "",
    }
    return Gathered(f"{village.name}{month // 100}年{month % 100}月{label}", content, rnd.id)
