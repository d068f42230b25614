"""JSON API of the administrative tree (/api/v1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.pagination import MAX_LIMIT, Page, paginate
from app.deps import DbSession
from app.org import service as org
from app.org.schemas import (
    ActiveIn,
    GroupIn,
    GroupOut,
    RenameIn,
    StoreOut,
    TownshipIn,
    TownshipOut,
    VillageIn,
    VillageOut,
)

router = APIRouter(prefix="/api/v1", tags=["行政区划"])

View = Depends(authorize(Perm.ORG_VIEW))
Manage = Depends(authorize(Perm.ORG_MANAGE))
GroupManage = Depends(authorize(Perm.GROUP_MANAGE))
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def links(status: int, source: str, param: str, targets: dict[str, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links of a response: each target (name: operationId) is called with `param` taken from `source`, a
    JSON pointer into the body. Clients and the stateful schemathesis tests follow them from an object to its uses."""
    return {status: {"description": "成功", "links": {
        name: {"operationId": op, "parameters": {param: f"$response.body#{source}"}} for name, op in targets.items()}}}


TOWNSHIP_USES = dict(get="get_township_api_v1_townships__township_id__get",
                     rename="rename_township_api_v1_townships__township_id__patch",
                     active="township_active_api_v1_townships__township_id__active_put",
                     villages="list_villages_api_v1_villages_get")
VILLAGE_USES = dict(get="get_village_api_v1_villages__village_id__get",
                    rename="rename_village_api_v1_villages__village_id__patch",
                    active="village_active_api_v1_villages__village_id__active_put",
                    groups="list_groups_api_v1_villages__village_id__groups_get",
                    new_group="create_group_api_v1_villages__village_id__groups_post",
                    new_household="create_api_v1_villages__village_id__households_post",
                    points="village_summary_api_v1_villages__village_id__points_summary_get",
                    ruleset="village_ruleset_api_v1_villages__village_id__ruleset_get")
GROUP_USES = dict(rename="rename_group_api_v1_groups__group_id__patch",
                  active="group_active_api_v1_groups__group_id__active_put")
STORE_USES = dict(items="items_api_v1_stores__store_id__items_get",
                  scan="scan_api_v1_stores__store_id__scan_post",
                  redeem="redeem_api_v1_stores__store_id__redemptions_post")


@router.get("/townships", response_model=Page[TownshipOut], summary="乡镇列表",
            responses=links(200, "/items/0/id", "township_id", TOWNSHIP_USES))
def list_townships(session: DbSession, p: Principal = View, offset: Offset = 0, limit: Limit = 50) -> Page:
    rows = [TownshipOut.model_validate(t) for t in org.list_townships(session, p.filter(Perm.ORG_VIEW))]
    return paginate(rows, offset, limit)


@router.post("/townships", response_model=TownshipOut, status_code=201, summary="新建乡镇",
             responses=links(201, "/id", "township_id", TOWNSHIP_USES))
def create_township(body: TownshipIn, session: DbSession, p: Principal = Manage) -> TownshipOut:
    return TownshipOut.model_validate(org.create_township(session, p.actor(), code=body.code, name=body.name))


@router.get("/townships/{township_id}", response_model=TownshipOut, summary="乡镇详情")
def get_township(township_id: int, session: DbSession, p: Principal = View) -> TownshipOut:
    return TownshipOut.model_validate(org.get_township(session, p.filter(Perm.ORG_VIEW), township_id))


@router.patch("/townships/{township_id}", response_model=TownshipOut, summary="重命名乡镇")
def rename_township(township_id: int, body: RenameIn, session: DbSession, p: Principal = Manage) -> TownshipOut:
    return TownshipOut.model_validate(org.rename_township(session, p.actor(), township_id, body.name))


@router.put("/townships/{township_id}/active", response_model=TownshipOut, summary="启用或停用乡镇")
def township_active(township_id: int, body: ActiveIn, session: DbSession, p: Principal = Manage) -> TownshipOut:
    return TownshipOut.model_validate(org.set_township_active(session, p.actor(), township_id, body.active))


@router.get("/villages", response_model=Page[VillageOut], summary="村列表",
            responses=links(200, "/items/0/id", "village_id", VILLAGE_USES))
def list_villages(session: DbSession, p: Principal = View, township_id: int | None = None,
                  offset: Offset = 0, limit: Limit = 50) -> Page:
    rows = [VillageOut.model_validate(v)
            for v in org.list_villages(session, p.filter(Perm.ORG_VIEW), township_id=township_id)]
    return paginate(rows, offset, limit)


@router.post("/villages", response_model=VillageOut, status_code=201, summary="新建村",
             responses=links(201, "/id", "village_id", VILLAGE_USES))
def create_village(body: VillageIn, session: DbSession, p: Principal = Manage) -> VillageOut:
    return VillageOut.model_validate(org.create_village(session, p.actor(), township_id=body.township_id,
                                                        code=body.code, name=body.name))


@router.get("/villages/{village_id}", response_model=VillageOut, summary="村详情")
def get_village(village_id: int, session: DbSession, p: Principal = View) -> VillageOut:
    return VillageOut.model_validate(org.get_village(session, p.filter(Perm.ORG_VIEW), village_id))


@router.patch("/villages/{village_id}", response_model=VillageOut, summary="重命名村")
def rename_village(village_id: int, body: RenameIn, session: DbSession, p: Principal = Manage) -> VillageOut:
    return VillageOut.model_validate(org.rename_village(session, p.actor(), village_id, body.name))


@router.put("/villages/{village_id}/active", response_model=VillageOut, summary="启用或停用村")
def village_active(village_id: int, body: ActiveIn, session: DbSession, p: Principal = Manage) -> VillageOut:
    return VillageOut.model_validate(org.set_village_active(session, p.actor(), village_id, body.active))


@router.get("/villages/{village_id}/groups", response_model=Page[GroupOut], summary="村民小组列表",
            responses=links(200, "/items/0/id", "group_id", GROUP_USES))
def list_groups(village_id: int, session: DbSession, p: Principal = View, offset: Offset = 0,
                limit: Limit = 50) -> Page:
    return paginate([GroupOut.model_validate(g) for g in org.list_groups(session, village_id)], offset, limit)


@router.post("/villages/{village_id}/groups", response_model=GroupOut, status_code=201, summary="新建村民小组",
             responses=links(201, "/id", "group_id", GROUP_USES))
def create_group(village_id: int, body: GroupIn, session: DbSession, p: Principal = GroupManage) -> GroupOut:
    return GroupOut.model_validate(org.create_group(session, p.actor(), village_id=village_id, number=body.number,
                                                    name=body.name))


@router.patch("/groups/{group_id}", response_model=GroupOut, summary="重命名村民小组")
def rename_group(group_id: int, body: RenameIn, session: DbSession, p: Principal = GroupManage) -> GroupOut:
    return GroupOut.model_validate(org.rename_group(session, p.actor(), group_id, body.name))


@router.put("/groups/{group_id}/active", response_model=GroupOut, summary="启用或停用村民小组")
def group_active(group_id: int, body: ActiveIn, session: DbSession, p: Principal = GroupManage) -> GroupOut:
    return GroupOut.model_validate(org.set_group_active(session, p.actor(), group_id, body.active))


@router.get("/stores", response_model=Page[StoreOut], summary="超市列表",
            responses=links(200, "/items/0/id", "store_id", STORE_USES))
def list_stores(session: DbSession, p: Principal = View, offset: Offset = 0, limit: Limit = 50) -> Page:
    rows = [StoreOut.model_validate(s) for s in org.list_stores(session, p.filter(Perm.ORG_VIEW))]
    return paginate(rows, offset, limit)
