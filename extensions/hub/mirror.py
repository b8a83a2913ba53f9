"""Mirror fedhub's tenants into JupyterHub groups and roles.

Each tenant becomes the group ``tenant-<slug>`` (its ``properties`` carry the
tier and status), each of its teams the group ``team-<slug>-<team>`` (properties: the
tenant, the team, its lead and quotas; :mod:`fedhub.tenancy.teams`) and its tenant admins get the role ``tenant-admin-<slug>``,
whose scopes are filtered to that group. Every user also gets the hub role that
carries their fedhub role's custom scopes (``fedhub-<role>-<slug>``, or
``fedhub-platform-admin``; :mod:`fedhub.tenancy.scopes`); such a role exists
while someone holds it. The mirror runs inside the hub process,
on the hub's own database session, so the hub sees every change at once:
at start-up, after each login, and whenever the tenancy revision changes.
It is idempotent: running it twice changes nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jupyterhub import orm, roles

from fedhub.tenancy import scopes, teams
from fedhub.tenancy.models import Role, TenantStatus
from fedhub.tenancy.roles import (
    GROUP_PREFIX,
    TENANT_ADMIN_ROLE_PREFIX,
    group_name,
    tenant_admin_role,
)
from fedhub.tenancy.store import TenantStore

MANAGED_PROPERTY = "fedhub_tenant"
TEAM_PROPERTY = "fedhub_team"
#: the groups the mirror owns (each also carries MANAGED_PROPERTY)
MANAGED_GROUP_PREFIXES = (GROUP_PREFIX, teams.GROUP_PREFIX)
#: the roles the mirror owns: a tenant's admins' hub role, and the fedhub scope roles
MANAGED_ROLE_PREFIXES = (TENANT_ADMIN_ROLE_PREFIX, scopes.HUB_ROLE_PREFIX)


@dataclass
class DesiredState:
    groups: dict[str, dict] = field(default_factory=dict)  # name -> properties
    members: dict[str, set[str]] = field(default_factory=dict)  # group -> usernames
    roles: dict[str, dict] = field(default_factory=dict)  # role name -> spec
    role_users: dict[str, set[str]] = field(default_factory=dict)  # role name -> usernames
    platform_admins: set[str] = field(default_factory=set)
    suspended_users: set[str] = field(default_factory=set)  # members of suspended tenants

    def role_specs(self) -> list[dict]:
        """Role specs in ``load_roles`` format, with their user assignments."""
        check_custom_scopes()
        specs = [
            dict(spec, users=sorted(self.role_users[name])) for name, spec in self.roles.items()
        ]
        specs.append({"name": "admin", "users": sorted(self.platform_admins)})
        return specs


def check_custom_scopes() -> None:
    """Stop the hub with one clear line if fedhub's scopes are not defined in it.

    fedhub's roles carry them; JupyterHub would refuse the roles with a traceback.
    """
    from jupyterhub.scopes import scope_definitions

    missing = [s for s in scopes.ALL_SCOPES if s not in scope_definitions]
    if missing:
        logging.getLogger("fedhub.mirror").critical(
            "fedhub cannot start: jupyterhub_config.py must define fedhub's scopes in "
            "c.JupyterHub.custom_scopes (missing: %s; see docs/access.md)",
            ", ".join(missing),
        )
        raise SystemExit(1)


def desired_state(store: TenantStore) -> DesiredState:
    state = DesiredState()
    for tenant in store.list_tenants():
        name = group_name(tenant.slug)
        state.groups[name] = {
            MANAGED_PROPERTY: tenant.slug,
            "name": tenant.name,
            "tier": tenant.tier,
            "status": str(tenant.status),
        }
        state.members[name] = {m.username for m in tenant.memberships}
        spec = tenant_admin_role(tenant.slug)
        state.roles[spec["name"]] = spec
        state.role_users[spec["name"]] = {
            m.username
            for m in tenant.memberships
            if m.role == Role.TENANT_ADMIN and tenant.status == TenantStatus.ACTIVE
        }
        if tenant.status == TenantStatus.SUSPENDED:
            state.suspended_users |= state.members[name]
    _add_team_groups(state, store)
    memberships = store.memberships()
    state.platform_admins = {m.username for m in memberships if m.role == Role.PLATFORM_ADMIN}
    _add_scope_roles(state, memberships)
    return state


def _add_team_groups(state: DesiredState, store: TenantStore) -> None:
    """Each team's group ``team-<slug>-<team>``, with the team's current members."""
    with store.session() as s:
        found = teams.all_teams(s)
    for team in found:
        state.groups[team.group] = {
            MANAGED_PROPERTY: team.tenant,
            TEAM_PROPERTY: team.name,
            "lead": team.lead,
            "quotas": team.quotas,
        }
        state.members[team.group] = set(team.members)


def _add_scope_roles(state: DesiredState, memberships) -> None:
    """Each user's ``fedhub-<role>-<slug>`` (``fedhub-platform-admin``, which always exists).

    They stay while a tenant is suspended: the hub refuses its users anyway, and the
    services refuse them too, except a tenant admin reading invoices.
    """
    platform = scopes.hub_role(Role.PLATFORM_ADMIN, None)
    state.roles[platform["name"]] = platform
    state.role_users[platform["name"]] = set()
    for m in memberships:
        if m.tenant is None and m.role != Role.PLATFORM_ADMIN:
            continue  # no tenant, no tenant role (the store does not make such users)
        spec = scopes.hub_role(m.role, m.tenant.slug if m.tenant else None)
        state.roles.setdefault(spec["name"], spec)
        state.role_users.setdefault(spec["name"], set()).add(m.username)


def departed_users(db, store: TenantStore) -> set[str]:
    """Hub users who are not (or no longer) the fedhub user of that name.

    Either their membership is gone while the hub still has them in a tenant's
    group (removed with the CLI, or their tenant deleted), or their membership
    is newer than the hub's user row: the name was removed and given again, and
    the hub user, with its tokens and servers, belongs to the earlier person.
    Call it before :meth:`TenantMirror.sync`, which empties the groups.
    """
    memberships = {m.username: m for m in store.memberships()}
    gone = set()
    for group in db.query(orm.Group).filter(orm.Group.name.like(f"{GROUP_PREFIX}%")):
        if (group.properties or {}).get(MANAGED_PROPERTY):
            gone |= {u.name for u in group.users if u.name not in memberships}
    for user in db.query(orm.User).filter(orm.User.name.in_(list(memberships))):
        m = memberships[user.name]
        if user.created is not None and m.created_at is not None and m.created_at > user.created:
            gone.add(user.name)
    return gone


class TenantMirror:
    """Apply the desired tenancy state to the hub's database."""

    def __init__(self, db, store: TenantStore, log: logging.Logger | None = None):
        self.db = db
        self.store = store
        self.log = log or logging.getLogger(__name__)

    def _user(self, name: str) -> orm.User:
        user = orm.User.find(self.db, name)
        if user is None:
            self.log.info("fedhub mirror: creating hub user %s", name)
            user = orm.User(name=name)
            self.db.add(user)
            self.db.flush()
            roles.assign_default_roles(self.db, user)
        return user

    def sync(self, state: DesiredState | None = None) -> DesiredState:
        state = state or desired_state(self.store)
        self._sync_groups(state)
        self._sync_roles(state)
        self.db.commit()
        return state

    def _sync_groups(self, state: DesiredState) -> None:
        from sqlalchemy import or_

        existing = {
            g.name: g
            for g in self.db.query(orm.Group).filter(
                or_(*(orm.Group.name.like(f"{p}%") for p in MANAGED_GROUP_PREFIXES))
            )
        }
        for name, properties in state.groups.items():
            group = existing.get(name)
            if group is None:
                self.log.info("fedhub mirror: creating group %s", name)
                group = orm.Group(name=name)
                self.db.add(group)
            if dict(group.properties or {}) != properties:
                group.properties = properties
            wanted = state.members[name]
            if {u.name for u in group.users} != wanted:
                group.users = [self._user(u) for u in sorted(wanted)]
        for name, group in existing.items():
            if name not in state.groups and (group.properties or {}).get(MANAGED_PROPERTY):
                self.log.info("fedhub mirror: deleting group %s (tenant or team deleted)", name)
                self.db.delete(group)

    def _sync_roles(self, state: DesiredState) -> None:
        association = orm._role_associations["user"]
        managed = {role.name: role for role in self._managed_roles()}
        for name, spec in state.roles.items():
            role = managed.get(name)
            if role is None or sorted(role.scopes) != sorted(spec["scopes"]):
                role = roles.create_role(
                    self.db, dict(spec, managed_by_auth=True), commit=False, reset_to_defaults=False
                )
            wanted = state.role_users[name]
            if {u.name for u in role.users} != wanted:
                role.users = [self._user(u) for u in sorted(wanted)]
                self.db.flush()
                for row in self.db.query(association).filter(association.role_id == role.id):
                    row.managed_by_auth = True
        for name, role in managed.items():
            if name not in state.roles:
                self.log.info("fedhub mirror: deleting role %s (nobody holds it)", name)
                self.db.delete(role)
        self._sync_platform_admins(state)

    def _managed_roles(self) -> list[orm.Role]:
        """The hub roles the mirror owns, with their users, in one query."""
        from sqlalchemy import or_
        from sqlalchemy.orm import selectinload

        return list(
            self.db.query(orm.Role)
            .options(selectinload(orm.Role.users))
            .filter(or_(*(orm.Role.name.like(f"{p}%") for p in MANAGED_ROLE_PREFIXES)))
        )

    def _sync_platform_admins(self, state: DesiredState) -> None:
        admin_role = orm.Role.find(self.db, "admin")
        for user in self.db.query(orm.User).filter(orm.User.admin == True):  # noqa: E712
            if user.name not in state.platform_admins and self.store.user(user.name) is not None:
                user.admin = False
                roles.strip_role(self.db, user, "admin")
        for name in state.platform_admins:
            user = self._user(name)
            if not user.admin or admin_role not in user.roles:
                user.admin = True
                roles.grant_role(self.db, user, "admin")
