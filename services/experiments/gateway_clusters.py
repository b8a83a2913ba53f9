"""``DaskClusters.mode = "gateway"``: one Dask Gateway cluster per tenant.

Identity. The service talks to the gateway with its own JupyterHub API token (the
``experiments`` service's ``$JUPYTERHUB_API_TOKEN``), so the gateway user that owns every
tenant's cluster is ``service:experiments``. No tenant can list, connect to, scale or stop
these clusters: the gateway shows a user only its own clusters, and each cluster has its
own TLS credentials, made by the gateway for that cluster alone and held by the service in
memory. Inside the service, a tenant's runs are only ever handed the client of that
tenant's cluster (one cluster and one client per tenant, never shared), so one tenant's
rounds never run on another tenant's workers.

Which Unix account runs the schedulers and workers is the gateway backend's decision. Every
cluster carries the option ``tenant=<slug>`` when the gateway declares it; fedhub's own
gateway (``fedhub.gateway``) accepts it from this service only and runs the cluster as the
tenant's account ``fedhub_t_<slug>``, never a user's or another tenant's, so one tenant's
workers cannot read another tenant's cluster credentials (``docs/gateway.md``). Nothing of
a cluster runs in this process: it holds a Dask client per tenant and one ``Gateway``.

Sizing. Each cluster is scaled to the tenant's effective tier's ``gateway_max_workers``
(capped by ``c.DaskClusters.gateway_workers_per_tier``) when it is created or reconnected;
the tier's ``gateway_worker_cores`` and ``gateway_worker_memory_gb`` are asked for through
the gateway's ``worker_cores`` and ``worker_memory`` (GiB) options when the gateway
declares them. The gateway checks them again (fedhub's gateway against the same tier keys,
``c.ClusterConfig`` limits otherwise): this is a request, not the enforcement.

Lifetime. Clusters outlive the service: stopping the service closes its connections only,
and a restarted service reconnects to each tenant's running cluster by name (kept in
``<state>/experiments/gateway-clusters.json``, 0600) or by its ``tenant`` option. A cluster
with no task for the gateway's idle timeout (``c.ClusterConfig.idle_timeout`` on the
gateway; asked for per cluster as ``c.DaskClusters.gateway_idle_timeout`` when the gateway
declares an ``idle_timeout`` option) is shut down by its own scheduler; the next run of
that tenant starts a new one. The gateway measures idleness by the scheduler's task
transitions, and a run's rounds go straight to its workers' actors without any: while a
tenant has a run in progress (``busy(tenant)``: an experiment ``running`` in the service's
database), the service submits a no-op task to its cluster every
``c.DaskClusters.gateway_keepalive_interval`` seconds, so that a long run is not taken for
idle.

Failures. A gateway that cannot be reached, refuses the service's credentials or refuses
the cluster raises :class:`GatewayUnreachable` or :class:`GatewayRefused`, whose message
names the gateway and the cause; the run fails with that message (no traceback).

:class:`GatewayMode` is the part of :class:`~.clusters.DaskClusters` that builds the one
:class:`TenantGatewayClusters` from its ``gateway_*`` settings and sizes each cluster.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedhub import accounts
from fedhub.db import rls
from fedhub.extras import needs_extra

#: What a cluster asks the gateway for, when the gateway declares the option.
TENANT_OPTION = "tenant"
CORES_OPTION = "worker_cores"
MEMORY_OPTION = "worker_memory"
IDLE_OPTION = "idle_timeout"


class GatewayError(RuntimeError):
    """The experiment cannot get a Dask Gateway cluster (the message says why)."""


class GatewayUnreachable(GatewayError):
    """The gateway did not answer (not running, wrong address, network)."""


class GatewayRefused(GatewayError):
    """The gateway answered no: credentials, a limit, or a cluster that failed."""


@dataclass(frozen=True)
class ClusterSize:
    """What one tenant's cluster is scaled to."""

    workers: int
    worker_cores: int | None = None
    worker_memory_gib: float | None = None


@dataclass
class _Held:
    name: str
    client: object  # distributed.Client, with the cluster's TLS credentials


class TenantGatewayClusters:
    """Creates, reuses and reconnects one gateway cluster per tenant."""

    def __init__(
        self,
        address: str,
        auth,
        size_of: Callable[[str, str], ClusterSize],
        busy: Callable[[str], bool],
        registry: Path | None,
        idle_timeout: float,
        start_timeout: float,
        keepalive_interval: float,
        log: logging.Logger,
        proxy_address: str = "",
    ) -> None:
        self.address = address
        self.proxy_address = proxy_address
        self.auth = auth
        self.size_of = size_of
        self.busy = busy
        self.registry = registry
        self.idle_timeout = idle_timeout
        self.start_timeout = start_timeout
        self.keepalive_interval = keepalive_interval
        self.log = log
        self._gateway = None
        self._declared: set[str] | None = None
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._keepalive: threading.Thread | None = None

    # ------------------------------------------------------------------ public
    def client(self, tenant: str, tier: str):
        """The client of ``tenant``'s cluster, started or reconnected if need be."""
        with self._lock:
            lock = self._locks.setdefault(tenant, threading.Lock())
        with lock:
            held = self._held.get(tenant)
            if held is not None:
                if self._active(held.name):
                    return held.client
                self.log.info("tenant %s: gateway cluster %s has stopped", tenant, held.name)
                self._release(self._held.pop(tenant))
            size = self.size_of(tenant, tier)
            name = self._find(tenant)
            created = name is None
            if created:
                name = self._create(tenant, size)
            try:
                held = self._connect(tenant, name, size)
            except GatewayError:
                if created:  # refused after it was made (a limit on scaling): not left idle
                    self._stop_quietly(name)
                raise
            self._held[tenant] = held
            self._remember(tenant, name)
            self._start_keepalive()
            return held.client

    def cluster_name(self, tenant: str) -> str | None:
        """The name of the cluster ``tenant``'s runs use now, if any."""
        held = self._held.get(tenant)
        return held.name if held is not None else None

    def close(self) -> None:
        """Close the service's connections; the clusters keep running (idle timeout)."""
        self._stopping.set()
        with self._lock:
            for held in self._held.values():
                self._release(held)
            self._held.clear()
            # Dropping the only reference closes it here, through Gateway's finaliser:
            # after an explicit close() that finaliser fails (its loop is gone).
            self._gateway = None

    # ------------------------------------------------------------------ steps
    def _gw(self):
        if self._gateway is None:
            from dask_gateway import Gateway

            if not self.address:
                raise GatewayRefused(
                    "DaskClusters.mode is 'gateway' but no gateway address is set: set "
                    "c.DaskClusters.gateway_address (or $FEDHUB_EXPERIMENTS_GATEWAY_URL)"
                )
            self._gateway = Gateway(
                self.address, proxy_address=self.proxy_address or None, auth=self.auth
            )
        return self._gateway

    def _options(self) -> set[str]:
        """The cluster options this gateway declares (asked once)."""
        if self._declared is None:
            spec = self._call("reading its cluster options", self._gw().cluster_options)
            self._declared = set(spec)
        return self._declared

    def _active(self, name: str) -> bool:
        from dask_gateway.client import ClusterStatus

        try:
            report = self._call(f"checking cluster {name}", self._gw().get_cluster, name)
        except GatewayRefused:  # 404: the gateway forgot it (stopped long ago, restarted)
            return False
        return report.status in (ClusterStatus.PENDING, ClusterStatus.RUNNING)

    def _find(self, tenant: str) -> str | None:
        """A running cluster of ``tenant`` left by a previous service process."""
        reports = self._call("listing the service's clusters", self._gw().list_clusters)
        tagged = [r.name for r in reports if r.options.get(TENANT_OPTION) == tenant]
        known = self._recalled().get(tenant)
        for name in tagged or [r.name for r in reports if r.name == known]:
            self.log.info("tenant %s: reconnecting to gateway cluster %s", tenant, name)
            return name
        return None

    def _create(self, tenant: str, size: ClusterSize) -> str:
        declared = self._options()
        wanted = {
            TENANT_OPTION: tenant,
            CORES_OPTION: size.worker_cores,
            MEMORY_OPTION: size.worker_memory_gib,
            IDLE_OPTION: self.idle_timeout or None,
        }
        options = {k: v for k, v in wanted.items() if k in declared and v is not None}
        name = self._call(f"a cluster for organisation {tenant}", self._gw().submit, **options)
        self.log.info(
            "tenant %s: new gateway cluster %s (%d workers, options %s)",
            tenant,
            name,
            size.workers,
            sorted(options),
        )
        return name

    def _connect(self, tenant: str, name: str, size: ClusterSize) -> _Held:
        """Wait (bounded) for ``name`` to run, scale it to the tier and connect to it.

        A plain ``distributed.Client`` with the cluster's credentials from its report, not
        dask_gateway's ``GatewayCluster``: each of those carries a ``Gateway`` whose
        finaliser, when the garbage collector runs it on an event loop's thread, waits for
        that same loop and hangs it. The service keeps a single ``Gateway``.
        """
        from dask_gateway.client import ClusterStatus
        from distributed import Client

        gw = self._gw()
        deadline = time.monotonic() + self.start_timeout
        while True:
            report = self._call(f"starting cluster {name}", gw.get_cluster, name)
            if report.status is ClusterStatus.RUNNING:
                break
            if report.status is not ClusterStatus.PENDING:
                raise GatewayRefused(
                    f"the Dask cluster of organisation {tenant} ({name}) is "
                    f"{report.status.name.lower()}: it did not start on the gateway"
                )
            if time.monotonic() > deadline:
                self._stop_quietly(name)
                raise GatewayRefused(
                    f"the Dask cluster of organisation {tenant} did not start within "
                    f"{self.start_timeout:g} s (c.DaskClusters.gateway_start_timeout)"
                )
            time.sleep(0.25)
        self._call(f"scaling cluster {name}", gw.scale_cluster, name, size.workers)
        client = self._call(
            f"connecting to cluster {name}",
            Client,
            report.scheduler_address,
            security=report.security,
            set_as_default=False,
        )
        try:
            client.wait_for_workers(1, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            client.close()
            raise GatewayRefused(
                f"no Dask worker of organisation {tenant}'s cluster started within "
                f"{self.start_timeout:g} s (c.DaskClusters.gateway_start_timeout)"
            ) from None
        except BaseException:
            client.close()
            raise
        return _Held(name, client)

    def _start_keepalive(self) -> None:
        if self._keepalive is None and self.keepalive_interval > 0:
            self._keepalive = threading.Thread(
                target=self._keep_busy_clusters_alive, name="gateway-keepalive", daemon=True
            )
            self._keepalive.start()

    def _keep_busy_clusters_alive(self) -> None:
        """A no-op task on the cluster of each tenant with a run in progress."""
        from distributed import fire_and_forget

        while not self._stopping.wait(self.keepalive_interval):
            for tenant, held in list(self._held.items()):
                try:
                    if self.busy(tenant):
                        fire_and_forget(held.client.submit(int, 0, pure=False))
                except Exception as e:  # noqa: BLE001 - a closed client, the database: next turn
                    self.log.warning("keepalive for tenant %s skipped: %s", tenant, e)

    # ------------------------------------------------------------------ helpers
    def _call(self, what: str, fn, *args, **kwargs):
        """``fn(...)`` with the gateway's failures turned into messages a user can read."""
        from dask_gateway.client import GatewayClusterError, GatewayServerError

        try:
            return fn(*args, **kwargs)
        except (OSError, TimeoutError) as e:  # aiohttp's connection errors are OSErrors
            raise GatewayUnreachable(
                f"the Dask Gateway at {self.address} cannot be reached ({what}): {_reason(e)}"
            ) from None
        except (GatewayClusterError, GatewayServerError, ValueError) as e:
            raise GatewayRefused(f"the Dask Gateway refused {what}: {e}") from None
        except Exception as e:
            status = getattr(e, "status", None)
            if status in (401, 403):
                raise GatewayRefused(
                    f"the Dask Gateway at {self.address} refused the experiments service's "
                    f"credentials (HTTP {status}) while {what}: give the service access "
                    "to the gateway (c.DaskClusters.gateway_auth)"
                ) from None
            if status in (502, 503, 504):  # the proxy in front of it has no gateway behind
                raise GatewayUnreachable(
                    f"the Dask Gateway at {self.address} cannot be reached ({what}): HTTP "
                    f"{status} from the proxy in front of it"
                ) from None
            if isinstance(status, int):
                raise GatewayRefused(
                    f"the Dask Gateway at {self.address} answered HTTP {status} while {what}"
                ) from None
            raise

    def _stop_quietly(self, name: str) -> None:
        try:
            self._gw().stop_cluster(name)
        except Exception:  # noqa: BLE001 - best effort; the gateway's idle timeout remains
            self.log.warning("could not stop gateway cluster %s", name)

    @staticmethod
    def _release(held: _Held) -> None:
        held.client.close(timeout=2)

    def _recalled(self) -> dict[str, str]:
        if self.registry is None or not self.registry.exists():
            return {}
        try:
            return dict(json.loads(self.registry.read_text()))
        except (OSError, ValueError):
            return {}

    def _remember(self, tenant: str, name: str) -> None:
        if self.registry is None:
            return
        with self._lock:
            names = self._recalled()
            if names.get(tenant) != name:
                names[tenant] = name
                accounts.write_private(self.registry, json.dumps(names, sort_keys=True))


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:300]


class GatewayMode:
    """The ``gateway`` mode of :class:`~.clusters.DaskClusters` (a mix-in that reads its
    ``gateway_*`` traits): one :class:`TenantGatewayClusters`, made on first use."""

    def _gateway_clusters(self):
        with self._lock:
            if self._gateway is None:
                with needs_extra("gateway", "DaskClusters.mode = 'gateway'"):
                    from dask_gateway.auth import JupyterHubAuth
                auth = self.gateway_auth
                if auth is None:
                    auth = JupyterHubAuth(api_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""))
                state_dir = getattr(self.parent, "state_dir", "")
                self._gateway = TenantGatewayClusters(
                    address=self.gateway_address,
                    proxy_address=self.gateway_proxy_address,
                    auth=auth,
                    size_of=self.gateway_cluster_size,
                    busy=rls.as_platform(self._tenant_running),
                    registry=(
                        Path(state_dir) / "experiments" / "gateway-clusters.json"
                        if state_dir
                        else None
                    ),
                    idle_timeout=self.gateway_idle_timeout,
                    start_timeout=self.gateway_start_timeout,
                    keepalive_interval=self.gateway_keepalive_interval,
                    log=self.log,
                )
            return self._gateway

    def gateway_cluster_size(self, tenant: str, tier_name: str):
        """What ``tenant``'s cluster asks the gateway for: its effective tier's gateway
        keys (the limits registry's ``gateway_max_workers``, ``gateway_worker_cores``,
        ``gateway_worker_memory_gb``), workers capped by ``gateway_workers_per_tier``."""
        from fedhub.db import session_scope
        from fedhub.tiers import load_tiers

        from .quota import tenant_tier

        with session_scope(self._db_url()) as s:
            tier_name, tier = tenant_tier(s, load_tiers(), tenant)
        workers = tier.gateway_max_workers
        if tier_name in self.gateway_workers_per_tier:
            workers = min(workers, int(self.gateway_workers_per_tier[tier_name]))
        return ClusterSize(
            workers=max(1, workers),
            worker_cores=tier.gateway_worker_cores,
            worker_memory_gib=tier.gateway_worker_memory_gb,
        )
