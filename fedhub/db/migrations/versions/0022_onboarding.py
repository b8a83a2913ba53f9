"""self-service onboarding: organisations that ask to exist

(placeholder in the chain: filled in by the change that builds it)

Revision ID: 0022_onboarding
Revises: 0021_approvals
Create Date: 2026-11-30
"""

revision = "0022_onboarding"
down_revision = "0021_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
