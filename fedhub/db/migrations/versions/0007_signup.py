"""sign-up that proves the address: tenants' signup_policy, pending sign-up requests

On the tenancy branch (after 0001_tenancy): every fedhub migration so far is its
own branch, and these tables are the tenancy branch's. Existing tenants get
``verify_email``: a domain sign-up now needs the link sent to the address.

Revision ID: 0007_signup
Revises: 0001_tenancy
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_signup"
down_revision = "0001_tenancy"
branch_labels = None
depends_on = None

POLICY = sa.Enum(
    "verify_email",
    "admin_approval",
    "invitation_only",
    name="signup_policy",
    native_enum=False,
    length=32,
)
STATUS = sa.Enum(
    "awaiting_email", "awaiting_approval", name="signup_status", native_enum=False, length=32
)


def upgrade() -> None:
    # a plain ADD COLUMN, also on SQLite: a batch "move and copy" of the tenants
    # table would fire the memberships' ON DELETE CASCADE
    op.add_column(
        "fedhub_tenants",
        sa.Column("signup_policy", POLICY, nullable=False, server_default="verify_email"),
    )
    op.create_table(
        "fedhub_signup_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Integer,
            sa.ForeignKey("fedhub_tenants.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("username", sa.String(255), nullable=False, unique=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("status", STATUS, nullable=False),
        sa.Column("token_hash", sa.String(64), unique=True),
        sa.Column("expires_at", sa.DateTime),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("verified_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fedhub_signup_requests")
    op.drop_column("fedhub_tenants", "signup_policy")
