"""``fedhub billing close-period|invoices|credit-note``."""

from __future__ import annotations

import click
from sqlalchemy import select

from fedhub.billing.invoices import issue_credit_note
from fedhub.billing.models import Invoice
from fedhub.billing.operations import Billing
from fedhub.billing.periods import parse
from fedhub.cli.common import ACTOR, db_url, output, store, table


def _billing(ctx: click.Context) -> Billing:
    store(ctx)  # migrates the database if needed
    return Billing(db_url(ctx))


@click.group("billing")
def command():
    """Invoices: close billing periods, list invoices, issue credit notes."""


@command.command("close-period")
@click.option("--tenant", "tenants", multiple=True, help="Only this tenant (repeatable).")
@click.option("--period", help="YYYY-MM (default: last month, plus any older drafts).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def close_period(ctx, tenants, period, as_json):
    """Draft or re-rate the period's invoices; finalize those past their grace period.

    Each tenant closes in its own transaction: a tenant that fails is reported on
    standard error (and audited as ``billing.close_failed``), the others still close,
    and the exit status is 1.
    """
    billing = _billing(ctx)
    results = billing.close(parse(period) if period else None, list(tenants) or None)
    rows = [
        [r["tenant"], r["period"], r.get("number") or "-", r.get("status", "FAILED"),
         r.get("total", "-")]
        for r in results
    ]  # fmt: skip
    output(results, as_json, table(rows, ["tenant", "period", "number", "status", "total"]))
    failed = [r for r in results if "error" in r]
    for r in failed:  # each tenant closes alone: the others above are done
        click.echo(f"error: tenant {r['tenant']}, period {r['period']}: {r['error']}", err=True)
    if failed:
        click.echo(
            f"{len(failed)} of {len(results)} invoice(s) could not be closed; fix and run again"
            " (closing is idempotent)",
            err=True,
        )
        ctx.exit(1)


@command.command("invoices")
@click.option("--tenant", help="Only this tenant's invoices.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def invoices(ctx, tenant, as_json):
    """List invoices, oldest period first."""
    billing = _billing(ctx)
    with billing.session() as s:
        q = select(Invoice).order_by(Invoice.period_start, Invoice.tenant)
        if tenant:
            q = q.where(Invoice.tenant == tenant)
        data = [
            {
                "id": i.id,
                "tenant": i.tenant,
                "period": i.period,
                "number": i.number,
                "status": i.status,
                "total": str(i.total),
            }
            for i in s.scalars(q)
        ]
    rows = [
        [d["id"], d["tenant"], d["period"], d["number"] or "-", d["status"], d["total"]]
        for d in data
    ]
    output(data, as_json, table(rows, ["id", "tenant", "period", "number", "status", "total"]))


@command.command("credit-note")
@click.argument("invoice_id", type=int)
@click.option("--amount", required=True, help="Amount to credit, e.g. 12.50")
@click.option("--reason", required=True)
@click.pass_context
def credit_note(ctx, invoice_id, amount, reason):
    """Credit part of a finalized invoice (finalized invoices are never edited)."""
    billing = _billing(ctx)
    with billing.session() as s:
        note = issue_credit_note(
            s, invoice_id, amount, reason, now=billing.clock.now(), actor=ACTOR
        )
        click.echo(f"{note.number}: {note.total} credited on invoice {invoice_id}")
