"""``tier_change``: a tenant admin asks for another tier; a platform admin approves.

Approving changes the tenant's tier in the same transaction
(:meth:`TenantStore.update_tenant_in`), which records the plan change billing prorates
by UTC day. One pending ``tier_change`` per tenant.
"""

from __future__ import annotations

from sqlalchemy import func, select

from fedhub.approvals.models import ApprovalRequest, RequestState
from fedhub.approvals.registry import Context, Kind, current_store, register
from fedhub.errors import ConfigError, Conflict, Forbidden, InvalidRequest
from fedhub.tenancy.models import Role


def validate(payload: dict, ctx: Context) -> dict:
    if ctx.requester is not None and not (
        ctx.requester.is_platform_admin or ctx.requester.role == Role.TENANT_ADMIN
    ):
        raise Forbidden("only a tenant admin may ask for a tier change")
    if set(payload) != {"tier"} or not isinstance(payload["tier"], str):
        raise InvalidRequest('a tier_change payload is {"tier": "<name>"}')
    tier, tenant = payload["tier"], ctx.tenant
    try:
        ctx.tenants.tiers.get(tier)
    except ConfigError:
        known = ", ".join(ctx.tenants.tiers.names())
        raise InvalidRequest(f"unknown tier {tier!r}: use one of {known}") from None
    if tier == tenant.tier:
        raise InvalidRequest(f"{tenant.slug} is on the {tier} tier already")
    pending = ctx.session.scalar(
        select(func.count())
        .select_from(ApprovalRequest)
        .where(
            ApprovalRequest.kind == "tier_change",
            ApprovalRequest.tenant_id == tenant.id,
            ApprovalRequest.state == RequestState.PENDING,
        )
    )
    if pending:
        raise Conflict(
            f"{tenant.slug} has a tier change pending already: withdraw it or wait for the decision"
        )
    return {"tier": tier, "from": tenant.tier}


def apply(session, request: ApprovalRequest, actor: str | None):
    tenants = current_store().tenants
    slug = request.tenant.slug
    _, changes = tenants.update_tenant_in(session, slug, tier=request.payload["tier"], actor=actor)
    return lambda: tenants.emit_tenant_updated(slug, changes, actor)


def summary(request: ApprovalRequest) -> str:
    p = request.payload or {}
    return f"tier change from {p.get('from', '?')} to {p.get('tier', '?')}"


TIER_CHANGE = register(
    Kind("tier_change", approver="platform", validate=validate, apply=apply, summary=summary)
)
