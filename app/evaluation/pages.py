"""Pages of the monthly evaluation: a village's rounds and committee, a round's page (progress, determinations and
votes, objections, transitions), the rating grid, the Excel sheet, results (the village's and one household's,
explained), the township's review, simulation of a draft ruleset, ad-hoc awards, and a household's own results with
its objection form.

Every form posts plainly (htmx only helps); a rejected form shows the round page again with the reason, and the
request's transaction is rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as PostedFile

from app import rules
from app.auth.deps import authorize, register_scope_resolver
from app.auth.models import Role
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.committee import service as committee
from app.core.month import current_month, prev_month
from app.core.pinyin import initials
from app.core.scope import EVERYTHING, Scope
from app.deps import DbSession, PostedForm, RawBody, end_reads, read_only_session, write_txn
from app.errors import AppError, FormRejected, NotFound, ValidationFailed, form_errors
from app.evaluation.service import motions, objections, rounds, sheets, signals
from app.households.service import households as hh
from app.org import service as org
from app.rules.schema import LIST_LABELS
from app.rulesets import service as rulesets
from app.web.templates import download, redirect, render

router = APIRouter(include_in_schema=False)
register_scope_resolver("round_id", rounds.scope_of_round)
register_scope_resolver("motion_id", motions.scope_of_motion)
register_scope_resolver("objection_id", objections.scope_of_objection)

View = Depends(authorize(Perm.EVAL_VIEW))
Rate = Depends(authorize(Perm.EVAL_RATE))
Manage = Depends(authorize(Perm.EVAL_MANAGE))
Review = Depends(authorize(Perm.EVAL_REVIEW))
Object = Depends(authorize(Perm.OBJECTION_FILE))
Text = Annotated[str, Form(max_length=2000)]
Short = Annotated[str, Form(max_length=100)]
LABELS = {"status_labels": rounds.STATUS_LABELS, "mode_labels": rounds.MODE_LABELS, "list_labels": LIST_LABELS,
          "motion_labels": motions.STATUS_LABELS, "kind_labels": motions.KIND_LABELS,
          "vote_choices": motions.VOTE_CHOICES, "objection_labels": objections.STATUS_LABELS,
          "target_labels": objections.TARGET_LABELS, "month_label": rulesets.month_label}


def _int(value: str, label: str) -> int:
    try:
        return int(value.strip())
    except (ValueError, AttributeError):
        raise ValidationFailed(f"请填写{label}（整数）") from None


def _opt_int(value: str) -> int | None:
    """A blank or an id (ASCII digits, in range), else a clear error."""
    value = (value or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**31:
        raise ValidationFailed(f"“{value[:20]}”不是有效的编号，请从列表中选择")
    return int(value)


def _covers(p: Principal, perm: Perm, scope: Scope | None) -> bool:
    return scope is not None and p.covers(perm, scope)


# ---- the county's / township's / village's overview ----------------------------------------------------------------

@router.get("/evaluation")
def index(request: Request, session: DbSession, p: Principal = View) -> Response:
    flt = p.filter(Perm.EVAL_VIEW)
    villages = org.list_villages(session, flt, include_inactive=False) if not flt.household_ids or flt.everything \
        or flt.village_ids or flt.township_ids else []
    if not villages and flt.household_ids:
        return redirect(f"/households/{min(flt.household_ids)}/evaluation")
    latest = rounds.latest_by_village(session, [v.id for v in villages if v.id is not None])
    return render(request, "evaluation/index.html", {"villages": villages, "latest": latest,
                                                     "this_month": current_month(), **LABELS})


def _village_rounds_ctx(session: DbSession, p: Principal, village_id: int, **extra: Any) -> dict[str, Any]:
    village = org.get_village(session, EVERYTHING, village_id)
    scope = org.scope_of_village(session, village_id)
    return {"village": village, "rounds": rounds.rounds_of_village(session, village_id),
            "can_manage": _covers(p, Perm.EVAL_MANAGE, scope), "default_month": prev_month(current_month()),
            "nav_active": "/evaluation", **LABELS, **extra}


@router.get("/villages/{village_id}/rounds")
def village_rounds(request: Request, session: DbSession, village_id: int, p: Principal = View) -> Response:
    return render(request, "evaluation/village_rounds.html", _village_rounds_ctx(session, p, village_id))


@router.post("/villages/{village_id}/rounds")
def open_round(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
               month: Short = "", mode: Short = "consensus", objection_days: Short = "5") -> Response:
    with form_errors("evaluation/village_rounds.html", lambda s: _village_rounds_ctx(
            s, p, village_id, form={"month": month, "mode": mode, "objection_days": objection_days})):
        m = month.replace("-", "").strip()
        rnd = rounds.open_round(session, p.actor(), village_id=village_id, month=_int(m, "月份，例如 202610"),
                                mode=mode, objection_days=_int(objection_days, "公示天数"))
    return redirect(f"/rounds/{rnd.id}", request, f"已开始{rulesets.month_label(rnd.month)}评比")


# ---- the committee -------------------------------------------------------------------------------------------------

def _committee_ctx(session: DbSession, p: Principal, village_id: int, **extra: Any) -> dict[str, Any]:
    village = org.get_village(session, EVERYTHING, village_id)
    scope = org.scope_of_village(session, village_id)
    return {"village": village, "members": committee.members(session, village_id),
            "can_manage": _covers(p, Perm.EVAL_MANAGE, scope), "me": p.user_id, "nav_active": "/evaluation",
            **LABELS, **extra}


@router.get("/villages/{village_id}/committee")
def committee_page(request: Request, session: DbSession, village_id: int, p: Principal = View) -> Response:
    return render(request, "evaluation/committee.html", _committee_ctx(session, p, village_id))


def _committee_form(p: Principal, village_id: int) -> AbstractContextManager[None]:
    return form_errors("evaluation/committee.html", lambda s: _committee_ctx(s, p, village_id))


@router.post("/villages/{village_id}/committee/link")
def committee_link(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                   user_id: Short = "", household_number: Short = "", title: Short = "委员") -> Response:
    with _committee_form(p, village_id):
        h = hh.find_by_number(session, village_id, household_number)
        committee.link(session, p.actor(), village_id, user_id=_int(user_id, "委员"), household_id=h.id,
                       title=title)
    return redirect(f"/villages/{village_id}/committee", request, "已关联委员本人农户")


@router.post("/villages/{village_id}/committee/recusals")
def committee_recuse(request: Request, session: DbSession, village_id: int, p: Principal = Rate,
                     user_id: Short = "", household_number: Short = "", reason: Short = "") -> Response:
    """A member declares for himself or herself; the clerk may record it for any member."""
    with _committee_form(p, village_id):
        scope = org.scope_of_village(session, village_id)
        who = _int(user_id, "委员") if user_id and _covers(p, Perm.EVAL_MANAGE, scope) else p.user_id
        h = hh.find_by_number(session, village_id, household_number)
        committee.declare_recusal(session, p.actor(), village_id, user_id=who, household_id=h.id,
                                  reason=reason)
    return redirect(f"/villages/{village_id}/committee", request, "已登记回避")


@router.post("/villages/{village_id}/committee/withdraw")
def committee_withdraw(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                       recusal_id: Short = "") -> Response:
    with _committee_form(p, village_id):
        committee.withdraw_recusal(session, p.actor(), village_id, _int(recusal_id, "回避声明"))
    return redirect(f"/villages/{village_id}/committee", request, "已撤销回避声明")


# ---- a round -------------------------------------------------------------------------------------------------------

def _round_ctx(session: DbSession, p: Principal, round_id: int, **extra: Any) -> dict[str, Any]:
    rnd = rounds.get_round(session, round_id)
    scope = rounds.scope_of_round(session, round_id)
    ruleset = rounds.ruleset_of(session, rnd)
    result = rounds.compute(session, rnd, ruleset=ruleset) if rnd.status != "finalised" else None
    progress = rounds.progress(session, rnd, result) if result is not None else None
    entries = rounds.roster(session, rnd)
    label = {e.household_id: f"{e.number} {e.head_name}" for e in entries}
    elig = rounds.eligibility_of(session, rnd)
    motion_rows = []
    for m in motions.motions_of_round(session, round_id):
        det = ruleset.determination(m.code or "")
        motion_rows.append({"m": m, "det": det, "tally": motions.tally(session, m, elig),
                            "votes": motions.votes_of(session, m.id),
                            "evidence": motions.evidence_list(session, m.id)})
    return {"rnd": rnd, "village": org.get_village(session, EVERYTHING, rnd.village_id), "ruleset": ruleset,
            "progress": progress, "roster": entries, "labels": label, "events": rounds.events(session, round_id),
            "motions": motion_rows, "objections": objections.objections_of_round(session, round_id),
            "members": elig.members, "present": set(rnd.present_member_ids or []),
            "can_rate": _covers(p, Perm.EVAL_RATE, scope), "can_manage": _covers(p, Perm.EVAL_MANAGE, scope),
            "can_review": _covers(p, Perm.EVAL_REVIEW, scope), "editable": rnd.status in rounds.EDITABLE,
            "objections_open": objections.open_for_objections(rnd), "me": p.user_id,
            "joined": [e for e in entries if e.note], "nav_active": "/evaluation", **LABELS, **extra}


def _rejected(e: AppError, p: Principal, round_id: int) -> FormRejected:
    return FormRejected(e, "evaluation/round.html", lambda s: _round_ctx(s, p, round_id))


def _round_form(p: Principal, round_id: int) -> AbstractContextManager[None]:
    return form_errors("evaluation/round.html", lambda s: _round_ctx(s, p, round_id))


@router.get("/rounds/{round_id}")
def round_page(request: Request, session: DbSession, round_id: int, p: Principal = View) -> Response:
    return render(request, "evaluation/round.html", _round_ctx(session, p, round_id))


@router.post("/rounds/{round_id}/present")
def round_present(request: Request, session: DbSession, form: PostedForm, round_id: int,
                  p: Principal = Manage) -> Response:
    with _round_form(p, round_id):
        ids = [_int(str(v), "委员") for v in form.getlist("member")]
        rounds.set_present(session, p.actor(), round_id, ids)
    return redirect(f"/rounds/{round_id}", request, f"已记录出席委员 {len(ids)} 人")


STATE_ACTIONS: dict[str, Callable[..., Any]] = {"submit": rounds.submit, "publicise": rounds.publicise,
                                                 "finalise": rounds.finalise}


@router.post("/rounds/{round_id}/state")
def round_state(request: Request, session: DbSession, round_id: int, p: Principal = Manage,
                action: Short = "") -> Response:
    with _round_form(p, round_id):
        if action not in STATE_ACTIONS:
            raise ValidationFailed("未知的操作")
        done = STATE_ACTIONS[action](session, p.actor(), round_id)
    message = f"{rounds.TRANSITIONS[action][2]}：已完成"
    if isinstance(done, rounds.Finalised):
        message = (f"已入账：{done.transactions} 户积分，发放 {done.points_issued} 分、扣减 {done.points_deducted} 分，"
                   f"红黑榜 {done.postings} 条")
    return redirect(f"/rounds/{round_id}", request, message)


@router.post("/rounds/{round_id}/review")
def round_review(request: Request, session: DbSession, round_id: int, p: Principal = Review,
                 decision: Short = "", comment: Text = "") -> Response:
    with form_errors("evaluation/review.html", lambda s: _review_ctx(s, p, round_id, comment=comment)):
        if decision == "approve":
            rounds.approve(session, p.actor(), round_id, comment)
        elif decision == "return":
            rounds.return_round(session, p.actor(), round_id, comment)
        else:
            raise ValidationFailed("请选择“审核通过”或“退回修改”")
    return redirect(f"/rounds/{round_id}/review", request, "已审核通过" if decision == "approve" else "已退回村里修改")


# ---- rating: the grid and the sheet ----------------------------------------------------------------------------

def _rater(p: Principal, rnd: Any) -> int:
    """The clerk enters the committee's agreed grades; in a panel round a member rates for himself or herself."""
    return p.user_id if rnd.mode == "panel" else rounds.CONSENSUS


def _writer(session: DbSession, p: Principal, rnd: Any) -> int:
    """Who writes a grid: in a consensus round only the clerk (who records the committee's agreement); a member
    rates in panel rounds only."""
    if rnd.mode == "consensus" and not _covers(p, Perm.EVAL_MANAGE, rounds.scope_of_round(session, rnd.id)):
        raise ValidationFailed("本轮由委员会合议评定，合议结果由村文书录入；委员个人不单独评分")
    return _rater(p, rnd)


def _keys(ruleset: rules.Ruleset) -> dict[str, dict[str, str]]:
    """Per theme: what a key types -> grade code (the grade itself, its pinyin initial, 1 = best)."""
    out: dict[str, dict[str, str]] = {}
    for t in ruleset.themes:
        keys: dict[str, str] = {}
        for i, g in enumerate(reversed(t.scale()), start=1):
            keys[g.code.lower()] = g.code
            first = (initials(g.code) or "")[:1].lower()
            if first and first.isalpha() and first not in keys:
                keys[first] = g.code
            keys.setdefault(str(i), g.code)
        out[t.code] = keys
    return out


def _grid_ctx(session: DbSession, p: Principal, round_id: int, group: int | None, **extra: Any) -> dict[str, Any]:
    rnd = rounds.get_round(session, round_id)
    ruleset = rounds.ruleset_of(session, rnd)
    rater = _rater(p, rnd)
    entries = rounds.roster(session, rnd)
    groups = sorted({(e.group_id, e.group_name) for e in entries if e.group_id}, key=lambda g: g[1])
    shown = [e for e in entries if group is None or e.group_id == group]
    elig = rounds.eligibility_of(session, rnd) if rater != rounds.CONSENSUS else None
    barred = {e.household_id for e in shown if elig is not None and not elig.may_rate(rater, e.household_id)}
    cells = rounds.grid(session, rnd, rater_id=rater)
    missing = sum(1 for e in shown if e.household_id not in barred for t in ruleset.themes
                  if (e.household_id, t.code) not in cells)
    return {"rnd": rnd, "ruleset": ruleset, "entries": shown, "groups": groups, "group": group, "cells": cells,
            "barred": barred, "missing": missing, "keys": _keys(ruleset), "rater": rater,
            "outsider": elig is not None and rater not in elig.members,
            "editable": rnd.status in rounds.EDITABLE and (rnd.mode == "panel" or _covers(
                p, Perm.EVAL_MANAGE, rounds.scope_of_round(session, round_id))),
            "village": org.get_village(session, EVERYTHING, rnd.village_id),
            "nav_active": "/evaluation", **LABELS, **extra}


@router.get("/rounds/{round_id}/grid")
def grid_page(request: Request, session: DbSession, round_id: int, p: Principal = Rate,
              group: Annotated[int | None, Query(ge=1, lt=2**31)] = None) -> Response:
    return render(request, "evaluation/grid.html", _grid_ctx(session, p, round_id, group))


MAX_GRID_JSON = 2 * 1024 * 1024


def _cell_id(value: Any) -> int:
    if type(value) is int or (isinstance(value, str) and value.isascii() and value.isdigit()):
        return int(value)
    raise ValueError(value)


def _parse_form(request: Request, raw: bytes) -> FormData:
    """The plain grid form (application/x-www-form-urlencoded), from the body already read."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise ValueError("not a form")
    pairs: list[tuple[str, str | PostedFile]] = list(parse_qsl(raw.decode("utf-8", errors="replace"),
                                                               keep_blank_values=True, max_num_fields=50_000))
    return FormData(pairs)


@router.post("/rounds/{round_id}/grid")
def grid_save(request: Request, session: DbSession, raw_body: RawBody, round_id: int, p: Principal = Rate) -> Response:
    """Save cells: JSON {"cells": [{"h": id, "t": theme, "g": grade}]} from the page's autosave, or the plain form
    (fields g:<household>:<theme>). One bad cell saves nothing."""
    rnd = rounds.get_round(session, round_id)
    as_json = request.headers.get("content-type", "").startswith("application/json")
    try:
        if as_json:
            if len(raw_body) > MAX_GRID_JSON:
                raise ValidationFailed("一次保存的内容太多：请分组保存")
            try:
                body = json.loads(raw_body)
            except (ValueError, RecursionError):
                raise ValidationFailed("请求不是有效的 JSON") from None
            raw = body.get("cells") if isinstance(body, dict) else None
            if not isinstance(raw, list) or len(raw) > 20_000:
                raise ValidationFailed("请求格式不对：应为 {\"cells\": [{\"h\": 户id, \"t\": 项目, \"g\": 等级}]}")
            cells = [rounds.Cell(_cell_id(c["h"]), str(c["t"]), str(c.get("g") or "")) for c in raw]
        else:
            cells = []
            for key, value in _parse_form(request, raw_body).multi_items():
                if key.startswith("g:") and key.count(":") == 2:
                    _, h, t = key.split(":")
                    cells.append(rounds.Cell(_cell_id(h), t, str(value)))
        result = rounds.save_ratings(session, p.actor(), round_id, cells, rater_id=_writer(session, p, rnd))
    except (KeyError, TypeError, ValueError):
        e = ValidationFailed("请求格式不对：户 id 须为整数")
        if as_json:
            raise e from None
        raise _rejected(e, p, round_id) from None
    except AppError as e:
        if as_json:
            raise
        raise FormRejected(e, "evaluation/grid.html", lambda s: _grid_ctx(s, p, round_id, None)) from e
    if as_json:
        return JSONResponse({"saved": result.saved, "cleared": result.cleared, "unchanged": result.unchanged,
                             "missing": rounds.missing_cells(session, rnd, rater_id=_rater(p, rnd))})
    return redirect(f"/rounds/{round_id}/grid", request, f"已保存 {result.saved} 项，清除 {result.cleared} 项")


@router.post("/rounds/{round_id}/grid/fill")
def grid_fill(request: Request, session: DbSession, round_id: int, p: Principal = Rate,
              grade: Short = "", group: Short = "") -> Response:
    rnd = rounds.get_round(session, round_id)
    gid = _opt_int(group)
    with form_errors("evaluation/grid.html", lambda s: _grid_ctx(s, p, round_id, gid)):
        result = rounds.fill_default(session, p.actor(), round_id, grade=grade.strip(), group_id=gid,
                                     rater_id=_writer(session, p, rnd))
    where = f"?group={gid}" if gid else ""
    return redirect(f"/rounds/{round_id}/grid{where}", request,
                    f"已将 {result.saved} 个空格填为“{grade}”，请再逐一修改例外的户")


@router.get("/rounds/{round_id}/sheet.xlsx")
def sheet_download(session: DbSession, round_id: int, p: Principal = Rate) -> Response:
    rnd = rounds.get_round(session, round_id)
    return download(sheets.download(session, rnd, rater_id=_rater(p, rnd)))


def _sheet_ctx(session: DbSession, p: Principal, round_id: int, upload_id: int, **extra: Any) -> dict[str, Any]:
    rnd = rounds.get_round(session, round_id)
    up = sheets.preview(session, upload_id, round_id)
    return {"rnd": rnd, "up": up, "summary": sheets.changes(session, up, rater_id=_rater(p, rnd)),
            "village": org.get_village(session, EVERYTHING, rnd.village_id),
            "ruleset": rounds.ruleset_of(session, rnd), "nav_active": "/evaluation", **LABELS, **extra}


@router.post("/rounds/{round_id}/sheet")
@read_only_session
def sheet_upload(request: Request, session: DbSession, round_id: int, p: Principal = Rate,
                 file: Annotated[UploadFile | None, File()] = None) -> Response:
    rnd = rounds.get_round(session, round_id)
    with _round_form(p, round_id):
        if file is None or not file.filename:
            raise ValidationFailed("请选择填好的评分表（.xlsx）")
        rater = _writer(session, p, rnd)
        data = file.file.read(sheets.MAX_BYTES + 1)
        end_reads(session)
        read = sheets.read_file(data)  # outside any transaction: it may take a while
        checked = sheets.check(session, round_id, read=read, rater_id=rater)  # reads only
        end_reads(session)
        with write_txn(request) as ws:
            up = sheets.keep(ws, p.actor(), round_id, file_name=file.filename, checked=checked, rater_id=rater)
    return redirect(f"/rounds/{round_id}/sheet/{up.id}", request)


@router.get("/rounds/{round_id}/sheet/{upload_id}")
def sheet_preview(request: Request, session: DbSession, round_id: int, upload_id: int, p: Principal = Rate) -> Response:
    return render(request, "evaluation/sheet_preview.html", _sheet_ctx(session, p, round_id, upload_id))


@router.post("/rounds/{round_id}/sheet/{upload_id}")
def sheet_confirm(request: Request, session: DbSession, round_id: int, upload_id: int, p: Principal = Rate,
                  action: Short = "confirm") -> Response:
    rnd = rounds.get_round(session, round_id)
    with form_errors("evaluation/sheet_preview.html", lambda s: _sheet_ctx(s, p, round_id, upload_id)):
        rater = _writer(session, p, rnd)
        if action == "discard":
            sheets.discard(session, p.actor(), round_id, upload_id, rater_id=rater)
            return redirect(f"/rounds/{round_id}", request, "已放弃这次上传")
        result = sheets.confirm(session, p.actor(), round_id, upload_id, rater_id=rater)
    return redirect(f"/rounds/{round_id}/grid", request, f"评分表已导入：保存 {result.saved} 项")


# ---- determinations and votes --------------------------------------------------------------------------------------

@router.post("/rounds/{round_id}/determinations")
def propose(request: Request, session: DbSession, round_id: int, p: Principal = Rate, household_id: Short = "",
            code: Short = "", description: Text = "", evidence: Text = "", member_name: Short = "") -> Response:
    with _round_form(p, round_id):
        m = motions.propose_determination(session, p.actor(), round_id, household_id=_int(household_id, "农户"),
                                          code=code, description=description, evidence=evidence,
                                          member_name=member_name)
    return redirect(f"/rounds/{round_id}#motion-{m.id}", request, "已提出认定，等待委员表决")


def _back(session: DbSession, motion_id: int) -> str:
    m = motions.get_motion(session, motion_id)
    return f"/rounds/{m.round_id}#motion-{m.id}" if m.round_id else f"/villages/{m.village_id}/awards#motion-{m.id}"


def _motion_rejected(e: AppError, p: Principal, session: DbSession, motion_id: int) -> FormRejected:
    m = motions.get_motion(session, motion_id)
    if m.round_id:
        return _rejected(e, p, m.round_id)
    village_id = m.village_id
    return FormRejected(e, "evaluation/awards.html", lambda s: _awards_ctx(s, p, village_id))


@router.post("/motions/{motion_id}/vote")
def vote(request: Request, session: DbSession, motion_id: int, p: Principal = Rate, choice: Short = "") -> Response:
    try:
        m, t = motions.vote(session, p.actor(), motion_id, choice)
    except AppError as e:
        raise _motion_rejected(e, p, session, motion_id) from e
    message = f"已表决：同意 {t.yes}、反对 {t.no}、弃权 {t.abstain}（需同意 {t.needed} 票）"
    if m.status != "proposed":
        message += f"，{motions.STATUS_LABELS[m.status]}"
    return redirect(_back(session, motion_id), request, message)


@router.post("/motions/{motion_id}/evidence")
def add_evidence(request: Request, session: DbSession, motion_id: int, p: Principal = Rate,
                 file: Annotated[UploadFile | None, File()] = None) -> Response:
    try:
        if file is None or not file.filename:
            raise ValidationFailed("请选择照片或 PDF 文件")
        data = file.file.read(motions.MAX_EVIDENCE_BYTES + 1)
        motions.add_evidence(session, p.actor(), motion_id, file_name=file.filename,
                             media_type=file.content_type or "", data=data)
    except AppError as e:
        raise _motion_rejected(e, p, session, motion_id) from e
    return redirect(_back(session, motion_id), request, "已上传证据")


@router.get("/motions/{motion_id}/evidence")
def evidence_file(session: DbSession, motion_id: int, p: Principal = View,
                  file: Annotated[int | None, Query(ge=1, lt=2**31)] = None) -> Response:
    """One attached file (`file`), or the first."""
    ev = motions.get_evidence(session, motion_id, file)
    return Response(ev.data, media_type=ev.media_type, headers={
        "Content-Disposition": "inline", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"})


@router.post("/motions/{motion_id}/withdraw")
def withdraw(request: Request, session: DbSession, motion_id: int, p: Principal = Manage, reason: Text = "") -> Response:
    try:
        motions.withdraw(session, p.actor(), motion_id, reason)
    except AppError as e:
        raise _motion_rejected(e, p, session, motion_id) from e
    return redirect(_back(session, motion_id), request, "已撤回")


# ---- ad-hoc awards and penalties --------------------------------------------------------------------------------

def _awards_ctx(session: DbSession, p: Principal, village_id: int, **extra: Any) -> dict[str, Any]:
    scope = org.scope_of_village(session, village_id)
    elig = committee.eligibility(session, village_id)
    rows = [{"m": m, "tally": motions.tally(session, m, elig), "votes": motions.votes_of(session, m.id),
             "evidence": motions.evidence_list(session, m.id),
             "label": _household_label(session, m.household_id)} for m in motions.adhoc_of_village(session, village_id)]
    return {"village": org.get_village(session, EVERYTHING, village_id), "rows": rows, "members": elig.members,
            "can_manage": _covers(p, Perm.EVAL_MANAGE, scope), "can_rate": _covers(p, Perm.EVAL_RATE, scope),
            "me": p.user_id, "nav_active": "/evaluation", **LABELS, **extra}


def _household_label(session: DbSession, household_id: int) -> str:
    h = hh.get_household(session, household_id)
    return f"{h.number} {h.head_name}"


@router.get("/villages/{village_id}/awards")
def awards(request: Request, session: DbSession, village_id: int, p: Principal = View) -> Response:
    return render(request, "evaluation/awards.html", _awards_ctx(session, p, village_id))


@router.post("/villages/{village_id}/awards")
def propose_award(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                  household_number: Short = "", kind: Short = "award", points: Short = "",
                  description: Text = "", evidence: Text = "") -> Response:
    with form_errors("evaluation/awards.html", lambda s: _awards_ctx(s, p, village_id, form={
            "household_number": household_number, "kind": kind, "points": points, "description": description,
            "evidence": evidence})):
        h = hh.find_by_number(session, village_id, household_number)
        motions.propose_adhoc(session, p.actor(), village_id, household_id=h.id, kind=kind,
                              points=_int(points, "分值"), description=description, evidence=evidence)
    return redirect(f"/villages/{village_id}/awards", request, "已提交委员会表决")


# ---- objections ----------------------------------------------------------------------------------------------------

@router.post("/rounds/{round_id}/objections")
def file_paper_objection(request: Request, session: DbSession, round_id: int, p: Principal = Manage,
                         household_id: Short = "", target: Short = "rating", theme: Short = "",
                         motion_id: Short = "", posting_code: Short = "", text: Text = "") -> Response:
    with _round_form(p, round_id):
        objections.file(session, p.actor(), round_id, household_id=_int(household_id, "农户"), target=target,
                        theme=theme or None, motion_id=_opt_int(motion_id), posting_code=posting_code or None,
                        text=text, on_paper=True)
    return redirect(f"/rounds/{round_id}#objections", request, "已登记书面异议")


@router.post("/objections/{objection_id}/resolve")
def resolve_objection(request: Request, session: DbSession, objection_id: int, p: Principal = Manage,
                      decision: Short = "", reason: Text = "", corrected_grade: Short = "") -> Response:
    o = objections.get_objection(session, objection_id)
    round_id = o.round_id
    with _round_form(p, round_id):
        if decision not in ("uphold", "reject"):
            raise ValidationFailed("请选择“异议成立”或“异议不成立”")
        res = objections.resolve(session, p.actor(), objection_id, uphold=decision == "uphold", reason=reason,
                                 corrected_grade=corrected_grade or None)
    message = "已记录处理结果"
    if res.delta:
        message += f"，已补记积分 {res.delta:+d}（交易 #{res.ledger_tx_id}）"
    return redirect(f"/rounds/{round_id}#objections", request, message)


# ---- results -------------------------------------------------------------------------------------------------------

def _results_ctx(session: DbSession, rnd: Any) -> dict[str, Any]:
    ruleset = rounds.ruleset_of(session, rnd)
    result = rounds.compute(session, rnd, ruleset=ruleset) if rnd.status != "finalised" else None
    views = rounds.views(session, rnd, result)
    entries = rounds.roster(session, rnd)
    rows = []
    for e in entries:
        v = views.get(e.household_id)
        by_theme = {ln["code"]: ln for ln in (v.lines if v else []) if ln.get("kind") == "theme"}
        dets = [ln for ln in (v.lines if v else []) if ln.get("kind") == "determination"]
        rows.append({"e": e, "v": v, "by_theme": by_theme, "dets": dets})
    totals = result.totals if result is not None else rounds.stored_totals(views.values())
    postings = rounds.postings_of_round(session, rnd.id) if rnd.status == "finalised" else []
    return {"rnd": rnd, "ruleset": ruleset, "rows": rows, "totals": totals, "postings": postings,
            "labels": {e.household_id: f"{e.number} {e.head_name}" for e in entries},
            "village": org.get_village(session, EVERYTHING, rnd.village_id), "nav_active": "/evaluation", **LABELS}


@router.get("/rounds/{round_id}/results")
def results(request: Request, session: DbSession, round_id: int, p: Principal = View) -> Response:
    rnd = rounds.get_round(session, round_id)
    return render(request, "evaluation/results.html", _results_ctx(session, rnd))


def _explained_ctx(session: DbSession, rnd: Any, household_id: int) -> dict[str, Any]:
    view = rounds.household_view(session, rnd, household_id)
    if view is None:
        raise NotFound("该户不在这一轮评比中")
    return {"rnd": rnd, "view": view, "h": hh.get_household(session, household_id),
            "ruleset": rounds.ruleset_of(session, rnd), **LABELS}


@router.get("/rounds/{round_id}/households/{household_id}")
def explained(request: Request, session: DbSession, round_id: int, household_id: int, p: Principal = View) -> Response:
    rnd = rounds.get_round(session, round_id)
    return render(request, "evaluation/explained.html", {**_explained_ctx(session, rnd, household_id),
                                                         "village": org.get_village(session, EVERYTHING, rnd.village_id),
                                                         "nav_active": "/evaluation", "staff": True})


def _review_ctx(session: DbSession, p: Principal, round_id: int, **extra: Any) -> dict[str, Any]:
    rnd = rounds.get_round(session, round_id)
    scope = rounds.scope_of_round(session, round_id)
    ruleset = rounds.ruleset_of(session, rnd)
    result = rounds.compute(session, rnd, ruleset=ruleset)
    entries = rounds.roster(session, rnd)
    labels = {e.household_id: f"{e.number} {e.head_name}" for e in entries}
    elig = rounds.eligibility_of(session, rnd)
    found = signals.review_signals(result, ruleset, panel=rounds.panel_grades(session, rnd) if rnd.mode == "panel"
                                   else None, previous_totals=rounds.previous_totals(session, rnd),
                                   member_names=elig.members, household_labels=labels,
                                   identical_months=rounds.identical_months(session, rnd, result))
    return {"rnd": rnd, "ruleset": ruleset, "totals": result.totals, "signals": found, "result": result,
            "labels": labels, "events": rounds.events(session, round_id),
            "village": org.get_village(session, EVERYTHING, rnd.village_id),
            "can_review": _covers(p, Perm.EVAL_REVIEW, scope), "nav_active": "/evaluation", **LABELS, **extra}


@router.get("/rounds/{round_id}/review")
def review_page(request: Request, session: DbSession, round_id: int, p: Principal = View) -> Response:
    return render(request, "evaluation/review.html", _review_ctx(session, p, round_id))


# ---- simulation ----------------------------------------------------------------------------------------------------

def _simulate_ctx(session: DbSession, round_id: int, **extra: Any) -> dict[str, Any]:
    rnd = rounds.get_round(session, round_id)
    entries = rounds.roster(session, rnd)
    return {"rnd": rnd, "versions": rulesets.list_versions(session), "ruleset": rounds.ruleset_of(session, rnd),
            "labels": {e.household_id: f"{e.number} {e.head_name}" for e in entries},
            "village": org.get_village(session, EVERYTHING, rnd.village_id), "nav_active": "/evaluation",
            **LABELS, **extra}


@router.get("/rounds/{round_id}/simulate")
def simulate_page(request: Request, session: DbSession, round_id: int, p: Principal = View) -> Response:
    return render(request, "evaluation/simulate.html", _simulate_ctx(session, round_id))


@router.post("/rounds/{round_id}/simulate")
@read_only_session
def simulate(request: Request, session: DbSession, round_id: int, p: Principal = View, version: Short = "",
             text: Annotated[str, Form(max_length=rulesets.MAX_TOML_BYTES)] = "") -> Response:
    """Nothing is saved: the draft is applied to this round's input and the differences shown."""
    with form_errors("evaluation/simulate.html", lambda s: _simulate_ctx(s, round_id, text=text, version=version)):
        if text.strip():
            draft = rulesets.read_toml(text)
        elif ":" in version:
            code, _, number = version.rpartition(":")
            draft = rulesets.get(session, code, _int(number, "版本")).ruleset
        else:
            raise ValidationFailed("请选择一个已存的积分细则版本，或粘贴草稿（TOML）")
        sim = rounds.simulate(session, rounds.get_round(session, round_id), draft)
    return render(request, "evaluation/simulate.html", _simulate_ctx(session, round_id, sim=sim, draft=draft,
                                                                     text=text, version=version))


# ---- a household's own results -----------------------------------------------------------------------------------

def _own_ctx(session: DbSession, p: Principal, household_id: int, round_id: int | None, **extra: Any) -> dict[str, Any]:
    scope = hh.scope_of_household(session, household_id)
    staff = scope is not None and p.covers(Perm.EVAL_VIEW, Scope(village_id=scope.village_id,
                                                                  township_id=scope.township_id))
    public_only = not staff
    history = rounds.household_rounds(session, household_id, public_only=public_only)
    chosen = next((r for r, _ in history if r.id == round_id), None) if round_id else \
        next((r for r, res in history if res is not None or r.status != "finalised"), None)
    ctx: dict[str, Any] = {"h": hh.get_household(session, household_id), "history": history, "chosen": chosen,
                           "can_object": _covers(p, Perm.OBJECTION_FILE, scope) and Role.HOUSEHOLD in p.roles,
                           "mine": objections.objections_of_household(session, household_id),
                           "nav_active": "/evaluation", **LABELS, **extra}
    if chosen is not None:
        view = rounds.household_view(session, chosen, household_id)
        ctx.update({"view": view, "ruleset": rounds.ruleset_of(session, chosen),
                    "window_open": objections.open_for_objections(chosen) and chosen.status == "publicised",
                    "passed": [m for m in motions.motions_of_round(session, chosen.id)
                               if m.household_id == household_id and m.status == "passed"]})
    return ctx


@router.get("/households/{household_id}/evaluation")
def own_results(request: Request, session: DbSession, household_id: int, p: Principal = View,
                round: Annotated[int | None, Query(ge=1, lt=2**31)] = None) -> Response:
    return render(request, "evaluation/household.html", _own_ctx(session, p, household_id, round))


@router.post("/households/{household_id}/objections")
def own_objection(request: Request, session: DbSession, household_id: int, p: Principal = Object,
                  round_id: Short = "", target: Short = "rating", theme: Short = "", motion_id: Short = "",
                  posting_code: Short = "", text: Text = "") -> Response:
    rid = _opt_int(round_id)
    with form_errors("evaluation/household.html", lambda s: _own_ctx(
            s, p, household_id, rid, form={"target": target, "theme": theme, "text": text})):
        if rid is None:
            raise ValidationFailed("请选择对哪一个月的评比有异议")
        h = hh.get_household(session, household_id)
        try:
            rnd = rounds.get_round(session, rid)
            open_here = rnd.village_id == h.village_id and rnd.status == "publicised"
        except NotFound:  # no such round answers like another village's: round ids tell a household nothing
            open_here = False
        if not open_here:
            raise ValidationFailed("这一轮评比不在公示期，不能在网上提出异议；如有问题请联系村文书")
        objections.file(session, p.actor(), rid, household_id=household_id, target=target, theme=theme or None,
                        motion_id=_opt_int(motion_id), posting_code=posting_code or None, text=text)
    return redirect(f"/households/{household_id}/evaluation?round={rid}", request,
                    "异议已提交，评比委员会将在公示期内答复")

