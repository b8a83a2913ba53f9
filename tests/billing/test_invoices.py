"""Invoices through months with the test clock: proration, grace, late usage, credit notes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from fedhub.billing.invoices import get_invoice, invoice_document, issue_credit_note
from fedhub.billing.models import Adjustment, CreditNote, ImmutableInvoice
from fedhub.billing.periods import parse
from fedhub.errors import Conflict, InvalidRequest
from fedhub.metering import Usage, record
from fedhub.tenancy.store import TenantStore

OCT, NOV = parse("2026-10"), parse("2026-11")


def _core_hours(s, tenant, user, hours, at, key, now):
    return record(
        s,
        [
            Usage(
                tenant,
                "cpu_seconds",
                hours * 3600,
                at,
                at + timedelta(hours=hours),
                "test",
                key,
                username=user,
            )
        ],
        now=now,
    )


@pytest.fixture
def acme(billing, clock):
    """A starter tenant from 1 Oct that moves to professional on 16 Oct (via TenantStore)."""
    store = TenantStore(billing.db_url, billing.catalog)
    store.create_tenant("acme", tier="starter")
    clock.set(datetime(2026, 10, 16, 9, 30))
    store.update_tenant("acme", tier="professional")
    return store


def test_tier_change_is_prorated_by_day_and_finalized_after_grace(billing, clock, acme):
    with billing.session() as s:
        _core_hours(s, "acme", "alice", 80, datetime(2026, 10, 3), "a1", clock.now())
    with pytest.raises(InvalidRequest):  # October is still open
        billing.close(OCT)
    clock.set(datetime(2026, 11, 1, 1))
    [draft] = billing.close(OCT)
    assert draft["status"] == "draft" and draft["number"] is None
    clock.set(datetime(2026, 11, 4, 0, 1))  # 3 days of grace are over
    [final] = billing.close(OCT)
    assert final["status"] == "finalized" and final["number"] == "ACME-2026-10"
    with billing.session() as s:
        doc = invoice_document(s, get_invoice(s, "acme", OCT))
    base = [line for line in doc["lines"] if line["type"] == "base"]
    # starter 1-15 Oct (15 days), professional 16-31 Oct (16 days), of 31
    assert [Decimal(b["amount"]) for b in base] == [
        (Decimal(99) * 15 / 31).quantize(Decimal("0.01")),
        (Decimal(499) * 16 / 31).quantize(Decimal("0.01")),
    ]
    [compute] = [line for line in doc["lines"] if line["meter"] == "compute_hours"]
    included = (Decimal(50) * 15 / 31).quantize(Decimal("0.000001"))
    assert Decimal(compute["included"]) == included
    assert Decimal(compute["amount"]) == ((80 - included) * Decimal("0.5")).quantize(
        Decimal("0.01")
    )
    assert compute["attribution"]["users"]["alice"]["amount"] == compute["amount"]
    assert Decimal(doc["total"]) == sum(Decimal(line["amount"]) for line in doc["lines"])


def test_late_event_after_finalization_becomes_next_period_line_never_an_edit(billing, clock, acme):
    with billing.session() as s:
        _core_hours(s, "acme", "alice", 10, datetime(2026, 10, 20), "a1", clock.now())
    clock.set(datetime(2026, 11, 5))
    [final] = billing.close(OCT)
    assert final["status"] == "finalized"
    with billing.session() as s:
        before = invoice_document(s, get_invoice(s, "acme", OCT))
    # a late event for 30 October arrives on 6 November (inside the 7-day late window),
    # big enough to go beyond professional's included hours (500 × 16/31 ≈ 258)
    clock.set(datetime(2026, 11, 6))
    with billing.session() as s:
        _core_hours(s, "acme", "bob", 300, datetime(2026, 10, 30), "late-1", clock.now())
    billing.close(OCT)  # the scheduled close reconciles
    billing.close(OCT)  # ... and reconciling twice changes nothing
    with billing.session() as s:
        after = invoice_document(s, get_invoice(s, "acme", OCT))
        adjustments = s.scalars(select(Adjustment)).all()
    assert after == before  # the finalized invoice is untouched
    [adj] = adjustments
    expected = (
        (Decimal(310) - (Decimal(500) * 16 / 31).quantize(Decimal("0.000001"))) * Decimal("0.4")
    ).quantize(Decimal("0.01"))
    assert adj.amount == expected and adj.credit_note_id is None
    # it becomes a line on November's invoice
    clock.set(datetime(2026, 12, 1, 1))
    billing.close(NOV)
    with billing.session() as s:
        nov = invoice_document(s, get_invoice(s, "acme", NOV))
    [line] = [ln for ln in nov["lines"] if ln["type"] == "adjustment"]
    assert Decimal(line["amount"]) == expected and "ACME-2026-10" in line["description"]
    assert line["attribution"]["users"]["bob"]["amount"]
    assert Decimal(nov["total"]) == sum(Decimal(ln["amount"]) for ln in nov["lines"])


def test_less_to_pay_after_finalization_is_a_credit_note(billing, clock, acme):
    # a negotiated price cut backdated into October (an operator correction)
    with billing.session() as s:
        _core_hours(s, "acme", "alice", 400, datetime(2026, 10, 20), "a1", clock.now())
    clock.set(datetime(2026, 11, 5))
    billing.close(OCT)
    with billing.session() as s:
        from fedhub.billing.subscriptions import record_change

        record_change(
            s,
            "acme",
            "professional",
            {"overage": {"compute_hour": 0.2}},
            at=datetime(2026, 10, 16, 23),
        )  # the last change of a day wins
        # the re-rating is triggered by any usage recorded after finalization
        _core_hours(s, "acme", "alice", 0, datetime(2026, 10, 21), "touch", clock.now())
    billing.close(OCT)
    with billing.session() as s:
        [note] = s.scalars(select(CreditNote)).all()
        assert note.total > 0 and note.number == "CN-ACME-0001"
        inv = get_invoice(s, "acme", OCT)
        assert inv.status == "finalized"


def test_finalized_invoices_cannot_be_edited(billing, clock, acme):
    clock.set(datetime(2026, 11, 5))
    billing.close(OCT)
    with billing.session() as s:
        inv = get_invoice(s, "acme", OCT)
        inv.total = Decimal("0.01")
        with pytest.raises(ImmutableInvoice):
            s.flush()
        s.rollback()
    for statement in (
        "UPDATE fedhub_billing_invoices SET total = '1'",
        "UPDATE fedhub_billing_invoice_lines SET amount = '0'",
        "DELETE FROM fedhub_billing_invoice_lines",
    ):
        with pytest.raises((IntegrityError, DBAPIError)):
            with billing.session() as s:
                s.execute(text(statement))


def test_manual_credit_note_is_bounded_by_the_invoice(billing, clock, acme):
    clock.set(datetime(2026, 11, 1, 1))
    [draft] = billing.close(OCT)
    with billing.session() as s:
        with pytest.raises(Conflict):
            issue_credit_note(s, draft["invoice"], "5", "goodwill", now=clock.now())
    clock.set(datetime(2026, 11, 5))
    [final] = billing.close(OCT)
    total = Decimal(final["total"])
    with billing.session() as s:
        note = issue_credit_note(s, final["invoice"], "5", "goodwill", now=clock.now())
        assert note.total == Decimal("5.00")
        with pytest.raises(InvalidRequest):
            issue_credit_note(s, final["invoice"], str(total), "too much", now=clock.now())


def test_budget_alerts_fire_once_at_80_and_100_percent(billing, clock, acme, tmp_path):
    from fedhub.billing.budgets import set_budget

    clock.set(datetime(2026, 11, 2))
    with billing.session() as s:
        set_budget(s, "acme", "100", now=clock.now())
    # professional base for November is 499: over budget from day one
    fired = billing.check_budgets()
    assert [a["threshold"] for a in fired] == [80, 100]
    assert billing.check_budgets() == []
    spooled = [
        json.loads(line)
        for f in (tmp_path / "spool").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    alerts = [e for e in spooled if e["action"] == "billing.budget_alert"]
    assert sorted(e["details"]["threshold"] for e in alerts) == [80, 100]
    assert all(e["tenant"] == "acme" for e in alerts)


@pytest.mark.parametrize(
    "thresholds",
    [[[True], {"a": 1}], [80, "100"], [True], 80, "80", {"80": 1}, [0], [1001]],
)
def test_budget_thresholds_of_any_json_shape_are_a_400(billing, clock, acme, thresholds):
    """Found by schemathesis: a list holding lists or objects was sorted before it was
    checked (a 500); every shape that is not whole percentages is the 400 naming the rule."""
    from fedhub.billing.budgets import set_budget

    with billing.session() as s, pytest.raises(InvalidRequest, match="whole percentages"):
        set_budget(s, "acme", "100", thresholds, now=clock.now())
