"""JSON API of the household registry (/api/v1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.scope import Scope
from app.deps import DbSession, end_reads, read_only_session, write_after_read, write_txn
from app.households.schemas import (
    GroupMoveIn,
    HeadIn,
    HouseholdDetailOut,
    HouseholdIn,
    HouseholdOut,
    HouseholdPage,
    HouseholdPatch,
    ImportConfirmIn,
    ImportPreviewOut,
    MemberIn,
    MemberOut,
    MergeIn,
    MoveOutIn,
    SplitIn,
    StatusIn,
)
from app.households.service import exports, imports
from app.households.service import households as hh
from app.households.service.households import MemberInput
from app.org.api import links
from app.web.templates import download

router = APIRouter(prefix="/api/v1", tags=["农户"])
# Search text: no control characters (PostgreSQL refuses a NUL in text outright)
Search = Annotated[str | None, Query(max_length=40, pattern=r"^[^\x00-\x1f\x7f]*$")]
StatusText = Annotated[str | None, Query(max_length=12, pattern=r"^[^\x00-\x1f\x7f]*$")]
HOUSEHOLD_USES = dict(get="detail_api_v1_households__household_id__get",
                      patch="patch_api_v1_households__household_id__patch",
                      add_member="add_member_api_v1_households__household_id__members_post",
                      head="change_head_api_v1_households__household_id__head_post",
                      group="move_group_api_v1_households__household_id__group_post",
                      split="split_api_v1_households__household_id__split_post",
                      merge="merge_api_v1_households__household_id__merge_post",
                      move_out="move_out_api_v1_households__household_id__move_out_post",
                      points="points_api_v1_households__household_id__points_get",
                      statement="statement_api_v1_households__household_id__points_statement_get",
                      adjust="adjust_api_v1_households__household_id__points_adjustments_post")
MEMBER_USES = dict(update="update_member_api_v1_members__member_id__patch",
                   status="member_status_api_v1_members__member_id__status_put")
View = Depends(authorize(Perm.HOUSEHOLD_VIEW))
Manage = Depends(authorize(Perm.HOUSEHOLD_MANAGE))


def can_see_full(session: DbSession, p: Principal, household_id: int) -> bool:
    scope = hh.scope_of_household(session, household_id)
    return scope is not None and p.covers(Perm.HOUSEHOLD_FULL, scope)


def _detail(session: DbSession, p: Principal, household_id: int, request: Request | None = None) -> HouseholdDetailOut:
    h = hh.get_household(session, household_id)
    full = can_see_full(session, p, household_id)
    if full and request is not None:  # ID numbers and phones shown unmasked: in the audit log (ASVS 8.3.5)
        write_after_read(request, session, lambda ws: hh.record_full_view(ws, p.actor(), household_id))
    return HouseholdDetailOut(**HouseholdOut.build(h, full).model_dump(),
                              members=[MemberOut.build(m, full) for m in hh.members_of(session, household_id)])


def _input(m: MemberIn) -> MemberInput:
    return MemberInput(**m.model_dump())


@router.get("/households", response_model=HouseholdPage, summary="查找农户（姓名、拼音、首字母、户号、身份证号）",
            responses=links(200, "/items/0/id", "household_id", HOUSEHOLD_USES))
def search(session: DbSession, p: Principal = View,
           q: Search = None, village_id: int | None = None,
           group_id: int | None = None, status: StatusText = None,
           sort: Annotated[str, Query(pattern="^(number|pinyin)$")] = "number",
           offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
           limit: Annotated[int, Query(ge=1, le=200)] = 50) -> HouseholdPage:
    flt = p.filter(Perm.HOUSEHOLD_VIEW)
    full_flt = p.filter(Perm.HOUSEHOLD_FULL)
    res = hh.search(session, flt, q=q, village_id=village_id, group_id=group_id, status=status, sort=sort,
                    offset=offset, limit=limit, id_scope=full_flt)
    items = [HouseholdOut.build(h, full_flt.covers(Scope(village_id=h.village_id, household_id=h.id)))
             for h in res.rows]
    return HouseholdPage(items=items, total=res.total, total_exact=res.total_exact, offset=offset, limit=limit)


@router.post("/villages/{village_id}/households", response_model=HouseholdDetailOut, status_code=201, summary="新建农户",
             responses=links(201, "/id", "household_id", HOUSEHOLD_USES))
def create(village_id: int, body: HouseholdIn, session: DbSession, p: Principal = Manage) -> HouseholdDetailOut:
    h = hh.create_household(session, p.actor(), village_id=village_id, number=body.number, head=_input(body.head),
                            group_id=body.group_id, address=body.address, phone=body.phone, notes=body.notes)
    return _detail(session, p, h.id)


@router.get("/households/{household_id}", response_model=HouseholdDetailOut, summary="农户详情（含成员）",
            responses=links(200, "/members/0/id", "member_id", MEMBER_USES))
def detail(request: Request, household_id: int, session: DbSession, p: Principal = View) -> HouseholdDetailOut:
    return _detail(session, p, household_id, request)


@router.patch("/households/{household_id}", response_model=HouseholdDetailOut, summary="修改户信息")
def patch(household_id: int, body: HouseholdPatch, session: DbSession, p: Principal = Manage) -> HouseholdDetailOut:
    hh.update_household(session, p.actor(), household_id, address=body.address, phone=body.phone, notes=body.notes)
    return _detail(session, p, household_id)


@router.post("/households/{household_id}/members", response_model=MemberOut, status_code=201, summary="添加成员",
             responses=links(201, "/id", "member_id", MEMBER_USES))
def add_member(household_id: int, body: MemberIn, session: DbSession, p: Principal = Manage) -> MemberOut:
    return MemberOut.build(hh.add_member(session, p.actor(), household_id, _input(body)), True)


@router.patch("/members/{member_id}", response_model=MemberOut, summary="修改成员信息")
def update_member(member_id: int, body: MemberIn, session: DbSession, p: Principal = Manage) -> MemberOut:
    return MemberOut.build(hh.update_member(session, p.actor(), member_id, _input(body)), True)


@router.put("/members/{member_id}/status", response_model=MemberOut, summary="成员迁出、已故或恢复在户")
def member_status(member_id: int, body: StatusIn, session: DbSession, p: Principal = Manage) -> MemberOut:
    m = hh.set_member_status(session, p.actor(), member_id, body.status, on=body.on, reason=body.reason)
    return MemberOut.build(m, True)


@router.post("/households/{household_id}/head", response_model=HouseholdDetailOut, summary="更换户主")
def change_head(household_id: int, body: HeadIn, session: DbSession, p: Principal = Manage) -> HouseholdDetailOut:
    hh.change_head(session, p.actor(), household_id, body.member_id, old_head_relation=body.old_head_relation)
    return _detail(session, p, household_id)


@router.post("/households/{household_id}/group", response_model=HouseholdDetailOut, summary="调整村民小组")
def move_group(household_id: int, body: GroupMoveIn, session: DbSession, p: Principal = Manage) -> HouseholdDetailOut:
    hh.move_group(session, p.actor(), household_id, body.group_id)
    return _detail(session, p, household_id)


@router.post("/households/{household_id}/split", response_model=HouseholdDetailOut, status_code=201,
             summary="分户：所选成员分出为新户（返回新户）")
def split(household_id: int, body: SplitIn, session: DbSession, p: Principal = Manage) -> HouseholdDetailOut:
    new = hh.split(session, p.actor(), household_id, member_ids=body.member_ids, new_head_id=body.new_head_id,
                   new_number=body.new_number, group_id=body.group_id, on=body.on, reason=body.reason)
    return _detail(session, p, new.id)


@router.post("/households/{household_id}/merge", response_model=HouseholdDetailOut,
             summary="合户：本户全部在户成员并入目标户（返回目标户）")
def merge(household_id: int, body: MergeIn, session: DbSession, p: Principal = Manage) -> HouseholdDetailOut:
    target = hh.merge(session, p.actor(), household_id, body.target_id, on=body.on, reason=body.reason)
    return _detail(session, p, target.id)


@router.post("/households/{household_id}/move-out", response_model=HouseholdDetailOut, summary="全户迁出或注销")
def move_out(household_id: int, body: MoveOutIn, session: DbSession, p: Principal = Manage) -> HouseholdDetailOut:
    hh.move_out(session, p.actor(), household_id, status=body.status, on=body.on, reason=body.reason)
    return _detail(session, p, household_id)


@router.post("/villages/{village_id}/roster/imports", response_model=ImportPreviewOut, status_code=201,
             summary="上传花名册并预览问题（不写入）", responses={201: {"description": "成功", "links": {"confirm": {
                 "operationId": "confirm_api_v1_villages__village_id__roster_imports__batch_id__confirm_post",
                 "parameters": {"village_id": "$request.path.village_id", "batch_id": "$response.body#/batch_id"}}}}})
@read_only_session
def upload(request: Request, village_id: int, session: DbSession, file: Annotated[UploadFile, File()],
           p: Principal = Manage) -> ImportPreviewOut:
    data = file.file.read(imports.roster.MAX_FILE_BYTES + 1)  # a plain def: this runs in a worker thread
    end_reads(session)
    parsed = imports.read_file(file.filename or "", data)  # outside any transaction: it may take seconds
    plan = imports.check(session, village_id=village_id, parsed=parsed)  # reads only
    end_reads(session)
    with write_txn(request) as ws:
        batch = imports.keep(ws, p.actor(), village_id=village_id, parsed=parsed, plan=plan)
    return _preview_out(batch)


def _preview_out(batch: imports.ImportBatch) -> ImportPreviewOut:
    errors = [x for x in batch.problems if x["severity"] == "error"]
    return ImportPreviewOut(batch_id=batch.id, status=batch.status, summary=batch.summary,
                            problems=batch.problems, can_confirm=not errors and batch.status == "preview")


@router.post("/villages/{village_id}/roster/imports/{batch_id}/confirm", summary="确认导入（全部成功或全部不写入）")
def confirm(village_id: int, batch_id: int, body: ImportConfirmIn, session: DbSession,
            p: Principal = Manage) -> dict[str, object]:
    return imports.apply(session, p.actor(), village_id=village_id, batch_id=batch_id,
                         create_missing_groups=body.create_missing_groups)


def _file(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """The documented 200 of a download: a file of these media types, not JSON."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": description, "content": {m.split(";")[0]: binary for m in media_types}}}


@router.get("/villages/{village_id}/roster/export", summary="导出花名册（xlsx 或 csv）", response_class=Response,
            responses=_file("花名册文件", exports.XLSX, exports.CSV))
def export(request: Request, village_id: int, session: DbSession, p: Principal = View,
           format: Annotated[str, Query(pattern="^(xlsx|csv)$")] = "xlsx",
           q: Search = None, group_id: int | None = None,
           status: StatusText = None) -> Response:
    full = p.covers(Perm.HOUSEHOLD_FULL, Scope(village_id=village_id))

    def audited(rows: int) -> None:  # a full export in the audit log (ASVS 8.3.5)
        write_after_read(request, session, lambda ws: exports.record_export(
            ws, p.actor(), village_id=village_id, fmt=format, rows=rows, q=q, group_id=group_id, status=status))

    return download(exports.export_file(session, p.filter(Perm.HOUSEHOLD_VIEW), village_id=village_id, fmt=format,
                                        full=full, q=q, group_id=group_id, status=status, on_full=audited))


@router.get("/villages/{village_id}/roster/template.xlsx", summary="下载花名册模板", response_class=Response,
            responses=_file("花名册模板", exports.XLSX))
def template(village_id: int, session: DbSession, p: Principal = Manage) -> Response:
    return download(exports.template_file(session, village_id))
