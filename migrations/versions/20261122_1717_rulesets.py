"""Rulesets (积分细则): stored versions (their TOML text) and their assignment to the county or a village.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 17:17:28.519312
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rulesets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('effective_from', sa.Integer(), nullable=False),
    sa.Column('toml', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rulesets')),
    sa.UniqueConstraint('code', 'version', name=op.f('uq_rulesets_code_version'))
    )
    op.create_table('ruleset_assignments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=True),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('from_month', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.ForeignKeyConstraint(['village_id'], ['villages.id'], name=op.f('fk_ruleset_assignments_village_id_villages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ruleset_assignments')),
    sa.UniqueConstraint('village_id', 'from_month', name=op.f('uq_ruleset_assignments_village_id_from_month'))
    )
    with op.batch_alter_table('ruleset_assignments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ruleset_assignments_village_id'), ['village_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ruleset_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ruleset_assignments_village_id'))

    op.drop_table('ruleset_assignments')
    op.drop_table('rulesets')
