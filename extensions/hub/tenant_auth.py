"""What every fedhub authenticator shares: users belong to tenants, with roles.

Subclasses (the local one, the OIDC one) only prove *who* the user is; this
mixin decides whether that user may come in (a member of an active tenant, or a
platform admin) and what they get: their tenant's group, their role's
JupyterHub roles, the admin flag for platform admins. It also owns the tenant
mirror (start-up, after logins, and whenever the tenancy revision changes).
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from functools import cached_property, partial

from tornado import web
from traitlets import Bool, Float, Unicode, default
from traitlets.config import LoggingConfigurable

from fedhub import db as fedhub_db
from fedhub import events
from fedhub.db.base import Base as FedhubBase
from fedhub.errors import ConfigError
from fedhub.extensions.hub import session_guard
from fedhub.extensions.hub.mirror import TenantMirror, desired_state
from fedhub.tenancy.models import Role, TenantStatus
from fedhub.tenancy.roles import group_name, tenant_admin_role
from fedhub.tenancy.store import TenantStore, UserInfo
from fedhub.tiers import load_tiers


def client_info(handler) -> dict:
    """Source IP and user agent of a request, for audit events."""
    if handler is None:
        return {}
    return {
        "source_ip": handler.request.remote_ip,
        "user_agent": handler.request.headers.get("User-Agent"),
    }


@contextmanager
def shared_session(app):
    """The hub's own database session as a fedhub transaction.

    In the hub process, fedhub's tables are read and written on the hub's
    session: a second connection to the same SQLite file would wait on the
    hub's own pending writes (and block the event loop while it waits).
    """
    session = app.db
    # other processes (the CLI, services) change these rows: never trust a
    # cached copy of fedhub's objects from an earlier transaction
    for obj in list(session.identity_map.values()):
        if isinstance(obj, FedhubBase):
            session.expire(obj)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _default_role(name: str) -> dict:
    from jupyterhub.roles import get_default_roles

    return next(dict(r) for r in get_default_roles() if r["name"] == name)


class TenantAuthenticatorMixin(LoggingConfigurable):
    """Tenant membership, roles and the hub mirror for any JupyterHub Authenticator."""

    db_url = Unicode(
        "",
        config=True,
        help="""Database URL of fedhub's tables.

        Empty (the default) means the hub's own database (``JupyterHub.db_url``),
        so one backup holds everything. Example::

            c.TenantAuthenticatorMixin.db_url = "postgresql+psycopg://fedhub@db/fedhub"
        """,
    )

    @default("db_url")
    def _default_db_url(self):
        parent_url = getattr(self.parent, "db_url", "") if self.parent is not None else ""
        return parent_url or fedhub_db.database_url()

    tiers_file = Unicode(
        "",
        config=True,
        help="""Path of the tiers file; empty means ``$FEDHUB_TIERS`` or the bundled
        ``hub_config/tiers.yaml``. Validated at start-up: an error stops the hub.

            c.TenantAuthenticatorMixin.tiers_file = "/etc/fedhub/tiers.yaml"
        """,
    )

    upgrade_db = Bool(
        True,
        config=True,
        help="Apply fedhub's database migrations at hub start (like ``jupyterhub --upgrade-db``).",
    )

    audit_hub_requests = Bool(
        True,
        config=True,
        help="""Record what only the hub sees as audit events: API token creation
        and revocation, state-changing hub API calls, and refusals (403). Installs
        ``fedhub.audit.hub_hooks.log_request`` as the hub's request log function
        (it keeps JupyterHub's own request logging).""",
    )

    mirror_interval = Float(
        5.0,
        config=True,
        help="""Seconds between checks for tenancy changes made outside the hub
        (the ``fedhub`` CLI, services). A change is mirrored into hub groups and
        roles within this time. 0 disables the periodic check.""",
    )

    check_session_thread = session_guard.check_session_thread_option()

    # Tenancy decides groups and roles, so the hub's own group/role assignment
    # APIs must not fight the mirror.
    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    @default("manage_roles")
    def _default_manage_roles(self):
        return True

    @default("reset_managed_roles_on_startup")
    def _default_reset_managed_roles(self):
        return True

    @cached_property
    def store(self) -> TenantStore:
        try:
            tiers = load_tiers(self.tiers_file or None)
        except ConfigError as e:
            # a configuration error is not a bug: one clear line, no traceback
            self.log.critical("fedhub cannot start: %s", e.message)
            raise SystemExit(1) from None
        hub_url = getattr(self.parent, "db_url", None)
        if hub_url and hub_url == self.db_url:
            fedhub_db.share_session(self.db_url, partial(shared_session, self.parent))
        return TenantStore(self.db_url, tiers)

    @cached_property
    def mirror(self) -> TenantMirror:
        return TenantMirror(self.parent.db, self.store, self.log)

    # -- JupyterHub hooks --------------------------------------------------------

    async def load_managed_roles(self):
        """Called by the hub at start-up: migrate, validate tiers, mirror, return roles."""
        # The hub calls this twice at start-up: before its default roles exist
        # (only the role specs are wanted then) and again to assign them.
        from jupyterhub import orm

        session_guard.install(getattr(self.parent, "db", None), self.check_session_thread, self.log)
        if self.audit_hub_requests and self.parent is not None:
            from fedhub.audit.hub_hooks import log_request

            # read later, when the hub builds its tornado settings
            self.parent.tornado_settings.setdefault("log_function", log_request)
        if self.upgrade_db and not getattr(self, "_upgraded", False):
            fedhub_db.upgrade(self.db_url)
            self._upgraded = True
        state = desired_state(self.store)
        if orm.Role.find(self.parent.db, "user") is not None:
            self.mirror.sync(state)
            self._start_mirror_loop()
        return state.role_specs()

    def check_allowed(self, username, authentication=None):
        info = self.store.user(username)
        return info is not None

    def tenant_auth_model(self, username: str, handler=None) -> dict:
        """The auth model for a fedhub user; refuses users of suspended tenants."""
        info = self.store.user(username)
        if info is None:
            return None
        if info.tenant_status == TenantStatus.SUSPENDED and not info.is_platform_admin:
            tenant = self.store.get_tenant(info.tenant)
            events.emit(
                "auth.login_refused",
                tenant=info.tenant,
                actor=username,
                target=username,
                result="denied",
                severity="warning",
                details={"reason": "tenant_suspended"},
                **client_info(handler),
            )
            raise web.HTTPError(
                403,
                f"Your organisation '{tenant.name}' is suspended, so you cannot log in. "
                "Contact your organisation's administrator or the platform team.",
            )
        return {
            "name": username,
            "admin": info.is_platform_admin,
            "groups": self.groups_for(info),
            "roles": self.roles_for(info),
        }

    def groups_for(self, info: UserInfo) -> list[str]:
        return [group_name(info.tenant)] if info.tenant else []

    def roles_for(self, info: UserInfo) -> list[dict]:
        roles = [self._hub_role("user")]
        if info.role == Role.TENANT_ADMIN and info.tenant:
            roles.append(tenant_admin_role(info.tenant))
        if info.is_platform_admin:
            roles.append(self._hub_role("admin"))
        return roles

    def _hub_role(self, name: str) -> dict:
        """A built-in role as the hub has it now (with ``extra_user_scopes``), so
        that re-asserting it at login changes nothing."""
        from jupyterhub import orm

        role = orm.Role.find(self.parent.db, name) if self.parent is not None else None
        if role is None:
            return _default_role(name)
        return {"name": role.name, "description": role.description, "scopes": list(role.scopes)}

    # -- the periodic mirror ---------------------------------------------------

    def _start_mirror_loop(self) -> None:
        if self.mirror_interval <= 0 or getattr(self, "_mirror_task", None):
            return
        self._mirror_task = asyncio.get_running_loop().create_task(self._mirror_loop())

    async def _mirror_loop(self) -> None:
        seen = self.store.revision()
        while True:
            await asyncio.sleep(self.mirror_interval)
            try:
                revision = self.store.revision()
                if revision != seen:
                    self.mirror.sync()
                    seen = revision
            except Exception:
                # keep mirroring: a database hiccup must not stop the loop for good
                self.log.exception("fedhub mirror failed; retrying in %ss", self.mirror_interval)
