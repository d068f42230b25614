"""月度评比结果公示: a round's results per household (each theme's points, other points, the total, the lists),
the objection window with its closing date and how to object, the committee members who rated, and the ruleset
version. Only a round the township has approved can be posted: publicised (objections open) or finalised."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.month import month_label
from app.errors import Conflict
from app.evaluation.service import rounds
from app.notices.kinds.common import Gathered, heads, sort_key
from app.org.models import Village

HOW_TO_OBJECT = ("对评比结果有异议的，请在异议截止日前向村评比委员会提出（可书面，也可口头由村文书登记），"
                 "或用本户账号在手机上提出；委员会将在公示期内答复。")
LIST_NAMES = {"red": "红榜", "black": "黑榜"}


def gather(session: Session, village: Village, period: int, *, masking: str, **_: object) -> Gathered:
    rnd = rounds.round_of_month(session, village.id, period)
    if rnd is None or rnd.status not in ("publicised", "finalised"):
        state = "还没有开始" if rnd is None else "还没有经乡镇审核并开始公示"
        raise Conflict(f"{month_label(period)}的评比{state}，不能生成结果公示", code="round_not_public")
    ruleset = rounds.ruleset_of(session, rnd)
    themes = [(t.code, t.name) for t in ruleset.themes]
    views = rounds.views(session, rnd)
    names = heads(session, list(views), masking)
    rows = []
    issued = deducted = red = black = 0
    for hid, v in views.items():
        by_theme = dict.fromkeys((c for c, _ in themes), 0)
        other = 0
        for ln in v.lines:
            pts = int(ln.get("points", 0))
            if ln.get("kind") == "theme" and ln.get("code") in by_theme:
                by_theme[ln["code"]] += pts
            else:
                other += pts
            issued += max(pts, 0)
            deducted += max(-pts, 0)
        lists = sorted({LIST_NAMES[p["list"]] for p in v.postings if p.get("list") in LIST_NAMES})
        red += "红榜" in lists
        black += "黑榜" in lists
        number, name = names.get(hid, ("", ""))
        rows.append({"number": number, "name": name, "themes": [by_theme[c] for c, _ in themes], "other": other,
                     "total": v.total, "lists": lists, "note": "" if v.lines else (v.note or "未参评")})
    rows.sort(key=lambda r: sort_key(str(r["number"])))
    members = (rnd.eligibility or {}).get("members", {})
    content = {
        "month": period, "status": "已入账" if rnd.status == "finalised" else "公示中",
        "ruleset": f"{rnd.ruleset_code} 第{rnd.ruleset_version}版（{ruleset.name}）",
        "objections_close_on": rnd.objections_close_on.isoformat() if rnd.objections_close_on else "",
        "how_to_object": HOW_TO_OBJECT, "mode": "各委员分别评分，取中位数" if rnd.mode == "panel" else "委员会合议评定",
        "committee": sorted(str(n) for n in members.values()),
        "themes": [name for _c, name in themes], "rows": rows,
        "totals": {"households": len(rows), "issued": issued, "deducted": deducted, "red": red, "black": black},
    }
    title = f"{village.name}{month_label(period)}评比结果公示"
    return Gathered(title, content, rnd.id)
