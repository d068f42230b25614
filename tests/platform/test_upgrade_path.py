"""The upgrade path: a database made at the first migration (0001) and filled era by era, then upgraded one
revision at a time to head, must come out with the models' schema, every proof clean and every row it was given.

The app's services write today's schema, so each era is filled the way that era's app would have left it: rows
inserted straight into the tables as they stand at that revision (the live columns, reflected; typed as the models
type them), the audit chain hashed with the app's own hash, the ledger's seq and balance_after chained by hand. The
data migrations (0009 fills the dashboards' summaries and the redemptions' village from what is stored) therefore
run on real old rows. At head the app's services write on top (an award, a redemption, a masking change) and
`audit verify`, `ledger verify` and `store verify` must all say the books are intact.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

import app.models  # noqa: F401  (registers every table)
from app import cli, migrate, rules
from app.audit import service as audit
from app.audit.models import AuditEvent
from app.auth import security
from app.config import Settings
from app.core.context import Actor
from app.db import Database, build_engine, metadata
from app.ledger import service as ledger
from app.notices.service import notices
from app.rulesets import service as rulesets
from app.store.service import counter
from tests.support.db import empty_database, schema_diff
from tests.support.web import TEST_SECRET

FIRST, HEAD = "0001", "0011"
T0 = datetime(2026, 1, 5, 1, 30, tzinfo=UTC)  # the county went live in January 2026
ERASED = "（已按保存期限删除）"  # what 0009's trigger lets a check visit's notes become
NOTICE_CODE = "UPGR2345"


@pytest.fixture
def old_url(tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables at all): a SQLite file, or a fresh PostgreSQL database of its own."""
    with empty_database(tmp_path, "zf_upgrade") as url:
        yield url


# ---- what was put in, to check against afterwards ------------------------------------------------------------------

@dataclass
class World:
    ids: dict[str, Any] = field(default_factory=dict)  # named rows: "v1", "store1", "hh" (per village) ...
    rows: Counter[str] = field(default_factory=Counter)  # rows inserted per table
    accounts: dict[str, int] = field(default_factory=dict)  # account code -> id
    kept: dict[int, list[int]] = field(default_factory=dict)  # household account id -> [balance, entries]
    balance: dict[int, int] = field(default_factory=dict)  # household id -> points
    chain: list[tuple[int, str]] = field(default_factory=list)  # (seq, hash) of every audit event written
    postings: list[tuple[int, int, str, int, str]] = field(default_factory=list)  # village, month, list, hh, status
    items: dict[int, list[int]] = field(default_factory=dict)  # item id -> [stock, value_fen]
    rounds: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # name -> (roster, rated)
    redemption_village: dict[int, int] = field(default_factory=dict)  # redemption id -> households' village


class Era:
    """Writing into the schema as it stands at one revision."""

    def __init__(self, conn: Connection, world: World) -> None:
        self.conn, self.w = conn, world
        self._tables: dict[str, Table] = {}

    def table(self, name: str) -> Table:
        """The live table's columns, typed as the model types them (UTC datetimes, JSON). A column the models no
        longer have would be a dropped column: the test must then say how that era filled it."""
        if name not in self._tables:
            live = [c["name"] for c in inspect(self.conn).get_columns(name)]
            model = metadata.tables[name]
            assert set(live) <= set(model.c.keys()), f"{name}: columns not in the models: {set(live) - set(model.c.keys())}"
            self._tables[name] = Table(name, MetaData(), *[
                Column(c, model.c[c].type, primary_key=model.c[c].primary_key) for c in live])
        return self._tables[name]

    def has(self, table: str, column: str) -> bool:
        return column in self.table(table).c

    def add(self, table: str, /, **values: Any) -> int:
        """Insert one row with explicit values; its id (the database's sequence stays right for later writers)."""
        t = self.table(table)
        missing = set(values) - set(t.c.keys())
        assert not missing, f"{table} has no {missing} at this revision"
        stmt = t.insert().values(**values)
        self.w.rows[table] += 1
        if "id" in t.c and "id" not in values:
            return int(self.conn.execute(stmt.returning(t.c.id)).scalar_one())
        self.conn.execute(stmt)
        return 0

    def set(self, table: str, row_id: int, /, **values: Any) -> None:
        t = self.table(table)
        self.conn.execute(t.update().where(t.c.id == row_id).values(**values))

    # -- the audit chain, hashed as app/audit/service.py hashes it
    def audit(self, action: str, at: datetime, *, object_type: str, object_id: Any, after: dict[str, Any],
              actor: tuple[int | None, str, str] = (None, "升级前的系统", "system")) -> None:
        t = self.table("audit_events")
        head = self.conn.execute(select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
        seq, prev = (head.seq + 1, head.hash) if head else (1, audit.GENESIS)
        ev = AuditEvent(seq=seq, at=at, actor_id=actor[0], actor_name=actor[1], role=actor[2], scope=None,
                        action=action, object_type=object_type, object_id=str(object_id), summary={"after": after},
                        request_id=f"req-{seq:04d}", ip="10.0.0.8", prev_hash=prev, hash="")
        ev.hash = audit.chain_hash(prev, ev)
        self.add("audit_events", **{c.name: getattr(ev, c.name) for c in t.c if c.name != "id"})
        self.w.chain.append((seq, ev.hash))

    # -- the ledger, as app/ledger/service/ keeps it: kept balances, seq and balance_after on household accounts
    def account(self, code: str, kind: str, village_id: int, **owner: int) -> int:
        if code not in self.w.accounts:
            kept = kind == "household"
            self.w.accounts[code] = aid = self.add("ledger_accounts", code=code, kind=kind, village_id=village_id,
                                                    balance=0 if kept else None, entry_count=0, created_at=T0, **owner)
            if kept:
                self.w.kept[aid] = [0, 0]
        return self.w.accounts[code]

    def post(self, kind: str, village_id: int, at: datetime, memo: str, legs: list[tuple[str, int]], *,
             reference: str | None = None, reverses_id: int | None = None) -> int:
        assert sum(a for _, a in legs) == 0
        local = at + timedelta(hours=8)
        tx = self.add("ledger_transactions", kind=kind, village_id=village_id, month=local.year * 100 + local.month,
                      memo=memo, reference=reference, actor_name="升级前的系统", occurred_at=at,
                      reverses_id=reverses_id)
        for code, amount in legs:
            aid = self.w.accounts[code]
            if aid in self.w.kept:
                st = self.w.kept[aid]
                st[0] += amount
                st[1] += 1
                self.add("ledger_entries", transaction_id=tx, account_id=aid, amount=amount, seq=st[1],
                         balance_after=st[0])
                self.set("ledger_accounts", aid, balance=st[0], entry_count=st[1])
                self.w.balance[int(code.split(":")[1])] = st[0]
            else:
                self.add("ledger_entries", transaction_id=tx, account_id=aid, amount=amount)
        return tx

    def award(self, hid: int, vid: int, points: int, at: datetime, memo: str, reference: str | None = None) -> int:
        return self.post("award", vid, at, memo, [(f"household:{hid}", points), (f"village:{vid}:issue", -points)],
                         reference=reference)


# ---- each revision's era: what its tables hold ---------------------------------------------------------------------

def fill_0001(e: Era) -> None:
    """The platform: the county, a township, two villages with groups and a store each, staff and their roles, a
    session, an API token, login attempts, and the first audit events."""
    w = e.w
    county = e.add("counties", code="341000", name="振风县", created_at=T0)
    township = e.add("townships", county_id=county, code="341000101", name="城关镇", active=True, created_at=T0)
    w.ids.update(county=county, township=township)
    e.audit("org.county.create", T0, object_type="county", object_id=county, after={"code": "341000"})
    for n, name in ((1, "红旗村"), (2, "桃园村")):
        vid = e.add("villages", township_id=township, code=f"341000101{n:03d}", name=name, active=True, created_at=T0)
        w.ids[f"v{n}"] = vid
        w.ids[f"groups{n}"] = [e.add("village_groups", village_id=vid, number=g, name=f"第{'一二'[g - 1]}村民小组",
                                     active=True, created_at=T0) for g in (1, 2)]
        w.ids[f"store{n}"] = e.add("stores", village_id=vid, name=f"{name}振风超市", active=True, created_at=T0)
        e.audit("org.village.create", T0, object_type="village", object_id=vid, after={"name": name})
    users = {}
    for login, display in (("admin", "王建国"), ("clerk", "张志强"), ("storekeeper", "陈桂兰")):
        users[login] = e.add("users", login=login, display_name=display, password_hash=security.hash_password(
            f"{login}-Pass-2026"), active=True, must_change_password=False, large_font=False, created_at=T0,
            password_changed_at=T0)
        e.audit("auth.user.create", T0, object_type="user", object_id=users[login], after={"login": login})
    w.ids["users"] = users
    e.add("role_grants", user_id=users["admin"], role="county_admin", created_at=T0)
    clerk_grant = e.add("role_grants", user_id=users["clerk"], role="village_clerk", village_id=w.ids["v1"],
                        created_at=T0)
    e.add("role_grants", user_id=users["storekeeper"], role="store_clerk", store_id=w.ids["store1"], created_at=T0)
    e.add("user_sessions", token_hash="a" * 64, user_id=users["admin"], csrf_token="c" * 64, created_at=T0,
          last_seen_at=T0, expires_at=T0 + timedelta(hours=12), ip="10.0.0.8")
    e.add("api_tokens", user_id=users["clerk"], grant_id=clerk_grant, name="村务公开屏", prefix="zfupg001",
          token_hash="b" * 64, created_at=T0)
    for ok in (False, True):
        e.add("login_attempts", login="admin", ip="10.0.0.8", at=T0, success=ok)


def fill_0002(e: Era) -> None:
    """Households: a roster import per village, six households of two members each (one moved out), their
    history, and a household's own login."""
    w = e.w
    at = T0 + timedelta(days=1)
    for n in (1, 2):
        vid = w.ids[f"v{n}"]
        e.add("roster_imports", village_id=vid, user_id=w.ids["users"]["clerk"], file_name=f"村{n}花名册.csv",
              file_sha256="d" * 64, rows=[], problems=[], summary={"households": 6}, status="applied",
              created_at=at, applied_at=at)
        hids = []
        for k in range(1, 7):
            group = k % 2 + 1
            moved = n == 2 and k == 6
            hid = e.add("households", village_id=vid, group_id=w.ids[f"groups{n}"][group - 1], group_sort=group,
                        number=f"{k:03d}", number_sort=f"{k:010d}", head_name=f"农户{n}{k}", head_pinyin=f"nonghu{n}{k}",
                        address=f"{group}组{k}号", status="moved_out" if moved else "active",
                        status_date=date(2026, 1, 20) if moved else None, status_reason="迁往县城" if moved else None,
                        created_at=at, updated_at=at)
            head = 0
            for relation, name in (("户主", f"农户{n}{k}"), ("配偶", f"配偶{n}{k}")):
                mid = e.add("members", household_id=hid, village_id=vid, name=name, name_pinyin=f"py{n}{k}",
                            name_initials=f"p{n}{k}", relation=relation, gender="男" if relation == "户主" else "女",
                            birth_date=date(1970 + k, 3, 1), party_member=False, living_away=False,
                            status="moved_out" if moved else "present", created_at=at, updated_at=at)
                e.add("household_memberships", member_id=mid, household_id=hid, relation=relation,
                      started_on=date(2026, 1, 6))
                head = head or mid
            e.set("households", hid, head_member_id=head)
            e.add("household_events", household_id=hid, at=at, kind="created", description="花名册导入",
                  details={"batch": n}, actor_name="张志强")
            if not moved:
                hids.append(hid)
        w.ids[f"hh{n}"] = hids
        e.audit("households.import.apply", at, object_type="village", object_id=vid, after={"households": 6})
    user = e.add("users", login="hh11", display_name="农户11", password_hash=security.hash_password("Household-2026"),
                 active=True, must_change_password=False, large_font=True, created_at=at)
    e.add("role_grants", user_id=user, role="household", household_id=w.ids["hh1"][0], created_at=at)


def fill_0003(e: Era) -> None:
    """The ledger: the county's expiry policy, accounts, January's awards, a penalty, a mistaken award reversed."""
    w = e.w
    e.add("ledger_policies", county_id=w.ids["county"], expiry_rule="none", updated_at=T0)
    at = T0 + timedelta(days=10)
    for n in (1, 2):
        vid = w.ids[f"v{n}"]
        for kind in ("issue", "adjust"):
            e.account(f"village:{vid}:{kind}", kind, vid)
        for hid in w.ids[f"hh{n}"]:
            e.account(f"household:{hid}", "household", vid, household_id=hid)
            e.award(hid, vid, 10, at, "一月人居环境整治")
    v1, (_, h2, h3, *_) = w.ids["v1"], w.ids["hh1"]
    e.post("penalty", v1, at + timedelta(hours=1), "乱堆柴草", [(f"household:{h2}", -3), (f"village:{v1}:adjust", 3)])
    wrong = e.award(h3, v1, 5, at + timedelta(hours=2), "误记的奖励")
    e.post("reversal", v1, at + timedelta(hours=3), "冲正：误记", [(f"household:{h3}", -5), (f"village:{v1}:issue", 5)],
           reverses_id=wrong)
    e.audit("ledger.post", at, object_type="ledger", object_id="january", after={"transactions": 14})


def fill_0004(e: Era) -> None:
    """A ruleset (积分细则): the county default, stored as its TOML and assigned county-wide from January."""
    r = replace(rules.default_ruleset(), effective_from=202601)
    rid = e.add("rulesets", code=r.code, version=r.version, name=r.name, effective_from=202601, toml=rules.dumps(r),
                created_at=T0, created_by="王建国")
    e.add("ruleset_assignments", village_id=None, code=r.code, from_month=202601, created_at=T0, created_by="王建国")
    e.w.ids["ruleset"] = (r.code, r.version)
    e.audit("ruleset.import", T0, object_type="ruleset", object_id=rid, after={"code": r.code})


def _posting(e: Era, vid: int, month: int, lst: str, hid: int, *, round_id: int | None, status: str = "effective",
             source: str = "round") -> int:
    e.w.postings.append((vid, month, lst, hid, status))
    return e.add("list_postings", round_id=round_id, village_id=vid, household_id=hid, list=lst, source=source,
                 code="env_good" if lst == "red" else "env_bad", theme="环境", reason="人居环境", explanation="评议结果",
                 from_month=month, to_month=month + 2, status=status, created_at=T0)


def fill_0005(e: Era) -> None:
    """Evaluation rounds: the first village's January and February finalised (results, awards, red and black
    postings, one voided), the second village's January publicised and February in draft; a committee, ratings, a
    penalty motion with its vote, an objection."""
    w = e.w
    code, version = w.ids["ruleset"]
    clerk = w.ids["users"]["clerk"]
    v1, v2, hh1, hh2 = w.ids["v1"], w.ids["v2"], w.ids["hh1"], w.ids["hh2"]
    e.add("committee_members", village_id=v1, user_id=clerk, household_id=hh1[0], title="主任", created_at=T0)
    for vid, month, status, hids in ((v1, 202601, "finalised", hh1), (v1, 202602, "finalised", hh1),
                                     (v2, 202601, "publicised", hh2), (v2, 202602, "draft", hh2)):
        at = datetime(month // 100, month % 100, 25, 2, 0, tzinfo=UTC)
        frozen = status != "draft"
        rid = e.add("eval_rounds", village_id=vid, month=month, status=status, mode="consensus", ruleset_code=code,
                    ruleset_version=version, present_member_ids=[clerk], objection_days=5,
                    objections_close_on=date(month // 100, month % 100, 28) if frozen else None,
                    roster=[{"household_id": h, "note": ""} for h in hids] if frozen else None,
                    eligibility={"members": {str(clerk): "张志强"}, "barred": {}} if frozen else None,
                    created_at=at, created_by="张志强", updated_at=at,
                    finalised_at=at + timedelta(days=4) if status == "finalised" else None)
        w.ids[f"round{vid}-{month}"] = rid
        w.rounds[f"{vid}-{month}"] = (len(hids) if frozen else None, len(hids) if status == "finalised" else None)
        for a, b in (("draft", "submitted"), ("submitted", "approved"), ("approved", "publicised"),
                     ("publicised", "finalised"))[: {"draft": 0, "publicised": 3, "finalised": 4}[status]]:
            e.add("eval_round_events", round_id=rid, at=at, from_status=a, to_status=b, actor_name="张志强")
        for hid in hids if frozen else []:
            e.add("eval_ratings", round_id=rid, household_id=hid, theme="环境", rater_id=clerk, grade="好",
                  updated_at=at, updated_by="张志强")
        if status == "finalised":
            for k, hid in enumerate(hids):
                points = 20 + k
                tx = e.award(hid, vid, points, at + timedelta(days=4), f"{month % 100}月评议", reference=f"round:{rid}")
                e.add("eval_results", round_id=rid, household_id=hid, total=points,
                      lines=[{"code": "env_good", "points": points}], postings=[], grades={"环境": "好"}, note="",
                      ledger_tx_id=tx)
            e.audit("round.finalise", at + timedelta(days=4), object_type="round", object_id=rid,
                    after={"households": len(hids)})
    r1, r2 = w.ids[f"round{v1}-202601"], w.ids[f"round{v1}-202602"]
    _posting(e, v1, 202601, "red", hh1[0], round_id=r1)
    _posting(e, v1, 202601, "red", hh1[1], round_id=r1)
    w.ids["black1"] = _posting(e, v1, 202601, "black", hh1[2], round_id=r1)
    _posting(e, v1, 202601, "red", hh1[3], round_id=r1, status="voided")
    _posting(e, v1, 202602, "red", hh1[0], round_id=r2)  # the same household again: counted once in the year
    w.ids["black2"] = _posting(e, v1, 202602, "black", hh1[4], round_id=r2)
    motion_at = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)
    tx = e.post("penalty", v1, motion_at, "村民代表会议决定：占道堆物",
                [(f"household:{hh1[4]}", -5), (f"village:{v1}:adjust", 5)], reference="motion")
    motion = e.add("eval_motions", village_id=v1, round_id=r2, kind="penalty", household_id=hh1[4], code="env_bad",
                   points=5, description="占道堆物", evidence="照片两张", vote_rule="majority", status="passed",
                   proposed_by_id=clerk, proposed_by="张志强", created_at=motion_at, decided_at=motion_at, ledger_tx_id=tx)
    e.add("eval_votes", motion_id=motion, user_id=clerk, vote="for", at=motion_at)
    _posting(e, v2, 202602, "red", hh2[0], round_id=None, source="motion")
    e.add("eval_objections", round_id=r1, household_id=hh1[3], target="grade", theme="环境", text="我家门前已清理",
          on_paper=True, filed_by="张志强", created_at=T0 + timedelta(days=22), status="rejected",
          resolution="复核后维持", resolved_by="张志强", resolved_at=T0 + timedelta(days=23), after_finalisation=False)


def _move(e: Era, store: int, item: int, kind: str, qty: int, value: int, at: datetime, **extra: Any) -> None:
    st = e.w.items[item]
    st[0] += qty
    st[1] += value
    e.add("stock_movements", store_id=store, item_id=item, kind=kind, quantity=qty, value_fen=value, stock_after=st[0],
          actor="陈桂兰", occurred_at=at, **extra)
    e.set("store_items", item, stock=st[0], stock_value_fen=st[1])


def _redeem(e: Era, store: int, vid: int, hid: int, lines: list[tuple[int, int]], at: datetime,
            void: bool = False) -> int:
    w = e.w
    priced = [(item, qty, e.conn.execute(select(e.table("store_items").c.points, e.table("store_items").c.name)
                                         .where(e.table("store_items").c.id == item)).one()) for item, qty in lines]
    values = {item: w.items[item][1] * qty // w.items[item][0] for item, qty, _ in priced}  # moving average, at cost
    points = sum(p.points * qty for _, qty, p in priced)
    e.account(f"store:{store}:redeemed", "redeemed", w.ids["v1"], store_id=store)
    tx = e.post("redemption", vid, at, "兑换", [(f"household:{hid}", -points), (f"store:{store}:redeemed", points)],
                reference=f"store:{store}")
    card = w.ids["cards"][hid]
    red = e.add("redemptions", store_id=store, household_id=hid, card_id=card, card_version=1, identified_by="card",
                points=points, value_fen=sum(values.values()), balance_after=w.balance[hid], ledger_tx_id=tx,
                status="done", day=(at + timedelta(hours=8)).date(), actor="陈桂兰", created_at=at)
    w.redemption_village[red] = vid
    for item, qty, p in priced:
        e.add("redemption_lines", redemption_id=red, item_id=item, name=p.name, unit="件", quantity=qty,
              points_each=p.points, points=p.points * qty, value_fen=values[item])
        _move(e, store, item, "redemption", -qty, -values[item], at, redemption_id=red)
    if void:
        later = at + timedelta(hours=1)
        back = e.post("reversal", vid, later, "冲正：兑换作废",
                      [(f"household:{hid}", points), (f"store:{store}:redeemed", -points)], reverses_id=tx)
        for item, qty, _ in priced:
            _move(e, store, item, "void", qty, values[item], later, redemption_id=red)
        e.set("redemptions", red, status="voided", voided_at=later, voided_by="张志强", void_reason="包装破损",
              void_tx_id=back)
    return red


def fill_0006(e: Era) -> None:
    """The supermarkets: a daily limit, funds, a catalog, purchases and a donation, store 1 also serving village 2,
    cards, and redemptions (one by a household of the other village, one voided)."""
    w = e.w
    v1, v2, s1, s2 = w.ids["v1"], w.ids["v2"], w.ids["store1"], w.ids["store2"]
    at = datetime(2026, 2, 1, 1, 0, tzinfo=UTC)
    e.set("stores", s1, daily_limit=300)
    e.add("store_villages", store_id=s1, village_id=v2, created_at=at)
    fund = e.add("funds", village_id=v1, year=2026, source="county", form="money", amount_fen=100_000, spent_fen=0,
                 document_no="振财农〔2026〕10号", received_on=date(2026, 2, 1), actor="王建国", created_at=at)
    goods = e.add("funds", village_id=v1, year=2026, source="donation", form="goods", amount_fen=2_900,
                  spent_fen=2_900, donor="县纺织厂", received_on=date(2026, 2, 1), actor="王建国", created_at=at)
    items: dict[str, int] = {}
    for store, name, points, cost in ((s1, "香皂", 5, 270), (s1, "加碘食盐", 2, 180), (s1, "纯棉毛巾", 6, 580),
                                      (s2, "挂面", 6, 520)):
        items[name] = iid = e.add("store_items", store_id=store, name=name, unit="件", category="日用品",
                                  barcode=f"69{len(items):011d}", points=points, cost_fen=cost, low_stock=3,
                                  active=True, stock=0, stock_value_fen=0, created_at=at, updated_at=at)
        w.items[iid] = [0, 0]
        if name != "纯棉毛巾":
            _move(e, store, iid, "purchase", 20, 20 * cost, at, fund_id=fund if store == s1 else None,
                  reason="开业首批进货")
    spent = 20 * 270 + 20 * 180
    e.set("funds", fund, spent_fen=spent)
    _move(e, s1, items["纯棉毛巾"], "donation", 5, 2_900, at, fund_id=goods, donor="县纺织厂")
    w.ids["items"] = items
    cards = {}
    for hid in w.ids["hh1"] + w.ids["hh2"]:
        cards[hid] = e.add("cards", household_id=hid, version=1, status="active", issued_at=at, updated_at=at)
        e.add("card_events", card_id=cards[hid], version=1, action="issued", actor="张志强", at=at)
    w.ids["cards"] = cards
    day = datetime(2026, 2, 3, 1, 0, tzinfo=UTC)
    h1, h2 = w.ids["hh1"][0], w.ids["hh1"][1]
    _redeem(e, s1, v1, h1, [(items["香皂"], 2), (items["加碘食盐"], 1)], day)
    w.ids["cross"] = _redeem(e, s1, v2, w.ids["hh2"][0], [(items["纯棉毛巾"], 1)], day + timedelta(minutes=5))
    _redeem(e, s1, v1, h2, [(items["加碘食盐"], 3)], day + timedelta(minutes=9), void=True)
    e.audit("store.redeem", day, object_type="store", object_id=s1, after={"redemptions": 3})


def fill_0007(e: Era) -> None:
    """Rectification (教育转化): the January black-list household lifted after two check visits; February's open."""
    w = e.w
    v1 = w.ids["v1"]
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    for posting, hid, lifted in ((w.ids["black1"], w.ids["hh1"][2], True), (w.ids["black2"], w.ids["hh1"][4], False)):
        rect = e.add("rectifications", posting_id=posting, village_id=v1, household_id=hid, measures="每周清理门前",
                     helper="村妇联主任", status="lifted" if lifted else "open", created_by="张志强", created_at=at,
                     decided_on=date(2026, 3, 20) if lifted else None, members_present=7 if lifted else None,
                     members_for=6 if lifted else None, decision="整改到位，撤榜" if lifted else None,
                     lifted_by="张志强" if lifted else None, lifted_at=at + timedelta(days=18) if lifted else None)
        for k in range(2 if lifted else 1):
            w.ids.setdefault("visits", []).append(e.add(
                "rectification_visits", rectification_id=rect, visited_on=date(2026, 3, 5 + 7 * k),
                notes=f"第{k + 1}次回访：已清理", by="张志强", created_at=at + timedelta(days=3 + 7 * k)))
        if lifted:
            e.set("list_postings", posting, status="lifted")
            w.postings = [(v, m, lst, h, "lifted" if h == hid and lst == "black" else s)
                          for v, m, lst, h, s in w.postings]
    e.audit("lists.lift", at, object_type="posting", object_id=w.ids["black1"], after={"status": "lifted"})


def fill_0008(e: Era) -> None:
    """Credit-file consents (信用档案授权): one given, one given and withdrawn."""
    for k, hid in enumerate(e.w.ids["hh1"][:2]):
        e.add("credit_consents", household_id=hid, given_on=date(2026, 3, 1), how="户主签字", recorded_by="张志强",
              recorded_at=T0 + timedelta(days=55), withdrawn_on=date(2026, 3, 15) if k else None,
              withdrawn_by="张志强" if k else None)


def fill_0009(e: Era) -> None:
    """After the summaries exist the app keeps them as it posts: an April award with its month-total row."""
    w = e.w
    hid, vid = w.ids["hh1"][5], w.ids["v1"]
    e.award(hid, vid, 4, datetime(2026, 4, 2, 2, 0, tzinfo=UTC), "四月志愿服务")
    e.add("ledger_month_totals", village_id=vid, month=202604, kind="award", slot=w.accounts[f"household:{hid}"] % 8,
          points=4)
    assert e.has("redemptions", "village_id") and e.has("list_postings", "erased_at")


def fill_0010(e: Era) -> None:
    """Notices: the first village's February results registered (anchored to the audit chain's head), a township
    batch print, a household's portal PIN."""
    w = e.w
    v1 = w.ids["v1"]
    content = {"title": "红旗村2026年2月评议结果公示", "rows": [{"户号": "001", "户主": "农*1", "积分": 20}]}
    t = e.table("audit_events")
    seq, h = e.conn.execute(select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).one()
    at = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    w.ids["anchor"] = f"{seq}:{h}"
    e.add("notices", code=NOTICE_CODE, kind="results", village_id=v1, round_id=w.ids[f"round{v1}-202602"],
          period=202602, title=content["title"], content=content, content_sha256=notices.content_hash(content),
          masking="middle", audit_seq=seq, audit_hash=h, generated_at=at, generated_by="张志强")
    e.add("notice_batches", township_id=w.ids["township"], month=202602, form="pdf", status="done", total=2, done=2,
          file_name="城关镇2026年2月公示.pdf", data=b"%PDF-1.4 upgrade", created_by="李秀英", created_at=at,
          finished_at=at)
    e.add("household_pins", household_id=w.ids["hh1"][0], pin_hash=security.hash_password("246810"), set_by="张志强",
          set_at=at)
    e.audit("notices.register", at, object_type="notice", object_id=NOTICE_CODE, after={"period": 202602})


def fill_0011(e: Era) -> None:
    """Notice seals: the column is there and empty for the notice registered before (`zhenfeng migrate` seals it
    with the server's key, which a migration does not have)."""
    assert e.has("notices", "mac")


FILLS: dict[str, Callable[[Era], None]] = {
    "0001": fill_0001, "0002": fill_0002, "0003": fill_0003, "0004": fill_0004, "0005": fill_0005,
    "0006": fill_0006, "0007": fill_0007, "0008": fill_0008, "0009": fill_0009, "0010": fill_0010,
    "0011": fill_0011,
}


# ---- the test ------------------------------------------------------------------------------------------------------

def _expected_list_counts(w: World) -> dict[tuple[int, int], tuple[int, int, int]]:
    """As app/evaluation/service/rounds.py counts them: per village and month, and per village and year (YYYY00), the
    distinct households on the red list, on the black list, on either; voided postings left out."""
    sets: dict[tuple[int, int], tuple[set[int], set[int]]] = {}
    for vid, month, lst, hid, status in w.postings:
        if status == "voided":
            continue
        for period in (month, month // 100 * 100):
            red, black = sets.setdefault((vid, period), (set(), set()))
            (red if lst == "red" else black).add(hid)
    return {k: (len(r), len(b), len(r | b)) for k, (r, b) in sets.items()}


def _refused(db: Database, sql: str, **params: Any) -> bool:
    with db.engine.connect() as conn:
        try:
            conn.execute(text(sql), params)
        except DBAPIError:
            return True
        finally:
            conn.rollback()
    return False


def test_upgrade_from_the_first_migration_keeps_every_row_and_proof(old_url: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    script = ScriptDirectory.from_config(migrate.alembic_config(old_url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert revisions[0] == FIRST and revisions[-1] == HEAD and script.get_current_head() == HEAD
    assert list(FILLS) == revisions, "a new migration needs its era's data here (FILLS), even if it adds none"

    world = World()
    engine = build_engine(old_url)
    try:
        for rev in revisions:
            migrate.upgrade(old_url, rev)
            with engine.begin() as conn:
                FILLS[rev](Era(conn, world))
    finally:
        engine.dispose()
    filled = time.perf_counter()
    assert schema_diff(old_url) == []

    database = Database(old_url)
    try:
        w = world
        everyone = [h for n in (1, 2) for h in w.ids[f"hh{n}"]]
        # ---- what was put in is all still there, and right
        with database.read_session() as s:
            for table, n in sorted(w.rows.items()):
                if table == "ledger_month_totals":  # 0009 filled it from the book: `ledger verify` below compares
                    continue
                assert s.execute(select(func.count()).select_from(metadata.tables[table])).scalar_one() == n, table
            assert ledger.balances(s, everyone) == {h: w.balance[h] for h in everyone}
            assert [tuple(r) for r in s.execute(text("SELECT seq, hash FROM audit_events ORDER BY seq"))] == w.chain
            counts = {(r.village_id, r.period): (r.red, r.black, r.covered) for r in s.execute(text(
                "SELECT village_id, period, red, black, covered FROM list_counts WHERE frozen = false"))}
            assert counts == _expected_list_counts(w) and counts[(w.ids["v1"], 202600)] == (2, 2, 4)
            months = {(r.village_id, r.month, r.kind): r.points for r in s.execute(text(
                "SELECT village_id, month, kind, SUM(points) AS points FROM ledger_month_totals "
                "GROUP BY village_id, month, kind"))}
            v1, v2 = w.ids["v1"], w.ids["v2"]
            assert months[(v1, 202601, "award")] == 6 * 10 + 5 + sum(range(20, 26))  # the round's awards in January
            assert months[(v1, 202601, "reversal")] == -5 and months[(v2, 202602, "redemption")] == -6
            rounds = {f"{r.village_id}-{r.month}": (r.roster_size, r.households_rated) for r in s.execute(text(
                "SELECT village_id, month, roster_size, households_rated FROM eval_rounds"))}
            assert rounds == w.rounds
            placed: dict[int, int] = dict(s.execute(text("SELECT id, village_id FROM redemptions")).tuples().all())
            assert placed == w.redemption_village and placed[w.ids["cross"]] == v2  # the household's village
            assert set(s.execute(text("SELECT name_masking FROM villages")).scalars()) == {"middle"}
            notice = notices.by_code(s, NOTICE_CODE)
            assert notice is not None and notices.check(s, notice, key=notices.notice_key(TEST_SECRET)).intact
            found = rulesets.in_force(s, v1, 202603)
            assert found is not None and (found.row.code, found.row.version) == w.ids["ruleset"]

        # ---- the history tables are still guarded after every table rebuild on the way
        assert _refused(database, "UPDATE audit_events SET action = 'x' WHERE seq = 1")
        assert _refused(database, "DELETE FROM ledger_entries WHERE id = 1")
        assert _refused(database, "UPDATE stock_movements SET quantity = 0")
        assert _refused(database, "DELETE FROM notices")
        assert _refused(database, "UPDATE rectification_visits SET by = 'x' WHERE id = :i", i=w.ids["visits"][0])
        assert not _refused(database, "UPDATE rectification_visits SET notes = :e WHERE id = :i", e=ERASED,
                            i=w.ids["visits"][0])  # 0009: erasure after the retention period is the one change
        # ... and the CHECK constraints of tables SQLite rebuilt on the way (role_grants in 0002) still hold
        assert _refused(database, "INSERT INTO role_grants (user_id, role, village_id, created_at) "
                                  "VALUES (:u, 'county_admin', :v, :t)", u=w.ids["users"]["clerk"], v=w.ids["v1"], t=T0)
        assert _refused(database, "INSERT INTO ledger_accounts (code, kind, village_id, entry_count, created_at) "
                                  "VALUES ('household:x', 'household', :v, 0, :t)", v=w.ids["v1"], t=T0)

        # ---- today's services write on top of the old rows
        actor = Actor(user_id=w.ids["users"]["storekeeper"], name="陈桂兰", role="store_clerk")
        h1 = w.ids["hh1"][0]
        with database.read_session() as s:
            chained = audit.count(s)
        assert chained == len(w.chain)
        with database.write_txn() as s:
            ledger.award(s, Actor.system("升级后"), household_id=h1, points=7, memo="升级后的第一笔奖励")
            done = counter.redeem(s, actor, store_id=w.ids["store1"], household_id=h1,
                                  lines=[counter.Line(w.ids["items"]["加碘食盐"], 2)], identity_note="户主本人，核对身份证")
            notices.set_masking(s, Actor.system("升级后"), w.ids["v1"], "surname")
        assert done.balance_after == w.balance[h1] + 7 - 4 and done.redemption.village_id == w.ids["v1"]

        # ---- the three proofs, as the operator runs them
        settings = Settings(var_dir=tmp_path / "var", database_url=old_url, secret_key=TEST_SECRET)
        capsys.readouterr()
        for command, args in ((cli.cmd_ledger_verify, {}), (cli.cmd_store_verify, {}),
                              (cli.cmd_audit_verify, {"anchor": w.ids["anchor"]}), (cli.cmd_audit_verify, {"anchor": None})):
            code = command(settings, argparse.Namespace(**args))
            out = capsys.readouterr().out
            assert code == 0, out
        with database.read_session() as s:
            now_chained = audit.count(s)
        assert now_chained > chained and f"共 {now_chained} 条事件" in out  # the old chain and what the services added
    finally:
        database.dispose()
    with capsys.disabled():
        print(f"\n[upgrade path] {make_url(old_url).get_backend_name()}: 0001→{HEAD} filled and upgraded in "
              f"{filled - started:.1f} s, checked and verified in {time.perf_counter() - filled:.1f} s")
