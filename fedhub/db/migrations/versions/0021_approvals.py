"""approval requests: one mechanism for requests that someone must approve

(placeholder in the chain: filled in by the change that builds it)

Revision ID: 0021_approvals
Revises: 0020_tenant_branding
Create Date: 2026-11-30
"""

revision = "0021_approvals"
down_revision = "0020_tenant_branding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
