"""fedhub.tenancy.branding's checks and the invoice's branded header, on a SQLite file
(no hub): what may be stored, and what an invoice of each tenant shows."""

from __future__ import annotations

import io

import pytest

from fedhub import db
from fedhub.billing import subscriptions
from fedhub.billing.invoices import invoice_document
from fedhub.billing.models import Invoice
from fedhub.billing.operations import Billing
from fedhub.billing.render import invoice_branding, render_html, render_pdf
from fedhub.errors import FedhubError, InvalidRequest
from fedhub.metering import Usage, record
from fedhub.tenancy import branding
from fedhub.tenancy.store import TenantStore
from tests.harness import settled_period


def image(fmt="PNG", size=(64, 24), mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, (10, 120, 200)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, kind", [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                       ("WEBP", "image/webp")])  # fmt: skip
def test_accepted_logo_types(fmt, kind):
    assert branding.check_logo(image(fmt)) == kind


@pytest.mark.parametrize(
    "data, status",
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', 400),
        (b"GIF89a", 400),
        (image("GIF"), 400),  # a real image, of a type not accepted
        (image("PNG")[:40], 400),  # a truncated PNG
        (image(size=(2049, 1)), 400),
        (b"\0" * (branding.MAX_LOGO_BYTES + 1), 413),
    ],
)
def test_refused_logos(data, status):
    with pytest.raises(FedhubError) as e:
        branding.check_logo(data)
    assert e.value.status == status


def test_a_small_file_claiming_huge_dimensions_is_refused_before_decoding():
    """A PNG whose header says 8000x8000 (64 M pixels, under Pillow's own bomb limit) but holds a 1x1 image's data."""
    import struct
    import time
    import zlib

    data = bytearray(image(size=(1, 1)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 8000, 8000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="8000x8000 pixels"):
        branding.check_logo(bytes(data))
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("value", ["red", "#fff", "#c2185b;}", " #c2185b", "#c2185b\n", 7])
def test_only_rrggbb_colours(value):
    with pytest.raises(InvalidRequest):
        branding.check_colour(value)


def test_colours_and_links_that_are_kept():
    assert branding.check_colour("#C2185B") == "#c2185b"
    assert branding.check_support_url("mailto:help@acme.example") == "mailto:help@acme.example"
    for bad in (
        "javascript:alert(1)",
        "data:text/html,x",
        "https://",
        "//x.example",
        "https://a b",
    ):
        with pytest.raises(InvalidRequest):
            branding.check_support_url(bad)
    assert branding.Branding("a", primary_colour="#ffeb3b").text_colour == "#000000"
    assert branding.Branding("a", primary_colour="#0d47a1").text_colour == "#ffffff"


def test_an_invoice_shows_its_own_tenants_branding(tmp_path):
    url = f"sqlite:///{tmp_path / 'fedhub.sqlite'}"
    db.upgrade(url)
    store = TenantStore(url)
    for slug in ("acme", "globex"):
        store.create_tenant(slug)
    logo = image()
    last = settled_period()
    with db.session_scope(url) as s:
        branding.set_branding(s, "acme", display_name="Acme <Rockets>", primary_colour="#c2185b")
        branding.set_logo(s, "acme", logo)
        for tenant in ("acme", "globex"):
            subscriptions.record_change(s, tenant, "starter", at=last.start)
            record(s, [Usage(tenant, "cpu_seconds", 60, last.start, last.start, "t", tenant, "u")])
    Billing(url).close(last)
    with db.session_scope(url) as s:
        pages, pdfs = {}, {}
        for inv in s.query(Invoice).all():
            doc = invoice_document(s, inv)
            pages[doc["tenant"]] = render_html(doc, invoice_branding(s, doc["tenant"]))
            pdfs[doc["tenant"]] = render_pdf(doc, invoice_branding(s, doc["tenant"]))
        assert branding.logo(s, "acme")[0] == logo
    # the PDF embeds the logo (WeasyPrint decodes the data: URI): an image only in acme's
    assert b"/Subtype /Image" in pdfs["acme"] and b"/Subtype /Image" not in pdfs["globex"]
    acme, globex = pages["acme"], pages["globex"]
    assert "Acme &lt;Rockets&gt;" in acme and "<Rockets>" not in acme  # escaped
    assert "border-bottom: 1.5mm solid #c2185b" in acme
    assert 'id="tenant-logo" src="data:image/png;base64,' in acme
    assert "Acme" not in globex and "#c2185b" not in globex and "tenant-logo" not in globex
    # the tenant goes, and its branding with it
    store.delete_tenant("acme")
    with db.session_scope(url) as s:
        assert branding.find(s, "acme") is None
        assert s.query(branding.TenantBranding).count() == 0
    db.dispose_engines()
