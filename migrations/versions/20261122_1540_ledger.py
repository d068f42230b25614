"""The points ledger: accounts, transactions, entries (append-only) and the county's expiry policy.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 15:40:53.558248
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from migrations.helpers import create_append_only_guard, drop_append_only_guard

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ledger_policies',
    sa.Column('county_id', sa.Integer(), nullable=False),
    sa.Column('expiry_rule', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('expiry_months', sa.Integer(), nullable=True),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.ForeignKeyConstraint(['county_id'], ['counties.id'], name=op.f('fk_ledger_policies_county_id_counties')),
    sa.PrimaryKeyConstraint('county_id', name=op.f('pk_ledger_policies'))
    )
    op.create_table('ledger_transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Integer(), nullable=False),
    sa.Column('memo', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('occurred_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_ledger_transactions_actor_id_users')),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_transactions_reverses_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['village_id'], ['villages.id'], name=op.f('fk_ledger_transactions_village_id_villages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_ledger_transactions_idempotency_key')),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_ledger_transactions_reverses_id'))
    )
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_transactions_reference', ['reference'], unique=False)
        batch_op.create_index('ix_ledger_transactions_village_month', ['village_id', 'month', 'kind'], unique=False)

    op.create_table('ledger_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.Integer(), nullable=True),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('balance', sa.BigInteger(), nullable=True),
    sa.Column('entry_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint("(kind = 'household') = (balance IS NOT NULL)", name=op.f('ck_ledger_accounts_only_household_keeps_balance')),
    sa.CheckConstraint("(kind = 'household') = (household_id IS NOT NULL)", name=op.f('ck_ledger_accounts_household_has_household')),
    sa.CheckConstraint("(kind = 'redeemed') = (store_id IS NOT NULL)", name=op.f('ck_ledger_accounts_redeemed_has_store')),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_ledger_accounts_household_id_households')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_ledger_accounts_store_id_stores')),
    sa.ForeignKeyConstraint(['village_id'], ['villages.id'], name=op.f('fk_ledger_accounts_village_id_villages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('code', name=op.f('uq_ledger_accounts_code')),
    sa.UniqueConstraint('household_id', name=op.f('uq_ledger_accounts_household_id'))
    )
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_accounts_village_id'), ['village_id'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=True),
    sa.Column('balance_after', sa.BigInteger(), nullable=True),
    sa.CheckConstraint('(seq IS NULL) = (balance_after IS NULL)', name=op.f('ck_ledger_entries_seq_with_balance')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_entries_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_entries_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries')),
    sa.UniqueConstraint('account_id', 'seq', name=op.f('uq_ledger_entries_account_id_seq'))
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entries_transaction_id'), ['transaction_id'], unique=False)

    create_append_only_guard("ledger_transactions")
    create_append_only_guard("ledger_entries")


def downgrade() -> None:
    drop_append_only_guard("ledger_entries")
    drop_append_only_guard("ledger_transactions")
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entries_transaction_id'))

    op.drop_table('ledger_entries')
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_accounts_village_id'))

    op.drop_table('ledger_accounts')
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_transactions_village_month')
        batch_op.drop_index('ix_ledger_transactions_reference')

    op.drop_table('ledger_transactions')
    op.drop_table('ledger_policies')
