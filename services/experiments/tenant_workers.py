"""Workers that run as one tenant's own account: where a tenant's private data is read.

A tenant's datasets (:mod:`fedhub.datasets`) are files of the tenant's account
(``fedhub_t_acme``), 0700/0600. Only processes of that account can open them, so the code
that reads them (training on private data, a federation member's rounds) runs on workers
of that account, reached through a :class:`TenantExecutor`
(``DaskClusters.tenant_executor(slug, tier)``):

* ``local`` mode: each tenant gets, on demand, its own :class:`~.private_cluster.PrivateCluster`
  (in-process TLS scheduler with credentials of its own, made in memory) with
  ``c.DaskClusters.tenant_workers`` :class:`~.private_cluster.AccountWorker` processes
  started already switched to the tenant's account (made if missing, when the service is
  root). A scheduler of its own rather than extra workers on the shared one: the shared
  runs broadcast their payload (``scatter(broadcast=True)``) and spread over every worker
  the scheduler knows, so a tenant worker on the shared scheduler would receive other
  tenants' data, and a shared worker could be handed a tenant's task. With one scheduler
  per tenant neither can happen, whatever a caller submits. Tasks are still restricted to
  the tenant's worker addresses (``allow_other_workers=False``).
  A tenant's cluster retires after ``c.DaskClusters.tenant_worker_idle_timeout`` seconds
  with nothing to do (no task on its scheduler, no submit, no :meth:`TenantExecutor.lease`
  held, no run of the tenant in progress); the next call makes a new one.
* ``gateway`` mode: the tenant's Dask Gateway cluster, which fedhub's gateway already runs
  as the tenant's account (``workers`` is None: the whole cluster is the tenant's).
* ``address`` mode: refused (an operator's scheduler has no tenant accounts).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable


class TenantExecutor:
    """Runs functions on workers of ``tenant``'s own account, and nowhere else.

    ``workers`` are the addresses tasks are restricted to (local mode: read at each submit,
    so a worker its Nanny restarted on a new port is still used), or None when the whole
    cluster is the tenant's (gateway mode). Do not close ``client``: the service owns it.
    """

    def __init__(
        self,
        tenant: str,
        account: str,
        client,
        workers: Callable[[], list[str]] | None = None,
        *,
        pids: Callable[[], list[int]] = lambda: [],
        touch: Callable[[int], None] = lambda delta: None,
    ) -> None:
        self.tenant = tenant
        self.account = account
        self.client = client  # distributed.Client
        self._workers = workers
        self._pids = pids
        self._touch = touch

    @property
    def workers(self) -> list[str] | None:
        return None if self._workers is None else self._workers()

    def __repr__(self) -> str:
        return f"TenantExecutor(tenant={self.tenant!r}, account={self.account!r})"

    def submit(self, fn, *args, **kwargs):
        """``client.submit`` restricted to the tenant's workers, or to the ones of them the
        caller names in ``workers`` (never pure: each call runs)."""
        self._touch(0)
        kwargs.setdefault("pure", False)
        workers = self.workers
        if workers is not None:
            if not workers:
                raise RuntimeError(f"tenant {self.tenant}'s workers are not running")
            wanted = kwargs.get("workers")
            if wanted is not None:  # a caller pinning a task to one of them (a later wave)
                wanted = [wanted] if isinstance(wanted, str) else list(wanted)
                if not set(wanted) <= set(workers):
                    raise RuntimeError(f"{wanted} are not workers of tenant {self.tenant}")
                workers = wanted
            kwargs["workers"] = workers
            kwargs["allow_other_workers"] = False
        return self.client.submit(fn, *args, **kwargs)

    @contextlib.contextmanager
    def lease(self):
        """Keep the tenant's workers up while the block runs (a run whose rounds are long
        or go to actors, which the scheduler does not see as activity)."""
        self._touch(1)
        try:
            yield self
        finally:
            self._touch(-1)

    def worker_pids(self) -> list[int]:
        """Process ids of the tenant's worker entry processes (local mode; [] otherwise)."""
        return self._pids()


class _TenantCluster:
    def __init__(self, cluster, client, account: str) -> None:
        self.cluster = cluster
        self.client = client
        self.account = account
        self.last_used = time.monotonic()
        self.leases = 0


class TenantWorkerPool:
    """Local mode: one small private cluster per tenant, running as the tenant's account.

    ``start(slug)`` builds and starts a tenant's cluster (blocking) and returns
    ``(cluster, account_name)``; ``busy(slug)`` says whether the tenant has a run in
    progress (its cluster must not retire).
    """

    def __init__(
        self,
        start: Callable[[str], tuple[object, str]],
        *,
        idle_timeout: float,
        busy: Callable[[str], bool] = lambda slug: False,
        log=None,
    ) -> None:
        self._start = start
        self.idle_timeout = idle_timeout
        self._busy = busy
        self._log = log
        self._lock = threading.Lock()
        self._starting: dict[str, threading.Lock] = {}
        self._held: dict[str, _TenantCluster] = {}
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def executor(self, slug: str) -> TenantExecutor:
        held = self._get(slug)

        def workers(held=held) -> list[str]:
            found = held.client.scheduler_info(n_workers=-1)["workers"]
            if not found:  # a worker its Nanny is restarting comes back in a moment
                held.client.wait_for_workers(1, timeout=60)
                found = held.client.scheduler_info(n_workers=-1)["workers"]
            return sorted(found)

        def touch(delta: int, held=held) -> None:
            with self._lock:
                held.leases += delta
                held.last_used = time.monotonic()

        def pids(held=held) -> list[int]:
            return held.cluster.worker_pids()

        return TenantExecutor(slug, held.account, held.client, workers, pids=pids, touch=touch)

    def _get(self, slug: str) -> _TenantCluster:
        with self._lock:
            held = self._held.get(slug)
            if held is not None:
                held.last_used = time.monotonic()
                return held
            starting = self._starting.setdefault(slug, threading.Lock())
        with starting:  # one start per tenant; other tenants are not held up
            with self._lock:
                if slug in self._held:
                    return self._held[slug]
            from distributed import Client

            cluster, account = self._start(slug)
            client = Client(cluster, security=cluster.security, set_as_default=False)
            held = _TenantCluster(cluster, client, account)
            with self._lock:
                self._held[slug] = held
            self._start_reaper()
            return held

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    # -- retiring idle clusters ----------------------------------------------------------

    def _start_reaper(self) -> None:
        if self._reaper is not None or self.idle_timeout <= 0:
            return
        self._reaper = threading.Thread(
            target=self._reap_loop, name="tenant-workers-reaper", daemon=True
        )
        self._reaper.start()

    def _reap_loop(self) -> None:
        interval = max(0.2, min(30.0, self.idle_timeout / 4))
        while not self._stop.wait(interval):
            for slug in self.idle_tenants():
                self.retire(slug)

    def idle_tenants(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            candidates = [
                slug
                for slug, held in self._held.items()
                if held.leases == 0 and now - held.last_used >= self.idle_timeout
            ]
        idle = []
        for slug in candidates:
            held = self._held.get(slug)
            if held is None or _scheduler_busy(held.cluster):
                continue
            try:
                if self._busy(slug):
                    continue
            except Exception as e:  # the database is away: keep the workers
                if self._log:
                    self._log.warning("cannot tell whether %s has a run (%s)", slug, e)
                continue
            idle.append(slug)
        return idle

    def retire(self, slug: str) -> bool:
        """Stop ``slug``'s workers and scheduler; True if it had any."""
        with self._lock:
            held = self._held.pop(slug, None)
        if held is None:
            return False
        if self._log:
            self._log.info("tenant %s's workers (%s) retire", slug, held.account)
        _close(held)
        return True

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        for h in held:
            _close(h)


def _scheduler_busy(cluster) -> bool:
    """True while the tenant's scheduler has tasks to run or running."""
    scheduler = getattr(cluster, "scheduler", None)
    if scheduler is None:
        return False
    return bool(
        scheduler.queued
        or scheduler.unrunnable
        or any(ws.processing for ws in list(scheduler.workers.values()))
    )


def _close(held: _TenantCluster) -> None:
    with contextlib.suppress(Exception):
        held.client.close(timeout=2)
    with contextlib.suppress(Exception):
        held.cluster.close(timeout=2)
