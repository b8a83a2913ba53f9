"""The declarative base shared by every fedhub table.

fedhub keeps its own tables (all prefixed ``fedhub_``) in the hub's database by
default, next to JupyterHub's, and migrates them with its own alembic history
(version table ``fedhub_alembic_version``), so the two never step on each other.
"""

from datetime import UTC, datetime

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Naive UTC now: SQLite has no time zones, so every stored time is naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)
