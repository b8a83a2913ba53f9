"""experiments: federated runs, their specs and per-round metrics

Revision ID: 0006_experiments
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_experiments"
down_revision = None
branch_labels = ("experiments",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fedhub_experiments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("clients", sa.Integer, nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("rounds_done", sa.Integer, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_experiments_tenant_created", "fedhub_experiments", ["tenant", "created_at"])
    op.create_index("ix_experiments_status", "fedhub_experiments", ["status"])
    op.create_table(
        "fedhub_experiment_rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "experiment_id",
            sa.String(32),
            sa.ForeignKey("fedhub_experiments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("experiment_id", "round", name="uq_experiment_round"),
    )


def downgrade() -> None:
    op.drop_table("fedhub_experiment_rounds")
    op.drop_table("fedhub_experiments")
