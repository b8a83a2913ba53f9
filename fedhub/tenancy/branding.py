"""A tenant's white-label branding: display name, primary colour, support link and logo.

One row per tenant (``fedhub_tenant_branding``, gone with the tenant). The hub shows it on
the pages the tenant's users see (the navigation bar, the login page reached through
``/hub/login?tenant=<slug>``), and the billing service on the tenant's invoices
(docs/branding.md). Everything here is checked before it is stored, so that what is read
back can go into a page as is:

- ``display_name``: at most 80 characters of printable text (pages escape it anyway);
- ``primary_colour``: ``#rrggbb`` and nothing else (it goes into a style sheet);
- ``support_url``: an ``https://`` or ``mailto:`` link of at most 500 characters;
- the logo: a PNG, JPEG or WebP image that Pillow decodes, at most 2048×2048 pixels and
  :data:`MAX_LOGO_BYTES`; anything else (SVG included: it can carry script) is refused.

Functions take a session, like :mod:`fedhub.tenancy.sessions`, and return plain values.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedhub.db.base import Base, utcnow
from fedhub.errors import FedhubError, InvalidRequest, NotFound
from fedhub.tenancy.models import Tenant

MAX_NAME = 80
MAX_URL = 500
MAX_LOGO_BYTES = 256 * 1024
MAX_LOGO_PIXELS = 2048
#: what Pillow calls each accepted format -> the Content-Type the logo is served with
LOGO_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
COLOUR_RE = re.compile(r"#[0-9a-f]{6}")


class LogoTooLarge(FedhubError, code="payload_too_large", status=413):
    """A logo over :data:`MAX_LOGO_BYTES`."""


class TenantBranding(Base):
    """A tenant's branding (every column but the tenant may be empty: the hub's defaults)."""

    __tablename__ = "fedhub_tenant_branding"

    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("fedhub_tenants.id", ondelete="CASCADE"), primary_key=True
    )
    display_name: Mapped[str | None] = mapped_column(String(MAX_NAME))
    primary_colour: Mapped[str | None] = mapped_column(String(7))
    support_url: Mapped[str | None] = mapped_column(String(MAX_URL))
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_type: Mapped[str | None] = mapped_column(String(16))
    logo_sha256: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    updated_by: Mapped[str | None] = mapped_column(String(255))


@dataclass(frozen=True)
class Branding:
    """A tenant's branding as plain values (no logo bytes: see :func:`logo`)."""

    tenant: str
    display_name: str | None = None
    primary_colour: str | None = None
    support_url: str | None = None
    logo_type: str | None = None
    logo_sha256: str | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def has_logo(self) -> bool:
        return self.logo_sha256 is not None

    @property
    def text_colour(self) -> str:
        """Black or white, whichever reads better on ``primary_colour`` (WCAG luminance)."""
        if not self.primary_colour:
            return "#000000"

        def linear(c: int) -> float:
            v = c / 255
            return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

        r, g, b = (int(self.primary_colour[i : i + 2], 16) for i in (1, 3, 5))
        luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
        # contrast with white is (1.05)/(L+0.05), with black (L+0.05)/0.05: equal at ~0.179
        return "#000000" if luminance > 0.179 else "#ffffff"

    def public(self) -> dict:
        """What anyone may see (the login page shows it before login): name and logo."""
        return {"tenant": self.tenant, "display_name": self.display_name, "logo": self.has_logo}

    def to_json(self) -> dict:
        return {
            "tenant": self.tenant,
            "display_name": self.display_name,
            "primary_colour": self.primary_colour,
            "support_url": self.support_url,
            "logo": (
                {"type": self.logo_type, "sha256": self.logo_sha256} if self.has_logo else None
            ),
            "updated_at": self.updated_at.isoformat() + "Z" if self.updated_at else None,
            "updated_by": self.updated_by,
        }


# -- checks -------------------------------------------------------------------------------


def check_display_name(value) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest("display_name must be a string")
    value = value.strip()
    if len(value) > MAX_NAME:
        raise InvalidRequest(f"display_name is longer than {MAX_NAME} characters")
    if not value.isprintable():
        raise InvalidRequest("display_name may hold printable characters only")
    return value or None


def check_colour(value) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not COLOUR_RE.fullmatch(value.lower()):
        raise InvalidRequest(
            f"primary_colour must be a colour written #rrggbb (e.g. #1f6feb), not {value!r:.40}"
        )
    return value.lower()


def check_support_url(value) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest("support_url must be a string")
    if len(value) > MAX_URL:
        raise InvalidRequest(f"support_url is longer than {MAX_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidRequest("support_url may not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.netloc:
        return value
    if parts.scheme == "mailto" and "@" in parts.path:
        return value
    raise InvalidRequest("support_url must be an https:// or mailto: link")


def check_logo(data: bytes) -> str:
    """The Content-Type of ``data`` if it is an acceptable logo; refuses anything else."""
    allowed = ", ".join(sorted(LOGO_TYPES.values()))
    if len(data) > MAX_LOGO_BYTES:
        raise LogoTooLarge(
            f"the logo is {len(data)} bytes; at most {MAX_LOGO_BYTES} bytes ({MAX_LOGO_BYTES // 1024} KiB)"
        )
    from PIL import Image  # imported here: only the hub's logo upload needs it

    refused = InvalidRequest(f"the logo must be an image of one of these types: {allowed}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # the header first: type and size are known before any pixel is decoded, so a
            # small file that claims huge dimensions is refused without inflating it
            with Image.open(io.BytesIO(data)) as image:
                kind, size = image.format, image.size
            if kind not in LOGO_TYPES:
                raise refused
            if max(size) > MAX_LOGO_PIXELS:
                raise InvalidRequest(
                    f"the logo is {size[0]}x{size[1]} pixels; "
                    f"at most {MAX_LOGO_PIXELS}x{MAX_LOGO_PIXELS}"
                )
            with Image.open(io.BytesIO(data)) as image:
                image.verify()  # the whole file, not only the header
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # verify() does not decode every format's pixels
    except InvalidRequest:
        raise
    except Exception:  # Pillow raises many kinds for a file it cannot read
        raise refused from None
    return LOGO_TYPES[kind]


# -- operations ---------------------------------------------------------------------------


def _tenant(s: Session, slug: str) -> Tenant:
    tenant = s.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def _view(slug: str, row: TenantBranding | None) -> Branding:
    if row is None:
        return Branding(slug)
    return Branding(
        tenant=slug,
        display_name=row.display_name,
        # read back through the check: a row written by hand cannot inject a style
        primary_colour=row.primary_colour
        if COLOUR_RE.fullmatch(row.primary_colour or "")
        else None,
        support_url=row.support_url,
        logo_type=row.logo_type if row.logo is not None else None,
        logo_sha256=row.logo_sha256 if row.logo is not None else None,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def get(s: Session, slug: str) -> Branding:
    """The tenant's branding (empty values when none is set); NotFound for no such tenant."""
    tenant = _tenant(s, slug)
    return _view(slug, s.get(TenantBranding, tenant.id))


def find(s: Session, slug: str) -> Branding | None:
    """The tenant's branding, or None for no such tenant (the pages: no error, no leak)."""
    row = s.execute(
        select(Tenant.slug, TenantBranding)
        .outerjoin(TenantBranding, TenantBranding.tenant_id == Tenant.id)
        .where(Tenant.slug == slug)
    ).first()
    return None if row is None else _view(row[0], row[1])


def _row(s: Session, slug: str, actor: str | None) -> TenantBranding:
    tenant = _tenant(s, slug)
    row = s.get(TenantBranding, tenant.id)
    if row is None:
        row = TenantBranding(tenant_id=tenant.id)
        s.add(row)
    row.updated_at = utcnow()
    row.updated_by = actor
    return row


def set_branding(
    s: Session,
    slug: str,
    *,
    display_name=None,
    primary_colour=None,
    support_url=None,
    actor: str | None = None,
) -> Branding:
    """Replace the tenant's name, colour and support link (None clears one); the logo stays.
    Every value is checked before anything is written."""
    values = (
        check_display_name(display_name),
        check_colour(primary_colour),
        check_support_url(support_url),
    )
    row = _row(s, slug, actor)
    row.display_name, row.primary_colour, row.support_url = values
    s.flush()
    return _view(slug, row)


def set_logo(s: Session, slug: str, data: bytes, *, actor: str | None = None) -> Branding:
    """Store ``data`` as the tenant's logo once :func:`check_logo` accepts it."""
    content_type = check_logo(data)
    row = _row(s, slug, actor)
    row.logo, row.logo_type = data, content_type
    row.logo_sha256 = hashlib.sha256(data).hexdigest()
    s.flush()
    return _view(slug, row)


def clear_logo(s: Session, slug: str, *, actor: str | None = None) -> Branding:
    row = _row(s, slug, actor)
    row.logo = row.logo_type = row.logo_sha256 = None
    s.flush()
    return _view(slug, row)


def reset(s: Session, slug: str) -> None:
    """Back to the hub's defaults: name, colour, link and logo all go."""
    tenant = _tenant(s, slug)
    s.execute(delete(TenantBranding).where(TenantBranding.tenant_id == tenant.id))


def logo(s: Session, slug: str) -> tuple[bytes, str, str] | None:
    """The tenant's logo as ``(bytes, content type, sha256)``, or None (no tenant, no logo)."""
    row = s.execute(
        select(TenantBranding.logo, TenantBranding.logo_type, TenantBranding.logo_sha256)
        .join(Tenant, TenantBranding.tenant_id == Tenant.id)
        .where(Tenant.slug == slug, TenantBranding.logo.is_not(None))
    ).first()
    return None if row is None else (bytes(row[0]), row[1], row[2])


def logo_data_uri(s: Session, slug: str) -> str | None:
    """The tenant's logo as a ``data:`` URI (invoices embed it: a PDF fetches nothing)."""
    found = logo(s, slug)
    if found is None:
        return None
    data, content_type, _ = found
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
