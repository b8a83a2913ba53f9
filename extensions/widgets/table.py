"""A paginated table: dashboards stay usable with hundreds of rows (500 experiments).

The browser receives one page of HTML at a time; the rows stay in the kernel. Every cell
goes through ``html.escape`` (names are typed by tenants' members).

    PagedTable(["id", "name"], [[e.id, e.name] for e in runs], page_size=25)

``table_class`` names the ``<table>`` for stylesheets and browser tests.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from fedhub.extras import needs_extra

with needs_extra("notebook", "fedhub's widgets"):
    import ipywidgets as widgets

__all__ = ["PagedTable", "page_count", "page_rows"]


def page_count(total: int, page_size: int) -> int:
    """Pages needed for ``total`` rows; an empty table still has one (empty) page."""
    return max(1, math.ceil(total / page_size))


def page_rows(rows: Sequence, page: int, page_size: int) -> Sequence:
    """The rows of page ``page`` (0-based), clamped to the pages that exist."""
    page = min(max(page, 0), page_count(len(rows), page_size) - 1)
    return rows[page * page_size : (page + 1) * page_size]


class PagedTable(widgets.VBox):
    """An HTML table with previous/next buttons and a "page i of n" label."""

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence],
        page_size: int = 25,
        table_class: str = "fedhub-table",
        **kwargs,
    ) -> None:
        self.columns = list(columns)
        self.table_class = table_class
        self.rows = list(rows)
        self.page_size = page_size
        self.page = 0
        self.table = widgets.HTML()
        self.label = widgets.Label()
        self.previous = widgets.Button(description="Previous", icon="chevron-left")
        self.next = widgets.Button(description="Next", icon="chevron-right")
        self.previous.on_click(lambda _b: self.show(self.page - 1))
        self.next.on_click(lambda _b: self.show(self.page + 1))
        pager = widgets.HBox([self.previous, self.label, self.next])
        super().__init__([self.table, pager], **kwargs)
        self.add_class("fedhub-paged-table")
        self.show(0)

    @property
    def pages(self) -> int:
        return page_count(len(self.rows), self.page_size)

    def show(self, page: int) -> None:
        """Render page ``page`` (clamped) and enable the buttons that lead somewhere."""
        self.page = min(max(page, 0), self.pages - 1)
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in page_rows(self.rows, self.page, self.page_size)
        )
        self.table.value = (
            f"<table class='{html.escape(self.table_class)}' data-page='{self.page + 1}' data-pages='{self.pages}'>"
            f"<tr>{head}</tr>{body}</table>"
        )
        self.label.value = f"page {self.page + 1} of {self.pages} · {len(self.rows)} rows"
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1
