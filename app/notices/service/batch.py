"""A township's notices for a month, printed in one go: every active village's notices of the chosen kinds (the
current registered notice of each, or a new one drafted and registered when there is none), as one PDF or as a zip
of one PDF per village. Built in a background thread, one village at a time, each step in its own short
transaction, its progress on the batch row so that any worker can show it; a village whose round is not public yet
is left out with the reason."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
import zipfile
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.scope import Scope
from app.db import Database
from app.errors import AppError, ValidationFailed, get_or_not_found
from app.notices import kinds
from app.notices.models import NoticeBatch
from app.notices.service import notices, render
from app.org.models import Township, Village

log = logging.getLogger("zhenfeng.notices")
MONTHLY = ("results", "red", "black", "finance")  # what a month's notice board holds, when those kinds exist
FORMS = {"pdf": "一个 PDF（按村顺序）", "zip": "压缩包（每村一个 PDF）"}
STALLED = timedelta(minutes=30)  # a batch not finished by then was cut off (the worker stopped)


def batch_kinds() -> list[str]:
    return [k for k in MONTHLY if k in kinds.KINDS]


def start(session: Session, actor: Actor, township_id: int, month: int, form: str) -> NoticeBatch:
    """Record a batch to build (the caller starts `build` once this is committed)."""
    if form not in FORMS:
        raise ValidationFailed("请选择输出方式：一个 PDF，或每村一个 PDF 的压缩包", details={"field": "form"})
    if not (200001 <= month <= 210012 and 1 <= month % 100 <= 12):
        raise ValidationFailed("月份格式不对，应为 202610", details={"field": "month"})
    if render.missing_parts():
        raise ValidationFailed(render.install_hint(), code="pdf_unavailable")
    get_or_not_found(session, Township, township_id, "没有这个乡镇")
    villages = _villages(session, township_id)
    b = NoticeBatch(township_id=township_id, month=month, form=form, total=len(villages), created_by=actor.name[:80])
    session.add(b)
    session.flush()
    audit.record(session, actor, "notices.batch", object_type="notice_batch", object_id=b.id,
                 after={"township_id": township_id, "month": month, "form": form, "villages": len(villages)})
    return b


def _villages(session: Session, township_id: int) -> list[Village]:
    return list(session.execute(select(Village).where(Village.township_id == township_id, Village.active.is_(True))
                                .order_by(Village.code)).scalars())


def get_batch(session: Session, batch_id: int) -> NoticeBatch:
    b = get_or_not_found(session, NoticeBatch, batch_id, "没有这个批量打印任务")
    return b


def scope_of_batch(session: Session, batch_id: int) -> Scope | None:
    township_id = session.execute(select(NoticeBatch.township_id).where(NoticeBatch.id == batch_id)).scalar()
    return Scope(township_id=township_id) if township_id is not None else None


def stalled(b: NoticeBatch) -> bool:
    return b.status in ("queued", "running") and utcnow() - b.created_at > STALLED


def recent(session: Session, township_id: int, limit: int = 10) -> list[NoticeBatch]:
    return list(session.execute(select(NoticeBatch).where(NoticeBatch.township_id == township_id)
                                .order_by(NoticeBatch.id.desc()).limit(limit)).scalars())


class _OneSession:
    """A Database's two transaction makers over one open session (the demo builds a batch inside its own
    transaction)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def read_txn(self) -> contextlib.nullcontext[Session]:
        return contextlib.nullcontext(self.session)

    write_txn = read_txn


def build_here(session: Session, actor: Actor, batch_id: int, verify_base: str, *, key: bytes) -> None:
    """Build the batch now, in the caller's transaction (the demo)."""
    _build(_OneSession(session), actor, batch_id, verify_base, key=key)


def build(db: Database, actor: Actor, batch_id: int, verify_base: str, *, key: bytes) -> None:
    """Build the batch (in the background): per village, each kind's current notice (drafted and registered when
    missing), laid out, then all of them into one PDF or a zip. Failures end the batch with the reason."""
    try:
        _build(db, actor, batch_id, verify_base, key=key)
    except Exception as exc:  # the batch says what went wrong; the log has the rest
        log.exception("notice batch %s failed", batch_id)
        with db.write_txn() as s:
            b = get_batch(s, batch_id)
            b.status, b.error, b.finished_at = "failed", f"生成失败：{exc}"[:500], utcnow()


def _build(db: Database, actor: Actor, batch_id: int, verify_base: str, *, key: bytes) -> None:
    for _ in range(100):  # the request that recorded the batch commits as its response goes out
        with db.read_txn() as s:
            if s.get(NoticeBatch, batch_id) is not None:
                break
        time.sleep(0.1)
    with db.write_txn() as s:
        b = get_batch(s, batch_id)
        b.status = "running"
        township_id, month, form = b.township_id, b.month, b.form
        villages = [(v.id, v.name, v.code) for v in _villages(s, township_id)]
    skipped: list[str] = []
    per_village: list[tuple[str, bytes]] = []  # (file name, the village's notices as one PDF)
    for done, (vid, name, code) in enumerate(villages, start=1):
        pdfs, missed = _month_pdfs(db, actor, vid, month, verify_base, key=key)
        skipped.extend(f"{name}·{why}" for why in missed)
        if pdfs:
            per_village.append((f"{code}-{name}", render.merge_pdfs(pdfs)))
        with db.write_txn() as s:
            get_batch(s, batch_id).done = done
    label = render.month_label(month)
    if form == "pdf":
        data = render.merge_pdfs([pdf for _, pdf in per_village])
        file_name = f"{label}公示（全乡镇）.pdf"
    else:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:  # PDFs are compressed already
            for name, pdf in per_village:
                z.writestr(f"{name}-{label}公示.pdf", pdf)
        data = buf.getvalue()
        file_name = f"{label}公示（每村一个文件）.zip"
    with db.write_txn() as s:
        b = get_batch(s, batch_id)
        b.status, b.data, b.file_name, b.finished_at = "done", data, file_name, utcnow()
        b.error = ("；".join(skipped))[:500] or None


def _pdf(db: Database, actor: Actor, kind: str, village_id: int, period: int, verify_base: str, *,
         key: bytes) -> bytes | AppError:
    """The kind's current notice for the village as PDF, drafting and registering one when there is none."""
    with db.read_txn() as s:
        n = notices.current(s, kind, village_id, period)
        if n is not None:
            page = notices.page_of(n, for_pdf=True)
        else:
            try:
                d = notices.draft(s, actor, kind, village_id, period, verify_base=verify_base)
            except AppError as e:
                return e
    if n is not None:
        return render.pdf(page)
    pdf = notices.render_pdf(d)  # outside any transaction: rendering takes a while
    with db.write_txn() as s:
        notices.register(s, actor, d, pdf, key=key)
    return pdf


def _month_pdfs(db: Database, actor: Actor, village_id: int, month: int,
                verify_base: str, *, key: bytes) -> tuple[list[bytes], list[str]]:
    """A village's monthly kinds as PDFs, and what was left out with the reason."""
    pdfs: list[bytes] = []
    missed: list[str] = []
    for kind in batch_kinds():
        period = month if kinds.KINDS[kind].period == "month" else month // 100 * 100
        got = _pdf(db, actor, kind, village_id, period, verify_base, key=key)
        if isinstance(got, bytes):
            pdfs.append(got)
        else:
            missed.append(f"{kinds.KINDS[kind].label}：{got.message}")
    return pdfs, missed


def village_month(session: Session, actor: Actor, village_id: int, month: int,
                  verify_base: str, *, key: bytes) -> tuple[bytes, str, list[str]]:
    """A village's notices of a month as one PDF, for the clerk to print in one go: each monthly kind's current
    notice, or a new one registered (in the caller's transaction). Returns (PDF, file name, what was left out and
    why); refuses when nothing can be printed yet."""
    village = get_or_not_found(session, Village, village_id, "没有这个村")
    pdfs, missed = _month_pdfs(_OneSession(session), actor, village_id, month, verify_base, key=key)
    if not pdfs:
        raise ValidationFailed("本月还没有可以张贴的公示：" + "；".join(missed), code="nothing_to_print")
    return render.merge_pdfs(pdfs), f"{village.name}{render.month_label(month)}公示.pdf", missed


def launch(db: Database, actor: Actor, batch_id: int, verify_base: str, *, key: bytes) -> threading.Thread:
    """Build the batch in a thread of this worker; the page polls the batch row for its progress."""
    t = threading.Thread(target=build, args=(db, actor, batch_id, verify_base), kwargs={"key": key},
                         name=f"notice-batch-{batch_id}",
                         daemon=True)
    t.start()
    return t


def progress(b: NoticeBatch) -> dict[str, Any]:
    return {"status": "stalled" if stalled(b) else b.status, "done": b.done, "total": b.total,
            "pct": round(100 * b.done / b.total) if b.total else 100}
