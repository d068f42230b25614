"""JSON API of rulesets (积分细则): list, read, import a version (TOML), assign, and the version a village uses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app import rules
from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import to_local, utcnow
from app.deps import DbSession, end_reads, read_only_session, write_txn
from app.rulesets import service as rulesets
from app.web.templates import download

router = APIRouter(prefix="/api/v1", tags=["积分细则"])
View = Depends(authorize(Perm.RULESET_VIEW))
Manage = Depends(authorize(Perm.RULESET_MANAGE))
Code = Annotated[str, Query(min_length=1, max_length=40)]
Version = Annotated[int, Query(ge=1, le=1_000_000)]


class RulesetOut(BaseModel):
    id: int
    code: str
    version: int
    name: str
    effective_from: int
    created_by: str


class RulesetImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    toml: str = Field(min_length=1, max_length=rulesets.MAX_TOML_BYTES, description="积分细则的 TOML 文本")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=40)
    from_month: StrictInt = Field(ge=200001, le=210012, description="从哪个月起适用，如 202612")
    village_id: StrictInt | None = Field(default=None, ge=1, le=2**31 - 1, description="不填：全县")


def _out(row: Any) -> RulesetOut:
    return RulesetOut(id=row.id, code=row.code, version=row.version, name=row.name,
                      effective_from=row.effective_from, created_by=row.created_by)


@router.get("/rulesets", response_model=list[RulesetOut], summary="全部积分细则版本")
def list_rulesets(session: DbSession, p: Principal = View) -> list[RulesetOut]:
    return [_out(r) for r in rulesets.list_versions(session)]


@router.get("/ruleset", summary="一版积分细则的全部内容（JSON）")
def get_ruleset(session: DbSession, code: Code, version: Version, p: Principal = View) -> dict[str, Any]:
    return rules.to_dict(rulesets.get(session, code, version).ruleset)


@router.get("/ruleset.toml", summary="下载一版积分细则（TOML）", response_class=Response,
            responses={200: {"description": "积分细则的 TOML 文本", "content": {
                rulesets.TOML_MEDIA.split(";")[0]: {"schema": {"type": "string"}}}}})
def ruleset_toml(session: DbSession, code: Code, version: Version, p: Principal = View) -> Response:
    return download(rulesets.export_file(session, code, version))


@router.post("/rulesets", response_model=RulesetOut, status_code=201, summary="导入一版积分细则（TOML，逐项校验）",
             responses={201: {"description": "成功", "links": {name: {
                 "operationId": op, "parameters": {"code": "$response.body#/code", "version": "$response.body#/version"}}
                 for name, op in (("get", "get_ruleset_api_v1_ruleset_get"),
                                  ("toml", "ruleset_toml_api_v1_ruleset_toml_get"))}}})
@read_only_session
def import_ruleset(request: Request, body: RulesetImportIn, session: DbSession, p: Principal = Manage) -> RulesetOut:
    end_reads(session)
    draft = rulesets.read_toml(body.toml)  # outside any transaction
    with write_txn(request) as ws:
        return _out(rulesets.store(ws, p.actor(), draft))


@router.post("/ruleset-assignments", status_code=201, summary="指定全县或某村从某月起使用的积分细则")
def assign(body: AssignIn, session: DbSession, p: Principal = Manage) -> dict[str, Any]:
    row = rulesets.assign(session, p.actor(), code=body.code, from_month=body.from_month, village_id=body.village_id)
    return {"village_id": row.village_id, "code": row.code, "from_month": row.from_month}


@router.get("/villages/{village_id}/ruleset", response_model=RulesetOut, summary="某村某月适用的积分细则版本")
def village_ruleset(village_id: int, session: DbSession, p: Principal = View,
                    month: Annotated[int | None, Query(ge=200001, le=210012)] = None) -> RulesetOut:
    now = to_local(utcnow()) or utcnow()
    return _out(rulesets.applicable(session, village_id, month or now.year * 100 + now.month).row)
