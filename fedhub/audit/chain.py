"""The per-tenant hash chains: append and checkpoint (:class:`AuditLog`).

Every tenant has its own chain (``_platform`` for events with no tenant).
Record ``n`` stores ``prev_hash`` (record ``n-1``'s hash, or 64 zeros) and
``hash = sha256(canonical(stored fields))`` (:mod:`fedhub.audit.records`), and
those canonical bytes themselves (what verify hashes and reads render);
personal fields are hashed as ciphertext (:mod:`fedhub.audit.personal`).
Appends to a chain serialise on the tenant lock (:meth:`AuditLog.lock_chain`),
one transaction per batch. Purges and erasure: :mod:`fedhub.audit.retention`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from fedhub import db as fedhub_db
from fedhub.accounts import make_private_dir, write_private
from fedhub.audit import crypto, personal
from fedhub.audit.models import PLATFORM, AuditRecord, ChainHead, Checkpoint
from fedhub.audit.records import insert_records, record_canonical, time_text
from fedhub.audit.retention import Retention
from fedhub.db.base import utcnow
from fedhub.db.toolkit import insert_ignore, parse_iso, tenant_lock
from fedhub.events import SCHEMA_VERSION


class AuditLog(Retention, LoggingConfigurable):
    """fedhub's audit log: where it lives, when it checkpoints, how long it keeps."""

    db_url = Unicode(
        "",
        config=True,
        help="""Database of the audit tables; empty means ``$FEDHUB_DB_URL`` (the hub's).

            c.AuditLog.db_url = "postgresql+psycopg://fedhub@db/fedhub"
        """,
    )
    audit_dir = Unicode(
        "",
        config=True,
        help="""Directory of the signing key, the master key and the checkpoint files;
        keep it off the database host (or at least out of the database owner's reach).
        Empty means ``$FEDHUB_AUDIT_DIR``, else ``$FEDHUB_STATE_DIR/audit``.

            c.AuditLog.audit_dir = "/var/lib/fedhub/audit"
        """,
    )
    checkpoint_every_records = Integer(
        1000,
        config=True,
        help="Sign a checkpoint of a chain after this many new records.",
    )
    checkpoint_every_seconds = Float(
        300.0,
        config=True,
        help="Sign a checkpoint of a chain with new records at least this often (seconds).",
    )
    verify_processes = Integer(
        0,
        config=True,
        help="""Worker processes that verify chains in parallel (a long chain is cut
        into spans of 100,000 records); 0 means one per CPU. Logs under 50,000
        records are verified in the calling process.

            c.AuditLog.verify_processes = 2
        """,
    )
    platform_retention_days = Integer(
        2555,
        config=True,
        help="""Retention of the ``_platform`` chain and of deleted tenants' chains, in days
        (tenants use their tier's ``audit_retention_days``).""",
    )

    @default("db_url")
    def _default_db_url(self):
        return fedhub_db.database_url()

    @default("audit_dir")
    def _default_audit_dir(self):
        if os.environ.get("FEDHUB_AUDIT_DIR"):
            return os.environ["FEDHUB_AUDIT_DIR"]
        state = os.environ.get("FEDHUB_STATE_DIR", ".fedhub")
        return str(Path(state).resolve() / "audit")

    @cached_property
    def keys(self) -> crypto.KeyRing:
        return crypto.KeyRing(self.audit_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.audit_dir) / "checkpoints"

    def session(self):
        return fedhub_db.session_scope(self.db_url)

    # -- appending ---------------------------------------------------------------

    def append(self, events: Iterable[dict[str, Any]]) -> int:
        """Append events (envelopes of :func:`fedhub.events.emit`) in one transaction."""
        with self.session() as s:
            return self.append_in(s, list(events))

    def append_in(self, s: Session, events: list[dict[str, Any]]) -> int:
        """Append inside ``s``; events whose id is already stored are skipped. Returns
        the number appended."""
        if not events:
            return 0
        # Lock every chain of the batch first (in one order: no deadlocks), so the
        # duplicate check below sees what a concurrent ingester committed.
        heads = {
            t: self.lock_chain(s, t) for t in sorted({e.get("tenant") or PLATFORM for e in events})
        }
        by_tenant = self._new_events(s, events)
        if not by_tenant:
            return 0
        names = set()
        for evs in by_tenant.values():
            for e in evs:
                names.update(filter(None, personal.subjects(e)))
        keys = personal.subject_keys(s, self.keys, names)
        mac_key = self.keys.mac_key()
        mac = crypto.record_mac_function(mac_key) if mac_key else None
        count = 0
        now = utcnow()
        sha256 = hashlib.sha256
        for tenant in sorted(by_tenant):
            seq, prev = heads[tenant]
            rows = []
            for e in by_tenant[tenant]:
                seq += 1
                row = self._row(e, tenant, seq, prev, keys)
                row["canonical"] = canonical = record_canonical(row)
                row["hash"] = prev = sha256(canonical).hexdigest()
                row["mac"] = mac(prev) if mac else None
                row["ingested_at"] = now
                rows.append(row)
            insert_records(s, rows)
            s.execute(
                update(ChainHead).where(ChainHead.tenant == tenant).values(seq=seq, hash=prev)
            )
            count += len(rows)
        return count

    @staticmethod
    def _new_events(s: Session, events: list[dict[str, Any]]) -> dict[str, list[dict]]:
        """The events of a batch whose id is not stored yet (nor repeated earlier in the
        batch), by chain."""
        ids = [e["id"] for e in events]
        existing: set[str] = set()
        for i in range(0, len(ids), 900):
            existing.update(
                s.scalars(
                    select(AuditRecord.event_id).where(AuditRecord.event_id.in_(ids[i : i + 900]))
                )
            )
        by_tenant: dict[str, list[dict]] = {}
        for e in events:
            if e["id"] in existing:
                continue
            existing.add(e["id"])
            by_tenant.setdefault(e.get("tenant") or PLATFORM, []).append(e)
        return by_tenant

    @staticmethod
    def _row(e: dict, tenant: str, seq: int, prev: str, keys: personal.Ciphers) -> dict[str, Any]:
        return {
            "tenant": tenant,
            "seq": seq,
            "event_id": e["id"],
            "time": parse_iso(e["time"]),
            "action": e["action"],
            "result": e.get("result") or "success",
            "severity": e.get("severity") or "info",
            "schema_version": SCHEMA_VERSION,
            **personal.sealed_fields(e, keys),
            "prev_hash": prev,
        }

    def lock_chain(self, s: Session, tenant: str) -> tuple[int, str]:
        """Lock a chain until the transaction ends; its head (last seq, last hash).

        The lock is :func:`fedhub.db.toolkit.tenant_lock` on the chain's name, which
        gives what the head row's ``SELECT ... FOR UPDATE`` gave before: every
        writer of a chain (append, checkpoint, purge) takes it first, and the head
        is read after it is held, so under READ COMMITTED each writer sees the head
        its predecessor committed; it needs no head row to exist first, and takes
        one statement fewer than an insert-or-ignore of the row plus its lock.
        On PostgreSQL it is the tenant's advisory lock, so a chain's append also
        queues behind that tenant's quota reservations (each a short transaction);
        on SQLite ``BEGIN IMMEDIATE`` already serialises every writer.
        """
        tenant_lock(s, tenant)
        head = s.execute(
            select(ChainHead.seq, ChainHead.hash).where(ChainHead.tenant == tenant)
        ).first()
        if head is not None:
            return head.seq, head.hash
        row = {"tenant": tenant, "seq": 0, "hash": crypto.GENESIS, "checkpointed_seq": 0}
        insert_ignore(s, ChainHead.__table__, {**row, "checkpointed_at": utcnow()}, ["tenant"])
        return 0, crypto.GENESIS

    # -- reading personal fields (fedhub.audit.personal) --------------------------

    def ciphers(self, s: Session, key_ids: Iterable[str]) -> dict[str, AESGCM]:
        return personal.ciphers(s, self.keys, key_ids)

    def subject_key_id(self, s: Session, subject: str) -> str | None:
        return personal.subject_key_id(s, self.keys, subject)

    @staticmethod
    def reveal(record: dict[str, Any], ciphers: dict[str, AESGCM]) -> dict[str, Any]:
        return personal.reveal(record, ciphers)

    # -- checkpoints -------------------------------------------------------------------

    def checkpoint(self, tenant: str, *, force: bool = False) -> dict | None:
        """Sign the chain's head (if it moved since the last checkpoint, or ``force``)."""
        with self.session() as s:
            tenant_lock(s, tenant)
            head = s.execute(
                select(ChainHead.seq, ChainHead.hash, ChainHead.checkpointed_seq).where(
                    ChainHead.tenant == tenant
                )
            ).first()
            if head is None or head.seq == 0:
                return None
            if head.checkpointed_seq == head.seq and not force:
                return None
            cp = self.sign_checkpoint(s, tenant, head.seq, head.hash, "periodic")
            s.execute(
                update(ChainHead)
                .where(ChainHead.tenant == tenant)
                .values(checkpointed_seq=head.seq, checkpointed_at=utcnow())
            )
        return cp

    def checkpoints_due(self, now: datetime | None = None) -> list[dict]:
        """Checkpoint every chain that has N new records or new records older than T."""
        now = now or utcnow()
        with self.session() as s:
            heads = s.execute(
                select(
                    ChainHead.tenant,
                    ChainHead.seq,
                    ChainHead.checkpointed_seq,
                    ChainHead.checkpointed_at,
                ).where(ChainHead.seq > ChainHead.checkpointed_seq)
            ).all()
        done = []
        for h in heads:
            age = (now - (h.checkpointed_at or now)).total_seconds()
            if (
                h.seq - h.checkpointed_seq >= self.checkpoint_every_records
                or age >= self.checkpoint_every_seconds
            ):
                cp = self.checkpoint(h.tenant)
                if cp:
                    done.append(cp)
        return done

    def sign_checkpoint(
        self, s: Session, tenant: str, seq: int, head_hash: str, kind: str, **extra
    ) -> dict:
        """Sign, write the file (first: a file never claims more than is committed),
        then store the row."""
        payload_fields = {
            "tenant": tenant,
            "seq": seq,
            "head_hash": head_hash,
            "time": time_text(utcnow()) + "Z",
            "kind": kind,
            **extra,
        }
        payload = crypto.canonical(payload_fields).decode()
        key_id = crypto.public_key_id(self.keys.public_key())
        signature = self.keys.sign(payload.encode())
        cp = {"payload": payload, "signature": signature, "key_id": key_id}
        make_private_dir(Path(self.audit_dir))
        make_private_dir(self.checkpoint_dir)
        directory = make_private_dir(self.checkpoint_dir / tenant)
        # created 0600 and renamed into place (write_private): never readable by others
        write_private(directory / f"{seq:012d}-{kind}.json", json.dumps(cp, indent=1) + "\n")
        row = {"tenant": tenant, "seq": seq, "kind": kind, "created_at": utcnow(), **cp}
        insert_ignore(s, Checkpoint.__table__, row, ["tenant", "seq", "kind"])
        return {**payload_fields, "signature": signature, "key_id": key_id}
