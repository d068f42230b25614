"""Every table, imported in one place so that the metadata (Alembic, schema tests) sees them all.

A table's surrogate key is declared `id: int = Field(default=None, primary_key=True)`: the database assigns it when
the row is flushed, and every row the services hand on has been flushed or read, so the type says `int` (not
`int | None`) and no caller needs a cast or a `type: ignore` to pass an id on. A new row's `id` is None only between
`session.add` and `session.flush`, inside the service that creates it."""

from app.audit.models import AuditEvent
from app.auth.models import ApiToken, LoginAttempt, RoleGrant, User, UserSession
from app.committee.models import CommitteeMember, Recusal
from app.db import metadata
from app.evaluation.models import EvalRound, Evidence, Motion, MotionVote, Objection, Rating, RoundEvent, RoundResult, SheetUpload
from app.households.models import Household, HouseholdEvent, HouseholdMembership, ImportBatch, Member
from app.ledger.models import LedgerAccount, LedgerEntry, LedgerMonthTotal, LedgerPolicy, LedgerTransaction
from app.lists.models import ListCount, ListPosting, Rectification, RectificationVisit
from app.notices.models import HouseholdPin, Notice, NoticeBatch
from app.org.models import County, Group, Store, StoreVillage, Township, Village
from app.reports.models import CreditConsent
from app.rulesets.models import RulesetAssignment, RulesetVersion
from app.store.models import Card, CardEvent, Fund, Item, Redemption, RedemptionLine, StockMovement

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Card",
    "CardEvent",
    "CommitteeMember",
    "County",
    "CreditConsent",
    "EvalRound",
    "Evidence",
    "Fund",
    "Group",
    "Household",
    "HouseholdEvent",
    "HouseholdMembership",
    "HouseholdPin",
    "ImportBatch",
    "Item",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerMonthTotal",
    "LedgerPolicy",
    "LedgerTransaction",
    "ListCount",
    "ListPosting",
    "LoginAttempt",
    "Member",
    "Motion",
    "MotionVote",
    "Notice",
    "NoticeBatch",
    "Objection",
    "Rating",
    "Rectification",
    "RectificationVisit",
    "Recusal",
    "Redemption",
    "RedemptionLine",
    "RoleGrant",
    "RoundEvent",
    "RoundResult",
    "RulesetAssignment",
    "RulesetVersion",
    "SheetUpload",
    "StockMovement",
    "Store",
    "StoreVillage",
    "Township",
    "User",
    "UserSession",
    "Village",
    "metadata",
]
