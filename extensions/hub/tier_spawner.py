"""``fedhub-tier``: the spawner that applies a tenant's tier to its users' servers.

``TierSpawner`` is a cooperative layer over a backend spawner class
(``c.TierSpawner.backend_class``, default ``SimpleLocalProcessSpawner``): when
JupyterHub instantiates it, it makes (once) a subclass ``Tier<Backend>`` with
``TierSpawner`` first in the MRO and returns an instance of that. So there is
one spawner object, the one the hub tracks, and every tier hook calls
``super()`` into the real backend: ``start``/``stop``/``poll``/state/progress
are the backend's own. ``c.TierSpawner.*`` and ``c.<Backend>.*`` both apply.
docs/quotas.md explains why this beats a wrapspawner-style delegate.

The hooks, in order of a spawn: ``options_form`` (the tier's profiles),
``options_from_form`` (no side effects), ``apply_user_options`` (validates the
profile), ``start`` (atomic reservation of every limit in
:mod:`fedhub.quotas`, profile mapped onto the backend, tier kernels, then the
backend's start), ``get_env``/``get_args``/``make_preexec_fn`` (environment,
kernel allow-list, local limits), ``run_post_stop_hook`` (last usage slice,
reservation freed). What the server gets (profile, team folder, kernels, environment,
arguments, local limits) is :class:`~fedhub.extensions.hub.spawner.server_setup.ServerSetupMixin`.
"""

from __future__ import annotations

import os
import sys
import time
from functools import cached_property
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner, Spawner, SpawnException
from jupyterhub.utils import maybe_future
from traitlets import Bool, Enum, Float, Type, Unicode, default
from traitlets.utils.importstring import import_item

from fedhub import events, quotas
from fedhub.extensions.hub.spawner import (
    kubernetes,
    limits,
    metrics,
    profiles,
    tenant_storage,
)
from fedhub.extensions.hub.spawner.reconciler import Reconciler
from fedhub.extensions.hub.spawner.server_setup import ServerSetupMixin
from fedhub.extensions.hub.tenant_auth import TenantAuthenticatorMixin

_classes: dict[type, type] = {}


def tier_spawner_class(backend: type) -> type:
    """The ``TierSpawner`` subclass layered over ``backend`` (made once per backend)."""
    if backend not in _classes:
        # KubeSpawner gets the Kubernetes layer in between (spawner/kubernetes.py)
        extra = (
            (kubernetes.KubernetesTierMixin,)
            if profiles.backend_kind(backend) == "kubernetes"
            else ()
        )
        _classes[backend] = type(
            f"Tier{backend.__name__}", (TierSpawner, *extra, backend), {"__module__": __name__}
        )
    return _classes[backend]


def _configured_backend(config) -> type:
    value = None
    if config is not None and config._has_section("TierSpawner"):
        value = config.TierSpawner.get("backend_class")
    if value is None:
        return SimpleLocalProcessSpawner
    return import_item(value) if isinstance(value, str) else value


class TierSpawner(ServerSetupMixin, Spawner):
    """Start a user's server within their tenant's tier."""

    def __new__(cls, *args, **kwargs):
        if cls is TierSpawner:
            cls = tier_spawner_class(_configured_backend(kwargs.get("config")))
        # explicit super: cls was just replaced by the layered subclass
        return super(TierSpawner, cls).__new__(cls, *args, **kwargs)  # noqa: UP008

    backend_class = Type(
        SimpleLocalProcessSpawner,
        klass=Spawner,
        config=True,
        help="""The spawner that really starts servers; the tier layer goes on top.

        The embedded default runs servers as local processes of the hub user.
        Production examples::

            c.TierSpawner.backend_class = "jupyterhub.spawner.LocalProcessSpawner"
            c.TierSpawner.backend_class = "kubespawner.KubeSpawner"
            c.TierSpawner.backend_class = "dockerspawner.DockerSpawner"
            c.TierSpawner.backend_class = "systemdspawner.SystemdSpawner"
        """,
    )

    reconcile_interval = Float(
        60.0,
        config=True,
        help="""Seconds between reconciler runs (metering, quota warnings, stopping
        over-budget/suspended tenants' servers, idle culling). Usage is exact at
        stop; while a server runs it is recorded at most this late. 0 disables.

            c.TierSpawner.reconcile_interval = 60
        """,
    )

    budget_grace_period = Float(
        300.0,
        config=True,
        help="""Seconds a tenant's servers keep running after it runs out of compute
        hours (users get a warning first), before they are stopped. A suspended tenant's
        servers stop at the next mirror run (docs/security.md); this grace is only a backstop there.

            c.TierSpawner.budget_grace_period = 900
        """,
    )

    cull_idle = Bool(
        True, config=True, help="Stop servers idle longer than the tier's idle_timeout_minutes."
    )

    idle_timeout_override = Float(
        0.0,
        config=True,
        help="Seconds of inactivity before culling for every tier; 0 uses each tier's idle_timeout_minutes.",
    )

    guarantee_fraction = Float(
        0.5,
        config=True,
        help="""Share of a profile's limits requested as guarantees on backends that
        have them (Kubernetes requests, Docker reservations).""",
    )

    memory_enforcement = Enum(
        ["auto", "cgroup", "rlimit", "none"],
        "auto",
        config=True,
        help="""How local-process servers get their memory limit: ``auto`` uses cgroup v2
        when writable, else ``RLIMIT_AS`` (per process: the server and each kernel
        separately). ``fedhub doctor`` shows what this machine supports.""",
    )

    storage_path_template = Unicode(
        config=True,
        help="""Path of a user's storage, measured (like ``du``) for the tier's storage_gb
        quota over all members of the tenant; ``{username}`` is replaced. Empty: not
        measured (for volumes the backend manages). Defaults to the home directory
        for local backends. Measured by :mod:`fedhub.storage`, the same code billing's
        daily storage sample uses: give billing the same value
        (``c.BillingSettings.storage_path_template`` or ``FEDHUB_STORAGE_PATH_TEMPLATE``).

            c.TierSpawner.storage_path_template = "/home/{username}"
        """,
    )

    @default("storage_path_template")
    def _default_storage_path(self):
        if self.has_trait("home_dir_template"):
            return self.home_dir_template
        if profiles.backend_kind(type(self)) == "local":
            return "/home/{username}"
        return ""

    storage_cache_seconds = Float(
        60.0,
        config=True,
        help="How long a tenant's measured storage is reused before re-measuring.",
    )

    install_kernels = Bool(
        config=True,
        help="""Copy the tier's kernel specs from ``kernels/`` into the server's data dir and
        allow only those. On by default for local backends; container images ship their own.""",
    )

    @default("install_kernels")
    def _default_install_kernels(self):
        return profiles.backend_kind(type(self)) == "local"

    kernel_python = Unicode(
        sys.executable, config=True, help="Interpreter that ``python`` in a kernel spec becomes."
    )

    # -- tenancy -------------------------------------------------------------

    @cached_property
    def store(self):
        auth = self.authenticator
        if isinstance(auth, TenantAuthenticatorMixin):
            return auth.store
        from fedhub.tenancy.store import TenantStore

        return TenantStore()

    def membership(self):
        return self.store.user(self.user.name)

    def tier_of(self, info):
        tenant = self.store.get_tenant(info.tenant)
        return self.store.effective_tier(tenant)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tier_profile: str | None = None
        self._reservation: quotas.Reservation | None = None
        self._cgroup: Path | None = None
        settings = getattr(self.user, "settings", None) or {}
        Reconciler.ensure_started(
            settings.get("app"),
            self.store,
            interval=self.reconcile_interval,
            grace=self.budget_grace_period,
            idle_timeout_override=self.idle_timeout_override,
            cull_idle=self.cull_idle,
            log=self.log,
        )

    # -- the spawn form --------------------------------------------------------

    @default("options_form")
    def _default_options_form(self):
        return lambda spawner: spawner.render_options_form()

    def render_options_form(self) -> str:
        info = self.membership()
        if info is None or not info.tenant:
            return ""
        tier = self.tier_of(info)
        from fedhub.db import session_scope

        with session_scope(self.store.db) as s:
            used = quotas.compute_hours_used(s, info.tenant)
        return profiles.render_form(tier, self.store.tiers.profiles, compute_used=used)

    @default("options_from_form")
    def _default_options_from_form(self):
        return profiles.options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return lambda spawner, options: spawner.apply_tier_options(options)

    def apply_tier_options(self, options: dict) -> None:
        """Validate the requested profile against the tier (a 400 the user can act on)."""
        profile = options.get("profile") if isinstance(options, dict) else None
        if profile is not None and not isinstance(profile, str):
            raise SpawnException("profile must be a string", reason="invalid_options")
        info = self._member_or_refuse()
        if not info.tenant:  # a platform admin: no tenant to count or charge
            catalog = self.store.tiers.profiles
            if profile and profile not in catalog:
                raise SpawnException(
                    f"Unknown server size {profile!r}; choose one of: {', '.join(catalog)}.",
                    reason="profile_not_allowed",
                )
            self.tier_profile = profile or next(iter(catalog))
            return
        tier = self.tier_of(info)
        profile = profile or tier.profiles[0]
        try:
            quotas.check_profile(info.tier, tier, profile, self.store.tiers.profiles.get(profile))
        except quotas.SpawnRefused as e:
            raise self._refusal(info.tenant, e) from None
        self.tier_profile = profile

    # -- start and stop ----------------------------------------------------------

    def _refusal(self, tenant: str, e: quotas.SpawnRefused) -> SpawnException:
        """Count and record a refusal; returns the SpawnException the hub shows the user."""
        metrics.SPAWN_REFUSALS.labels(e.reason, tenant).inc()
        events.emit(
            "server.spawn_refused",
            tenant=tenant,
            actor=self.user.name,
            target=self._target,
            result="denied",
            severity="notice",
            details={**e.details, "reason": e.reason},
        )
        return SpawnException(e.message, reason=e.reason, status_code=e.status)

    @property
    def _target(self) -> str:
        return f"{self.user.name}/{self.name}"

    async def tenant_storage_bytes(self, tenant: str) -> int | None:
        return await tenant_storage.tenant_bytes(
            self.store.db, tenant, self.storage_path_template, self.storage_cache_seconds
        )

    def _member_or_refuse(self):
        """The user's membership; no server for a hub user fedhub does not know.

        Fail closed: a user without a membership (renamed, deleted, made directly in
        the hub) gets nothing; only an explicit platform admin has no tenant.
        """
        info = self.membership()
        if info is None or not (info.tenant or info.is_platform_admin):
            metrics.SPAWN_REFUSALS.labels("no_membership", "").inc()
            events.emit(
                "server.spawn_refused",
                tenant=None,
                actor=self.user.name,
                target=self._target,
                result="denied",
                severity="warning",
                details={"reason": "no_membership"},
            )
            raise SpawnException(
                f"{self.user.name} is not a member of any organisation on this hub, so no "
                "server can be started. Ask your organisation's administrator to add you.",
                reason="no_membership",
                status_code=403,
            )
        return info

    async def start(self):
        info = self._member_or_refuse()
        if not info.tenant:
            # platform admins without a tenant: no tenant to count or charge
            catalog = self.store.tiers.profiles
            self._apply_profile(catalog[self.tier_profile or next(iter(catalog))])
            return await super().start()
        events.emit(
            "server.spawn_requested",
            tenant=info.tenant,
            actor=self.user.name,
            target=self._target,
            details={"profile": self.tier_profile},
        )
        storage = await self.tenant_storage_bytes(info.tenant)
        tic = time.perf_counter()
        try:
            # synchronous on purpose: in the hub, fedhub's session is the hub's own
            # (fedhub.db.share_session), which must stay on the event loop's thread;
            # one short transaction, no await inside, so requests cannot interleave
            reservation = quotas.reserve(
                self.store.db,
                tenant=info.tenant,
                username=self.user.name,
                server_name=self.name,
                profile=self.tier_profile,
                catalog=self.store.tiers,
                storage_bytes=storage,
            )
        except quotas.SpawnRefused as e:
            raise self._refusal(info.tenant, e) from None
        finally:
            metrics.QUOTA_CHECK_SECONDS.observe(time.perf_counter() - tic)
        self._reservation = reservation
        self._apply_profile(self.store.tiers.profiles[reservation.profile])
        await self._prepare_team_folder()
        if self.install_kernels:
            await self._install_kernels(reservation.tier.kernels)
        url = await super().start()
        quotas.mark_running(self.store.db, reservation.key)
        events.emit(
            "server.started",
            tenant=info.tenant,
            actor=self.user.name,
            target=self._target,
            details={"profile": reservation.profile, "tier": reservation.tier_name},
        )
        return url

    async def stop(self, now=False):
        return await super().stop(now=now)

    async def poll(self):
        return await super().poll()

    async def run_post_stop_hook(self):
        row = quotas.release(self.store.db, self.user.name, self.name)
        if row is not None:
            reason = getattr(self, "fedhub_stop_reason", None) or "stopped"
            events.emit(
                "server.stopped",
                tenant=row.tenant,
                actor=self.user.name if reason == "stopped" else "fedhub-reconciler",
                target=self._target,
                details={
                    "reason": reason,
                    "profile": row.profile,
                    "requested_at": getattr(self, "fedhub_stop_requested", None),
                },
            )
        self.fedhub_stop_reason = self.fedhub_stop_requested = None
        self._reservation = None
        if self._cgroup is not None:
            limits.remove_cgroup(self._cgroup)
            self._cgroup = None
        return await maybe_future(super().run_post_stop_hook())

    # -- what the server gets ----------------------------------------------------

    kernels_dir = Unicode(
        config=True,
        help="""Where the tier kernel specs are installed, one folder per tier
        (``<kernels_dir>/<tier>/kernels/<spec>``), readable by every user account and
        writable only by the hub: specs are never written into a user's home, where
        a symlink could send the hub's writes elsewhere. Default:
        ``$FEDHUB_STATE_DIR/share/kernels``, else ``/usr/local/share/fedhub/kernels``.

            c.TierSpawner.kernels_dir = "/srv/fedhub/share/kernels"
        """,
    )

    @default("kernels_dir")
    def _default_kernels_dir(self):
        state = os.environ.get("FEDHUB_STATE_DIR")
        if state:
            return str(Path(state) / "share" / "kernels")
        return "/usr/local/share/fedhub/kernels"
