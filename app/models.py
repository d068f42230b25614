"""Every table, imported in one place so that the metadata (Alembic, schema tests) sees them all."""

from app.audit.models import AuditEvent
from app.auth.models import ApiToken, LoginAttempt, RoleGrant, User, UserSession
from app.db import metadata
from app.org.models import County, Group, Store, Township, Village

__all__ = ["ApiToken", "AuditEvent", "County", "Group", "LoginAttempt", "RoleGrant", "Store", "Township", "User",
           "UserSession", "Village", "metadata"]
