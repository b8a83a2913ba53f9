"""The formats a run's outputs come in: the executed notebook, its HTML, its PDF.

``ipynb`` is always written (papermill's executed notebook, the record of the run);
``html`` is nbconvert's rendering; ``pdf`` is WeasyPrint's rendering of that same HTML,
as invoices are (:mod:`fedhub.billing.render`), so it needs the ``pdf`` extra. The service
checks the renderer when a job asks for ``pdf`` (:func:`check`), so a hub without it
refuses the job with a 400 instead of failing every run.
"""

from __future__ import annotations

from pathlib import Path

from fedhub.errors import InvalidRequest
from fedhub.extras import MissingExtra, needs_extra

MEDIA_TYPES = {"ipynb": "application/x-ipynb+json", "html": "text/html", "pdf": "application/pdf"}
DEFAULT = ["ipynb", "html"]


def check(formats: list[str]) -> list[str]:
    """The job's formats in a fixed order, ``ipynb`` always among them; 400 for an unknown
    one, or for ``pdf`` where WeasyPrint cannot be loaded."""
    unknown = sorted(set(formats) - set(MEDIA_TYPES))
    if unknown:
        raise InvalidRequest(f"unknown output format {', '.join(unknown)}: the formats are "
                             + ", ".join(MEDIA_TYPES))  # fmt: skip
    if "pdf" in formats:
        try:
            with needs_extra("pdf", "PDF output"):
                import weasyprint  # noqa: F401  (loads Pango: the renderer really works)
        except (MissingExtra, OSError) as e:
            raise InvalidRequest(f"this hub cannot render PDF ({e}); ask its operator, "
                                 "or choose ipynb and html") from None  # fmt: skip
    return [f for f in MEDIA_TYPES if f == "ipynb" or f in formats]


def no_fetch(url: str, *args, **kwargs):
    """WeasyPrint's fetcher for a run's HTML: nothing outside it is loaded (the HTML is
    the owner's, and a run has no business reaching the network while it is rendered)."""
    raise ValueError(f"not loaded: {url[:80]}")


def render(executed: Path, formats: list[str]) -> None:
    """``notebook.html`` and ``notebook.pdf`` next to the executed notebook, as asked."""
    if not {"html", "pdf"} & set(formats):
        return
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    if "html" in formats:
        executed.with_suffix(".html").write_text(body)
    if "pdf" in formats:
        with needs_extra("pdf", "PDF output"):
            from weasyprint import HTML  # imported here: it loads Pango
        HTML(string=body, url_fetcher=no_fetch).write_pdf(executed.with_suffix(".pdf"))
