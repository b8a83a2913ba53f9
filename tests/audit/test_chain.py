"""The chain on SQLite and PostgreSQL: append, verify, checkpoints, purge, erasure."""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, update

from fedhub import events
from fedhub.audit.models import PLATFORM, AuditRecord, Checkpoint
from fedhub.audit.query import EventFilter, read_events
from fedhub.audit.verify import verify
from fedhub.db.base import utcnow
from fedhub.db.toolkit import encode_cursor
from fedhub.errors import InvalidRequest
from fedhub.tenancy.store import TenantStore
from tests.audit.conftest import sample_events


def _ok(audit, tenant=None):
    reports = verify(audit, tenant)
    assert reports and all(r.ok for r in reports), [r.as_dict() for r in reports]
    return reports


def test_append_is_idempotent_and_chains_per_tenant(audit):
    evs = sample_events(30)
    assert audit.append(evs) == 30
    assert audit.append(evs[:10] + sample_events(3)) == 3  # ids already stored are skipped
    with audit.session() as s:
        seqs = s.execute(
            select(AuditRecord.tenant, AuditRecord.seq).order_by(
                AuditRecord.tenant, AuditRecord.seq
            )
        ).all()
    by_tenant: dict[str, list[int]] = {}
    for tenant, seq in seqs:
        by_tenant.setdefault(tenant, []).append(seq)
    assert set(by_tenant) == {"acme", "globex", PLATFORM}
    for seq_list in by_tenant.values():
        assert seq_list == list(range(1, len(seq_list) + 1))
    _ok(audit)


def test_personal_fields_are_ciphertext_and_hashes_cover_it(audit):
    audit.append(sample_events(4))
    with audit.session() as s:
        rows = [r._asdict() for r in s.execute(select(AuditRecord.__table__))]
    for r in rows:
        stored = repr(r)
        for secret in ("alice", "bob", "example.com", "10.0.0.", "pytest"):
            assert secret not in stored
    events_, _ = read_events(audit, EventFilter())
    assert {e["actor"] for e in events_} == {"alice", "bob", "carol", "dave"}
    assert all(e["details"]["email"].endswith("@example.com") for e in events_)
    assert all(e["source_ip"].startswith("10.0.0.") for e in events_)


def test_keys_are_private_files(audit):
    audit.append(sample_events(2))
    audit.checkpoint("acme")
    for name in ("signing_key.pem", "master.key"):
        mode = stat.S_IMODE(os.stat(os.path.join(audit.audit_dir, name)).st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert audit.keys.public_pem().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_checkpoints_every_n_records_and_files_outside_db(audit):
    audit.checkpoint_every_records = 10
    audit.checkpoint_every_seconds = 3600
    audit.append(sample_events(5, tenants=("acme",)))
    assert audit.checkpoints_due() == []
    audit.append(sample_events(6, tenants=("acme",)))
    [cp] = audit.checkpoints_due()
    assert (cp["tenant"], cp["seq"]) == ("acme", 11)
    files = list((audit.checkpoint_dir / "acme").glob("*.json"))
    assert [f.name for f in files] == ["000000000011-periodic.json"]
    # T minutes: an old checkpoint makes a chain with any new record due
    audit.append(sample_events(1, tenants=("acme",)))
    assert audit.checkpoints_due() == []
    assert audit.checkpoints_due(now=utcnow() + timedelta(hours=2))[0]["seq"] == 12
    _ok(audit)


def test_deleted_checkpoint_row_is_still_enforced_by_its_file(audit):
    audit.append(sample_events(10, tenants=("acme",)))
    audit.checkpoint("acme")
    with audit.session() as s:
        s.execute(delete(Checkpoint))
        s.execute(delete(AuditRecord).where(AuditRecord.seq > 6))
    [report] = verify(audit, "acme")
    assert not report.ok and report.bad_seq == 7 and "truncated" in report.problem


def test_forged_checkpoint_signature_is_detected(audit):
    audit.append(sample_events(3, tenants=("acme",)))
    audit.checkpoint("acme")
    with audit.session() as s:
        s.execute(update(Checkpoint).values(signature="00" * 64))
    [report] = verify(audit, "acme")
    assert not report.ok and "invalid signature" in report.problem


def test_purge_only_behind_a_signed_checkpoint_and_recorded(audit):
    TenantStore(audit.db_url).create_tenant("acme", tier="starter")  # 90 days
    old = sample_events(8, tenants=("acme", None), start=utcnow() - timedelta(days=400))
    recent = sample_events(4, tenants=("acme",))
    audit.append(old + recent)
    # the platform chain keeps 2555 days by default: nothing to purge there
    assert audit.purge(tenants=[PLATFORM]) == []
    [done] = audit.purge()
    assert (done["from_seq"], done["through_seq"], done["records"]) == (1, 4, 4)
    with audit.session() as s:
        seqs = list(
            s.scalars(
                select(AuditRecord.seq)
                .where(AuditRecord.tenant == "acme")
                .order_by(AuditRecord.seq)
            )
        )
        actions = list(
            s.scalars(
                select(AuditRecord.action)
                .where(AuditRecord.tenant == "acme")
                .order_by(AuditRecord.seq)
            )
        )
        kinds = list(s.scalars(select(Checkpoint.kind)))
    assert seqs == list(range(5, 10)) and actions[-1] == "audit.purged"
    assert kinds == ["purge"]
    _ok(audit, "acme")
    # the same deletion without the signed purge checkpoint is tampering
    with audit.session() as s:
        s.execute(delete(Checkpoint))
    for f in (audit.checkpoint_dir / "acme").glob("*"):
        f.unlink()
    [report] = verify(audit, "acme")
    assert not report.ok and report.bad_seq == 1 and "no signed purge" in report.problem


def test_crypto_shredding(audit):
    """Must-show 5: after erasure the user's fields are unreadable and verify passes."""
    audit.append(sample_events(20))
    audit.checkpoint("acme")
    before, _ = read_events(audit, EventFilter(actor="alice"))
    assert before and all(e["actor"] == "alice" for e in before)
    key_id = audit.erase_subject("alice", actor="cli:test")
    assert key_id
    assert read_events(audit, EventFilter(actor="alice"))[0] == []
    everything, _ = read_events(audit, EventFilter(), limit=1000)
    ids = {e["id"] for e in before}
    for e in everything:
        assert "alice" not in repr({k: v for k, v in e.items() if k != "erased"})
        if e["id"] in ids:
            assert e["actor"] is None and e["source_ip"] is None and "actor" in e["erased"]
            assert "email" not in e["details"] or "alice" not in e["details"]["email"]
    # other people's fields are intact, and every hash still verifies
    assert any(e["actor"] == "bob" for e in everything)
    _ok(audit)
    erased = [e for e in everything if e["action"] == "audit.subject_erased"]
    assert erased and erased[0]["details"] == {"key_id": key_id}


def test_emit_validates_against_the_registered_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(tmp_path))
    registered = events.event_logger().schemas.get(events.SCHEMA_ID)
    assert int(registered.version) == events.SCHEMA_VERSION
    assert registered.properties == events.schema()["properties"]
    with pytest.raises(ValueError, match="action"):
        events.emit("NotDotted", tenant=None)
    with pytest.raises(ValueError, match="severity"):
        events.emit("a.b", tenant=None, severity="loud")
    with pytest.raises(ValueError, match="details"):
        events.emit("a.b", tenant=None, details=["not", "a", "dict"])
    long = events.emit("a.b", tenant="acme", actor="x" * 999, user_agent="y" * 5000)
    assert len(long["actor"]) == 255 and len(long["user_agent"]) == 1024
    e = events.emit("a.b", tenant="acme", actor="x")
    [spooled] = list(tmp_path.glob("events-*.jsonl"))
    assert e["id"] in spooled.read_text()


def test_a_changed_canonical_byte_fails_the_default_verify(audit):
    audit.append(sample_events(6, tenants=("acme",)))
    with audit.session() as s:
        stored = s.scalar(
            select(AuditRecord.canonical).where(AuditRecord.tenant == "acme", AuditRecord.seq == 3)
        )
        forged = stored.replace(b'"action":"user.created"', b'"action":"user.removed"')
        assert forged != stored
        s.execute(
            update(AuditRecord)
            .where(AuditRecord.tenant == "acme", AuditRecord.seq == 3)
            .values(canonical=forged)
        )
    [report] = verify(audit, "acme")
    assert (report.ok, report.bad_seq) == (False, 3) and "hash mismatch" in report.problem


def test_a_changed_filter_column_fails_deep_verify_and_reads_show_the_record(audit):
    """A column only queries filter on, changed behind the code's back: reads still
    render the record as hashed and never put it under a filter it does not match;
    a filter on its true value may miss it; ``--deep`` names it."""
    audit.append(sample_events(6, tenants=("acme",)))
    where = (AuditRecord.tenant == "acme", AuditRecord.seq == 2)  # auth.login_failed, warning
    [true] = [e for e in read_events(audit, EventFilter(tenants=["acme"]))[0] if e["seq"] == 2]
    with audit.session() as s:
        s.execute(update(AuditRecord).where(*where).values(action="user.removed", severity="info"))
    shown = {e["seq"]: e for e in read_events(audit, EventFilter(tenants=["acme"]))[0]}
    assert shown[2] == true and true["action"] == "auth.login_failed"
    removed = read_events(audit, EventFilter(tenants=["acme"], action="user.removed"))[0]
    assert removed == []  # not shown under a filter its hashed fields do not match
    as_failed = read_events(audit, EventFilter(tenants=["acme"], action="auth.login_failed"))[0]
    assert 2 not in {e["seq"] for e in as_failed}  # hidden from its own filter: --deep's job
    [fast] = verify(audit, "acme")
    assert fast.ok  # the default verify checks the bytes and the chain, not this column
    [deep] = verify(audit, "acme", deep=True)
    assert (deep.ok, deep.bad_seq) == (False, 2), deep.as_dict()
    assert deep.problem == (
        "record seq 2 was modified (column action, severity differs from its hashed bytes)"
    )


def test_a_record_moved_to_another_tenant_is_not_shown_there(audit):
    """The tenant column decides whose reads a row reaches; the hashed tenant decides
    whether it is shown: a row moved into acme's chain is not shown to acme."""
    audit.append(sample_events(4, tenants=("acme", "globex")))
    with audit.session() as s:
        s.execute(
            update(AuditRecord)
            .where(AuditRecord.tenant == "globex", AuditRecord.seq == 1)
            .values(tenant="acme", seq=99)
        )
    shown = read_events(audit, EventFilter(tenants=["acme"]))[0]
    assert shown and {e["tenant"] for e in shown} == {"acme"}
    [report] = verify(audit, "globex")
    assert not report.ok and report.bad_seq == 1


def test_pages_are_keyset_pages_and_forged_cursors_are_refused(audit):
    audit.append(sample_events(25, tenants=("acme",)))
    seen, cursor = [], None
    while True:
        page, cursor = read_events(audit, EventFilter(tenants=["acme"]), cursor=cursor, limit=10)
        seen += [e["seq"] for e in page]
        if cursor is None:
            break
    assert seen == list(range(1, 26))
    for forged in ("r12", "not base64!", encode_cursor(["twelve"]), encode_cursor([1, 2])):
        with pytest.raises(InvalidRequest, match="invalid cursor"):
            read_events(audit, EventFilter(), cursor=forged)
