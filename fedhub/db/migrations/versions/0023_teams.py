"""teams inside a tenant, with optional quotas carved out of the tenant's

(placeholder in the chain: filled in by the change that builds it)

Revision ID: 0023_teams
Revises: 0022_onboarding
Create Date: 2026-11-30
"""

revision = "0023_teams"
down_revision = "0022_onboarding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
