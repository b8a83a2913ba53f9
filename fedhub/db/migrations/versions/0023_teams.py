"""teams inside a tenant, with optional quotas carved out of the tenant's

Two tenant-owned tables (fedhub.tenancy.teams): ``fedhub_teams`` (by ``tenant_id``, gone
with the tenant) and ``fedhub_team_members`` (hangs off its team, gone with it). On
PostgreSQL both get row-level security like every such table (rls.TENANT_TABLES), after
0016_rls, whose roles the policies name.

Revision ID: 0023_teams
Revises: 0022_onboarding
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from fedhub.db import rls

revision = "0023_teams"
down_revision = "0022_onboarding"
branch_labels = None
depends_on = ("0016_rls",)

# frozen here, as a migration's must be (the same as rls.TENANT_TABLES says today)
POLICIES = {
    "fedhub_teams": (
        "tenant_id = (SELECT t.id FROM fedhub_tenants t "
        "WHERE t.slug = current_setting('fedhub.tenant', true))"
    ),
    "fedhub_team_members": "EXISTS (SELECT 1 FROM fedhub_teams t WHERE t.id = team_id)",
}


def upgrade() -> None:
    op.create_table(
        "fedhub_teams",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Integer,
            sa.ForeignKey("fedhub_tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(20), nullable=False),
        sa.Column("lead", sa.String(255)),
        sa.Column("quotas", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.UniqueConstraint("tenant_id", "name", name="uq_team_name"),
    )
    op.create_index("ix_fedhub_teams_tenant_id", "fedhub_teams", ["tenant_id"])
    op.create_table(
        "fedhub_team_members",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "team_id",
            sa.Integer,
            sa.ForeignKey("fedhub_teams.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("team_id", "username", name="uq_team_member"),
    )
    op.create_index("ix_fedhub_team_members_team_id", "fedhub_team_members", ["team_id"])
    op.create_index("ix_fedhub_team_members_username", "fedhub_team_members", ["username"])
    if op.get_bind().dialect.name == "postgresql":
        roles = f"{rls.TENANT_ROLE}, {rls.PLATFORM_ROLE}"
        for table, predicate in POLICIES.items():
            op.execute(rls.grant_sql(table))
            op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {roles}")
            for statement in rls.enable_sql(table, predicate):
                op.execute(statement)


def downgrade() -> None:
    op.drop_table("fedhub_team_members")
    op.drop_table("fedhub_teams")
