"""fedhub's permissions as JupyterHub custom scopes, and the role definitions that grant them.

Each permission a fedhub service checks is the JupyterHub custom scope
``custom:fedhub:<area>:<action>`` (JupyterHub >= 3, ``c.JupyterHub.custom_scopes``).
A user gets them through a hub role per (fedhub role, tenant), ``fedhub-<role>-<slug>``,
whose scopes are filtered to the tenant's group (``...!group=tenant-<slug>``); platform
admins get ``fedhub-platform-admin`` with every scope unfiltered.

JupyterHub only carries the filter of a custom scope: it never applies it to anything, but
it does intersect it. A token's scopes (as ``GET /hub/api/user`` reports them to a
service) are the token's requested scopes intersected with its owner's, so a token asked
for with ``custom:fedhub:usage:read`` by a member of ``acme`` holds
``custom:fedhub:usage:read!group=tenant-acme``, and a token asked for with fewer scopes
holds fewer. The services read the filter themselves (:func:`granted`): a scope counts
unfiltered, or filtered to the caller's own tenant group. Platform-only permissions count
only unfiltered, so no tenant role can carry them, even by mistake.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fedhub.errors import InvalidRequest
from fedhub.tenancy.models import Role
from fedhub.tenancy.roles import group_name

SCOPE_PREFIX = "custom:fedhub:"
HUB_ROLE_PREFIX = "fedhub-"
PLATFORM_ADMIN_HUB_ROLE = "fedhub-platform-admin"


@dataclass(frozen=True)
class Permission:
    """One thing a fedhub service may allow: ``<area>:<action>``."""

    name: str
    description: str
    #: only ever granted unfiltered, to platform admins (a filtered copy grants nothing)
    platform_only: bool = False

    @property
    def scope(self) -> str:
        return f"{SCOPE_PREFIX}{self.name}"


# The one definition: the services check these names, the hub gets them as custom scopes,
# docs/access.md prints this table (tests/access/test_scopes.py checks it does).
PERMISSIONS: tuple[Permission, ...] = (
    Permission("tenants:manage", "Create, change and suspend any tenant.", platform_only=True),
    Permission("tenant:read", "Read the tenant's name, tier and status."),
    Permission("tenant:admin", "Set the tenant's budget and send its usage events."),
    Permission("usage:read", "Read the tenant's usage, costs and quota (members: their own)."),
    Permission("usage:read-all", "See every user's share of the tenant's usage and costs."),
    Permission("billing:read", "Read the tenant's invoices, credit notes and budget."),
    Permission("billing:manage", "Issue credit notes; read revenue.", platform_only=True),
    Permission("audit:read", "Read, verify and export the tenant's audit log."),
    Permission(
        "audit:read-if-tier",
        "Read the tenant's audit log if its tier lets analysts (features.analyst_audit_read).",
    ),
    Permission("audit:read-all", "Read every audit chain, the platform's too.", platform_only=True),
    Permission("experiments:run", "Submit and cancel federated-learning experiments."),
    Permission("experiments:read", "Read experiments, their rounds, events and weights."),
    Permission("scheduler:run", "Schedule notebooks, run them now, pause, cancel, delete."),
    Permission("scheduler:read", "Read scheduled jobs, their runs and the runs' outputs."),
    Permission("marketplace:publish", "Publish to the marketplace."),
    Permission("marketplace:buy", "Buy, upgrade and refund marketplace licences."),
    Permission("servers:start", "Start notebook servers."),
)
BY_NAME = {p.name: p for p in PERMISSIONS}
ALL_SCOPES: tuple[str, ...] = tuple(p.scope for p in PERMISSIONS)

# The role definitions: which permissions each fedhub role holds.
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.PLATFORM_ADMIN: frozenset(BY_NAME),
    Role.TENANT_ADMIN: frozenset(
        {
            "tenant:read",
            "tenant:admin",
            "usage:read",
            "usage:read-all",
            "billing:read",
            "audit:read",
            "experiments:run",
            "experiments:read",
            "scheduler:run",
            "scheduler:read",
            "marketplace:publish",
            "marketplace:buy",
            "servers:start",
        }
    ),
    Role.MEMBER: frozenset(
        {"tenant:read", "usage:read", "experiments:run", "experiments:read", "servers:start"}
        | {"scheduler:run", "scheduler:read"}
    ),
    Role.ANALYST: frozenset(
        {"tenant:read", "usage:read", "experiments:read", "audit:read-if-tier", "scheduler:read"}
    ),
    # a pipeline's account: its keys get a subset of these (a usage exporter reads the
    # whole tenant's usage, so usage:read-all is here, for a tenant admin to grant or not)
    Role.SERVICE_ACCOUNT: frozenset(
        {"tenant:read", "usage:read", "usage:read-all", "experiments:run", "experiments:read"}
    ),
}


def scope(permission: str) -> str:
    """``usage:read`` -> ``custom:fedhub:usage:read`` (the permission must exist)."""
    return BY_NAME[permission].scope


def custom_scopes() -> dict[str, dict]:
    """``c.JupyterHub.custom_scopes``: every fedhub scope with its description."""
    return {p.scope: {"description": p.description} for p in PERMISSIONS}


def allows(role: Role | str, permission: str) -> bool:
    """Whether ``role``'s definition holds ``permission`` (whatever a token narrowed)."""
    return permission in ROLE_PERMISSIONS[Role(role)]


def tenant_filter(slug: str) -> str:
    return f"!group={group_name(slug)}"


def role_scopes(role: Role | str, slug: str | None) -> list[str]:
    """The hub scopes of ``role`` in tenant ``slug``: filtered to its group, except a platform
    admin's (no tenant), which are unfiltered."""
    role = Role(role)
    names = sorted(ROLE_PERMISSIONS[role])
    if role == Role.PLATFORM_ADMIN:
        return [scope(n) for n in names]
    if slug is None:
        raise ValueError(f"a {role} belongs to a tenant")
    return [scope(n) + tenant_filter(slug) for n in names if not BY_NAME[n].platform_only]


def hub_role_name(role: Role | str, slug: str | None) -> str:
    role = Role(role)
    if role == Role.PLATFORM_ADMIN:
        return PLATFORM_ADMIN_HUB_ROLE
    return f"{HUB_ROLE_PREFIX}{role}-{slug}"


def hub_role(role: Role | str, slug: str | None) -> dict:
    """The JupyterHub role spec (``load_roles`` format) that grants ``role``'s fedhub scopes."""
    role = Role(role)
    where = "every tenant" if role == Role.PLATFORM_ADMIN else f"tenant {slug}"
    return {
        "name": hub_role_name(role, slug),
        "description": f"fedhub permissions of a {role} in {where}",
        "scopes": role_scopes(role, slug),
    }


def granted(permission: str, held: Iterable[str], tenant: str | None) -> bool:
    """Whether a token holding the scopes ``held`` allows ``permission`` in ``tenant``.

    The scope counts unfiltered, or filtered to the caller's own tenant group; a
    platform-only permission counts only unfiltered. Any other filter (another group,
    a user) grants nothing here: fail closed.
    """
    wanted = scope(permission)
    held = set(held)
    if wanted in held:
        return True
    if BY_NAME[permission].platform_only or tenant is None:
        return False
    return wanted + tenant_filter(tenant) in held


def fedhub_scopes(held: Iterable[str]) -> frozenset[str]:
    """The fedhub scopes (with their filters) among a token's scopes."""
    return frozenset(s for s in held if s.startswith(SCOPE_PREFIX))


def key_scopes(requested: Iterable[str], slug: str) -> list[str]:
    """The hub scopes of a service account's new key in ``slug``, from what was asked.

    Each requested scope is a fedhub scope (``custom:fedhub:usage:read``, with or without
    the tenant's own filter) that the service-account role holds; anything else is refused
    with a 400 naming it. The result is filtered to the tenant's group.
    """
    allowed = ROLE_PERMISSIONS[Role.SERVICE_ACCOUNT]
    result = []
    requested = list(requested)
    if not requested:
        raise InvalidRequest("a key needs at least one scope, e.g. custom:fedhub:usage:read")
    for raw in requested:
        name = raw.removesuffix(tenant_filter(slug))
        permission = name.removeprefix(SCOPE_PREFIX)
        if not name.startswith(SCOPE_PREFIX) or "!" in name or permission not in allowed:
            raise InvalidRequest(
                f"scope {raw!r} cannot be given to a service account's key; allowed: "
                + ", ".join(scope(p) for p in sorted(allowed))
            )
        result.append(scope(permission) + tenant_filter(slug))
    return sorted(set(result))
