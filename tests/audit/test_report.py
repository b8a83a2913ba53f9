"""The compliance report executed with papermill and rendered to HTML (must-show 7)."""

from __future__ import annotations

from datetime import timedelta

from fedhub import db as fedhub_db
from fedhub.audit import AuditLog
from fedhub.audit.report import render_compliance
from fedhub.db.base import utcnow
from fedhub.events import make_event
from tests.audit.conftest import sample_events


def test_compliance_report_renders(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    fedhub_db.upgrade(url)
    audit = AuditLog(db_url=url, audit_dir=str(tmp_path / "audit"))
    evs = sample_events(60, tenants=("acme",), start=utcnow() - timedelta(days=3))
    evs.append(
        make_event(
            "server.spawn_refused",
            tenant="acme",
            actor="alice",
            result="denied",
            severity="notice",
            details={"reason": "tenant_servers"},
        )
    )
    evs.append(make_event("auth.lockout", tenant="acme", actor="bob", severity="error"))
    evs.append(make_event("auth.login", tenant="globex", actor="globex-admin"))
    audit.append(evs)
    audit.checkpoint("acme")
    html = render_compliance(
        "acme",
        tmp_path / "out" / "compliance.html",
        period_start=(utcnow() - timedelta(days=7)).isoformat(),
        db_url=url,
        audit_dir=audit.audit_dir,
    ).read_text()
    assert "Compliance report" in html
    assert "INTACT" in html and "NOT INTACT" not in html
    assert "Logins and failures" in html and "data:image/png;base64" in html
    assert "tenant_servers" in html or "spawn_refused" in html
    assert "globex-admin" not in html  # another tenant's events stay out
    assert "Traceback" not in html
