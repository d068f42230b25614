"""Downloads of the points ledger: a household's whole statement as .xlsx."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.clock import format_local, to_local, utcnow
from app.core.scope import EVERYTHING
from app.core.spreadsheet import xlsx_bytes
from app.households.service import households as hh
from app.ledger import service as ledger
from app.org import service as org

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ["序号", "时间", "类型", "摘要（原因）", "积分变动", "变动后余额", "经办人", "交易号", "来源"]


def statement_file(session: Session, household_id: int) -> tuple[bytes, str, str]:
    """(content, file name, media type): every line of the household's statement, oldest first, with the running
    balance; the same lines the statement page shows."""
    h = hh.get_household(session, household_id)
    village = org.get_village(session, EVERYTHING, h.village_id)
    st = ledger.statement_all(session, household_id)
    rows = [[ln.seq, format_local(ln.occurred_at), ln.kind_label, ln.memo, ln.amount, ln.balance_after,
             ln.actor_name, ln.transaction_id, ln.reference or ""] for ln in st.lines]
    rows.append(["", "", "", f"当前余额（导出于 {format_local(utcnow())}）", "", st.balance, "", "", ""])
    stamp = (to_local(utcnow()) or utcnow()).strftime("%Y%m%d")
    data = xlsx_bytes("积分明细", HEADER, rows, widths=[6, 17, 8, 48, 10, 11, 12, 8, 16])
    return data, f"{village.name}{h.number}号{h.head_name}户积分明细{stamp}.xlsx", XLSX
