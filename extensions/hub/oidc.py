"""``fedhub-oidc``: single sign-on through any OpenID Connect provider.

oauthenticator's ``GenericOAuthenticator`` proves who the user is; this class
only adds the tenant: the tenant comes from a claim (``fedhub_tenant`` by
default) or from the email domains a tenant allows, the role from another claim
(``fedhub_role``), and a first login provisions the membership if allowed. A
tenant whose tier lacks the ``sso`` feature cannot sign in this way.
"""

from __future__ import annotations

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Bool, Unicode

from fedhub import events
from fedhub.errors import FedhubError
from fedhub.extensions.hub.tenant_auth import TenantAuthenticatorMixin
from fedhub.tenancy.models import Role, TenantStatus

# roles an identity provider may grant; platform admins are made with the CLI
CLAIMABLE_ROLES = {Role.TENANT_ADMIN, Role.MEMBER, Role.ANALYST, Role.SERVICE_ACCOUNT}


class TenantOIDCAuthenticator(TenantAuthenticatorMixin, GenericOAuthenticator):
    """OpenID Connect login for the users of fedhub tenants."""

    tenant_claim = Unicode(
        "fedhub_tenant",
        config=True,
        help="""Userinfo claim holding the tenant slug. When absent, the tenant is
        the one whose allowed email domains contain the user's email domain.

            c.TenantOIDCAuthenticator.tenant_claim = "organisation"
        """,
    )
    role_claim = Unicode(
        "fedhub_role",
        config=True,
        help="""Userinfo claim holding the fedhub role (tenant-admin, member,
        analyst, service-account). Missing or unknown: member. Platform admins
        are never made from a claim.""",
    )
    email_claim = Unicode("email", config=True, help="Userinfo claim holding the email address.")
    auto_provision = Bool(
        True,
        config=True,
        help="""Create the fedhub membership on a user's first login, when the
        tenant can be worked out from the claims. Off: only users added with
        ``fedhub user add`` may log in.""",
    )

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        # groups come from the tenant, never from the identity provider
        info = self.store.user(self.user_info_to_username(auth_state[self.user_auth_state_key]))
        return set(self.groups_for(info)) if info else set()

    async def update_auth_model(self, auth_model: dict) -> dict:
        username = auth_model["name"]
        claims = auth_model["auth_state"][self.user_auth_state_key]
        info = self.store.user(username)
        if info is None:
            info = self._provision(username, claims)
        if info.tenant and not info.is_platform_admin:
            tenant = self.store.get_tenant(info.tenant)
            if (
                tenant.status == TenantStatus.ACTIVE
                and not self.store.effective_tier(tenant).features.sso
            ):
                self._refuse(
                    username,
                    info.tenant,
                    "tier_without_sso",
                    f"Single sign-on is not part of {tenant.name}'s {tenant.tier} tier. "
                    "Log in with your fedhub password, or ask your administrator to upgrade.",
                )
        model = self.tenant_auth_model(username)
        return {**auth_model, **model}

    def _provision(self, username: str, claims: dict):
        if not self.auto_provision:
            self._refuse(
                username,
                None,
                "not_provisioned",
                f"{username} has no fedhub account; ask your organisation's administrator to add you.",
            )
        tenant = claims.get(self.tenant_claim) or self._tenant_by_email(
            claims.get(self.email_claim)
        )
        if not tenant:
            self._refuse(
                username,
                None,
                "no_tenant",
                "Your identity provider did not say which organisation you belong to, and your "
                "email domain is not registered with any. Ask your administrator.",
            )
        try:
            role = Role(claims.get(self.role_claim) or Role.MEMBER)
        except ValueError:
            role = Role.MEMBER
        if role not in CLAIMABLE_ROLES:
            role = Role.MEMBER
        try:
            self.store.add_user(
                username, tenant, role, email=claims.get(self.email_claim), actor="oidc"
            )
        except FedhubError as e:
            self._refuse(username, tenant, e.code, e.message)
        return self.store.user(username)

    def _tenant_by_email(self, email: str | None) -> str | None:
        if not email or "@" not in email:
            return None
        domain = email.rsplit("@", 1)[1].lower()
        for tenant in self.store.list_tenants():
            if domain in (tenant.allowed_email_domains or []):
                return tenant.slug
        return None

    def _refuse(self, username: str, tenant: str | None, reason: str, message: str):
        events.emit(
            "auth.login_refused",
            tenant=tenant,
            actor=username,
            target=username,
            result="denied",
            severity="warning",
            details={"reason": reason, "via": "oidc"},
        )
        raise web.HTTPError(403, message)
