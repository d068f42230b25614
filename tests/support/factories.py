"""Plain factory functions for tests: make_xxx(session, **overrides)."""

from __future__ import annotations

import itertools
from datetime import date

from sqlalchemy.orm import Session

from app.auth.models import RoleGrant, User
from app.auth.service import accounts as auth
from app.core.context import Actor
from app.households.models import Household
from app.households.service import households as hh
from app.org import service as org
from app.org.models import Group, Store, Township, Village
from app.store.models import Item
from app.store.service import stock as stock_service
from app.store.service import stores as store_service

SYSTEM = Actor.system("测试")
_seq = itertools.count(1)


def make_township(session: Session, **kw: object) -> Township:
    n = next(_seq)
    county = org.get_county(session)
    return org.create_township(session, SYSTEM, code=str(kw.get("code") or f"{county.code}{200 + n % 700:03d}"),
                               name=str(kw.get("name") or f"测试镇{n}"))


def make_village(session: Session, township: Township | None = None, **kw: object) -> Village:
    township = township or make_township(session)
    n = next(_seq)
    return org.create_village(session, SYSTEM, township_id=township.id,  # type: ignore[arg-type]
                              code=str(kw.get("code") or f"{township.code}{n % 1000:03d}"),
                              name=str(kw.get("name") or f"测试村{n}"))


def make_group(session: Session, village: Village, number: int = 1) -> Group:
    return org.create_group(session, SYSTEM, village_id=village.id, number=number)  # type: ignore[arg-type]


def make_store(session: Session, village: Village) -> Store:
    return org.create_store(session, SYSTEM, village_id=village.id, name=f"{village.name}振风超市")  # type: ignore[arg-type]


def make_user(session: Session, login: str | None = None, password: str = "Passw0rd-test", **kw: object) -> User:
    n = next(_seq)
    return auth.create_user(session, SYSTEM, login=login or f"user{n}", display_name=str(kw.get("name", f"用户{n}")),
                            password=password, must_change_password=bool(kw.get("must_change_password", False)))


def make_grant(session: Session, user: User, role: str, **scope: int) -> RoleGrant:
    return auth.grant_role(session, SYSTEM, user.id, role, **scope)  # type: ignore[arg-type]


def make_household(session: Session, village: Village, number: str | None = None, head: str | None = None
                   ) -> Household:
    n = next(_seq)
    return hh.create_household(session, SYSTEM, village_id=village.id, number=number or f"{n:04d}",  # type: ignore[arg-type]
                               head=hh.MemberInput(name=head or "张三", relation="户主"))


def make_stocked_item(session: Session, store: Store, *, name: str = "洗衣粉", points: int = 10, stock: int = 20,
                      cost_fen: int = 500, barcode: str | None = None, unit: str = "袋") -> Item:
    """An item of the store, with `stock` units bought from a fund of the store's village."""
    item = stock_service.create_item(session, SYSTEM, store.id, stock_service.ItemInput(  # type: ignore[arg-type]
        name=name, unit=unit, points=points, cost_fen=cost_fen, barcode=barcode))
    if stock:
        fund = store_service.record_fund(session, SYSTEM, village_id=store.village_id, source="county",
                                         amount_fen=cost_fen * stock + 100, received_on=date(2026, 1, 5),
                                         document_no="测试〔2026〕1号")
        stock_service.purchase(session, SYSTEM, item.id, quantity=stock, cost_fen=cost_fen * stock,  # type: ignore[arg-type]
                               fund_id=fund.id)  # type: ignore[arg-type]
    return item
