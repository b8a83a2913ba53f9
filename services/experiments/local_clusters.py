"""``DaskClusters.mode = "local"``: the clusters the experiments service starts itself.

:class:`LocalClusters` is a mix-in of :class:`~.clusters.DaskClusters` (it reads that
class's traits) that starts each cluster as a :class:`~.private_cluster.PrivateCluster` on
this machine:

* the service's own cluster, shared by every tenant: ``n_workers`` workers running as
  ``worker_account`` when the service runs as root;
* a tenant's own cluster, started on demand by the tenant worker pool
  (:mod:`.tenant_workers`): ``tenant_workers`` workers running as the tenant's account
  (:func:`fedhub.accounts.tenant_account`), the only workers that may read its datasets.
"""

from __future__ import annotations

import os

from fedhub import accounts


class LocalClusters:
    """Starts the ``local`` mode's clusters (mix-in of :class:`~.clusters.DaskClusters`)."""

    def _start_private_cluster(self):
        from .clusters import ClusterConfigError
        from .private_cluster import PrivateCluster

        account = None
        if accounts.can_isolate():
            account = accounts.ensure_account(self.worker_account)
            if account.pw_uid == 0 or account.pw_gid == 0:
                raise ClusterConfigError(
                    f"DaskClusters.worker_account {self.worker_account!r} is root's uid or "
                    "group: the workers must run as an unprivileged account"
                )
            self._check_python_reachable(self.worker_account)
            self.log.info("Dask workers run as %s (uid %d)", account.pw_name, account.pw_uid)
        else:
            self.log.warning(
                "Dask workers run as the service's own account (uid %d), not isolated from "
                "the hub's files: run the hub as root to give them %s",
                os.getuid(),
                self.worker_account,
            )
        return PrivateCluster(
            self.n_workers,
            account=account,
            memory_limit=self.memory_limit,
            scratch_parent=self.worker_scratch_dir,
            python=self.worker_python,
            preload=[self.worker_preload] if self.worker_preload else [],
        )

    def _start_tenant_cluster(self, slug: str):
        """``slug``'s own cluster: ``tenant_workers`` workers running as its account."""
        from .clusters import ClusterConfigError
        from .private_cluster import PrivateCluster

        name = accounts.tenant_account(slug)
        entry = None
        if accounts.can_isolate():
            entry = accounts.ensure_account(name)
            if entry.pw_uid == 0 or entry.pw_gid == 0:
                raise ClusterConfigError(f"tenant account {name!r} is root's uid or group")
            self._check_python_reachable(name)
        else:
            self.log.warning(
                "tenant %s's workers run as the service's own account (uid %d), not as %s: "
                "run the hub as root to keep tenants' datasets apart",
                slug,
                os.getuid(),
                name,
            )
        cluster = PrivateCluster(
            self.tenant_workers,
            account=entry,
            memory_limit=self.memory_limit,
            scratch_parent=self.worker_scratch_dir,
            python=self.worker_python,
            preload=[self.worker_preload] if self.worker_preload else [],
            worker_prefix=f"fedhub-tenant-{slug}",
            name=f"fedhub-tenant-{slug}",
        )
        try:
            cluster.wait_until_ready(timeout=120)
        except BaseException:
            cluster.close(timeout=2)
            raise
        self.log.info(
            "tenant %s: %d worker(s) as %s at %s",
            slug,
            self.tenant_workers,
            name,
            cluster.scheduler_address,
        )
        return cluster, name

    def _check_python_reachable(self, account: str) -> None:
        from .clusters import ClusterConfigError

        blocked = accounts.blocked_for_others(self.worker_python)
        if blocked is not None:
            raise ClusterConfigError(
                f"Dask workers run as {account}, which cannot reach {blocked} "
                f"(needed to run {os.path.realpath(self.worker_python)}). Create the "
                "virtualenv with a system Python (make does), or set "
                "c.DaskClusters.worker_python."
            )
