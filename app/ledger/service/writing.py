"""The one write path of the ledger (`_post_batch`, steps 1-5 of the package docstring): validating postings,
finding or creating accounts, locking the household rows, checking idempotency keys and reversals, planning every
new balance in memory, then handing the rows to `inserts`. Everything here is private to the service; the public
posting functions in `posting` call `_post_batch`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.core.clock import utcnow
from app.core.context import Actor
from app.errors import Conflict, NotFound, ValidationFailed
from app.households.models import Household
from app.ledger.models import AccountKind, TxKind
from app.ledger.service.accounts import parse_code
from app.ledger.service.common import (
    ACCOUNTS,
    ENTRIES,
    MEMO_MAX,
    NOT_SERVED,
    TXS,
    InsufficientPoints,
    UnknownHousehold,
    _chunks,
    _clip_memo,
    _is_pg,
    _member_of,
    month_of,
)
from app.ledger.service.inserts import _add_month_totals, _insert_rows, _insert_transactions, _KeyRace, _write_balances
from app.ledger.service.records import EntryView, Leg, Posting, TxView
from app.org.models import Store, Village

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
                ids[i] = ids[plans[i].index]
        if len(fresh) == 1:  # the caller gets its transaction back without reading it again
            pl, row = fresh[0], tx_rows[0]
            codes = {a.id: a.code for a in accounts.values()}
            fresh[0].view = TxView(new_ids[0], row["kind"], pl.village_id, month, pl.memo, row["reference"],
                                   row["actor_name"], when, row["idempotency_key"], row["reverses_id"],
                                   tuple(EntryView(e["account_id"], codes[e["account_id"]], e["amount"], e["seq"],
                                                   e["balance_after"]) for e in pl.entries))
    return ids, replayed, plans
