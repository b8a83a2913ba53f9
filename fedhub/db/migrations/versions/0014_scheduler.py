"""scheduled notebooks: jobs and their runs (fedhub.scheduler)

A branch of its own (migrations branch per area; ``fedhub.db.upgrade`` runs every head).
A run is unique per (job, scheduled time): that row is the claim that keeps one
scheduled time from running twice.

Revision ID: 0014_scheduler
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_scheduler"
down_revision = None
branch_labels = ("scheduler",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fedhub_scheduled_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("notebook", sa.String(1024), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("notify", sa.Boolean, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("next_run_at", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_scheduled_jobs_tenant", "fedhub_scheduled_jobs", ["tenant"])
    op.create_index("ix_scheduled_jobs_next_run", "fedhub_scheduled_jobs", ["next_run_at"])
    op.create_table(
        "fedhub_scheduled_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("scheduled_for", sa.DateTime, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime, nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("error_cell", sa.JSON, nullable=True),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("compute_seconds", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("job_id", "scheduled_for", name="uq_scheduled_run_time"),
    )
    op.create_index(
        "ix_scheduled_runs_tenant_status", "fedhub_scheduled_runs", ["tenant", "status"]
    )
    op.create_index("ix_scheduled_runs_job", "fedhub_scheduled_runs", ["job_id", "scheduled_for"])


def downgrade() -> None:
    op.drop_table("fedhub_scheduled_runs")
    op.drop_table("fedhub_scheduled_jobs")
