"""The storefront: HTML pages of the marketplace service at ``/services/marketplace/``.

Browse, an asset's card, My licences (refund, upgrade), Publisher (new version, delist),
Publish (a new asset or version, the file read in the browser), the Review queue and
Payouts (platform admins: every publisher's statements, mark paid). A browser without
a session is sent through the hub's OAuth login (``HubOAuthenticated``); the pages are
shells that ``static/marketplace.js`` fills from the service's own JSON API with
``fetch()`` (the HubOAuth cookie and the ``_xsrf`` token JupyterHub's services check on
every cookie-authenticated fetch), so every button is an API call and no page decides
on its own who may do what: a refusal shows the API's message. The one read made here
is an asset's, so a page the caller may not see is a 404 page (no name, no leak).
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jinja2
from jupyterhub.utils import url_path_join
from tornado import web

from fedhub.db import rls
from fedhub.errors import FedhubError
from fedhub.tenancy import branding

from .handlers import MarketHandler

#: the permission PurchaseHandler requires: the page offers Buy to those who hold it (the
#: API still decides, and a refusal shows its message)
BUY = "marketplace:buy"
HERE = Path(__file__).parent
STATIC = HERE / "static"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class PageHandler(MarketHandler):
    """A storefront page. Errors are pages too: the API's message, never a traceback."""

    page = ""
    template = ""

    def prepare(self):
        # a page view is not an API call: no metering, no rate limit; the page's
        # fetch() calls are counted by the API handlers like any other call
        rls.enter(self.rls_scope(self.get_current_user()))

    @web.authenticated
    async def get(self, *args: str):
        await self.check(*args)
        theme = await self.theme(self.caller.tenant)
        self.finish(self.render(self.template, theme=theme, slug=args[0] if args else ""))

    async def check(self, *args: str) -> None:
        """What the page must know before it is shown (nothing, but for an asset's)."""

    def render(self, template: str, theme: branding.Branding | None = None, **ns: Any) -> str:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/marketplace/")
        caller = getattr(self, "_caller", None)
        token = self.xsrf_token if caller else b""
        ns = {
            "page": self.page,
            "prefix": prefix,
            "api": url_path_join(prefix, "api/v1/"),
            "hub": self.hub_auth.hub_prefix,
            "static": lambda name: f"{url_path_join(prefix, 'static', name)}?v={version('fedhub')}",
            "user": caller.name if caller else None,
            "tenant": caller.tenant if caller else None,
            "platform_admin": bool(caller and caller.is_platform_admin),
            "may_buy": bool(caller and caller.can(BUY)),
            "theme": theme,
            "xsrf_token": token.decode() if isinstance(token, bytes) else token,
            **ns,
        }
        return _TEMPLATES.get_template(template).render(**ns)

    async def theme(self, tenant: str | None) -> branding.Branding | None:
        """The tenant's colours, name and logo, as the hub's own pages show them (None: plain)."""
        if not tenant:
            return None

        def read():
            with rls.tenant(tenant), self.market.tenants.session() as s:
                return branding.find(s, tenant)

        found = await self.run(read)
        if found and (found.primary_colour or found.display_name or found.logo_sha256):
            return found
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The error as a page in the storefront's frame (plain colours): the API's
        message for a refusal, a fixed sentence for anything unexpected."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FedhubError):
            message = exc.message
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            message = exc.log_message % exc.args if exc.log_message else self._reason
        else:
            message = "Something went wrong on our side; the service logged it."
        self.set_header("Content-Type", "text/html; charset=utf-8")
        try:
            html = self.render("error.html", status=status_code, message=message)
        except Exception:  # the error page itself failed: a line of text, still no traceback
            self.log.exception("storefront error page")
            html = f"{status_code}: the page could not be shown"
        self.finish(html)


class BrowsePage(PageHandler):
    page, template = "browse", "browse.html"


class AssetPage(PageHandler):
    page, template = "asset", "asset.html"

    async def check(self, slug: str) -> None:
        # the same read as GET api/v1/assets/<slug>: a 404 for what the caller may not see
        await self.run(self.market.asset, self.actor, slug)


class LicencesPage(PageHandler):
    page, template = "licences", "licences.html"


class PublisherPage(PageHandler):
    page, template = "publisher", "publisher.html"


class PublishPage(PageHandler):
    """A new asset, or (``?asset=<slug>``) a new version of an own one: a form whose file
    the browser reads and sends as ``content_base64`` to ``POST assets`` or
    ``POST assets/<slug>/versions``; the API checks everything."""

    page, template = "publish", "publish.html"


class ReviewQueuePage(PageHandler):
    page, template = "review", "review.html"


class PayoutsPage(PageHandler):
    """Every publisher's statements (``GET payouts`` answers platform admins with all)."""

    page, template = "payouts", "payouts.html"


class StaticHandler(web.StaticFileHandler):
    """The storefront's script and style sheet (no CDN: nothing comes from elsewhere)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")


ROUTES = [
    (r"", BrowsePage),
    (r"asset/([^/]{1,200})", AssetPage),
    (r"licences", LicencesPage),
    (r"publisher", PublisherPage),
    (r"publish", PublishPage),
    (r"review", ReviewQueuePage),
    (r"payouts", PayoutsPage),
    (r"static/(.*)", StaticHandler, {"path": str(STATIC)}),
]
