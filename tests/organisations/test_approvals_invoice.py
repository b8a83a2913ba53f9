"""Must-show 2, the invoice part: a tier change asked for by a tenant admin and approved
mid-month by a platform admin (through :class:`fedhub.approvals.ApprovalStore`, as the API
and the console do) makes the next invoice prorate by UTC day: the starter days, then the
professional days, from the day of the approval (not of the asking). Exact amounts, on
SQLite and PostgreSQL, with billing's test clock."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from fedhub.approvals import ApprovalStore
from fedhub.billing.clock import FixedClock, set_clock
from fedhub.billing.invoices import get_invoice, invoice_document
from fedhub.billing.operations import Billing
from fedhub.billing.periods import parse
from fedhub.billing.settings import BillingSettings
from fedhub.db import rls
from fedhub.tenancy.store import TenantStore

OCT = parse("2026-10")


@pytest.fixture
def clock():
    c = FixedClock(datetime(2026, 10, 1))
    set_clock(c)
    yield c
    set_clock(None)


def test_a_tier_change_approved_mid_month_is_prorated_on_the_next_invoice(
    migrated_db, clock, monkeypatch, tmp_path
):
    monkeypatch.setenv("FEDHUB_STATE_DIR", str(tmp_path))  # events spool here
    billing = Billing(migrated_db, settings=BillingSettings(grace_days=3), clock=clock)
    tenants = TenantStore(migrated_db, billing.catalog)
    requests = ApprovalStore(tenants)
    with rls.platform():
        tenants.create_tenant("acme", tier="starter")  # 1 Oct
        tenants.add_user("acme-admin", "acme", "tenant-admin")
        tenants.add_user("ops", None, "platform-admin")
    clock.set(datetime(2026, 10, 9, 14, 0))  # asked on the 9th ...
    with rls.tenant("acme"):
        asked = requests.create("tier_change", tenant="acme", payload={"tier": "professional"},
                                by=tenants.user("acme-admin"))  # fmt: skip
    clock.set(datetime(2026, 10, 16, 9, 30))  # ... approved on the 16th
    with rls.platform():
        assert requests.approve(asked.id, tenants.user("ops")).state == "approved"
        clock.set(datetime(2026, 11, 4, 0, 1))  # October closed, grace over
        [invoice] = billing.close(OCT)
        assert invoice["status"] == "finalized"
        with billing.session() as s:
            doc = invoice_document(s, get_invoice(s, "acme", OCT))
    base = [(line["description"], Decimal(line["amount"])) for line in doc["lines"]
            if line["type"] == "base"]  # fmt: skip
    # starter 1-15 Oct (15 days of 31) at 99, professional 16-31 Oct (16 days) at 499
    assert base == [
        ("Starter plan, 2026-10-01 to 2026-10-15 (15 of 31 days)", Decimal("47.90")),
        ("Professional plan, 2026-10-16 to 2026-10-31 (16 of 31 days)", Decimal("257.55")),
    ]
    assert Decimal("47.90") == (Decimal(99) * 15 / 31).quantize(Decimal("0.01"))
    assert Decimal("257.55") == (Decimal(499) * 16 / 31).quantize(Decimal("0.01"))
    assert Decimal(doc["total"]) == Decimal("305.45")  # no usage: the two base lines
