"""Every table, imported in one place so that the metadata (Alembic, schema tests) sees them all."""

from app.audit.models import AuditEvent
from app.auth.models import ApiToken, LoginAttempt, RoleGrant, User, UserSession
from app.db import metadata
from app.households.models import Household, HouseholdEvent, HouseholdMembership, ImportBatch, Member
from app.ledger.models import LedgerAccount, LedgerEntry, LedgerMonthTotal, LedgerPolicy, LedgerTransaction
from app.lists.models import Rectification, RectificationVisit
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
           "County",
           "CreditConsent",
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
           "LoginAttempt",
           "Member",
           "Notice",
           "NoticeBatch",
           "Rectification",
           "RectificationVisit",
           "Redemption",
           "RedemptionLine",
           "RoleGrant",
           "RulesetAssignment",
           "RulesetVersion",
           "StockMovement",
           "Store",
           "StoreVillage",
           "Township",
           "User",
           "UserSession",
           "Village",
           "metadata",
]
