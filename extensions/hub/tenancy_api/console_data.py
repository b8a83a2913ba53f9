"""What the two consoles show, read from the stores the API writes through.

Each function reads in one tenant's scope (``rls.tenant``) or the platform's
(``rls.platform``), on the hub's own session (the store's), on the event loop: these
are a handful of small queries per page. Numbers come from the functions billing and
the quotas use (:mod:`fedhub.billing.summary`, :func:`fedhub.metering.usage_rows`), so
the console shows what the invoice and the spawner will count.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from fedhub import metering
from fedhub.approvals.store import ApprovalStore
from fedhub.audit import AuditLog
from fedhub.audit.crypto import KeyRing
from fedhub.audit.query import recent_events
from fedhub.billing import budgets, summary
from fedhub.billing.invoices import by_team
from fedhub.billing.models import Invoice
from fedhub.billing.money import ZERO
from fedhub.billing.periods import containing
from fedhub.billing.rating import rate
from fedhub.db import rls
from fedhub.errors import NotFound
from fedhub.extensions.hub.tenancy_api.teams_api import rating_lines, team_usage
from fedhub.tenancy import branding, members, teams
from fedhub.tenancy.models import Role, Tenant
from fedhub.tenancy.store import TenantStore, UserInfo

#: how many audit events, and months of cost, a console shows
AUDIT_EVENTS = 20
COST_MONTHS = 6


def _audit_keys(config) -> KeyRing:
    """The audit directory's keys, read-only (the audit service makes them): who did what
    shows only where the hub may read them (``c.AuditLog.audit_dir``)."""
    return KeyRing(AuditLog(config=config).audit_dir, create=False)


def _events(s, slug: str | None, config) -> list[dict[str, Any]]:
    keys = _audit_keys(config)
    try:
        return recent_events(s, keys, slug, AUDIT_EVENTS)
    except OSError:  # the master key exists but this process may not read it
        return recent_events(s, None, slug, AUDIT_EVENTS)


def _tenant(s, slug: str) -> Tenant:
    tenant = s.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def tenant_console(
    store: TenantStore, slug: str, viewer: UserInfo, now: datetime, config=None
) -> dict:
    """Everything ``/hub/fedhub/console?tenant=<slug>`` shows, as plain values."""
    approvals = ApprovalStore(store)
    with rls.tenant(slug):
        with store.session() as s:
            tenant = _tenant(s, slug)
            tier = store.tiers.effective(tenant.tier, tenant.overrides)
            about = {
                "slug": tenant.slug,
                "name": tenant.name,
                "tier": tenant.tier,
                "tier_name": tier.display_name,
                "monthly_price": str(Decimal(str(tier.monthly_price))),
                "status": str(tenant.status),
                "suspended_reason": tenant.suspended_reason,
            }
            usage = metering.usage_rows(s, slug, tier, now)
            period = containing(now)
            rating = rate(s, slug, period, store.tiers, until=now)
            costs = summary.monthly_costs(s, slug, store.tiers, now=now, months=COST_MONTHS)
            budget = budgets.get_budget(s, slug)
            budget_view = None
            if budget is not None:
                budget_view = budgets.budget_document(s, budget, rating.total)
            team_list = _teams(s, slug, rating)
            look = branding.find(s, slug)
            events = _events(s, slug, config)
        member_list = members.member_list(store, slug)
        invitations = [i.to_json() for i in store.invitations(slug)]
        requests = [r.to_json() for r in approvals.list(viewer, tenant=slug)]
    return {
        "tenant": about,
        "tiers": sorted(store.tiers.tiers),
        "roles": [str(r) for r in Role if r != Role.PLATFORM_ADMIN],
        "quota_keys": dict(teams.QUOTA_KEYS),
        "members": member_list,
        "invitations": invitations,
        "teams": team_list,
        "requests": requests,
        "usage": usage,
        "usage_document": summary.usage_document(rating),
        "costs": costs,
        "budget": budget_view,
        "branding": look.to_json() if look is not None else None,
        "events": events,
    }


def _teams(s, slug: str, rating) -> list[dict]:
    """The tenant's teams with their usage now and their share of the month so far (the
    split the invoice's ``by_team`` will show)."""
    views = teams.list_teams(s, slug)
    team_of = {user: view.name for view in views for user in view.members}
    shares = by_team(rating_lines(rating), team_of)
    rows = []
    for view in views:
        row = view.to_json()
        row["usage"] = team_usage(s, slug, view.members)
        row["cost_this_month"] = shares.get(view.name, {}).get("amount", "0")
        rows.append(row)
    return rows


def platform_console(store: TenantStore, viewer: UserInfo, now: datetime, config=None) -> dict:
    """Everything ``/hub/fedhub/platform`` shows: every tenant, revenue, pending requests,
    the tiers and where they come from."""
    period = containing(now)
    last = period.previous()
    rows = []
    with rls.platform():
        with store.session() as s:
            tenants = list(s.scalars(select(Tenant).order_by(Tenant.slug)))
            invoiced = {
                inv.tenant: inv
                for inv in s.scalars(select(Invoice).where(Invoice.period_start == last.start))
            }
            for t in tenants:
                tier = store.tiers.effective(t.tier, t.overrides)
                estimate = rate(s, t.slug, period, store.tiers, until=now).total
                inv = invoiced.get(t.slug)
                rows.append(
                    {
                        "slug": t.slug,
                        "name": t.name,
                        "tier": t.tier,
                        "status": str(t.status),
                        "suspended_reason": t.suspended_reason,
                        "members": len(t.memberships),
                        "compute_hours": round(metering.compute_hours_used(s, t.slug, now), 2),
                        "compute_hours_allowed": tier.compute_hours_per_month,
                        "this_month": str(estimate),
                        "last_month": str(inv.total) if inv is not None else None,
                        "last_month_status": inv.status if inv is not None else None,
                    }
                )
            tenants_on = {}
            for t in tenants:
                tenants_on[t.tier] = tenants_on.get(t.tier, 0) + 1
            events = _events(s, None, config)
        pending = [r.to_json() for r in ApprovalStore(store).list(viewer, state="pending")]
    tiers = [
        {
            "name": name,
            "display_name": tier.display_name,
            "monthly_price": tier.monthly_price,
            "max_users": tier.max_users,
            "max_servers_per_tenant": tier.max_servers_per_tenant,
            "compute_hours_per_month": tier.compute_hours_per_month,
            "source": (
                f"database, version {store.tiers.versions[name]}"
                if name in store.tiers.versions
                else "tiers file"
            ),
            "tenants": tenants_on.get(name, 0),
        }
        for name, tier in sorted(store.tiers.tiers.items())
    ]
    this_month = sum((Decimal(r["this_month"]) for r in rows), ZERO)
    last_month = sum((Decimal(r["last_month"] or 0) for r in rows), ZERO)
    return {
        "tenants": rows,
        "tiers": tiers,
        "pending": pending,
        "events": events,
        "period": period.name,
        "last_period": last.name,
        "revenue": {"this_month": str(this_month), "last_month": str(last_month)},
    }
