"""self-service onboarding: organisations that ask to exist

On the tenancy branch (after 0021_approvals). One table of pending onboardings
(fedhub.tenancy.onboarding): an organisation name, the slug it reserves, a tier, the
future tenant admin's username, address and password hash, the link's token hash and
the state. It has no tenant column (the tenant does not exist yet), so it is a platform
table (rls.PLATFORM_TABLES), without row-level security; on PostgreSQL only the
platform role (fedhub_platform: a platform admin's approval runs as platform work) may
use it besides the login role, never the tenant role.

Revision ID: 0022_onboarding
Revises: 0021_approvals
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_onboarding"
down_revision = "0021_approvals"
branch_labels = None
depends_on = ("0016_rls",)  # the roles the grant names

TABLE = "fedhub_onboardings"
STATE = sa.Enum(
    "awaiting_email",
    "awaiting_approval",
    "onboarded",
    "rejected",
    name="onboarding_state",
    native_enum=False,
    length=32,
)


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("organisation", sa.String(255), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False, index=True),
        sa.Column("tier", sa.String(63), nullable=False),
        sa.Column("email", sa.String(320), nullable=False, index=True),
        sa.Column("username", sa.String(255), nullable=False, index=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("token_hash", sa.String(64), unique=True),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("request_id", sa.Integer),
        sa.Column("reason", sa.String(1000)),
        sa.Column("source_ip", sa.String(64)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("verified_at", sa.DateTime),
        sa.Column("decided_at", sa.DateTime),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO fedhub_platform")
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {TABLE}_id_seq TO fedhub_platform")


def downgrade() -> None:
    op.drop_table(TABLE)
