"""Email to a job's owner when a run fails, through the one mail path (:mod:`fedhub.mail`).

The address is the owner's in fedhub's memberships; an owner without one gets no mail
(the run's audit event says so). The message names the job, the run, the error and the
failing cell, never a token or a path outside the owner's home.
"""

from __future__ import annotations

import logging

from fedhub.mail import Mailer, MailError
from fedhub.tenancy.store import TenantStore


class Notifier:
    def __init__(self, db_url: str, mailer: Mailer, log: logging.Logger):
        self.store = TenantStore(db_url)
        self.mailer = mailer
        self.log = log

    def failed(self, job, run) -> str | None:
        """Mail the owner about a failed or timed-out run; the message id, or None."""
        info = self.store.user(job.username)
        if info is None or not info.email:
            self.log.info("run %s %s; %s has no email address", run.id, run.status, job.username)
            return None
        cell = run.error_cell or {}
        lines = [
            f"Your scheduled notebook {job.name!r} ({job.notebook}) {run.status.replace('_', ' ')}.",
            "",
            f"Run: {run.id}, scheduled for {run.scheduled_for:%Y-%m-%d %H:%M} UTC",
            f"Error: {run.error}",
        ]
        if cell.get("execution_count") is not None:
            lines.append(f"In cell [{cell['execution_count']}]:")
            lines += ["", str(cell.get("source") or "")[:2000]]
        lines += ["", f"Outputs: ~/reports/{job.id}/{run.id}/ in your home"]
        try:
            return self.mailer.send(info.email, f"[fedhub] {job.name}: run {run.status}",
                                    "\n".join(lines))  # fmt: skip
        except MailError as e:
            self.log.warning("could not mail %s about run %s: %s", job.username, run.id, e)
            return None

    def report_ready(self, job, run, addresses: list[str]) -> list[str]:
        """Mail a finished default report to the tenant's admins; the message ids."""
        names = ", ".join(run.outputs or []) or "none"
        text = "\n".join([
            f"The {job.name.lower()} of {job.tenant} for the run scheduled "
            f"{run.scheduled_for:%Y-%m-%d %H:%M} UTC is ready ({names}).",
            "",
            f"Read it: /services/scheduler/api/v1/runs/{run.id}/outputs/notebook.html on the hub",
            f"Stop these mails: pause or delete scheduled job {job.id} (it is not made again).",
        ])  # fmt: skip
        sent = []
        for address in addresses:
            try:
                sent.append(self.mailer.send(address, f"[fedhub] {job.name}: {job.tenant}", text))
            except MailError as e:
                self.log.warning("could not mail the report of run %s: %s", run.id, e)
        return sent
