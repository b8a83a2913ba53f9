"""invitations sent by email: when, how often again, and a revocation

An invitation is emailed with its link (docs/organisations.md, "Members and
invitations"); resending makes a new token (the old link stops working) and is
counted, and a tenant admin may revoke one before it is used. ``fedhub_invitations``
has row-level security already (0016_rls): only columns are added.

Revision ID: 0024_invitation_mail
Revises: 0023_teams
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0024_invitation_mail"
down_revision = "0023_teams"
branch_labels = None
depends_on = None

TABLE = "fedhub_invitations"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("created_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("sent_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("resent_count", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("revoked_at", sa.DateTime, nullable=True))
        batch.add_column(sa.Column("revoked_by", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        for column in ("revoked_by", "revoked_at", "resent_count", "sent_at", "created_at"):
            batch.drop_column(column)
