"""The marketplace's logic, no HTTP: publish, review, delist, search, buy, refund, use, rate.

:class:`MarketStore` is what the service's handlers and the tests call. Each method takes the
:class:`MarketStore` is what the service's handlers and the tests call. Each method takes the
:class:`Actor` (who asks: name, tenant, fedhub role) and checks what that actor may do before
touching a row. Reads run in the actor's row-level-security scope (their tenant, or the
platform for platform admins); work that writes across tenants (a purchase writes the
buyer's purchase, entitlement and charge and the publisher's payout line; a review moves
the asset's rating) is one transaction of platform work, after the same checks.

Money is :class:`~decimal.Decimal` to the cent throughout: a sale of ``price`` charges the
buyer exactly ``price`` (a ``marketplace`` meter event, which billing turns into one invoice
line, :func:`fedhub.billing.rating.charge_lines`) and puts ``cents(price x share / 100)`` on
the publisher's payout statement for the month of the sale.

This module holds the store's plumbing (its session, the clock, which asset an actor may
see); its methods live in mixins by subject:

- :mod:`.catalogue`: publishing, versions, review, delisting, search and reading;
- :mod:`.purchases`: purchase, charge, renewals, refund, revoke, upgrade, entitlements and
  the check (and download) at each use;
- :mod:`.reviews`: reviews, and publishers' sales;
- :mod:`.payouts`: payout statements (open, closed, paid);
- :mod:`.shapes`: the JSON shapes; :mod:`.common`: :class:`Actor`, :func:`parse_ref`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.approvals.store import ApprovalStore
from fedhub.clock import get_clock
from fedhub.db import rls, session_scope
from fedhub.marketplace.catalogue import CatalogueMixin
from fedhub.marketplace.common import (
    KEY_RE,
    METER_KIND,
    PUBLISH_KIND,
    REF_RE,
    SOURCE,
    Actor,
    parse_ref,
)
from fedhub.marketplace.errors import AssetNotFound
from fedhub.marketplace.models import Asset, Entitlement, State
from fedhub.marketplace.payouts import PayoutMixin
from fedhub.marketplace.purchases import PurchaseMixin
from fedhub.marketplace.reviews import ReviewMixin, review_exists
from fedhub.marketplace.settings import MarketplaceSettings
from fedhub.marketplace.usage import UsageMixin
from fedhub.tenancy.store import TenantStore

__all__ = [
    "KEY_RE",
    "METER_KIND",
    "PUBLISH_KIND",
    "REF_RE",
    "SOURCE",
    "Actor",
    "MarketStore",
    "parse_ref",
    "review_exists",
]

log = logging.getLogger("fedhub.marketplace")


class MarketStore(CatalogueMixin, PurchaseMixin, ReviewMixin, PayoutMixin, UsageMixin):
    """The marketplace's store: the mixins' methods over one database (see the module)."""

    def __init__(
        self,
        db: str | None = None,
        tenants: TenantStore | None = None,
        settings: MarketplaceSettings | None = None,
    ):
        self.db = db
        self.tenants = tenants or TenantStore(db)
        self.settings = settings or MarketplaceSettings()
        self.approvals = ApprovalStore(self.tenants)

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def session(self, actor: Actor | None = None) -> Iterator[Session]:
        """A transaction in ``actor``'s scope (their tenant), or platform work (None)."""
        scope = (
            rls.platform() if actor is None or actor.tenant is None else rls.tenant(actor.tenant)
        )
        with scope, session_scope(self.db) as s:
            yield s

    def now(self) -> datetime:
        return get_clock().now()

    def _asset(self, s: Session, slug: str, actor: Actor | None) -> Asset:
        """The asset ``actor`` may see (listed, its own tenant's, or one it holds a licence
        for); anything else is answered as if it did not exist."""
        asset = s.scalar(select(Asset).where(Asset.slug == slug))
        if asset is None or not self._sees(s, asset, actor):
            raise AssetNotFound(f"no asset {slug!r}")
        return asset

    def _sees(self, s: Session, asset: Asset, actor: Actor | None) -> bool:
        if actor is None or actor.is_platform_admin or asset.state == State.LISTED:
            return True
        if asset.tenant == actor.tenant:
            return True
        held = s.scalar(
            select(Entitlement.id).where(
                Entitlement.asset_id == asset.id, Entitlement.tenant == actor.tenant
            )
        )
        return held is not None
