"""federations across tenants: federations, the tenants each is visible to, members, rounds

On PostgreSQL every new table gets row-level security (fedhub.db.rls.TENANT_TABLES):
a federation, its members and its aggregate rounds are visible to the tenants listed in
``fedhub_federation_tenants`` for it (owner, members, invitees); a member's own metrics
to that member only. The predicates are frozen here, as a migration's must be.

Revision ID: 0018_federations
Revises: 0017_tenant_datasets
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from fedhub.db import rls

revision = "0018_federations"
down_revision = "0017_tenant_datasets"
branch_labels = None
# the roles the policies name are made by 0016_rls
depends_on = ("0016_rls",)

_SETTING = "current_setting('fedhub.tenant', true)"
_LISTED = (
    "EXISTS (SELECT 1 FROM fedhub_federation_tenants v "
    "WHERE v.federation_id = {table}.{column} AND v.tenant = " + _SETTING + ")"
)
POLICIES = {
    "fedhub_federation_tenants": f"tenant = {_SETTING}",
    "fedhub_federations": (
        f"tenant = {_SETTING} OR " + _LISTED.format(table="fedhub_federations", column="id")
    ),
    "fedhub_federation_members": _LISTED.format(
        table="fedhub_federation_members", column="federation_id"
    ),
    "fedhub_federation_rounds": _LISTED.format(
        table="fedhub_federation_rounds", column="federation_id"
    ),
    "fedhub_federation_member_metrics": f"tenant = {_SETTING}",
}

_OWNED = (
    "EXISTS (SELECT 1 FROM fedhub_federations f "
    "WHERE f.id = {table}.federation_id AND f.tenant = " + _SETTING + ")"
)
# what a tenant may write where it is less than what it reads (WITH CHECK): listing a
# tenant is the platform's (the service's, for the creator and invitees), member rows the
# owner's or the member's own; rounds and metrics are the runner's (platform) alone
CHECKS = {
    "fedhub_federation_tenants": "false",
    "fedhub_federation_members": (
        f"({POLICIES['fedhub_federation_members']}) AND (tenant = {_SETTING} OR "
        + _OWNED.format(table="fedhub_federation_members")
        + ")"
    ),
    "fedhub_federation_rounds": "false",
    "fedhub_federation_member_metrics": "false",
}


def _federation_fk() -> sa.Column:
    return sa.Column(
        "federation_id",
        sa.String(32),
        sa.ForeignKey("fedhub_federations.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "fedhub_federations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("task", sa.JSON, nullable=False),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("privacy", sa.JSON, nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("rounds_done", sa.Integer, nullable=False),
        sa.Column("epsilon", sa.Float),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("run_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_federations_tenant_created", "fedhub_federations", ["tenant", "created_at"])
    op.create_index("ix_federations_status", "fedhub_federations", ["status"])
    op.create_table(
        "fedhub_federation_tenants",
        sa.Column(
            "federation_id",
            sa.String(32),
            sa.ForeignKey("fedhub_federations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tenant", sa.String(63), primary_key=True),
    )
    op.create_table(
        "fedhub_federation_members",
        sa.Column("id", sa.Integer, primary_key=True),
        _federation_fk(),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("member_id", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(255)),
        sa.Column("invited_by", sa.String(255), nullable=False),
        sa.Column("invited_at", sa.DateTime, nullable=False),
        sa.Column("responded_by", sa.String(255)),
        sa.Column("responded_at", sa.DateTime),
        sa.UniqueConstraint("federation_id", "tenant", name="uq_federation_member_tenant"),
        sa.UniqueConstraint("federation_id", "member_id", name="uq_federation_member_id"),
    )
    op.create_index("ix_federation_members_tenant", "fedhub_federation_members", ["tenant"])
    op.create_table(
        "fedhub_federation_rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        _federation_fk(),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("federation_id", "round", name="uq_federation_round"),
    )
    op.create_table(
        "fedhub_federation_member_metrics",
        sa.Column("id", sa.Integer, primary_key=True),
        _federation_fk(),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint(
            "federation_id", "round", "tenant", name="uq_federation_member_metrics"
        ),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    roles = f"{rls.TENANT_ROLE}, {rls.PLATFORM_ROLE}"
    for table, predicate in POLICIES.items():
        op.execute(rls.grant_sql(table))
        for statement in rls.enable_sql(table, predicate, CHECKS.get(table)):
            op.execute(statement)
    for table in ("members", "rounds", "member_metrics"):
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE fedhub_federation_{table}_id_seq TO {roles}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in POLICIES:  # the policies name other tables: they go first
            for statement in rls.disable_sql(table):
                op.execute(statement)
    for table in (
        "fedhub_federation_member_metrics",
        "fedhub_federation_rounds",
        "fedhub_federation_members",
        "fedhub_federation_tenants",
        "fedhub_federations",
    ):
        op.drop_table(table)
