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

The service is a package, split along the sections the single module had; this module is its entry point and
re-exports what callers use, so `from app.ledger import service as ledger; ledger.post(...)` is the way in:
`common` (limits, tables, errors, small helpers), `accounts` (account codes), `records` (what callers pass and get
back), `writing` and `inserts` (the write path above: `_post_batch` and the set-based writes under it), `posting`,
`reading`, `policy` and `expiry`, `summaries`, `proof` (`verify` and the month totals). `exports` (the .xlsx
statement) sits in the package but is not re-exported: it is imported as `app.ledger.service.exports`.
"""

from __future__ import annotations

# the model enums callers pass (ledger.TxKind …) were importable from the single module, and still are
from app.ledger.models import TX_KIND_LABELS, AccountKind, ExpiryRule, PenaltyPolicy, TxKind
from app.ledger.service.accounts import (
    adjust_account,
    expired_account,
    household_account,
    issue_account,
    parse_code,
    redeemed_account,
)
from app.ledger.service.common import (
    ACCOUNTS,
    CHUNK,
    ENTRIES,
    MEMO_MAX,
    MONTHS,
    NOT_SERVED,
    SLOTS,
    TXS,
    InsufficientPoints,
    UnknownHousehold,
    month_of,
)
from app.ledger.service.expiry import ExpiryRun, expire, expiring
from app.ledger.service.inserts import COPY_FROM, _insert_rows, _insert_transactions, _write_balances
from app.ledger.service.policy import Policy, get_policy, set_policy
from app.ledger.service.posting import adjust, award, award_posting, penalize, penalty_posting, post, post_many, reverse, spend
from app.ledger.service.proof import (
    Violation,
    _month_totals_drift,
    household_kind_totals,
    kind_totals,
    month_kind_totals,
    rebuild_month_totals,
    redemption_transactions,
    transaction_count,
    verify,
)
from app.ledger.service.reading import (
    Statement,
    StatementLine,
    account_balance,
    balance,
    balances,
    get_transaction,
    reversal_of,
    reversed_among,
    scope_of_transaction,
    statement,
    statement_all,
)
from app.ledger.service.records import BulkResult, EntryView, Leg, Posted, Posting, TxView
from app.ledger.service.summaries import SUMMARY_KINDS, MonthSummary, VillageTotals, village_summary, village_totals
from app.ledger.service.writing import KEY_RACE_ATTEMPTS, _existing_keys, _post_batch, _resolve_and_lock

# what callers reach as `ledger.<name>`: a few private names too, which tests and the benchmarks name
__all__ = [
    "ACCOUNTS",
    "CHUNK",
    "COPY_FROM",
    "ENTRIES",
    "KEY_RACE_ATTEMPTS",
    "MEMO_MAX",
    "MONTHS",
    "NOT_SERVED",
    "SLOTS",
    "SUMMARY_KINDS",
    "TXS",
    "TX_KIND_LABELS",
    "AccountKind",
    "BulkResult",
    "EntryView",
    "ExpiryRule",
    "ExpiryRun",
    "InsufficientPoints",
    "Leg",
    "MonthSummary",
    "PenaltyPolicy",
    "Policy",
    "Posted",
    "Posting",
    "Statement",
    "StatementLine",
    "TxKind",
    "TxView",
    "UnknownHousehold",
    "VillageTotals",
    "Violation",
    "_existing_keys",
    "_insert_rows",
    "_insert_transactions",
    "_month_totals_drift",
    "_post_batch",
    "_resolve_and_lock",
    "_write_balances",
    "account_balance",
    "adjust",
    "adjust_account",
    "award",
    "award_posting",
    "balance",
    "balances",
    "expire",
    "expired_account",
    "expiring",
    "get_policy",
    "get_transaction",
    "household_account",
    "household_kind_totals",
    "issue_account",
    "kind_totals",
    "month_kind_totals",
    "month_of",
    "parse_code",
    "penalize",
    "penalty_posting",
    "post",
    "post_many",
    "rebuild_month_totals",
    "redeemed_account",
    "redemption_transactions",
    "reversal_of",
    "reverse",
    "reversed_among",
    "scope_of_transaction",
    "set_policy",
    "spend",
    "statement",
    "statement_all",
    "transaction_count",
    "verify",
    "village_summary",
    "village_totals",
]
