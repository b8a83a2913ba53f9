"""Self-service onboarding in the hub: the pages a person uses and the same in JSON.

    GET/POST /hub/onboard                    the form: organisation, email, username,
                                             password, tier; POST sends the link
    GET/POST /hub/onboard/verify?token=      what the link confirms; POST (with the
                                             password chosen) confirms it
    GET      /hub/onboard/status?token=      where it stands (a rejection's reason)
    POST     /hub/api/fedhub/onboard         the form in JSON, without login (202)
    POST     /hub/api/fedhub/onboard/verify  {token, password}, without login
    GET      /hub/api/fedhub/onboard/status?token=

The logic is :mod:`fedhub.tenancy.onboarding`; here are the link, the email, the limit
per source address and the configuration (``c.Onboarding.*``). A GET never changes
anything (mail scanners open every link). The link points at the hub's public URL, as
the sign-up link does (:mod:`fedhub.extensions.hub.signup_pages`), never at the request's
``Host`` header. Only the local authenticator onboards (the new tenant admin logs in with
the password they chose); with OIDC these routes do not exist.

Nobody is signed in here, so nothing here reads a tenant's data: the only rows these
handlers read are the caller's own onboarding, found by the link's token.
"""

from __future__ import annotations

import html
import time
from datetime import timedelta
from urllib.parse import urlencode, urljoin

from jupyterhub.handlers import BaseHandler
from limits import RateLimitItemPerHour
from limits.strategies import FixedWindowRateLimiter
from traitlets import Bool, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from fedhub import events
from fedhub.addresses import client_ip
from fedhub.approvals.kinds.onboarding import asker
from fedhub.db.base import utcnow
from fedhub.errors import FedhubError, InvalidRequest, NotFound
from fedhub.extensions.hub.api import FedhubAPIHandler
from fedhub.extensions.hub.signup_pages import _hours, _public_base
from fedhub.mail import MailError, mask_email
from fedhub.ratelimit import RateLimited, RateLimits
from fedhub.tenancy import onboarding
from fedhub.tenancy.onboarding import OnboardingState, OnboardingView

FIELDS = ("organisation", "email", "username", "tier")
#: the seed's names for the same fields (``POST /api/v1/onboard``: company, admin email)
ALIASES = {"company": "organisation", "admin_email": "email"}


class Onboarding(LoggingConfigurable):
    """``c.Onboarding``: self-service onboarding at ``/hub/onboard`` (docs/organisations.md)."""

    enabled = Bool(
        True,
        config=True,
        help="""Offer /hub/onboard and POST /hub/api/fedhub/onboard: anyone may ask for a
        new organisation (free tiers exist once the emailed link is followed; paid tiers
        after a platform admin approves). Only with the local authenticator.

            c.Onboarding.enabled = False
        """,
    )
    tiers = List(
        Unicode(),
        config=True,
        help="""The tiers offered for self-service, in the form's order. Empty (the
        default): every tier of tiers.yaml. A tier not listed is refused (400).

            c.Onboarding.tiers = ["free", "starter", "professional"]
        """,
    )
    link_seconds = Integer(
        24 * 3600,
        config=True,
        help="""How long the emailed link stays valid, in seconds. An address has one
        onboarding pending at a time, so this is also how long a link nobody follows
        blocks the address, the username and the slug.

            c.Onboarding.link_seconds = 24 * 3600
        """,
    )
    requests_per_ip_per_hour = Integer(
        10,
        config=True,
        help="""Onboarding requests one source address may make per hour (the form and
        the API together; 429 beyond). Counted in the rate limiter's storage
        (``c.RateLimits.storage_uri``, by default fedhub's database). 0: no limit.

            c.Onboarding.requests_per_ip_per_hour = 10
        """,
    )

    def offered(self, store) -> list[str]:
        return [n for n in store.tiers.names() if not self.tiers or n in self.tiers]

    @property
    def link_validity(self) -> timedelta:
        return timedelta(seconds=self.link_seconds)


class AddressLimit:
    """At most ``per_hour`` onboarding requests per source address (fixed window of the
    ``limits`` library, in the storage the API rate limiter counts in)."""

    NAMESPACE = "fedhub-onboard"

    def __init__(self, authenticator, per_hour: int):
        self.item = RateLimitItemPerHour(per_hour) if per_hour > 0 else None
        self._authenticator = authenticator
        self._limiter = None

    def limiter(self) -> FixedWindowRateLimiter:
        if self._limiter is None:  # at the first request: the database exists by then
            auth = self._authenticator
            storage = RateLimits(parent=auth.parent).make_storage(begin=auth.store.session)
            self._limiter = FixedWindowRateLimiter(storage)
        return self._limiter

    def hit(self, address: str | None) -> None:
        if self.item is None:
            return
        limiter = self.limiter()
        if limiter.hit(self.item, self.NAMESPACE, address or "unknown"):
            return
        reset = limiter.get_window_stats(self.item, self.NAMESPACE, address or "unknown")
        wait = max(1, int(reset.reset_time - time.time() + 0.999))
        events.emit(
            "tenant.onboarding_rate_limited",
            tenant=None,
            source_ip=address,
            result="failure",
            severity="warning",
            details={"allowed_per_hour": self.item.amount},
        )
        raise RateLimited(
            f"too many onboarding requests from your address: {self.item.amount} an hour "
            f"are allowed; try again in {wait} s",
            headers={"Retry-After": str(wait)},
            details={"limit": "onboarding_per_ip_per_hour", "allowed": self.item.amount},
        )


class _OnboardingMixin:
    """What the pages and the API share: ask, send the link, verify, read the status."""

    @property
    def onboard_settings(self) -> Onboarding:
        return configured(self.authenticator)[0]

    @property
    def address_limit(self) -> AddressLimit:
        return configured(self.authenticator)[1]

    @property
    def store(self):
        return self.authenticator.store

    async def ask(self, form: dict, password: str) -> OnboardingView:
        self.address_limit.hit(client_ip(self.request))
        view = onboarding.request_onboarding(
            self.store,
            organisation=form.get("organisation", ""),
            email=form.get("email", ""),
            username=self.authenticator.normalize_username(form.get("username", "")),
            password=password,
            tier=form.get("tier", ""),
            offered=self.onboard_settings.offered(self.store),
            link_valid_for=self.onboard_settings.link_validity,
            source_ip=client_ip(self.request),
        )
        try:
            await self._send_link(view)
        except MailError:
            onboarding.cancel(self.store, view.id)  # the address may ask again at once
            raise
        return view

    def link(self, path: str, token: str) -> str:
        """An absolute link to one of these pages at the hub's public URL."""
        base = _public_base(self.app) or f"{self.request.protocol}://{self.request.host}/"
        return urljoin(base, self.hub.base_url + path) + "?" + urlencode({"token": token})

    async def _send_link(self, view: OnboardingView) -> None:
        link = self.link("onboard/verify", view.token)
        hours = _hours(self.onboard_settings.link_seconds)
        then = (
            "a platform administrator reviews the request for the paid tier; we email you "
            "when it is decided"
            if view.paid
            else "the organisation exists and you are its administrator"
        )
        text = (
            f"Hello {view.username},\n\n"
            f"Someone (we hope you) asked for a new organisation, {view.organisation}, on "
            f"fedhub's {view.tier} tier, with you as its administrator. To confirm this "
            f"address, open this link within {hours} and enter the password you chose:\n\n"
            f"{link}\n\nThen {then}.\n\n"
            "If it was not you, ignore this message: nothing is created without the link.\n"
        )
        body = (
            f"<p>Hello {html.escape(view.username)},</p><p>Someone (we hope you) asked for a "
            f"new organisation, <b>{html.escape(view.organisation)}</b>, on fedhub's "
            f"{html.escape(view.tier)} tier, with you as its administrator. To confirm this "
            f"address, open this link within {hours} and enter the password you chose:</p>"
            f'<p><a href="{html.escape(link)}">Confirm my organisation</a></p>'
            f"<p>Then {then}.</p><p>If it was not you, ignore this message: nothing is "
            "created without the link.</p>"
        )
        mailer = self.authenticator.mailer
        await mailer.send_async(view.email, "Confirm your new organisation on fedhub", text, body)
        if mailer.uses_outbox:
            self.log.info(
                "No SMTP server configured: onboarding link for %s <%s>: %s",
                view.username,
                view.email,
                link,
            )

    def verify(self, token: str, password: str) -> OnboardingView:
        view = onboarding.verify(
            self.store,
            token,
            password,
            ask=asker(self.store),  # a paid tier: an `onboarding` request
            source_ip=client_ip(self.request),
        )
        self.log.info("Onboarding of %s (%s) verified: %s", view.slug, view.tier, view.state)
        return view


# -- the pages ---------------------------------------------------------------------------


class _OnboardPage(_OnboardingMixin, BaseHandler):
    template_file = "onboard.html"

    async def _render(self, status: int = 200, **ns) -> None:
        self.set_status(status)
        self.finish(await self.render_template(self.template_file, **ns))


class OnboardPage(_OnboardPage):
    """/hub/onboard: the form, and what happens after it is sent."""

    def _tiers(self):
        return [
            (name, self.store.tiers.get(name)) for name in self.onboard_settings.offered(self.store)
        ]

    async def get(self):
        await self._render(form={"tier": self.get_argument("tier", "")}, tiers=self._tiers())

    async def post(self):
        form = {k: self.get_body_argument(k, "").strip() for k in FIELDS}
        try:
            view = await self.ask(form, self.get_body_argument("password", ""))
        except FedhubError as e:
            await self._render(e.status, form=form, tiers=self._tiers(), error=e.message)
            return
        except MailError as e:
            self.log.error("Onboarding link for %s not sent: %s", form.get("username"), e)
            await self._render(503, form=form, tiers=self._tiers(), error=MAIL_FAILED)
            return
        await self._render(
            sent=view,
            masked_email=mask_email(view.email),
            link_hours=_hours(self.onboard_settings.link_seconds),
        )


MAIL_FAILED = (
    "We could not send the confirmation email just now, so nothing was kept: try again in a "
    "few minutes."
)


class OnboardVerifyPage(_OnboardPage):
    """/hub/onboard/verify?token=: what the link confirms (GET), confirming it (POST)."""

    template_file = "onboard_status.html"

    async def get(self):
        token = self.get_argument("token", "")
        view = onboarding.by_token(self.store, token)
        if view is None:
            await self._render(400, error=INVALID_LINK)
        elif view.state == OnboardingState.AWAITING_EMAIL and view.expires_at < utcnow():
            await self._render(410, error=EXPIRED_LINK)
        elif view.state == OnboardingState.AWAITING_EMAIL:
            await self._render(view=view, token=token, confirm=True)
        else:
            await self._render(view=view)

    async def post(self):
        token = self.get_body_argument("token", "")
        try:
            view = self.verify(token, self.get_body_argument("password", ""))
        except FedhubError as e:
            view = onboarding.by_token(self.store, token) if e.status == 403 else None
            if view is None:
                await self._render(e.status, error=e.message)
            else:  # a wrong password: the same form again, with the message
                await self._render(
                    e.status, view=view, token=token, confirm=True, form_error=e.message
                )
            return
        await self._render(view=view, just_confirmed=True)


class OnboardStatusPage(_OnboardPage):
    """/hub/onboard/status?token=: where the onboarding stands, with a rejection's reason."""

    template_file = "onboard_status.html"

    async def get(self):
        view = onboarding.by_token(self.store, self.get_argument("token", ""))
        if view is None:
            await self._render(404, error=INVALID_LINK)
        else:
            await self._render(view=view, token=self.get_argument("token"))


EXPIRED_LINK = "This link has expired. Ask for the organisation again."
INVALID_LINK = (
    "This link is not valid: it is incomplete, or the request it belonged to expired "
    "before it was confirmed. Ask for the organisation again."
)


# -- the API -----------------------------------------------------------------------------


class OnboardAPIHandler(_OnboardingMixin, FedhubAPIHandler):
    """POST /hub/api/fedhub/onboard: the form in JSON (no login); 202, the link is emailed."""

    async def post(self):
        data = self.body()
        form = {ALIASES.get(k, k): v for k, v in data.items() if k != "password"}
        bad = [k for k in (*FIELDS, "password") if not isinstance(data.get(k, form.get(k)), str)]
        if bad:
            raise InvalidRequest(f"{bad[0]}: a string is required", details={"field": bad[0]})
        try:
            view = await self.ask(form, data["password"])
        except MailError as e:
            self.log.error("Onboarding link for %s not sent: %s", form.get("username"), e)
            raise MailNotSent(MAIL_FAILED) from None
        self.set_status(202)
        self.write(
            {
                "onboarding": view.public(),
                "message": f"We sent a link to {mask_email(view.email)}: follow it to confirm.",
            }
        )


class MailNotSent(FedhubError, code="mail_not_sent", status=503):
    """The confirmation email could not be sent."""


class OnboardVerifyAPIHandler(_OnboardingMixin, FedhubAPIHandler):
    """POST /hub/api/fedhub/onboard/verify {token, password}."""

    async def post(self):
        data = self.body()
        token, password = data.get("token"), data.get("password")
        if not isinstance(token, str) or not isinstance(password, str):
            raise InvalidRequest("token and password (strings) are required")
        self.write({"onboarding": self.verify(token, password).public()})


class OnboardStatusAPIHandler(_OnboardingMixin, FedhubAPIHandler):
    """GET /hub/api/fedhub/onboard/status?token=."""

    async def get(self):
        view = onboarding.by_token(self.store, self.get_argument("token", ""))
        if view is None:
            raise NotFound("no onboarding for this token")
        self.write({"onboarding": view.public()})


def configured(authenticator) -> tuple[Onboarding, AddressLimit]:
    """The authenticator's ``c.Onboarding`` and its per-address limit (made once)."""
    found = getattr(authenticator, "_fedhub_onboarding", None)
    if found is None:
        settings = Onboarding(parent=authenticator)
        found = (settings, AddressLimit(authenticator, settings.requests_per_ip_per_hour))
        authenticator._fedhub_onboarding = found
    return found


def handlers(authenticator) -> list[tuple]:
    """The onboarding routes, if the authenticator onboards (local accounts, a mailer)."""
    if not hasattr(authenticator, "mailer") or not configured(authenticator)[0].enabled:
        return []
    settings = configured(authenticator)[0]
    unknown = sorted(set(settings.tiers) - set(authenticator.store.tiers.names()))
    if unknown:
        authenticator.log.warning(
            "c.Onboarding.tiers names tiers that do not exist (not offered): %s", unknown
        )
    template_vars = getattr(authenticator.parent, "template_vars", None)
    if template_vars is not None:  # login.html links to /hub/onboard
        template_vars.setdefault("fedhub_onboarding", True)
    return [
        (r"/onboard", OnboardPage),
        (r"/onboard/verify", OnboardVerifyPage),
        (r"/onboard/status", OnboardStatusPage),
        (r"/api/fedhub/onboard", OnboardAPIHandler),
        (r"/api/fedhub/onboard/verify", OnboardVerifyAPIHandler),
        (r"/api/fedhub/onboard/status", OnboardStatusAPIHandler),
    ]
