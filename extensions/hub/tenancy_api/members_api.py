"""Tenants, members and invitations in the hub's REST API (docs/organisations.md).

    GET    /hub/api/fedhub/tenants                       platform admin: every tenant;
                                                         anyone else: their own
    POST   /hub/api/fedhub/tenants                       {slug?, name, tier, domains?} -> 201
    GET    /hub/api/fedhub/tenants/<slug>                tenant:read
    PATCH  /hub/api/fedhub/tenants/<slug>                {tier?, name?}: platform admin
    POST   /hub/api/fedhub/tenants/<slug>/suspend        {reason}: platform admin
    POST   /hub/api/fedhub/tenants/<slug>/resume         platform admin
    GET    /hub/api/fedhub/tenants/<slug>/members        tenant:read (emails: admins only)
    PATCH  /hub/api/fedhub/tenants/<slug>/members/<user> {role}: tenant:admin
    DELETE /hub/api/fedhub/tenants/<slug>/members/<user> tenant:admin -> 204
    GET    /hub/api/fedhub/tenants/<slug>/invitations    tenant:admin
    POST   /hub/api/fedhub/tenants/<slug>/invitations    {email, role?, days?}: emailed -> 201
    POST   .../invitations/<id>/resend                   new link, the old one dies; 429
                                                         within a minute of the last
    DELETE .../invitations/<id>                          revoke -> 204

Anyone outside a tenant is answered 404 on its endpoints, as for a tenant that does not
exist (:meth:`FedhubAPIHandler.caller`). The work is the tenant store's, the same
functions ``fedhub tenant ...`` and ``fedhub user ...`` call
(:mod:`fedhub.tenancy.store`, :mod:`fedhub.tenancy.members`,
:mod:`fedhub.tenancy.signup.invitations`), each emitting its audit event with the
caller as actor. An invitation's link is only ever in the email, never in a response.

Removing a member is the hub's own offboarding (``extensions/hub/offboarding.py``): the
authenticator's ``delete_user`` stops the servers, drops the membership, removes the
Unix account and archives the home, and the hub user (with its tokens) goes.
"""

from __future__ import annotations

import html

from jupyterhub.utils import maybe_future

from fedhub.errors import ConfigError, Forbidden, InvalidRequest, NotFound
from fedhub.extensions.hub.api import ADMIN_ROLES, FedhubAPIHandler
from fedhub.extensions.hub.signup_pages import invitation_link
from fedhub.mail import MailError
from fedhub.tenancy import members
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import TenantStatus
from fedhub.tenancy.onboarding import unique_slug
from fedhub.tenancy.signup import InvitationView
from fedhub.tenancy.signup.invitations import validity
from fedhub.tenancy.store import UserInfo

TENANTS = r"/api/fedhub/tenants"
TENANT = TENANTS + r"/([^/]+)"


def fields(body: dict, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    """The body's fields, refusing unknown ones and missing required ones (400)."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(unknown)}; expected {', '.join(allowed)}"
        )
    missing = [f for f in required if body.get(f) in (None, "")]
    if missing:
        raise InvalidRequest(f"missing field(s) {', '.join(missing)}")
    for name, value in body.items():
        # days is a number, domains a list (each checked where it is read)
        if name not in ("days", "domains") and value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string")
    return body


def text_field(body: dict, name: str, limit: int = 255) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidRequest(f"{name} must be a non-empty string of at most {limit} characters")
    return value.strip()


class _TenancyAPI(FedhubAPIHandler):
    def answer(self, body: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def tenant_view(self, slug: str) -> dict:
        return members.tenant_json(self.store.get_tenant(slug))

    def tier(self, body: dict) -> str | None:
        """The body's ``tier``, if it names one (400 naming the tiers otherwise)."""
        name = text_field(body, "tier", 63)
        if name is not None:
            try:
                self.store.tiers.get(name)
            except ConfigError:  # not the operator's file's fault here: the caller's
                names = ", ".join(self.store.tiers.names())
                raise InvalidRequest(f"unknown tier {name!r:.70}: use one of {names}") from None
        return name

    def tenants_manager(self, slug: str | None = None) -> UserInfo:
        """A platform admin whose token holds ``tenants:manage``; for one tenant, its own
        people are refused (403) and anyone else answered 404."""
        info = self.caller(slug, "tenant:read") if slug else self.platform_admin()
        if not info.is_platform_admin:
            raise Forbidden("only a platform admin may do this")
        if not fedhub_scopes.granted("tenants:manage", self.expanded_scopes, None):
            raise Forbidden(
                f"this token does not hold the scope {fedhub_scopes.scope('tenants:manage')}"
            )
        return info


class TenantsHandler(_TenancyAPI):
    def get(self):
        info = self.signed_in()
        if info.is_platform_admin:
            if not fedhub_scopes.granted("tenant:read", self.expanded_scopes, None):
                raise Forbidden("this token does not hold the scope to read every tenant")
            tenants = [members.tenant_json(t) for t in self.store.list_tenants()]
        elif info.tenant:
            self.caller(info.tenant, "tenant:read")
            tenants = [self.tenant_view(info.tenant)]
        else:
            tenants = []
        self.answer({"tenants": tenants})

    def post(self):
        info = self.tenants_manager()
        body = fields(self.body(), ("slug", "name", "tier", "domains"), ("name", "tier"))
        name = text_field(body, "name")
        domains = body.get("domains") or []
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise InvalidRequest("domains must be a list of email domains")
        slug = text_field(body, "slug", 63)
        if slug is None:  # derived as onboarding derives it (one rule)
            with self.store.session() as s:
                slug = unique_slug(s, name)
        tenant = self.store.create_tenant(
            slug, name, self.tier(body), email_domains=domains, actor=info.username
        )
        self.answer(self.tenant_view(tenant.slug), 201)


class TenantHandler(_TenancyAPI):
    def get(self, slug: str):
        self.caller(slug, "tenant:read")
        self.answer(self.tenant_view(slug))

    def patch(self, slug: str):
        info = self.tenants_manager(slug)
        body = fields(self.body(), ("tier", "name"))
        if not body:
            raise InvalidRequest("nothing to change: send tier and/or name")
        self.store.update_tenant(
            slug,
            name=text_field(body, "name"),
            tier=self.tier(body),
            actor=info.username,
        )
        self.answer(self.tenant_view(slug))


class TenantStatusHandler(_TenancyAPI):
    def post(self, slug: str, action: str):
        info = self.tenants_manager(slug)
        if action == "suspend":
            body = fields(self.body(), ("reason",), ("reason",))
            reason = text_field(body, "reason", 500)
            self.store.set_status(slug, TenantStatus.SUSPENDED, reason=reason, actor=info.username)
        else:
            fields(self.body(), ())
            self.store.set_status(slug, TenantStatus.ACTIVE, actor=info.username)
        self.answer(self.tenant_view(slug))


class MembersHandler(_TenancyAPI):
    def get(self, slug: str):
        info = self.caller(slug, "tenant:read")
        is_admin = info.role in ADMIN_ROLES
        self.answer({"members": members.member_list(self.store, slug, with_email=is_admin)})


class MemberHandler(_TenancyAPI):
    def patch(self, slug: str, username: str):
        info = self.caller(slug, "tenant:admin")
        body = fields(self.body(), ("role",), ("role",))
        self.store.set_role(username, body["role"], tenant=slug, actor=info.username)
        member = [m for m in members.member_list(self.store, slug) if m["username"] == username]
        self.answer(member[0])

    async def delete(self, slug: str, username: str):
        info = self.caller(slug, "tenant:admin")
        members.check_removable(self.store, slug, username)
        user = self.find_user(username)
        if user is None:  # never used the hub: only fedhub's rows
            self.store.remove_user(username, actor=info.username)
        else:
            # as DELETE /hub/api/users/<name> does (the authenticator's offboarding)
            if user.spawner._stop_pending:
                raise InvalidRequest(f"{username}'s server is stopping; try again shortly")
            await maybe_future(self.authenticator.delete_user(user))
            await user.delete_spawners()
            self.users.delete(user)
        self.audit("member.removed", slug, info, {"username": username}, target=username)
        self.set_status(204)
        self.finish()


class InvitationsHandler(_TenancyAPI):
    def get(self, slug: str):
        self.caller(slug, "tenant:admin")
        views = self.store.invitations(slug)
        self.answer({"invitations": [v.to_json() for v in views]})

    async def post(self, slug: str):
        info = self.caller(slug, "tenant:admin")
        body = fields(self.body(), ("email", "role", "days"), ("email",))
        view = self.store.invite(
            slug,
            body["email"],
            body.get("role") or "member",
            valid_for=validity(body.get("days")),
            actor=info.username,
        )
        try:
            await self.send(view)
        except MailError as e:
            self.log.error("Invitation %s to %s not sent: %s", view.id, slug, e)
            self.store.revoke_invitation(slug, view.id, actor=info.username)
            self.set_status(503)
            raise _NotSent("the invitation email could not be sent just now; try again") from None
        self.answer(view.to_json(), 201)

    async def send(self, view: InvitationView) -> None:
        link = invitation_link(self, view.token)
        days = max(1, round((view.expires_at - view.sent_at).total_seconds() / 86400))
        until = f"{days} day{'s' if days != 1 else ''}"
        text = (
            f"Hello,\n\nYou are invited to join {view.tenant_name} on fedhub as {view.role}.\n"
            f"To accept, open this link within {until}, then choose a username and a "
            f"password:\n\n{link}\n\n"
            "If you do not know why you received this, ignore it: nothing happens without "
            "the link.\n"
        )
        body = (
            f"<p>Hello,</p><p>You are invited to join <b>{html.escape(view.tenant_name)}</b> "
            f"on fedhub as {html.escape(str(view.role))}. To accept, open this link within "
            f"{until}, then choose a username and a password:</p>"
            f'<p><a href="{html.escape(link)}">Accept the invitation</a></p>'
            "<p>If you do not know why you received this, ignore it.</p>"
        )
        mailer = self.authenticator.mailer
        subject = f"You are invited to {view.tenant_name} on fedhub"
        await mailer.send_async(view.email, subject, text, body)
        if mailer.uses_outbox:  # the embedded default has no mail: the operator passes it on
            self.log.info("No SMTP server configured: invitation %s is in the outbox", view.id)


class _NotSent(InvalidRequest, code="mail_not_sent", status=503):
    """The email could not be sent (the SMTP server refused or is down)."""


class InvitationResendHandler(InvitationsHandler):
    async def post(self, slug: str, invitation_id: str):
        info = self.caller(slug, "tenant:admin")
        body = fields(self.body(), ("days",))
        view = self.store.resend_invitation(
            slug, _id(invitation_id), valid_for=validity(body.get("days")), actor=info.username
        )
        try:
            await self.send(view)
        except MailError as e:
            self.log.error("Invitation %s to %s not resent: %s", view.id, slug, e)
            raise _NotSent("the invitation email could not be sent just now; try again") from None
        self.answer(view.to_json())


class InvitationHandler(_TenancyAPI):
    def delete(self, slug: str, invitation_id: str):
        info = self.caller(slug, "tenant:admin")
        self.store.revoke_invitation(slug, _id(invitation_id), actor=info.username)
        self.set_status(204)
        self.finish()


def _id(value: str) -> int:
    if not value.isdigit() or len(value) > 12:
        raise NotFound(f"no invitation {value[:20]!r}")
    return int(value)


def handlers(authenticator) -> list[tuple]:
    return [
        (TENANTS, TenantsHandler),
        (TENANT, TenantHandler),
        (TENANT + r"/(suspend|resume)", TenantStatusHandler),
        (TENANT + r"/members", MembersHandler),
        (TENANT + r"/members/([^/]+)", MemberHandler),
        (TENANT + r"/invitations", InvitationsHandler),
        (TENANT + r"/invitations/([^/]+)/resend", InvitationResendHandler),
        (TENANT + r"/invitations/([^/]+)", InvitationHandler),
    ]
