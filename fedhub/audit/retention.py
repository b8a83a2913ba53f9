"""Taking records out of the log without breaking it: retention purges and erasure.

A purge deletes a chain's oldest records only behind a signed purge checkpoint
at the last deleted record, and records itself in the chain; ``verify`` accepts
missing leading records only behind such a checkpoint. Erasure changes no
record: it destroys a person's data key (crypto-shredding).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fedhub.audit import personal
from fedhub.audit.models import PLATFORM, AuditRecord, ChainHead, Erasure, SubjectKey
from fedhub.audit.records import time_text
from fedhub.db.base import utcnow
from fedhub.db.toolkit import insert_ignore
from fedhub.events import make_event

PURGER = "fedhub-audit"  # the actor of ``audit.purged`` events


class Retention:
    """Purge and erasure: a part of :class:`fedhub.audit.chain.AuditLog`, which mixes it
    in (it uses the log's sessions, chain lock, checkpoint signing and append)."""

    def retention_days(self, tenant: str) -> int:
        """The tenant's tier's ``audit_retention_days``; the platform's for ``_platform``
        and for deleted tenants (their log outlives them)."""
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
                done = self._purge_chain(s, tenant, cutoff)
            if done:
                purged.append(done)
        return purged

    def _purge_chain(self, s: Session, tenant: str, cutoff: datetime) -> dict | None:
        self.lock_chain(s, tenant)
        last = s.execute(
            select(AuditRecord.seq, AuditRecord.hash)
            .where(AuditRecord.tenant == tenant, AuditRecord.time < cutoff)
            .order_by(AuditRecord.seq.desc())
            .limit(1)
        ).first()
        if last is None:
            return None
        first = s.scalar(select(func.min(AuditRecord.seq)).where(AuditRecord.tenant == tenant))
        cutoff_text = time_text(cutoff)
        cp = self.sign_checkpoint(s, tenant, last.seq, last.hash, "purge", cutoff=cutoff_text)
        deleted = s.execute(
            delete(AuditRecord).where(AuditRecord.tenant == tenant, AuditRecord.seq <= last.seq)
        ).rowcount
        info = {
            "from_seq": first,
            "through_seq": last.seq,
            "records": deleted,
            "cutoff": cutoff_text + "Z",
        }
        event = make_event(
            "audit.purged",
            tenant=None if tenant == PLATFORM else tenant,
            actor=PURGER,
            severity="notice",
            details=info,
        )
        self.append_in(s, [event])
        return {"tenant": tenant, **info, "checkpoint": cp["signature"][:16]}

    def erase_subject(self, subject: str, *, actor: str | None = None) -> str | None:
        """Destroy a person's data key: their personal fields become unreadable for good.

        Returns the erased key id (None if the subject had none). The erasure
        itself is recorded in the platform chain, naming only the key id.
        """
        with self.session() as s:
            key_id = personal.subject_key_id(s, self.keys, subject)
            if key_id is None:
                return None
            s.execute(delete(SubjectKey).where(SubjectKey.key_id == key_id))
            self.keys.forget(key_id)
            row = {"key_id": key_id, "erased_at": utcnow()}
            insert_ignore(s, Erasure.__table__, row, ["key_id"])
            event = make_event(
                "audit.subject_erased",
                tenant=None,
                actor=actor,
                severity="notice",
                details={"key_id": key_id},
            )
            self.append_in(s, [event])
        return key_id
