"""The audit API: ``/services/audit/api/v1/...``.

Who sees what: platform admins every chain; tenant admins their tenant's;
analysts their tenant's if the tier's ``features.analyst_audit_read`` is on;
everyone else nothing (403). Asking for another tenant is answered 404, like
every fedhub service (``APIHandler.scoped_tenant``). Exports (JSON Lines, CSV)
need the tier's ``features.audit_export`` and are themselves audited. The CSV
export neutralises formula prefixes (``defusedcsv``): actors, targets and details
come from users.

Database work runs off the event loop (``fedhub.jobs.run_blocking``, given plain values:
the chains the caller may read, decided on the loop first). Exports stream: one
page of events is read at a time and flushed to the client before the next, so
a million-record export holds one page in memory, not the file.
"""

from __future__ import annotations

from fedhub.audit import AuditLog
from fedhub.audit.models import PLATFORM
from fedhub.audit.query import EventFilter, export_lines, read_events
from fedhub.audit.verify import verify
from fedhub.errors import InvalidRequest
from fedhub.jobs import run_blocking
from fedhub.openapi import operation
from fedhub.web import APIHandler

from .api_models import ChainQuery, Checkpoints, EventsPage, EventsQuery, Index, Verification

FORMATS = ("json", "jsonl", "csv")


class AuditHandler(APIHandler):
    @property
    def audit(self) -> AuditLog:
        return self.settings["fedhub_audit"]

    def readable_chains(self, requested: str | None) -> list[str] | None:
        """The chains the caller may read (None: all), or a 403/404."""
        caller = self.caller
        if caller.is_platform_admin:
            self.require("audit:read-all")  # a platform admin's narrowed token may not
            if requested in ("platform", PLATFORM):
                return [PLATFORM]
            # any chain, including a deleted tenant's (its log outlives it)
            return [requested] if requested else None
        if caller.can("audit:read"):
            return [self.scoped_tenant(requested)]
        if caller.can("audit:read-if-tier"):
            tenant = self.scoped_tenant(requested)
            if not self._tier(tenant).features.analyst_audit_read:
                self.deny("tier", "your tier does not let analysts read the audit log")
            return [tenant]
        self.deny("permission", f"your role ({caller.role}) may not read the audit log")

    def _tier(self, tenant: str):
        return self.store.effective_tier(self.store.get_tenant(tenant))

    def chain_arg(self) -> list[str] | None:
        return self.readable_chains(self.get_argument("tenant", None))


class EventsHandler(AuditHandler):
    @operation(
        "Audit events: a page of JSON, or an export as JSON Lines or CSV",
        query=EventsQuery,
        responses={
            200: {"application/json": EventsPage, "application/x-ndjson": None, "text/csv": None}
        },
    )
    async def get(self):
        chains = self.chain_arg()
        fmt = self.get_argument("format", "json")
        if fmt not in FORMATS:
            raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}")
        flt = EventFilter(
            tenants=chains,
            actor=self.get_argument("actor", None),
            action=self.get_argument("action", None),
            min_severity=self.get_argument("severity", None),
            result=self.get_argument("result", None),
            since=EventFilter.parse_time(self.get_argument("since", None), "since"),
            until=EventFilter.parse_time(self.get_argument("until", None), "until"),
        ).validate()
        if fmt == "json":
            try:
                limit = int(self.get_argument("limit", "100"))
            except ValueError:
                raise InvalidRequest("limit must be an integer") from None
            events, cursor = await run_blocking(
                read_events,
                self.audit,
                flt,
                cursor=self.get_argument("cursor", None),
                limit=limit,
            )
            self.write_json({"events": events, "next_cursor": cursor})
            return
        await self._export(flt, fmt, chains)

    async def _export(self, flt: EventFilter, fmt: str, chains: list[str] | None) -> None:
        caller = self.caller
        if not caller.is_platform_admin and not self._tier(caller.tenant).features.audit_export:
            self.deny("tier", "your tier does not include audit log export")
        self.emit(
            "audit.exported",
            target=",".join(chains) if chains else "*",
            details={"format": fmt, "action": flt.action, "actor_filter": bool(flt.actor)},
        )
        if fmt == "jsonl":
            self.set_header("Content-Type", "application/x-ndjson")
            self.set_header("Content-Disposition", 'attachment; filename="audit.jsonl"')
        else:
            self.set_header("Content-Type", "text/csv; charset=utf-8")
            self.set_header("Content-Disposition", 'attachment; filename="audit.csv"')
        # one chunk (a page of events, read and encoded in a thread) at a time: the
        # next is read only once this one is handed to the client
        chunks = export_lines(self.audit, flt, fmt)
        while (chunk := await run_blocking(next, chunks, None)) is not None:
            self.write(chunk)
            await self.flush()
        self.finish()


class VerifyHandler(AuditHandler):
    """The verification status of the chains the caller may read."""

    @operation(
        "Verify the chains the caller may read", query=ChainQuery, responses={200: Verification}
    )
    async def get(self):
        chains = self.chain_arg()  # the caller's scope, decided here, on the loop
        reports = await run_blocking(_verify_reports, self.audit, chains)
        self.write_json({"ok": all(r["ok"] for r in reports), "chains": reports})


def _verify_reports(audit: AuditLog, chains: list[str] | None) -> list[dict]:
    """Verify the named chains (None: every chain); off the loop, in a thread, which
    hands long chains to worker processes (``AuditLog.verify_processes``)."""
    if chains is None:  # every chain, their spans shared out over one pool of workers
        return [r.as_dict() for r in verify(audit)]
    return [r.as_dict() for name in chains for r in verify(audit, name)]


class CheckpointsHandler(AuditHandler):
    """The signed checkpoints of a chain, for an auditor to keep their own copies."""

    @operation(
        "The signed checkpoints of the chains", query=ChainQuery, responses={200: Checkpoints}
    )
    async def get(self):
        from sqlalchemy import select

        from fedhub.audit.models import Checkpoint

        chains = self.chain_arg()
        audit = self.audit

        def read() -> list[dict]:  # in a thread: plain values only, not the handler
            with audit.session() as s:
                q = select(Checkpoint).order_by(Checkpoint.tenant, Checkpoint.seq)
                if chains is not None:
                    q = q.where(Checkpoint.tenant.in_(chains))
                return [
                    {"payload": c.payload, "signature": c.signature, "key_id": c.key_id}
                    for c in s.scalars(q)
                ]

        self.write_json({"checkpoints": await run_blocking(read)})


class PublicKeyHandler(AuditHandler):
    """The checkpoint signing public key (no tenant data: any logged-in caller)."""

    @operation(
        "The checkpoint signing public key (PEM)", responses={200: {"application/x-pem-file": None}}
    )
    async def get(self):
        _ = self.caller
        self.set_header("Content-Type", "application/x-pem-file")
        self.finish(self.audit.keys.public_pem())


class IndexHandler(AuditHandler):
    @operation("Where the API is", responses={200: Index})
    async def get(self):
        self.write_json({"service": "fedhub-audit", "api": "api/v1/events"})


def routes() -> list[tuple]:
    return [
        (r"", IndexHandler),
        (r"api/v1/events", EventsHandler),
        (r"api/v1/verify", VerifyHandler),
        (r"api/v1/checkpoints", CheckpointsHandler),
        (r"api/v1/public-key", PublicKeyHandler),
    ]
