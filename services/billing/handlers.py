"""Billing API handlers. Every one scopes to a tenant with ``scoped_tenant``.

Who sees what: platform admins any tenant (and revenue totals); tenant admins
their tenant; members and analysts their own usage and cost only. Database work
runs in a thread, off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select

from fedhub.billing import budgets
from fedhub.billing.ingest import ingest, parse_batch
from fedhub.billing.invoices import invoice_document, issue_credit_note
from fedhub.billing.models import CreditNote, Invoice
from fedhub.billing.money import ZERO, cents, dec
from fedhub.billing.operations import Billing
from fedhub.billing.periods import Period, containing, parse
from fedhub.billing.rating import Rating, rate
from fedhub.billing.render import invoice_branding, render_html, render_pdf
from fedhub.billing.summary import usage_document
from fedhub.db import keyset_page
from fedhub.errors import InvalidRequest, NotFound
from fedhub.jobs import run_blocking
from fedhub.marketplace.payouts import month_totals
from fedhub.openapi import operation
from fedhub.web import APIHandler

from . import api_models as api

#: the invoice list's order: newest period first, then by tenant (together unique)
INVOICE_ORDER = [(Invoice.period_start, True), (Invoice.tenant, False)]

T = TypeVar("T")


class BillingHandler(APIHandler):
    @property
    def billing(self) -> Billing:
        return self.settings["fedhub_billing"]

    async def in_session(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(session, *args)`` in one billing transaction, in a thread (off the loop)."""

        def work():
            with self.billing.session() as s:
                return fn(s, *args)

        return await run_blocking(work)

    def rate(self, session, tenant: str, period: Period) -> Rating:
        """The period's rating so far (the clock's now), as usage and budgets show it."""
        return rate(session, tenant, period, self.billing.catalog, until=self.billing.clock.now())

    async def write_list(self, key: str, model, order, to_json) -> None:
        """One page of ``model``'s rows (the caller's tenant, or ``?tenant=``), as ``key``."""
        tenant = self.tenant_arg(required=False)
        page = self.page_args()

        def work(s):
            q = select(model)
            if tenant is not None:
                q = q.where(model.tenant == tenant)
            rows, cursor = keyset_page(s, q, order, cursor=page.cursor, limit=page.limit)
            return [to_json(r) for r in rows], cursor

        self.write_page(key, *await self.in_session(work))

    def tenant_arg(self, required: bool = True) -> str | None:
        tenant = self.scoped_tenant(self.get_query_argument("tenant", None))
        if tenant is None and required:
            raise InvalidRequest("platform admins name a tenant: ?tenant=<slug>")
        return tenant

    def period_arg(self):
        name = self.get_query_argument("period", None)
        return parse(name) if name else containing(self.billing.clock.now())

    @property
    def sees_whole_tenant(self) -> bool:
        return self.caller.can("usage:read-all")

    def check_owner(self, tenant: str | None, what: str) -> None:
        """404 ``no such <what>`` unless the caller may see ``tenant``'s records.

        A record that does not exist and another tenant's record get the same
        body, so an id tells a tenant neither that the record exists nor whose it is.
        """
        if tenant is None:
            raise NotFound(f"no such {what}")
        caller = self.caller
        if not caller.is_platform_admin and tenant != caller.tenant:
            self.deny("cross_tenant", f"no such {what}", status=404)


#: the largest id SQLite's INTEGER holds (it refuses a larger one with an overflow)
MAX_ID = 2**63 - 1


def load_invoice(s, invoice_id: str) -> Invoice | None:
    """The invoice of a route's id, or None: an id no database integer holds is no invoice
    (asking the database for it fails with an overflow, not a miss)."""
    key = int(invoice_id)
    return s.get(Invoice, key) if key <= MAX_ID else None


def credit_amount(raw: Any) -> Decimal:
    """A credit note's amount from a request: a finite number, to the cent; else a 400."""
    try:
        amount = cents(dec(raw))
        if amount.is_finite():
            return amount
    except (ArithmeticError, ValueError):  # not a number, or too many digits to round
        pass
    raise InvalidRequest(f"amount must be a number, got {str(raw)[:40]!r}")


def _money(d: dict[str, Decimal]) -> dict[str, str]:
    return {k: str(v) for k, v in sorted(d.items())}


class UsageHandler(BillingHandler):
    """Current usage against what the plan includes (members: their own usage)."""

    @operation(
        "Usage this period against the plan (members: their own)",
        query=api.TenantPeriodQuery,
        responses={200: api.Usage},
    )
    async def get(self):
        self.require("usage:read")
        tenant = self.tenant_arg()
        r = await self.in_session(self.rate, tenant, self.period_arg())
        if self.sees_whole_tenant:
            self.write_json(usage_document(r))
        else:
            self.write_json(_user_usage(r, self.caller.name))


def _user_usage(r: Rating, me: str) -> dict[str, Any]:
    """A member's own share of each meter and of the cost, nobody else's."""
    mine: dict[str, dict[str, Any]] = {}
    for line in r.lines:
        share = line.attribution.get("users", {}).get(me)
        if line.line_type == "usage" and share:
            m = mine.setdefault(line.meter, {"usage": ZERO, "unit": line.unit})
            m["usage"] += Decimal(share["usage"])
    return {
        "tenant": r.tenant,
        "period": r.period.name,
        "user": me,
        "meters": {k: {"usage": str(v["usage"]), "unit": v["unit"]} for k, v in mine.items()},
        "cost": str(r.by_user().get(me, ZERO)),
    }


class CostsHandler(BillingHandler):
    """Chargeback: each user's share of the period's amount."""

    @operation(
        "Chargeback: each user's share of the period",
        query=api.TenantPeriodQuery,
        responses={200: api.Costs},
    )
    async def get(self):
        self.require("usage:read")
        tenant = self.tenant_arg()
        period = self.period_arg()

        def work(s):
            inv = s.scalar(
                select(Invoice).where(
                    Invoice.tenant == tenant, Invoice.period_start == period.start
                )
            )
            if inv is None:
                return self.rate(s, tenant, period).by_user(), "estimate"
            doc = invoice_document(s, inv)
            users: dict[str, Decimal] = {}
            for line in doc["lines"]:
                for u, share in line["attribution"].get("users", {}).items():
                    users[u] = users.get(u, ZERO) + Decimal(share["amount"])
            return users, doc["status"]

        users, basis = await self.in_session(work)
        if not self.sees_whole_tenant:
            users = {self.caller.name: users.get(self.caller.name, ZERO)}
        self.write_json(
            {"tenant": tenant, "period": period.name, "basis": basis, "users": _money(users)}
        )


def _invoice_row(i: Invoice) -> dict[str, Any]:
    return {
        "id": i.id,
        "number": i.number,
        "tenant": i.tenant,
        "period": i.period,
        "status": i.status,
        "total": str(i.total),
        "currency": i.currency,
    }


def _credit_note_row(n: CreditNote) -> dict[str, Any]:
    return {
        "number": n.number,
        "tenant": n.tenant,
        "invoice": n.invoice_id,
        "total": str(n.total),
        "reason": n.reason,
        "lines": n.lines,
        "created_at": n.created_at.isoformat(),
    }


class InvoicesHandler(BillingHandler):
    """Invoices, newest period first, a page at a time (``?limit=&cursor=``)."""

    @operation(
        "Invoices, newest period first", query=api.PageQuery, responses={200: api.InvoicePage}
    )
    async def get(self):
        self.require("billing:read")
        await self.write_list("invoices", Invoice, INVOICE_ORDER, _invoice_row)


class InvoiceHandler(BillingHandler):
    @operation(
        "An invoice: JSON, or rendered as HTML or PDF",
        responses={
            200: {
                "application/json": api.InvoiceDocument,
                "text/html": None,
                "application/pdf": None,
            }
        },
    )
    async def get(self, invoice_id: str, fmt: str | None):
        self.require("billing:read")

        def load(s):
            inv = load_invoice(s, invoice_id)
            if inv is None:
                return None, None
            doc = invoice_document(s, inv)
            # the tenant's name, colour and logo head the rendered invoice (docs/branding.md)
            return doc, invoice_branding(s, doc["tenant"]) if fmt else None

        doc, branding = await self.in_session(load)
        self.check_owner(doc and doc["tenant"], "invoice")
        if fmt == ".html":
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(render_html(doc, branding))
        elif fmt == ".pdf":
            pdf = await run_blocking(render_pdf, doc, branding)
            self.set_header("Content-Type", "application/pdf")
            name = doc["number"] or f"draft-{doc['tenant']}-{doc['period']}"
            self.set_header("Content-Disposition", f'inline; filename="{name}.pdf"')
            self.finish(pdf)
        else:
            self.write_json(doc)


class CreditNotesHandler(BillingHandler):
    @operation(
        "Credit notes, oldest first", query=api.PageQuery, responses={200: api.CreditNotePage}
    )
    async def get(self):
        """Credit notes, oldest first, a page at a time (``?limit=&cursor=``)."""
        self.require("billing:read")
        await self.write_list(
            "credit_notes", CreditNote, [(CreditNote.id, False)], _credit_note_row
        )


class InvoiceCreditNotesHandler(BillingHandler):
    """``POST /invoices/<id>/credit-notes`` (the list is ``GET /credit-notes``: a route
    reaching a method that cannot take its path arguments would be a 500, not a 405)."""

    @operation(
        "Issue a credit note on a finalized invoice",
        body=api.CreditNoteRequest,
        responses={201: api.CreditNoteIssued},
    )
    async def post(self, invoice_id: str):
        self.require("billing:manage")
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise InvalidRequest('expected {"amount": "25.00", "reason": "..."}')
        amount = credit_amount(body.get("amount", "0"))

        def work(s):
            inv = load_invoice(s, invoice_id)
            self.check_owner(inv and inv.tenant, "invoice")
            note = issue_credit_note(
                s,
                inv.id,
                amount,
                str(body.get("reason", "")),
                now=self.billing.clock.now(),
                actor=self.caller.name,
            )
            return {"number": note.number, "total": str(note.total), "tenant": note.tenant}

        result = await self.in_session(work)
        self.emit(
            "billing.credit_note_issued",
            tenant=result["tenant"],
            target=result["number"],
            details=result,
        )
        self.write_json(result, 201)


class BudgetHandler(BillingHandler):
    @operation(
        "The tenant's budget and its alerts", query=api.TenantQuery, responses={200: api.Budget}
    )
    async def get(self):
        self.require("billing:read")
        tenant = self.tenant_arg()

        def work(s):
            budget = budgets.get_budget(s, tenant)
            if budget is None:
                return {"tenant": tenant, "monthly_limit": None, "thresholds": [], "alerts": []}
            spent = self.rate(s, tenant, containing(self.billing.clock.now())).total
            return budgets.budget_document(s, budget, spent)

        self.write_json(await self.in_session(work))

    @operation(
        "Set the tenant's monthly budget",
        query=api.TenantQuery,
        body=api.BudgetRequest,
        responses={200: api.BudgetSet},
    )
    async def put(self):
        self.require("tenant:admin")
        tenant = self.tenant_arg()
        body = self.get_json_body()
        if not isinstance(body, dict):
            raise InvalidRequest('expected {"monthly_limit": 500, "thresholds": [80, 100]}')
        actor = self.caller.name

        def work(s):
            budget = budgets.set_budget(
                s,
                tenant,
                body.get("monthly_limit"),
                body.get("thresholds"),
                actor=actor,
                now=self.billing.clock.now(),
            )
            return {"monthly_limit": str(budget.monthly_limit), "thresholds": budget.thresholds}

        result = await self.in_session(work)
        self.emit("billing.budget_set", tenant=tenant, target=tenant, details=result)
        await run_blocking(self.billing.check_budgets, [tenant])
        self.write_json({"tenant": tenant, **result})


class RevenueHandler(BillingHandler):
    """Platform admins: invoiced totals per tenant and overall for a period."""

    @operation(
        "Platform admins: invoiced totals for a period",
        query=api.PeriodQuery,
        responses={200: api.Revenue},
    )
    async def get(self):
        self.require("billing:manage")
        period = self.period_arg()

        def work(s):
            invoices = s.scalars(select(Invoice).where(Invoice.period_start == period.start)).all()
            notes = s.scalars(
                select(CreditNote).where(CreditNote.invoice_id.in_([i.id for i in invoices]))
            ).all()
            finalized = sum((i.total for i in invoices if i.status == "finalized"), ZERO)
            draft = sum((i.total for i in invoices if i.status != "finalized"), ZERO)
            credits = sum((n.total for n in notes), ZERO)
            return {
                "period": period.name,
                "tenants": {
                    i.tenant: {"status": i.status, "total": str(i.total)} for i in invoices
                },
                "finalized": str(finalized),
                "draft": str(draft),
                "credited": str(credits),
                "net": str(finalized + draft - credits),
                "marketplace": month_totals(s, period.start),
            }

        self.write_json(await self.in_session(work))


class EventsHandler(BillingHandler):
    """``POST /api/v1/events``: external usage, idempotent per event id, one transaction.

    The body is validated from its raw bytes (no ``json.loads`` first) and written with
    the toolkit's bulk insert-or-ignore (see :mod:`fedhub.billing.ingest`), in one
    thread hop, so a 10,000-event batch never stalls the event loop.
    """

    @operation(
        "Send external usage events (idempotent per event id)",
        body=api.UsageEvents,
        responses={200: api.IngestResult},
    )
    async def post(self):
        caller = self.caller
        if caller.kind != "service" and not caller.can("tenant:admin"):
            self.deny("permission", f"your role ({caller.role}) may not send usage events")
        b = self.billing
        now = b.clock.now()
        # tenant admins send their own tenant's usage only (another tenant's: 404)
        check_tenant = None if caller.kind == "service" else self.scoped_tenant

        def work():
            usages = parse_batch(
                self.request.body,
                now=now,
                late_window=b.settings.late_window,
                future_skew=timedelta(seconds=b.settings.future_skew_seconds),
                max_batch=b.settings.max_batch,
                max_quantity=b.settings.max_event_quantity,
                check_tenant=check_tenant,
            )
            with b.session() as s:
                return ingest(s, usages, now=now)

        result = await run_blocking(work)
        self.write_json({**result, "received_at": now.isoformat() + "Z"})
