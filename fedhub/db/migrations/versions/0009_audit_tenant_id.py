"""audit: an index on (tenant, id), for reading one chain in ingestion order

Pages of a tenant's events (``WHERE tenant = ? AND id > ? ORDER BY id LIMIT n``,
the API's cursor and every export) had no index that both filters and orders:
each page read and sorted all of the tenant's remaining records, so a
1,000,000-record export took time quadratic in its length (3.6k records/s).
With this index each page is a range scan.

On the audit branch (after 0004_audit).

Revision ID: 0009_audit_tenant_id
Revises: 0004_audit
Create Date: 2026-11-30
"""

from alembic import op

revision = "0009_audit_tenant_id"
down_revision = "0004_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_tenant_id", "fedhub_audit_records", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_tenant_id", table_name="fedhub_audit_records")
