"""Filtered, paginated reads of the audit log, personal fields decrypted where possible.

Used by the service API, the CLI and the compliance report, so all three
apply the same filters the same way and show records as their hashes cover
them (rendered from the stored canonical bytes, :func:`read_events`). Pages are
keyset pages in row id order (ingestion order, :func:`fedhub.db.keyset_page`), so
a page boundary never skips or repeats a record while new ones arrive.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# the standard csv module with every cell that starts with = + - @ | % prefixed by a
# quote, so a spreadsheet opening the export shows text instead of running a formula
from defusedcsv import csv
from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from fedhub.audit.chain import AuditLog
from fedhub.audit.crypto import KeyRing
from fedhub.audit.models import PLATFORM, AuditRecord
from fedhub.audit.personal import ciphers as personal_ciphers
from fedhub.audit.personal import reveal
from fedhub.audit.records import time_text
from fedhub.db.toolkit import keyset_page, parse_iso
from fedhub.errors import InvalidRequest
from fedhub.events import SEVERITIES

MAX_LIMIT = 1000
log = logging.getLogger("fedhub.audit.query")


@dataclass
class EventFilter:
    """What to read. ``tenants=None`` means every chain (platform admins only)."""

    tenants: list[str] | None = None
    actor: str | None = None
    action: str | None = None  # a prefix: "auth." or "auth.login"
    min_severity: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @staticmethod
    def parse_time(value: str | None, name: str) -> datetime | None:
        if not value:
            return None
        try:
            return parse_iso(value)
        except ValueError:
            raise InvalidRequest(f"{name} must be an ISO 8601 time, got {value!r}") from None

    def chains(self) -> list[str]:
        return [x or PLATFORM for x in self.tenants or ()]

    def severities(self) -> tuple[str, ...]:
        return SEVERITIES[SEVERITIES.index(self.min_severity) :]

    def matches(self, hashed: dict[str, Any], actor_key: str | None) -> bool:
        """Whether a record's hashed fields (not its columns) pass the filter;
        ``actor_key`` is the actor's key id when filtering by actor."""
        return (
            (self.tenants is None or hashed["tenant"] in self.chains())
            and (not self.action or hashed["action"].startswith(self.action))
            and (not self.min_severity or hashed["severity"] in self.severities())
            and (not self.result or hashed["result"] == self.result)
            and (not self.since or hashed["time"] >= time_text(self.since))
            and (not self.until or hashed["time"] < time_text(self.until))
            and (not self.actor or hashed["actor_key"] == actor_key)
        )

    def validate(self) -> EventFilter:
        if self.min_severity and self.min_severity not in SEVERITIES:
            raise InvalidRequest(f"severity must be one of {', '.join(SEVERITIES)}")
        return self


def read_events(
    audit: AuditLog, flt: EventFilter, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of events and the cursor of the next page (None at the end).

    The columns only choose the rows (indexes); each event is rendered from the
    record's canonical bytes, the ones its hash covers, and rows whose bytes do not
    match the filter are dropped. So a column changed behind the code's back can
    hide a record from a filtered read (``verify --deep`` finds that), never show a
    record other than it was hashed, nor show one outside the caller's chains. A
    page may then hold fewer than ``limit`` events; ``next_cursor`` still goes on.
    """
    limit = max(1, min(int(limit), MAX_LIMIT))
    t = AuditRecord
    q = select(t).options(load_only(t.id, t.canonical))
    if flt.tenants is not None:
        q = q.where(t.tenant.in_(flt.chains()))
    if flt.action:
        q = q.where(t.action.startswith(flt.action, autoescape=True))
    if flt.min_severity:
        q = q.where(t.severity.in_(flt.severities()))
    if flt.result:
        q = q.where(t.result == flt.result)
    if flt.since:
        q = q.where(t.time >= flt.since)
    if flt.until:
        q = q.where(t.time < flt.until)
    with audit.session() as s:
        actor_key = None
        if flt.actor:
            actor_key = audit.subject_key_id(s, flt.actor)
            if actor_key is None:  # never seen, or erased: nothing to find
                return [], None
            q = q.where(t.actor_key == actor_key)
        rows, next_cursor = keyset_page(s, q, [(t.id, False)], cursor=cursor, limit=limit)
        hashed = [h for h in map(_hashed, rows) if h is not None and flt.matches(h, actor_key)]
        ciphers = audit.ciphers(
            s, [h["actor_key"] for h in hashed] + [h["target_key"] for h in hashed]
        )
    return [audit.reveal(h, ciphers) for h in hashed], next_cursor


def _hashed(row: AuditRecord) -> dict[str, Any] | None:
    """The fields a record's hash covers, from its canonical bytes, named as stored."""
    if row.canonical is None:
        log.warning("audit record %s has no canonical bytes: run fedhub audit verify", row.id)
        return None
    hashed = json.loads(row.canonical)
    hashed["event_id"] = hashed["id"]
    return hashed


def iter_events(audit: AuditLog, flt: EventFilter, page: int = 1000):
    """Every matching event, page by page (exports, reports)."""
    cursor = None
    while True:
        events, cursor = read_events(audit, flt, cursor=cursor, limit=page)
        yield from events
        if cursor is None:
            return


CSV_FIELDS = [
    "id",
    "time",
    "tenant",
    "seq",
    "actor",
    "action",
    "target",
    "result",
    "severity",
    "source_ip",
    "user_agent",
    "details",
    "erased",
]


EXPORT_FORMATS = ("jsonl", "csv")


def export_lines(audit: AuditLog, flt: EventFilter, fmt: str, page: int = 1000) -> Iterator[str]:
    """An export as text chunks, one page of events each (the CSV header first).

    Memory stays that of one page however long the export: the service writes
    and flushes each chunk before it asks for the next, the CLI writes it to
    its file. CSV cells that could start a spreadsheet formula are neutralised
    (``defusedcsv``): actors, targets and details come from users.
    """
    if fmt not in EXPORT_FORMATS:
        raise InvalidRequest(f"export format must be one of {', '.join(EXPORT_FORMATS)}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    cursor = None
    while True:
        events, cursor = read_events(audit, flt, cursor=cursor, limit=page)
        if writer is None:
            chunk = "".join(json.dumps(e, default=str) + "\n" for e in events)
        else:
            for e in events:
                writer.writerow(
                    {
                        **e,
                        "details": json.dumps(e["details"], sort_keys=True, default=str),
                        "erased": ",".join(e["erased"]),
                    }
                )
            chunk = buf.getvalue()
            buf.seek(0)
            buf.truncate()
        if chunk:
            yield chunk
        if cursor is None:
            return


def recent_events(
    s: Session, keys: KeyRing | None, tenant: str | None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest ``limit`` events of one chain (``tenant``; None: the platform's), newest
    first, rendered as :func:`read_events` renders them: what a console shows.

    ``keys`` decrypts the personal fields (who did it, to whom); without it (or without
    the master key) they show as erased. ``s`` is a session of the audit tables' database.
    """
    t = AuditRecord
    rows = s.scalars(
        select(t)
        .options(load_only(t.id, t.canonical))
        .where(t.tenant == (tenant or PLATFORM))
        .order_by(t.id.desc())
        .limit(max(1, min(int(limit), MAX_LIMIT)))
    ).all()
    hashed = [h for h in map(_hashed, rows) if h is not None]
    ciphers = {}
    if keys is not None and keys.master is not None:
        ciphers = personal_ciphers(
            s, keys, [h["actor_key"] for h in hashed] + [h["target_key"] for h in hashed]
        )
    return [reveal(h, ciphers) for h in hashed]
