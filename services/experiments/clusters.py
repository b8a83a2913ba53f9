"""Where experiments run: the service's own private cluster, a scheduler, or Dask Gateway.

* ``local`` (default): a :class:`~.private_cluster.PrivateCluster` owned by the service:
  TLS only, with credentials made in memory at start that only the service and its workers
  hold; the scheduler runs in the service, each worker is a separate process on loopback
  with one thread, running as :data:`fedhub.accounts.WORKER_ACCOUNT` when the service runs
  as root (so tenants' code paths on the workers cannot open the hub's files). Every tenant
  shares it; the scheduler (:mod:`.scheduler`) keeps the share fair. A tenant's private
  datasets and federations run on a cluster of its own, as its own account
  (:meth:`DaskClusters.tenant_executor`). Both are started by :mod:`.local_clusters`.
* ``address``: an existing Dask scheduler (``c.DaskClusters.scheduler_address``), reached
  over TLS with the operator's credentials (``c.DaskClusters.tls_*`` or
  ``c.DaskClusters.security``); a plain ``tcp://`` scheduler is refused unless
  ``c.DaskClusters.allow_insecure_scheduler`` says otherwise.
* ``gateway``: Dask Gateway, one cluster per tenant, owned by the service's gateway user
  and sized by the tenant's tier (:mod:`.gateway_clusters`, which says who owns the
  clusters, how they are reconnected after a restart and stopped when idle). Gateway makes
  and holds each cluster's TLS credentials itself. Tested against a real
  ``dask-gateway-server`` with JupyterHub authentication
  (``tests/experiments/test_gateway_mode.py``).
"""

from __future__ import annotations

import os
import sys
import threading

from traitlets import (
    Any,
    Bool,
    Dict,
    Enum,
    Float,
    Instance,
    Integer,
    Unicode,
    default,
)
from traitlets.config import LoggingConfigurable

from fedhub import accounts
from fedhub.db import rls
from fedhub.extras import needs_extra

from .gateway_clusters import GatewayMode
from .local_clusters import LocalClusters


class ClusterConfigError(RuntimeError):
    """The cluster cannot be started safely as configured (the message says what to do)."""


class DaskClusters(LocalClusters, GatewayMode, LoggingConfigurable):
    """Hands out a Dask client for a tenant's experiment."""

    mode = Enum(
        ["local", "address", "gateway"],
        config=True,
        help="""Where experiments run: ``local`` (a private TLS cluster owned by the service),
        ``address`` (an existing scheduler) or ``gateway`` (Dask Gateway, a cluster per
        tenant). Default from ``$FEDHUB_EXPERIMENTS_DASK_MODE``, else ``address`` when a
        scheduler address is set, else ``local``.

            c.DaskClusters.mode = "gateway"
        """,
    )

    @default("mode")
    def _mode_default(self):
        env = os.environ.get("FEDHUB_EXPERIMENTS_DASK_MODE")
        if env:
            return env
        return "address" if self.scheduler_address else "local"

    n_workers = Integer(
        config=True,
        help="""Workers of the service's own cluster (one thread each). Default from
        ``$FEDHUB_EXPERIMENTS_WORKERS``, else 2.

            c.DaskClusters.n_workers = 4
        """,
    )

    @default("n_workers")
    def _n_workers_default(self):
        return int(os.environ.get("FEDHUB_EXPERIMENTS_WORKERS", "2"))

    memory_limit = Unicode(
        "2GiB",
        config=True,
        help="""Memory limit per worker of the service's cluster; the worker is restarted
        when it goes over.

            c.DaskClusters.memory_limit = "4GiB"
        """,
    )

    worker_account = Unicode(
        accounts.WORKER_ACCOUNT,
        config=True,
        help="""System account the service's workers run as when the service runs as root
        (created as a system user if missing). It must not be able to read the hub's state
        directory. Not root, the workers run as the service's own account.

            c.DaskClusters.worker_account = "fedhub-worker"
        """,
    )

    worker_python = Unicode(
        config=True,
        help="""Python interpreter that runs the workers; the worker account must be able to
        execute it and import fedhub from it (a virtualenv made from a system Python, not one
        under ``/root``). Default from ``$FEDHUB_EXPERIMENTS_WORKER_PYTHON``, else the
        service's own interpreter.

            c.DaskClusters.worker_python = "/opt/fedhub/venv/bin/python"
        """,
    )

    @default("worker_python")
    def _worker_python_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_WORKER_PYTHON") or sys.executable

    worker_scratch_dir = Unicode(
        "",
        config=True,
        help="""Folder in which each worker makes its private (0700) scratch directory,
        removed when the worker stops. Must be writable by the worker account and outside
        the hub's state directory. Default: the system's temporary folder.

            c.DaskClusters.worker_scratch_dir = "/var/tmp"
        """,
    )

    worker_preload = Unicode(
        "fedhub.fl.runtime",
        config=True,
        help="""Module each worker process imports when it starts (torch and the training
        code), so that the first round does not pay for it; empty for none.

            c.DaskClusters.worker_preload = ""
        """,
    )

    scheduler_address = Unicode(
        config=True,
        help="""Address of an existing Dask scheduler for ``mode = "address"``, normally
        ``tls://``: anyone who can connect to a scheduler can run code on its workers. Default
        from ``$FEDHUB_EXPERIMENTS_DASK_ADDRESS``.

            c.DaskClusters.scheduler_address = "tls://10.0.0.5:8786"
        """,
    )

    @default("scheduler_address")
    def _address_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_DASK_ADDRESS", "")

    tls_ca_file = Unicode(
        config=True,
        help="""CA certificate (PEM file) the ``address`` scheduler's certificate is signed
        by, with ``tls_client_cert`` and ``tls_client_key``: the service's client credentials.
        Default from ``$FEDHUB_EXPERIMENTS_DASK_TLS_CA_FILE``.

            c.DaskClusters.tls_ca_file = "/etc/fedhub/dask/ca.pem"
        """,
    )
    tls_client_cert = Unicode(
        config=True,
        help="""The service's client certificate (PEM file) for the ``address`` scheduler.
        Default from ``$FEDHUB_EXPERIMENTS_DASK_TLS_CERT``.

            c.DaskClusters.tls_client_cert = "/etc/fedhub/dask/client.pem"
        """,
    )
    tls_client_key = Unicode(
        config=True,
        help="""The private key of ``tls_client_cert`` (PEM file, readable by the service's
        account only; may be omitted when the certificate file holds it). Default from
        ``$FEDHUB_EXPERIMENTS_DASK_TLS_KEY``.

            c.DaskClusters.tls_client_key = "/etc/fedhub/dask/client-key.pem"
        """,
    )

    @default("tls_ca_file")
    def _tls_ca_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_DASK_TLS_CA_FILE", "")

    @default("tls_client_cert")
    def _tls_cert_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_DASK_TLS_CERT", "")

    @default("tls_client_key")
    def _tls_key_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_DASK_TLS_KEY", "")

    security = Instance(
        "distributed.security.Security",
        allow_none=True,
        config=True,
        help="""A ready-made ``distributed.security.Security`` for the ``address`` scheduler,
        instead of the ``tls_*`` files.

            from distributed.security import Security
            c.DaskClusters.security = Security(tls_ca_file=..., tls_client_cert=...,
                                               tls_client_key=..., require_encryption=True)
        """,
    )

    allow_insecure_scheduler = Bool(
        config=True,
        help="""Accept a plain ``tcp://`` (unauthenticated) scheduler in ``address`` mode. Off:
        anyone who reaches such a scheduler can run code next to every tenant's data. Turn
        it on only for a scheduler on a network nobody else can reach. Default from
        ``$FEDHUB_EXPERIMENTS_DASK_ALLOW_INSECURE`` (``1``), else off.

            c.DaskClusters.allow_insecure_scheduler = True
        """,
    )

    @default("allow_insecure_scheduler")
    def _allow_insecure_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_DASK_ALLOW_INSECURE", "") in ("1", "true", "yes")

    gateway_address = Unicode(
        config=True,
        help="""Dask Gateway URL for ``mode = "gateway"`` (its API and scheduler proxy).
        Default from ``$FEDHUB_EXPERIMENTS_GATEWAY_URL``, else dask's ``gateway.address``
        configuration.

            c.DaskClusters.gateway_address = "http://127.0.0.1:8000/services/dask-gateway"
        """,
    )

    @default("gateway_address")
    def _gateway_default(self):
        env = os.environ.get("FEDHUB_EXPERIMENTS_GATEWAY_URL")
        if env:
            return env
        import dask

        return dask.config.get("gateway.address", None) or ""

    gateway_auth = Any(
        None,
        allow_none=True,
        config=True,
        help="""How the service authenticates to the gateway: a ``dask_gateway.auth``
        object. Default: ``JupyterHubAuth`` with the service's own hub token
        (``$JUPYTERHUB_API_TOKEN``), so the gateway user that owns every tenant's cluster
        is ``service:experiments``.

            from dask_gateway.auth import JupyterHubAuth
            c.DaskClusters.gateway_auth = JupyterHubAuth(api_token="...")
        """,
    )

    gateway_proxy_address = Unicode(
        config=True,
        help="""Address of the gateway's scheduler proxy when it is not the API's host and
        port (``gateway://host:port``). Default from dask's ``gateway.proxy-address``
        configuration (``$DASK_GATEWAY__PROXY_ADDRESS``), else the API's.

            c.DaskClusters.gateway_proxy_address = "gateway://127.0.0.1:8786"
        """,
    )

    gateway_workers_per_tier = Dict(
        {},
        config=True,
        help="""Caps on the workers of a tenant's Gateway cluster, by tier. The size itself
        comes from the tenant's effective tier (``gateway_max_workers``,
        ``gateway_worker_cores``, ``gateway_worker_memory_gb`` in tiers.yaml, with the
        tenant's overrides); a tier listed here gets at most this many workers.

            c.DaskClusters.gateway_workers_per_tier = {"enterprise": 8}
        """,
    )

    gateway_idle_timeout = Float(
        600.0,
        config=True,
        help="""Seconds without a task after which a tenant's Gateway cluster shuts
        itself down, asked for per cluster when the gateway declares an ``idle_timeout``
        option; otherwise the gateway's ``c.ClusterConfig.idle_timeout`` applies. The
        tenant's next run starts a new cluster. 0: leave it to the gateway.

            c.DaskClusters.gateway_idle_timeout = 300
        """,
    )

    gateway_start_timeout = Float(
        120.0,
        config=True,
        help="""Seconds a tenant's Gateway cluster may take to run with its first worker;
        past it the run fails with a message saying so.

            c.DaskClusters.gateway_start_timeout = 300
        """,
    )

    gateway_keepalive_interval = Float(
        30.0,
        config=True,
        help="""Seconds between the no-op tasks the service sends to a tenant's Gateway
        cluster while one of its runs is in progress, so that the gateway's idle timeout
        (which sees no task while rounds go to the workers' actors) does not stop it
        mid-run. Keep it well under the gateway's idle timeout; 0 sends none.

            c.DaskClusters.gateway_keepalive_interval = 10
        """,
    )

    tenant_workers = Integer(
        1,
        config=True,
        help="""Workers (one thread each) that run as a tenant's own account in ``local``
        mode, started when the tenant first trains on its private datasets or takes part
        in a federation (``docs/datasets.md``). They have a scheduler of their own: they
        never receive another tenant's work, and the shared workers never receive theirs.

            c.DaskClusters.tenant_workers = 2
        """,
    )

    tenant_worker_idle_timeout = Float(
        300.0,
        config=True,
        help="""Seconds a tenant's own workers (``local`` mode) stay up with nothing to do
        (no task, no run of the tenant in progress); then they stop and the next use starts
        new ones (a few seconds). 0 keeps them until the service stops.

            c.DaskClusters.tenant_worker_idle_timeout = 60
        """,
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._cluster = None
        self._client = None
        self._gateway = None  # a TenantGatewayClusters, made on first use
        self._tenant_pool = None  # a TenantWorkerPool (local mode), made on first use
        # whether a tenant has a run in progress (its own workers must not retire meanwhile)
        self.tenant_busy = rls.as_platform(self._tenant_running)

    def tenant_executor(self, slug: str, tier: str):
        """A :class:`~.tenant_workers.TenantExecutor` whose workers run as ``slug``'s own
        account (:func:`fedhub.accounts.tenant_account`): the only workers that may read
        the tenant's datasets. Blocking (may start workers): call it off the event loop."""
        from .tenant_workers import TenantExecutor, TenantWorkerPool

        with needs_extra("fl", "running on a tenant's workers"):
            import distributed  # noqa: F401
        if self.mode == "address":
            raise ClusterConfigError(
                "private datasets and federations need mode local or gateway: an operator's "
                "scheduler (c.DaskClusters.mode = 'address') has no workers of the tenants' "
                "own accounts. Set c.DaskClusters.mode = 'local' or 'gateway'."
            )
        account = accounts.tenant_account(slug)
        if self.mode == "gateway":
            client = self._gateway_clusters().client(slug, tier)
            return TenantExecutor(slug, account, client, None)
        with self._lock:
            if self._tenant_pool is None:
                self._tenant_pool = TenantWorkerPool(
                    self._start_tenant_cluster,
                    idle_timeout=self.tenant_worker_idle_timeout,
                    busy=lambda slug: self.tenant_busy(slug),
                    log=self.log,
                )
            pool = self._tenant_pool
        return pool.executor(slug)

    def client(self, tenant: str, tier: str):
        """A Dask client for ``tenant``'s run (shared: do not close it)."""
        with needs_extra("fl", "running experiments"):
            import distributed  # noqa: F401
        if self.mode == "gateway":
            return self._gateway_clusters().client(tenant, tier)
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self):
        from distributed import Client

        if self.mode == "address":
            return self._address_client()
        cluster = self._start_private_cluster()
        try:
            cluster.wait_until_ready(timeout=120)
        except BaseException:
            cluster.close(timeout=2)
            raise
        self._cluster = cluster
        self.log.info(
            "experiments run on a private TLS cluster of %d workers at %s",
            self.n_workers,
            cluster.scheduler_address,
        )
        return Client(cluster, security=cluster.security, set_as_default=False)

    def _address_client(self):
        from distributed import Client
        from distributed.security import Security

        if not self.scheduler_address:
            raise ClusterConfigError("DaskClusters.mode is 'address' but no scheduler_address")
        security = self.security
        if security is None and (self.tls_ca_file or self.tls_client_cert):
            security = Security(
                tls_ca_file=self.tls_ca_file,
                tls_client_cert=self.tls_client_cert,
                tls_client_key=self.tls_client_key or None,
                require_encryption=True,
            )
        if not self.scheduler_address.startswith("tls://") or security is None:
            if not self.allow_insecure_scheduler:
                raise ClusterConfigError(
                    f"the Dask scheduler {self.scheduler_address} is not reached over TLS with "
                    "client credentials: anyone who can connect to it can run code next to "
                    "every tenant's data. Set c.DaskClusters.tls_ca_file, tls_client_cert and "
                    "tls_client_key (and a tls:// address), or allow_insecure_scheduler = True."
                )
            self.log.warning(
                "experiments run on the UNAUTHENTICATED Dask scheduler at %s",
                self.scheduler_address,
            )
        else:
            self.log.info("experiments run on the Dask scheduler at %s", self.scheduler_address)
        return Client(self.scheduler_address, security=security, set_as_default=False)

    def _tenant_running(self, tenant: str) -> bool:
        """True while ``tenant`` has an experiment running (its cluster is not idle)."""
        from sqlalchemy import select

        from fedhub.db import session_scope

        from .models import RUNNING, ExperimentRun

        with session_scope(self._db_url()) as s:
            query = select(ExperimentRun.id).where(
                ExperimentRun.tenant == tenant, ExperimentRun.status == RUNNING
            )
            return s.execute(query.limit(1)).first() is not None

    def _db_url(self) -> str:
        from fedhub.db import database_url

        return getattr(self.parent, "db_url", None) or database_url()

    @property
    def local_scheduler_address(self) -> str | None:
        """Address of the service's own cluster's scheduler (``local`` mode, once started)."""
        return self._cluster.scheduler_address if self._cluster is not None else None

    @property
    def total_workers(self) -> int:
        if self._client is None:
            return self.n_workers
        return max(1, len(self._client.scheduler_info(n_workers=-1)["workers"]))

    def close(self) -> None:
        if self._tenant_pool is not None:
            self._tenant_pool.close()
        if self._gateway is not None:
            self._gateway.close()  # the clusters stay up: a restarted service reconnects
        with self._lock:
            if self._client is not None:
                self._client.close(timeout=2)
                self._client = None
            if self._cluster is not None:
                self._cluster.close(timeout=2)
                self._cluster = None
