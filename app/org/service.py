"""Use-cases of the administrative tree. Services flush, never commit; every write is audited."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.scope import Scope, ScopeFilter
from app.errors import Conflict, NotFound, ValidationFailed, get_or_not_found
from app.org.models import County, Group, Store, StoreVillage, Township, Village

NAME_RE = re.compile(r"^[\u4e00-\u9fffA-Za-z0-9（）()·\-\s]{1,50}$")


def _name(value: str, what: str) -> str:
    name = (value or "").strip()
    if not name:
        raise ValidationFailed(f"请填写{what}名称", details={"field": "name"})
    if len(name) > 50:
        raise ValidationFailed(f"{what}名称不能超过 50 个字", details={"field": "name"})
    if not NAME_RE.match(name):
        raise ValidationFailed(f"{what}名称只能包含汉字、字母、数字和括号", details={"field": "name"})
    return name


def _snapshot(obj: Any, *fields: str) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in fields}


# ---- what townships, villages and groups share: listed, created, renamed, stopped and started alike -------------------

Unit = TypeVar("Unit", Township, Village, Group)
# the table's word in audit events ("org.village.rename") and object types, and in messages ("村名称不能超过 50 个字")
_KINDS: dict[type, tuple[str, str]] = {Township: ("township", "乡镇"), Village: ("village", "村"), Group: ("group", "小组")}


def _list(session: Session, model: type[Unit], order: Any, *where: Any, include_inactive: bool) -> list[Unit]:
    stmt = select(model).where(*where).order_by(order)
    if not include_inactive:
        stmt = stmt.where(model.active.is_(True))
    return list(session.execute(stmt).scalars())


def _created(session: Session, actor: Actor, unit: Unit, *fields: str) -> Unit:
    session.add(unit)
    session.flush()
    kind = _KINDS[type(unit)][0]
    audit.record(session, actor, f"org.{kind}.create", object_type=kind, object_id=unit.id,
                 after=_snapshot(unit, *fields))
    return unit


def _rename(session: Session, actor: Actor, model: type[Unit], unit_id: int, name: str) -> Unit:
    kind, label = _KINDS[model]
    unit = get_or_not_found(session, model, unit_id)
    before = _snapshot(unit, "name")
    unit.name = _name(name, label)
    session.flush()
    audit.record(session, actor, f"org.{kind}.rename", object_type=kind, object_id=unit.id,
                 before=before, after=_snapshot(unit, "name"))
    return unit


def _set_active(session: Session, actor: Actor, model: type[Unit], unit_id: int, active: bool,
                check: Callable[[Unit], None] = lambda unit: None) -> Unit:
    """Stop or start using a unit (nothing is deleted); `check` refuses the change for the unit's own reasons."""
    kind = _KINDS[model][0]
    unit = get_or_not_found(session, model, unit_id)
    if unit.active == active:
        return unit
    check(unit)
    unit.active = active
    unit.deactivated_at = None if active else utcnow()
    session.flush()
    audit.record(session, actor, f"org.{kind}.activate" if active else f"org.{kind}.deactivate",
                 object_type=kind, object_id=unit.id, before={"active": not active}, after={"active": active})
    return unit


# ---- county -------------------------------------------------------------------------------------------------------

def get_county(session: Session) -> County:
    county = session.execute(select(County).order_by(County.id).limit(1)).scalar_one_or_none()
    if county is None:
        raise NotFound("尚未建立县级信息，请先运行 `zhenfeng migrate`")
    return county


def ensure_county(session: Session, actor: Actor, *, code: str, name: str) -> County:
    """The one county of this deployment, created from the settings when missing."""
    county = session.execute(select(County).order_by(County.id).limit(1)).scalar_one_or_none()
    if county is not None:
        return county
    county = County(code=code, name=_name(name, "县"))
    session.add(county)
    session.flush()
    audit.record(session, actor, "org.county.create", object_type="county", object_id=county.id,
                 after=_snapshot(county, "code", "name"))
    return county


# ---- scopes -------------------------------------------------------------------------------------------------------

def scope_of_township(session: Session, township_id: int) -> Scope | None:
    t = session.get(Township, township_id)
    return Scope(township_id=t.id) if t else None


def scope_of_village(session: Session, village_id: int) -> Scope | None:
    v = session.get(Village, village_id)
    return Scope(township_id=v.township_id, village_id=v.id) if v else None


def scope_of_group(session: Session, group_id: int) -> Scope | None:
    g = session.get(Group, group_id)
    return scope_of_village(session, g.village_id) if g else None


def visible_village_ids(session: Session, flt: ScopeFilter) -> list[int] | None:
    """None means every village; otherwise the ids this filter reaches."""
    if flt.everything:
        return None
    ids = set(flt.village_ids)
    if flt.township_ids:
        ids.update(session.execute(select(Village.id).where(Village.township_id.in_(flt.township_ids))).scalars())
    return sorted(ids)


def _check(flt: ScopeFilter, scope: Scope) -> None:
    if not flt.covers(scope):
        raise NotFound()


# ---- townships ----------------------------------------------------------------------------------------------------

def _township_code(county: County, code: str) -> str:
    code = (code or "").strip()
    if not re.fullmatch(r"[0-9]{9}", code):  # ASCII only: \d takes any script's digits
        raise ValidationFailed("乡镇代码必须是 9 位数字（统计用区划代码，前 6 位为县代码）", details={"field": "code"})
    if not code.startswith(county.code):
        raise ValidationFailed(f"乡镇代码必须以本县代码 {county.code} 开头", details={"field": "code"})
    return code


def list_townships(session: Session, flt: ScopeFilter, *, include_inactive: bool = True) -> list[Township]:
    where = []
    if not flt.everything:
        village_township = select(Village.township_id).where(Village.id.in_(flt.village_ids))
        where.append(Township.id.in_(flt.township_ids) | Township.id.in_(village_township))
    return _list(session, Township, Township.code, *where, include_inactive=include_inactive)


def get_township(session: Session, flt: ScopeFilter, township_id: int) -> Township:
    t = get_or_not_found(session, Township, township_id)
    if not flt.everything and t.id not in flt.township_ids:
        vis = visible_village_ids(session, flt) or []
        if not session.execute(select(Village.id).where(Village.township_id == t.id, Village.id.in_(vis))).first():
            raise NotFound()
    return t


def create_township(session: Session, actor: Actor, *, code: str, name: str) -> Township:
    county = get_county(session)
    code = _township_code(county, code)
    name = _name(name, "乡镇")
    if session.execute(select(Township.id).where(Township.code == code)).first():
        raise Conflict(f"乡镇代码 {code} 已被使用", details={"field": "code"})
    t = Township(county_id=county.id, code=code, name=name)
    return _created(session, actor, t, "code", "name")


def rename_township(session: Session, actor: Actor, township_id: int, name: str) -> Township:
    return _rename(session, actor, Township, township_id, name)


def set_township_active(session: Session, actor: Actor, township_id: int, active: bool) -> Township:
    def no_active_villages(t: Township) -> None:
        if active:
            return
        n = session.execute(select(func.count()).select_from(Village)
                            .where(Village.township_id == t.id, Village.active.is_(True))).scalar_one()
        if n:
            raise Conflict(f"{t.name}下还有 {n} 个在用的村，请先停用这些村")

    return _set_active(session, actor, Township, township_id, active, no_active_villages)


# ---- villages -----------------------------------------------------------------------------------------------------

def list_villages(session: Session, flt: ScopeFilter, *, township_id: int | None = None,
                  include_inactive: bool = True) -> list[Village]:
    where = []
    vis = visible_village_ids(session, flt)
    if vis is not None:
        where.append(Village.id.in_(vis))
    if township_id is not None:
        where.append(Village.township_id == township_id)
    return _list(session, Village, Village.code, *where, include_inactive=include_inactive)


def get_village(session: Session, flt: ScopeFilter, village_id: int) -> Village:
    v = get_or_not_found(session, Village, village_id)
    _check(flt, Scope(township_id=v.township_id, village_id=v.id))
    return v


def create_village(session: Session, actor: Actor, *, township_id: int, code: str, name: str) -> Village:
    t = session.get(Township, township_id)
    if t is None:
        raise ValidationFailed("所选乡镇不存在", details={"field": "township_id"})
    if not t.active:
        raise ValidationFailed(f"{t.name}已停用，不能在其下新建村", details={"field": "township_id"})
    code = (code or "").strip()
    if not re.fullmatch(r"[0-9]{12}", code):
        raise ValidationFailed("村代码必须是 12 位数字（统计用区划代码，前 9 位为乡镇代码）", details={"field": "code"})
    if not code.startswith(t.code):
        raise ValidationFailed(f"村代码必须以所属乡镇代码 {t.code} 开头", details={"field": "code"})
    if session.execute(select(Village.id).where(Village.code == code)).first():
        raise Conflict(f"村代码 {code} 已被使用", details={"field": "code"})
    v = Village(township_id=t.id, code=code, name=_name(name, "村"))
    return _created(session, actor, v, "township_id", "code", "name")


def rename_village(session: Session, actor: Actor, village_id: int, name: str) -> Village:
    return _rename(session, actor, Village, village_id, name)


def set_village_active(session: Session, actor: Actor, village_id: int, active: bool) -> Village:
    def township_in_use(v: Village) -> None:
        if not active:
            return
        t = session.get(Township, v.township_id)
        if t is not None and not t.active:
            raise Conflict(f"{t.name}已停用，请先启用乡镇")

    return _set_active(session, actor, Village, village_id, active, township_in_use)


# ---- groups -------------------------------------------------------------------------------------------------------

def list_groups(session: Session, village_id: int, *, include_inactive: bool = True) -> list[Group]:
    return _list(session, Group, Group.number, Group.village_id == village_id, include_inactive=include_inactive)


def create_group(session: Session, actor: Actor, *, village_id: int, number: int, name: str | None = None) -> Group:
    v = get_or_not_found(session, Village, village_id)
    if not v.active:
        raise ValidationFailed(f"{v.name}已停用，不能新建村民小组")
    if not isinstance(number, int) or not 1 <= number <= 999:
        raise ValidationFailed("小组编号必须是 1 到 999 之间的整数", details={"field": "number"})
    if session.execute(select(Group.id).where(Group.village_id == v.id, Group.number == number)).first():
        raise Conflict(f"{v.name}已有第 {number} 组", details={"field": "number"})
    g = Group(village_id=v.id, number=number, name=_name(name or default_group_name(number), "小组"))
    return _created(session, actor, g, "village_id", "number", "name")


def rename_group(session: Session, actor: Actor, group_id: int, name: str) -> Group:
    return _rename(session, actor, Group, group_id, name)


def set_group_active(session: Session, actor: Actor, group_id: int, active: bool) -> Group:
    return _set_active(session, actor, Group, group_id, active)


_CN_DIGITS = "零一二三四五六七八九"


def cn_number(n: int) -> str:
    """1 -> 一, 12 -> 十二, 20 -> 二十, 105 -> 一百零五 (for names like 第十二村民小组)."""
    if n < 10:
        return _CN_DIGITS[n]
    if n < 20:
        return "十" + (_CN_DIGITS[n % 10] if n % 10 else "")
    if n < 100:
        return _CN_DIGITS[n // 10] + "十" + (_CN_DIGITS[n % 10] if n % 10 else "")
    rest = n % 100
    tail = "" if rest == 0 else ("零" + _CN_DIGITS[rest] if rest < 10 else cn_number(rest) if rest >= 20
                                 else "一" + cn_number(rest))
    return _CN_DIGITS[n // 100] + "百" + tail


def default_group_name(number: int) -> str:
    return f"第{cn_number(number)}村民小组"


# ---- stores -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreFacts:
    store_id: int
    village_id: int  # its own village
    township_id: int
    served: tuple[int, ...]  # its own village first, then the others of the township it also serves


def store_facts(session: Session, store_id: int) -> StoreFacts | None:
    """Where a store is and which villages it serves: two statements, read once per transaction (a till's request
    asks for them while authorising and again while redeeming). `forget_store` drops them after a change."""
    cache: dict[int, StoreFacts | None] = session.info.setdefault("store_facts", {})
    if store_id not in cache:
        # the store itself comes along (into the session's identity map: a later session.get costs nothing)
        row = session.execute(select(Store, Village.township_id)
                              .join(Village, Village.id == Store.village_id).where(Store.id == store_id)).first()
        if row is None:
            cache[store_id] = None
        else:
            store, township_id = row
            extra = session.execute(select(StoreVillage.village_id).where(StoreVillage.store_id == store_id)
                                    .order_by(StoreVillage.village_id)).scalars()
            cache[store_id] = StoreFacts(store_id, store.village_id, township_id, (store.village_id, *extra))
    return cache[store_id]


def forget_store(session: Session, store_id: int) -> None:
    session.info.get("store_facts", {}).pop(store_id, None)


def scope_of_store(session: Session, store_id: int) -> Scope | None:
    f = store_facts(session, store_id)
    return None if f is None else Scope(township_id=f.township_id, village_id=f.village_id, store_id=store_id)


def list_stores(session: Session, flt: ScopeFilter) -> list[Store]:
    stmt = select(Store).order_by(Store.village_id, Store.id)
    if not flt.everything:
        stmt = stmt.join(Village, Village.id == Store.village_id).where(
            Store.id.in_(flt.store_ids) | Store.village_id.in_(flt.village_ids)
            | Village.township_id.in_(flt.township_ids))
    return list(session.execute(stmt).scalars())


def create_store(session: Session, actor: Actor, *, village_id: int, name: str) -> Store:
    if session.get(Village, village_id) is None:
        raise ValidationFailed("所选村不存在", details={"field": "village_id"})
    name = (name or "").strip()
    if not name or len(name) > 60:
        raise ValidationFailed("请填写超市名称（不超过 60 个字）", details={"field": "name"})
    s = Store(village_id=village_id, name=name)
    session.add(s)
    session.flush()
    audit.record(session, actor, "org.store.create", object_type="store", object_id=s.id,
                 after={"village_id": village_id, "name": name})
    return s
