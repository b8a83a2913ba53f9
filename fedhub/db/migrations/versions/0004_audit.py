"""audit: chained records, signed checkpoints, per-user keys, spool offsets

Revision ID: 0004_audit
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_audit"
down_revision = None
branch_labels = ("audit",)
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "fedhub_audit_records",
        sa.Column("id", _id, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("action", sa.String(127), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("actor_key", sa.String(36)),
        sa.Column("actor_enc", sa.Text),
        sa.Column("target_key", sa.String(36)),
        sa.Column("target_enc", sa.Text),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(64)),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("tenant", "seq", name="uq_audit_tenant_seq"),
        sa.UniqueConstraint("event_id", name="uq_audit_event_id"),
    )
    op.create_index("ix_audit_tenant_time", "fedhub_audit_records", ["tenant", "time"])
    op.create_index("ix_audit_tenant_action", "fedhub_audit_records", ["tenant", "action"])
    op.create_index("ix_audit_actor_key", "fedhub_audit_records", ["actor_key"])
    op.create_table(
        "fedhub_audit_heads",
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("checkpointed_seq", sa.BigInteger, nullable=False),
        sa.Column("checkpointed_at", sa.DateTime),
    )
    op.create_table(
        "fedhub_audit_checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("tenant", "seq", "kind", name="uq_audit_checkpoint"),
    )
    op.create_table(
        "fedhub_audit_keys",
        sa.Column("key_id", sa.String(36), primary_key=True),
        sa.Column("subject_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("wrapped_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "fedhub_audit_erasures",
        sa.Column("key_id", sa.String(36), primary_key=True),
        sa.Column("erased_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "fedhub_audit_spool_offsets",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "fedhub_audit_spool_offsets",
        "fedhub_audit_erasures",
        "fedhub_audit_keys",
        "fedhub_audit_checkpoints",
        "fedhub_audit_heads",
        "fedhub_audit_records",
    ):
        op.drop_table(table)
