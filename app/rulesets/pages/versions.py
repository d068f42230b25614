"""Pages of rulesets (积分细则): every version, readable by everyone signed in (the rules are public); the county
administrator imports a version (a .toml file, or the text edited in the page) and assigns codes from a month on."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.scope import EVERYTHING
from app.deps import DbSession, end_reads, read_only_session, write_txn
from app.errors import AppError, FormRejected, ValidationFailed, form_errors
from app.org import service as org
from app.rules.schema import COMBINE_LABELS, LIST_LABELS, PENALTY_LABELS, VOTE_LABELS
from app.rulesets import service as rulesets
from app.web.templates import download, redirect, render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.RULESET_VIEW))
Manage = Depends(authorize(Perm.RULESET_MANAGE))
Code = Annotated[str, Query(min_length=1, max_length=40)]
Version = Annotated[int, Query(ge=1, le=1_000_000)]
LABELS = {"combine": COMBINE_LABELS, "lists": LIST_LABELS, "votes": VOTE_LABELS, "penalty": PENALTY_LABELS}


def _index_ctx(session: DbSession, p: Principal, **extra: Any) -> dict[str, Any]:
    villages = {v.id: v.name for v in org.list_villages(session, EVERYTHING)}
    return {"versions": rulesets.list_versions(session), "assignments": rulesets.assignments(session),
            "villages": villages, "can_manage": p.can(Perm.RULESET_MANAGE), **extra}


@router.get("/rulesets")
def index(request: Request, session: DbSession, p: Principal = View) -> Response:
    return render(request, "evaluation/rulesets.html", _index_ctx(session, p))


def _view_ctx(session: DbSession, p: Principal, code: str, version: int, **extra: Any) -> dict[str, Any]:
    stored = rulesets.get(session, code, version)
    return {"row": stored.row, "r": stored.ruleset, "can_manage": p.can(Perm.RULESET_MANAGE),
            "month_label": rulesets.month_label, **LABELS, **extra}


@router.get("/rulesets/view")
def view(request: Request, session: DbSession, code: Code, version: Version, p: Principal = View) -> Response:
    return render(request, "evaluation/ruleset.html", _view_ctx(session, p, code, version))


@router.get("/rulesets/download")
def download_toml(session: DbSession, code: Code, version: Version, p: Principal = View) -> Response:
    return download(rulesets.export_file(session, code, version))


@router.post("/rulesets/import")
@read_only_session
def import_version(request: Request, session: DbSession, p: Principal = Manage,
                   file: Annotated[UploadFile | None, File()] = None,
                   text: Annotated[str, Form(max_length=rulesets.MAX_TOML_BYTES)] = "",
                   back_code: Annotated[str, Form(max_length=40)] = "",
                   back_version: Annotated[int, Form(ge=0, le=1_000_000)] = 0) -> Response:
    data: str | bytes = text
    if file is not None and file.filename:
        data = file.file.read(rulesets.MAX_TOML_BYTES + 1)
    try:
        if not data:
            raise ValidationFailed("请选择 .toml 文件，或在文本框中填写积分细则")
        end_reads(session)
        draft = rulesets.read_toml(data)  # outside any transaction
        with write_txn(request) as ws:
            row = rulesets.store(ws, p.actor(), draft)
    except AppError as e:
        if back_code and back_version:
            raise FormRejected(e, "evaluation/ruleset.html", lambda s: _view_ctx(
                s, p, back_code, back_version, text=text)) from e
        raise FormRejected(e, "evaluation/rulesets.html", lambda s: _index_ctx(s, p)) from e
    return redirect(f"/rulesets/view?code={row.code}&version={row.version}", request,
                    f"已导入积分细则 {row.code} 第 {row.version} 版，自{rulesets.month_label(row.effective_from)}起生效")


@router.post("/rulesets/assign")
def assign(request: Request, session: DbSession, p: Principal = Manage,
           code: Annotated[str, Form(max_length=40)] = "", from_month: Annotated[str, Form(max_length=6)] = "",
           village_id: Annotated[str, Form(max_length=12)] = "") -> Response:
    with form_errors("evaluation/rulesets.html", lambda s: _index_ctx(
            s, p, form={"code": code, "from_month": from_month, "village_id": village_id})):
        if not from_month.isdigit() or (village_id and not village_id.isdigit()):
            raise ValidationFailed("月份写成 202612 这样的六位数字；村从列表中选择")
        rulesets.assign(session, p.actor(), code=code.strip(), from_month=int(from_month),
                        village_id=int(village_id) if village_id else None)
    return redirect("/rulesets", request, f"已指定：自{rulesets.month_label(int(from_month))}起使用 {code}")
