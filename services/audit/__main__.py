"""``python -m fedhub.services.audit``: the audit service (run by the hub)."""

from __future__ import annotations

import asyncio
import logging
import os

from tornado import ioloop

from fedhub.audit import AuditLog
from fedhub.audit.ingest import SpoolIngester
from fedhub.services.audit.handlers import routes
from fedhub.web import make_app, run

log = logging.getLogger("fedhub.audit")

INGEST_SECONDS = float(os.environ.get("FEDHUB_AUDIT_INGEST_SECONDS", "2"))
PURGE_SECONDS = float(os.environ.get("FEDHUB_AUDIT_PURGE_SECONDS", str(6 * 3600)))


def main() -> None:
    from fedhub.events import event_logger

    event_logger()  # registers (and so checks) the event schema with jupyter_events
    audit = AuditLog()
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
                log.exception("audit: ingestion failed; retrying in %ss", INGEST_SECONDS)

    async def purge():
        try:
            done = await asyncio.get_running_loop().run_in_executor(None, audit.purge)
            for p in done:
                log.info("audit: purged %s seq %s-%s", p["tenant"], p["from_seq"], p["through_seq"])
        except Exception:
            log.exception("audit: retention purge failed")

    loop = ioloop.IOLoop.current()
    loop.add_callback(deliver)
    ioloop.PeriodicCallback(deliver, INGEST_SECONDS * 1000).start()
    ioloop.PeriodicCallback(purge, PURGE_SECONDS * 1000).start()

    def on_stop():
        # deliver what was spooled up to the stop (the next start would, too)
        try:
            ingester.ingest_once()
        except Exception:
            log.exception("audit: final ingestion failed")

    run(app, on_stop=on_stop)


if __name__ == "__main__":
    main()
