"""approval requests: one mechanism for requests that someone must approve

``fedhub_requests`` (a kind, a tenant or none yet, the requester, a JSON payload, the
state pending|approved|rejected|withdrawn and the decision) and
``fedhub_request_comments``; a partial unique index keeps one pending ``tier_change`` per
tenant. Tenant-owned by ``tenant_id``: on PostgreSQL both get
row-level security like every such table (rls.TENANT_TABLES), after 0016_rls; a request
with no tenant (an onboarding) matches no tenant's predicate, so it is platform work
only. Comments are visible exactly when their request is.

Revision ID: 0021_approvals
Revises: 0020_tenant_branding
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from fedhub.db import rls

revision = "0021_approvals"
down_revision = "0020_tenant_branding"
branch_labels = None
depends_on = ("0016_rls",)

# frozen here, as a migration's must be (the same as rls.TENANT_TABLES says today)
PREDICATES = {
    "fedhub_requests": (
        "tenant_id = (SELECT t.id FROM fedhub_tenants t "
        "WHERE t.slug = current_setting('fedhub.tenant', true))"
    ),
    "fedhub_request_comments": ("EXISTS (SELECT 1 FROM fedhub_requests r WHERE r.id = request_id)"),
}


def upgrade() -> None:
    op.create_table(
        "fedhub_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column(
            "tenant_id",
            sa.Integer,
            sa.ForeignKey("fedhub_tenants.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column("requester", sa.String(320), nullable=False),
        sa.Column("requester_email", sa.String(320)),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("decided_by", sa.String(255)),
        sa.Column("decided_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_fedhub_requests_kind", "fedhub_requests", ["kind"])
    op.create_index("ix_fedhub_requests_tenant_state", "fedhub_requests", ["tenant_id", "state"])
    pending_tier_change = sa.text("kind = 'tier_change' AND state = 'pending'")
    op.create_index(
        "uq_fedhub_requests_pending_tier_change",
        "fedhub_requests",
        ["tenant_id"],
        unique=True,
        sqlite_where=pending_tier_change,
        postgresql_where=pending_tier_change,
    )
    op.create_table(
        "fedhub_request_comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "request_id",
            sa.Integer,
            sa.ForeignKey("fedhub_requests.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("author", sa.String(320), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index(
        "ix_fedhub_request_comments_request_id", "fedhub_request_comments", ["request_id"]
    )
    if op.get_bind().dialect.name == "postgresql":
        roles = f"{rls.TENANT_ROLE}, {rls.PLATFORM_ROLE}"
        for table, predicate in PREDICATES.items():
            op.execute(rls.grant_sql(table))
            op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {roles}")
            for statement in rls.enable_sql(table, predicate):
                op.execute(statement)


def downgrade() -> None:
    op.drop_table("fedhub_request_comments")
    op.drop_table("fedhub_requests")
