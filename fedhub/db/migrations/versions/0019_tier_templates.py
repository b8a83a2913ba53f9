"""tier templates: tiers stored in the database, every version kept, and which one applies

On the tenancy branch (after 0012_security_policy, the newest revision that reads the
tiers' keys; the branch has a second head, 0011_sessions, that this one leaves alone),
after 0016_rls, whose roles are granted read access here (PostgreSQL only).

``fedhub_tier_versions`` holds one row per version of a tier created by ``fedhub tiers
import|clone`` (never updated); ``fedhub_tier_applied`` says, append-only, which version
of a name applies from when (the newest row per name). Neither table is tenant-owned:
tier definitions are the platform's price list, readable by every scope and written by
the CLI only (docs/tier-templates.md).

Revision ID: 0019_tier_templates
Revises: 0012_security_policy
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_tier_templates"
down_revision = "0012_security_policy"
branch_labels = None
depends_on = ("0016_rls",)

VERSIONS = "fedhub_tier_versions"
APPLIED = "fedhub_tier_applied"


def upgrade() -> None:
    op.create_table(
        VERSIONS,
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        APPLIED,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("applied_by", sa.String(255), nullable=False),
        sa.Column("applied_at", sa.DateTime, nullable=False),
        sa.ForeignKeyConstraint(["name", "version"], [f"{VERSIONS}.name", f"{VERSIONS}.version"]),
    )
    if op.get_bind().dialect.name == "postgresql":
        # a service's unscoped transaction runs as fedhub_tenant: it must read the catalog
        for table in (VERSIONS, APPLIED):
            op.execute(f"GRANT SELECT ON {table} TO fedhub_tenant, fedhub_platform")


def downgrade() -> None:
    op.drop_table(APPLIED)
    op.drop_table(VERSIONS)
