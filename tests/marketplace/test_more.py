"""The marketplace's remaining parts on SQLite and PostgreSQL: who may buy
(``marketplace:buy``), payout statements that close and are paid, datasets' schema and
default partition, and models checked at publish and loaded by ``install``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from fedhub.billing.money import cents
from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.marketplace.payouts import month_totals
from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role

from .conftest import (
    ACME_ADMIN,
    ADMIN,
    ALICE,
    BOB,
    DAVE,
    GINA,
    GLOBEX_ADMIN,
    INITECH_ADMIN,
    listed,
)

# -- who may buy ----------------------------------------------------------------------------


def test_buying_is_the_marketplace_buy_permission_of_tenant_admins(market):
    assert [r for r in Role if scopes.allows(r, "marketplace:buy")] == [
        Role.PLATFORM_ADMIN, Role.TENANT_ADMIN,
    ]  # fmt: skip
    listed(market)
    for actor in (BOB, GINA, ALICE, DAVE):  # members and analysts, of the buyer and publisher
        with pytest.raises(Forbidden, match="marketplace:buy"):
            market.purchase(actor, "fedprox-variant", "k")
    purchase, created = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "k")
    assert created
    for actor in (BOB, GINA):
        with pytest.raises(Forbidden, match="may not change"):
            market.upgrade(actor, "fedprox-variant")
        with pytest.raises(Forbidden, match="refund"):
            market.refund(actor, purchase["id"])
    assert market.upgrade(GLOBEX_ADMIN, "fedprox-variant")["state"] == "active"
    assert market.refund(GLOBEX_ADMIN, purchase["id"])["state"] == "refunded"


# -- payout statements: open, closed, paid ------------------------------------------------


def test_statements_close_after_their_month_and_a_platform_admin_pays_them(market, clock):
    listed(market)
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "a")  # 10 November
    [nov] = market.payouts(ACME_ADMIN)
    share = cents(Decimal("49.99") * market.settings.share / 100)
    assert (nov["period"], nov["state"], nov["amount"]) == ("2026-11", "open", str(share))
    assert nov["platform_fee"] == str(Decimal("49.99") - share)
    with market.session(None) as s:  # billing's revenue report shows the platform's fee
        assert month_totals(s, datetime(2026, 11, 1)) == {
            "gross": "49.99", "publishers": str(share), "platform_fee": str(Decimal("49.99") - share),
        }  # fmt: skip
    assert market.close_statements() == 0  # November is not over
    with pytest.raises(Conflict, match="not over"):
        market.mark_paid(ADMIN, nov["id"], "SEPA-1")
    clock.set(datetime(2026, 12, 1, 0, 30))
    market.purchase(INITECH_ADMIN, "fedprox-variant", "b")  # December's, on a new statement
    assert market.close_statements() == 1
    assert market.close_statements() == 0
    dec, nov = market.payouts(ACME_ADMIN)
    assert (dec["period"], dec["state"]) == ("2026-12", "open")
    assert (nov["state"], nov["amount"], nov["closed_at"]) == (
        "closed", str(share), "2026-12-01T00:30:00",
    )  # fmt: skip
    for actor in (GLOBEX_ADMIN, ACME_ADMIN, BOB):  # the buyer, the publisher: not theirs to pay
        with pytest.raises(Forbidden, match="platform admins"):
            market.mark_paid(actor, nov["id"], "SEPA-1")
    with pytest.raises(InvalidRequest, match="reference"):
        market.mark_paid(ADMIN, nov["id"], " ")
    paid = market.mark_paid(ADMIN, nov["id"], "SEPA-2026-11-acme")
    assert (paid["state"], paid["paid_reference"], paid["paid_by"]) == (
        "paid", "SEPA-2026-11-acme", "admin",
    )  # fmt: skip
    with pytest.raises(Conflict, match="paid"):
        market.mark_paid(ADMIN, nov["id"], "again")
    # the platform admin sees every publisher's statements, and filters by state
    assert [(s["tenant"], s["state"]) for s in market.payouts(ADMIN)] == [
        ("acme", "open"), ("acme", "paid"),
    ]  # fmt: skip
    assert [s["id"] for s in market.payouts(ADMIN, state="paid")] == [nov["id"]]
    with pytest.raises(InvalidRequest):
        market.payouts(ADMIN, state="lost")


def test_a_refund_of_a_closed_month_is_taken_back_on_the_open_statement(market, clock):
    listed(market)
    clock.set(datetime(2026, 11, 28, 9, 0))
    purchase, _ = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "late")
    clock.set(datetime(2026, 12, 3, 9, 0))  # within the refund window; November closed
    assert market.close_statements() == 1
    market.refund(GLOBEX_ADMIN, purchase["id"], "wrong tool")  # the invoice is still a draft
    dec, nov = market.payouts(ACME_ADMIN)
    share = cents(Decimal("49.99") * market.settings.share / 100)
    assert (nov["state"], nov["amount"], len(nov["lines"])) == ("closed", str(share), 1)
    assert (dec["period"], dec["state"], dec["amount"]) == ("2026-12", "open", str(-share))
    [line] = dec["lines"]
    assert (line["kind"], line["period"], line["statement"]) == ("refund", "2026-11", dec["id"])
    clock.set(datetime(2027, 1, 1, 1, 0))
    assert market.close_statements() == 1
    assert market.payouts(ACME_ADMIN)[0]["amount"] == str(-share)  # frozen as it was


def test_another_tenants_statements_are_not_found(market, clock):
    listed(market)
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "a")
    [st] = market.payouts(ACME_ADMIN)
    assert market.statement(ACME_ADMIN, st["id"])["period"] == "2026-11"
    assert market.statement(ADMIN, st["id"])["tenant"] == "acme"
    for actor in (GLOBEX_ADMIN, BOB, INITECH_ADMIN):
        with pytest.raises(NotFound):
            market.statement(actor, st["id"])
        with pytest.raises(NotFound):
            market.payouts(actor, tenant="acme")
    assert market.payouts(GLOBEX_ADMIN) == []
    with pytest.raises(Forbidden):  # acme's member: not a publisher
        market.statement(ALICE, st["id"])
    with pytest.raises(NotFound):
        market.statement(ACME_ADMIN, 10**6)
