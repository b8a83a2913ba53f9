"""The one event emitter every part of fedhub uses (authenticators, spawner, CLI, services).

``emit()`` must be cheap and must never lose an event when the audit service
is down, so it only validates the event and appends one JSON line to a local
spool file (``O_APPEND`` writes of one line are atomic); the audit service
ingests the spool later, idempotently by event id (:mod:`fedhub.audit.ingest`).

The envelope is one versioned schema, ``fedhub/events_schemas/audit_event.yaml``,
registered with a :class:`jupyter_events.EventLogger` (:func:`event_logger`, so
Jupyter tooling can list and validate it). On the hot path the same file is
checked by a ``fastjsonschema``-compiled validator: jsonschema's Draft7Validator
(what ``EventLogger.emit`` uses) costs ~80 µs per event here, the compiled one a
few µs, and importing jupyter_events costs every process 0.5-2.5 s (see
docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger("fedhub.events")

SCHEMA_ID = "https://fedhub.dev/schemas/audit/event"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).resolve().parent / "events_schemas" / "audit_event.yaml"

ACTION_RE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
SEVERITIES = ("debug", "info", "notice", "warning", "error", "critical")
RESULTS = ("success", "failure", "denied", "error")


class InvalidEvent(ValueError):
    """An event that does not match the registered schema (a bug in the caller)."""


@lru_cache(maxsize=1)
def event_logger():
    """The :class:`jupyter_events.EventLogger` with fedhub's audit schema registered."""
    from jupyter_events import EventLogger

    logger = EventLogger()
    logger.register_event_schema(SCHEMA_FILE)
    return logger


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The envelope schema, as registered (one file is the single source)."""
    import yaml

    return yaml.safe_load(SCHEMA_FILE.read_text())


@lru_cache(maxsize=1)
def _validator():
    # Compiled from the same file the EventLogger registers, without importing
    # jupyter_events in every process that emits (~0.5-2.5 s of imports: every
    # CLI call would pay it). The audit service registers it at start-up and
    # the tests check both agree.
    import fastjsonschema

    return fastjsonschema.compile(schema())


def validate(event: dict[str, Any]) -> None:
    """Check ``event`` against the registered schema; raise :class:`InvalidEvent`."""
    import fastjsonschema

    try:
        _validator()(event)
    except fastjsonschema.JsonSchemaValueException as e:
        raise InvalidEvent(f"invalid audit event {event.get('action')!r}: {e.message}") from None


def spool_dir() -> Path | None:
    """Where events are spooled: ``$FEDHUB_EVENTS_SPOOL``, else ``$FEDHUB_STATE_DIR/spool``."""
    explicit = os.environ.get("FEDHUB_EVENTS_SPOOL")
    if explicit:
        return Path(explicit)
    state = os.environ.get("FEDHUB_STATE_DIR")
    return Path(state) / "spool" if state else None


def emit(action: str, **fields: Any) -> dict[str, Any]:
    """Record that something happened. Returns the event (with its id).

    Takes :func:`make_event`'s arguments (``tenant`` is required, the rest are
    keywords), so the envelope is defined once. Raises :class:`InvalidEvent` (a
    ``ValueError``) for an event that does not match the schema: that is a
    programming error, better found in tests.
    """
    event = make_event(action, **fields)
    _spool(event)
    return event


def make_event(
    action: str,
    *,
    tenant: str | None,
    actor: str | None = None,
    target: str | None = None,
    result: str = "success",
    severity: str = "info",
    details: dict[str, Any] | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
) -> dict[str, Any]:
    """A validated event envelope, not spooled (the audit service appends its own
    events, such as purges, directly to the chain)."""
    event = {
        "id": new_event_id(),
        "time": datetime.now(UTC).isoformat(),
        "tenant": tenant,
        # client-supplied values (a typed username, a User-Agent header) are
        # clipped to the schema's limits: a long header must not fail a login
        "actor": _clip(actor, 255),
        "action": action,
        "target": _clip(target, 1024),
        "result": result,
        "severity": severity,
        "source_ip": _clip(source_ip, 64),
        "user_agent": _clip(user_agent, 1024),
        "details": details or {},
    }
    validate(event)
    return event


def new_event_id() -> str:
    """A UUID version 7 (RFC 9562): milliseconds since the epoch, then 74 random bits.

    Time-ordered, so the audit log's unique index on event ids grows at its right
    edge instead of taking every insert on a random page (docs/benchmarks.md, "Audit").
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = value & ~(0xF << 76 | 0x3 << 62) | 0x7 << 76 | 0x2 << 62  # version 7, variant
    return str(uuid.UUID(int=value))


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and len(value) > limit else value


_made_dirs: set[Path] = set()


def _spool(event: dict[str, Any]) -> None:
    directory = spool_dir()
    if directory is None:
        log.debug(
            "event %s not spooled: no FEDHUB_STATE_DIR or FEDHUB_EVENTS_SPOOL", event["action"]
        )
        return
    if directory not in _made_dirs:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # events name users
        _made_dirs.add(directory)
    line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
    path = directory / f"events-{os.getpid()}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
