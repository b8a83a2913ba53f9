"""``FedhubBackend``: dask-gateway-server's local backend, one Unix account per hub user.

dask-gateway's ``LocalBackend`` starts each cluster's scheduler and workers as local
processes of the *gateway user's* Unix account (it needs root to switch). fedhub's
accounts are not named after hub users: hub user ``alice`` runs as ``fedhub-alice``
(:func:`fedhub.accounts.account_name`, the same mapping as the ``UnixAccountSpawner``),
made on first use if missing. On top of that this backend

* reads each user's tenant and effective tier from fedhub's tables and offers only the
  options the tier allows (:mod:`fedhub.gateway.limits`): worker cores and memory,
  ``cluster_max_workers/cores/memory`` fixed per cluster when it is created;
* refuses a cluster beyond the tenant's ``gateway_max_clusters`` and a scale request
  beyond ``gateway_max_workers`` with a 422 naming the key (dask-gateway itself would
  scale to the maximum and answer 200 with a warning);
* meters worker time into fedhub's usage (:mod:`fedhub.gateway.meter`) and emits
  ``gateway.cluster_created`` / ``gateway.cluster_stopped`` audit events.

Process owner: the gateway runs as the hub's account (root on the embedded default);
schedulers and workers run as ``fedhub-<user>`` with only their own group, in a private
working directory (``0700``, theirs) holding the cluster's TLS key, and see only the
environment dask-gateway gives them (no hub token, no database URL). Not run as root,
the gateway cannot switch accounts: as fedhub's servers, clusters then run as the
gateway's own account, and the log says so at start and for each cluster.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import defaultdict

from aiohttp import web
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.db_base import JobStatus
from dask_gateway_server.backends.local import LocalBackend
from dask_gateway_server.options import Options
from traitlets import Bool, Float, List, Unicode, default

from fedhub import accounts, events
from fedhub.db.base import utcnow
from fedhub.errors import FedhubError
from fedhub.gateway import limits as gw_limits
from fedhub.gateway.meter import WorkerClock, WorkerSlice, record_worker_time
from fedhub.tenancy.models import TenantStatus
from fedhub.tenancy.store import TenantStore

SCALE_ROUTE = "/api/v1/clusters/{cluster_name}/scale"


class FedhubBackend(LocalBackend):
    """Local processes, each cluster as its owner's Unix account, limited by the tier."""

    account_prefix = Unicode(
        accounts.ACCOUNT_PREFIX,
        config=True,
        help="""Prefix of the Unix account each hub user's clusters run as (``fedhub-alice``).
        Keep it equal to ``c.UnixAccountSpawner.account_prefix`` so a user's server and
        clusters share one account::

            c.FedhubBackend.account_prefix = "fedhub-"
        """,
    )

    create_accounts = Bool(
        True,
        config=True,
        help="""Create a user's account on their first cluster if their server never made
        it (needs root). With False the account must exist::

            c.FedhubBackend.create_accounts = False
        """,
    )

    home_dir_template = Unicode(
        config=True,
        help="""The user's home (``$HOME`` of schedulers and workers; ``{username}`` is the
        hub username). Default: ``$FEDHUB_STATE_DIR/homes/{username}``, where the embedded
        default's spawner puts homes::

            c.FedhubBackend.home_dir_template = "/srv/fedhub/homes/{username}"
        """,
    )

    @default("home_dir_template")
    def _default_home(self):
        return os.path.join(os.environ.get("FEDHUB_STATE_DIR", "/home"), "homes", "{username}")

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

    dashboards = Bool(
        False,
        config=True,
        help="""Serve each scheduler's dashboard (through the gateway's proxy at
        ``/services/dask-gateway/clusters/<name>/status``) and each worker's. Off by default:
        a dashboard has no login and listens on a loopback port that any account on this
        host could reach, the tenant's neighbours included::

            c.FedhubBackend.dashboards = True   # one trusted tenant per host
        """,
    )

    tenant_services = List(
        Unicode(),
        ["experiments"],
        config=True,
        help="""Hub services that may run clusters for a tenant they name in the ``tenant``
        option (the experiments service's ``gateway`` mode). Such a cluster runs as the
        tenant's own account (``tenant_account_prefix`` + tenant), is sized by the tenant's
        tier, one per service and tenant (not counted in ``gateway_max_clusters``), and its
        worker time is recorded as ``dask_worker_seconds`` only: the service bills its own
        usage. Any other service's token is refused::

            c.FedhubBackend.tenant_services = ["experiments"]
        """,
    )

    tenant_account_prefix = Unicode(
        "fedhub_t_",
        config=True,
        help="""Prefix of the account a tenant's service-run clusters use (``fedhub_t_acme``).
        It differs from ``account_prefix`` in a character no hub username maps to, so a
        tenant's account is never a user's::

            c.FedhubBackend.tenant_account_prefix = "fedhub_t_"
        """,
    )

    @default("cluster_options")
    def _default_cluster_options(self):
        return self.options_for

    @property
    def isolated(self) -> bool:
        """True when clusters run as their owners' accounts (the gateway is root)."""
        return accounts.can_isolate()

    # -- tenants and tiers ----------------------------------------------------------

    def is_tenant_service(self, username: str) -> bool:
        """``service:<name>`` (dask-gateway's name for a service token) of a trusted service."""
        kind, _, name = username.partition(":")
        return kind == "service" and name in self.tenant_services

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

    # -- the owner's account --------------------------------------------------------------

    def cluster_account(self, cluster) -> str:
        """The Unix account of ``cluster``: its owner's (``fedhub-alice``), or for a service's
        cluster the tenant's (``fedhub_t_acme``)."""
        if self.is_tenant_service(cluster.username):
            return accounts.account_name(cluster.options["tenant"], self.tenant_account_prefix)
        return accounts.account_name(cluster.username, self.account_prefix)

    def _home(self, cluster) -> str:
        if self.is_tenant_service(cluster.username):
            return cluster.state.get("workdir") or "/nonexistent"
        return self.home_dir_template.format(username=cluster.username)

    def _prepare_account(self, account: str, home: str):
        """``account``, created if allowed (blocking)."""
        if not self.isolated:
            return None
        if self.create_accounts:
            return accounts.ensure_account(account, home=home)
        entry = accounts.lookup(account)
        if entry is None:
            raise accounts.AccountError(
                f"system account {account!r} does not exist and "
                "c.FedhubBackend.create_accounts is False"
            )
        return entry

    def setup_working_directory(self, cluster):
        """The cluster's private folder (0700, the owner's) with its TLS cert and key (0600).

        Replaces upstream's: dask-gateway-server 2026.3.0 hands ``list.extend`` the key
        file's path, so ``set_file_permissions`` receives it character by character, ``/``
        first, and its ``LocalBackend`` gives the root directory to the cluster's user.
        """
        if self.clusters_directory:
            workdir = os.path.join(self.clusters_directory, cluster.name)
            os.makedirs(workdir, 0o700)
        else:
            workdir = tempfile.mkdtemp(prefix="dask", suffix=cluster.name)
        certsdir, logsdir = self.get_certs_directory(workdir), self.get_logs_directory(workdir)
        os.mkdir(certsdir, 0o700)
        os.mkdir(logsdir, 0o700)
        cert_path, key_path = self._get_tls_paths(workdir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
            with os.fdopen(os.open(path, flags, 0o600), "wb") as f:
                f.write(data)
        self._give([workdir, certsdir, logsdir, cert_path, key_path], self.cluster_account(cluster))
        return workdir

    def set_file_permissions(self, paths, username):
        self._give(paths, accounts.account_name(username, self.account_prefix))

    def _give(self, paths, account: str) -> None:
        if not self.isolated:
            return
        entry = accounts.lookup(account)
        for path in paths:
            if not os.path.isabs(path) or os.path.dirname(path) == path:
                raise ValueError(f"refusing to give {path!r} to {entry.pw_name}")
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    async def start_process(self, cluster, cmd, env, name):
        """Start ``cmd`` as the cluster's owner, its output in ``logs/<name>.log``.

        The log is opened by the gateway (root) inside a folder the owner controls, so
        every step refuses symbolic links: the owner could otherwise swap ``logs`` for a
        link and have root create files wherever it points.
        """
        nofollow = os.O_DIRECTORY | os.O_NOFOLLOW
        work_fd = os.open(cluster.state["workdir"], nofollow)
        try:
            logs_fd = os.open("logs", nofollow, dir_fd=work_fd)
        finally:
            os.close(work_fd)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(f"{name}.log", flags, 0o600, dir_fd=logs_fd)
        finally:
            os.close(logs_fd)
        if self.isolated:  # the owner may read their cluster's logs
            entry = accounts.lookup(self.cluster_account(cluster))
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                preexec_fn=self.make_preexec_fn(cluster),
                start_new_session=True,
                env=env,
                stdout=fd,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            os.close(fd)
        return proc.pid

    def make_preexec_fn(self, cluster):  # pragma: no cover (runs in the child)
        workdir = cluster.state["workdir"]
        entry = accounts.lookup(self.cluster_account(cluster)) if self.isolated else None

        def preexec():
            if entry is not None:
                os.setgid(entry.pw_gid)
                os.setgroups([])  # its own group only, never the gateway's
                os.setuid(entry.pw_uid)
            os.umask(0o077)
            os.chdir(workdir)

        return preexec

    def get_env(self, cluster):
        env = super().get_env(cluster)
        if self.isolated:
            env["USER"] = self.cluster_account(cluster)
        env["HOME"] = self._home(cluster)
        return env

    def get_scheduler_command(self, cluster):
        return self._without_dashboard(
            cluster.config.scheduler_cmd, super().get_scheduler_command(cluster)
        )

    def get_worker_command(self, cluster, worker_name, scheduler_address=None):
        cmd = super().get_worker_command(cluster, worker_name, scheduler_address)
        return self._without_dashboard(cluster.config.worker_cmd, cmd)

    def _without_dashboard(self, base: list, cmd: list) -> list:
        if self.dashboards:
            return cmd
        return [*cmd[: len(base)], "--no-dashboard", *cmd[len(base) :]]

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
