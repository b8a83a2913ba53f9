"""My scheduled jobs and their last results, as a widget for JupyterLab.

    from fedhub.client import scheduler
    scheduler.jobs_widget()          # a Refresh button over a paginated table

One row per job: its name, notebook, schedule, next run, and its last run's status, time,
outputs and error. The rows come from the notebook client (``load`` returns ``(job,
last_run)`` pairs of plain API dicts), so the widget makes no HTTP call of its own and is
tested with the real client on a real hub (tests/scheduler/test_widget.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fedhub.extras import needs_extra

from .table import PagedTable

with needs_extra("notebook", "fedhub's widgets"):
    import ipywidgets as widgets

__all__ = ["COLUMNS", "JobsWidget", "job_row"]

COLUMNS = ["job", "notebook", "schedule", "next run (UTC)", "last run", "status", "outputs",
           "error"]  # fmt: skip


def job_row(job: dict, last: dict | None) -> list[str]:
    """One table row from a job and its newest run (None: it has not run yet)."""
    when = job.get("cron") or f"once at {job.get('at')}"
    if job.get("paused"):
        when += " (paused)"
    last = last or {}
    return [
        job["name"],
        job["notebook"],
        f"{when} {job['timezone']}",
        job.get("next_run_at") or "-",
        last.get("scheduled_for") or "never",
        last.get("status") or "-",
        ", ".join(last.get("outputs") or []) or "-",
        (last.get("error") or "")[:200],
    ]


class JobsWidget(widgets.VBox):
    """A Refresh button over a :class:`PagedTable` of jobs and their last results."""

    def __init__(self, load: Callable[[], Sequence[tuple[dict, dict | None]]],
                 page_size: int = 25, **kwargs) -> None:  # fmt: skip
        self.load = load
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.table = PagedTable(COLUMNS, [], page_size=page_size,
                                table_class="fedhub-scheduler-jobs")  # fmt: skip
        super().__init__([self.refresh_button, self.table], **kwargs)
        self.add_class("fedhub-scheduler-jobs-widget")
        self.refresh()

    def refresh(self) -> None:
        self.table.rows = [job_row(job, last) for job, last in self.load()]
        self.table.show(self.table.page)
