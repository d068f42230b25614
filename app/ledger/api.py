"""JSON API of the points ledger (/api/v1). Every write that moves points takes an `Idempotency-Key` header: a retry
with the same key and the same body answers the first result again (200, `Idempotent-Replayed: true`) and posts
nothing; the same key with a different body is refused (409 idempotency_conflict)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from app.auth.deps import authorize, register_scope_resolver
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import to_local, utcnow
from app.deps import DbSession
from app.ledger import service as ledger
from app.ledger.schemas import (
    AdjustIn,
    ExpiringOut,
    MonthSummaryOut,
    PointsOut,
    PolicyIn,
    PolicyOut,
    PostedOut,
    ReverseIn,
    StatementOut,
    TransactionOut,
    VillageSummaryOut,
)
from app.ledger.service import exports
from app.org.api import links
from app.web.templates import download

register_scope_resolver("transaction_id", ledger.scope_of_transaction)

router = APIRouter(prefix="/api/v1", tags=["积分账本"])
TRANSACTION_USES = dict(get="transaction_api_v1_ledger_transactions__transaction_id__get",
                        reverse="reverse_api_v1_ledger_transactions__transaction_id__reversal_post")
View = Depends(authorize(Perm.LEDGER_VIEW))
Manage = Depends(authorize(Perm.LEDGER_MANAGE))
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=120,
                                             description="幂等键：同一个键重发同一个请求只记一次账")]


def _posted(session: DbSession, response: Response, result: ledger.Posted, household_id: int) -> PostedOut:
    if result.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        response.status_code = 201
    tx = TransactionOut.build(result.tx) if result.tx else None
    code = ledger.household_account(household_id)
    after = None if result.replayed or result.tx is None else next(
        (e.balance_after for e in result.tx.entries if e.account == code), None)
    return PostedOut(transaction=tx, replayed=result.replayed,
                     balance=after if after is not None else ledger.balance(session, household_id),
                     requested=result.requested, applied=result.applied)


@router.get("/households/{household_id}/points", response_model=PointsOut, summary="农户积分余额和即将到期的积分")
def points(household_id: int, session: DbSession, p: Principal = View) -> PointsOut:
    policy = ledger.get_policy(session)
    return PointsOut(household_id=household_id, balance=ledger.balance(session, household_id),
                     expiring=[ExpiringOut(date=d, points=n) for d, n in ledger.expiring(session, household_id)],
                     expiry_rule=policy.expiry_rule.value)


@router.get("/households/{household_id}/points/statement", response_model=StatementOut,
            summary="农户积分明细（最新在前，含每笔后的余额）",
            responses=links(200, "/items/0/transaction_id", "transaction_id", TRANSACTION_USES))
def statement(household_id: int, session: DbSession, p: Principal = View,
              offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
              limit: Annotated[int, Query(ge=1, le=200)] = 50) -> StatementOut:
    return StatementOut.build(ledger.statement(session, household_id, offset=offset, limit=limit))


@router.get("/households/{household_id}/points/statement.xlsx", summary="导出农户积分明细（xlsx）",
            response_class=Response, responses={200: {"description": "积分明细表", "content": {
                exports.XLSX: {"schema": {"type": "string", "format": "binary"}}}}})
def statement_xlsx(household_id: int, session: DbSession, p: Principal = View) -> Response:
    return download(exports.statement_file(session, household_id))


@router.post("/households/{household_id}/points/adjustments", response_model=PostedOut, status_code=201,
             summary="积分调整（县管理员；须写明原因）",
             responses=links(201, "/transaction/id", "transaction_id", TRANSACTION_USES))
def adjust(household_id: int, body: AdjustIn, session: DbSession, response: Response, p: Principal = Manage,
           idempotency_key: IdempotencyKey = None) -> PostedOut:
    result = ledger.adjust(session, p.actor(), household_id=household_id, amount=body.amount, reason=body.reason,
                           idempotency_key=idempotency_key)
    return _posted(session, response, result, household_id)


@router.get("/ledger/transactions/{transaction_id}", response_model=TransactionOut, summary="一笔交易及其分录")
def transaction(transaction_id: int, session: DbSession, p: Principal = View) -> TransactionOut:
    return TransactionOut.build(ledger.get_transaction(session, transaction_id),
                                ledger.reversal_of(session, transaction_id))


@router.post("/ledger/transactions/{transaction_id}/reversal", response_model=PostedOut, status_code=201,
             summary="冲正一笔交易（县管理员；每笔只能冲正一次）")
def reverse(transaction_id: int, body: ReverseIn, session: DbSession, response: Response, p: Principal = Manage,
            idempotency_key: IdempotencyKey = None) -> PostedOut:
    scope = ledger.scope_of_transaction(session, transaction_id)
    result = ledger.reverse(session, p.actor(), transaction_id, reason=body.reason, idempotency_key=idempotency_key)
    return _posted(session, response, result, scope.household_id if scope and scope.household_id else 0)


@router.get("/villages/{village_id}/points/summary", response_model=VillageSummaryOut,
            summary="村积分月度汇总：发放、扣减、兑换、清零、调整、冲正和结余")
def village_summary(village_id: int, session: DbSession, p: Principal = View,
                    year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> VillageSummaryOut:
    year = year or (to_local(utcnow()) or utcnow()).year
    totals = ledger.village_totals(session, [village_id])[village_id]
    return VillageSummaryOut(village_id=village_id, year=year, households_with_points=totals.households,
                             outstanding=totals.outstanding, households_in_debt=totals.in_debt,
                             months=[MonthSummaryOut.build(m) for m in ledger.village_summary(session, village_id,
                                                                                              year)])


@router.get("/ledger/policy", response_model=PolicyOut, summary="县里的积分有效期政策")
def get_policy(session: DbSession, p: Principal = Depends(authorize(Perm.SIGNED_IN))) -> PolicyOut:
    return PolicyOut.build(ledger.get_policy(session))


@router.put("/ledger/policy", response_model=PolicyOut, summary="设置积分有效期政策（县管理员）")
def set_policy(body: PolicyIn, session: DbSession, p: Principal = Manage) -> PolicyOut:
    return PolicyOut.build(ledger.set_policy(session, p.actor(), expiry_rule=body.expiry_rule,
                                             expiry_months=body.expiry_months))
