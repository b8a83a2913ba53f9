"""rate limits: one counter per tenant, limit and window, shared by the hub and every service

On the metering branch (after 0002_metering): the counters are the live side of the
``api_calls`` meter. A row is reused when its window has expired (the upsert restarts
the count), so the table holds at most one row per tenant and limit: nothing to purge.

Revision ID: 0010_rate_limits
Revises: 0002_metering
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_rate_limits"
down_revision = "0002_metering"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fedhub_rate_limits",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(precision=53), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fedhub_rate_limits")
