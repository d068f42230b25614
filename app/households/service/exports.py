"""Building roster downloads (template, filtered export) from the registry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.context import Actor
from app.core.scope import ScopeFilter
from app.households.models import Member
from app.households.service import households as hh
from app.households.service import roster
from app.households.service.privacy import show_member
from app.org import service as org
from app.org.models import Village

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"


def template_file(session: Session, village_id: int) -> tuple[bytes, str, str]:
    """(content, file name, media type) of the village's roster template."""
    v = session.get(Village, village_id)
    groups = [g.name for g in org.list_groups(session, village_id, include_inactive=False)]
    data = roster.template_xlsx(v.name if v else "", groups)
    return data, f"{v.name if v else ''}花名册模板.xlsx", XLSX


def roster_rows(session: Session, flt: ScopeFilter, *, village_id: int, full: bool, q: str | None = None,
                group_id: int | None = None, status: str | None = None) -> list[list[Any]]:
    """One row per present member, in the template's column order (so an export can be edited and re-imported).
    Without `full`, the members as the limited view shows them (privacy.py): birth year, ID number's last two."""
    res = hh.search(session, flt, q=q, village_id=village_id, group_id=group_id, status=status, offset=0,
                    limit=1_000_000)
    groups = {g.id: g for g in org.list_groups(session, village_id)}
    ids = [h.id for h in res.rows]
    members: dict[int, list[Member]] = {}
    for i in range(0, len(ids), 900):
        for m in session.execute(select(Member).where(Member.household_id.in_(ids[i:i + 900]),
                                                      Member.status == "present")).scalars():
            members.setdefault(m.household_id, []).append(m)
    out: list[list[Any]] = []
    yes_no = {True: "是", False: "否"}
    for h in res.rows:
        ms = sorted(members.get(h.id, []), key=lambda m: (m.relation != "户主", m.birth_date or date.max))
        for m in ms:
            g = groups.get(h.group_id) if h.group_id else None
            v = show_member(m, full=full)
            out.append([h.number, g.name if g else "", v.name, v.relation, v.gender or "", v.birth_text,
                        v.id_number or "", v.phone or "", yes_no[v.party_member],
                        yes_no[v.living_away], h.address or "" if m.relation == "户主" else "",
                        (h.notes or "") if (full and m.relation == "户主") else ""])
    return out


def record_export(session: Session, actor: Actor, *, village_id: int, fmt: str, rows: int, q: str | None = None,
                  group_id: int | None = None, status: str | None = None) -> None:
    """A full roster export in the audit log: who, which village, which filter, how many rows. Whether a search was
    used, never its text (it can be an ID number)."""
    audit.record(session, actor, "households.export", object_type="village", object_id=village_id,
                 after={"format": fmt, "rows": rows, "q": bool(q), "group_id": group_id, "status": status})


def export_file(session: Session, flt: ScopeFilter, *, village_id: int, fmt: str, full: bool,
                q: str | None = None, group_id: int | None = None, status: str | None = None,
                on_full: Callable[[int], None] | None = None) -> tuple[bytes, str, str]:
    """(content, file name, media type) of the filtered roster as .xlsx or .csv. A full export (unmasked ID numbers
    and phones) calls `on_full` with the rows exported: the caller audits it with `record_export` (ASVS 8.3.5), in
    a write transaction (the export itself is read in a read-only one)."""
    v = session.get(Village, village_id)
    rows = roster_rows(session, flt, village_id=village_id, full=full, q=q, group_id=group_id, status=status)
    if full and on_full is not None:
        on_full(len(rows))
    stamp = date.today().strftime("%Y%m%d")
    name = f"{v.name if v else ''}花名册{stamp}"
    if fmt == "csv":
        return roster.export_rows_csv(rows), name + ".csv", CSV
    return roster.export_rows_xlsx(rows), name + ".xlsx", XLSX
