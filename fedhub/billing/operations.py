"""Billing runs over many tenants: the scheduled close and the budget checks.

Each tenant is closed in its own transaction, so one tenant's problem (a
tier that no longer exists, usage rating cannot price, a bug) is logged, audited
(``billing.close_failed``) and returned as an error result; the others still close.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from fedhub import events
from fedhub.billing import budgets
from fedhub.billing.clock import Clock, get_clock
from fedhub.billing.invoices import close_period
from fedhub.billing.models import DRAFT, Budget, Invoice
from fedhub.billing.periods import Period, containing
from fedhub.billing.settings import BillingSettings
from fedhub.db import session_scope
from fedhub.errors import FedhubError, InvalidRequest
from fedhub.tenancy.plans import Subscription
from fedhub.tiers import TierCatalog, load_tiers

log = logging.getLogger("fedhub.billing")


@dataclass
class Billing:
    """What billing code needs: the database, the price book, the settings and the clock."""

    db_url: str | None = None
    catalog: TierCatalog = field(default_factory=load_tiers)
    settings: BillingSettings = field(default_factory=BillingSettings)
    clock: Clock = field(default_factory=get_clock)

    def session(self):
        return session_scope(self.db_url)

    def tenants(self) -> list[str]:
        """Every tenant with a subscription history (a deleted tenant's last month too)."""
        with self.session() as s:
            return sorted(set(s.scalars(select(Subscription.tenant).distinct())))

    def close(
        self, period: Period | None = None, tenants: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Close ``period`` (default: the month before now, plus older drafts) per tenant."""
        now = self.clock.now()
        if period is not None and now < period.end:
            raise InvalidRequest(
                f"period {period} is still open; it can be closed from {period.end:%Y-%m-%d} UTC"
            )
        results = []
        for tenant in tenants or self.tenants():
            results += self._close_tenant(tenant, period, now)
        return results

    def _close_tenant(self, tenant: str, period: Period | None, now) -> list[dict[str, Any]]:
        """Close one tenant's periods, each in its own transaction; failures are results.

        Nothing one tenant's data does (a quantity rating cannot price, a tier that no
        longer exists, a bug) may stop the close of the tenants after it: the failure is
        logged, emitted as ``billing.close_failed`` and returned with an ``error``.
        """
        results: list[dict[str, Any]] = []
        try:
            periods = {period} if period else {containing(now).previous()}
            if period is None:
                with self.session() as s:
                    for start in s.scalars(
                        select(Invoice.period_start).where(
                            Invoice.tenant == tenant, Invoice.status == DRAFT
                        )
                    ):
                        if containing(start).end <= now:
                            periods.add(containing(start))
        except Exception as e:
            return [self._close_failed(tenant, period, e)]
        for p in sorted(periods):
            try:
                with self.session() as s:
                    inv = close_period(
                        s, tenant, p, catalog=self.catalog, settings=self.settings, now=now
                    )
                    if inv is None:
                        continue
                    results.append(
                        {
                            "tenant": tenant,
                            "period": p.name,
                            "invoice": inv.id,
                            "number": inv.number,
                            "status": inv.status,
                            "total": str(inv.total),
                        }
                    )
            except Exception as e:  # reported below; the next tenant still closes
                results.append(self._close_failed(tenant, p, e))
        return results

    def _close_failed(self, tenant: str, period: Period | None, e: Exception) -> dict[str, Any]:
        name = period.name if period else "-"
        if isinstance(e, FedhubError):
            message = e.message
            log.error("Cannot close %s for tenant %s: %s", name, tenant, message)
        else:  # a bug or a database error: the traceback goes to the log, not the report
            message = f"internal error ({type(e).__name__}); see the billing log"
            log.exception("Cannot close %s for tenant %s", name, tenant)
        try:
            events.emit(
                "billing.close_failed",
                tenant=tenant,
                actor="fedhub-billing",
                target=f"invoice:{tenant}:{name}",
                result="error",
                severity="error",
                details={"period": name, "error": message},
            )
        except Exception:  # the audit spool being unwritable must not stop the close
            log.exception("Could not emit billing.close_failed for tenant %s", tenant)
        return {"tenant": tenant, "period": name, "error": message}

    def check_budgets(self, tenants: list[str] | None = None) -> list[dict[str, Any]]:
        """Check every budget; emit ``billing.budget_alert`` for each newly crossed threshold."""
        now = self.clock.now()
        with self.session() as s:
            with_budget = list(s.scalars(select(Budget.tenant)))
        fired = []
        for tenant in with_budget:
            if tenants is not None and tenant not in tenants:
                continue
            with self.session() as s:
                alerts = budgets.check_budget(s, tenant, self.catalog, now=now)
            budgets.emit_alerts(alerts)  # after the commit: an alert is never emitted twice
            fired += alerts
        return fired
