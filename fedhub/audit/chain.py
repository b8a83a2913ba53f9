"""The per-tenant hash chain: append, checkpoint, purge, erase.

Every tenant has its own chain (``_platform`` for events with no tenant).
Record ``n`` stores ``prev_hash`` (record ``n-1``'s hash, or 64 zeros) and
``hash = sha256(canonical(stored fields))``; personal fields are hashed as
ciphertext, so destroying a data key hides them without breaking any hash.
Appends to a chain serialise on its row in ``fedhub_audit_heads`` (``SELECT
... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises all
writers), one transaction per batch.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cached_property
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from traitlets import Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from fedhub import db as fedhub_db
from fedhub.accounts import make_private_dir, write_private
from fedhub.audit import crypto
from fedhub.audit.models import (
    PLATFORM,
    AuditRecord,
    ChainHead,
    Checkpoint,
    Erasure,
    SubjectKey,
)
from fedhub.audit.records import _insert, _insert_rows, event_time, record_hash, time_text
from fedhub.db.base import utcnow
from fedhub.events import SCHEMA_VERSION, make_event

# details keys that name or contact a person: stored encrypted with the target's key
PERSONAL_DETAIL_KEYS = frozenset({"email", "username", "users", "name", "display_name", "invitee"})
ANONYMOUS = "~anonymous"  # the subject of events with a client address but no actor


def _text_or_null(value) -> str:
    return "null" if value is None else encode_basestring(value)  # TypeError if not text


def _actor_plaintext(actor, source_ip, user_agent) -> bytes:
    """``crypto.canonical`` of the sealed actor fields, without the JSON encoder's
    machinery when they are text (they are: the event schema says so)."""
    try:
        a, s, u = _text_or_null(actor), _text_or_null(source_ip), _text_or_null(user_agent)
        return f'{{"actor":{a},"source_ip":{s},"user_agent":{u}}}'.encode()
    except TypeError:
        return crypto.canonical({"actor": actor, "source_ip": source_ip, "user_agent": user_agent})


def _target_plaintext(target, personal: dict) -> bytes:
    """``crypto.canonical({"target": target, "details": personal})``."""
    try:
        d = crypto.canonical_text(personal) if personal else "{}"
        return f'{{"details":{d},"target":{_text_or_null(target)}}}'.encode()
    except TypeError:
        return crypto.canonical({"target": target, "details": personal})


class AuditLog(LoggingConfigurable):
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
            t: self._lock_head(s, t) for t in sorted({e.get("tenant") or PLATFORM for e in events})
        }
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
        if not by_tenant:
            return 0
        subjects = set()
        for evs in by_tenant.values():
            for e in evs:
                subjects.update(filter(None, self._subjects(e)))
        keys = self._subject_keys(s, subjects)
        mac_key = self.keys.mac_key()
        mac = crypto.record_mac_function(mac_key) if mac_key else None
        count = 0
        now = utcnow()
        for tenant in sorted(by_tenant):
            head = heads[tenant]
            seq, prev = head.seq, head.hash
            rows = []
            for e in by_tenant[tenant]:
                seq += 1
                row = self._row(e, tenant, seq, prev, keys)
                row["hash"] = prev = record_hash(row)
                row["mac"] = mac(prev) if mac else None
                row["ingested_at"] = now
                rows.append(row)
            _insert_rows(s, rows)
            s.execute(
                update(ChainHead).where(ChainHead.tenant == tenant).values(seq=seq, hash=prev)
            )
            count += len(rows)
        return count

    @staticmethod
    def _subjects(e: dict[str, Any]) -> tuple[str | None, str | None]:
        actor = e.get("actor")
        if actor is None and (e.get("source_ip") or e.get("user_agent")):
            actor = ANONYMOUS
        target = e.get("target")
        if target is None and PERSONAL_DETAIL_KEYS.intersection(e.get("details") or {}):
            target = actor
        return actor, target

    def _row(self, e: dict, tenant: str, seq: int, prev: str, keys: dict) -> dict[str, Any]:
        details = e.get("details") or {}
        personal = None
        if not PERSONAL_DETAIL_KEYS.isdisjoint(details):
            details = dict(details)
            personal = {k: details.pop(k) for k in PERSONAL_DETAIL_KEYS.intersection(details)}
        actor_subject, target_subject = self._subjects(e)
        aad = e["id"].encode()
        actor_key = actor_enc = target_key = target_enc = None
        if actor_subject:
            actor_key, aead = keys[actor_subject]
            actor_enc = crypto.seal_bytes(
                aead, _actor_plaintext(e.get("actor"), e.get("source_ip"), e.get("user_agent")), aad
            )
        if target_subject:
            target_key, aead = keys[target_subject]
            target_enc = crypto.seal_bytes(
                aead, _target_plaintext(e.get("target"), personal or {}), aad
            )
        return {
            "tenant": tenant,
            "seq": seq,
            "event_id": e["id"],
            "time": event_time(e["time"]),
            "action": e["action"],
            "result": e.get("result") or "success",
            "severity": e.get("severity") or "info",
            "schema_version": SCHEMA_VERSION,
            "details": crypto.canonical_text(details),
            "actor_key": actor_key,
            "actor_enc": actor_enc,
            "target_key": target_key,
            "target_enc": target_enc,
            "prev_hash": prev,
        }

    def _lock_head(self, s: Session, tenant: str) -> ChainHead:
        s.execute(
            _insert(s, ChainHead.__table__)
            .values(
                tenant=tenant,
                seq=0,
                hash=crypto.GENESIS,
                checkpointed_seq=0,
                checkpointed_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        return s.execute(
            select(ChainHead).where(ChainHead.tenant == tenant).with_for_update()
        ).scalar_one()

    def _subject_keys(self, s: Session, subjects: set[str]) -> dict[str, tuple[str, AESGCM]]:
        """Each subject's (key id, cipher), creating keys for new subjects."""
        hashes = {self.keys.subject_hash(name): name for name in subjects}
        found: dict[str, tuple[str, AESGCM]] = {}
        if not hashes:
            return found

        def load():
            for k in s.scalars(select(SubjectKey).where(SubjectKey.subject_hash.in_(list(hashes)))):
                found[hashes[k.subject_hash]] = (
                    k.key_id,
                    self.keys.cipher(k.wrapped_key, k.key_id),
                )

        load()
        missing = [h for h, name in hashes.items() if name not in found]
        if missing:
            rows = []
            for h in missing:
                key_id = str(uuid.uuid4())
                rows.append(
                    {
                        "key_id": key_id,
                        "subject_hash": h,
                        "wrapped_key": self.keys.wrap(AESGCM.generate_key(256), key_id),
                        "created_at": utcnow(),
                    }
                )
            s.execute(_insert(s, SubjectKey.__table__).values(rows).on_conflict_do_nothing())
            load()
        return found

    # -- reading personal fields -----------------------------------------------------

    def ciphers(self, s: Session, key_ids: Iterable[str]) -> dict[str, AESGCM]:
        """Ciphers of the keys that still exist (erased ones are simply absent)."""
        ids = sorted(set(filter(None, key_ids)))
        out: dict[str, AESGCM] = {}
        for i in range(0, len(ids), 900):
            for k in s.scalars(select(SubjectKey).where(SubjectKey.key_id.in_(ids[i : i + 900]))):
                out[k.key_id] = self.keys.cipher(k.wrapped_key, k.key_id)
        return out

    def subject_key_id(self, s: Session, subject: str) -> str | None:
        return s.scalar(
            select(SubjectKey.key_id).where(
                SubjectKey.subject_hash == self.keys.subject_hash(subject)
            )
        )

    def reveal(self, record: dict[str, Any], ciphers: dict[str, AESGCM]) -> dict[str, Any]:
        """A stored record as an event again: personal fields decrypted, or marked erased."""
        aad = record["event_id"].encode()
        out = {
            "id": record["event_id"],
            "tenant": None if record["tenant"] == PLATFORM else record["tenant"],
            "seq": record["seq"],
            "time": time_text(record["time"]) + "Z",
            "action": record["action"],
            "result": record["result"],
            "severity": record["severity"],
            "actor": None,
            "target": None,
            "source_ip": None,
            "user_agent": None,
            "details": json.loads(record["details"] or "{}"),
            "erased": [],
        }
        for part in ("actor", "target"):
            enc = record[f"{part}_enc"]
            if enc is None:
                continue
            cipher = ciphers.get(record[f"{part}_key"])
            fields = crypto.unseal(cipher, enc, aad) if cipher else None
            if fields is None:
                out["erased"].append(part)
                continue
            personal = fields.pop("details", None) or {}
            out.update(fields)
            out["details"].update(personal)
        return out

    # -- checkpoints -------------------------------------------------------------------

    def checkpoint(self, tenant: str, *, force: bool = False) -> dict | None:
        """Sign the chain's head (if it moved since the last checkpoint, or ``force``)."""
        with self.session() as s:
            head = s.execute(
                select(ChainHead).where(ChainHead.tenant == tenant).with_for_update()
            ).scalar_one_or_none()
            if head is None or head.seq == 0:
                return None
            if head.checkpointed_seq == head.seq and not force:
                return None
            cp = self._sign(s, tenant, head.seq, head.hash, "periodic")
            head.checkpointed_seq = head.seq
            head.checkpointed_at = utcnow()
        return cp

    def checkpoints_due(self, now: datetime | None = None) -> list[dict]:
        """Checkpoint every chain that has N new records or new records older than T."""
        now = now or utcnow()
        with self.session() as s:
            heads = list(
                s.scalars(select(ChainHead).where(ChainHead.seq > ChainHead.checkpointed_seq))
            )
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

    def _sign(self, s: Session, tenant: str, seq: int, head_hash: str, kind: str, **extra) -> dict:
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
        s.execute(
            _insert(s, Checkpoint.__table__)
            .values(tenant=tenant, seq=seq, kind=kind, created_at=utcnow(), **cp)
            .on_conflict_do_nothing()
        )
        return {**payload_fields, "signature": signature, "key_id": key_id}

    # -- retention -------------------------------------------------------------------

    def retention_days(self, tenant: str) -> int:
        if tenant == PLATFORM:
            return self.platform_retention_days
        from fedhub.errors import NotFound
        from fedhub.tenancy.store import TenantStore

        store = TenantStore(self.db_url)
        try:
            return store.effective_tier(store.get_tenant(tenant)).audit_retention_days
        except NotFound:
            return self.platform_retention_days

    def purge(
        self, now: datetime | None = None, tenants: Iterable[str] | None = None
    ) -> list[dict]:
        """Delete records older than each chain's retention, behind a signed purge
        checkpoint at the last deleted record, and record the purge in the chain."""
        now = now or utcnow()
        with self.session() as s:
            names = list(tenants) if tenants else list(s.scalars(select(ChainHead.tenant)))
        purged = []
        for tenant in names:
            cutoff = now - timedelta(days=self.retention_days(tenant))
            with self.session() as s:
                self._lock_head(s, tenant)
                last = s.execute(
                    select(AuditRecord.seq, AuditRecord.hash)
                    .where(AuditRecord.tenant == tenant, AuditRecord.time < cutoff)
                    .order_by(AuditRecord.seq.desc())
                    .limit(1)
                ).first()
                if last is None:
                    continue
                first = s.scalar(
                    select(func.min(AuditRecord.seq)).where(AuditRecord.tenant == tenant)
                )
                cp = self._sign(s, tenant, last.seq, last.hash, "purge", cutoff=time_text(cutoff))
                deleted = s.execute(
                    delete(AuditRecord).where(
                        AuditRecord.tenant == tenant, AuditRecord.seq <= last.seq
                    )
                ).rowcount
                info = {
                    "from_seq": first,
                    "through_seq": last.seq,
                    "records": deleted,
                    "cutoff": time_text(cutoff) + "Z",
                }
                self.append_in(
                    s,
                    [
                        make_event(
                            "audit.purged",
                            tenant=None if tenant == PLATFORM else tenant,
                            actor="fedhub-audit",
                            severity="notice",
                            details=info,
                        )
                    ],
                )
                purged.append({"tenant": tenant, **info, "checkpoint": cp["signature"][:16]})
        return purged

    # -- erasure --------------------------------------------------------------------

    def erase_subject(self, subject: str, *, actor: str | None = None) -> str | None:
        """Destroy a person's data key: their personal fields become unreadable for good.

        Returns the erased key id (None if the subject had none). The erasure
        itself is recorded in the platform chain, naming only the key id.
        """
        with self.session() as s:
            key_id = self.subject_key_id(s, subject)
            if key_id is None:
                return None
            s.execute(delete(SubjectKey).where(SubjectKey.key_id == key_id))
            self.keys.forget(key_id)
            s.execute(
                _insert(s, Erasure.__table__)
                .values(key_id=key_id, erased_at=utcnow())
                .on_conflict_do_nothing()
            )
            self.append_in(
                s,
                [
                    make_event(
                        "audit.subject_erased",
                        tenant=None,
                        actor=actor,
                        severity="notice",
                        details={"key_id": key_id},
                    )
                ],
            )
        return key_id
