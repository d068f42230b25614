"""The points ledger's one service: the only writer of ledger tables (DESIGN §5). Every other domain moves points
through these functions.

Posting, single or bulk, goes through one path (`_post_batch`):
1. validate every posting (integer legs summing to zero, a reason, a known kind);
2. find or create the accounts (`INSERT … ON CONFLICT DO NOTHING`, so two first postings cannot race);
3. lock the kept-balance (household) rows in account-id order (`SELECT … FOR UPDATE` on PostgreSQL; on SQLite the
   write transaction is `BEGIN IMMEDIATE` and the only writer);
4. under those locks, look up idempotency keys and earlier reversals, then compute every new balance in memory;
5. write set-based: transactions with `INSERT … RETURNING`, entries in one executemany, balances in one UPDATE.
Nothing reads a balance outside the lock, so two spends can never both see the same points.

Services flush, never commit: the caller's transaction holds the whole posting, so it lands entirely or not at all.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import BigInteger, String, any_, bindparam, case, func, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.audit import service as audit
from app.core.clock import to_local, utcnow
from app.core.context import Actor
from app.core.scope import Scope
from app.errors import AppError, Conflict, NotFound, ValidationFailed
from app.households.models import Household
from app.ledger.models import (
    TX_KIND_LABELS,
    AccountKind,
    ExpiryRule,
    LedgerAccount,
    LedgerEntry,
    LedgerMonthTotal,
    LedgerPolicy,
    LedgerTransaction,
    PenaltyPolicy,
    TxKind,
)
from app.org import service as org
from app.org.models import County, Store, Village

MEMO_MAX = 300
NOT_SERVED = "该户不在本超市服务的村（请核对户号），不能在这里使用积分"
CHUNK = 500  # rows per statement where a list is cut into pieces
ACCOUNTS = LedgerAccount.__table__
TXS = LedgerTransaction.__table__
ENTRIES = LedgerEntry.__table__
MONTHS = LedgerMonthTotal.__table__
SLOTS = 8  # rows per village, month and kind in ledger_month_totals (by household account id)


class UnknownHousehold(NotFound):
    pass


class InsufficientPoints(AppError):
    status = 409
    code = "insufficient_points"


# ---- account codes ------------------------------------------------------------------------------------------------

def household_account(household_id: int) -> str:
    return f"household:{household_id}"


def issue_account(village_id: int) -> str:
    return f"village:{village_id}:issue"


def expired_account(village_id: int) -> str:
    return f"village:{village_id}:expired"


def adjust_account(village_id: int) -> str:
    return f"village:{village_id}:adjust"


def redeemed_account(store_id: int) -> str:
    return f"store:{store_id}:redeemed"


@dataclass(frozen=True)
class _Code:
    kind: AccountKind
    owner_id: int  # household, village or store id


def parse_code(code: str) -> _Code:
    parts = code.split(":")
    try:
        if len(parts) == 2 and parts[0] == "household":
            return _Code(AccountKind.HOUSEHOLD, int(parts[1]))
        if len(parts) == 3 and parts[0] == "village" and parts[2] in ("issue", "expired", "adjust"):
            return _Code(AccountKind(parts[2]), int(parts[1]))
        if len(parts) == 3 and parts[0] == "store" and parts[2] == "redeemed":
            return _Code(AccountKind.REDEEMED, int(parts[1]))
    except ValueError:
        pass
    raise ValidationFailed(f"账户代码 {code} 无效：应为 household:<户id>、village:<村id>:issue|expired|adjust 或 "
                           f"store:<超市id>:redeemed")


# ---- what callers pass and get back -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leg:
    account: str  # an account code
    amount: int  # signed points: + into the account, - out of it


@dataclass(frozen=True)
class Posting:
    kind: TxKind
    memo: str
    legs: tuple[Leg, ...]
    reference: str | None = None
    idempotency_key: str | None = None
    allow_debt: bool = False  # may a household balance go (or stay) below zero
    cap_to_balance: bool = False  # a deduction takes at most what the household has (penalty, floor_at_zero)
    reverses_id: int | None = None
    village_id: int | None = None  # where it is counted; by default the first household's (or account's) village
    # Where the household may spend: every household account must belong to one of these villages (the villages
    # its store serves). Empty: no such check.
    served_villages: tuple[int, ...] = ()

    def request_hash(self) -> str:
        body = {"kind": str(self.kind), "memo": self.memo, "reference": self.reference,
                "legs": sorted([leg.account, leg.amount] for leg in self.legs), "allow_debt": self.allow_debt,
                "cap": self.cap_to_balance, "reverses": self.reverses_id, "village": self.village_id,
                "served": sorted(self.served_villages)}
        raw = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class EntryView:
    account_id: int
    account: str
    amount: int
    seq: int | None
    balance_after: int | None


@dataclass(frozen=True)
class TxView:
    id: int
    kind: str
    village_id: int
    month: int
    memo: str
    reference: str | None
    actor_name: str
    occurred_at: datetime
    idempotency_key: str | None
    reverses_id: int | None
    entries: tuple[EntryView, ...]

    @property
    def kind_label(self) -> str:
        return TX_KIND_LABELS.get(self.kind, self.kind)

    def household_amount(self, household_id: int) -> int:
        code = household_account(household_id)
        return sum(e.amount for e in self.entries if e.account == code)


@dataclass(frozen=True)
class Posted:
    tx: TxView | None
    replayed: bool = False  # the idempotency key had been used for this very request: nothing new was posted
    requested: int | None = None  # a capped deduction: what was asked …
    applied: int | None = None  # … and what was taken


@dataclass(frozen=True)
class BulkResult:
    transaction_ids: list[int | None]  # per posting, in order (None: nothing moved)
    posted: int
    replayed: int
    points: int  # sum of the positive legs on household accounts, over the new transactions


# ---- small helpers ------------------------------------------------------------------------------------------------

def month_of(ts: datetime) -> int:
    local = to_local(ts)
    assert local is not None
    return local.year * 100 + local.month


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _member_of(session: Session, column: Any, values: Sequence[Any]) -> Iterable[Any]:
    """`column IN values`, chunked: on PostgreSQL one array parameter per 20,000 values (`= ANY(:array)`: one
    prepared plan that uses the index whatever the table held when it was first prepared); on SQLite IN lists."""
    items = list(values)
    if _is_pg(session):
        kind = String() if items and isinstance(items[0], str) else BigInteger()
        for part in _chunks(items, 20_000):
            yield column == any_(bindparam("members", list(part), type_=ARRAY(kind)))
    else:
        for part in _chunks(items, 900):
            yield column.in_(list(part))


def _clip_memo(memo: str) -> str:
    return memo if len(memo) <= MEMO_MAX else memo[: MEMO_MAX - 1] + "…"


_KINDS = frozenset(k.value for k in TxKind)


def _validate(p: Posting) -> None:
    if p.kind not in _KINDS:
        raise ValidationFailed(f"交易类型 {p.kind} 无效")
    if not p.memo or not p.memo.strip():
        raise ValidationFailed("每笔积分变动都要写明原因（摘要不能为空）", details={"field": "memo"})
    if len(p.memo) > MEMO_MAX:
        raise ValidationFailed(f"摘要最多 {MEMO_MAX} 个字", details={"field": "memo"})
    if p.reference is not None and len(p.reference) > 80:
        raise ValidationFailed("来源引用最多 80 个字符", details={"field": "reference"})
    if p.idempotency_key is not None and not (1 <= len(p.idempotency_key) <= 120):
        raise ValidationFailed("幂等键长度须为 1–120 个字符", details={"field": "idempotency_key"})
    if len(p.legs) < 2:
        raise ValidationFailed("一笔交易至少有两条分录（复式记账）")
    seen: set[str] = set()
    for leg in p.legs:
        if type(leg.amount) is not int or leg.amount == 0:
            raise ValidationFailed("分录金额须为非零整数积分")
        if leg.account in seen:
            raise ValidationFailed(f"同一笔交易中账户 {leg.account} 出现了两次，请合并")
        seen.add(leg.account)
    if sum(leg.amount for leg in p.legs) != 0:
        raise ValidationFailed("分录合计须为零：记入的积分必须等于记出的积分")
    if (p.kind == TxKind.REVERSAL) != (p.reverses_id is not None):
        raise ValidationFailed("冲正交易必须注明冲正哪一笔，其他交易不能注明")
    if p.kind == TxKind.REDEMPTION and p.allow_debt:
        raise ValidationFailed("兑换不能透支")
    if p.cap_to_balance and (len(p.legs) != 2 or p.allow_debt):
        raise ValidationFailed("“扣至零为止”只适用于一户对一个对方账户的扣分")


@dataclass
class _Account:
    id: int
    code: str
    kind: str
    village_id: int
    household_id: int | None
    kept: bool
    state: list[int] | None = None  # [balance, entry_count] as read (only trusted under the write lock on SQLite)


def _load_accounts(session: Session, codes: Sequence[str]) -> dict[str, _Account]:
    found: dict[str, _Account] = {}
    cols = (ACCOUNTS.c.id, ACCOUNTS.c.code, ACCOUNTS.c.kind, ACCOUNTS.c.village_id, ACCOUNTS.c.household_id,
            ACCOUNTS.c.balance, ACCOUNTS.c.entry_count)
    household = AccountKind.HOUSEHOLD.value
    for where in _member_of(session, ACCOUNTS.c.code, codes):
        for acc_id, code, kind, village_id, household_id, bal, count in session.execute(
                select(*cols).where(where)).all():
            kept = kind == household
            found[code] = _Account(acc_id, code, kind, village_id, household_id, kept,
                                   [int(bal), int(count)] if kept else None)
    return found


def _ensure_accounts(session: Session, codes: Iterable[str]) -> dict[str, _Account]:
    """The accounts for these codes, creating the missing ones (race-free: ON CONFLICT DO NOTHING)."""
    wanted = sorted(set(codes))
    found = _load_accounts(session, wanted)
    missing = [c for c in wanted if c not in found]
    if not missing:
        return found
    parsed = {c: parse_code(c) for c in missing}
    hh_ids = [p.owner_id for p in parsed.values() if p.kind is AccountKind.HOUSEHOLD]
    v_ids = [p.owner_id for p in parsed.values() if p.kind in (AccountKind.ISSUE, AccountKind.EXPIRED,
                                                                 AccountKind.ADJUST)]
    s_ids = [p.owner_id for p in parsed.values() if p.kind is AccountKind.REDEEMED]
    hh_village: dict[int, int] = {}
    for where in _member_of(session, Household.id, hh_ids):
        hh_village.update({r.id: r.village_id for r in session.execute(
            select(Household.id, Household.village_id).where(where))})
    villages: set[int] = set()
    for where in _member_of(session, Village.id, v_ids):
        villages.update(session.execute(select(Village.id).where(where)).scalars())
    store_village: dict[int, int] = {}
    for where in _member_of(session, Store.id, s_ids):
        store_village.update({r.id: r.village_id for r in session.execute(
            select(Store.id, Store.village_id).where(where))})
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for code, p in parsed.items():
        row: dict[str, Any] = {"code": code, "kind": p.kind.value, "household_id": None, "store_id": None,
                               "balance": None, "entry_count": 0, "created_at": now}
        if p.kind is AccountKind.HOUSEHOLD:
            if p.owner_id not in hh_village:
                raise UnknownHousehold(f"农户（id {p.owner_id}）不存在，不能记账")
            row.update(village_id=hh_village[p.owner_id], household_id=p.owner_id, balance=0)
        elif p.kind is AccountKind.REDEEMED:
            if p.owner_id not in store_village:
                raise NotFound(f"超市（id {p.owner_id}）不存在，不能记账")
            row.update(village_id=store_village[p.owner_id], store_id=p.owner_id)
        else:
            if p.owner_id not in villages:
                raise NotFound(f"村（id {p.owner_id}）不存在，不能记账")
            row.update(village_id=p.owner_id)
        rows.append(row)
    if _is_pg(session):  # one statement per 20,000; a row another transaction created first is read back
        columns = ("code", "kind", "village_id", "household_id", "store_id", "balance")
        types = ("text", "text", "integer", "integer", "integer", "bigint")
        unnest = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in zip(columns, types, strict=True))
        sql = text(f"INSERT INTO ledger_accounts ({', '.join(columns)}, entry_count, created_at) "
                   f"SELECT *, 0, :now FROM unnest({unnest}) ON CONFLICT (code) DO NOTHING "
                   "RETURNING id, code, kind, village_id, household_id")
        for part in _chunks(rows, 20_000):
            params: dict[str, Any] = {c: [r[c] for r in part] for c in columns}
            for r in session.execute(sql, {**params, "now": now}):
                kept = r.kind == AccountKind.HOUSEHOLD
                found[r.code] = _Account(r.id, r.code, r.kind, r.village_id, r.household_id, kept,
                                         [0, 0] if kept else None)
        raced = [c for c in missing if c not in found]
        if raced:
            found.update(_load_accounts(session, raced))
        return found
    # SQLite: the write transaction is the only writer, so nothing can race us and the ids follow max(id)
    start = int(session.execute(select(func.coalesce(func.max(ACCOUNTS.c.id), 0))).scalar_one())
    for n, row in enumerate(rows, start + 1):
        row["id"] = n
        kept = row["kind"] == AccountKind.HOUSEHOLD
        found[row["code"]] = _Account(n, row["code"], row["kind"], row["village_id"], row["household_id"], kept,
                                      [0, 0] if kept else None)
    _insert_rows(session, ACCOUNTS, rows)
    return found


def _lock_kept(session: Session, ids: Sequence[int]) -> dict[int, list[int]]:
    """Lock the household rows, in account-id order, and read their balance and entry count under the lock.
    (On SQLite the write transaction is BEGIN IMMEDIATE: the whole database is ours, the read is the lock.)"""
    state: dict[int, list[int]] = {}
    pg = _is_pg(session)
    for where in _member_of(session, ACCOUNTS.c.id, sorted(set(ids))):
        stmt = select(ACCOUNTS.c.id, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count).where(where).order_by(ACCOUNTS.c.id)
        if pg:
            stmt = stmt.with_for_update()
        for r in session.execute(stmt):
            state[r.id] = [int(r.balance), int(r.entry_count)]
    return state


_LOAD_AND_LOCK = text(
    "WITH locked AS (SELECT id, code, kind, village_id, household_id, balance, entry_count FROM ledger_accounts "
    "WHERE code = ANY(CAST(:kept AS text[])) ORDER BY id FOR UPDATE) "
    "SELECT * FROM locked UNION ALL SELECT id, code, kind, village_id, household_id, balance, entry_count "
    "FROM ledger_accounts WHERE code = ANY(CAST(:other AS text[]))")


def _resolve_and_lock(session: Session, codes: Iterable[str]) -> tuple[dict[str, _Account], dict[int, list[int]]]:
    """The accounts for these codes (created when missing) and, locked, the balance and entry count of the kept
    ones. SQLite: the write transaction is already the only writer. PostgreSQL: one statement finds every account
    and locks the household rows in id order; a big batch locks them in id-ordered pieces after finding them."""
    wanted = sorted(set(codes))
    if not _is_pg(session):
        accounts = _ensure_accounts(session, wanted)
        return accounts, {a.id: a.state for a in accounts.values() if a.state is not None}
    if len(wanted) > 20_000:
        accounts = _ensure_accounts(session, wanted)
        return accounts, _lock_kept(session, [a.id for a in accounts.values() if a.kept])
    found: dict[str, _Account] = {}
    params = {"kept": [c for c in wanted if c.startswith("household:")],
              "other": [c for c in wanted if not c.startswith("household:")]}
    for r in session.execute(_LOAD_AND_LOCK, params):
        kept = r.kind == AccountKind.HOUSEHOLD
        found[r.code] = _Account(r.id, r.code, r.kind, r.village_id, r.household_id, kept,
                                 [int(r.balance), int(r.entry_count)] if kept else None)
    missing = [c for c in wanted if c not in found]
    if missing:  # first postings: create them (ours until commit), or lock the ones another transaction created
        created = _ensure_accounts(session, missing)
        found.update(created)
        fresh = _lock_kept(session, [a.id for a in created.values() if a.kept])
        for a in created.values():
            if a.id in fresh:
                a.state = fresh[a.id]
    return found, {a.id: a.state for a in found.values() if a.state is not None}


class _KeyRace(Exception):
    """PostgreSQL: another transaction committed a posting with one of this batch's idempotency keys after this one
    looked for them. The unique index made this insert wait for that transaction, so planning the batch again (the
    rows it locked are still ours) now sees the key, and answers with the first posting or a 409."""


KEY_RACE_ATTEMPTS = 3  # each retry is caused by another transaction that committed one of our keys meanwhile


def _existing_keys(session: Session, keys: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    out: dict[str, tuple[int, str | None]] = {}
    for where in _member_of(session, TXS.c.idempotency_key, sorted(set(keys))):
        rows = session.execute(select(TXS.c.idempotency_key, TXS.c.id, TXS.c.request_hash).where(where)).all()
        out.update({r.idempotency_key: (r.id, r.request_hash) for r in rows})
    return out


def _existing_reversals(session: Session, ids: Sequence[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for where in _member_of(session, TXS.c.reverses_id, sorted(set(ids))):
        rows = session.execute(select(TXS.c.reverses_id, TXS.c.id).where(where)).all()
        out.update({r.reverses_id: r.id for r in rows})
    return out


def _check_reversals(session: Session, postings: Sequence[Posting]) -> None:
    """A reversal names an existing transaction that is not itself a reversal, and negates exactly its entries."""
    if not postings:
        return
    ids = sorted({p.reverses_id for p in postings if p.reverses_id is not None})
    kinds: dict[int, str] = {}
    legs: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for where in _member_of(session, TXS.c.id, ids):
        kinds.update({r.id: r.kind for r in session.execute(select(TXS.c.id, TXS.c.kind).where(where))})
    for where in _member_of(session, ENTRIES.c.transaction_id, ids):
        for r in session.execute(select(ENTRIES.c.transaction_id, ACCOUNTS.c.code, ENTRIES.c.amount)
                                 .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id).where(where)):
            legs[r.transaction_id].append((r.code, -int(r.amount)))
    for p in postings:
        rid = p.reverses_id
        assert rid is not None
        if rid not in kinds:
            raise NotFound(f"要冲正的第 {rid} 号交易不存在")
        if kinds[rid] == TxKind.REVERSAL:
            raise Conflict("冲正交易不能再冲正；如需更正，请做一笔调整并写明原因")
        if sorted(legs[rid]) != sorted((leg.account, leg.amount) for leg in p.legs):
            raise ValidationFailed(f"冲正必须与第 {rid} 号交易的分录正好相反")


def _key_conflict(key: str) -> Conflict:
    return Conflict(f"幂等键 {key} 已用于另一笔不同的请求：同一个键只能重发同一个请求，新的请求请换一个键",
                    code="idempotency_conflict")


def _overdraft(session: Session, account: _Account, balance: int, amount: int) -> InsufficientPoints:
    h = session.get(Household, account.household_id)
    who = f"{h.number}号 {h.head_name}户" if h else "该户"
    if balance < 0:
        msg = f"积分不足：{who}现有积分为负（{balance} 分），须先得到积分、余额转正后才能再使用积分"
    else:
        msg = f"积分不足：{who}现有 {balance} 分，本次需要 {-amount} 分"
    return InsufficientPoints(msg, details={"household_id": account.household_id, "balance": balance,
                                            "needed": -amount})


@dataclass
class _Planned:
    index: int
    posting: Posting
    legs: list[Leg]
    memo: str
    village_id: int
    requested: int | None = None
    applied: int | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    view: TxView | None = None  # a single new posting, as the caller gets it back


def _post_batch(session: Session, actor: Actor, postings: Sequence[Posting],
                occurred_at: datetime | None = None) -> tuple[list[int | None], list[bool], list[_Planned | None]]:
    """Plan and write a batch. Postings with the same idempotency key are serialised by the key's unique index (and
    by the household rows they lock), not by a lock per key: a batch takes no more locks for having many keys, so a
    county's monthly close fits a stock PostgreSQL's lock table (max_locks_per_transaction)."""
    for attempt in range(KEY_RACE_ATTEMPTS):
        try:
            return _plan_and_write(session, actor, postings, occurred_at)
        except _KeyRace:
            if attempt == KEY_RACE_ATTEMPTS - 1:
                raise Conflict("同一个幂等键的请求正在别处同时提交：请稍后用同一个键再发一次", code="idempotency_busy") from None
    raise AssertionError("unreachable")


def _plan_and_write(session: Session, actor: Actor, postings: Sequence[Posting],
                    occurred_at: datetime | None) -> tuple[list[int | None], list[bool], list[_Planned | None]]:
    for p in postings:
        _validate(p)
    when = occurred_at or utcnow()
    month = month_of(when)
    accounts, state = _resolve_and_lock(session, {leg.account for p in postings for leg in p.legs})
    # from here on every balance in `state` is ours until commit
    keys = [p.idempotency_key for p in postings if p.idempotency_key]
    # after the rows: the same request sent twice waits here for the first one's household rows and finds its key
    existing = _existing_keys(session, keys) if keys else {}
    reversed_by = _existing_reversals(session, [p.reverses_id for p in postings if p.reverses_id])
    _check_reversals(session, [p for p in postings if p.reverses_id is not None])

    ids: list[int | None] = [None] * len(postings)
    replayed = [False] * len(postings)
    plans: list[_Planned | None] = [None] * len(postings)
    batch_keys: dict[str, tuple[int, str]] = {}
    fresh: list[_Planned] = []
    for i, p in enumerate(postings):
        key = p.idempotency_key
        rhash = p.request_hash() if key else ""
        if key and key in existing:
            tx_id, first_hash = existing[key]
            if first_hash != rhash:
                raise _key_conflict(key)
            ids[i], replayed[i] = tx_id, True
            continue
        if key and key in batch_keys:
            j, first_hash = batch_keys[key]
            if first_hash != rhash:
                raise _key_conflict(key)
            ids[i], replayed[i], plans[i] = ids[j], True, plans[j]
            continue
        if p.served_villages and any(accounts[leg.account].kept
                                     and accounts[leg.account].village_id not in p.served_villages for leg in p.legs):
            raise ValidationFailed(NOT_SERVED)
        if p.reverses_id is not None:
            if p.reverses_id in reversed_by:
                by = reversed_by[p.reverses_id]
                where = f"（第 {by} 号交易）" if by > 0 else "（本批中已有一笔冲正）"
                raise Conflict(f"第 {p.reverses_id} 号交易已被冲正{where}，一笔交易只能冲正一次",
                               code="already_reversed")
            reversed_by[p.reverses_id] = -1
        legs = list(p.legs)
        memo = p.memo
        requested = applied = None
        if p.cap_to_balance:
            debit = next((leg for leg in legs if leg.amount < 0 and accounts[leg.account].kept), None)
            if debit is None:
                raise ValidationFailed("“扣至零为止”的交易须从一户的账户中扣出积分")
            other = next(leg for leg in legs if leg is not debit)
            balance = state[accounts[debit.account].id][0]
            requested, applied = -debit.amount, min(-debit.amount, max(balance, 0))
            if applied < requested:
                memo = _clip_memo(f"{memo}（应扣 {requested} 分，余额仅 {max(balance, 0)} 分，"
                                  f"按“扣至零为止”实扣 {applied} 分）")
            # Nothing to take still posts (two legs of 0): the household sees the penalty and why nothing was
            # taken, and the idempotency key is kept, so a retry after it earned points takes nothing either.
            legs = [Leg(debit.account, -applied), Leg(other.account, applied)]
        village_id = p.village_id
        if village_id is None:
            first = next((accounts[leg.account] for leg in legs if accounts[leg.account].kept),
                         accounts[legs[0].account])
            village_id = first.village_id
        plan = _Planned(i, p, legs, memo, village_id, requested, applied)
        for leg in legs:
            acc = accounts[leg.account]
            row: dict[str, Any] = {"account_id": acc.id, "amount": leg.amount, "seq": None, "balance_after": None}
            if acc.kept:
                st = state[acc.id]
                new_balance = st[0] + leg.amount
                if leg.amount < 0 and new_balance < 0 and not p.allow_debt:
                    raise _overdraft(session, acc, st[0], leg.amount)
                st[0] = new_balance
                st[1] += 1
                row["seq"], row["balance_after"] = st[1], new_balance
            plan.entries.append(row)
        plans[i] = plan
        fresh.append(plan)
        if key:
            batch_keys[key] = (i, rhash)

    if fresh:
        tx_rows = [{"kind": str(pl.posting.kind), "village_id": pl.village_id, "month": month, "memo": pl.memo,
                    "reference": pl.posting.reference, "actor_id": actor.user_id,
                    "actor_name": (actor.name or "系统")[:80], "occurred_at": when,
                    "idempotency_key": pl.posting.idempotency_key,
                    "request_hash": pl.posting.request_hash() if pl.posting.idempotency_key else None,
                    "reverses_id": pl.posting.reverses_id} for pl in fresh]
        new_ids = _insert_transactions(session, tx_rows)
        entry_rows: list[dict[str, Any]] = []
        for pl, tx_id in zip(fresh, new_ids, strict=True):
            ids[pl.index] = tx_id
            for row in pl.entries:
                row["transaction_id"] = tx_id
                entry_rows.append(row)
        _insert_rows(session, ENTRIES, entry_rows)
        touched = {row["account_id"] for row in entry_rows if row["seq"] is not None}
        _write_balances(session, {a: state[a] for a in touched})
        _add_month_totals(session, month, [(pl.village_id, str(pl.posting.kind), row["account_id"], row["amount"])
                                           for pl in fresh for row in pl.entries if row["seq"] is not None])
        for i in range(len(postings)):  # in-batch replays point at the first posting's new id
            if replayed[i] and ids[i] is None and plans[i] is not None:
                ids[i] = ids[plans[i].index]  # type: ignore[union-attr]
        if len(fresh) == 1:  # the caller gets its transaction back without reading it again
            pl, row = fresh[0], tx_rows[0]
            codes = {a.id: a.code for a in accounts.values()}
            fresh[0].view = TxView(new_ids[0], row["kind"], pl.village_id, month, pl.memo, row["reference"],
                                   row["actor_name"], when, row["idempotency_key"], row["reverses_id"],
                                   tuple(EntryView(e["account_id"], codes[e["account_id"]], e["amount"], e["seq"],
                                                   e["balance_after"]) for e in pl.entries))
    return ids, replayed, plans


COPY_FROM = 1_000  # PostgreSQL: from this many rows on, COPY instead of a multi-row INSERT


def _insert_transactions(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert transaction rows, returning their ids in order. One row: INSERT … RETURNING. Many: the ids are taken
    first (PostgreSQL: from the sequence; SQLite: after max(id), safe because the write transaction is the only
    writer), so the rows go in as one executemany or COPY instead of one INSERT … RETURNING per row."""
    keyed = any(r["idempotency_key"] for r in rows)
    if not _is_pg(session) or not keyed:  # SQLite: the only writer, a key found absent stays absent
        if len(rows) == 1:
            return [int(session.execute(insert(TXS).returning(TXS.c.id), rows[0]).scalar_one())]
        return _insert_numbered(session, rows)
    if len(rows) == 1:  # a key committed meanwhile by another transaction: nothing written, plan again
        tx_id = session.execute(_INSERT_UNLESS_KEY_TAKEN, rows[0]).scalar_one_or_none()
        if tx_id is None:
            raise _KeyRace()
        return [int(tx_id)]
    try:  # a savepoint per batch: a key another transaction committed meanwhile undoes only this insert
        with session.begin_nested():
            return _insert_numbered(session, rows)
    except (IntegrityError, psycopg.errors.UniqueViolation) as e:
        orig = getattr(e, "orig", e)
        if getattr(getattr(orig, "diag", None), "constraint_name", None) != _KEY_CONSTRAINT:
            raise
        raise _KeyRace() from None


_KEY_CONSTRAINT = "uq_ledger_transactions_idempotency_key"
_INSERT_UNLESS_KEY_TAKEN = (pg_insert(TXS).on_conflict_do_nothing(index_elements=[TXS.c.idempotency_key])
                            .returning(TXS.c.id))


def _insert_numbered(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    if _is_pg(session):
        ids = sorted(int(i) for i in session.execute(
            text("SELECT nextval(pg_get_serial_sequence('ledger_transactions', 'id')) FROM generate_series(1, :n)"),
            {"n": len(rows)}).scalars())
    else:
        start = int(session.execute(select(func.coalesce(func.max(TXS.c.id), 0))).scalar_one())
        ids = list(range(start + 1, start + 1 + len(rows)))
    for row, tx_id in zip(rows, ids, strict=True):
        row["id"] = tx_id
    _insert_rows(session, TXS, rows)
    return ids


def _insert_rows(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Many rows of one shape, straight to the driver: COPY on PostgreSQL when there are many, a multi-row INSERT
    when few; executemany on SQLite (timestamps written as SQLAlchemy writes them: UTC, `YYYY-MM-DD HH:MM:SS.ffffff`)."""
    if not rows:
        return
    columns = list(rows[0])
    if _is_pg(session):
        if len(rows) < COPY_FROM:
            session.execute(insert(table), rows)
            return
        raw: Any = session.connection().connection.dbapi_connection  # psycopg 3, in this transaction
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        return
    stamps = {c for c in columns if isinstance(rows[0][c], datetime)}
    for c in stamps:
        text_of = {v: v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") for v in {r[c] for r in rows}}
        rows = [{**r, c: text_of[r[c]]} for r in rows]
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    session.connection().exec_driver_sql(sql, list(map(itemgetter(*columns), rows)))


def _add_month_totals(session: Session, month: int, legs: list[tuple[int, str, int, int]]) -> None:
    """Add the household legs (village, kind, account, amount) to ledger_month_totals, in the posting's transaction:
    one upsert per village, kind and slot."""
    sums: dict[tuple[int, str, int], int] = defaultdict(int)
    for village_id, kind, account_id, amount in legs:
        sums[(village_id, kind, account_id % SLOTS)] += amount
    if not sums:
        return
    rows = [{"village_id": v, "month": month, "kind": k, "slot": slot, "points": pts}
            for (v, k, slot), pts in sorted(sums.items())]  # in key order: two batches lock rows in the same order
    session.execute(_MONTH_UPSERT["postgresql" if _is_pg(session) else "sqlite"], rows)


def _month_upsert(insert_: Any) -> Any:
    stmt = insert_(MONTHS)
    return stmt.on_conflict_do_update(index_elements=["village_id", "month", "kind", "slot"],
                                      set_={"points": MONTHS.c.points + stmt.excluded.points})


_MONTH_UPSERT = {"postgresql": _month_upsert(pg_insert), "sqlite": _month_upsert(sqlite_insert)}  # built once


def _write_balances(session: Session, state: dict[int, list[int]]) -> None:
    if not state:
        return
    if _is_pg(session):
        items = sorted(state.items())
        session.execute(
            text("UPDATE ledger_accounts AS a SET balance = v.balance, entry_count = v.entry_count "
                 "FROM unnest(CAST(:ids AS integer[]), CAST(:balances AS bigint[]), CAST(:counts AS integer[])) "
                 "AS v(id, balance, entry_count) WHERE a.id = v.id"),
            {"ids": [k for k, _ in items], "balances": [v[0] for _, v in items], "counts": [v[1] for _, v in items]})
        return
    session.connection().exec_driver_sql("UPDATE ledger_accounts SET balance = ?, entry_count = ? WHERE id = ?",
                                         [(v[0], v[1], k) for k, v in state.items()])


# ---- posting ------------------------------------------------------------------------------------------------------

def post(session: Session, actor: Actor, posting: Posting, *, occurred_at: datetime | None = None) -> Posted:
    """Post one transaction (any number of legs, atomically). With an idempotency key, a retry of the same request
    returns the first result and posts nothing; the same key with a different request is refused (409)."""
    ids, replayed, plans = _post_batch(session, actor, [posting], occurred_at)
    plan = plans[0]
    requested = plan.requested if plan else None
    applied = plan.applied if plan else None
    if ids[0] is None:
        return Posted(None, replayed[0], requested, applied)
    view = plan.view if plan is not None and not replayed[0] else None
    return Posted(view or get_transaction(session, ids[0]), replayed[0], requested, applied)


def post_many(session: Session, actor: Actor, postings: Sequence[Posting], *,
              occurred_at: datetime | None = None, note: str | None = None) -> BulkResult:
    """Post many transactions in one go, set-based (the monthly close): all of them land, or none does."""
    if not postings:
        return BulkResult([], 0, 0, 0)
    ids, replayed, plans = _post_batch(session, actor, postings, occurred_at)
    new = [pl for pl, r in zip(plans, replayed, strict=True) if pl is not None and not r and pl.entries]
    points = sum(row["amount"] for pl in new for row in pl.entries if row["seq"] is not None and row["amount"] > 0)
    result = BulkResult(ids, len(new), sum(replayed), points)
    audit.record(session, actor, "ledger.post_many", object_type="ledger",
                 after={"postings": len(postings), "posted": result.posted, "replayed": result.replayed,
                        "points_in": points, "first_tx": min((i for i in ids if i), default=None),
                        "last_tx": max((i for i in ids if i), default=None)}, note=note)
    return result


def award(session: Session, actor: Actor, *, household_id: int, points: int, memo: str,
          reference: str | None = None, idempotency_key: str | None = None) -> Posted:
    if points <= 0:
        raise ValidationFailed("奖励积分须为正整数")
    h = _household(session, household_id)
    return post(session, actor, Posting(TxKind.AWARD, memo, (Leg(household_account(h.id), points),  # type: ignore[arg-type]
                                                             Leg(issue_account(h.village_id), -points)),
                                        reference=reference, idempotency_key=idempotency_key))


def award_posting(household_id: int, village_id: int, points: int, memo: str, *, reference: str | None = None,
                  idempotency_key: str | None = None) -> Posting:
    """An award for `post_many` (the caller knows the household's village)."""
    return Posting(TxKind.AWARD, memo, (Leg(household_account(household_id), points),
                                        Leg(issue_account(village_id), -points)),
                   reference=reference, idempotency_key=idempotency_key)


def penalty_posting(household_id: int, village_id: int, points: int, memo: str, *, policy: PenaltyPolicy | str,
                    reference: str | None = None, idempotency_key: str | None = None) -> Posting:
    """A deduction under the ruleset's penalty policy: floor_at_zero caps it at the balance (the memo says by how
    much); allow_debt lets the balance go negative (spending then waits until it is positive again)."""
    debt = PenaltyPolicy(policy) is PenaltyPolicy.ALLOW_DEBT
    return Posting(TxKind.PENALTY, memo, (Leg(household_account(household_id), -points),
                                          Leg(adjust_account(village_id), points)),
                   reference=reference, idempotency_key=idempotency_key, allow_debt=debt, cap_to_balance=not debt)


def penalize(session: Session, actor: Actor, *, household_id: int, points: int, memo: str,
             policy: PenaltyPolicy | str = PenaltyPolicy.FLOOR_AT_ZERO, reference: str | None = None,
             idempotency_key: str | None = None) -> Posted:
    if points <= 0:
        raise ValidationFailed("扣减积分须为正整数")
    h = _household(session, household_id)
    return post(session, actor, penalty_posting(h.id, h.village_id, points, memo, policy=policy,  # type: ignore[arg-type]
                                                reference=reference, idempotency_key=idempotency_key))


def spend(session: Session, actor: Actor, *, household_id: int, store_id: int, points: int, memo: str,
          reference: str | None = None, idempotency_key: str | None = None,
          served_villages: Sequence[int] | None = None, occurred_at: datetime | None = None) -> Posted:
    """A redemption: points out of the household into the store's sink. Never overdraws, whatever the concurrency.
    `served_villages`: the villages the store serves (by default its own village only)."""
    if type(points) is not int or points <= 0:
        raise ValidationFailed("使用的积分须为正整数")
    try:
        return post(session, actor, Posting(TxKind.REDEMPTION, memo, (Leg(household_account(household_id), -points),
                                                                      Leg(redeemed_account(store_id), points)),
                                            reference=reference, idempotency_key=idempotency_key,
                                            served_villages=tuple(served_villages or _store_villages(session, store_id))),
                    occurred_at=occurred_at)
    except UnknownHousehold:  # the same answer as for another village's household: ids tell nothing
        raise ValidationFailed(NOT_SERVED) from None


def _check_reversible(session: Session, original: TxView) -> None:
    """Why a transaction cannot be reversed, if it cannot, in the order a clerk would want to hear it."""
    if original.kind == TxKind.REVERSAL:
        raise Conflict("冲正交易不能再冲正；如需更正，请做一笔调整并写明原因")
    by = reversal_of(session, original.id)
    if by is not None:
        raise Conflict(f"第 {original.id} 号交易已被冲正（第 {by} 号交易），一笔交易只能冲正一次", code="already_reversed")
    if original.kind == TxKind.EXPIRY:  # its points would go back into lots that have already expired
        raise Conflict("到期清零不能冲正：如确系清零有误，请用“积分调整”补回并写明原因")
    if all(e.amount == 0 for e in original.entries):
        raise Conflict("这笔扣分实扣 0 分，没有可冲正的积分", code="nothing_to_reverse")
    if any(e.amount > 0 and e.balance_after is not None for e in original.entries):  # points went to a household
        local = to_local(original.occurred_at)
        last_day = get_policy(session).lot_expiry(local.date()) if local else None
        today = (to_local(utcnow()) or utcnow()).date()
        if last_day is not None and last_day < today:  # they may already have been taken by an expiry run
            raise Conflict(f"这笔积分已于 {last_day.isoformat()} 过了有效期，不能再冲正；如需更正，请用“积分调整”并写明原因",
                           code="expired_lot")


def reverse(session: Session, actor: Actor, transaction_id: int, *, reason: str,
            idempotency_key: str | None = None, allow_debt: bool = False,
            occurred_at: datetime | None = None, voiding_redemption: bool = False) -> Posted:
    """Undo a transaction with a new one that negates every entry and says why. At most once per transaction; a
    reversal that would leave a household below zero is refused unless the policy allows debt. A redemption is
    undone only by voiding it at the store (`voiding_redemption`), which returns its goods in the same transaction."""
    reason = _reason(reason)
    audit.lock(session)  # before the accounts: the order of the monthly close
    original = get_transaction(session, transaction_id)
    retry = bool(idempotency_key) and bool(_existing_keys(session, [idempotency_key or ""]))
    if not retry:  # a retry is answered by post(): the first result again, or a key conflict
        if original.kind == TxKind.REDEMPTION and not voiding_redemption:
            raise Conflict("兑换不能在积分台账里冲正：请到这笔兑换的详情页“作废”，积分和商品会一起退回",
                           code="redemption_needs_void")
        _check_reversible(session, original)
    posting = Posting(TxKind.REVERSAL, _clip_memo(f"冲正：{original.memo}（原因：{reason}）"),
                      tuple(Leg(e.account, -e.amount) for e in original.entries), reference=f"tx:{original.id}",
                      idempotency_key=idempotency_key, allow_debt=allow_debt, reverses_id=original.id,
                      village_id=original.village_id)
    try:
        result = post(session, actor, posting, occurred_at=occurred_at)
    except InsufficientPoints as exc:
        raise InsufficientPoints(f"不能冲正：{exc.message}。冲正后余额会小于零，按现行政策不允许欠分",
                                 details=exc.details) from None
    if not result.replayed and result.tx is not None:
        audit.record(session, actor, "ledger.reverse", object_type="ledger_transaction", object_id=original.id,
                     after={"reversal_id": result.tx.id, "reason": reason})
    return result


def _store_villages(session: Session, store_id: int) -> tuple[int, ...]:
    facts = org.store_facts(session, store_id)
    if facts is None:
        raise NotFound("没有这个超市")
    return facts.served


def adjust(session: Session, actor: Actor, *, household_id: int, amount: int, reason: str,
           idempotency_key: str | None = None, allow_debt: bool = False) -> Posted:
    """A correction by the county administrator: into or out of a household against the village's adjust account."""
    reason = _reason(reason)
    audit.lock(session)  # before the accounts: the order of the monthly close
    if type(amount) is not int or amount == 0:
        raise ValidationFailed("调整积分须为非零整数（正数加分，负数减分）", details={"field": "amount"})
    if abs(amount) > 1_000_000:
        raise ValidationFailed("单笔调整不能超过 1,000,000 分", details={"field": "amount"})
    h = _household(session, household_id)
    sign = "+" if amount > 0 else ""
    posting = Posting(TxKind.ADJUSTMENT, _clip_memo(f"积分调整 {sign}{amount}：{reason}"),
                      (Leg(household_account(h.id), amount), Leg(adjust_account(h.village_id), -amount)),  # type: ignore[arg-type]
                      reference=f"adjust:{actor.user_id or 'system'}", idempotency_key=idempotency_key,
                      allow_debt=allow_debt)
    result = post(session, actor, posting)
    if not result.replayed and result.tx is not None:
        after = result.tx.entries[0].balance_after  # read under the posting's lock
        assert after is not None
        audit.record(session, actor, "ledger.adjust", object_type="household", object_id=h.id,
                     before={"balance": after - amount}, after={"balance": after, "tx": result.tx.id}, note=reason)
    return result


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) < 2:
        raise ValidationFailed("请写明原因（至少 2 个字），原因会显示在农户的积分明细里", details={"field": "reason"})
    if len(reason) > 200:
        raise ValidationFailed("原因最多 200 个字", details={"field": "reason"})
    return reason


def _household(session: Session, household_id: int) -> Household:
    h = session.get(Household, household_id)
    if h is None:
        raise NotFound("农户不存在")
    return h


# ---- reading ------------------------------------------------------------------------------------------------------

def get_transaction(session: Session, transaction_id: int) -> TxView:
    t = session.get(LedgerTransaction, transaction_id)
    if t is None:
        raise NotFound("交易不存在")
    rows = session.execute(select(ENTRIES.c.account_id, ACCOUNTS.c.code, ENTRIES.c.amount, ENTRIES.c.seq,
                                  ENTRIES.c.balance_after)
                           .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
                           .where(ENTRIES.c.transaction_id == transaction_id).order_by(ENTRIES.c.id)).all()
    return TxView(t.id, t.kind, t.village_id, t.month, t.memo, t.reference, t.actor_name, t.occurred_at,  # type: ignore[arg-type]
                  t.idempotency_key, t.reverses_id,
                  tuple(EntryView(r.account_id, r.code, int(r.amount), r.seq,
                                  None if r.balance_after is None else int(r.balance_after)) for r in rows))


def reversal_of(session: Session, transaction_id: int) -> int | None:
    return session.execute(select(TXS.c.id).where(TXS.c.reverses_id == transaction_id)).scalar_one_or_none()


def reversed_among(session: Session, transaction_ids: Sequence[int]) -> dict[int, int]:
    """Of these transactions, those already reversed: {original id: reversal id}."""
    return _existing_reversals(session, transaction_ids)


def scope_of_transaction(session: Session, transaction_id: int) -> Scope | None:
    """Where a transaction lives, for authorization: its village, and the household it moved points for."""
    t = session.execute(select(TXS.c.village_id, Village.township_id).join(Village, Village.id == TXS.c.village_id)
                        .where(TXS.c.id == transaction_id)).first()
    if t is None:
        return None
    hid = session.execute(select(ACCOUNTS.c.household_id).join(ENTRIES, ENTRIES.c.account_id == ACCOUNTS.c.id)
                          .where(ENTRIES.c.transaction_id == transaction_id, ACCOUNTS.c.household_id.is_not(None))
                          .order_by(ENTRIES.c.id).limit(1)).scalar_one_or_none()
    return Scope(township_id=t.township_id, village_id=t.village_id, household_id=hid)


def balance(session: Session, household_id: int) -> int:
    b = session.execute(select(ACCOUNTS.c.balance).where(ACCOUNTS.c.household_id == household_id)).scalar()
    return int(b or 0)


def balances(session: Session, household_ids: Sequence[int]) -> dict[int, int]:
    out = dict.fromkeys(household_ids, 0)
    for where in _member_of(session, ACCOUNTS.c.household_id, household_ids):
        for hid, b in session.execute(select(ACCOUNTS.c.household_id, ACCOUNTS.c.balance).where(where)):
            out[hid] = int(b)
    return out


def account_balance(session: Session, code: str) -> int:
    """A kept balance is read from its row; a source or sink account's balance is the sum of its entries."""
    row = session.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.balance).where(ACCOUNTS.c.code == code)).first()
    if row is None:
        parse_code(code)
        return 0
    if row.balance is not None:
        return int(row.balance)
    total = session.execute(select(func.coalesce(func.sum(ENTRIES.c.amount), 0))
                            .where(ENTRIES.c.account_id == row.id)).scalar_one()
    return int(total)


@dataclass(frozen=True)
class StatementLine:
    seq: int
    transaction_id: int
    kind: str
    memo: str
    reference: str | None
    actor_name: str
    occurred_at: datetime
    amount: int
    balance_after: int
    reverses_id: int | None

    @property
    def kind_label(self) -> str:
        return TX_KIND_LABELS.get(self.kind, self.kind)


@dataclass(frozen=True)
class Statement:
    household_id: int
    balance: int
    total: int  # lines in all
    offset: int
    limit: int
    lines: list[StatementLine]


def statement(session: Session, household_id: int, *, offset: int = 0, limit: int = 20) -> Statement:
    """A household's lines, newest first, with the balance after each. A page is an index range on the account's
    chain (seq), so page 1 of ten years of history costs the same as page 1 of one month."""
    acc = session.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count)
                          .where(ACCOUNTS.c.household_id == household_id)).first()
    if acc is None:
        return Statement(household_id, 0, 0, offset, limit, [])
    total = int(acc.entry_count)
    hi = total - offset
    lo = max(hi - limit + 1, 1)
    lines: list[StatementLine] = []
    if hi >= 1:
        rows = session.execute(
            select(ENTRIES.c.seq, ENTRIES.c.amount, ENTRIES.c.balance_after, TXS.c.id, TXS.c.kind, TXS.c.memo,
                   TXS.c.reference, TXS.c.actor_name, TXS.c.occurred_at, TXS.c.reverses_id)
            .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
            .where(ENTRIES.c.account_id == acc.id, ENTRIES.c.seq.between(lo, hi))
            .order_by(ENTRIES.c.seq.desc())).all()
        lines = [StatementLine(r.seq, r.id, r.kind, r.memo, r.reference, r.actor_name, r.occurred_at, int(r.amount),
                               int(r.balance_after), r.reverses_id) for r in rows]
    return Statement(household_id, int(acc.balance), total, offset, limit, lines)


def statement_all(session: Session, household_id: int) -> Statement:
    """Every line, oldest first (for the .xlsx export)."""
    st = statement(session, household_id, offset=0, limit=10**9)
    return Statement(st.household_id, st.balance, st.total, 0, st.total, list(reversed(st.lines)))


# ---- policy and expiry --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    expiry_rule: ExpiryRule = ExpiryRule.NONE
    expiry_months: int | None = None

    def lot_expiry(self, earned: date) -> date | None:
        """The last day a point earned on `earned` can be spent."""
        if self.expiry_rule is ExpiryRule.YEAR_END_NEXT:
            return date(earned.year + 1, 12, 31)
        if self.expiry_rule is ExpiryRule.MONTHS and self.expiry_months:
            m = earned.year * 12 + (earned.month - 1) + self.expiry_months + 1  # the month after the last month
            return date(m // 12, m % 12 + 1, 1) - timedelta(days=1)
        return None

    @property
    def label(self) -> str:
        if self.expiry_rule is ExpiryRule.YEAR_END_NEXT:
            return "当年积分次年底清零（例如 2026 年获得的积分可用到 2027 年 12 月 31 日）"
        if self.expiry_rule is ExpiryRule.MONTHS:
            return f"积分获得后满 {self.expiry_months} 个月清零（用到第 {self.expiry_months} 个月的月底）"
        return "积分长期有效，不清零"


def _county_id(session: Session) -> int | None:
    return session.execute(select(County.id).order_by(County.id).limit(1)).scalar()


def get_policy(session: Session) -> Policy:
    cid = _county_id(session)
    row = session.get(LedgerPolicy, cid) if cid else None
    if row is None:
        return Policy()
    return Policy(ExpiryRule(row.expiry_rule), row.expiry_months)


def set_policy(session: Session, actor: Actor, *, expiry_rule: str, expiry_months: int | None) -> Policy:
    try:
        rule = ExpiryRule(expiry_rule)
    except ValueError:
        raise ValidationFailed("积分有效期规则只能是：长期有效、次年底清零、满 N 个月清零",
                               details={"field": "expiry_rule"}) from None
    if rule is ExpiryRule.MONTHS:
        if expiry_months is None or not 1 <= expiry_months <= 120:
            raise ValidationFailed("“满 N 个月清零”须填写 1–120 之间的月数", details={"field": "expiry_months"})
    else:
        expiry_months = None
    cid = _county_id(session)
    if cid is None:
        raise ValidationFailed("还没有建立县（区），请先初始化行政区划")
    before = get_policy(session)
    row = session.get(LedgerPolicy, cid)
    if row is None:
        row = LedgerPolicy(county_id=cid)
    row.expiry_rule, row.expiry_months = rule.value, expiry_months
    row.updated_at, row.updated_by = utcnow(), actor.name[:80]
    session.add(row)
    session.flush()
    audit.record(session, actor, "ledger.policy", object_type="county", object_id=cid,
                 before={"expiry_rule": before.expiry_rule.value, "expiry_months": before.expiry_months},
                 after={"expiry_rule": rule.value, "expiry_months": expiry_months})
    return Policy(rule, expiry_months)


def _lots_query(where: Any) -> Any:
    orig = aliased(LedgerTransaction)
    return (select(ENTRIES.c.account_id, ENTRIES.c.amount, TXS.c.kind, TXS.c.occurred_at,
                   orig.occurred_at.label("orig_at"))
            .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
            .outerjoin(orig, orig.id == TXS.c.reverses_id)
            .where(where))


@dataclass
class _Lots:
    credits: dict[date | None, int] = field(default_factory=lambda: defaultdict(int))  # by expiry date
    debits: int = 0

    def add(self, policy: Policy, amount: int, kind: str, at: datetime, orig_at: datetime | None) -> None:
        # A reversal belongs to what it reverses: undoing an award shrinks that award's lot; undoing a spend
        # gives back points as if they had never been spent.
        is_reversal = kind == TxKind.REVERSAL
        credit = (amount > 0) != is_reversal
        if credit:
            earned = to_local(orig_at if is_reversal and orig_at else at)
            assert earned is not None
            self.credits[policy.lot_expiry(earned.date())] += amount
        else:
            self.debits -= amount

    def schedule(self) -> list[tuple[date, int]]:
        """(expiry date, points still unspent that expire then), oldest first. Spending takes the oldest first
        (FIFO), and lots expire in the order they were earned, so what is left of the lots up to a date is
        max(0, credits up to that date - everything ever taken out)."""
        out: list[tuple[date, int]] = []
        cumulative = 0
        left_before = 0
        for d in sorted(k for k in self.credits if k is not None):
            cumulative += self.credits[d]
            left = max(0, cumulative - self.debits)
            if left > left_before:
                out.append((d, left - left_before))
            left_before = max(left, left_before)
        return out

    def due(self, as_of: date) -> int:
        """Points of lots whose last day is before `as_of`, still unspent."""
        return sum(n for d, n in self.schedule() if d < as_of)


def expiring(session: Session, household_id: int, *, as_of: date | None = None) -> list[tuple[date, int]]:
    """What will expire and when ("30 分将于 2027-12-31 到期"), from `as_of` (default today) on."""
    policy = get_policy(session)
    if policy.expiry_rule is ExpiryRule.NONE:
        return []
    acc_id = session.execute(select(ACCOUNTS.c.id).where(ACCOUNTS.c.household_id == household_id)).scalar()
    if acc_id is None:
        return []
    lots = _Lots()
    for r in session.execute(_lots_query(ENTRIES.c.account_id == acc_id)):
        lots.add(policy, int(r.amount), r.kind, r.occurred_at, r.orig_at)
    today = as_of or (to_local(utcnow()) or utcnow()).date()
    return [(d, n) for d, n in lots.schedule() if d >= today]


@dataclass(frozen=True)
class ExpiryRun:
    as_of: date
    households: int
    points: int
    transaction_ids: list[int]


def expire(session: Session, actor: Actor, *, as_of: date, village_ids: Sequence[int] | None = None) -> ExpiryRun:
    """Post the expiry of every lot whose last day is before `as_of`, as ledger transactions (never silently).
    Idempotent by construction: expiry is itself a debit, so a second run with the same date finds nothing due."""
    policy = get_policy(session)
    if policy.expiry_rule is ExpiryRule.NONE:
        return ExpiryRun(as_of, 0, 0, [])
    stmt = select(ACCOUNTS.c.id, ACCOUNTS.c.household_id, ACCOUNTS.c.village_id).where(
        ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value, ACCOUNTS.c.balance > 0)
    if village_ids is not None:
        stmt = stmt.where(ACCOUNTS.c.village_id.in_(list(village_ids)))
    candidates = {r.id: (r.household_id, r.village_id) for r in session.execute(stmt)}
    _lock_kept(session, list(candidates))  # nothing is spent between the computation and the posting
    lots: dict[int, _Lots] = defaultdict(_Lots)
    ids = sorted(candidates)
    for where in _member_of(session, ENTRIES.c.account_id, ids):
        for r in session.execute(_lots_query(where)):
            lots[r.account_id].add(policy, int(r.amount), r.kind, r.occurred_at, r.orig_at)
    postings: list[Posting] = []
    last_day = as_of - timedelta(days=1)
    for acc_id in ids:
        due = lots[acc_id].due(as_of)
        if due <= 0:
            continue
        hid, vid = candidates[acc_id]
        postings.append(Posting(TxKind.EXPIRY, f"积分到期清零：{last_day:%Y年%m月%d日}前到期未用的 {due} 分",
                                (Leg(household_account(hid), -due), Leg(expired_account(vid), due)),
                                reference=f"expiry:{as_of.isoformat()}"))
    if not postings:
        return ExpiryRun(as_of, 0, 0, [])
    result = post_many(session, actor, postings, note=f"积分到期清零，截至 {as_of.isoformat()}")
    total = sum(-p.legs[0].amount for p in postings)
    return ExpiryRun(as_of, len(postings), total, [i for i in result.transaction_ids if i])


# ---- summaries ----------------------------------------------------------------------------------------------------

SUMMARY_KINDS = ("award", "penalty", "redemption", "expiry", "adjustment", "reversal")


@dataclass
class MonthSummary:
    village_id: int
    month: int
    by_kind: dict[str, int]  # net points into households, by transaction kind
    opening: int
    closing: int

    @property
    def issued(self) -> int:
        return self.by_kind.get("award", 0)

    @property
    def redeemed(self) -> int:
        return -self.by_kind.get("redemption", 0)

    @property
    def expired(self) -> int:
        return -self.by_kind.get("expiry", 0)

    @property
    def net(self) -> int:
        return sum(self.by_kind.values())


def village_summary(session: Session, village_id: int, year: int) -> list[MonthSummary]:
    """Per month of `year`: points issued, deducted, redeemed, expired, adjusted and reversed for the village's
    households, with the outstanding balance at the start and end of each month."""
    hh = ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value
    first, last = year * 100 + 1, year * 100 + 12
    opening = session.execute(
        select(func.coalesce(func.sum(ENTRIES.c.amount), 0))
        .select_from(ENTRIES.join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
                     .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id))
        .where(TXS.c.village_id == village_id, TXS.c.month < first, hh)).scalar_one()
    rows = session.execute(
        select(TXS.c.month, TXS.c.kind, func.sum(ENTRIES.c.amount).label("net"))
        .select_from(ENTRIES.join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
                     .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id))
        .where(TXS.c.village_id == village_id, TXS.c.month.between(first, last), hh)
        .group_by(TXS.c.month, TXS.c.kind)).all()
    by_month: dict[int, dict[str, int]] = defaultdict(dict)
    for r in rows:
        by_month[r.month][r.kind] = int(r.net)
    out: list[MonthSummary] = []
    running = int(opening)
    for m in range(first, last + 1):
        kinds = by_month.get(m, {})
        s = MonthSummary(village_id, m, dict(kinds), running, running + sum(kinds.values()))
        running = s.closing
        out.append(s)
    return out


@dataclass(frozen=True)
class VillageTotals:
    village_id: int
    households: int  # with an account
    outstanding: int  # sum of household balances: points the store still owes
    in_debt: int  # households below zero (allow_debt)


def village_totals(session: Session, village_ids: Sequence[int]) -> dict[int, VillageTotals]:
    out = {v: VillageTotals(v, 0, 0, 0) for v in village_ids}
    for where in _member_of(session, ACCOUNTS.c.village_id, village_ids):
        rows = session.execute(
            select(ACCOUNTS.c.village_id, func.count(), func.coalesce(func.sum(ACCOUNTS.c.balance), 0),
                   func.sum(case((ACCOUNTS.c.balance < 0, 1), else_=0)))
            .where(ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value, where)
            .group_by(ACCOUNTS.c.village_id)).all()
        for v, n, total, debt in rows:
            out[v] = VillageTotals(v, int(n), int(total), int(debt or 0))
    return out


# ---- proof --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Violation:
    kind: str  # unbalanced | empty | balance_mismatch | chain_gap | chain_break | overdraft | reversed_twice |
    #            reversal_mismatch | summary_mismatch (ledger_month_totals)
    message: str
    transaction_id: int | None = None
    account_id: int | None = None


def verify(session: Session) -> list[Violation]:
    """Prove the book: every transaction sums to zero and has entries; every kept balance (and entry count) equals
    its entries; each kept account's chain runs 1, 2, 3 … with balance_after = previous + amount; no spend left a
    balance below zero; no transaction is reversed twice, and every reversal exactly negates what it reverses."""
    out: list[Violation] = []
    for tx_id, total in session.execute(
            select(ENTRIES.c.transaction_id, func.sum(ENTRIES.c.amount)).group_by(ENTRIES.c.transaction_id)
            .having(func.sum(ENTRIES.c.amount) != 0)):
        out.append(Violation("unbalanced", f"第 {tx_id} 号交易的分录合计为 {total}，不为零", tx_id))
    for (tx_id,) in session.execute(select(TXS.c.id).where(~select(ENTRIES.c.id).where(
            ENTRIES.c.transaction_id == TXS.c.id).exists())):
        out.append(Violation("empty", f"第 {tx_id} 号交易没有任何分录", tx_id))
    sums = (select(ENTRIES.c.account_id, func.sum(ENTRIES.c.amount).label("total"), func.count().label("n"))
            .group_by(ENTRIES.c.account_id).subquery())
    for r in session.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.code, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count,
                                    sums.c.total, sums.c.n)
                             .outerjoin(sums, sums.c.account_id == ACCOUNTS.c.id)
                             .where(ACCOUNTS.c.balance.is_not(None))):
        total, n = int(r.total or 0), int(r.n or 0)
        if int(r.balance) != total:
            out.append(Violation("balance_mismatch", f"账户 {r.code} 记载余额 {r.balance}，而分录合计为 {total}",
                                 account_id=r.id))
        if int(r.entry_count) != n:
            out.append(Violation("balance_mismatch", f"账户 {r.code} 记载 {r.entry_count} 条分录，实有 {n} 条",
                                 account_id=r.id))
    prev_seq = func.lag(ENTRIES.c.seq).over(partition_by=ENTRIES.c.account_id, order_by=ENTRIES.c.seq)
    prev_bal = func.lag(ENTRIES.c.balance_after).over(partition_by=ENTRIES.c.account_id, order_by=ENTRIES.c.seq)
    chain = (select(ENTRIES.c.id, ENTRIES.c.account_id, ENTRIES.c.transaction_id, ENTRIES.c.seq, ENTRIES.c.amount,
                    ENTRIES.c.balance_after, prev_seq.label("prev_seq"), prev_bal.label("prev_bal"))
             .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
             .where(ACCOUNTS.c.balance.is_not(None)).subquery())
    bad = select(chain).where(
        (func.coalesce(chain.c.prev_seq, 0) + 1 != chain.c.seq)
        | (func.coalesce(chain.c.prev_bal, 0) + chain.c.amount != chain.c.balance_after)
        | chain.c.seq.is_(None))
    for r in session.execute(bad):
        if r.seq is None:
            out.append(Violation("chain_gap", f"账户 {r.account_id} 的第 {r.id} 号分录缺少序号和结余",
                                 r.transaction_id, r.account_id))
        elif (r.prev_seq or 0) + 1 != r.seq:
            out.append(Violation("chain_gap", f"账户 {r.account_id} 的分录序号从 {r.prev_seq or 0} 跳到 {r.seq}"
                                              f"（第 {r.transaction_id} 号交易），中间有缺失", r.transaction_id,
                                 r.account_id))
        else:
            out.append(Violation("chain_break", f"账户 {r.account_id} 第 {r.seq} 条分录（第 {r.transaction_id} 号交易）"
                                                f"的结余 {r.balance_after} ≠ 上一条结余 {r.prev_bal or 0} + 本条 {r.amount}",
                                 r.transaction_id, r.account_id))
    for r in session.execute(select(ENTRIES.c.transaction_id, ENTRIES.c.account_id, ENTRIES.c.balance_after)
                             .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
                             .where(TXS.c.kind == TxKind.REDEMPTION.value, ENTRIES.c.amount < 0,
                                    ENTRIES.c.balance_after < 0)):
        out.append(Violation("overdraft", f"第 {r.transaction_id} 号兑换使账户 {r.account_id} 透支到 "
                                          f"{r.balance_after} 分", r.transaction_id, r.account_id))
    for orig_id, n in session.execute(select(TXS.c.reverses_id, func.count()).where(TXS.c.reverses_id.is_not(None))
                                      .group_by(TXS.c.reverses_id).having(func.count() > 1)):
        out.append(Violation("reversed_twice", f"第 {orig_id} 号交易被冲正了 {n} 次", orig_id))
    for tx_id, kind, rid in session.execute(select(TXS.c.id, TXS.c.kind, TXS.c.reverses_id).where(
            (TXS.c.kind == TxKind.REVERSAL.value) != TXS.c.reverses_id.is_not(None))):
        what = "冲正交易没有注明冲正哪一笔" if kind == TxKind.REVERSAL else f"非冲正交易（{kind}）却注明冲正第 {rid} 号交易"
        out.append(Violation("reversal_mismatch", f"第 {tx_id} 号交易：{what}", tx_id))
    target = aliased(LedgerTransaction)
    for tx_id, rid in session.execute(select(TXS.c.id, TXS.c.reverses_id).join(target, target.id == TXS.c.reverses_id)
                                      .where(target.kind == TxKind.REVERSAL.value)):
        out.append(Violation("reversal_mismatch", f"第 {tx_id} 号交易冲正的第 {rid} 号交易本身是冲正", tx_id))
    rev = aliased(LedgerTransaction)
    e_orig = aliased(LedgerEntry)
    e_rev = aliased(LedgerEntry)
    net = (select(rev.id.label("rev_id"), rev.reverses_id.label("orig_id")).where(rev.reverses_id.is_not(None))
           .subquery())
    mismatched = session.execute(
        select(net.c.rev_id, net.c.orig_id).where(
            select(func.count()).select_from(e_orig).where(e_orig.transaction_id == net.c.orig_id).scalar_subquery()
            != select(func.count()).select_from(e_rev).where(e_rev.transaction_id == net.c.rev_id).scalar_subquery())
        .union(select(net.c.rev_id, net.c.orig_id).join(e_rev, e_rev.transaction_id == net.c.rev_id).where(
            ~select(e_orig.id).where(e_orig.transaction_id == net.c.orig_id, e_orig.account_id == e_rev.account_id,
                                     e_orig.amount == -e_rev.amount).exists()))).all()
    for rev_id, orig_id in mismatched:
        out.append(Violation("reversal_mismatch", f"第 {rev_id} 号冲正与被冲正的第 {orig_id} 号交易不是正好相反",
                             rev_id))
    out.extend(_month_totals_drift(session))
    return out


def kind_totals(session: Session, village_ids: Sequence[int], from_month: int,
                to_month: int) -> dict[int, dict[str, int]]:
    """Per village and kind of transaction, the points moved on households' accounts in the months (signed: awards
    positive, redemptions negative), in one grouped statement."""
    out: dict[int, dict[str, int]] = {v: {} for v in village_ids}
    if not village_ids:
        return out
    for vid, kind, total in session.execute(
            select(MONTHS.c.village_id, MONTHS.c.kind, func.sum(MONTHS.c.points))
            .where(MONTHS.c.village_id.in_(list(village_ids)), MONTHS.c.month.between(from_month, to_month))
            .group_by(MONTHS.c.village_id, MONTHS.c.kind)):
        out[vid][kind] = int(total or 0)
    return out


def month_kind_totals(session: Session, village_ids: Sequence[int], from_month: int,
                      to_month: int) -> dict[int, dict[str, int]]:
    """Per month and kind, the points moved on the villages' household accounts (for trends over months)."""
    out: dict[int, dict[str, int]] = {}
    if not village_ids:
        return out
    for month, kind, total in session.execute(
            select(MONTHS.c.month, MONTHS.c.kind, func.sum(MONTHS.c.points))
            .where(MONTHS.c.village_id.in_(list(village_ids)), MONTHS.c.month.between(from_month, to_month))
            .group_by(MONTHS.c.month, MONTHS.c.kind)):
        out.setdefault(int(month), {})[kind] = int(total or 0)
    return out


def rebuild_month_totals(session: Session) -> int:
    """Rewrite ledger_month_totals from the entries (after a load that wrote the book directly, or to repair what
    `verify` reports as summary_mismatch). Returns the rows written."""
    slot = (ACCOUNTS.c.id % SLOTS).label("slot")
    grouped = (select(TXS.c.village_id, TXS.c.month, TXS.c.kind, slot, func.sum(ENTRIES.c.amount))
               .join(ENTRIES, ENTRIES.c.transaction_id == TXS.c.id).join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
               .where(ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value)
               .group_by(TXS.c.village_id, TXS.c.month, TXS.c.kind, slot))
    session.execute(MONTHS.delete())
    done = session.execute(insert(MONTHS).from_select(["village_id", "month", "kind", "slot", "points"], grouped))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def _month_totals_drift(session: Session) -> list[Violation]:
    """ledger_month_totals against the entries it summarises: every village, month and kind must agree."""
    book = {(int(v), int(m), k): int(t) for v, m, k, t in session.execute(
        select(TXS.c.village_id, TXS.c.month, TXS.c.kind, func.sum(ENTRIES.c.amount))
        .join(ENTRIES, ENTRIES.c.transaction_id == TXS.c.id).join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
        .where(ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value).group_by(TXS.c.village_id, TXS.c.month, TXS.c.kind))}
    kept = {(int(v), int(m), k): int(t) for v, m, k, t in session.execute(
        select(MONTHS.c.village_id, MONTHS.c.month, MONTHS.c.kind, func.sum(MONTHS.c.points))
        .group_by(MONTHS.c.village_id, MONTHS.c.month, MONTHS.c.kind))}
    out = []
    for key in sorted(set(book) | set(kept)):
        if book.get(key, 0) != kept.get(key, 0):
            v, m, k = key
            out.append(Violation("summary_mismatch", f"村 {v} 在 {m // 100} 年 {m % 100} 月的{TX_KIND_LABELS.get(k, k)}"
                                                     f"：汇总表记 {kept.get(key, 0)} 分，分录合计 {book.get(key, 0)} 分"))
    return out


def household_kind_totals(session: Session, village_id: int, from_month: int,
                          to_month: int) -> dict[int, dict[str, int]]:
    """Per household of the village and kind of transaction, the points moved on its account in the months."""
    out: dict[int, dict[str, int]] = {}
    for hid, kind, total in session.execute(
            select(ACCOUNTS.c.household_id, TXS.c.kind, func.sum(ENTRIES.c.amount))
            .join(ENTRIES, ENTRIES.c.account_id == ACCOUNTS.c.id)
            .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
            .where(ACCOUNTS.c.kind == "household", ACCOUNTS.c.village_id == village_id,
                   TXS.c.month.between(from_month, to_month))
            .group_by(ACCOUNTS.c.household_id, TXS.c.kind)):
        out.setdefault(int(hid), {})[kind] = int(total or 0)
    return out


def redemption_transactions(session: Session) -> dict[int, tuple[int, int, int | None]]:
    """Every redemption transaction: its store, the points it took and the household it took them from (for the
    store's proof of its books)."""
    rows = session.execute(select(TXS.c.id, ACCOUNTS.c.kind, ACCOUNTS.c.store_id, ACCOUNTS.c.household_id,
                                  ENTRIES.c.amount)
                           .join(ENTRIES, ENTRIES.c.transaction_id == TXS.c.id)
                           .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
                           .where(TXS.c.kind == TxKind.REDEMPTION.value))
    store: dict[int, tuple[int, int]] = {}
    household: dict[int, int] = {}
    for r in rows:
        if r.kind == "redeemed":
            store[r.id] = (int(r.store_id), int(r.amount))
        elif r.household_id is not None:
            household[r.id] = int(r.household_id)
    return {tx: (sid, points, household.get(tx)) for tx, (sid, points) in store.items()}


def transaction_count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(TXS)).scalar_one())

