"""invitations sent by email: address, resend count, the link's state

(placeholder in the chain: filled in by the change that builds it)

Revision ID: 0024_invitation_mail
Revises: 0023_teams
Create Date: 2026-11-30
"""

revision = "0024_invitation_mail"
down_revision = "0023_teams"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
