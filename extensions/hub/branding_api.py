"""A tenant's branding through the hub: its API, its public logo, and the pages' variable.

    GET    /hub/api/fedhub/tenants/<slug>/branding        name, colour, support link, logo
    PUT    /hub/api/fedhub/tenants/<slug>/branding        {"display_name", "primary_colour",
                                                           "support_url"} (each may be null)
    DELETE /hub/api/fedhub/tenants/<slug>/branding        back to the hub's look -> 204
    PUT    /hub/api/fedhub/tenants/<slug>/branding/logo   the image as the body, with its
                                                          Content-Type (PNG, JPEG, WebP)
    DELETE /hub/api/fedhub/tenants/<slug>/branding/logo   -> 204
    GET    /hub/fedhub/branding/<slug>/logo               the logo, to anyone (no login)

The tenant's members read it (a token with ``custom:fedhub:tenant:read`` for the tenant);
its tenant admins and platform admins change it (``custom:fedhub:tenant:admin``); anyone
else is answered 404, as for a tenant that does not exist, like the hub's other
``/api/fedhub/tenants/<slug>/...`` endpoints (security_api.py). Every change is an audit
event (``tenant.branding_set``, ``tenant.branding_reset``, ``tenant.logo_set``,
``tenant.logo_cleared``). What is stored is checked by :mod:`fedhub.tenancy.branding`.

The hub's pages read the branding through the template variable ``fedhub_branding``
(:func:`install`; ``templates/page.html`` uses it): the signed-in user's tenant's, and on
the login page the one ``?tenant=<slug>`` names (only its name and logo, which are public
anyway; an unknown slug shows the plain page).
"""

from __future__ import annotations

import functools

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.handlers.login import LoginHandler
from tornado import web

from fedhub.db import rls
from fedhub.errors import InvalidRequest
from fedhub.extensions.hub.api import FedhubAPIHandler
from fedhub.tenancy import branding
from fedhub.tenancy.checks import SLUG_RE

API = r"/api/fedhub/tenants/([^/]+)/branding"
LOGO_PATH = r"/fedhub/branding/([^/]+)/logo"
TEMPLATE_VAR = "fedhub_branding"


class _BrandingAPI(FedhubAPIHandler):
    """Who may read and change which tenant's branding (:meth:`FedhubAPIHandler.caller`)."""

    def answer(self, view: branding.Branding) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish(view.to_json())


class BrandingAPIHandler(_BrandingAPI):
    def get(self, slug: str):
        self.caller(slug, "tenant:read")
        with rls.tenant(slug), self.store.session() as s:
            view = branding.get(s, slug)
        self.answer(view)

    def put(self, slug: str):
        info = self.caller(slug, "tenant:admin")
        body = self.body()
        fields = ("display_name", "primary_colour", "support_url")
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise InvalidRequest(
                f"unknown field(s) {', '.join(unknown)}; expected {', '.join(fields)}"
            )
        with rls.tenant(slug), self.store.session() as s:
            view = branding.set_branding(
                s, slug, **{f: body.get(f) for f in fields}, actor=info.username
            )
        self.audit(
            "tenant.branding_set",
            slug,
            info,
            {
                "display_name": view.display_name,
                "primary_colour": view.primary_colour,
                "support_url": view.support_url,
            },  # fmt: skip
        )
        self.answer(view)

    def delete(self, slug: str):
        info = self.caller(slug, "tenant:admin")
        with rls.tenant(slug), self.store.session() as s:
            branding.reset(s, slug)
        self.audit("tenant.branding_reset", slug, info, {})
        self.set_status(204)
        self.finish()


class LogoAPIHandler(_BrandingAPI):
    def put(self, slug: str):
        info = self.caller(slug, "tenant:admin")
        allowed = ", ".join(sorted(branding.LOGO_TYPES.values()))
        declared = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if declared not in branding.LOGO_TYPES.values():
            raise InvalidRequest(
                f"send the logo as the request body with Content-Type one of {allowed} "
                f"(got {declared or 'none'!r:.60})"
            )
        data = self.request.body or b""
        detected = branding.check_logo(data)
        if detected != declared:
            raise InvalidRequest(f"the file is {detected}, but was sent as {declared}")
        with rls.tenant(slug), self.store.session() as s:
            view = branding.set_logo(s, slug, data, actor=info.username)
        self.audit(
            "tenant.logo_set",
            slug,
            info,
            {"type": view.logo_type, "sha256": view.logo_sha256, "bytes": len(data)},
        )
        self.answer(view)

    def delete(self, slug: str):
        info = self.caller(slug, "tenant:admin")
        with rls.tenant(slug), self.store.session() as s:
            branding.clear_logo(s, slug, actor=info.username)
        self.audit("tenant.logo_cleared", slug, info, {})
        self.set_status(204)
        self.finish()


class PublicLogoHandler(BaseHandler):
    """``/hub/fedhub/branding/<slug>/logo``: the logo as stored, to anyone (the login page
    shows it before login), served so that a browser only ever shows it as an image."""

    _etag = None  # the logo's sha256, once one is found

    def compute_etag(self):
        return self._etag

    async def get(self, slug: str):
        found = None
        if SLUG_RE.fullmatch(slug):
            with rls.tenant(slug), self.authenticator.store.session() as s:
                found = branding.logo(s, slug)
        if found is None:  # no such tenant, or no logo: the same answer
            raise web.HTTPError(404)
        data, content_type, sha256 = found
        self._etag = f'"{sha256}"'
        self.set_header("Content-Type", content_type)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'")
        self.set_header("Cache-Control", "public, max-age=300")
        self.finish(data)  # tornado answers 304 when If-None-Match names the ETag


# -- the pages ----------------------------------------------------------------------------


def user_branding(authenticator, user) -> branding.Branding | None:
    """The branding of the signed-in ``user``'s tenant (None: no user, no tenant, no row)."""
    if user is None or isinstance(user, orm.Service):
        return None
    info = authenticator.store.user(user.name)
    if info is None or info.tenant is None:
        return None
    with rls.tenant(info.tenant), authenticator.store.session() as s:
        return branding.find(s, info.tenant)


def login_branding(authenticator, slug: str) -> branding.Branding | None:
    """What the login page shows for ``?tenant=<slug>``: only the public parts (name, logo)."""
    if not slug or not SLUG_RE.fullmatch(slug):
        return None
    with rls.tenant(slug), authenticator.store.session() as s:
        found = branding.find(s, slug)
    if found is None:
        return None
    return branding.Branding(
        found.tenant, display_name=found.display_name, logo_sha256=found.logo_sha256
    )


class BrandedLoginMixin:
    """A login handler whose page shows the tenant ``?tenant=<slug>`` names (its name and
    logo only). It changes nothing about who may log in, or into which tenant."""

    def render_template(self, name, **ns):
        if name == "login.html" and TEMPLATE_VAR not in ns:
            ns[TEMPLATE_VAR] = login_branding(self.authenticator, self.get_argument("tenant", ""))
        return super().render_template(name, **ns)


class BrandedLoginHandler(BrandedLoginMixin, LoginHandler):
    """JupyterHub's ``/login`` with the tenant's name and logo (the OIDC authenticator's)."""


def install(authenticator) -> list[tuple]:
    """Give the hub's pages ``fedhub_branding`` and return the routes to add.

    A template variable that is callable is called with the page's user (JupyterHub's
    ``template_vars``); an operator's own ``fedhub_branding`` is left alone.
    """
    app = authenticator.parent
    template_vars = getattr(app, "template_vars", None)
    if template_vars is not None and TEMPLATE_VAR not in template_vars:
        template_vars[TEMPLATE_VAR] = functools.partial(user_branding, authenticator)
    return [
        (API, BrandingAPIHandler),
        (API + "/logo", LogoAPIHandler),
        (LOGO_PATH, PublicLogoHandler),
    ]
