"""fedhub roles, their JupyterHub scopes, and the permission matrix of the services.

A tenant is the JupyterHub group ``tenant-<slug>``. A tenant admin gets a
JupyterHub role whose scopes are filtered to that group, so the hub itself
(not fedhub code) refuses them anything outside their tenant.
"""

from __future__ import annotations

from fedhub.tenancy.models import Role

GROUP_PREFIX = "tenant-"
TENANT_ADMIN_ROLE_PREFIX = "tenant-admin-"

# What a tenant admin may do in JupyterHub, filtered to their tenant's group.
TENANT_ADMIN_SCOPES = (
    "list:users",
    "read:users",
    "admin:users",
    "read:users:activity",
    "read:servers",
    "servers",
    "admin:servers",
    "read:groups",
    "list:groups",
)

# What each role may do in fedhub's own services (billing, audit, experiments,
# marketplace). Services check these; JupyterHub checks the scopes above.
PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.PLATFORM_ADMIN: frozenset(
        {
            "tenants:manage",
            "tenant:read",
            "tenant:admin",
            "usage:read",
            "usage:read-all",
            "billing:read",
            "billing:manage",
            "audit:read",
            "audit:read-all",
            "experiments:run",
            "experiments:read",
            "marketplace:publish",
            "servers:start",
        }
    ),
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
            "marketplace:publish",
            "servers:start",
        }
    ),
    Role.MEMBER: frozenset(
        {"tenant:read", "usage:read", "experiments:run", "experiments:read", "servers:start"}
    ),
    Role.ANALYST: frozenset(
        {"tenant:read", "usage:read", "experiments:read", "audit:read-if-tier"}
    ),
    Role.SERVICE_ACCOUNT: frozenset({"tenant:read", "experiments:run", "experiments:read"}),
}


def group_name(slug: str) -> str:
    return f"{GROUP_PREFIX}{slug}"


def slug_from_group(name: str) -> str | None:
    return name[len(GROUP_PREFIX) :] if name.startswith(GROUP_PREFIX) else None


def tenant_admin_role(slug: str) -> dict:
    """The JupyterHub role spec (``load_roles`` format) of a tenant's admins."""
    group = group_name(slug)
    return {
        "name": f"{TENANT_ADMIN_ROLE_PREFIX}{slug}",
        "description": f"Administer the users and servers of tenant {slug}",
        "scopes": [f"{scope}!group={group}" for scope in TENANT_ADMIN_SCOPES],
    }


def can(role: Role | str, permission: str) -> bool:
    return permission in PERMISSIONS[Role(role)]
