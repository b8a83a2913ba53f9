"""``fedhub-oidc``: single sign-on through any OpenID Connect provider.

oauthenticator's ``GenericOAuthenticator`` proves who the user is; this class
only adds the tenant: the tenant comes from a claim (``fedhub_tenant`` by
default) or from the email domains a tenant allows, the role from another claim
(``fedhub_role``), and a first login provisions the membership if allowed. A
tenant whose tier lacks the ``sso`` feature cannot sign in this way.

An email address places a user in a tenant only when the provider says it
verified it (``email_verified`` is true): anyone can type any address into an
account at many providers. A tenant whose ``signup_policy`` is not
``verify_email`` takes nobody by email domain here either.

The tier's security policy: the tenant's IP allowlist applies to these logins as to
local ones. Passwords and MFA are the identity provider's job; with
``require_mfa_claim`` a tenant whose tier requires MFA is refused unless the provider's
``amr`` claim says a second factor was used (docs/security-policy.md).
"""

from __future__ import annotations

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from traitlets import Bool, Unicode

from fedhub import events
from fedhub.errors import FedhubError
from fedhub.extensions.hub.login_policy import refuse_outside_allowlist
from fedhub.extensions.hub.security_pages import SECURITY_HANDLERS
from fedhub.extensions.hub.tenant_auth import TenantAuthenticatorMixin
from fedhub.mail import mask_email
from fedhub.tenancy.models import Role, SignupPolicy, TenantStatus

# roles an identity provider may grant; platform admins are made with the CLI
CLAIMABLE_ROLES = {Role.TENANT_ADMIN, Role.MEMBER, Role.ANALYST, Role.SERVICE_ACCOUNT}
# RFC 8176 authentication method references that mean more than a password
MFA_METHODS = {"mfa", "otp", "hwk", "swk", "sc", "fpt", "face", "iris", "retina", "vbm"}


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
    email_verified_claim = Unicode(
        "email_verified",
        config=True,
        help="""Userinfo claim saying the provider verified the email address
        (OpenID Connect's standard claim). The email domain maps a user to a
        tenant only when this claim is true (``true`` or ``"true"``).

            c.TenantOIDCAuthenticator.email_verified_claim = "email_verified"
        """,
    )
    auto_provision = Bool(
        True,
        config=True,
        help="""Create the fedhub membership on a user's first login, when the
        tenant can be worked out from the claims. Off: only users added with
        ``fedhub user add`` may log in.""",
    )

    require_mfa_claim = Bool(
        False,
        config=True,
        help="""Refuse the logins of tenants whose tier requires MFA
        (``security.mfa_required``) unless the userinfo's ``amr`` claim (RFC 8176)
        names a second factor (``mfa``, ``otp``, ``hwk``, ...). Off by default: many
        providers leave ``amr`` out of userinfo; turn it on when yours sends it.

            c.TenantOIDCAuthenticator.require_mfa_claim = True
        """,
    )

    def get_handlers(self, app):
        from fedhub.extensions.hub.branding_api import BrandedLoginHandler

        # before the hub's own /login: ?tenant=<slug> shows the tenant's name and logo
        return [(r"/login", BrandedLoginHandler), *super().get_handlers(app), *SECURITY_HANDLERS]

    async def authenticate(self, handler, data=None, **kwargs):
        model = await super().authenticate(handler, data, **kwargs)
        if model:
            refuse_outside_allowlist(self, model["name"], handler)
        return model

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
            self._check_mfa_claim(username, tenant, claims)
        model = self.tenant_auth_model(username)
        return {**auth_model, **model}

    def _check_mfa_claim(self, username: str, tenant, claims: dict) -> None:
        if not self.require_mfa_claim:
            return
        if not self.store.effective_tier(tenant).security.mfa_required:
            return
        amr = claims.get("amr")
        methods = {amr} if isinstance(amr, str) else set(amr if isinstance(amr, list) else [])
        if not methods & MFA_METHODS:
            self._refuse(
                username,
                tenant.slug,
                "mfa_not_used",
                f"{tenant.name} requires two-factor login, and your identity provider did not "
                "report one for this login. Log in again with your second factor.",
            )

    def _provision(self, username: str, claims: dict):
        if not self.auto_provision:
            self._refuse(
                username,
                None,
                "not_provisioned",
                f"{username} has no fedhub account; ask your organisation's administrator to add you.",
            )
        tenant = claims.get(self.tenant_claim) or self._tenant_by_verified_email(username, claims)
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

    def _tenant_by_verified_email(self, username: str, claims: dict) -> str | None:
        """The tenant of the email's domain, if the provider verified the address
        and the tenant takes members by domain; refuses otherwise."""
        email = claims.get(self.email_claim)
        if not isinstance(email, str) or "@" not in email:
            return None
        domain = email.rsplit("@", 1)[1].lower()
        tenant = next(
            (t for t in self.store.list_tenants() if domain in (t.allowed_email_domains or [])),
            None,
        )
        if tenant is None:
            return None
        verified = claims.get(self.email_verified_claim)
        if not (verified is True or str(verified).lower() == "true"):
            self._refuse(
                username,
                tenant.slug,
                "email_unverified",
                f"Your identity provider has not verified your email address "
                f"{mask_email(email)}, so it cannot be used to place you in an organisation. "
                "Verify the address with your identity provider, or ask your organisation's "
                "administrator to add you.",
            )
        if tenant.signup_policy != SignupPolicy.VERIFY_EMAIL:
            how = (
                "by invitation only"
                if tenant.signup_policy == SignupPolicy.INVITATION_ONLY
                else "after an administrator's approval"
            )
            self._refuse(
                username,
                tenant.slug,
                "signup_policy",
                f"{tenant.name} accepts new members {how}: ask one of its administrators "
                "to add you.",
            )
        return tenant.slug

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
