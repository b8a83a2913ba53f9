"""Migration 0013: existing records get their canonical bytes from their columns."""

from __future__ import annotations

from alembic import command
from sqlalchemy import select, update

from fedhub import db as fedhub_db
from fedhub.audit.models import AuditRecord
from fedhub.audit.verify import verify
from tests.audit.conftest import sample_events

RECORDS = 5_050  # more than one backfill batch (5,000)


def test_backfill_gives_existing_records_the_bytes_their_hash_covers(audit):
    audit.append(sample_events(RECORDS, tenants=("acme", "globex")))
    with audit.session() as s:
        written = {i: c for i, c in s.execute(select(AuditRecord.id, AuditRecord.canonical))}
        # a column tampered with before the upgrade: the backfill must not launder it
        s.execute(
            update(AuditRecord)
            .where(AuditRecord.tenant == "globex", AuditRecord.seq == 7)
            .values(result="denied")
        )
    fedhub_db.dispose_engines()
    command.downgrade(fedhub_db.alembic_config(audit.db_url), "0009_audit_tenant_id")
    fedhub_db.upgrade(audit.db_url)
    with audit.session() as s:
        backfilled = {i: c for i, c in s.execute(select(AuditRecord.id, AuditRecord.canonical))}
        tampered = s.scalar(
            select(AuditRecord.id).where(AuditRecord.tenant == "globex", AuditRecord.seq == 7)
        )
    assert len(backfilled) == RECORDS
    assert backfilled[tampered] != written[tampered]
    del backfilled[tampered], written[tampered]
    assert backfilled == written
    acme, globex = verify(audit)
    assert acme.ok and acme.records == RECORDS // 2, acme.as_dict()
    assert (globex.ok, globex.bad_seq) == (False, 7), globex.as_dict()
