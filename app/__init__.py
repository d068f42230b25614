"""振风超市: the village points scheme (积分超市, 红黑榜)."""

from sqlmodel import SQLModel

# Set before any table is defined, so every constraint and index gets a predictable name (Alembic needs them).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
