"""per-tier security policy: password age and history, MFA enrolment and recovery codes,
tenants' IP allowlists

On the tenancy branch (after 0008_totp_encrypted; the sessions work branches from the
same parent, and ``fedhub.db.upgrade`` runs every head). Existing passwords count their
age from the credential's last update, so an upgrade does not expire everyone's at once.

Revision ID: 0012_security_policy
Revises: 0008_totp_encrypted
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_security_policy"
down_revision = "0008_totp_encrypted"
branch_labels = None
depends_on = None

CREDENTIALS = "fedhub_local_credentials"


def _per_user(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "username",
            sa.String(255),
            sa.ForeignKey(f"{CREDENTIALS}.username", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        *columns,
    )


def upgrade() -> None:
    # plain ADD COLUMNs, also on SQLite (a batch copy of the tenants table would fire
    # the memberships' ON DELETE CASCADE)
    op.add_column(
        "fedhub_tenants", sa.Column("ip_allowlist", sa.JSON, nullable=False, server_default="[]")
    )
    op.add_column(CREDENTIALS, sa.Column("totp_pending_secret", sa.String(255)))
    op.add_column(CREDENTIALS, sa.Column("password_changed_at", sa.DateTime))
    op.execute(f"UPDATE {CREDENTIALS} SET password_changed_at = updated_at")
    _per_user(
        "fedhub_password_history",
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("replaced_at", sa.DateTime, nullable=False),
    )
    _per_user(
        "fedhub_recovery_codes",
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("used_at", sa.DateTime),
    )


def downgrade() -> None:
    op.drop_table("fedhub_recovery_codes")
    op.drop_table("fedhub_password_history")
    op.drop_column(CREDENTIALS, "password_changed_at")
    op.drop_column(CREDENTIALS, "totp_pending_secret")
    op.drop_column("fedhub_tenants", "ip_allowlist")
