"""Tenant branding on a real hub: the API (who may read and change whose), refusals of bad
input in fedhub's error shape with nothing stored, the public logo's headers, the hub
pages of two tenants' users in Chromium (screenshots in docs/img/), and an invoice.

One hub at a time for the module (the demo's tenants acme and globex and their people), on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import uuid

import pytest

from fedhub import db
from fedhub.billing import subscriptions
from fedhub.billing.operations import Billing
from fedhub.metering import Usage, record
from tests.browser import DOCS_IMG, browser, docs_screenshots  # noqa: F401
from tests.harness import settled_period, wait_for

XSRF = re.compile(r'xsrf_token: "[^"]*"')

pytestmark = pytest.mark.slow

API = "/hub/api/fedhub/tenants/{}/branding"
ACME = {"display_name": "Acme Rockets", "primary_colour": "#c2185b",
        "support_url": "https://help.acme.example/hub"}  # fmt: skip
GLOBEX = {"display_name": "Globex Research", "primary_colour": "#00796b",
          "support_url": "mailto:support@globex.example"}  # fmt: skip


def png(word="ACME", ink=(194, 24, 91), size=(160, 48), fmt="PNG") -> bytes:
    """A small real image (a logo: a word on white in the tenant's ink), made with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0] - 1, size[1] - 1), outline=ink, width=4)
    draw.text((size[0] // 2, size[1] // 2), word, fill=ink, anchor="mm",
              font=ImageFont.load_default(size=26))  # fmt: skip
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def hub(request, hub_factory):
    """The demo hub on SQLite, then on PostgreSQL (row-level security on the branding row:
    the handlers read and write it in the tenant's own scope)."""
    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("postgres").create_database(
            f"branding_{uuid.uuid4().hex[:8]}"
        )
    return hub_factory(db_url=db_url)


@pytest.fixture(scope="module")
def tokens(hub):
    # the demo has no analyst in globex: gina is one
    hub.fedhub("user", "add", "gina", "--tenant", "globex", "--role", "analyst",
               "--password", hub.password)  # fmt: skip
    people = ("admin", "acme-admin", "alice", "dave", "globex-admin", "bob", "gina")
    return {name: hub.token(name) for name in people}


def put_logo(hub, token, slug, data, content_type="image/png"):
    return hub.api("PUT", API.format(slug) + "/logo", token, data=data,
                   headers={"Content-Type": content_type})  # fmt: skip


def assert_error(r, status: int, code: str):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return body["error"]["message"]


def test_who_may_read_and_change_a_tenants_branding(hub, tokens):
    url = API.format("acme")
    r = hub.api("PUT", url, tokens["acme-admin"], json=ACME)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ACME} == ACME and r.json()["updated_by"] == "acme-admin"
    # the tenant's member and analyst read it, and may not change it
    for reader in ("alice", "dave"):
        r = hub.api("GET", url, tokens[reader])
        assert r.status_code == 200 and r.json()["display_name"] == "Acme Rockets", r.text
        assert_error(hub.api("PUT", url, tokens[reader], json=GLOBEX), 403, "forbidden")
        assert_error(hub.api("DELETE", url, tokens[reader]), 403, "forbidden")
        assert_error(put_logo(hub, tokens[reader], "acme", png()), 403, "forbidden")
        assert_error(hub.api("DELETE", url + "/logo", tokens[reader]), 403, "forbidden")
    # another tenant's admin, member and analyst: as if acme did not exist, for every method
    for other in ("globex-admin", "bob", "gina"):
        for method, kwargs in (("GET", {}), ("PUT", {"json": GLOBEX}), ("DELETE", {})):
            r = hub.api(method, url, tokens[other], **kwargs)
            assert_error(r, 404, "not_found")
            assert "Acme" not in r.text
        assert_error(put_logo(hub, tokens[other], "acme", png()), 404, "not_found")
        assert_error(hub.api("DELETE", url + "/logo", tokens[other]), 404, "not_found")
    assert_error(hub.api("GET", API.format("nosuch"), tokens["acme-admin"]), 404, "not_found")
    assert_error(hub.api("GET", url), 403, "forbidden")  # no token at all
    assert hub.api("GET", url, tokens["acme-admin"]).json()["display_name"] == "Acme Rockets"
    # a platform admin reads and changes any tenant's; an unknown tenant is 404
    r = hub.api("PUT", API.format("globex"), tokens["admin"], json=GLOBEX)
    assert r.status_code == 200 and r.json()["updated_by"] == "admin", r.text
    assert hub.api("GET", url, tokens["admin"]).json()["primary_colour"] == "#c2185b"
    assert_error(hub.api("GET", API.format("nosuch"), tokens["admin"]), 404, "not_found")
    # globex's admin changes only globex's
    r = hub.api("GET", API.format("globex"), tokens["globex-admin"])
    assert r.json()["display_name"] == "Globex Research", r.text


@pytest.mark.parametrize(
    "field, value",
    [
        ("primary_colour", "red;}"),
        ("primary_colour", "#c2185b;} body{display:none"),
        ("support_url", "javascript:alert(1)"),
        ("support_url", "http://help.acme.example"),
        ("support_url", "https://x.example/" + "a" * 500),
        ("display_name", "A" * 81),
        ("display_name", "Acme\nRockets"),
        ("display_name", 42),
    ],
)
def test_bad_values_are_refused_and_nothing_is_stored(hub, tokens, field, value):
    url = API.format("acme")
    before = hub.api("GET", url, tokens["acme-admin"]).json()
    message = assert_error(
        hub.api("PUT", url, tokens["acme-admin"], json={**ACME, field: value}),
        400,
        "invalid_request",
    )
    assert field in message
    assert hub.api("GET", url, tokens["acme-admin"]).json() == before


def test_logos_are_checked_and_served_safely(hub, tokens):
    admin = tokens["acme-admin"]
    good = png()
    r = put_logo(hub, admin, "acme", good)
    assert r.status_code == 200, r.text
    assert r.json()["logo"] == {"type": "image/png", "sha256": hashlib.sha256(good).hexdigest()}
    # refused, and the stored logo is untouched
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    text = b"this is not an image, whatever the header says\n" * 10
    huge = b"\x89PNG\r\n\x1a\n" + b"\0" * (256 * 1024)
    for data, content_type, status, code in (
        (svg, "image/svg+xml", 400, "invalid_request"),
        (svg, "image/png", 400, "invalid_request"),
        (text, "image/png", 400, "invalid_request"),
        (png(fmt="JPEG"), "image/png", 400, "invalid_request"),  # a JPEG labelled PNG
        (png(size=(2049, 40)), "image/png", 400, "invalid_request"),
        (huge, "image/png", 413, "payload_too_large"),
    ):
        message = assert_error(put_logo(hub, admin, "acme", data, content_type), status, code)
        if status == 400 and content_type != "image/png":
            assert "image/jpeg, image/png, image/webp" in message
    webp = png("GLOBEX", ink=(0, 121, 107), fmt="WEBP")
    r = put_logo(hub, tokens["globex-admin"], "globex", webp, "image/webp")
    assert r.status_code == 200 and r.json()["logo"]["type"] == "image/webp", r.text

    # the public logo: no login, the stored bytes and type, headers that keep it an image
    r = hub.api("GET", "/hub/fedhub/branding/acme/logo")
    assert r.status_code == 200 and r.content == good
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Security-Policy"] == "default-src 'none'"
    assert "max-age" in r.headers["Cache-Control"]
    etag = r.headers["ETag"]
    assert etag == f'"{hashlib.sha256(good).hexdigest()}"'
    r = hub.api("GET", "/hub/fedhub/branding/acme/logo", headers={"If-None-Match": etag})
    assert r.status_code == 304 and not r.content
    # a tenant without a logo and one that does not exist answer the same
    assert (
        hub.api("DELETE", API.format("globex") + "/logo", tokens["globex-admin"]).status_code == 204
    )
    missing = [hub.api("GET", f"/hub/fedhub/branding/{s}/logo") for s in ("globex", "nosuch")]
    assert [r.status_code for r in missing] == [404, 404]
    # the same page but for the name (and the page's own _xsrf token, which is timestamped)
    pages = [
        XSRF.sub("", r.text.replace(s, "X"))
        for r, s in zip(missing, ("globex", "nosuch"), strict=True)
    ]
    assert pages[0] == pages[1]
    assert put_logo(hub, tokens["globex-admin"], "globex", webp, "image/webp").status_code == 200


def test_changes_are_audited(hub, tokens):
    admin = tokens["admin"]
    url = "/services/audit/api/v1/events?tenant=acme&action={}"

    def seen(action):
        r = hub.api("GET", url.format(action), admin)
        return r.status_code == 200 and r.json()["events"]

    for action in ("tenant.branding_set", "tenant.logo_set"):
        events = wait_for(lambda a=action: seen(a), 60, 0.5, action)
        assert events[0]["actor"] == "acme-admin" and events[0]["tenant"] == "acme"


def test_hub_pages_show_the_users_tenants_branding(hub, tokens, browser, tmp_path):  # noqa: F811
    acme_sha = hub.api("GET", API.format("acme"), tokens["acme-admin"]).json()["logo"]["sha256"]
    for user, slug, own, other in (
        ("alice", "acme", ACME, GLOBEX),
        ("bob", "globex", GLOBEX, ACME),
    ):
        page = browser.new_page(viewport={"width": 1000, "height": 560})
        # the login page through ?tenant=: the tenant's name and logo (public), no colour
        page.goto(f"{hub.url}/hub/login?tenant={slug}&next=/hub/home")
        logo = page.locator("#fedhub-tenant-logo")
        assert f"/hub/fedhub/branding/{slug}/logo" in logo.get_attribute("src")
        assert page.locator("#fedhub-tenant-name").inner_text() == own["display_name"]
        assert page.locator("#fedhub-branding-style").count() == 0
        if docs_screenshots() and slug == "acme":
            page.screenshot(path=str(DOCS_IMG / "branding-login-acme.png"))
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", hub.password)
        page.click("#login_submit")
        page.wait_for_url("**/hub/home", timeout=30_000)
        # the user's own tenant's logo (loaded), name, colour and support link
        logo = page.locator("#fedhub-tenant-logo")
        assert f"/hub/fedhub/branding/{slug}/logo" in logo.get_attribute("src")
        assert logo.evaluate("img => img.complete && img.naturalWidth") == 160
        assert page.locator("#fedhub-tenant-name").inner_text() == own["display_name"]
        assert page.locator("#fedhub-support-link").get_attribute("href") == own["support_url"]
        background = page.locator("nav.navbar").evaluate("n => getComputedStyle(n).backgroundColor")
        assert background == rgb(own["primary_colour"]), background
        # and nothing of the other tenant's
        html = page.content()
        assert other["display_name"] not in html and other["primary_colour"] not in html
        assert other["support_url"] not in html
        assert (acme_sha[:16] in html) == (slug == "acme")
        path = DOCS_IMG if docs_screenshots() else tmp_path
        page.screenshot(path=str(path / f"branding-{slug}.png"))
        page.close()
    # an unknown tenant's login page is the plain one: no error, no name
    page = browser.new_page()
    r = page.goto(f"{hub.url}/hub/login?tenant=nosuch")
    assert r.status == 200 and page.locator("#fedhub-tenant-logo").count() == 0
    assert page.locator("#fedhub-tenant-name").count() == 0
    page.close()


def rgb(colour: str) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def test_invoices_carry_their_tenants_branding(hub, tokens):
    last = settled_period()
    with db.session_scope(hub.db_url) as s:
        for tenant, tier, user in (("acme", "professional", "alice"), ("globex", "starter", "bob")):
            subscriptions.record_change(s, tenant, tier, at=last.start)
            usage = Usage(
                tenant, "cpu_seconds", 3600, last.start, last.start, "t", f"b-{tenant}", user
            )
            record(s, [usage])
    Billing(hub.db_url).close(last)
    acme_logo = hub.api("GET", "/hub/fedhub/branding/acme/logo").content
    api = "/services/billing/api/v1/invoices"
    acme_uri = "data:image/png;base64," + base64.b64encode(acme_logo).decode()
    for tenant, own, other in (("acme", ACME, GLOBEX), ("globex", GLOBEX, ACME)):
        token = tokens[f"{tenant}-admin"]
        listing = f"{api}?tenant={tenant}"
        r = wait_for(lambda u=listing, k=token: (x := hub.api("GET", u, k)).ok and x,
                     60, 0.5, "billing service")  # fmt: skip
        [invoice] = [i for i in r.json()["invoices"] if i["period"] == last.name]
        r = hub.api("GET", f"{api}/{invoice['id']}.html", token)
        assert r.status_code == 200, r.text
        assert own["display_name"] in r.text and own["primary_colour"] in r.text
        assert other["display_name"] not in r.text and other["primary_colour"] not in r.text
        assert (acme_uri in r.text) == (tenant == "acme")
        assert 'id="tenant-logo"' in r.text  # globex's own logo (WebP)
        # another tenant's admin cannot read it (404, as for an invoice that does not exist)
        stranger = tokens["globex-admin" if tenant == "acme" else "acme-admin"]
        r = hub.api("GET", f"{api}/{invoice['id']}.html", stranger)
        assert r.status_code == 404 and own["display_name"] not in r.text
