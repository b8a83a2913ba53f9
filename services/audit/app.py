"""The audit service process: spool ingestion, checkpoints, retention purge, the API."""

from __future__ import annotations

import os

from traitlets import Float, default

from fedhub.audit import AuditLog
from fedhub.audit.ingest import SpoolIngester
from fedhub.config import Fedhub
from fedhub.jobs import PeriodicJob
from fedhub.service import ServiceApp
from fedhub.services.audit.handlers import routes
from fedhub.web import make_app


def _env_float(name: str, fallback: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else fallback


class AuditApp(ServiceApp):
    """``python -m fedhub.services.audit`` (the hub runs it)."""

    name = "audit"
    classes = [Fedhub, AuditLog]

    ingest_seconds = Float(
        config=True,
        help="""Seconds between passes that move the event spool into the chains.
        Fallback: ``$FEDHUB_AUDIT_INGEST_SECONDS``, else 2.

            c.AuditApp.ingest_seconds = 2
        """,
    )
    purge_seconds = Float(
        config=True,
        help="""Seconds between retention purges. Fallback: ``$FEDHUB_AUDIT_PURGE_SECONDS``,
        else 21600 (six hours).

            c.AuditApp.purge_seconds = 21600
        """,
    )

    @default("ingest_seconds")
    def _default_ingest(self):
        return _env_float("FEDHUB_AUDIT_INGEST_SECONDS", 2.0)

    @default("purge_seconds")
    def _default_purge(self):
        return _env_float("FEDHUB_AUDIT_PURGE_SECONDS", 6 * 3600.0)

    def make_app(self):
        from fedhub.events import event_logger

        log = self.log
        event_logger()  # registers (and so checks) the event schema with jupyter_events
        audit = AuditLog(parent=self)
        ingester = SpoolIngester(audit)
        app = make_app(routes(), fedhub_audit=audit)

        def deliver():
            n = ingester.ingest_once()
            audit.checkpoints_due()
            if n:
                log.info("audit: ingested %d events", n)

        def purge():
            for p in audit.purge():
                log.info("audit: purged %s seq %s-%s", p["tenant"], p["from_seq"], p["through_seq"])

        # each in a thread (blocking database work), one run at a time; an error is
        # logged and the job keeps its schedule
        jobs = [
            PeriodicJob(
                "audit ingestion",
                deliver,
                self.ingest_seconds,
                blocking=True,
                first_delay=0,
                logger=log,
            ).start(),
            PeriodicJob(
                "audit retention purge", purge, self.purge_seconds, blocking=True, logger=log
            ).start(),
        ]

        def on_stop():
            # deliver what was spooled up to the stop (the next start would, too)
            for job in jobs:
                job.stop()
            try:
                ingester.ingest_once()
            except Exception:
                log.exception("audit: final ingestion failed")

        return app, on_stop


main = AuditApp.launch_instance
