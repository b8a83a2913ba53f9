"""Where experiments run: the service's own LocalCluster, a scheduler, or Dask Gateway.

* ``local`` (default): one ``LocalCluster`` owned by the service, on loopback, process
  workers with one thread each, no fixed dashboard port. Every tenant shares it; the
  scheduler (:mod:`.scheduler`) keeps the share fair.
* ``address``: an existing Dask scheduler (``c.DaskClusters.scheduler_address``).
* ``gateway``: Dask Gateway, one cluster per tenant sized by the tenant's tier
  (``c.DaskClusters.gateway_workers_per_tier``). Gateway is not installed on the
  development machine, so this path is written against ``dask_gateway``'s client API
  (``Gateway(address).new_cluster()``, ``cluster.adapt``, ``cluster.get_client``) and is
  untested here.
"""

from __future__ import annotations

import os
import threading

from traitlets import Dict, Enum, Integer, Unicode, default
from traitlets.config import LoggingConfigurable


class DaskClusters(LoggingConfigurable):
    """Hands out a Dask client for a tenant's experiment."""

    mode = Enum(
        ["local", "address", "gateway"],
        config=True,
        help="""Where experiments run: ``local`` (a LocalCluster owned by the service),
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
        help="""Workers of the service's LocalCluster (one thread each). Default from
        ``$FEDHUB_EXPERIMENTS_WORKERS``, else 2.

            c.DaskClusters.n_workers = 4
        """,
    )

    @default("n_workers")
    def _n_workers_default(self):
        return int(os.environ.get("FEDHUB_EXPERIMENTS_WORKERS", "2"))

    memory_limit = Unicode(
        "2GiB", config=True, help="""Memory limit per LocalCluster worker (``"2GiB"``)."""
    )

    scheduler_address = Unicode(
        config=True,
        help="""Address of an existing Dask scheduler (``tcp://10.0.0.5:8786``). Default
        from ``$FEDHUB_EXPERIMENTS_DASK_ADDRESS``.""",
    )

    @default("scheduler_address")
    def _address_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_DASK_ADDRESS", "")

    gateway_address = Unicode(
        config=True,
        help="""Dask Gateway URL for ``mode = "gateway"``. Default from
        ``$FEDHUB_EXPERIMENTS_GATEWAY_URL``.""",
    )

    @default("gateway_address")
    def _gateway_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_GATEWAY_URL", "")

    gateway_workers_per_tier = Dict(
        {"free": 1, "starter": 2, "professional": 4, "enterprise": 8},
        config=True,
        help="""Most workers a tenant's Gateway cluster may adapt to, by tier.

            c.DaskClusters.gateway_workers_per_tier = {"free": 1, "enterprise": 16}
        """,
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._cluster = None
        self._client = None
        self._gateway = None
        self._tenant_clusters: dict[str, object] = {}

    def client(self, tenant: str, tier: str):
        """A Dask client for ``tenant``'s run (shared: do not close it)."""
        with self._lock:
            if self.mode == "gateway":
                return self._gateway_client(tenant, tier)
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self):
        from distributed import Client, LocalCluster

        if self.mode == "address":
            if not self.scheduler_address:
                raise ValueError("DaskClusters.mode is 'address' but no scheduler_address is set")
            self.log.info("experiments run on the Dask scheduler at %s", self.scheduler_address)
            return Client(self.scheduler_address, set_as_default=False)
        self._cluster = LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            memory_limit=self.memory_limit,
        )
        self.log.info(
            "experiments run on a LocalCluster of %d workers at %s",
            self.n_workers,
            self._cluster.scheduler_address,
        )
        return Client(self._cluster, set_as_default=False)

    def _gateway_client(self, tenant: str, tier: str):
        cluster = self._tenant_clusters.get(tenant)
        if cluster is None:
            from dask_gateway import Gateway  # not installed here: see the module docstring

            if self._gateway is None:
                self._gateway = Gateway(self.gateway_address or None)
            cluster = self._gateway.new_cluster()
            cluster.adapt(minimum=0, maximum=int(self.gateway_workers_per_tier.get(tier, 1)))
            self._tenant_clusters[tenant] = cluster
            self.log.info("tenant %s: new Dask Gateway cluster %s", tenant, cluster.name)
        return cluster.get_client(set_as_default=False)

    @property
    def total_workers(self) -> int:
        if self._client is None:
            return self.n_workers
        return max(1, len(self._client.scheduler_info(n_workers=-1)["workers"]))

    def close(self) -> None:
        with self._lock:
            for cluster in self._tenant_clusters.values():
                cluster.shutdown()
            self._tenant_clusters.clear()
            if self._client is not None:
                self._client.close(timeout=2)
                self._client = None
            if self._cluster is not None:
                self._cluster.close(timeout=2)
                self._cluster = None
