"""What every fedhub authenticator shares: users belong to tenants, with roles.

Subclasses (the local one, the OIDC one) only prove *who* the user is; this
mixin decides whether that user may come in (a member of an active tenant, or a
platform admin) and what they get: their tenant's group, their role's
JupyterHub roles, the admin flag for platform admins. It also owns the tenant
mirror (start-up, after logins, and whenever the tenancy revision changes).

Leaving (deleted and removed users, suspended tenants) and the periodic mirror are the
:class:`~fedhub.extensions.hub.departures.DeparturesMixin` it is built on.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from contextlib import contextmanager
from functools import cached_property, partial

from tornado import web
from traitlets import Bool, Float, Unicode, default, observe
from traitlets.config import LoggingConfigurable

from fedhub import db as fedhub_db
from fedhub import events
from fedhub.addresses import client_ip
from fedhub.config import Fedhub
from fedhub.db.base import Base as FedhubBase
from fedhub.errors import ConfigError
from fedhub.extensions.hub import offboarding, pages, rate_limit, session_guard
from fedhub.extensions.hub.departures import DeparturesMixin
from fedhub.extensions.hub.mirror import TenantMirror, departed_users, desired_state
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import Role, TenantStatus
from fedhub.tenancy.roles import group_name, tenant_admin_role
from fedhub.tenancy.store import TenantStore, UserInfo


def client_info(handler) -> dict:
    """Source IP and user agent of a request, for audit events."""
    if handler is None:
        return {}
    return {
        "source_ip": client_ip(handler.request),
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
    with fedhub_db.transaction(session):
        yield session


def _default_role(name: str) -> dict:
    from jupyterhub.roles import get_default_roles

    return next(dict(r) for r in get_default_roles() if r["name"] == name)


class TenantAuthenticatorMixin(DeparturesMixin, LoggingConfigurable):
    """Tenant membership, roles and the hub mirror for any JupyterHub Authenticator."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        pages.add_template_path(self.parent)  # the pages get_handlers adds render by name
        self._departing: set[str] = set()  # hub users to retire (offboarding.py)
        self._suspended_users: set[str] = set()  # members of suspended tenants
        # username -> membership as of the tenancy revision the mirror last saw (_standing)
        self._standing_cache: dict[str, UserInfo] = {}

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
        help="""Deprecated since the one configuration file: set ``c.Fedhub.tiers_file`` in
        ``fedhub_config.py``, which the hub and every service read. Still honoured by the hub
        (with a warning), but the services never see it.""",
    )

    @observe("tiers_file")
    def _tiers_file_deprecated(self, change):
        if change.new:
            self.log.warning(
                "TenantAuthenticatorMixin.tiers_file is deprecated: set c.Fedhub.tiers_file in "
                "fedhub_config.py, so the hub and every service (billing!) use the same tiers"
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

    home_dir_template = Unicode(
        config=True,
        help="""Home folder of a hub user (``{username}`` is replaced), archived when
        the user is deleted or removed so that a user who comes back under the same
        name starts empty. Defaults to the spawner's own ``home_dir_template``
        (``UnixAccountSpawner``, ``SimpleLocalProcessSpawner``); empty means homes
        are not archived (container backends keep theirs in volumes).

            c.TenantAuthenticatorMixin.home_dir_template = "/srv/fedhub/homes/{username}"
        """,
    )

    @default("home_dir_template")
    def _default_home_dir_template(self):
        config = self.parent.config if self.parent is not None else self.config
        for cls in ("UnixAccountSpawner", "SimpleLocalProcessSpawner"):
            if cls in config and "home_dir_template" in config[cls]:
                return config[cls].home_dir_template
        return ""

    archive_dir = Unicode(
        config=True,
        help="""Where deleted users' homes are moved (private to the hub's account).
        Default: ``$FEDHUB_STATE_DIR/archive/homes``.

            c.TenantAuthenticatorMixin.archive_dir = "/srv/fedhub/archive/homes"
        """,
    )

    @default("archive_dir")
    def _default_archive_dir(self):
        return offboarding.default_archive_dir(os.environ.get("FEDHUB_STATE_DIR", ".fedhub"))

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
            # c.Fedhub.tiers_file, named once for the hub and every service
            settings = Fedhub(parent=self)
            if self.tiers_file:
                settings.tiers_file = self.tiers_file
            tiers = settings.apply()
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
        rate_limit.install(self)  # counts and limits tenants' hub API calls (rate_limit.py)
        if self.audit_hub_requests and self.parent is not None:
            from fedhub.audit.hub_hooks import log_request

            # read later, when the hub builds its tornado settings
            self.parent.tornado_settings.setdefault("log_function", log_request)
        if self.upgrade_db and not getattr(self, "_upgraded", False):
            fedhub_db.upgrade(self.db_url)
            self._upgraded = True
        state = desired_state(self.store)
        if orm.Role.find(self.parent.db, "user") is not None:
            self._departing |= departed_users(self.parent.db, self.store)
            self._suspended_users = self.mirror.sync(state).suspended_users
            self._start_mirror_loop()
        return state.role_specs()

    def get_handlers(self, app):
        from fedhub.extensions.hub import branding_api, keys_api, sessions, tenancy_api
        from fedhub.extensions.hub.hub_api import USER_API_PATTERN, TenantUserAPIHandler

        # before the hub's own handlers: this one refuses renames (hub_api.py)
        return [
            (USER_API_PATTERN, TenantUserAPIHandler),
            *keys_api.handlers(),  # service accounts and their API keys (docs/access.md)
            *sessions.install(self),  # session rows, lifetimes, /hub/fedhub/sessions
            *branding_api.install(self),  # tenants' branding, its logo, the pages' variable
            *tenancy_api.install(self),  # members, invitations, teams, requests, consoles
            *super().get_handlers(app),
        ]

    async def delete_user(self, user):
        """``DELETE /hub/api/users/<name>``: the user leaves fedhub for good.

        JupyterHub has stopped the default server; the named ones stop here.
        The membership and password go, the Unix account is removed and the
        home archived; the hub then deletes its user row and the tokens with it.
        """
        # the hub's handler deletes this user next: the mirror must not do it too
        user.fedhub_deleting = True
        try:
            await self.retire_user(user, remove_membership=True, how="hub_api")
        except BaseException:
            user.fedhub_deleting = False  # the mirror finishes it (see _finish_departures)
            raise
        result = super().delete_user(user)
        if inspect.isawaitable(result):
            await result

    @default("auth_refresh_age")
    def _default_auth_refresh_age(self):
        # standing (membership, suspension) is re-checked as often as the mirror runs
        return max(1, round(self.mirror_interval or 5))

    @default("auth_refresh_strict")
    def _default_auth_refresh_strict(self):
        # a refused refresh must end token requests too, not only browser sessions
        return True

    async def refresh_user(self, user, handler=None, **kwargs):
        """Fail closed on every hub request: no membership, or a suspended tenant, no access.

        With ``auth_refresh_strict`` a refused refresh makes a token request
        anonymous (403) and ends a browser session (JupyterHub asks for a new
        login, which is refused with the reason). The one exception: a
        suspended tenant's token may still ask the hub who it belongs to
        (``GET /hub/api/user``), so fedhub's services can answer with the
        suspension themselves and let its tenant admin read invoices.
        """
        info = self._standing(user.name)
        reason = self.standing_problem(user.name, info)
        if reason is not None and info is not None and self._identity_lookup(handler):
            # a suspended tenant's token asking who it is: allowed, but not
            # counted as a refresh (JupyterHub records the time right after this
            # returns), so the next hub request is checked again
            asyncio.get_running_loop().call_soon(setattr, user, "_auth_refreshed", None)
            reason = None
        if reason is not None:
            self.log.warning("Refusing hub access to %s: %s", user.name, reason)
            return False
        result = super().refresh_user(user, handler, **kwargs)
        result = (await result) if inspect.isawaitable(result) else result
        if result is False and handler is not None and not self._session_of(user, handler):
            # stale identity-provider tokens (OIDC auth state) on an API request:
            # JupyterHub's lenient default, not fedhub's strict one
            return True
        return result

    @staticmethod
    def _session_of(user, handler) -> bool:
        """A browser session of ``user`` itself (which a refused refresh can log out)."""
        return getattr(handler, "_jupyterhub_user", None) is user and not getattr(
            handler, "_token_authenticated", False
        )

    def _standing(self, username: str) -> UserInfo | None:
        """The user's membership as of the tenancy revision the periodic mirror last saw.

        Read once per user and revision while the mirror runs: every change of a tenant or
        membership bumps the revision, and when the mirror sees it move it empties this
        cache and makes every hub user's standing due again (``_forget_standing``), so a
        suspension or removal still reaches the hub within one mirror interval, as with a
        read per refresh. Only a good standing is kept: a refused user (no membership, a
        suspended tenant) is read again at every refresh, so a resumed tenant is back as
        soon as the database says so. Without the periodic mirror (``mirror_interval = 0``)
        nothing would empty the cache: every refresh reads the database then.
        """
        cached = self._standing_cache.get(username)
        if cached is not None:
            return cached
        info = self.store.user(username)
        mirrored = getattr(self, "_mirror_job", None) is not None
        if mirrored and info is not None and self.standing_problem(username, info) is None:
            self._standing_cache[username] = info
        return info

    def _forget_standing(self) -> None:
        """The tenancy changed: re-read every user's standing at their next hub request.

        Every membership is read again in one statement (a few milliseconds for thousands of
        users), so a refresh does not read the database even for a user's first request.
        """
        self._load_standing()
        for user in list(self.parent.users.values()):
            user._auth_refreshed = None  # JupyterHub's refresh_auth then calls refresh_user

    def _load_standing(self) -> None:
        self._standing_cache = {
            name: info
            for name, info in self.store.users().items()
            if self.standing_problem(name, info) is None
        }

    def standing_problem(self, username: str, info: UserInfo | None) -> str | None:
        """Why ``username`` (whose membership is ``info``) may not use the hub now, or None."""
        if info is None:
            return f"{username} is not a member of any fedhub tenant"
        if info.tenant_status == TenantStatus.SUSPENDED and not info.is_platform_admin:
            return f"organisation '{info.tenant}' is suspended"
        return None

    def _identity_lookup(self, handler) -> bool:
        from jupyterhub.utils import url_path_join

        if handler is None:
            return False
        prefix = getattr(self.parent, "hub_prefix", "/hub/")
        return handler.request.method == "GET" and handler.request.path == url_path_join(
            prefix, "api/user"
        )

    def check_allowed(self, username, authentication=None):
        info = self.store.user(username)
        return info is not None

    def tenant_auth_model(self, username: str, handler=None) -> dict:
        """The auth model for a fedhub user; refuses users of suspended tenants."""
        info = self.store.user(username)
        if info is None:
            return None
        if info.role == Role.SERVICE_ACCOUNT:
            self._refuse_login(
                info,
                handler,
                "service_account",
                "This is a service account: it has no login. Use one of its API keys "
                "(docs/access.md).",
            )
        if info.tenant_status == TenantStatus.SUSPENDED and not info.is_platform_admin:
            tenant = self.store.get_tenant(info.tenant)
            self._refuse_login(
                info,
                handler,
                "tenant_suspended",
                f"Your organisation '{tenant.name}' is suspended, so you cannot log in. "
                "Contact your organisation's administrator or the platform team.",
            )
        return {
            "name": username,
            "admin": info.is_platform_admin,
            "groups": self.groups_for(info),
            "roles": self.roles_for(info),
        }

    def _refuse_login(self, info: UserInfo, handler, reason: str, message: str):
        """A login refused after the password (or the identity provider) said yes."""
        events.emit(
            "auth.login_refused",
            tenant=info.tenant,
            actor=info.username,
            target=info.username,
            result="denied",
            severity="warning",
            details={"reason": reason},
            **client_info(handler),
        )
        raise web.HTTPError(403, message)

    def groups_for(self, info: UserInfo) -> list[str]:
        return [group_name(info.tenant)] if info.tenant else []

    def roles_for(self, info: UserInfo) -> list[dict]:
        """The user's hub roles: JupyterHub's ``user``, their fedhub role's custom scopes
        (:mod:`fedhub.tenancy.scopes`), and a tenant admin's or platform admin's hub powers."""
        roles = [self._hub_role("user"), fedhub_scopes.hub_role(info.role, info.tenant)]
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
