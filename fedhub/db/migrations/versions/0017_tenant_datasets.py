"""tenant datasets: one row per version of a tenant's private dataset

On the experiments branch (after 0006_experiments); after 0016_rls, whose roles the
table's row-level security policies name (PostgreSQL only).

Revision ID: 0017_tenant_datasets
Revises: 0006_experiments
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from fedhub.db import rls

revision = "0017_tenant_datasets"
down_revision = "0006_experiments"
branch_labels = None
depends_on = ("0016_rls",)

TABLE = "fedhub_tenant_datasets"
# frozen here, as a migration's must be (the same as rls.TENANT_TABLES says today)
PREDICATE = "tenant = current_setting('fedhub.tenant', true)"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(rls.grant_sql(TABLE))
        for statement in rls.enable_sql(TABLE, PREDICATE):
            op.execute(statement)


def downgrade() -> None:
    op.drop_table(TABLE)
