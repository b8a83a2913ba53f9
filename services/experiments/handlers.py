"""REST API of the experiments service (under ``/services/experiments/api/v1/``).

    POST /experiments                 submit a spec (experiments:run) -> 201
    GET  /experiments                 the caller's tenant's runs (experiments:read)
    GET  /experiments/{id}            status, spec and per-round metrics
    POST /experiments/{id}/cancel     stop within one round (experiments:run)
    GET  /experiments/{id}/events     server-sent events: one ``round`` event per round,
                                      then ``status`` when the run ends
    GET  /experiments/{id}/weights    the final weights (``torch.save`` of the state dict)
    GET  /experiments/{id}/agents     a graph_td3 run's agent groups, as of its last round
    GET  /quota                       the tenant's tier, experiment limits and usage
    /datasets...                      tenants' private datasets (:mod:`.datasets_api`)

Another tenant's experiment is answered as if it did not exist (404).
"""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import select

from fedhub import metering
from fedhub.db import keyset_page, session_scope
from fedhub.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded, TenantSuspended
from fedhub.jobs import run_blocking
from fedhub.openapi import operation
from fedhub.tenancy.models import TenantStatus
from fedhub.web import APIHandler

from . import market_refs, quota
from .api_models import (
    Agents,
    EventsQuery,
    Experiment,
    ExperimentPage,
    PageQuery,
    Quota,
    TenantQuery,
)
from .models import FINISHED, ExperimentRound, ExperimentRun
from .spec import ExperimentSpec, is_tenant_dataset, parse_spec


class BaseHandler(APIHandler):
    @property
    def db_url(self) -> str:
        return self.settings["fedhub_db_url"]

    @property
    def scheduler(self):
        return self.settings["fedhub_scheduler"]

    def load_run(self, exp_id: str) -> ExperimentRun:
        """The run, if the caller's tenant owns it (platform admins see all); else 404."""
        with session_scope(self.db_url) as s:
            run = s.get(ExperimentRun, exp_id)
        if run is None:
            raise NotFound("no such experiment")
        if not self.caller.is_platform_admin and run.tenant != self.caller.tenant:
            # the same body as a missing id: neither existence nor owner leaks
            self.deny("cross_tenant", "no such experiment", status=404)
        return run

    def rounds(self, exp_id: str, after: int = 0) -> list[dict]:
        with session_scope(self.db_url) as s:
            rows = s.execute(
                select(ExperimentRound.metrics)
                .where(ExperimentRound.experiment_id == exp_id, ExperimentRound.round > after)
                .order_by(ExperimentRound.round)
            ).scalars()
            return list(rows)


#: the list's page: the newest runs first (``?limit=`` up to MAX_PAGE_SIZE, ``?cursor=``)
PAGE_SIZE = 200
MAX_PAGE_SIZE = 500
NEWEST_FIRST = [(ExperimentRun.created_at, True), (ExperimentRun.id, True)]


class ExperimentsHandler(BaseHandler):
    @operation("The tenant's runs, newest first", query=PageQuery, responses={200: ExperimentPage})
    async def get(self):
        self.require("experiments:read")
        tenant = self.scoped_tenant(self.get_argument("tenant", None))
        page = self.page_args(default=PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        q = select(ExperimentRun)
        if tenant is not None:
            q = q.where(ExperimentRun.tenant == tenant)

        def read() -> tuple[list[dict], str | None]:
            with session_scope(self.db_url) as s:
                runs, cursor = keyset_page(s, q, NEWEST_FIRST, cursor=page.cursor, limit=page.limit)
                return [r.to_json() for r in runs], cursor

        runs, next_cursor = await run_blocking(read)
        self.write_page("experiments", runs, next_cursor)

    @operation("Submit an experiment", body=ExperimentSpec, responses={201: Experiment})
    async def post(self):
        caller = self.require("experiments:run")
        if caller.tenant is None:
            raise InvalidRequest("experiments belong to a tenant; platform admins have none")
        body = self.get_json_body()
        refs = market_refs.market_refs(body)
        if refs:  # the marketplace's licence, checked at every use
            await run_blocking(
                market_refs.check, self.db_url, caller.tenant, caller.name, refs, body
            )
        spec = parse_spec(body)
        if is_tenant_dataset(spec):
            spec = await run_blocking(self._tenant_dataset, caller.tenant, spec)
        tenant = self.store.get_tenant(caller.tenant)
        if tenant.status == TenantStatus.SUSPENDED:
            raise TenantSuspended(
                f"organisation {tenant.slug} is suspended; it cannot run experiments"
            )
        tier = self.store.effective_tier(tenant)
        try:
            # off the loop: the reservation waits for the tenant's lock
            run = await run_blocking(
                quota.reserve, self.db_url, caller.tenant, caller.name, tenant.tier, tier, spec
            )
        except QuotaExceeded as e:
            self.emit(
                "experiment.refused",
                result="denied",
                severity="notice",
                details={
                    **e.details,
                    "clients": spec.clients,
                    "rounds": spec.rounds,
                    "algorithm": spec.algorithm,
                },  # fmt: skip
            )
            raise
        self.emit(
            "experiment.submitted",
            target=f"experiment:{run.id}",
            details={"strategy": spec.strategy, "dataset": spec.dataset, "clients": spec.clients,
                     "rounds": spec.rounds, "algorithm": spec.algorithm,
                     **({"agents": spec.agents} if spec.agents else {})},
        )  # fmt: skip
        self.scheduler.wake()
        self.write_json(run.to_json(rounds=[]), status=201)

    def _tenant_dataset(self, tenant: str, spec: ExperimentSpec) -> ExperimentSpec:
        """The spec with its tenant dataset pinned to a version of the caller's tenant."""
        from .datasets_api import pin_tenant_dataset

        if self.scheduler.clusters.mode == "address":
            raise InvalidRequest(
                "dataset: tenant datasets are read only on workers of your organisation's "
                "own account, which this deployment's Dask scheduler (mode 'address') does "
                "not have; ask the operator for mode local or gateway",
                details={"field": "dataset"},
            )
        return pin_tenant_dataset(self.db_url, tenant, spec)


class ExperimentHandler(BaseHandler):
    @operation("A run: status, spec and per-round metrics", responses={200: Experiment})
    async def get(self, exp_id: str):
        self.require("experiments:read")
        run = self.load_run(exp_id)
        self.write_json(run.to_json(rounds=await run_blocking(self.rounds, exp_id)))


class CancelHandler(BaseHandler):
    @operation("Stop a run within one round", responses={202: Experiment})
    def post(self, exp_id: str):
        self.require("experiments:run")
        run = self.load_run(exp_id)
        if run.status in FINISHED:
            raise Conflict(f"experiment {exp_id} is already {run.status}")
        with session_scope(self.db_url) as s:
            s.get(ExperimentRun, exp_id).cancel_requested = True
        self.scheduler.request_cancel(exp_id)
        self.scheduler.wake()
        self.emit("experiment.cancel_requested", target=f"experiment:{exp_id}")
        run.cancel_requested = True
        self.write_json(run.to_json(), status=202)


class EventsHandler(BaseHandler):
    """Server-sent events; resumes after ``Last-Event-ID`` (the last round received)."""

    @operation(
        "A run's rounds as server-sent events",
        query=EventsQuery,
        responses={200: {"text/event-stream": None}},
    )
    async def get(self, exp_id: str):
        self.require("experiments:read")
        rounds = self.load_run(exp_id).rounds
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        last = min(self.resume_after(), rounds)  # no round comes after the run's last
        idle = 0.0
        while True:
            # database reads off the event loop: many open streams must not stall the API
            records = await run_blocking(self.rounds, exp_id, last)
            for record in records:
                last = int(record["round"])
                self.write(f"id: {last}\nevent: round\ndata: {json.dumps(record)}\n\n")
                idle = 0.0
            run = await run_blocking(self.load_run, exp_id)
            if run.status in FINISHED and run.rounds_done <= last:
                self.write(f"event: status\ndata: {json.dumps(run.to_json())}\n\n")
                await self.flush()
                break
            if idle >= 15:
                self.write(": keep-alive\n\n")
                idle = 0.0
            try:
                await self.flush()
            except Exception:  # the client went away
                return
            await asyncio.sleep(0.5)
            idle += 0.5
        self.finish()

    def resume_after(self) -> int:
        """The last round the client has: ``Last-Event-ID``, else ``?after=``, else 0.

        A negative one would never reach a finished run's last round (0 when it was
        cancelled before its first) and the stream would never end; it is refused, like
        text that is no number.
        """
        raw = self.request.headers.get("Last-Event-ID") or self.get_argument("after", "0")
        try:
            last = int(raw)
        except ValueError:  # not a number, or one of thousands of digits
            last = -1
        if last < 0:
            raise InvalidRequest(
                f"after (or Last-Event-ID) must be a round number, not {raw[:20]!r}"
            )
        return last


class WeightsHandler(BaseHandler):
    @operation(
        "The final weights (torch.save of the state dict)",
        responses={200: {"application/octet-stream": None}},
    )
    def get(self, exp_id: str):
        self.require("experiments:read")
        run = self.load_run(exp_id)
        path = self.scheduler.run_dir(exp_id) / "final.pt"
        if not path.exists():
            raise NotFound(f"experiment {exp_id} has no final weights ({run.status})")
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(path.read_bytes())


#: what the agents API shows of each agent group of an RL round record
AGENT_FIELDS = ("agent", "district", "last_reward", "episodes", "health")


class AgentsHandler(BaseHandler):
    @operation(
        "A graph_td3 run's agent groups: district, last reward, episodes, health",
        responses={200: Agents},
    )
    async def get(self, exp_id: str):
        """As of the run's last recorded round (an empty list before its first). An
        experiment of another algorithm has no agents: 400 naming it."""
        self.require("experiments:read")
        run = self.load_run(exp_id)
        algorithm = (run.spec or {}).get("algorithm", "fl")
        if algorithm != "graph_td3":
            raise InvalidRequest(
                f"experiment {exp_id} runs algorithm {algorithm!r}, which has no agents"
                " (only graph_td3 experiments do; see its clients in its metrics)",
                details={"field": "algorithm", "algorithm": algorithm},
            )
        last = await run_blocking(self.last_round, exp_id)
        agents = [{k: a.get(k) for k in AGENT_FIELDS} for a in (last or {}).get("agents", [])]
        self.write_json({"experiment": exp_id, "agents": agents})

    def last_round(self, exp_id: str) -> dict | None:
        with session_scope(self.db_url) as s:
            return s.execute(
                select(ExperimentRound.metrics)
                .where(ExperimentRound.experiment_id == exp_id)
                .order_by(ExperimentRound.round.desc())
                .limit(1)
            ).scalar_one_or_none()


class QuotaHandler(BaseHandler):
    @operation(
        "The tenant's tier, experiment limits and usage", query=TenantQuery, responses={200: Quota}
    )
    def get(self):
        self.require("usage:read")
        slug = self.scoped_tenant(self.get_argument("tenant", None))
        if slug is None:
            raise InvalidRequest("platform admins: pass ?tenant=<slug>")
        tenant = self.store.get_tenant(slug)
        tier = self.store.effective_tier(tenant)
        with session_scope(self.db_url) as s:
            used = quota.usage(s, slug)
            # every metered limit of the tier (fedhub.limits): compute, API calls, ...
            rows = metering.usage_rows(s, slug, tier)
        self.write_json(
            {
                "tenant": slug,
                "tier": tenant.tier,
                "tier_display_name": tier.display_name,
                "status": str(tenant.status),
                "limits": quota.limits(tier),
                "usage": used,
                "meters": rows,
            }
        )


def handlers() -> list[tuple]:
    from .datasets_api import handlers as dataset_handlers  # its handlers extend BaseHandler

    exp = r"api/v1/experiments/([0-9a-f]{1,32})"
    return [
        ("api/v1/experiments", ExperimentsHandler),
        (exp, ExperimentHandler),
        (exp + "/cancel", CancelHandler),
        (exp + "/events", EventsHandler),
        (exp + "/weights", WeightsHandler),
        (exp + "/agents", AgentsHandler),
        ("api/v1/quota", QuotaHandler),
        *dataset_handlers(),
    ]
