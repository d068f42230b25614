"""`zhenfeng demo`: a demo county for trying the product: 2 townships, 6 villages with groups and stores, about
1,500 households with their members, a year of monthly evaluations (committees, rounds in every state, points in
the ledger, redemptions at the stores, black-list postings lifted through rectification, credit-file consents: see
app/demo/rounds.py), and one account for every role. The county's dashboard has something to point at: a village
that finalised months late, one short of the red and black lists' coverage target, one whose objections were upheld
three times; and one village's members rate separately, one of them out of line (the fairness page:
app/demo/panel.py). Later issues extend it with their own data.

Deterministic (seeded) except for the passwords, which are random and printed once.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from app.auth.models import ROLE_LABELS, Role, User
from app.auth.security import generate_password
from app.auth.service import accounts as auth
from app.config import Settings
from app.core.clock import DISPLAY_ZONE, to_local, utcnow
from app.core.context import Actor
from app.core.month import add_months, month_of
from app.core.scope import ScopeFilter
from app.demo import rounds as demo_rounds
from app.demo.people import FamilyMaker
from app.errors import Conflict
from app.households.models import Household
from app.households.service import households, imports
from app.org import service as org
from app.org.models import Village
from app.org.service import cn_number
from app.rulesets import service as rulesets

TOWNSHIPS = [
    ("101", "城关镇", [("001", "红旗村", 6), ("002", "桃园村", 5), ("003", "清水村", 4)]),
    ("102", "振风乡", [("001", "新民村", 5), ("002", "杨柳村", 6), ("003", "石桥村", 4)]),
]


@dataclass(frozen=True)
class DemoAccount:
    login: str
    display_name: str
    role: Role
    scope: str
    password: str


def is_empty(session: Session) -> bool:
    return session.execute(select(func.count()).select_from(User)).scalar_one() == 0


def roster_csv(maker: FamilyMaker, households: int, groups: int) -> bytes:
    """A village's roster as the clerk's CSV would hold it, one row per member."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["户号", "村民小组", "姓名", "与户主关系", "性别", "出生日期", "身份证号", "联系电话", "是否党员",
                "是否外出务工", "家庭住址"])
    for n in range(1, households + 1):
        group = maker.rng.randrange(1, groups + 1)
        address = f"{group}组{maker.rng.randrange(1, 80)}号"
        for person in maker.family():
            w.writerow([f"{n:03d}", f"第{cn_number(group)}村民小组", person.name, person.relation, person.gender,
                        person.birth.isoformat(), person.id_number, person.phone or "",
                        "是" if person.party_member else "否", "是" if person.living_away else "否",
                        address if person.relation == "户主" else ""])
    return buf.getvalue().encode("utf-8")


def load(session: Session, settings: Settings, *, passwords: dict[str, str] | None = None,
         households_per_village: int = 250, seed: int = 2026, history_months: int = 12,
         now: datetime | None = None) -> list[DemoAccount]:
    """Fill an empty, migrated database. Raises Conflict if it already holds accounts.

    The rosters go through the real import (preview, then apply), as a clerk's files would. The history ends in the
    month of `now` (default: now; the tests pass a fixed day to get the same demo whatever the date)."""
    if not is_empty(session):
        raise Conflict("数据库中已有账号：演示数据只能装入空数据库")
    actor = Actor.system("演示数据")
    county = org.ensure_county(session, actor, code=settings.county_code, name=settings.county_name)
    villages = []
    townships = []
    for t_suffix, t_name, vlist in TOWNSHIPS:
        t = org.create_township(session, actor, code=county.code + t_suffix, name=t_name)
        townships.append(t)
        for v_suffix, v_name, n_groups in vlist:
            v = org.create_village(session, actor, township_id=t.id, code=t.code + v_suffix, name=v_name)
            villages.append(v)
            for n in range(1, n_groups + 1):
                org.create_group(session, actor, village_id=v.id, number=n)
            org.create_store(session, actor, village_id=v.id, name=f"{v.name}振风超市")
    for index, v in enumerate(villages):
        n_groups = len(org.list_groups(session, v.id))
        data = roster_csv(FamilyMaker(seed, index), households_per_village, n_groups)
        batch = imports.preview(session, actor, village_id=v.id, file_name=f"{v.name}花名册.csv", data=data)
        imports.apply(session, actor, village_id=v.id, batch_id=batch.id)
    now = to_local(now or utcnow()) or utcnow()
    # the county default ruleset, in force for the past year
    rulesets.ensure_default(session, actor, from_month=add_months(month_of(now), -12))
    # the rosters stand for households registered before the demo's year of evaluations began
    session.execute(update(Household).values(created_at=datetime(now.year - 1, 1, 1, tzinfo=DISPLAY_ZONE)))
    first_village = villages[0]
    first_household = households.search(session, ScopeFilter(village_ids=frozenset({first_village.id})),
                                        village_id=first_village.id, limit=1).rows
    store = org.list_stores(session, ScopeFilter(village_ids=frozenset({first_village.id})))[0]
    plan = [
        ("admin", "王建国", Role.COUNTY_ADMIN, {}, county.name),
        ("reviewer", "李秀英", Role.TOWNSHIP_REVIEWER, {"township_id": townships[0].id}, townships[0].name),
        ("clerk", "张志强", Role.VILLAGE_CLERK, {"village_id": first_village.id}, first_village.name),
        ("member", "刘德华", Role.COMMITTEE_MEMBER, {"village_id": first_village.id}, first_village.name),
        ("storekeeper", "陈桂兰", Role.STORE_CLERK, {"store_id": store.id}, store.name),
        ("household", first_household[0].head_name if first_household else "农户", Role.HOUSEHOLD,
         {"household_id": first_household[0].id if first_household else None},
         f"{first_village.name} 户号 {first_household[0].number if first_household else ''}"),
    ]
    accounts: list[DemoAccount] = []
    member: User | None = None
    for login, name, role, scope, scope_label in plan:
        password = (passwords or {}).get(login) or generate_password()
        user = auth.create_user(session, actor, login=login, display_name=name, password=password,
                                must_change_password=False)
        auth.grant_role(session, actor, user.id, role.value, **scope)  # type: ignore[arg-type]
        accounts.append(DemoAccount(login, name, role, scope_label, password))
        if login == "member":
            member = user
    demo_rounds.load_history(session, actor, villages, seed=seed, first_member=member, months=history_months,
                             now=now)
    _notice(session, actor, first_village, settings)
    return accounts


DEMO_NOTICE = "DEMQ2345"  # the first village's results notice: a known code to try the public verification with


def _notice(session: Session, actor: Actor, village: Village, settings: Settings) -> None:
    """The first village's latest public round as a registered results notice (with its PDF when the fonts are
    installed)."""
    from app.evaluation.models import EvalRound
    from app.notices.service import batch, notices, render

    month = session.execute(select(func.max(EvalRound.month)).where(
        col(EvalRound.village_id) == village.id, col(EvalRound.status).in_(["publicised", "finalised"]))
    ).scalar_one_or_none()
    if month is None:
        return
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    d = notices.draft(session, actor, "results", village.id, month, verify_base=base,
                      code=DEMO_NOTICE)
    notices.register(session, actor, d, None if render.missing_parts() else notices.render_pdf(d),
                     key=notices.notice_key(settings.secret_key))
    if not render.missing_parts():  # the month's notices of the first township, printed in one go
        b = batch.start(session, actor, village.township_id, month, "pdf")
        batch.build_here(session, actor, b.id, base, key=notices.notice_key(settings.secret_key))


def describe(accounts: list[DemoAccount]) -> str:
    lines = ["演示账号（密码只显示这一次，请记下）：", f"{'登录名':<12}{'密码':<16}{'角色':<10}范围"]
    for a in accounts:
        lines.append(f"{a.login:<15}{a.password:<18}{ROLE_LABELS[a.role]:<8}{a.scope}")
    return "\n".join(lines)
