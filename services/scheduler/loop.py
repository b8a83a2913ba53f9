"""The scheduler loop of the service process: queue due runs, claim them, execute them.

A :class:`fedhub.jobs.PeriodicJob` ticks every ``poll_seconds``. Each tick, in a worker
thread: fail the runs whose service died (no heartbeat), queue the due ones, claim what
the tenants' ``max_concurrent_scheduled_runs`` allows (:mod:`fedhub.scheduler.claims`),
and start each claimed run in its own thread, which waits for the child process that runs
as the owner (:mod:`fedhub.scheduler.runner`) and then records, meters, audits and mails.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import timedelta
from pathlib import Path

from traitlets import Bool, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from fedhub import events, storage
from fedhub.clock import get_clock
from fedhub.db import rls, session_scope
from fedhub.errors import FedhubError, NotFound
from fedhub.jobs import PeriodicJob
from fedhub.scheduler import claims, defaults, formats, retention, runner
from fedhub.scheduler.models import FAILED, SUCCEEDED, TIMED_OUT, ScheduledJob, ScheduledRun
from fedhub.tenancy.models import TenantStatus
from fedhub.tenancy.store import TenantStore
from fedhub.tiers import Profile, Tier

from .notebooks import resolve_notebook
from .notify import Notifier


class Scheduler(LoggingConfigurable):
    """Runs scheduled notebooks as their owners (``c.Scheduler.*`` in fedhub_config.py)."""

    poll_seconds = Float(
        10.0,
        config=True,
        help="""Seconds between two looks for due runs. A run starts at most this late.

            c.Scheduler.poll_seconds = 10
        """,
    )
    stale_after_seconds = Float(
        60.0,
        config=True,
        help="""A run whose service has not said it is alive for this long (the service was
        killed) is marked failed, never re-run: its notebook may have had effects.

            c.Scheduler.stale_after_seconds = 60
        """,
    )
    catch_up = Bool(
        True,
        config=True,
        help="""Times a job missed while the service was down run once when it is back
        (one run, however many were missed). False: skip them, wait for the next time.

            c.Scheduler.catch_up = False
        """,
    )
    default_timeout_seconds = Integer(
        1800, config=True, help="""A job's timeout when it names none (seconds).

            c.Scheduler.default_timeout_seconds = 1800
        """
    )  # fmt: skip
    max_timeout_seconds = Integer(
        6 * 3600, config=True, help="""The longest timeout a job may ask for (seconds).

            c.Scheduler.max_timeout_seconds = 21600
        """
    )  # fmt: skip
    kernel = Unicode(
        "python3",
        config=True,
        help="""The kernel runs use when their notebook names none (a kernel spec every
        server has; the tier's own kernels are installed per server, not system-wide).

            c.Scheduler.kernel = "python3"
        """,
    )
    kernels_dir = Unicode(
        config=True,
        help="""Where the tiers' kernel specs are installed, one folder per tier: the same
        folder as ``c.TierSpawner.kernels_dir``. A job that names a kernel runs with
        ``JUPYTER_PATH=<kernels_dir>/<tier>``. Default: ``$FEDHUB_STATE_DIR/share/kernels``,
        else ``/usr/local/share/fedhub/kernels``.

            c.Scheduler.kernels_dir = "/srv/fedhub/share/kernels"
        """,
    )

    @default("kernels_dir")
    def _default_kernels_dir(self):
        state = os.environ.get("FEDHUB_STATE_DIR")
        return (
            str(Path(state) / "share" / "kernels") if state else "/usr/local/share/fedhub/kernels"
        )

    homes_template = Unicode(
        config=True,
        help="""Each owner's home, ``{username}`` filled in; outputs go to
        ``<home>/reports/<job>/<run>/``. Default: where the spawner puts homes
        (``$FEDHUB_STORAGE_PATH_TEMPLATE``, else ``$FEDHUB_STATE_DIR/homes/{username}``).

            c.Scheduler.homes_template = "/home/{username}"
        """,
    )

    @default("homes_template")
    def _default_homes_template(self):
        return storage.default_path_template() or "/home/{username}"

    default_usage_report = Bool(
        True,
        config=True,
        help="""Give each active tenant the bundled usage report, run on the 1st of each month
        at 06:00 UTC as its first tenant admin and mailed to all its tenant admins. Made once
        per tenant: a tenant admin opts out by pausing or deleting the job, and a deleted job
        is not made again (fedhub.scheduler.defaults). False: make none (existing ones stay).

            c.Scheduler.default_usage_report = False
        """,
    )

    def __init__(self, db_url: str, store: TenantStore, tokens, mailer, **kw):
        super().__init__(**kw)
        self.db_url = db_url
        self.store = store
        self.tokens = tokens
        self.notifier = Notifier(db_url, mailer, log=self.log)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.job: PeriodicJob | None = None
        self._procs: dict[str, object] = {}
        self._cancel: set[str] = set()
        self._lock = threading.Lock()

    def tier_of(self, slug: str) -> Tier:
        return self.store.effective_tier(self.store.get_tenant(slug))

    def profile_of(self, tier: Tier) -> Profile:
        """A run is sized and metered as the tier's first (smallest) server profile."""
        return self.store.tiers.profiles[tier.profiles[0]]

    def max_running(self, slug: str) -> int:
        """Runs the tenant may have executing now: none while it is suspended or gone
        (its runs wait, queued), else its tier's ``max_concurrent_scheduled_runs``."""
        try:
            tenant = self.store.get_tenant(slug)
        except NotFound:
            return 0
        if tenant.status == TenantStatus.SUSPENDED:
            return 0
        return self.store.effective_tier(tenant).max_concurrent_scheduled_runs

    def home(self, username: str) -> Path:
        return Path(storage.home_path(self.homes_template, username))

    # -- the loop ----------------------------------------------------------------------

    def start(self) -> None:
        self.job = PeriodicJob(
            "scheduler", self.tick, self.poll_seconds, blocking=True, first_delay=0.1,
            logger=self.log,
        )  # fmt: skip
        self.job.start()

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()
        with self._lock:
            for proc in self._procs.values():
                runner.kill(proc)

    def tick(self) -> None:
        now = get_clock().now()
        claims.heartbeat(self.db_url, self.worker, now)
        for run in claims.reap_stale(self.db_url, now, timedelta(seconds=self.stale_after_seconds)):
            self.log.warning("run %s was left running by a stopped service: failed", run.id)
            self.audit_end(run)
        if self.default_usage_report:
            self.make_default_reports(now)
        claims.enqueue_due(self.db_url, now, catch_up=self.catch_up)
        retention.prune(self.db_url, self.home, self.log)
        for run in claims.claim(self.db_url, self.worker, now, self.max_running):
            threading.Thread(target=rls.as_platform(self.execute), args=(run,), name=f"run-{run.id}",
                             daemon=True).start()  # fmt: skip

    def make_default_reports(self, now) -> None:
        made = defaults.ensure_usage_reports(self.db_url, self.store.list_tenants(), now,
                                             self.default_timeout_seconds)  # fmt: skip
        for job in made:
            events.emit("scheduler.job_created", tenant=job.tenant, actor=job.username,
                        target=f"scheduled-job:{job.id}",
                        details={"notebook": job.notebook, "cron": job.cron, "default": True})  # fmt: skip

    def wake(self) -> None:
        """Look for work now (a run was queued by hand)."""
        threading.Thread(target=rls.as_platform(self._tick_logged), daemon=True).start()

    def _tick_logged(self) -> None:
        try:
            self.tick()
        except Exception:
            self.log.exception("scheduler tick failed")

    def request_cancel(self, run_id: str) -> None:
        self._cancel.add(run_id)

    # -- one run -----------------------------------------------------------------------

    def execute(self, run: ScheduledRun) -> None:
        """Run it and record the end whatever happens: a run that cannot start (its job or
        tenant gone, its folder not the owner's) is a failed run, never one left running
        (this process's heartbeat would keep it so)."""
        job = profile = None
        try:
            job, profile = self.load(run)
            events.emit("scheduler.run_started", tenant=run.tenant, actor=run.username,
                        target=f"scheduled-run:{run.id}", details={"job": job.id})  # fmt: skip
            result = self.run_as_owner(job, run, profile)
        except Exception as e:
            self.log.exception("run %s could not start", run.id)
            why = str(e) if isinstance(e, runner.RunnerError | FedhubError) else "see the log"
            result = runner.RunResult("failed", f"the run could not start: {why}", None, 0.0, [])
        cpu, memory = (profile.cpu, profile.memory_gb) if profile else (0.0, 0.0)
        claims.finish(self.db_url, run.id, result, get_clock().now(), cpu, memory)
        self._cancel.discard(run.id)
        with session_scope(self.db_url) as s:
            done = s.get(ScheduledRun, run.id)
            s.expunge(done)
        self.audit_end(done)
        if job is not None and job.notify and done.status in (FAILED, TIMED_OUT):
            self.notifier.failed(job, done)
        if (
            job is not None
            and done.status == SUCCEEDED
            and defaults.is_default(self.db_url, job.id)
        ):
            tenant = self.store.get_tenant(job.tenant)
            self.notifier.report_ready(job, done, defaults.admin_emails(tenant))

    def load(self, run: ScheduledRun):
        """The run's job and the server profile it is sized and metered as."""
        with session_scope(self.db_url) as s:
            job = s.get(ScheduledJob, run.job_id)
            if job is None:
                raise runner.RunnerError("its job was deleted")
            s.expunge(job)
        return job, self.profile_of(self.tier_of(run.tenant))

    def run_as_owner(self, job: ScheduledJob, run: ScheduledRun, profile) -> runner.RunResult:
        req, token_id = self.request(job, run, profile)
        try:
            proc = runner.start(req)
            with self._lock:
                self._procs[run.id] = proc
            return runner.wait(req, proc, cancelled=lambda: run.id in self._cancel)
        finally:
            with self._lock:
                self._procs.pop(run.id, None)
            self.tokens.revoke(token_id, run.username)

    def request(self, job: ScheduledJob, run: ScheduledRun, profile):
        """The run's request for :mod:`fedhub.scheduler.runner`, and its token's id."""
        home = self.home(job.username)
        timeout = min(job.timeout_seconds, self.max_timeout_seconds)
        env, token_id = self.tokens.env_for(job.username, run.tenant, timeout)
        env.update(self.kernel_env(job, run.tenant))
        return runner.RunRequest(
            run_id=run.id,
            username=job.username,
            home=home,
            notebook=resolve_notebook(job.notebook, home),
            outdir=home / "reports" / job.id / run.id,
            parameters=job.parameters,
            timeout=timeout,
            memory_bytes=int(profile.memory_gb * 1024**3) or None,
            cpu_seconds=int(timeout * max(profile.cpu, 1)) + 1,
            kernel=self.kernel,
            formats=job.formats or formats.DEFAULT,
            env=env,
        ), token_id

    def kernel_env(self, job: ScheduledJob, slug: str) -> dict[str, str]:
        """What makes a run use the job's kernel from its tier's installed specs; checked
        again here, as the tier may have changed since the job was made."""
        if not job.kernel:
            return {}
        tenant = self.store.get_tenant(slug)
        claims.check_kernel(job.kernel, self.store.effective_tier(tenant))
        folder = Path(self.kernels_dir) / tenant.tier
        if not (folder / "kernels" / job.kernel / "kernel.json").is_file():
            raise runner.RunnerError(f"kernel {job.kernel} is installed when a server of the "
                                     "tier first starts; start your server once")  # fmt: skip
        return {"FEDHUB_JOB_KERNEL": job.kernel, "JUPYTER_PATH": str(folder)}

    def audit_end(self, run: ScheduledRun) -> None:
        failed = run.status in (FAILED, TIMED_OUT)
        events.emit(
            f"scheduler.run_{run.status}",
            tenant=run.tenant,
            actor=run.username,
            target=f"scheduled-run:{run.id}",
            result="failure" if failed else "success",
            severity="warning" if failed else "info",
            details={"job": run.job_id, "error": (run.error or "")[:500],
                     "compute_seconds": round(run.compute_seconds, 3)},
        )  # fmt: skip
