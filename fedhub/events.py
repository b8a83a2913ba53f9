"""The one event emitter every part of fedhub uses (authenticators, spawner, CLI, services).

``emit()`` must be cheap and must never lose an event when the audit service
is down, so it only appends one JSON line to a local spool file (``O_APPEND``
writes of one line are atomic); the audit service ingests the spool later,
idempotently by event id.

The audit issue extends this module (schemas registered with jupyter_events,
delivery); the call signature below is the contract.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("fedhub.events")

ACTION_RE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
SEVERITIES = ("debug", "info", "notice", "warning", "error", "critical")
RESULTS = ("success", "failure", "denied", "error")


def spool_dir() -> Path | None:
    """Where events are spooled: ``$FEDHUB_EVENTS_SPOOL``, else ``$FEDHUB_STATE_DIR/spool``."""
    explicit = os.environ.get("FEDHUB_EVENTS_SPOOL")
    if explicit:
        return Path(explicit)
    state = os.environ.get("FEDHUB_STATE_DIR")
    return Path(state) / "spool" if state else None


def emit(
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
    """Record that something happened. Returns the event (with its id)."""
    if not ACTION_RE.match(action):
        raise ValueError(f"event action must be a dotted lowercase name, got {action!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    if result not in RESULTS:
        raise ValueError(f"unknown result {result!r}")
    event = {
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat(),
        "tenant": tenant,
        "actor": actor,
        "action": action,
        "target": target,
        "result": result,
        "severity": severity,
        "source_ip": source_ip,
        "user_agent": user_agent,
        "details": details or {},
    }
    _spool(event)
    return event


def _spool(event: dict[str, Any]) -> None:
    directory = spool_dir()
    if directory is None:
        log.debug(
            "event %s not spooled: no FEDHUB_STATE_DIR or FEDHUB_EVENTS_SPOOL", event["action"]
        )
        return
    directory.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
    path = directory / f"events-{os.getpid()}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
