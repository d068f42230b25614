"""Pages of the household registry: the list with search, a household's record and its changes, the roster
import wizard and exports. Every form posts plainly; nothing needs JavaScript."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.scope import EVERYTHING, Scope
from app.deps import DbSession, end_reads, read_only_session, write_after_read, write_txn
from app.errors import ValidationFailed, form_errors
from app.households.models import HOUSEHOLD_STATUS_LABELS, MEMBER_STATUS_LABELS, RELATIONS
from app.households.service import exports, imports, privacy
from app.households.service import households as hh
from app.households.service.households import MemberInput
from app.org import service as org
from app.web.templates import download, redirect, render

router = APIRouter(include_in_schema=False)
# Search text: no control characters (PostgreSQL refuses a NUL in text outright)
Search = Annotated[str | None, Query(max_length=40, pattern=r"^[^\x00-\x1f\x7f]*$")]
StatusText = Annotated[str | None, Query(max_length=12, pattern=r"^[^\x00-\x1f\x7f]*$")]
View = Depends(authorize(Perm.HOUSEHOLD_VIEW))
Manage = Depends(authorize(Perm.HOUSEHOLD_MANAGE))
PAGE = 50
Text = Annotated[str, Form(max_length=500)]
LABELS = {"household_status": HOUSEHOLD_STATUS_LABELS, "member_status": MEMBER_STATUS_LABELS, "relations": RELATIONS}


def _date(value: str, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{label}格式不对，应为 2026-01-31") from None


def _member_input(name: str, relation: str, gender: str, birth_date: str, id_number: str, phone: str,
                  party_member: str, living_away: str) -> MemberInput:
    return MemberInput(name=name, relation=relation, gender=gender or None, birth_date=_date(birth_date, "出生日期"),
                       id_number=id_number or None, phone=phone or None, party_member=party_member == "1",
                       living_away=living_away == "1")


# ---- list ---------------------------------------------------------------------------------------------------------

def _list_ctx(session: DbSession, p: Principal, *, q: str | None, village_id: int | None, group_id: int | None,
              status: str | None, sort: str, page: int) -> dict[str, Any]:
    flt = p.filter(Perm.HOUSEHOLD_VIEW)
    villages = org.list_villages(session, flt) if not flt.household_ids or flt.village_ids or flt.everything \
        or flt.township_ids else []
    if village_id is None and len(villages) == 1:
        village_id = villages[0].id
    full = p.filter(Perm.HOUSEHOLD_FULL)
    res = hh.search(session, flt, q=q, village_id=village_id, group_id=group_id, status=status or None, sort=sort,
                    offset=(page - 1) * PAGE, limit=PAGE, id_scope=full)
    return {"result": res, "villages": villages, "village_id": village_id,
            "groups": org.list_groups(session, village_id) if village_id else [],
            "q": q or "", "group_id": group_id, "status": status or "", "sort": sort, "page": page,
            "pages": max(1, (res.total + PAGE - 1) // PAGE),
            "can_manage": village_id is not None and p.covers(Perm.HOUSEHOLD_MANAGE, Scope(village_id=village_id)),
            "full_ids": {h.id for h in res.rows if full.covers(Scope(village_id=h.village_id, household_id=h.id))},
            "village_names": {v.id: v.name for v in villages}, **LABELS}


@router.get("/households")
def list_page(request: Request, session: DbSession, p: Principal = View,
              q: Search = None,
              village_id: Annotated[str | None, Query(max_length=12)] = None,
              group_id: Annotated[str | None, Query(max_length=12)] = None,
              status: StatusText = None,
              sort: Annotated[str, Query(pattern="^(number|pinyin)$")] = "number",
              page: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    vid = int(village_id) if village_id and village_id.isdigit() else None
    gid = int(group_id) if group_id and group_id.isdigit() else None
    if vid is not None:
        scope = org.scope_of_village(session, vid)
        if scope is None or not p.covers(Perm.HOUSEHOLD_VIEW, scope):
            vid = None
    ctx = _list_ctx(session, p, q=q, village_id=vid, group_id=gid, status=status, sort=sort, page=page)
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "results":
        return render(request, "households/list.html", ctx, block_name="results")
    return render(request, "households/list.html", ctx)


# ---- one household ------------------------------------------------------------------------------------------------

def _detail_ctx(session: DbSession, p: Principal, household_id: int, **extra: Any) -> dict[str, Any]:
    h = hh.get_household(session, household_id)
    scope = hh.scope_of_household(session, household_id)
    village = org.get_village(session, EVERYTHING, h.village_id)  # the route's check already covered the household
    full = scope is not None and p.covers(Perm.HOUSEHOLD_FULL, scope)
    return {"h": h, "village": village,
            "members": [privacy.show_member(m, full=full) for m in hh.members_of(session, household_id)],
            "phone": privacy.household_phone(h, full=full),
            "events": hh.history(session, household_id), "memberships": hh.memberships(session, household_id),
            "groups": org.list_groups(session, h.village_id),
            "full": full,
            "can_manage": scope is not None and p.covers(Perm.HOUSEHOLD_MANAGE, scope),
            "today": date.today().isoformat(), "suggested_number": hh.next_number(session, h.village_id),
            **LABELS, **extra}


@router.get("/households/{household_id}")
def detail(request: Request, session: DbSession, household_id: int, p: Principal = View) -> Response:
    ctx = _detail_ctx(session, p, household_id)
    if ctx["full"]:  # ID numbers and phones shown unmasked: in the audit log (ASVS 8.3.5)
        write_after_read(request, session, lambda ws: hh.record_full_view(ws, p.actor(), household_id))
    return render(request, "households/detail.html", ctx)


def _back(household_id: int, request: Request, message: str) -> Response:
    return redirect(f"/households/{household_id}", request, message)


@router.post("/households/{household_id}/edit")
def edit_household(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
                   address: Text = "", phone: Text = "", notes: Text = "") -> Response:
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id)):
        hh.update_household(session, p.actor(), household_id, address=address, phone=phone, notes=notes)
    return _back(household_id, request, "户信息已保存")


class MemberForm(dict[str, str]):
    """A member's fields as posted by the add and edit forms (kept as typed, to show them again on an error)."""

    def to_input(self) -> MemberInput:
        return _member_input(self["name"], self["relation"], self["gender"], self["birth_date"], self["id_number"],
                             self["phone"], self["party_member"], self["living_away"])


def member_fields(name: Text = "", relation: Text = "", gender: Text = "", birth_date: Text = "",
                  id_number: Text = "", phone: Text = "", party_member: Text = "0",
                  living_away: Text = "0") -> MemberForm:
    return MemberForm(name=name, relation=relation, gender=gender, birth_date=birth_date, id_number=id_number,
                      phone=phone, party_member=party_member, living_away=living_away)


@router.post("/households/{household_id}/members")
def add_member(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
               form: MemberForm = Depends(member_fields)) -> Response:
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id, form=form)):
        m = hh.add_member(session, p.actor(), household_id, form.to_input())
    return _back(household_id, request, f"已添加成员 {m.name}")


def _member_ctx(session: DbSession, p: Principal, member_id: int, **extra: Any) -> dict[str, Any]:
    m = hh.get_member(session, member_id)
    return {"m": m, "h": hh.get_household(session, m.household_id), **LABELS, **extra}


@router.get("/members/{member_id}/edit")
def member_form(request: Request, session: DbSession, member_id: int, p: Principal = Manage) -> Response:
    return render(request, "households/member_edit.html", _member_ctx(session, p, member_id))


@router.post("/members/{member_id}/edit")
def member_save(request: Request, session: DbSession, member_id: int, p: Principal = Manage,
                form: MemberForm = Depends(member_fields)) -> Response:
    with form_errors("households/member_edit.html", lambda s: _member_ctx(s, p, member_id, form=form)):
        m = hh.update_member(session, p.actor(), member_id, form.to_input())
    return _back(m.household_id, request, f"已保存 {m.name} 的信息")


@router.post("/members/{member_id}/status")
def member_status(request: Request, session: DbSession, member_id: int, p: Principal = Manage,
                  status: Text = "", on: Text = "", reason: Text = "") -> Response:
    m = hh.get_member(session, member_id)
    household_id = m.household_id
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id)):
        hh.set_member_status(session, p.actor(), member_id, status, on=_date(on, "日期"), reason=reason)
    return _back(household_id, request, "成员状态已更新")


@router.post("/households/{household_id}/head")
def change_head(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
                member_id: Annotated[int, Form()] = 0, old_head_relation: Text = "其他") -> Response:
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id)):
        hh.change_head(session, p.actor(), household_id, member_id, old_head_relation=old_head_relation)
    return _back(household_id, request, "户主已更换")


@router.post("/households/{household_id}/group")
def move_group(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
               group_id: Text = "") -> Response:
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id)):
        hh.move_group(session, p.actor(), household_id, int(group_id) if group_id.isdigit() else None)
    return _back(household_id, request, "村民小组已调整")


@router.post("/households/{household_id}/split")
def split(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
          member_ids: Annotated[list[int] | None, Form()] = None, new_head_id: Text = "", new_number: Text = "",
          reason: Text = "分户") -> Response:
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id)):
        new = hh.split(session, p.actor(), household_id, member_ids=member_ids or [],
                       new_head_id=int(new_head_id) if new_head_id.isdigit() else 0, new_number=new_number or None,
                       reason=reason or "分户")
    return redirect(f"/households/{new.id}", request, f"分户完成：新户号 {new.number}")


@router.post("/households/{household_id}/merge")
def merge(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
          target_number: Text = "", reason: Text = "合户") -> Response:
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id)):
        source = hh.get_household(session, household_id)
        target = hh.find_by_number(session, source.village_id, target_number)
        hh.merge(session, p.actor(), household_id, target.id, reason=reason or "合户")
    return redirect(f"/households/{target.id}", request, f"已并入户号 {target.number}")


@router.post("/households/{household_id}/move-out")
def move_out(request: Request, session: DbSession, household_id: int, p: Principal = Manage,
             status: Text = "", on: Text = "", reason: Text = "") -> Response:
    with form_errors("households/detail.html", lambda s: _detail_ctx(s, p, household_id)):
        hh.move_out(session, p.actor(), household_id, status=status, on=_date(on, "日期"), reason=reason)
    return _back(household_id, request, "已办理")


# ---- new household ------------------------------------------------------------------------------------------------

def _new_ctx(session: DbSession, p: Principal, village_id: int, **extra: Any) -> dict[str, Any]:
    return {"village": org.get_village(session, p.filter(Perm.HOUSEHOLD_MANAGE), village_id),
            "groups": org.list_groups(session, village_id, include_inactive=False),
            "suggested_number": hh.next_number(session, village_id), **LABELS, **extra}


@router.get("/villages/{village_id}/households/new")
def new_form(request: Request, session: DbSession, village_id: int, p: Principal = Manage) -> Response:
    return render(request, "households/new.html", _new_ctx(session, p, village_id))


@router.post("/villages/{village_id}/households")
def create(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
           number: Text = "", group_id: Text = "", address: Text = "", phone: Text = "", notes: Text = "",
           name: Text = "", gender: Text = "", birth_date: Text = "", id_number: Text = "", member_phone: Text = "",
           party_member: Text = "0", living_away: Text = "0") -> Response:
    form = {"number": number, "group_id": group_id, "address": address, "phone": phone, "notes": notes, "name": name,
            "gender": gender, "birth_date": birth_date, "id_number": id_number, "member_phone": member_phone}
    with form_errors("households/new.html", lambda s: _new_ctx(s, p, village_id, form=form)):
        h = hh.create_household(session, p.actor(), village_id=village_id, number=number,
                                head=_member_input(name, "户主", gender, birth_date, id_number, member_phone,
                                                   party_member, living_away),
                                group_id=int(group_id) if group_id.isdigit() else None, address=address, phone=phone,
                                notes=notes)
    return redirect(f"/households/{h.id}", request, f"已建户：户号 {h.number}")


# ---- roster import and export -------------------------------------------------------------------------------------

def _roster_ctx(session: DbSession, p: Principal, village_id: int, **extra: Any) -> dict[str, Any]:
    return {"village": org.get_village(session, p.filter(Perm.HOUSEHOLD_VIEW), village_id),
            "can_manage": p.covers(Perm.HOUSEHOLD_MANAGE, Scope(village_id=village_id)),
            "groups": org.list_groups(session, village_id), **extra}


@router.get("/villages/{village_id}/roster")
def roster_page(request: Request, session: DbSession, village_id: int, p: Principal = View) -> Response:
    return render(request, "households/roster.html", _roster_ctx(session, p, village_id))


@router.get("/villages/{village_id}/roster/template.xlsx")
def template(session: DbSession, village_id: int, p: Principal = Manage) -> Response:
    return download(exports.template_file(session, village_id))


@router.get("/villages/{village_id}/roster/export.{fmt}")
def export(request: Request, session: DbSession, village_id: int, fmt: str, p: Principal = View,
           q: Search = None,
           group_id: Annotated[str | None, Query(max_length=12)] = None,
           status: StatusText = None) -> Response:
    if fmt not in ("xlsx", "csv"):
        raise ValidationFailed("只能导出为 xlsx 或 csv")
    full = p.covers(Perm.HOUSEHOLD_FULL, Scope(village_id=village_id))
    group = int(group_id) if group_id and group_id.isdigit() else None

    def audited(rows: int) -> None:  # a full export in the audit log (ASVS 8.3.5)
        write_after_read(request, session, lambda ws: exports.record_export(
            ws, p.actor(), village_id=village_id, fmt=fmt, rows=rows, q=q, group_id=group, status=status))

    return download(exports.export_file(session, p.filter(Perm.HOUSEHOLD_VIEW), village_id=village_id, fmt=fmt,
                                        full=full, q=q or None, group_id=group, status=status or None,
                                        on_full=audited))


@router.post("/villages/{village_id}/roster/imports")
@read_only_session
def upload(request: Request, session: DbSession, village_id: int,
           file: Annotated[UploadFile | None, File()] = None, p: Principal = Manage) -> Response:
    data = file.file.read(imports.roster.MAX_FILE_BYTES + 1) if file is not None else b""  # in a worker thread
    name = file.filename if file is not None else ""
    with form_errors("households/roster.html", lambda s: _roster_ctx(s, p, village_id)):
        if not name:
            raise ValidationFailed("请选择要上传的花名册文件（.xlsx、.xls 或 .csv）")
        end_reads(session)
        parsed = imports.read_file(name, data)  # outside any transaction: it may take seconds
        plan = imports.check(session, village_id=village_id, parsed=parsed)  # reads only
        end_reads(session)
        with write_txn(request) as ws:
            batch_id = imports.keep(ws, p.actor(), village_id=village_id, parsed=parsed, plan=plan).id
    return redirect(f"/villages/{village_id}/roster/imports/{batch_id}", request)


def _preview_ctx(session: DbSession, p: Principal, village_id: int, batch_id: int, **extra: Any) -> dict[str, Any]:
    batch = imports.get_batch(session, batch_id, village_id)
    errors = [x for x in batch.problems if x["severity"] == "error"]
    warnings = [x for x in batch.problems if x["severity"] != "error"]
    return {**_roster_ctx(session, p, village_id), "batch": batch, "errors": errors, "warnings": warnings,
            "missing_groups": batch.summary.get("missing_groups", []), **extra}


@router.get("/villages/{village_id}/roster/imports/{batch_id}")
def preview_page(request: Request, session: DbSession, village_id: int, batch_id: int,
                 p: Principal = Manage) -> Response:
    return render(request, "households/import_preview.html", _preview_ctx(session, p, village_id, batch_id))


@router.post("/villages/{village_id}/roster/imports/{batch_id}/confirm")
def confirm(request: Request, session: DbSession, village_id: int, batch_id: int, p: Principal = Manage,
            create_missing_groups: Text = "0") -> Response:
    with form_errors("households/import_preview.html", lambda s: _preview_ctx(s, p, village_id, batch_id)):
        result = imports.apply(session, p.actor(), village_id=village_id, batch_id=batch_id,
                               create_missing_groups=create_missing_groups == "1")
    msg = (f"导入完成：新建 {result['households_new']} 户、更新 {result['households_updated']} 户；"
           f"新增成员 {result['members_new']} 人、更新 {result['members_updated']} 人，"
           f"{result['members_unchanged']} 人没有变化")
    return redirect(f"/households?village_id={village_id}", request, msg)


@router.post("/villages/{village_id}/roster/imports/{batch_id}/discard")
def discard(request: Request, session: DbSession, village_id: int, batch_id: int, p: Principal = Manage) -> Response:
    imports.discard(session, p.actor(), village_id=village_id, batch_id=batch_id)
    return redirect(f"/villages/{village_id}/roster", request, "已放弃这次上传，没有写入任何数据")
