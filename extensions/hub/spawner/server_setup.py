"""What a tier's server gets (part of :class:`fedhub.extensions.hub.tier_spawner.TierSpawner`):
its profile mapped onto the backend's traits, its team's folder and group, the tier's kernel
specs, its environment (tenant, tier, role, profile, team, the services' URLs), the kernel
allow-list on its command line, and the memory limit and cgroup of its profile.

:class:`ServerSetupMixin` holds methods only; the options they read (``kernels_dir``,
``install_kernels``, ``memory_enforcement``, ...) are :class:`TierSpawner`'s traits, and its
``get_env``/``get_args``/``make_preexec_fn`` call ``super()`` into the backend spawner.
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from pathlib import Path

from fedhub import quotas
from fedhub.extensions.hub.spawner import kernels, kubernetes, limits, profiles
from fedhub.extensions.hub.spawner.accounts import UnixAccountSpawner
from fedhub.tenancy import team_folders, teams


class ServerSetupMixin:
    """The team folder, the profile, kernels, environment, arguments and local limits."""

    # -- the team folder -------------------------------------------------------

    @cached_property
    def team_folders(self) -> team_folders.TeamFolders:
        return team_folders.TeamFolders(parent=self)

    _team: teams.TeamView | None = None

    async def _prepare_team_folder(self) -> None:
        """The user's team's folder and group (made if missing); the account joins the
        group before the server starts (UnixAccountSpawner's ``extra_groups``)."""
        with self.store.session() as s:  # on the loop: the hub's session (one short read)
            self._team = teams.team_of(s, self.user.name)
        team = self._team
        if (
            team is None
            or not isinstance(self, UnixAccountSpawner)
            or not self.team_folders.enabled
        ):
            return
        await asyncio.to_thread(self.team_folders.sync, team.tenant, team.name, team.members)
        self.extra_groups = (team_folders.team_group(team.tenant, team.name),)

    def _apply_profile(self, profile) -> None:
        kind = profiles.backend_kind(type(self))
        for trait, value in profiles.backend_settings(
            kind, profile, self.guarantee_fraction
        ).items():
            if self.has_trait(trait):
                setattr(self, trait, value)
        if isinstance(self, kubernetes.KubernetesTierMixin):
            r = self._reservation
            self.apply_tier_settings(
                kubernetes.tier_settings(
                    tenant=r.tenant if r else None,
                    tier_name=r.tier_name if r else None,
                    tier=r.tier if r else None,
                    profile_name=r.profile if r else (self.tier_profile or ""),
                    profile=profile,
                    guarantee_fraction=self.guarantee_fraction,
                )
            )

    # -- what the server gets ----------------------------------------------------

    @property
    def kernel_data_dir(self) -> Path | None:
        """The tier's kernel data dir (a ``JUPYTER_PATH`` entry), once a tier is reserved."""
        r = self._reservation
        return Path(self.kernels_dir) / r.tier_name if r is not None else None

    async def _install_kernels(self, names) -> None:
        """Copy the tier's kernel specs in a worker thread.

        The thread gets plain values read here, on the loop: never ``self``, whose
        ``user`` lazy-loads from the hub's database session (the 500 of route 9).
        """
        target = self.kernel_data_dir
        if target is not None:
            await asyncio.to_thread(kernels.install, list(names), target, python=self.kernel_python)

    def get_env(self):
        env = super().get_env()
        info = self.membership()
        if info and info.tenant:
            env["FEDHUB_TENANT"] = info.tenant
            env["FEDHUB_TIER"] = info.tier or ""
        if info:
            env["FEDHUB_ROLE"] = str(info.role)
        if self._reservation is not None:
            env["FEDHUB_PROFILE"] = self._reservation.profile
        if self._team is not None:
            env["FEDHUB_TEAM"] = self._team.name
            if isinstance(self, UnixAccountSpawner) and self.team_folders.enabled:
                folder = self.team_folders.folder(self._team.tenant, self._team.name)
                env["FEDHUB_TEAM_DIR"] = str(folder)
        settings = getattr(self.user, "settings", None) or {}
        for name, service in (settings.get("services") or {}).items():
            url = getattr(service, "url", "")
            if url:
                key = "FEDHUB_" + name.upper().replace("-", "_") + "_URL"
                env[key] = url.rstrip("/") + service.prefix
        if self.install_kernels and self._reservation is not None and self.kernel_data_dir:
            existing = env.get("JUPYTER_PATH")
            env["JUPYTER_PATH"] = str(self.kernel_data_dir) + (f":{existing}" if existing else "")
        return env

    def get_args(self):
        args = super().get_args()
        if self.install_kernels and self._reservation is not None:
            args += [
                f"--KernelSpecManager.allowed_kernelspecs={k}"
                for k in self._reservation.tier.kernels
            ]
        return args

    def make_preexec_fn(self, name):
        """The local backend's preexec, plus the memory limit and cgroup of the profile."""
        parent = super().make_preexec_fn(name)
        r = self._reservation
        if r is None or self.memory_enforcement == "none":
            return parent
        mem = int(r.memory_gb * quotas.GIB)
        found = limits.probe()
        if self.memory_enforcement in ("auto", "cgroup") and found.cgroup_v2:
            group = f"{self.user.name}-{self.name or 'default'}"
            self._cgroup = limits.make_cgroup(Path(found.cgroup_path), group, mem, r.cpu)
            return limits.limit_preexec(parent, None, self._cgroup)
        if self.memory_enforcement == "cgroup":
            self.log.warning("cgroup v2 not usable (%s); memory not enforced", found.cgroup_detail)
            return parent
        return limits.limit_preexec(parent, mem if found.rlimit_as else None, None)
