"""The two consoles: hub pages for the people who run an organisation and the platform.

    /hub/fedhub/console                 a tenant admin's console (their own tenant)
    /hub/fedhub/console?tenant=<slug>   a platform admin's view of any tenant's console
    /hub/fedhub/platform                the platform admin's console
    /hub/fedhub/static/<file>           the consoles' script (one file per console) and
                                        plotly.js, served from the installed ``plotly`` package

A page shows what the stores hold (:mod:`.console_data`) and offers actions; every action
is a ``fetch()`` from the page's script to the tenancy API (``/hub/api/fedhub/...``) with
the hub's cookie and ``_xsrf`` token (the ``X-XSRFToken`` header JupyterHub's own admin
page sends), so the console can do nothing the API, and hence the CLI, cannot.

Who may open which: a tenant admin their own tenant's console (another tenant's is 404, as
for a tenant that does not exist); a platform admin every tenant's and the platform
console; members, analysts and anyone fedhub does not know neither (403). The navigation
bar links to the consoles the signed-in user may open (template variable
``fedhub_consoles``, set like ``fedhub_branding``).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from tornado import web

from fedhub.clock import get_clock
from fedhub.errors import FedhubError
from fedhub.extensions.hub.tenancy_api import console_data
from fedhub.tenancy.checks import SLUG_RE
from fedhub.tenancy.models import Role

CONSOLE_PATH = "fedhub/console"
PLATFORM_PATH = "fedhub/platform"
STATIC_PATH = "fedhub/static"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
TEMPLATE_VAR = "fedhub_consoles"


def plotly_js() -> Path | None:
    """plotly.js as the installed ``plotly`` package ships it (no CDN), or None when the
    package is not installed (it comes with ``fedhub[notebook]``): the consoles then show
    their numbers as tables only."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def as_json(value) -> str:
    """``value`` as JSON safe to put inside a ``<script type="application/json">`` (the
    templates mark it ``| safe``): no ``<``, ``>`` or ``&`` can end the element."""
    text = json.dumps(value, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _ConsolePage(BaseHandler):
    @property
    def store(self):
        return self.authenticator.store

    def viewer(self):
        """The signed-in user's fedhub membership (403 for a hub user fedhub does not know)."""
        info = self.store.user(self.current_user.name)
        if info is None:
            raise web.HTTPError(403, "Only an organisation's admins may open its console.")
        return info

    async def render_console(self, template: str, data: dict, chart: dict, **ns) -> None:
        """The page, with ``chart`` (what the charts plot) as JSON for its script."""
        html = await self.render_template(
            template,
            data=data,
            chart_json=as_json(chart),
            charts=plotly_js() is not None,
            static=f"{self.hub.base_url}{STATIC_PATH}",
            **ns,
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(html)


class TenantConsoleHandler(_ConsolePage):
    """``/hub/fedhub/console``: members, invitations, teams, requests, usage, cost, budget,
    branding and recent audit events of one tenant."""

    @web.authenticated
    async def get(self):
        info = self.viewer()
        asked = self.get_argument("tenant", "")
        if info.is_platform_admin:
            if not asked:
                return self.redirect(f"{self.hub.base_url}{PLATFORM_PATH}")
            slug = asked
        elif info.role == Role.TENANT_ADMIN:
            if asked and asked != info.tenant:
                raise web.HTTPError(404, "No such organisation.")
            slug = info.tenant
        else:
            raise web.HTTPError(403, "Only an organisation's admins may open its console.")
        if not SLUG_RE.fullmatch(slug):
            raise web.HTTPError(404, "No such organisation.")
        try:
            data = console_data.tenant_console(
                self.store, slug, info, get_clock().now(), self.authenticator.config
            )
        except FedhubError as e:
            raise web.HTTPError(e.status, e.message) from None
        chart = {
            "usage": data["usage"],
            "costs": data["costs"],
            "monthly_price": data["tenant"]["monthly_price"],
            "budget": data["budget"]["monthly_limit"] if data["budget"] else None,
        }
        await self.render_console("console.html", data, chart, viewer=info)


class PlatformConsoleHandler(_ConsolePage):
    """``/hub/fedhub/platform``: every tenant, revenue, pending requests, tiers."""

    @web.authenticated
    async def get(self):
        info = self.viewer()
        if not info.is_platform_admin:
            raise web.HTTPError(403, "Only platform admins may open the platform console.")
        data = console_data.platform_console(
            self.store, info, get_clock().now(), self.authenticator.config
        )
        chart = {
            "tenants": [r["slug"] for r in data["tenants"]],
            "this_month": [r["this_month"] for r in data["tenants"]],
            "last_month": [r["last_month"] or "0" for r in data["tenants"]],
            "period": data["period"],
            "last_period": data["last_period"],
        }
        await self.render_console("platform_console.html", data, chart, viewer=info)


class ConsoleStaticHandler(web.StaticFileHandler):
    """The consoles' scripts (``static/``), and ``plotly.min.js`` from the plotly package."""

    FILES = ("console.js", "platform.js", "plotly.min.js")

    def initialize(self):
        super().initialize(path=str(STATIC_DIR))

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        if path == "plotly.min.js":
            found = plotly_js()
            return str(found) if found else str(Path(root) / "missing-plotly.min.js")
        return super().get_absolute_path(root, path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if self.path_args and self.path_args[0] not in self.FILES:
            raise web.HTTPError(404)
        if self.path_args and self.path_args[0] == "plotly.min.js":
            if not Path(absolute_path).is_file():
                raise web.HTTPError(404)
            return absolute_path
        return super().validate_absolute_path(root, absolute_path)


def consoles_of(authenticator, user) -> dict | None:
    """Which consoles the navigation bar links to for ``user`` (None: neither)."""
    if user is None or isinstance(user, orm.Service):
        return None
    info = authenticator.store.user(user.name)
    if info is None:
        return None
    if info.is_platform_admin:
        return {"tenant": False, "platform": True}
    if info.role == Role.TENANT_ADMIN:
        return {"tenant": True, "platform": False}
    return None


def handlers(authenticator) -> list[tuple]:
    """Give the hub's pages ``fedhub_consoles`` and return the consoles' routes."""
    app = authenticator.parent
    template_vars = getattr(app, "template_vars", None)
    if template_vars is not None and TEMPLATE_VAR not in template_vars:
        template_vars[TEMPLATE_VAR] = functools.partial(consoles_of, authenticator)
    return [
        (f"/{CONSOLE_PATH}", TenantConsoleHandler),
        (f"/{PLATFORM_PATH}", PlatformConsoleHandler),
        (rf"/{STATIC_PATH}/(.*)", ConsoleStaticHandler),
    ]
