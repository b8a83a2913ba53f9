"""Filtered, paginated reads of the audit log, personal fields decrypted where possible.

Used by the service API, the CLI and the compliance report, so all three
apply the same filters the same way. Pages are ordered by the record's row id
(ingestion order); the cursor is the last row id seen, so a page boundary
never skips or repeats a record while new ones arrive.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# the standard csv module with every cell that starts with = + - @ | % prefixed by a
# quote, so a spreadsheet opening the export shows text instead of running a formula
from defusedcsv import csv
from sqlalchemy import select

from fedhub.audit.chain import AuditLog
from fedhub.audit.models import PLATFORM, AuditRecord
from fedhub.db.toolkit import parse_iso
from fedhub.errors import InvalidRequest
from fedhub.events import SEVERITIES

MAX_LIMIT = 1000


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

    def validate(self) -> EventFilter:
        if self.min_severity and self.min_severity not in SEVERITIES:
            raise InvalidRequest(f"severity must be one of {', '.join(SEVERITIES)}")
        return self


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"r{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("r"):
            raise ValueError(text)
        return int(text[1:])
    except ValueError:
        raise InvalidRequest("invalid cursor") from None


def read_events(
    audit: AuditLog, flt: EventFilter, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of events and the cursor of the next page (None at the end)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    t = AuditRecord.__table__
    q = select(t).where(t.c.id > decode_cursor(cursor)).order_by(t.c.id).limit(limit + 1)
    if flt.tenants is not None:
        q = q.where(t.c.tenant.in_([x or PLATFORM for x in flt.tenants]))
    if flt.action:
        q = q.where(t.c.action.startswith(flt.action, autoescape=True))
    if flt.min_severity:
        q = q.where(t.c.severity.in_(SEVERITIES[SEVERITIES.index(flt.min_severity) :]))
    if flt.result:
        q = q.where(t.c.result == flt.result)
    if flt.since:
        q = q.where(t.c.time >= flt.since)
    if flt.until:
        q = q.where(t.c.time < flt.until)
    with audit.session() as s:
        if flt.actor:
            key_id = audit.subject_key_id(s, flt.actor)
            if key_id is None:  # never seen, or erased: nothing to find
                return [], None
            q = q.where(t.c.actor_key == key_id)
        rows = [r._asdict() for r in s.execute(q)]
        more = len(rows) > limit
        rows = rows[:limit]
        ciphers = audit.ciphers(s, [r["actor_key"] for r in rows] + [r["target_key"] for r in rows])
    events = [audit.reveal(r, ciphers) for r in rows]
    return events, (encode_cursor(rows[-1]["id"]) if more else None)


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
