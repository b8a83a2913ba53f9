"""``team_quota``: a team's lead asks for other team quotas; the tenant's admins approve.

Payload ``{"team": "<name>", "quotas": {"servers"?, "compute_hours"?, "experiments"?}}``
(a quota given as null removes it). Asked by the team's lead (or a tenant admin);
decided by the tenant's admins (platform admins may too). The quotas are checked when
asked and again when approved: they must still be carved out of the tenant's limits
(:func:`fedhub.tenancy.teams.check_quotas`) or the approval is refused with a 409 and the
request stays pending. One pending ``team_quota`` per team.
"""

from __future__ import annotations

from sqlalchemy import select

from fedhub import events
from fedhub.approvals.models import ApprovalRequest, RequestState
from fedhub.approvals.registry import Context, Kind, current_store, register
from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.tenancy import teams
from fedhub.tenancy.models import Role


def validate(payload: dict, ctx: Context) -> dict:
    if set(payload) != {"team", "quotas"} or not isinstance(payload["quotas"], dict):
        raise InvalidRequest('a team_quota payload is {"team": "<name>", "quotas": {...}}')
    tenant = ctx.tenant
    name = teams.validate_name(payload["team"])
    try:
        team = teams.get_team(ctx.session, tenant.slug, name)
    except NotFound:
        raise InvalidRequest(f"{tenant.slug} has no team {name!r}") from None
    who = ctx.requester
    if who is not None and not (
        who.is_platform_admin or who.role == Role.TENANT_ADMIN or team.lead == who.username
    ):
        raise Forbidden(f"only the lead of team {name} or a tenant admin may ask for its quotas")
    row = ctx.session.scalar(
        select(teams.Team).where(teams.Team.tenant_id == tenant.id, teams.Team.name == name)
    )
    merged = {**team.quotas, **payload["quotas"]}
    teams.check_quotas(ctx.session, tenant, ctx.tenants.tiers, merged, team_id=row.id)
    pending = ctx.session.scalars(
        select(ApprovalRequest.payload).where(
            ApprovalRequest.kind == "team_quota",
            ApprovalRequest.tenant_id == tenant.id,
            ApprovalRequest.state == RequestState.PENDING,
        )
    ).all()
    if any((p or {}).get("team") == name for p in pending):
        raise Conflict(f"team {name} has a quota request pending already")
    return {"team": name, "quotas": payload["quotas"], "from": team.quotas}


def apply(session, request: ApprovalRequest, actor: str | None):
    slug, name = request.tenant.slug, request.payload["team"]
    tiers = current_store().tenants.tiers
    try:
        view = teams.set_quota(session, slug, name, tiers, request.payload["quotas"])
    except (InvalidRequest, NotFound) as e:
        # the tenant's limits or the other teams changed since it was asked: not applicable
        raise Conflict(f"the team quota cannot be applied now: {e.message}") from None

    def audit() -> None:
        events.emit(
            "team.updated",
            tenant=slug,
            actor=actor,
            target=f"{slug}/{name}",
            details={"quotas": view.quotas, "request": request.id},
        )

    return audit


def summary(request: ApprovalRequest) -> str:
    p = request.payload or {}
    wanted = ", ".join(f"{k} {v}" for k, v in (p.get("quotas") or {}).items())
    return f"team {p.get('team', '?')} quotas: {wanted}"


TEAM_QUOTA = register(
    Kind("team_quota", approver="tenant", validate=validate, apply=apply, summary=summary)
)
