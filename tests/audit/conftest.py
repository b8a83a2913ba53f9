"""Fixtures of the audit tests: an audit log on a real database, events to feed it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fedhub.audit import AuditLog
from fedhub.events import make_event


@pytest.fixture
def audit(migrated_db, tmp_path) -> AuditLog:
    """An empty audit log on SQLite and on PostgreSQL, keys in a temp dir."""
    return AuditLog(db_url=migrated_db, audit_dir=str(tmp_path / "audit"))


def sample_events(n: int, tenants=("acme", "globex", None), start: datetime | None = None):
    """``n`` realistic events, one second apart, over a few tenants and users."""
    start = start or datetime.now(UTC) - timedelta(hours=1)
    users = ["alice", "bob", "carol", "dave"]
    actions = [
        "auth.login",
        "auth.login_failed",
        "user.created",
        "tenant.updated",
        "server.started",
    ]
    out = []
    for i in range(n):
        e = make_event(
            actions[i % len(actions)],
            tenant=tenants[i % len(tenants)],
            actor=users[i % len(users)],
            target=users[(i + 1) % len(users)],
            result="failure" if i % 5 == 1 else "success",
            severity="warning" if i % 5 == 1 else "info",
            details={"i": i, "email": f"{users[(i + 1) % 4]}@example.com"},
            source_ip=f"10.0.0.{i % 250}",
            user_agent="pytest",
        )
        e["time"] = (start + timedelta(seconds=i)).isoformat()
        out.append(e)
    return out


def new_id() -> str:
    return str(uuid.uuid4())
