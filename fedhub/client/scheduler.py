"""Schedule notebooks from a notebook: they run as you, whether or not your server is up.

    from fedhub.client import scheduler
    job = scheduler.schedule("reports/daily.ipynb", cron="0 7 * * 1-5",
                             timezone="Europe/Paris", parameters={"region": "EU"})
    job.run_now()
    job.runs()[0].status       # 'succeeded', 'failed', ...
    scheduler.schedule("usage", at="2026-12-24T18:00", timezone="Europe/Paris")  # once
    scheduler.jobs()
    scheduler.jobs_widget()    # your jobs and their last results, in JupyterLab

``notebook`` is a path in your home or a bundled report's name (``"usage"``). Outputs are
written to ``~/reports/<job>/<run>/`` (the executed notebook and its HTML); the service
serves them too (:meth:`Run.output`). The core package ``fedhub.scheduler`` is the
service's side; this module only speaks HTTP to it.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from . import request

__all__ = ["Job", "Run", "schedule", "jobs", "get", "jobs_widget"]

SERVICE = "scheduler"


def _call(method: str, path: str, **kw) -> Any:
    return request(method, path, service=SERVICE, **kw)


class Run:
    """One execution of a job."""

    def __init__(self, data: dict) -> None:
        self.info = data

    id = property(lambda self: self.info["id"])
    status = property(lambda self: self.info["status"])
    error = property(lambda self: self.info.get("error"))

    def refresh(self) -> Run:
        self.info = _call("GET", f"api/v1/runs/{self.id}")
        return self

    def cancel(self) -> Run:
        self.info = _call("POST", f"api/v1/runs/{self.id}/cancel")
        return self

    def output(self, name: str = "notebook.html") -> bytes:
        """The executed notebook (``notebook.ipynb``) or its HTML or PDF (``notebook.html``, ``notebook.pdf``)."""
        return _call("GET", f"api/v1/runs/{self.id}/outputs/{name}", raw=True).content

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.status}>"


class Job:
    """A scheduled notebook."""

    def __init__(self, data: dict) -> None:
        self.info = data

    id = property(lambda self: self.info["id"])
    name = property(lambda self: self.info["name"])

    def run_now(self) -> Run:
        return Run(_call("POST", f"api/v1/jobs/{self.id}/run"))

    def runs(self, limit: int = 100) -> list[Run]:
        """The job's runs, newest first."""
        data = _call("GET", f"api/v1/jobs/{self.id}/runs", params={"limit": limit})
        return [Run(r) for r in data["runs"]]

    def pause(self) -> Job:
        self.info = _call("PATCH", f"api/v1/jobs/{self.id}", json={"paused": True})
        return self

    def resume(self) -> Job:
        self.info = _call("PATCH", f"api/v1/jobs/{self.id}", json={"paused": False})
        return self

    def delete(self) -> None:
        _call("DELETE", f"api/v1/jobs/{self.id}")

    def __repr__(self) -> str:
        when = self.info.get("cron") or f"once at {self.info.get('at')}"
        return f"<Job {self.id} {self.name!r} {when} {self.info['timezone']}>"


def schedule(notebook: str, cron: str | None = None, *, at: str | datetime | None = None,
             parameters: dict | None = None, timezone: str = "UTC", **options: Any) -> Job:  # fmt: skip
    """Schedule ``notebook`` on ``cron``, or once ``at`` a date and time (a datetime or an
    ISO string, read in ``timezone`` unless it has an offset). Options: ``name``,
    ``timeout_seconds``, ``notify``."""
    body = {"notebook": notebook, "timezone": timezone, "parameters": parameters or {},
            **options}  # fmt: skip
    if cron is not None:
        body["cron"] = cron
    if at is not None:
        body["at"] = at.isoformat() if isinstance(at, datetime) else at
    return Job(_call("POST", "api/v1/jobs", json=body))


def jobs(limit: int = 100) -> list[Job]:
    """Your tenant's scheduled jobs, newest first."""
    return [Job(j) for j in _call("GET", "api/v1/jobs", params={"limit": limit})["jobs"]]


def get(job_id: str) -> Job:
    return Job(_call("GET", f"api/v1/jobs/{job_id}"))


def my_jobs_with_last_run(
    user: str | None = None, limit: int = 100
) -> list[tuple[dict, dict | None]]:
    """``(job, newest run or None)`` for each of ``user``'s jobs (default: you)."""
    user = user or os.environ.get("JUPYTERHUB_USER")
    mine = [j for j in jobs(limit) if user is None or j.info["user"] == user]
    return [(j.info, _last_run(j)) for j in mine]


def _last_run(job: Job) -> dict | None:
    newest = job.runs(limit=1)
    return newest[0].info if newest else None


def jobs_widget(user: str | None = None, page_size: int = 25):
    """A JupyterLab widget listing your jobs and their last results, with a Refresh button."""
    from fedhub.extensions.widgets.scheduler import JobsWidget

    return JobsWidget(lambda: my_jobs_with_last_run(user), page_size=page_size)
