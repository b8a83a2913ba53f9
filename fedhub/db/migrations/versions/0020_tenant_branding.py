"""tenant branding: a tenant's display name, primary colour, support link and logo

On the tenancy branch (after 0019_tier_templates); one row per tenant, gone with the
tenant. Tenant-owned (by ``tenant_id``): on PostgreSQL it gets row-level security like
every such table (rls.TENANT_TABLES), after 0016_rls, whose roles the policies name.
docs/branding.md says what each column may hold (checked before it is written).

Revision ID: 0020_tenant_branding
Revises: 0019_tier_templates
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from fedhub.db import rls

revision = "0020_tenant_branding"
down_revision = "0019_tier_templates"
branch_labels = None
depends_on = ("0016_rls",)

TABLE = "fedhub_tenant_branding"
# frozen here, as a migration's must be (the same as rls.TENANT_TABLES says today)
PREDICATE = (
    "tenant_id = (SELECT t.id FROM fedhub_tenants t "
    "WHERE t.slug = current_setting('fedhub.tenant', true))"
)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column(
            "tenant_id",
            sa.Integer,
            sa.ForeignKey("fedhub_tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("display_name", sa.String(80)),
        sa.Column("primary_colour", sa.String(7)),
        sa.Column("support_url", sa.String(500)),
        sa.Column("logo", sa.LargeBinary),
        sa.Column("logo_type", sa.String(16)),
        sa.Column("logo_sha256", sa.String(64)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("updated_by", sa.String(255)),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(rls.grant_sql(TABLE))
        for statement in rls.enable_sql(TABLE, PREDICATE):
            op.execute(statement)


def downgrade() -> None:
    op.drop_table(TABLE)
