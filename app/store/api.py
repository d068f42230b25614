"""JSON API of the store counter (/api/v1): read a scanned card, the catalog, redeem, void the same day.

A redemption takes an `Idempotency-Key` header (one per cart): a retry with the same key and the same cart answers
the first redemption again (200, `Idempotent-Replayed: true`) and moves nothing; the same key with another cart is
refused (409)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.deps import DbSession
from app.ledger import service as ledger
from app.org.api import links
from app.store.schemas import (
    ExpiringOut,
    HouseholdAtCounterOut,
    ItemOut,
    LineOut,
    RedemptionIn,
    RedemptionOut,
    ScanIn,
    VoidIn,
)
from app.store.service import cards, counter, stores

router = APIRouter(prefix="/api/v1", tags=["振风超市"])
Counter = Depends(authorize(Perm.LEDGER_SPEND))
View = Depends(authorize(Perm.STORE_VIEW))
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=80,
                                             description="幂等键：每个购物车一个；重发同一个请求只兑换一次")]


def _key(request: Request) -> bytes:
    return cards.card_key(request.app.state.settings.secret_key)


@router.post("/stores/{store_id}/scan", response_model=HouseholdAtCounterOut,
             summary="读积分卡：返回这一户、余额和即将到期的积分（挂失或伪造的卡被拒绝并记入审计）",
             responses=links(200, "/household_id", "household_id",
                             {"points": "points_api_v1_households__household_id__points_get"}))
def scan(store_id: int, body: ScanIn, request: Request, session: DbSession,
         p: Principal = Counter) -> HouseholdAtCounterOut:
    found = cards.read(session, p.actor(), _key(request), body.code, store_id=store_id)
    store = stores.get_store(session, store_id)
    h = counter.check_served(session, store, found.household, stores.served_villages(session, store_id), by_card=True)
    return HouseholdAtCounterOut(
        household_id=h.id, village_id=h.village_id, number=h.number, head_name=h.head_name,
        balance=ledger.balance(session, h.id),
        expiring=[ExpiringOut(date=d, points=n) for d, n in ledger.expiring(session, h.id)],
        spent_today=counter.spent_today(session, store_id, h.id, counter.today()),
        daily_limit=store.daily_limit, card_version=found.card.version)


@router.get("/stores/{store_id}/items", response_model=list[ItemOut], summary="本店在售商品（含库存）")
def items(store_id: int, session: DbSession, p: Principal = View) -> list[ItemOut]:
    return [ItemOut.model_validate(i) for i in counter.items_for(session, store_id)]


def _out(session: DbSession, done: counter.Redeemed) -> RedemptionOut:
    r = done.redemption
    return RedemptionOut(id=r.id, store_id=r.store_id, household_id=r.household_id, points=r.points,
                         balance_after=done.balance_after, ledger_transaction_id=r.ledger_tx_id, status=r.status,
                         day=r.day, created_at=r.created_at, identified_by=r.identified_by,
                         lines=[LineOut.model_validate(ln) for ln in done.lines], replayed=done.replayed)


@router.post("/stores/{store_id}/redemptions", response_model=RedemptionOut, status_code=201,
             summary="兑换：积分和库存同时扣减，或都不扣（只能全额用积分；请带 Idempotency-Key）",
             responses=links(201, "/id", "redemption_id", {"void": "void_api_v1_redemptions__redemption_id__void_post"}))
def redeem(store_id: int, body: RedemptionIn, request: Request, response: Response, session: DbSession,
           p: Principal = Counter, idempotency_key: IdempotencyKey = None) -> RedemptionOut:
    scanned = cards.read(session, p.actor(), _key(request), body.card, store_id=store_id) if body.card else None
    done = counter.redeem(session, p.actor(), store_id=store_id, household_id=body.household_id,
                          lines=[counter.Line(ln.item_id, ln.quantity) for ln in body.lines], scanned=scanned,
                          identity_note=body.identity_note, idempotency_key=idempotency_key,
                          expected_points=body.expected_points)
    if done.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return _out(session, done)


@router.post("/redemptions/{redemption_id}/void", response_model=RedemptionOut,
             summary="当天作废一笔兑换：冲正积分、商品回库（往日的兑换由村文书在网页上作废）")
def void(redemption_id: int, body: VoidIn, session: DbSession, p: Principal = Counter) -> RedemptionOut:
    r = counter.void(session, p.actor(), redemption_id, reason=body.reason, any_day=False)
    lines = counter.lines_of(session, r.id)
    return _out(session, counter.Redeemed(r, lines, ledger.balance(session, r.household_id), False))


