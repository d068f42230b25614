"""JSON API: who am I, API tokens, and (county admins) users and grants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.schemas import (
    ActiveIn,
    GrantIn,
    GrantOut,
    MeOut,
    NewTokenOut,
    PasswordChangeIn,
    PasswordResetIn,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    UserPatch,
)
from app.auth.service import accounts as auth
from app.core.pagination import MAX_LIMIT, Page
from app.deps import DbSession

router = APIRouter(prefix="/api/v1", tags=["账号"])
SignedIn = Depends(authorize(Perm.SIGNED_IN))
UsersManage = Depends(authorize(Perm.USERS_MANAGE))


def _grant_out(g: auth.GrantView) -> GrantOut:
    return GrantOut(id=g.id, role=g.role.value, township_id=g.township_id, village_id=g.village_id,
                    store_id=g.store_id, household_id=g.household_id, label=g.label)


@router.get("/me", response_model=MeOut, summary="当前用户与授权")
def me(p: auth.Principal = SignedIn) -> MeOut:
    return MeOut(user_id=p.user_id, login=p.login, display_name=p.display_name, via=p.via,
                 grants=[_grant_out(g) for g in p.grants])


@router.post("/me/password", status_code=204, summary="修改自己的密码")
def change_password(body: PasswordChangeIn, session: DbSession, p: auth.Principal = SignedIn) -> None:
    auth.change_own_password(session, p.actor(), p.user_id, current=body.current_password, new=body.new_password,
                             keep_session_id=p.session_id)


@router.get("/me/tokens", response_model=list[TokenOut], summary="我的 API 令牌")
def my_tokens(session: DbSession, p: auth.Principal = SignedIn) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in auth.list_api_tokens(session, p.user_id)]


@router.post("/me/tokens", response_model=NewTokenOut, status_code=201, summary="新建 API 令牌（只显示一次）")
def create_token(body: TokenIn, session: DbSession, response: Response, p: auth.Principal = SignedIn) -> NewTokenOut:
    response.headers["Cache-Control"] = "no-store"  # the secret is in this answer, once
    new = auth.create_api_token(session, p.actor(), user_id=p.user_id, grant_id=body.grant_id, name=body.name,
                                days=body.days, via=p.via)
    return NewTokenOut(**TokenOut.model_validate(new.token).model_dump(), token=new.secret)


@router.delete("/me/tokens/{token_id}", status_code=204, summary="吊销 API 令牌")
def revoke_token(token_id: int, session: DbSession, p: auth.Principal = SignedIn) -> None:
    auth.revoke_api_token(session, p.actor(), user_id=p.user_id, token_id=token_id, via=p.via)


@router.get("/users", response_model=Page[UserOut], summary="账号列表")
def list_users(session: DbSession, p: auth.Principal = UsersManage,
               q: Annotated[str | None, Query(max_length=40)] = None,
               offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
               limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50) -> Page[UserOut]:
    rows, total = auth.list_users(session, q=q, offset=offset, limit=limit)
    return Page[UserOut](items=[UserOut.model_validate(u) for u in rows], total=total, offset=offset, limit=limit)


@router.post("/users", response_model=UserOut, status_code=201, summary="新建账号")
def create_user(body: UserIn, session: DbSession, p: auth.Principal = UsersManage) -> UserOut:
    return UserOut.model_validate(auth.create_user(session, p.actor(), login=body.login,
                                                   display_name=body.display_name, password=body.password,
                                                   phone=body.phone))


@router.get("/users/{user_id}", response_model=UserOut, summary="账号详情")
def get_user(user_id: int, session: DbSession, p: auth.Principal = UsersManage) -> UserOut:
    return UserOut.model_validate(auth.get_user(session, user_id))


@router.patch("/users/{user_id}", response_model=UserOut, summary="修改账号信息")
def update_user(user_id: int, body: UserPatch, session: DbSession, p: auth.Principal = UsersManage) -> UserOut:
    return UserOut.model_validate(auth.update_user(session, p.actor(), user_id, display_name=body.display_name,
                                                   phone=body.phone))


@router.put("/users/{user_id}/active", response_model=UserOut, summary="启用或停用账号")
def user_active(user_id: int, body: ActiveIn, session: DbSession, p: auth.Principal = UsersManage) -> UserOut:
    return UserOut.model_validate(auth.set_user_active(session, p.actor(), user_id, body.active))


@router.post("/users/{user_id}/password", status_code=204, summary="管理员重置密码")
def reset_password(user_id: int, body: PasswordResetIn, session: DbSession, p: auth.Principal = UsersManage) -> None:
    auth.admin_reset_password(session, p.actor(), user_id, body.password)


@router.get("/users/{user_id}/grants", response_model=list[GrantOut], summary="账号的授权")
def user_grants(user_id: int, session: DbSession, p: auth.Principal = UsersManage) -> list[GrantOut]:
    return [_grant_out(g) for g in auth.grant_views(session, user_id)]


@router.post("/users/{user_id}/grants", response_model=GrantOut, status_code=201, summary="添加授权")
def add_grant(user_id: int, body: GrantIn, session: DbSession, p: auth.Principal = UsersManage) -> GrantOut:
    g = auth.grant_role(session, p.actor(), user_id, body.role, township_id=body.township_id,
                        village_id=body.village_id, store_id=body.store_id, household_id=body.household_id)
    return GrantOut.model_validate(g)


@router.delete("/grants/{grant_id}", status_code=204, summary="撤销授权")
def revoke_grant(grant_id: int, session: DbSession, p: auth.Principal = UsersManage) -> None:
    auth.revoke_grant(session, p.actor(), grant_id)
