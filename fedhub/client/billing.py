"""Usage and cost of a billing period, from the billing service, as the caller sees them.

The service decides what the caller may see: a tenant admin or analyst gets the whole
tenant (every meter, each user's cost), a member only their own share, and nobody another
tenant's. The dashboards and the bundled reports read through these functions, so a
report scheduled by its owner shows exactly what the owner could see in a notebook.

    from fedhub.client import billing
    billing.usage()                  # this month
    billing.costs(period="2026-10")  # each user's share of October
"""

from __future__ import annotations

from typing import Any

from . import request

__all__ = ["usage", "costs", "period_params"]


def period_params(tenant: str | None = None, period: str | None = None) -> dict[str, str]:
    """The query of the billing API: ``tenant`` (platform admins) and ``period`` (``YYYY-MM``)."""
    return {k: v for k, v in {"tenant": tenant, "period": period}.items() if v}


def usage(tenant: str | None = None, period: str | None = None) -> dict[str, Any]:
    """Each meter's usage, what the plan includes and its amount; admins also get ``by_user``.

    A member's answer has ``meters`` (their own usage) and ``cost`` instead.
    """
    return request("GET", "api/v1/usage", service="billing", params=period_params(tenant, period))


def costs(tenant: str | None = None, period: str | None = None) -> dict[str, Any]:
    """Chargeback: each user's share of the period (``basis``: ``estimate`` or the invoice's)."""
    return request("GET", "api/v1/costs", service="billing", params=period_params(tenant, period))
