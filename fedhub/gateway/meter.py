"""Worker time of Dask Gateway clusters, metered into fedhub's usage table.

Each worker process is metered from the moment the backend starts it until it is
stopped, in slices (every ``c.FedhubBackend.meter_interval`` seconds while it runs,
and a last one when it stops). A slice becomes three meter events of the cluster
owner's tenant: ``dask_worker_seconds`` (wall time, reported per user), and
``cpu_seconds`` / ``memory_gb_seconds`` (the worker's cores and memory x time), so a
tenant's gateway workers count against its compute hours and are billed like its
servers' reserved profiles. Each event's idempotency key is the worker and the slice's
start, so a slice recorded twice counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from fedhub import metering
from fedhub.db import get_engine, session_scope
from fedhub.limits import CPU_SECONDS, DASK_WORKER_SECONDS, MEMORY_GB_SECONDS

SOURCE = "gateway"


@dataclass(frozen=True)
class WorkerSlice:
    """A worker's run between ``start`` and ``end`` (naive UTC)."""

    tenant: str
    username: str
    cluster: str
    worker: str
    cores: float
    memory_gb: float
    start: datetime
    end: datetime
    #: False for a service's cluster (the experiments service): the service bills its own
    #: usage (client-hours), so only the wall time is recorded, for reports
    priced: bool = True

    def usages(self) -> list[metering.Usage]:
        seconds = (self.end - self.start).total_seconds()
        if seconds <= 0:
            return []
        key = f"{self.cluster}:{self.worker}:{self.start.isoformat()}"
        attrs = {"cluster": self.cluster, "worker": self.worker}
        return [
            metering.Usage(
                tenant=self.tenant,
                kind=kind,
                quantity=quantity,
                start=self.start,
                end=self.end,
                source=SOURCE,
                idempotency_key=f"{kind}:{key}",
                username=self.username,
                attributes=attrs,
            )
            for kind, quantity in (
                (DASK_WORKER_SECONDS, seconds),
                (CPU_SECONDS, seconds * self.cores),
                (MEMORY_GB_SECONDS, seconds * self.memory_gb),
            )
            if self.priced or kind == DASK_WORKER_SECONDS
        ]


def record_worker_time(db_url: str | None, slices: Iterable[WorkerSlice]) -> int:
    """Write the slices' meter events (blocking: call it off the event loop)."""
    usages = [u for s in slices for u in s.usages()]
    if not usages:
        return 0
    with session_scope(get_engine(db_url)) as s:
        return metering.record(s, usages)


class WorkerClock:
    """The gateway's running workers and how far each has been metered (in memory).

    A gateway restarted while clusters run meters their workers again from its start:
    the time between the last slice and the restart is not counted (at most one
    interval), never counted twice.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], WorkerSlice] = {}

    def __len__(self) -> int:
        return len(self._open)

    def started(self, slice_: WorkerSlice) -> None:
        """A worker started at ``slice_.start`` (its ``end`` is ignored)."""
        self._open[(slice_.cluster, slice_.worker)] = slice_

    def stopped(self, cluster: str, worker: str, now: datetime) -> list[WorkerSlice]:
        """The worker's last slice (empty if it was not metered)."""
        open_ = self._open.pop((cluster, worker), None)
        return [replace(open_, end=now)] if open_ is not None else []

    def cluster_stopped(self, cluster: str, now: datetime) -> list[WorkerSlice]:
        """Close every worker of ``cluster`` still open (stopped with the cluster)."""
        keys = [k for k in self._open if k[0] == cluster]
        return [s for c, w in keys for s in self.stopped(c, w, now)]

    def tick(self, now: datetime) -> list[WorkerSlice]:
        """A slice up to ``now`` for every running worker; the next starts at ``now``."""
        out = []
        for key, open_ in self._open.items():
            if now > open_.start:
                out.append(replace(open_, end=now))
                self._open[key] = replace(open_, start=now)
        return out
