"""The audit tables: chained records, signed checkpoints, per-user keys, spool offsets.

Records are append-only in code (nothing here updates them); ``verify`` finds
any change made behind the code's back. Personal fields live only as
ciphertext (``actor_enc``/``target_enc``) under a per-subject key in
:class:`SubjectKey`; deleting that key is the GDPR erasure.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fedhub.db.base import Base, utcnow

PLATFORM = "_platform"  # the chain of events that belong to no tenant


class AuditRecord(Base):
    __tablename__ = "fedhub_audit_records"
    __table_args__ = (
        UniqueConstraint("tenant", "seq", name="uq_audit_tenant_seq"),
        UniqueConstraint("event_id", name="uq_audit_event_id"),
        Index("ix_audit_tenant_time", "tenant", "time"),
        Index("ix_audit_tenant_id", "tenant", "id"),  # a chain's pages in ingestion order
        Index("ix_audit_tenant_action", "tenant", "action"),
        Index("ix_audit_actor_key", "actor_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    seq: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(String(36))
    time: Mapped[datetime] = mapped_column(DateTime)
    action: Mapped[str] = mapped_column(String(127))
    result: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    schema_version: Mapped[int] = mapped_column(Integer)
    # canonical JSON text (sorted keys, compact): hashed as stored, never re-encoded
    details: Mapped[str] = mapped_column(Text)
    actor_key: Mapped[str | None] = mapped_column(String(36))
    actor_enc: Mapped[str | None] = mapped_column(Text)
    target_key: Mapped[str | None] = mapped_column(String(36))
    target_enc: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))
    # exactly the bytes ``hash`` covers (records.canonical_record): verify hashes them as
    # stored, reads render records from them; the columns above are for filtering
    canonical: Mapped[bytes | None] = mapped_column(LargeBinary)
    ingested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ChainHead(Base):
    """The last sequence number and hash of each chain (locked while appending)."""

    __tablename__ = "fedhub_audit_heads"

    tenant: Mapped[str] = mapped_column(String(63), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    checkpointed_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpointed_at: Mapped[datetime | None] = mapped_column(DateTime)


class Checkpoint(Base):
    """A signed statement "chain T had head H at seq N at time X" (also kept as a file)."""

    __tablename__ = "fedhub_audit_checkpoints"
    __table_args__ = (UniqueConstraint("tenant", "seq", "kind", name="uq_audit_checkpoint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # "periodic" or "purge"
    payload: Mapped[str] = mapped_column(Text)  # the canonical JSON that was signed
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SubjectKey(Base):
    """One data key per person (or service) named in events; deleted on erasure."""

    __tablename__ = "fedhub_audit_keys"

    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_hash: Mapped[str] = mapped_column(String(64), unique=True)
    wrapped_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Erasure(Base):
    """That a key was destroyed (no name: the subject hash only)."""

    __tablename__ = "fedhub_audit_erasures"

    key_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SpoolOffset(Base):
    """How far each spool file has been ingested (committed with the records)."""

    __tablename__ = "fedhub_audit_spool_offsets"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
