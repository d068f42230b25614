"""The public ways to move points: `post` and `post_many` (any posting, single or bulk), and the postings with
a meaning of their own: `award`, `penalize`, `spend` (a redemption at a store), `reverse` (at most once, never an
expiry, a redemption only when voided at the store) and `adjust` (the county administrator's correction), with the
`award_posting` and `penalty_posting` builders for `post_many`. Each goes through `writing._post_batch`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import to_local, utcnow
from app.core.context import Actor
from app.errors import Conflict, NotFound, ValidationFailed
from app.households.models import Household
from app.ledger.models import PenaltyPolicy, TxKind
from app.ledger.service.accounts import adjust_account, household_account, issue_account, redeemed_account
from app.ledger.service.common import NOT_SERVED, InsufficientPoints, UnknownHousehold, _clip_memo
from app.ledger.service.policy import get_policy
from app.ledger.service.reading import get_transaction, reversal_of
from app.ledger.service.records import BulkResult, Leg, Posted, Posting, TxView
from app.ledger.service.writing import _existing_keys, _post_batch
from app.org import service as org


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
    return post(session, actor, Posting(TxKind.AWARD, memo, (Leg(household_account(h.id), points),
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
    return post(session, actor, penalty_posting(h.id, h.village_id, points, memo, policy=policy,
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
                      (Leg(household_account(h.id), amount), Leg(adjust_account(h.village_id), -amount)),
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
