"""Recompute every chain and check it against the signed checkpoints.

What is checked, per chain, in sequence order:

- each record's hash is the hash of its stored fields (a changed field shows);
- each record's ``prev_hash`` is the previous record's hash and sequence
  numbers have no gaps (a deleted, inserted or reordered record shows);
- each record's MAC, when the master key is at hand (a record rewritten or
  appended by someone with database access only shows, even after the last
  checkpoint);
- every signed checkpoint (database rows and files, verified with the public
  key) names a record that is still there with that hash (history rewritten
  up to a checkpoint shows; so does truncation after it);
- records missing at the start are allowed only behind a signed purge
  checkpoint at the last purged sequence number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import String, select, type_coerce

from fedhub import db as fedhub_db
from fedhub.audit import crypto
from fedhub.audit.chain import AuditLog
from fedhub.audit.models import AuditRecord, ChainHead, Checkpoint
from fedhub.audit.records import record_hash

COLUMNS = [
    "tenant",
    "seq",
    "event_id",
    "time",
    "action",
    "result",
    "severity",
    "schema_version",
    "details",
    "actor_key",
    "actor_enc",
    "target_key",
    "target_enc",
    "prev_hash",
    "hash",
    "mac",
]


@dataclass
class ChainReport:
    tenant: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    problem: str | None = None  # the first bad thing found (verification stops there)
    bad_seq: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


def _signed_checkpoints(log: AuditLog, tenant: str, report: ChainReport, public=None) -> list[dict]:
    """Valid checkpoints of a chain from files and rows; a bad signature is a problem."""
    public = public or log.keys.public_key()
    found: dict[tuple[int, str], dict] = {}
    sources: dict[tuple[int, str], set[str]] = {}
    entries: list[tuple[str, dict]] = []
    directory = log.checkpoint_dir / tenant
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            try:
                entries.append((f"file {path.name}", json.loads(path.read_text())))
            except (OSError, ValueError):
                report.problem = f"checkpoint file {path} is unreadable"
                return []
    with log.session() as s:
        for cp in s.scalars(select(Checkpoint).where(Checkpoint.tenant == tenant)):
            entries.append((f"row {cp.id}", {"payload": cp.payload, "signature": cp.signature}))
    for where, cp in entries:
        if not crypto.verify_signature(public, cp["payload"].encode(), cp["signature"]):
            report.problem = f"checkpoint {where} has an invalid signature"
            return []
        payload = json.loads(cp["payload"])
        if payload["tenant"] != tenant:
            report.problem = f"checkpoint {where} is for tenant {payload['tenant']!r}"
            return []
        key = (payload["seq"], payload["kind"])
        found[key] = payload
        sources.setdefault(key, set()).add(where.split()[0])
    for (seq, kind), src in sources.items():
        if src == {"row"}:
            report.warnings.append(f"checkpoint {kind} at seq {seq} has no file")
        elif src == {"file"}:
            report.warnings.append(f"checkpoint {kind} at seq {seq} is missing from the database")
    report.checkpoints = len(found)
    return list(found.values())


def _rows(log: AuditLog, tenant: str, batch: int = 5000) -> Iterator[dict]:
    table = AuditRecord.__table__
    engine = fedhub_db.get_engine(log.db_url)
    raw_time = engine.dialect.name == "sqlite"
    cols = [
        type_coerce(table.c[c], String) if (c == "time" and raw_time) else table.c[c]
        for c in COLUMNS
    ]
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(
            select(*cols).where(table.c.tenant == tenant).order_by(table.c.seq)
        )
        for row in result:
            yield dict(zip(COLUMNS, row, strict=True))


def verify_chain(log: AuditLog, tenant: str, public=None) -> ChainReport:
    """Check one chain; ``public`` is the Ed25519 public key (default: the audit dir's)."""
    report = ChainReport(tenant=tenant)
    checkpoints = _signed_checkpoints(log, tenant, report, public)
    if report.problem:
        return report
    by_seq: dict[int, list[dict]] = {}
    for cp in checkpoints:
        by_seq.setdefault(cp["seq"], []).append(cp)
    purges = {cp["seq"]: cp for cp in checkpoints if cp["kind"] == "purge"}
    mac_key = log.keys.mac_key() if (Path(log.audit_dir) / "master.key").exists() else None
    if mac_key is None:
        report.warnings.append("master key not available: record MACs not checked")
    prev = expected = None
    for row in _rows(log, tenant):
        seq = row["seq"]
        if expected is None:
            report.first_seq = seq
            if seq == 1:
                prev = crypto.GENESIS
            elif seq - 1 in purges:
                prev = purges[seq - 1]["head_hash"]
            else:
                base = max((p for p in purges if p < seq), default=0)
                return _bad(
                    report,
                    base + 1,
                    f"records {base + 1}-{seq - 1} are missing and no signed purge covers them",
                )
            expected = seq
        if seq != expected:
            return _bad(
                report, expected, f"record seq {expected} is missing (deleted or renumbered)"
            )
        if row["prev_hash"] != prev:
            return _bad(report, seq, f"record seq {seq} does not follow seq {seq - 1} (prev_hash)")
        computed = record_hash(row)
        if computed != row["hash"]:
            return _bad(report, seq, f"record seq {seq} was modified (hash mismatch)")
        if mac_key is not None and row["mac"] != crypto.record_mac(mac_key, computed):
            return _bad(report, seq, f"record seq {seq} has a bad MAC (written without the key)")
        for cp in by_seq.get(seq, ()):
            if cp["head_hash"] != computed:
                return _bad(report, seq, f"record seq {seq} differs from the signed checkpoint")
        prev = computed
        expected = seq + 1
        report.records += 1
    report.last_seq = expected - 1 if expected else None
    last = report.last_seq or 0
    beyond = [s for s in by_seq if s > last]
    if beyond:
        return _bad(
            report,
            last + 1,
            f"log truncated: a signed checkpoint names seq {max(beyond)}, the log ends at {last}",
        )
    with log.session() as s:
        head = s.get(ChainHead, tenant)
    if head is not None and head.seq > last:
        return _bad(
            report,
            last + 1,
            f"log truncated: the chain head is at {head.seq}, the log ends at {last}",
        )
    return report


def _bad(report: ChainReport, seq: int, message: str) -> ChainReport:
    report.bad_seq = seq
    report.problem = message
    return report


def chains(log: AuditLog) -> list[str]:
    """Every chain the database or the checkpoint directory knows of."""
    with log.session() as s:
        names = set(s.scalars(select(ChainHead.tenant)))
        names.update(s.scalars(select(AuditRecord.tenant).distinct()))
        names.update(s.scalars(select(Checkpoint.tenant).distinct()))
    if log.checkpoint_dir.is_dir():
        names.update(p.name for p in log.checkpoint_dir.iterdir() if p.is_dir())
    return sorted(names)


def verify(log: AuditLog, tenant: str | None = None, public=None) -> list[ChainReport]:
    return [verify_chain(log, t, public) for t in ([tenant] if tenant else chains(log))]
