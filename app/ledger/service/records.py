"""What callers pass to the ledger and get back: a `Posting` of `Leg`s (with the hash that recognises a retried
request), a posted transaction as a `TxView` of `EntryView`s, the answer to one posting (`Posted`) and to a batch
(`BulkResult`). Plain frozen dataclasses, no database access."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from app.ledger.models import TX_KIND_LABELS, TxKind
from app.ledger.service.accounts import household_account


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
