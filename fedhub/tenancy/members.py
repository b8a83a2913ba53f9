"""A tenant's members as its admins manage them (the tenancy API, docs/organisations.md).

The rules a tenant admin's change keeps, whoever asks (the hub's tenancy API; the
operator's ``fedhub user set-role`` is not bound by them, it may make platform admins):

- a member's role becomes one of :data:`TENANT_ROLES`; never a platform admin (an
  operator's decision), and a service account stays one (``fedhub service-account``);
- the tenant keeps at least one tenant admin: demoting or removing the last one is a
  409 (promote someone else first).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.tenancy import teams
from fedhub.tenancy.models import Membership, Role, Tenant

#: the roles a tenant admin may give
TENANT_ROLES = (Role.TENANT_ADMIN, Role.MEMBER, Role.ANALYST)


def parse_role(role: object) -> Role:
    try:
        return Role(role)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise InvalidRequest(f"unknown role {role!r:.40}: use one of {names}") from None


def _in_tenant(s: Session, username: str, tenant: str) -> Membership:
    m = s.scalar(
        select(Membership)
        .join(Tenant, Membership.tenant_id == Tenant.id)
        .where(Membership.username == username, Tenant.slug == tenant)
    )
    if m is None:
        raise NotFound(f"no member {username!r} in tenant {tenant!r}")
    return m


def _admins(s: Session, tenant_id: int) -> int:
    return s.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.tenant_id == tenant_id, Membership.role == Role.TENANT_ADMIN)
    )


def check_role_change(s: Session, m: Membership, role: Role, tenant: str) -> None:
    """Refuse a tenant admin's role change that breaks a rule above."""
    if m.tenant is None or m.tenant.slug != tenant:
        raise NotFound(f"no member {m.username!r} in tenant {tenant!r}")
    if role == Role.PLATFORM_ADMIN:
        raise Forbidden("a tenant's members cannot be made platform admins here")
    if role not in TENANT_ROLES or m.role == Role.SERVICE_ACCOUNT:
        names = ", ".join(r.value for r in TENANT_ROLES)
        raise InvalidRequest(
            f"a person's role in a tenant is one of {names}; service accounts keep theirs"
        )
    if m.role == Role.TENANT_ADMIN and role != Role.TENANT_ADMIN and _admins(s, m.tenant_id) <= 1:
        raise Conflict(
            f"{m.username} is the last tenant admin of {tenant}: make someone else "
            "tenant admin first"
        )


def check_removable(store, tenant: str, username: str) -> None:
    """404 for someone not in the tenant, 409 for its last tenant admin."""
    with store.session() as s:
        m = _in_tenant(s, username, tenant)
        if m.role == Role.TENANT_ADMIN and _admins(s, m.tenant_id) <= 1:
            raise Conflict(
                f"{username} is the last tenant admin of {tenant}: make someone else "
                "tenant admin first"
            )


def member_list(store, tenant: str, *, with_email: bool = True) -> list[dict]:
    """The tenant's members ``{username, email, role, teams}``, by username."""
    with store.session() as s:
        t = store._tenant(s, tenant)
        rows = s.execute(
            select(Membership.username, Membership.email, Membership.role)
            .where(Membership.tenant_id == t.id)
            .order_by(Membership.username)
        ).all()
        team_of = teams.teams_by_user(s, tenant)  # one team per user (teams.py)
    return [
        {
            "username": username,
            "email": email if with_email else None,
            "role": str(role),
            "teams": [team_of[username]] if username in team_of else [],
        }
        for username, email, role in rows
    ]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def tenant_json(tenant: Tenant) -> dict:
    """A tenant as the API shows it (``memberships`` loaded)."""
    return {
        "slug": tenant.slug,
        "name": tenant.name,
        "tier": tenant.tier,
        "status": str(tenant.status),
        "suspended_reason": tenant.suspended_reason,
        "members": len(tenant.memberships),
        "email_domains": list(tenant.allowed_email_domains or []),
        "signup_policy": str(tenant.signup_policy),
        "created_at": _iso(tenant.created_at),
    }
