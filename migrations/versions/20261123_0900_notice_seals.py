"""notice seals: each notice carries an HMAC under a key outside the database (set once: the register's guard lets
it go from empty to a value, never change); `zhenfeng migrate` seals the notices registered before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

FIXED = ("code", "kind", "village_id", "household_id", "round_id", "period", "title", "content_sha256", "pdf_sha256",
         "masking", "audit_seq", "audit_hash", "generated_at", "generated_by")


def upgrade() -> None:
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    _guard(with_mac=True)


def _guard(*, with_mac: bool) -> None:
    """A registered notice is evidence: no DELETE, and an UPDATE may only record its supersession (and, with
    seals, set a missing seal once)."""
    if op.get_bind().dialect.name == "postgresql":
        same = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in FIXED)
        if with_mac:
            same += " AND (OLD.mac IS NULL OR NEW.mac IS NOT DISTINCT FROM OLD.mac)"
        op.execute(f"""
            CREATE OR REPLACE FUNCTION notices_fixed() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'UPDATE' AND {same} AND NEW.content::text = OLD.content::text THEN RETURN NEW; END IF;
                RAISE EXCEPTION 'notices are evidence: % refused (only the supersession may change)', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql""")
    else:
        same = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in (*FIXED, "content"))
        if with_mac:
            same += " AND (OLD.mac IS NULL OR NEW.mac IS OLD.mac)"
        op.execute("DROP TRIGGER IF EXISTS notices_no_update")
        op.execute(f"""CREATE TRIGGER notices_no_update BEFORE UPDATE ON notices WHEN NOT ({same})
                       BEGIN SELECT RAISE(ABORT, 'notices are evidence: UPDATE refused (only the supersession may change)'); END""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS notices_no_update")
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_column('mac')
    _guard(with_mac=False)
