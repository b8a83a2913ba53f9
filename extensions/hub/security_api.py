"""``/hub/api/fedhub/tenants/<slug>/ip-allowlist``: a tenant's allowlisted networks.

GET reads the list, PUT ``{"networks": ["10.0.0.0/8", ...]}`` replaces it (``[]``
lifts the restriction). Only the tenant's admins and platform admins may, with a token
holding ``custom:fedhub:tenant:admin`` for the tenant; anyone else gets 404, as for a
tenant that does not exist. A tier without ``security.ip_allowlist``
refuses a non-empty list (403 naming the tier). A tenant admin cannot lock themselves
out: a list that leaves out the address of the request that sets it is refused (409)
(platform admins belong to no tenant and are never restricted, so they are the way
back in if the admins' addresses change).

It is a hub API handler (the hub's token and cookie authentication, its XSRF checks);
errors leave in fedhub's shape, ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from tornado import web

from fedhub.addresses import client_ip
from fedhub.errors import Forbidden, InvalidRequest, NotFound
from fedhub.extensions.hub.api import FedhubAPIHandler
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import Role

ALLOWLIST_API_PATTERN = r"/api/fedhub/tenants/([^/]+)/ip-allowlist"


class AllowlistAPIHandler(FedhubAPIHandler):
    """Read and replace a tenant's IP allowlist."""

    @property
    def security(self):
        return self.authenticator.store.security

    def _admin_of(self, slug: str):
        """The caller's membership, if they administer ``slug`` (404 otherwise) with a token
        that holds ``custom:fedhub:tenant:admin`` for it (403 otherwise: a key made with
        fewer scopes can do less)."""
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "authentication required")
        name = getattr(user, "name", None) if getattr(user, "kind", "user") == "user" else None
        info = self.authenticator.store.user(name) if name else None
        allowed = info is not None and (
            info.is_platform_admin or (info.role == Role.TENANT_ADMIN and info.tenant == slug)
        )
        if not allowed:
            raise NotFound(f"no tenant {slug!r}")
        if not fedhub_scopes.granted("tenant:admin", self.expanded_scopes, slug):
            raise Forbidden(
                "this token does not hold the scope custom:fedhub:tenant:admin for the tenant"
            )
        return info

    def _answer(self, slug: str, networks: list[str]) -> None:
        tenant = self.authenticator.store.get_tenant(slug)
        tier = self.authenticator.store.effective_tier(tenant)
        self.finish(
            {
                "tenant": slug,
                "networks": networks,
                "tier_allows": tier.security.ip_allowlist,
                "your_address": client_ip(self.request),
            }
        )

    def get(self, slug: str):
        self._admin_of(slug)
        self._answer(slug, self.security.allowlist(slug))

    def put(self, slug: str):
        info = self._admin_of(slug)
        body = self.body()
        if not isinstance(body.get("networks"), list):
            raise InvalidRequest('expected {"networks": ["10.0.0.0/8", ...]}')
        # platform admins belong to no tenant: its list never locks them out
        keep = None if info.is_platform_admin else client_ip(self.request)
        stored = self.security.set_allowlist(
            slug, body["networks"], actor=info.username, keep_address=keep
        )
        self._answer(slug, stored)
