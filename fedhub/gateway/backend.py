"""``FedhubBackend``: the gateway's backend, clusters limited by the tenant's tier.

Over :class:`fedhub.gateway.processes.AccountProcesses` (dask-gateway-server's
``LocalBackend`` starting each cluster as its owner's Unix account), this backend

* reads each user's tenant and effective tier from fedhub's tables and offers only the
  options the tier allows (:mod:`fedhub.gateway.limits`): worker cores and memory,
  ``cluster_max_workers/cores/memory`` fixed per cluster when it is created;
* refuses a cluster beyond the tenant's ``gateway_max_clusters`` and a scale request
  beyond ``gateway_max_workers`` with a 422 naming the key (dask-gateway itself would
  scale to the maximum and answer 200 with a warning);
* lets a trusted hub service (``tenant_services``: the experiments service) run one cluster
  per tenant it names, limited by that tenant's tier;
* meters worker time into fedhub's usage (:mod:`fedhub.gateway.meter`) and emits
  ``gateway.cluster_created`` / ``gateway.cluster_stopped`` / ``gateway.cluster_refused``
  audit events.

Process owner: the gateway runs as the hub's account (root on the embedded default) and
reads fedhub's database (tenants, tiers) and writes its meter and the events spool; clusters
run as described in :mod:`fedhub.gateway.processes`.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict

from aiohttp import web
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import JobStatus
from dask_gateway_server.options import Options
from traitlets import Float, Unicode, default

from fedhub import events
from fedhub.db.base import utcnow
from fedhub.errors import FedhubError
from fedhub.gateway import limits as gw_limits
from fedhub.gateway.meter import WorkerClock, WorkerSlice, record_worker_time
from fedhub.gateway.processes import AccountProcesses
from fedhub.tenancy.models import TenantStatus
from fedhub.tenancy.store import TenantStore

SCALE_ROUTE = "/api/v1/clusters/{cluster_name}/scale"


class FedhubBackend(AccountProcesses):
    """Local processes, each cluster as its owner's Unix account, limited by the tier."""

    fedhub_db_url = Unicode(
        config=True,
        help="""fedhub's database (tenants, tiers, the usage meter). Default: ``$FEDHUB_DB_URL``,
        which the hub sets for its managed services::

            c.FedhubBackend.fedhub_db_url = "postgresql+psycopg://fedhub@db/fedhub"
        """,
    )

    @default("fedhub_db_url")
    def _default_fedhub_db(self):
        return os.environ.get("FEDHUB_DB_URL", "")

    meter_interval = Float(
        60.0,
        config=True,
        help="""Seconds between meter events of running workers (a last one is written
        when a worker stops)::

            c.FedhubBackend.meter_interval = 60
        """,
    )

    @default("cluster_options")
    def _default_cluster_options(self):
        return self.options_for

    # -- tenants and tiers ----------------------------------------------------------

    def _lookup(self, username: str) -> tuple[str, gw_limits.GatewayLimits]:
        """The user's tenant and its gateway limits (blocking: fedhub's database)."""
        info = self.store.user(username)
        if info is None or info.tenant is None:
            raise PublicException(
                f"{username} is not a member of a tenant: Dask Gateway clusters belong to tenants"
            )
        return info.tenant, self._tenant_lookup(info.tenant)

    def _tenant_lookup(self, slug: str) -> gw_limits.GatewayLimits:
        """An active tenant's gateway limits (blocking)."""
        try:
            tenant = self.store.get_tenant(slug)
        except FedhubError:
            raise PublicException(f"tenant {slug!r} does not exist") from None
        if tenant.status != TenantStatus.ACTIVE:
            raise PublicException(f"tenant {slug} is {tenant.status.value}")
        return gw_limits.GatewayLimits.of(tenant.tier, self.store.effective_tier(tenant))

    async def tenant_limits(self, username: str) -> tuple[str, gw_limits.GatewayLimits]:
        return await asyncio.to_thread(self._lookup, username)

    async def options_for(self, user):
        """``c.Backend.cluster_options``: the options the user's tier allows (none for a
        user without an active tenant, whose cluster :meth:`start_cluster` refuses)."""
        if self.is_tenant_service(user.name):
            return gw_limits.service_options(self._service_limits.get)
        try:
            _, lim = await self.tenant_limits(user.name)
        except PublicException:
            return Options()
        return gw_limits.cluster_options(lim)

    # -- clusters ----------------------------------------------------------------------

    async def start_cluster(self, user, cluster_options):
        if self.is_tenant_service(user.name):
            return await self._start_service_cluster(user, cluster_options)
        tenant, lim = await self.tenant_limits(user.name)
        async with self._tenant_locks[tenant]:
            active = await self._active_clusters_of(tenant)
            refusal = gw_limits.clusters_refusal(lim, tenant, active)
            if refusal:
                events.emit("gateway.cluster_refused", tenant=tenant, actor=user.name,
                            result="denied", details={"reason": refusal})  # fmt: skip
                raise PublicException(refusal)
            name = await super().start_cluster(user, cluster_options)
        self._created(name, tenant, lim)
        return name

    async def _start_service_cluster(self, user, cluster_options):
        """A trusted service's cluster for the tenant named in its ``tenant`` option."""
        slug = cluster_options.get("tenant") if isinstance(cluster_options, dict) else None
        if not isinstance(slug, str) or not slug:
            raise PublicException("tenant: a service's cluster names the tenant it runs for")
        lim = await asyncio.to_thread(self._tenant_lookup, slug)
        self._service_limits[slug] = lim
        async with self._tenant_locks[slug]:
            for cluster in self.db.active_clusters():
                if cluster.username == user.name and cluster.options.get("tenant") == slug:
                    raise PublicException(
                        f"{user.name} already runs cluster {cluster.name} for tenant {slug}"
                    )
            name = await super().start_cluster(user, cluster_options)
        self._created(name, slug, lim)
        return name

    def _created(self, name: str, tenant: str, lim: gw_limits.GatewayLimits) -> None:
        self._cluster_tenant[name] = tenant
        cluster = self.db.get_cluster(name)
        config = cluster.config
        events.emit(
            "gateway.cluster_created",
            tenant=tenant,
            actor=cluster.username,
            target=name,
            details={
                "tier": lim.tier,
                "max_workers": config.get("cluster_max_workers"),
                "worker_cores": config.get("worker_cores"),
                "worker_memory": config.get("worker_memory"),
                "account": self.cluster_account(cluster) if self.isolated else None,
            },
        )

    async def _active_clusters_of(self, tenant: str) -> int:
        """How many clusters of ``tenant`` are pending or running."""
        n = 0
        for cluster in self.db.active_clusters():
            if self.is_tenant_service(cluster.username):
                continue  # a service's cluster for the tenant does not count
            if cluster.name not in self._cluster_tenant:  # made before a gateway restart
                self._cluster_tenant[cluster.name] = await asyncio.to_thread(
                    self._tenant_of, cluster
                )
            n += self._cluster_tenant[cluster.name] == tenant
        return n

    async def do_start_cluster(self, cluster):
        await asyncio.to_thread(
            self._prepare_account, self.cluster_account(cluster), self._home(cluster)
        )
        if not self.isolated:
            self.log.warning(
                "not root: cluster %s of %s runs as the gateway's own account and is NOT "
                "isolated from other users",
                cluster.name,
                cluster.username,
            )
        async for state in super().do_start_cluster(cluster):
            yield state

    async def do_stop_cluster(self, cluster):
        await super().do_stop_cluster(cluster)
        await self._record(self.clock.cluster_stopped(cluster.name, utcnow()))
        tenant = self._cluster_tenant.pop(cluster.name, None) or self._tenant_of(cluster)
        if tenant:
            events.emit(
                "gateway.cluster_stopped",
                tenant=tenant,
                actor=cluster.username,
                target=cluster.name,
                result="error" if cluster.target == JobStatus.FAILED else "success",
                details={"failed": cluster.target == JobStatus.FAILED},
            )

    def _tenant_of(self, cluster) -> str | None:
        if self.is_tenant_service(cluster.username):
            return cluster.options.get("tenant")
        info = self.store.user(cluster.username)
        return info.tenant if info else None

    # -- workers: started as the account, metered ------------------------------------------

    async def do_start_worker(self, worker):
        async for state in super().do_start_worker(worker):
            yield state
        cluster = worker.cluster
        tenant = self._cluster_tenant.get(cluster.name)
        if tenant is None:
            tenant = self._cluster_tenant[cluster.name] = await asyncio.to_thread(
                self._tenant_of, cluster
            )
        if tenant:
            now = utcnow()
            self.clock.started(
                WorkerSlice(
                    tenant=tenant,
                    username=cluster.username,
                    cluster=cluster.name,
                    worker=worker.name,
                    cores=float(cluster.config["worker_cores"]),
                    memory_gb=cluster.config["worker_memory"] / gw_limits.GIB,
                    start=now,
                    end=now,
                    priced=not self.is_tenant_service(cluster.username),
                )  # fmt: skip
            )

    async def do_stop_worker(self, worker):
        await super().do_stop_worker(worker)
        await self._record(self.clock.stopped(worker.cluster.name, worker.name, utcnow()))

    async def _record(self, slices) -> None:
        if not slices:
            return
        try:
            await asyncio.to_thread(record_worker_time, self.fedhub_db_url or None, slices)
        except Exception:  # the meter must not stop a cluster; the next slice retries nothing
            self.log.exception("could not record %d worker-time slices", len(slices))

    async def _meter_loop(self) -> None:
        while True:
            await asyncio.sleep(self.meter_interval)
            await self._record(self.clock.tick(utcnow()))

    # -- start and stop ---------------------------------------------------------------

    async def setup(self, app):
        self.store = TenantStore(self.fedhub_db_url or None)
        self.clock = WorkerClock()
        self._cluster_tenant: dict[str, str] = {}
        self._tenant_locks = defaultdict(asyncio.Lock)
        self._service_limits: dict[str, gw_limits.GatewayLimits] = {}
        app.middlewares.append(self._refuse_beyond_limits)
        await super().setup(app)
        self._meter_task = asyncio.ensure_future(self._meter_loop())
        if not self.isolated:
            self.log.warning(
                "fedhub's gateway is not running as root: every cluster runs as this "
                "account; users are NOT isolated (docs/gateway.md)"
            )

    async def cleanup(self):
        await super().cleanup()  # stops the clusters (their workers' last slices)
        if hasattr(self, "_meter_task"):
            self._meter_task.cancel()
            await self._record(self.clock.tick(utcnow()))

    def _cluster_limits(self, cluster) -> gw_limits.GatewayLimits:
        if self.is_tenant_service(cluster.username):
            return self._tenant_lookup(cluster.options["tenant"])
        return self._lookup(cluster.username)[1]

    @web.middleware
    async def _refuse_beyond_limits(self, request, handler):
        """Refuse a scale request beyond the cluster's maximum, naming the tier key.

        Authenticates first (as the route would): nothing about a cluster is said to a
        caller who may not see it; they get the gateway's own answer.
        """
        route = request.match_info.route
        if request.method != "POST" or route.resource is None:
            return await handler(request)
        if route.resource.canonical != SCALE_ROUTE:
            return await handler(request)
        try:
            count = (await request.json()).get("count")
        except Exception:  # the route answers malformed bodies itself
            return await handler(request)
        cluster = await self.get_cluster(request.match_info["cluster_name"])
        limit = cluster.config.get("cluster_max_workers") if cluster is not None else None
        if type(count) is not int or limit is None or count <= limit:
            return await handler(request)

        async def refuse(request):
            if not request["user"].has_permissions(cluster):
                return await handler(request)
            try:
                tier = (await asyncio.to_thread(self._cluster_limits, cluster)).tier
            except PublicException:  # the tenant was suspended since: the cluster's limit holds
                tier = "tenant's"
            reason = gw_limits.scale_refusal(cluster.config, count, tier)
            self.log.info("refused scaling %s to %d: %s", cluster.name, count, reason)
            return web.json_response({"error": reason}, status=422)

        return await request.app["authenticator"].authenticate_and_handle(request, refuse)
