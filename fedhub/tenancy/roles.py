"""Tenants as JupyterHub groups, and what a tenant admin may do in the hub itself.

A tenant is the JupyterHub group ``tenant-<slug>``. A tenant admin gets a
JupyterHub role whose scopes are filtered to that group, so the hub itself
(not fedhub code) refuses them anything outside their tenant. What each fedhub
role may do in fedhub's own services is in :mod:`fedhub.tenancy.scopes`.
"""

from __future__ import annotations

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
