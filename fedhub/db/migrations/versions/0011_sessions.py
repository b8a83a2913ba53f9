"""sessions: one row per browser login (listed to their user, ended on request or expiry)

On the tenancy branch (after 0008_totp_encrypted): the row's tenant decides the
session's lifetimes (its tier's ``security.sessions``), and a deleted tenant's
sessions go with it.

Revision ID: 0011_sessions
Revises: 0008_totp_encrypted
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_sessions"
down_revision = "0008_totp_encrypted"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fedhub_sessions",
        # JupyterHub's session id (the jupyterhub-session-id cookie)
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False, index=True),
        sa.Column(
            "tenant_id",
            sa.Integer,
            sa.ForeignKey("fedhub_tenants.id", ondelete="CASCADE"),
            index=True,
        ),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(1024)),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("ended_by", sa.String(255)),
        sa.Column("end_reason", sa.String(32)),
    )


def downgrade() -> None:
    op.drop_table("fedhub_sessions")
