"""audit: each record's canonical bytes (exactly what its hash covers), stored

``verify`` hashes these bytes as stored instead of rebuilding them from sixteen
columns, and every read renders records from them (docs/audit.md, "Verify").
Existing records get theirs from their columns, with the encoder the writer
uses (``fedhub.audit.records.canonical_record``), 5,000 records per statement
batch; a record whose columns were tampered with gets the bytes of the tampered
columns, so its hash still fails to match and ``verify`` still names it.

On the audit branch (after 0009_audit_tenant_id).

Revision ID: 0013_audit_canonical
Revises: 0009_audit_tenant_id
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_audit_canonical"
down_revision = "0009_audit_tenant_id"
branch_labels = None
depends_on = None

BATCH = 5000
_records = sa.table(
    "fedhub_audit_records",
    sa.column("id", sa.BigInteger),
    sa.column("canonical", sa.LargeBinary),
)


def upgrade() -> None:
    op.add_column("fedhub_audit_records", sa.Column("canonical", sa.LargeBinary))
    _backfill(op.get_bind())


def _backfill(conn) -> None:
    """Fill ``canonical`` in id order, one batch at a time (memory stays one batch's)."""
    from fedhub.audit.records import HASHED_COLUMNS, canonical_record

    columns = ", ".join(HASHED_COLUMNS)
    update = (
        sa.update(_records)
        .where(_records.c.id == sa.bindparam("row_id"))
        .values(canonical=sa.bindparam("bytes"))
    )
    last = -1
    while True:
        rows = conn.execute(
            sa.text(
                f"SELECT id, {columns} FROM fedhub_audit_records "
                "WHERE id > :last ORDER BY id LIMIT :n"
            ),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            return
        conn.execute(update, [{"row_id": r[0], "bytes": canonical_record(*r[1:])} for r in rows])
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("fedhub_audit_records") as batch:
        batch.drop_column("canonical")
