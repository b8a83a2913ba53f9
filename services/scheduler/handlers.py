"""REST API of the scheduler service (under ``/services/scheduler/api/v1/``).

    GET    /jobs                         the tenant's scheduled jobs (scheduler:read)
    POST   /jobs                         schedule a notebook (scheduler:run) -> 201
    GET    /jobs/{id}                    one job
    PATCH  /jobs/{id}                    pause/resume, change schedule or parameters
    DELETE /jobs/{id}                    delete the job (its runs' outputs stay in the home)
    POST   /jobs/{id}/run                run now -> 202
    GET    /jobs/{id}/runs               the job's runs, newest first
    GET    /runs/{id}                    one run: status, times, error and failing cell
    POST   /runs/{id}/cancel             cancel a queued or running run -> 202
    GET    /runs/{id}/outputs/{name}     notebook.ipynb or notebook.html of the run

A job belongs to its owner and its tenant: the tenant's members read it, its owner and
the tenant's admins change it. Another tenant's job is answered as if it did not exist
(404) on every endpoint. Runs execute as the owner's Unix account (docs/reports.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from fedhub.clock import get_clock
from fedhub.db import keyset_page, session_scope
from fedhub.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from fedhub.jobs import run_blocking
from fedhub.openapi import operation
from fedhub.scheduler import claims, formats, runner, schedule
from fedhub.scheduler.models import ACTIVE, ScheduledJob, ScheduledRun, iso
from fedhub.tenancy.models import Role
from fedhub.web import APIHandler

from .api_models import Job, JobChange, JobPage, JobSpec, PageQuery, Run, RunPage, RunPageQuery
from .notebooks import check_parameters, resolve_notebook

PAGE_SIZE, MAX_PAGE_SIZE = 100, 500
OUTPUTS = {f"notebook.{ext}": media for ext, media in formats.MEDIA_TYPES.items()}


def parse(model: type[BaseModel], body) -> BaseModel:
    """The body as ``model``, or a 400 naming each bad field."""
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "body"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{field}: {msg}")
        raise InvalidRequest("; ".join(problems)) from None


class BaseHandler(APIHandler):
    @property
    def db_url(self) -> str:
        return self.settings["fedhub_db_url"]

    @property
    def scheduler(self):
        return self.settings["fedhub_scheduler"]

    def visible(self, tenant: str) -> bool:
        return self.caller.is_platform_admin or tenant == self.caller.tenant

    def load(self, model: type[ScheduledJob | ScheduledRun], row_id: str, what: str):
        """The job or run, if the caller's tenant owns it (platform admins see all); else
        404, with the same body as for an id that does not exist."""
        with session_scope(self.db_url) as s:
            row = s.get(model, row_id)
            if row is not None:
                s.expunge(row)
        if row is None:
            raise NotFound(f"no such {what}")
        if not self.visible(row.tenant):
            self.deny("cross_tenant", f"no such {what}", status=404)
        return row

    def load_job(self, job_id: str) -> ScheduledJob:
        return self.load(ScheduledJob, job_id, "job")

    def load_run(self, run_id: str) -> ScheduledRun:
        return self.load(ScheduledRun, run_id, "run")

    def check_owner(self, username: str) -> None:
        """Changing a job is for its owner, the tenant's admins and platform admins."""
        caller = self.caller
        if caller.name != username and caller.role not in (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN):
            self.deny("not_owner", f"only {username} or a tenant admin may change this job")

    def tier(self, tenant: str):
        return self.store.effective_tier(self.store.get_tenant(tenant))


class JobsHandler(BaseHandler):
    @operation("The tenant's scheduled jobs", query=PageQuery, responses={200: JobPage})
    async def get(self):
        self.require("scheduler:read")
        tenant = self.scoped_tenant(self.get_argument("tenant", None))
        page = self.page_args(default=PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        q = select(ScheduledJob)
        if tenant is not None:
            q = q.where(ScheduledJob.tenant == tenant)
        order = [(ScheduledJob.created_at, True), (ScheduledJob.id, True)]

        def read():
            with session_scope(self.db_url) as s:
                jobs, cursor = keyset_page(s, q, order, cursor=page.cursor, limit=page.limit)
                return [j.to_json() for j in jobs], cursor

        jobs, cursor = await run_blocking(read)
        self.write_page("jobs", jobs, cursor)

    @operation(
        "Schedule a notebook to run as you",
        body=JobSpec,
        responses={201: Job, 400: None, 429: None},
    )
    async def post(self):
        """Refused with 429 ``quota_exceeded`` (``details.limit`` names the tier key) over the
        tier's ``scheduled_jobs_per_tenant`` or below its ``min_schedule_interval_minutes``."""
        caller = self.require("scheduler:run")
        if caller.tenant is None:
            raise InvalidRequest("scheduled jobs belong to a tenant; platform admins have none")
        spec = parse(JobSpec, self.get_json_body())
        cron, once = schedule.plan(spec.cron, spec.at, spec.timezone, get_clock().now())
        home = self.scheduler.home(caller.name)
        path = resolve_notebook(spec.notebook, home)
        await run_blocking(check_parameters, path, home, spec.parameters)
        timeout = spec.timeout_seconds or self.scheduler.default_timeout_seconds
        if timeout > self.scheduler.max_timeout_seconds:
            raise InvalidRequest(
                f"timeout_seconds may be at most {self.scheduler.max_timeout_seconds}"
            )
        fields = dict(
            tenant=caller.tenant, username=caller.name, name=spec.name or spec.notebook,
            notebook=spec.notebook, parameters=spec.parameters, cron=cron, run_once_at=once,
            timezone=spec.timezone, timeout_seconds=timeout, notify=spec.notify, paused=False,
            formats=formats.check(spec.formats), kernel=spec.kernel, keep_runs=spec.keep_runs,
        )  # fmt: skip
        if spec.kernel is not None:
            claims.check_kernel(spec.kernel, self.tier(caller.tenant))
        try:
            job = await run_blocking(
                claims.create_job, self.db_url, self.tier(caller.tenant), get_clock().now(),
                **fields,
            )  # fmt: skip
        except QuotaExceeded as e:
            self.emit("scheduler.job_refused", result="denied", severity="notice",
                      details={**e.details, "cron": spec.cron})  # fmt: skip
            raise
        self.emit("scheduler.job_created", target=f"scheduled-job:{job.id}",
                  details={"notebook": job.notebook, "cron": job.cron, "at": iso(job.run_once_at),
                           "timezone": job.timezone})  # fmt: skip
        self.write_json(job.to_json(), status=201)


class JobHandler(BaseHandler):
    @operation("A scheduled job", responses={200: Job, 404: None})
    def get(self, job_id: str):
        self.require("scheduler:read")
        self.write_json(self.load_job(job_id).to_json())

    @operation("Pause, resume or change a job", body=JobChange, responses={200: Job, 404: None})
    def patch(self, job_id: str):
        self.require("scheduler:run")
        job = self.load_job(job_id)
        self.check_owner(job.username)
        change = parse(JobChange, self.get_json_body())
        if change.formats is not None:
            change.formats = formats.check(change.formats)
        timezone = change.timezone or job.timezone
        now = get_clock().now()
        if change.cron is not None or change.at is not None:  # a new timing, either kind
            cron, once = schedule.plan(change.cron, change.at, timezone, now)
        else:
            cron, once = job.cron, job.run_once_at
            schedule.zone(timezone)
        moved = (cron, once, timezone) != (job.cron, job.run_once_at, job.timezone)
        if cron and moved:
            schedule.validate(cron, timezone)
            claims.check_interval(cron, timezone, self.tier(job.tenant), now)
        upcoming = schedule.next_from(cron, once, timezone, now)  # no catch-up of a pause
        if change.paused is False and upcoming is None:
            raise Conflict("this job's one time has passed; give it a new 'at' to run it again")
        if change.parameters is not None:
            home = self.scheduler.home(job.username)
            check_parameters(resolve_notebook(job.notebook, home), home, change.parameters)
        with session_scope(self.db_url) as s:
            row = s.get(ScheduledJob, job_id)
            for field, value in change.model_dump(
                exclude_none=True, exclude={"cron", "at"}
            ).items():
                setattr(row, field, value)
            row.cron, row.run_once_at = cron, once
            if change.paused is False or moved:
                row.next_run_at = upcoming
            s.flush()
            out = row.to_json()
        self.emit("scheduler.job_changed", target=f"scheduled-job:{job_id}",
                  details=change.model_dump(exclude_none=True))  # fmt: skip
        self.write_json(out)

    @operation("Delete a job (its runs' outputs stay in the owner's home)",
               responses={204: None, 404: None, 409: None})  # fmt: skip
    def delete(self, job_id: str):
        self.require("scheduler:run")
        job = self.load_job(job_id)
        self.check_owner(job.username)
        with session_scope(self.db_url) as s:
            if claims.active_runs(s, job_id):
                raise Conflict("the job has a run queued or running; cancel it first")
            s.delete(s.get(ScheduledJob, job_id))
        self.emit("scheduler.job_deleted", target=f"scheduled-job:{job_id}")
        self.set_status(204)
        self.finish()


class RunNowHandler(BaseHandler):
    @operation("Run a job now", responses={202: Run, 404: None})
    def post(self, job_id: str):
        self.require("scheduler:run")
        job = self.load_job(job_id)
        self.check_owner(job.username)
        run = claims.run_now(self.db_url, job, get_clock().now())
        self.emit("scheduler.run_requested", target=f"scheduled-run:{run.id}",
                  details={"job": job_id})  # fmt: skip
        self.scheduler.wake()
        self.write_json(run.to_json(), status=202)


class JobRunsHandler(BaseHandler):
    @operation("A job's runs, newest first", query=RunPageQuery,
               responses={200: RunPage, 404: None})  # fmt: skip
    async def get(self, job_id: str):
        self.require("scheduler:read")
        self.load_job(job_id)
        page = self.page_args(default=PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        q = select(ScheduledRun).where(ScheduledRun.job_id == job_id)
        order = [(ScheduledRun.scheduled_for, True), (ScheduledRun.id, True)]

        def read():
            with session_scope(self.db_url) as s:
                runs, cursor = keyset_page(s, q, order, cursor=page.cursor, limit=page.limit)
                return [r.to_json() for r in runs], cursor

        runs, cursor = await run_blocking(read)
        self.write_page("runs", runs, cursor)


class RunHandler(BaseHandler):
    @operation("A run: status, times, the error and the failing cell",
               responses={200: Run, 404: None})  # fmt: skip
    def get(self, run_id: str):
        self.require("scheduler:read")
        self.write_json(self.load_run(run_id).to_json())


class CancelHandler(BaseHandler):
    @operation("Cancel a queued or running run", responses={202: Run, 404: None, 409: None})
    def post(self, run_id: str):
        self.require("scheduler:run")
        run = self.load_run(run_id)
        self.check_owner(run.username)
        if run.status not in ACTIVE:
            raise Conflict(f"run {run_id} is already {run.status}")
        with session_scope(self.db_url) as s:
            row = s.get(ScheduledRun, run_id)
            if row.status == "queued":  # nobody has it yet: cancelled here
                row.status = "cancelled"
                row.finished_at = get_clock().now()
            s.flush()
            out = row.to_json()
        self.scheduler.request_cancel(run_id)
        self.emit("scheduler.run_cancel_requested", target=f"scheduled-run:{run_id}")
        self.write_json(out, status=202)


class OutputHandler(BaseHandler):
    @operation(
        "A run's executed notebook or its HTML or PDF rendering",
        responses={200: {media: None for media in formats.MEDIA_TYPES.values()}, 404: None},
    )
    async def get(self, run_id: str, name: str):
        self.require("scheduler:read")
        run = self.load_run(run_id)
        if name not in OUTPUTS or name not in (run.outputs or []):
            raise NotFound(f"run {run_id} has no output {name!r}")
        home = self.scheduler.home(run.username)
        path = home / "reports" / run.job_id / run.id / name
        try:
            body = await run_blocking(runner.read_in_home, path, home)
        except OSError:
            raise NotFound(f"run {run_id}'s {name} is gone from its owner's home") from None
        self.set_header("Content-Type", OUTPUTS[name])
        # the HTML is the owner's notebook output: never run it in the service's origin
        self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(body)


def handlers() -> list[tuple]:
    job = r"api/v1/jobs/([0-9a-f]{32})"
    run = r"api/v1/runs/([0-9a-f]{32})"
    return [
        ("api/v1/jobs", JobsHandler),
        (job, JobHandler),
        (job + "/run", RunNowHandler),
        (job + "/runs", JobRunsHandler),
        (run, RunHandler),
        (run + "/cancel", CancelHandler),
        (run + r"/outputs/(notebook\.ipynb|notebook\.html|notebook\.pdf)", OutputHandler),
    ]
