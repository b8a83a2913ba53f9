"""``fedhub-tier``: the spawner that applies a tenant's tier to its users' servers.

Foundation version: tells the server which tenant and tier it belongs to and
refuses users of suspended tenants. Quota enforcement (limits, profiles,
metering) is added on top of this class by the tier-spawner work.
"""

from __future__ import annotations

from functools import cached_property

from fedhub.extensions.hub.tenant_auth import TenantAuthenticatorMixin
from jupyterhub.spawner import SimpleLocalProcessSpawner, SpawnException

from fedhub.tenancy.models import TenantStatus


class TierSpawner(SimpleLocalProcessSpawner):
    """Start a user's server within their tenant's tier."""

    @cached_property
    def store(self):
        auth = self.authenticator
        if isinstance(auth, TenantAuthenticatorMixin):
            return auth.store
        from fedhub.tenancy.store import TenantStore

        return TenantStore()

    def membership(self):
        return self.store.user(self.user.name)

    async def start(self):
        info = self.membership()
        if info and info.tenant_status == TenantStatus.SUSPENDED:
            raise SpawnException(
                f"Your organisation is suspended, so no server can start for {self.user.name}.",
                reason="tenant_suspended",
            )
        return await super().start()

    def get_env(self):
        env = super().get_env()
        info = self.membership()
        if info and info.tenant:
            env["FEDHUB_TENANT"] = info.tenant
            env["FEDHUB_TIER"] = info.tier or ""
            env["FEDHUB_ROLE"] = str(info.role)
        return env
