"""spawner: server reservations (atomic quota counting) and quota notices

Revision ID: 0003_spawner
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_spawner"
down_revision = None
branch_labels = ("spawner",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fedhub_server_reservations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("tier", sa.String(63), nullable=False),
        sa.Column("profile", sa.String(63), nullable=False),
        sa.Column("cpu", sa.Float, nullable=False),
        sa.Column("memory_gb", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("metered_until", sa.DateTime, nullable=False),
        sa.UniqueConstraint("key", name="uq_reservation_key"),
        sa.UniqueConstraint("username", "server_name", name="uq_reservation_server"),
    )
    op.create_index("ix_reservation_tenant", "fedhub_server_reservations", ["tenant"])
    op.create_table(
        "fedhub_quota_notices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("key", sa.String(63), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("tenant", "key", name="uq_quota_notice"),
    )


def downgrade() -> None:
    op.drop_table("fedhub_quota_notices")
    op.drop_table("fedhub_server_reservations")
