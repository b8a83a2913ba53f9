"""metering: the append-only usage meter

Revision ID: 0002_metering
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_metering"
down_revision = None
branch_labels = ("metering",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fedhub_meter_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255)),
        sa.Column("kind", sa.String(63), nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("start", sa.DateTime, nullable=False),
        sa.Column("end", sa.DateTime, nullable=False),
        sa.Column("source", sa.String(63), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("tenant", "source", "idempotency_key", name="uq_meter_idempotency"),
    )
    op.create_index(
        "ix_meter_tenant_kind_start", "fedhub_meter_events", ["tenant", "kind", "start"]
    )
    op.create_index(
        "ix_meter_tenant_user_kind_start",
        "fedhub_meter_events",
        ["tenant", "username", "kind", "start"],
    )


def downgrade() -> None:
    op.drop_table("fedhub_meter_events")
