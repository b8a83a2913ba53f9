"""A federation's events go into the audit chain of every tenant they concern.

One event per tenant (``events.emit`` appends to one chain: the event's tenant), so each
member's chain holds the whole lifecycle it took part in. The acting user is named only in
their own tenant's chain; the other chains read which tenant acted (``details.by``), so a
federation does not hand one organisation's user names to another.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fedhub import events

#: every action this package emits (docs/federations.md lists them)
ACTIONS = (
    "federation.created",
    "federation.invited",
    "federation.joined",
    "federation.declined",
    "federation.dataset_bound",
    "federation.started",
    "federation.cancel_requested",
    "federation.round_completed",
    "federation.finished",
    "federation.failed",
)


def emit(
    action: str,
    fed_id: str,
    tenants: Iterable[str],
    *,
    by: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
    result: str = "success",
    severity: str = "info",
    **client: Any,
) -> list[dict]:
    """``action`` on federation ``fed_id`` into each of ``tenants``' chains.

    ``by`` is the tenant that acted (None: the service itself), ``actor`` its user,
    ``client`` the request's ``source_ip``/``user_agent`` (in the actor's chain only).
    """
    assert action in ACTIONS, action
    out = []
    for tenant in dict.fromkeys(tenants):  # each chain once, in order
        own = by is not None and tenant == by
        out.append(
            events.emit(
                action,
                tenant=tenant,
                actor=actor if own else None,
                target=f"federation:{fed_id}",
                result=result,
                severity=severity,
                details={**(details or {}), **({"by": by} if by else {})},
                **(client if own else {}),
            )
        )
    return out
