"""The marketplace's remaining parts on SQLite and PostgreSQL: who may buy
(``marketplace:buy``), payout statements that close and are paid, datasets' schema and
default partition, and models checked at publish and loaded by ``install``."""

from __future__ import annotations

import pytest

from fedhub.errors import Forbidden
from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role

from .conftest import ALICE, BOB, DAVE, GINA, GLOBEX_ADMIN, listed

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
