"""Account codes: the text names of the ledger's accounts (`household:<id>`, `village:<id>:issue|expired|adjust`,
`store:<id>:redeemed`), the functions that build them, and `parse_code`, which reads one back into its kind and
owner (refusing anything else)."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import ValidationFailed
from app.ledger.models import AccountKind


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
