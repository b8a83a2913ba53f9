"""Invoices as HTML (Jinja2, autoescaped) and PDF (WeasyPrint renders that same HTML).

One template serves both, so what a tenant admin sees in the browser is what the
PDF says. WeasyPrint needs Pango from the system (Debian: ``libpango-1.0-0``,
``libpangoft2-1.0-0``) and a font (``fonts-dejavu-core``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from fedhub.db import parse_iso
from fedhub.extras import needs_extra

_env = Environment(
    loader=PackageLoader("fedhub.billing", "templates"),
    autoescape=select_autoescape(["html"]),
)


def _num(value: Any, places: int = 2) -> str:
    """A stored decimal for people: grouped, at most ``places`` decimals, no trailing zeros."""
    if value is None:
        return ""
    text = f"{Decimal(str(value)):,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


_env.filters["num"] = _num


def _by_user(doc: dict[str, Any]) -> list[tuple[str, str]]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in doc["lines"]:
        for user, share in line.get("attribution", {}).get("users", {}).items():
            if share.get("amount") is not None:
                totals[user] += Decimal(share["amount"])
    return [(u, str(a)) for u, a in sorted(totals.items())]


def invoice_branding(s, tenant: str) -> dict[str, Any] | None:
    """The tenant's branding as an invoice shows it: name, colour, and the logo as a ``data:``
    URI (a PDF fetches nothing); None when the tenant has none."""
    from fedhub.tenancy import branding

    view = branding.find(s, tenant)
    if view is None or not (view.display_name or view.primary_colour or view.has_logo):
        return None
    return {
        "display_name": view.display_name,
        "primary_colour": view.primary_colour,
        "logo": branding.logo_data_uri(s, tenant) if view.has_logo else None,
    }


def render_html(doc: dict[str, Any], branding: dict[str, Any] | None = None) -> str:
    """The invoice ``doc`` as HTML; ``branding`` (:func:`invoice_branding`) heads it."""
    title = f"Invoice {doc['number']}" if doc.get("number") else f"Draft invoice {doc['period']}"
    last = parse_iso(doc["period_end"]) - timedelta(days=1)
    return _env.get_template("invoice.html").render(
        doc=doc,
        title=title,
        by_user=_by_user(doc),
        period_last_day=f"{last:%Y-%m-%d}",
        branding=branding,
    )


def render_pdf(doc: dict[str, Any], branding: dict[str, Any] | None = None) -> bytes:
    with needs_extra("pdf", "PDF invoices"):
        from weasyprint import HTML  # imported here: it loads Pango

    return HTML(string=render_html(doc, branding)).write_pdf()
