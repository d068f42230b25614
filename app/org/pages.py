"""Pages of the administrative tree: the tree, a township, a village with its groups; forms that post plainly."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.scope import Scope
from app.deps import DbSession
from app.errors import ValidationFailed, form_errors
from app.org import service as org
from app.web.templates import redirect, render

router = APIRouter(include_in_schema=False)

View = Depends(authorize(Perm.ORG_VIEW))
Manage = Depends(authorize(Perm.ORG_MANAGE))
GroupManage = Depends(authorize(Perm.GROUP_MANAGE))
Name = Annotated[str, Form(max_length=200)]


def _index_ctx(session: DbSession, p: Principal, **extra: object) -> dict[str, object]:
    flt = p.filter(Perm.ORG_VIEW)
    villages = org.list_villages(session, flt)
    by_township: dict[int, list[object]] = {}
    for v in villages:
        by_township.setdefault(v.township_id, []).append(v)
    townships = org.list_townships(session, flt)
    return {"townships": townships, "by_township": by_township, "can_manage": p.can(Perm.ORG_MANAGE),
            # a village clerk sees the name of the village's township, but no link to a page it may not open
            "township_links": {t.id for t in townships if p.covers(Perm.ORG_VIEW, Scope(township_id=t.id))},
            **extra}


@router.get("/org")
def index(request: Request, session: DbSession, p: Principal = View) -> Response:
    return render(request, "org/index.html", _index_ctx(session, p))


@router.post("/org/townships")
def create_township(request: Request, session: DbSession, p: Principal = Manage,
                    code: Name = "", name: Name = "") -> Response:
    with form_errors("org/index.html", lambda s: _index_ctx(s, p, form={"code": code, "name": name})):
        t = org.create_township(session, p.actor(), code=code, name=name)
    return redirect("/org", request, f"已新建乡镇：{t.name}")


def _township_ctx(session: DbSession, p: Principal, township_id: int, **extra: object) -> dict[str, object]:
    flt = p.filter(Perm.ORG_VIEW)
    return {"township": org.get_township(session, flt, township_id),
            "villages": org.list_villages(session, flt, township_id=township_id),
            "can_manage": p.can(Perm.ORG_MANAGE), **extra}


def _township_form(p: Principal, township_id: int, form: dict[str, str] | None = None) -> AbstractContextManager[None]:
    """A form of the township's page: refused, the page again with the reason (and `form`, what was typed)."""
    return form_errors("org/township.html", lambda s: _township_ctx(s, p, township_id, form=form))


@router.get("/org/townships/{township_id}")
def township(request: Request, session: DbSession, township_id: int, p: Principal = View) -> Response:
    return render(request, "org/township.html", _township_ctx(session, p, township_id))


@router.post("/org/townships/{township_id}/rename")
def rename_township(request: Request, session: DbSession, township_id: int, p: Principal = Manage,
                    name: Name = "") -> Response:
    with _township_form(p, township_id):
        org.rename_township(session, p.actor(), township_id, name)
    return redirect(f"/org/townships/{township_id}", request, "已改名")


@router.post("/org/townships/{township_id}/active")
def township_active(request: Request, session: DbSession, township_id: int, p: Principal = Manage,
                    active: Annotated[str, Form(max_length=5)] = "0") -> Response:
    with _township_form(p, township_id):
        org.set_township_active(session, p.actor(), township_id, active == "1")
    return redirect(f"/org/townships/{township_id}", request, "已启用" if active == "1" else "已停用")


@router.post("/org/townships/{township_id}/villages")
def create_village(request: Request, session: DbSession, township_id: int, p: Principal = Manage,
                   code: Name = "", name: Name = "") -> Response:
    with _township_form(p, township_id, {"code": code, "name": name}):
        v = org.create_village(session, p.actor(), township_id=township_id, code=code, name=name)
    return redirect(f"/org/townships/{township_id}", request, f"已新建村：{v.name}")


def _village_ctx(session: DbSession, p: Principal, village_id: int, **extra: object) -> dict[str, object]:
    v = org.get_village(session, p.filter(Perm.ORG_VIEW), village_id)
    return {"village": v, "groups": org.list_groups(session, village_id),
            "can_manage": p.can(Perm.ORG_MANAGE),
            "can_manage_groups": p.covers(Perm.GROUP_MANAGE, org.scope_of_village(session, village_id)),  # type: ignore[arg-type]
            "show_township_link": p.covers(Perm.ORG_VIEW, org.scope_of_township(session, v.township_id)),  # type: ignore[arg-type]
            **extra}


def _village_form(p: Principal, village_id: int, form: dict[str, str] | None = None) -> AbstractContextManager[None]:
    """A form of the village's page: refused, the page again with the reason (and `form`, what was typed)."""
    return form_errors("org/village.html", lambda s: _village_ctx(s, p, village_id, form=form))


@router.get("/org/villages/{village_id}")
def village(request: Request, session: DbSession, village_id: int, p: Principal = View) -> Response:
    return render(request, "org/village.html", _village_ctx(session, p, village_id))


@router.post("/org/villages/{village_id}/rename")
def rename_village(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                   name: Name = "") -> Response:
    with _village_form(p, village_id):
        org.rename_village(session, p.actor(), village_id, name)
    return redirect(f"/org/villages/{village_id}", request, "已改名")


@router.post("/org/villages/{village_id}/active")
def village_active(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                   active: Annotated[str, Form(max_length=5)] = "0") -> Response:
    with _village_form(p, village_id):
        org.set_village_active(session, p.actor(), village_id, active == "1")
    return redirect(f"/org/villages/{village_id}", request, "已启用" if active == "1" else "已停用")


@router.post("/org/villages/{village_id}/groups")
def create_group(request: Request, session: DbSession, village_id: int, p: Principal = GroupManage,
                 number: Annotated[str, Form(max_length=10)] = "", name: Name = "") -> Response:
    with _village_form(p, village_id, {"number": number, "name": name}):
        if not number.strip().isdigit():
            raise ValidationFailed("小组编号必须是 1 到 999 之间的整数", details={"field": "number"})
        g = org.create_group(session, p.actor(), village_id=village_id, number=int(number), name=name or None)
    return redirect(f"/org/villages/{village_id}", request, f"已新建：{g.name}")


@router.post("/org/groups/{group_id}/rename")
def rename_group(request: Request, session: DbSession, group_id: int, p: Principal = GroupManage,
                 name: Name = "") -> Response:
    g = org.rename_group(session, p.actor(), group_id, name)
    return redirect(f"/org/villages/{g.village_id}", request, "已改名")


@router.post("/org/groups/{group_id}/active")
def group_active(request: Request, session: DbSession, group_id: int, p: Principal = GroupManage,
                 active: Annotated[str, Form(max_length=5)] = "0") -> Response:
    g = org.set_group_active(session, p.actor(), group_id, active == "1")
    return redirect(f"/org/villages/{g.village_id}", request, "已启用" if active == "1" else "已停用")
