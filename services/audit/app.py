"""The audit service process: spool ingestion, checkpoints, retention purge, the API."""

from __future__ import annotations

import asyncio
import os

from tornado import ioloop
from traitlets import Float, default

from fedhub.audit import AuditLog
from fedhub.audit.ingest import SpoolIngester
from fedhub.config import Fedhub
from fedhub.services.audit.handlers import routes
from fedhub.web import ServiceApp, make_app


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
        lock = asyncio.Lock()

        async def deliver():
            # one pass at a time, off the event loop (it is blocking database work)
            if lock.locked():
                return
            async with lock:
                try:
                    loop = asyncio.get_running_loop()
                    n = await loop.run_in_executor(None, ingester.ingest_once)
                    await loop.run_in_executor(None, audit.checkpoints_due)
                    if n:
                        log.info("audit: ingested %d events", n)
                except Exception:
                    log.exception("audit: ingestion failed; retrying in %ss", self.ingest_seconds)

        async def purge():
            try:
                done = await asyncio.get_running_loop().run_in_executor(None, audit.purge)
                for p in done:
                    log.info(
                        "audit: purged %s seq %s-%s", p["tenant"], p["from_seq"], p["through_seq"]
                    )
            except Exception:
                log.exception("audit: retention purge failed")

        loop = ioloop.IOLoop.current()
        loop.add_callback(deliver)
        ioloop.PeriodicCallback(deliver, self.ingest_seconds * 1000).start()
        ioloop.PeriodicCallback(purge, self.purge_seconds * 1000).start()

        def on_stop():
            # deliver what was spooled up to the stop (the next start would, too)
            try:
                ingester.ingest_once()
            except Exception:
                log.exception("audit: final ingestion failed")

        return app, on_stop


main = AuditApp.launch_instance
