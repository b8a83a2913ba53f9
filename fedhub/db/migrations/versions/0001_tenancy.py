"""tenancy: tenants, memberships, local credentials, invitations

Revision ID: 0001_tenancy
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_tenancy"
down_revision = None
branch_labels = ("tenancy",)
depends_on = None

ROLE = sa.Enum(
    "platform-admin",
    "tenant-admin",
    "member",
    "analyst",
    "service-account",
    name="member_role",
    native_enum=False,
    length=32,
)


def upgrade() -> None:
    op.create_table(
        "fedhub_tenants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(63), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("tier", sa.String(63), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "suspended", name="tenant_status", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("allowed_email_domains", sa.JSON, nullable=False),
        sa.Column("overrides", sa.JSON, nullable=False),
        sa.Column("suspended_reason", sa.String(500)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "fedhub_memberships",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(255), nullable=False, unique=True),
        sa.Column(
            "tenant_id",
            sa.Integer,
            sa.ForeignKey("fedhub_tenants.id", ondelete="CASCADE"),
            index=True,
        ),
        sa.Column("role", ROLE, nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "fedhub_local_credentials",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("failed_attempts", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime),
        sa.Column("totp_secret", sa.String(64)),
        sa.Column("totp_enabled", sa.Boolean, nullable=False),
        sa.Column("totp_last_counter", sa.Integer),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "fedhub_invitations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Integer,
            sa.ForeignKey("fedhub_tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "platform-admin",
                "tenant-admin",
                "member",
                "analyst",
                "service-account",
                name="invite_role",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("used_at", sa.DateTime),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_table(
        "fedhub_tenancy_revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO fedhub_tenancy_revision (id, value) VALUES (1, 0)")


def downgrade() -> None:
    for table in (
        "fedhub_tenancy_revision",
        "fedhub_invitations",
        "fedhub_local_credentials",
        "fedhub_memberships",
        "fedhub_tenants",
    ):
        op.drop_table(table)
