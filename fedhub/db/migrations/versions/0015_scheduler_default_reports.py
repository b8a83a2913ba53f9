"""scheduler: the claim of each tenant's default usage report; "once at" jobs; formats, kernel, keep_runs

One row per (tenant, report) the scheduler created once: the row outlives the job, so a
job a tenant admin deleted (the opt-out) is never created again. A job with
``run_once_at`` runs once at that time (its ``cron`` is empty). ``formats``: the outputs a
job's runs write (``ipynb`` always; ``html``, ``pdf``); ``kernel``: one of its tier's;
``keep_runs``: how many finished runs keep their outputs.

Revision ID: 0015_scheduler_default_reports
Revises: 0014_scheduler
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_scheduler_default_reports"
down_revision = "0014_scheduler"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fedhub_scheduler_defaults",
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("report", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.add_column("fedhub_scheduled_jobs", sa.Column("run_once_at", sa.DateTime, nullable=True))
    op.add_column("fedhub_scheduled_jobs", sa.Column("formats", sa.JSON, nullable=True))
    op.add_column("fedhub_scheduled_jobs", sa.Column("kernel", sa.String(255), nullable=True))
    op.add_column("fedhub_scheduled_jobs", sa.Column("keep_runs", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fedhub_scheduled_jobs") as batch:
        batch.drop_column("run_once_at")
        batch.drop_column("formats")
        batch.drop_column("kernel")
        batch.drop_column("keep_runs")
    op.drop_table("fedhub_scheduler_defaults")
