"""Run-time enforcement: a periodic task in the hub that meters, warns, stops and culls.

It runs inside the hub process (one per hub, started by the first tier spawner)
rather than as a managed service because everything it acts on is the hub's
own state: the running spawners, their ``last_activity`` and the way to stop a
server cleanly (proxy route removed, ``Spawner.stop``, post-stop hook releasing
the reservation). A service would need an admin-scoped token to do the same
through the REST API, and would still have to guess which servers the hub
thinks are pending. The decisions themselves are the pure :func:`plan`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from fedhub import events, limits, quotas
from fedhub.db import session_scope
from fedhub.db.base import utcnow
from fedhub.extensions.hub.spawner import metrics
from fedhub.jobs import PeriodicJob
from fedhub.tenancy.models import Tenant, TenantStatus
from fedhub.tenancy.store import TenantStore

WARN_THRESHOLDS = (80, 100)


@dataclass(frozen=True)
class TenantState:
    """What the reconciler knows about one tenant with reserved servers."""

    slug: str
    suspended: bool
    compute_used: float
    compute_limit: float
    idle_timeout: float  # seconds; 0 disables culling
    over_budget_since: datetime | None = None
    suspended_since: datetime | None = None


@dataclass(frozen=True)
class Stop:
    tenant: str
    username: str
    server_name: str
    reason: str  # compute_budget_exhausted | tenant_suspended | idle
    detail: str


def plan(
    servers: list[tuple[str, str, str]],
    tenants: dict[str, TenantState],
    last_activity: dict[tuple[str, str], datetime | None],
    now: datetime,
    grace: float,
) -> list[Stop]:
    """Which servers to stop now. ``servers`` are (tenant, username, server_name)."""
    stops = []
    for tenant, user, name in servers:
        state = tenants.get(tenant)
        if state is None:
            continue
        since = state.suspended_since if state.suspended else state.over_budget_since
        if since is not None and (now - since).total_seconds() >= grace:
            if state.suspended:
                reason, detail = "tenant_suspended", "the organisation is suspended"
            else:
                reason = "compute_budget_exhausted"
                detail = f"{state.compute_used:.4g} of {state.compute_limit:g} compute hours used"
            stops.append(Stop(tenant, user, name, reason, detail))
            continue
        seen = last_activity.get((user, name))
        if state.idle_timeout and seen and (now - seen).total_seconds() >= state.idle_timeout:
            stops.append(
                Stop(tenant, user, name, "idle", f"no activity for {state.idle_timeout:g} s")
            )
    return stops


class Reconciler:
    """The periodic task; one per hub process (see :meth:`ensure_started`)."""

    _instance: Reconciler | None = None

    def __init__(
        self,
        app,
        store: TenantStore,
        *,
        interval: float,
        grace: float,
        idle_timeout_override: float = 0,
        cull_idle: bool = True,
        log=None,
    ):
        self.app = app
        self.store = store
        self.db = store.db
        self.interval = interval
        self.grace = grace
        self.idle_timeout_override = idle_timeout_override
        self.cull_idle = cull_idle
        self.log = log or logging.getLogger("fedhub.reconciler")
        self._job: PeriodicJob | None = None

    @classmethod
    def ensure_started(cls, app, store: TenantStore, **kwargs) -> Reconciler | None:
        if app is None or kwargs.get("interval", 0) <= 0:
            return None
        if cls._instance is None or cls._instance.app is not app:
            cls._instance = cls(app, store, **kwargs)
            cls._instance.start()
        return cls._instance

    def start(self) -> None:
        # on the event loop (it reads the hub's session); a failed run is logged and counted,
        # and the next tick retries: a database hiccup must not end enforcement for good
        self._job = PeriodicJob(
            "fedhub reconciler run",
            self.run_once,
            self.interval,
            logger=self.log,
            on_result=lambda ok: metrics.RECONCILER_RUNS.labels("success" if ok else "error").inc(),
        ).start()
        self.log.info("fedhub reconciler every %ss (grace %ss)", self.interval, self.grace)

    # -- one run -------------------------------------------------------------

    async def run_once(self, now: datetime | None = None) -> list[Stop]:
        now = now or utcnow()
        # database work stays on the event loop's thread: in the hub, fedhub's
        # session is the hub's own (fedhub.db.share_session)
        recorded = quotas.meter_running(self.db, now=now)
        for u in recorded:
            metrics.USAGE.labels(u.tenant, u.kind).inc(u.quantity)
        rows = quotas.reservations(self.db)
        rows = self._drop_orphans(rows, now)
        tenants = self._tenant_states({r.tenant for r in rows}, now)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.tenant] = counts.get(r.tenant, 0) + 1
        for tenant, n in counts.items():
            metrics.RUNNING_SERVERS.labels(tenant).set(n)
        for tenant in set(self._gauged) - set(counts):
            metrics.RUNNING_SERVERS.labels(tenant).set(0)
        self._gauged = set(counts)
        activity = {(r.username, r.server_name): self._last_activity(r) for r in rows}
        if not self.cull_idle:
            activity = {}
        stops = plan(
            [(r.tenant, r.username, r.server_name) for r in rows if r.state == quotas.RUNNING],
            tenants,
            activity,
            now,
            self.grace,
        )
        for stop in stops:
            await self._stop(stop)
        return stops

    _gauged: set[str] = set()

    def _spawner(self, username: str, server_name: str):
        try:
            user = self.app.users[username]
        except KeyError:
            return None
        return user.spawners.get(server_name)

    def _last_activity(self, row) -> datetime | None:
        spawner = self._spawner(row.username, row.server_name)
        if spawner is None or spawner.orm_spawner is None:
            return None
        return spawner.orm_spawner.last_activity

    def _drop_orphans(self, rows, now: datetime):
        """Free reservations the hub has no active server for (left by a crash)."""
        kept = []
        for r in rows:
            spawner = self._spawner(r.username, r.server_name)
            young = (now - r.created_at) < timedelta(seconds=max(2 * self.interval, 30))
            if (spawner is not None and spawner.active) or young:
                kept.append(r)
                continue
            self.log.warning("Freeing orphaned reservation of %s:%s", r.username, r.server_name)
            quotas.release(self.db, r.username, r.server_name, now=now, meter=False)
        return kept

    def _tenant_states(self, slugs: set[str], now: datetime) -> dict[str, TenantState]:
        from sqlalchemy import select

        states = {}
        month = now.strftime("%Y-%m")
        with session_scope(self.db) as s:
            for t in s.scalars(select(Tenant).where(Tenant.slug.in_(slugs))):
                tier = self.store.tiers.effective(t.tier, t.overrides)
                used = quotas.compute_hours_used(s, t.slug, now)
                limit = tier.compute_hours_per_month
                pct = 100 * used / limit if limit else 100
                for threshold in WARN_THRESHOLDS:
                    if pct >= threshold and quotas.add_notice(
                        s, t.slug, f"compute-{threshold}:{month}", now
                    ):
                        self._warn(t.slug, threshold, used, limit, tier.display_name, now)
                over_since = quotas.notice_time(s, t.slug, f"compute-100:{month}")
                suspended = t.status == TenantStatus.SUSPENDED
                if suspended:
                    quotas.add_notice(s, t.slug, "suspended", now)
                else:
                    quotas.drop_notice(s, t.slug, "suspended")
                idle = self.idle_timeout_override or tier.idle_timeout_minutes * 60
                states[t.slug] = TenantState(
                    t.slug,
                    suspended,
                    used,
                    limit,
                    idle,
                    over_budget_since=over_since,
                    suspended_since=quotas.notice_time(s, t.slug, "suspended")
                    if suspended
                    else None,
                )
        return states

    def _warn(self, tenant, threshold, used, limit, tier_name, now) -> None:
        grace = timedelta(seconds=self.grace)
        message = (
            f"Your organisation has used {used:.2f} of the {limit:g} compute hours its "
            f"{tier_name} tier includes this month ({threshold}%)."
        )
        if threshold >= 100:
            message += (
                f" Running servers will be stopped after {now + grace:%Y-%m-%d %H:%M} UTC"
                f" and new ones refused until {quotas.next_month(now)}."
            )
        events.emit(
            "quota.warning",
            tenant=tenant,
            actor="fedhub-reconciler",
            target=tenant,
            severity="warning" if threshold >= 100 else "notice",
            details={  # the one shape of a limit's numbers (fedhub.limits.details)
                **limits.details("compute_hours_per_month", limit, round(used, 4)),
                "threshold": threshold,
                "message": message,
            },
        )
        self.log.warning("Tenant %s at %s%% of its compute hours", tenant, threshold)

    async def _stop(self, stop: Stop) -> None:
        spawner = self._spawner(stop.username, stop.server_name)
        if spawner is None or not spawner.active or spawner.pending:
            return
        user = spawner.user
        self.log.warning("Stopping %s (%s: %s)", spawner._log_name, stop.reason, stop.detail)
        spawner.fedhub_stop_reason = stop.reason
        spawner.fedhub_stop_requested = utcnow().isoformat()
        tic = time.perf_counter()
        await self.app.proxy.delete_user(user, stop.server_name)
        await user.stop(stop.server_name)
        metrics.SERVERS_STOPPED.labels(stop.reason, stop.tenant).inc()
        if stop.reason == "idle":
            events.emit(
                "server.culled",
                tenant=stop.tenant,
                actor="fedhub-reconciler",
                target=f"{stop.username}/{stop.server_name}",
                details={"reason": "idle", "detail": stop.detail},
            )
        self.log.info("Stopped %s in %.2fs", spawner._log_name, time.perf_counter() - tic)
