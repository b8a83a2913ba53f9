"""Runs queued experiments on Dask, fairly between tenants, and survives restarts.

Admission is round-robin between tenants: when a slot is free, the tenant with the fewest
running experiments (then the one served longest ago) starts its oldest queued run, and no
tenant may hold more than ``max_running_per_tenant`` slots, so one tenant can never take
every worker. Inside Dask the running experiments' rounds interleave: each round is one
task per worker submitted after the previous round finished, so a second tenant's round
queues behind at most one round of the first.

Each run is a thread that calls ``fl.Experiment.run`` with a per-round callback. The
callback persists the round's metrics, meters it (idempotent per experiment and round)
and answers the cancel flag, so a cancel stops the run within one round. Checkpoints go to
``$FEDHUB_STATE_DIR/experiments/<id>/`` every ``checkpoint_every`` rounds; a service that
is killed and restarted puts its running experiments back in the queue and resumes each
from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from traitlets import Bool, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from fedhub import events, metering
from fedhub.db import insert_ignore, rls, session_scope, utcnow
from fedhub.errors import FedhubError
from fedhub.marketplace.errors import NotEntitled

from . import market_refs, quota
from .clusters import DaskClusters
from .models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    ExperimentRound,
    ExperimentRun,
)
from .quota import FL_CLIENT_SECONDS, FL_ROUNDS
from .spec import ExperimentSpec, is_tenant_dataset

SOURCE = "experiments"


class _ServiceStopping(Exception):  # noqa: N818 - internal signal, not an error
    pass


class ExperimentScheduler(LoggingConfigurable):
    """Queue, fair admission and execution of experiments."""

    max_running = Integer(
        config=True,
        help="""Experiments the service runs at once (over all tenants).

            c.ExperimentScheduler.max_running = 8

        Default from ``$FEDHUB_EXPERIMENTS_MAX_RUNNING``, else 4.
        """,
    )
    max_running_per_tenant = Integer(
        config=True,
        help="""Most experiments one tenant may have running at once, whatever its tier
        allows to be queued; keeps a busy tenant from occupying every slot. Default from
        ``$FEDHUB_EXPERIMENTS_MAX_RUNNING_PER_TENANT``, else 2.""",
    )

    @default("max_running")
    def _max_running_default(self):
        return int(os.environ.get("FEDHUB_EXPERIMENTS_MAX_RUNNING", "4"))

    @default("max_running_per_tenant")
    def _per_tenant_default(self):
        return int(os.environ.get("FEDHUB_EXPERIMENTS_MAX_RUNNING_PER_TENANT", "2"))

    checkpoint_every = Integer(
        1, config=True, help="""Write a checkpoint every N rounds (resume granularity)."""
    )
    poll_interval = Integer(1, config=True, help="""Seconds between queue scans.""")
    warm_up = Bool(
        config=True,
        help="""Import torch and start the Dask cluster when the service starts, instead of
        on the first submission (faster first run, but every hub start pays for it).
        Default from ``$FEDHUB_EXPERIMENTS_WARM_UP`` (``1``), else off.""",
    )

    @default("warm_up")
    def _warm_up_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_WARM_UP", "") in ("1", "true", "yes")

    state_dir = Unicode(config=True, help="""Where checkpoints and final weights are kept.""")

    def __init__(self, db_url: str, tenant_tier: Callable[[str], str], **kwargs):
        super().__init__(**kwargs)
        self.db_url = db_url
        self.tenant_tier = tenant_tier
        self.clusters = DaskClusters(parent=self)
        self._pool = ThreadPoolExecutor(max(1, self.max_running), thread_name_prefix="fl-run")
        self._lock = threading.Lock()
        self._running: dict[str, str] = {}  # experiment id -> tenant
        self._served: dict[str, float] = {}  # tenant -> last admission time
        self._cancel: set[str] = set()
        self._stop_reason: dict[str, str] = {}  # experiment id -> "<reason>: <message>"
        self._tiers = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def run_dir(self, exp_id: str) -> Path:
        return Path(self.state_dir) / "experiments" / exp_id

    def start(self) -> None:
        """Requeue what a previous process left running, then start admitting."""
        with session_scope(self.db_url) as s:
            n = s.execute(
                update(ExperimentRun).where(ExperimentRun.status == RUNNING).values(status=QUEUED)
            ).rowcount
        if n:
            self.log.info("requeued %d experiments left running by a previous process", n)
        if self.warm_up:
            threading.Thread(
                target=rls.as_platform(self._warm_up), name="fl-warm-up", daemon=True
            ).start()
        self._thread = threading.Thread(
            target=rls.as_platform(self._loop), name="fl-admit", daemon=True
        )
        self._thread.start()

    def _warm_up(self) -> None:
        """Import torch and start the shared cluster now, not on the first submission."""
        try:
            import fedhub.fl  # noqa: F401

            if self.clusters.mode != "gateway":
                self.clusters.client("", "")
        except Exception:
            self.log.exception("could not start the Dask cluster; will retry on first run")

    def stop(self) -> None:
        """Stop admitting; running experiments stop after their current round and stay
        ``running`` in the database, so the next process resumes them."""
        self._stopping.set()
        self._wake.set()
        # no waiting for the rounds in flight: the runs stay ``running`` in the database
        # and resume from their checkpoints, and the hub wants its services down quickly
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.clusters.close()

    def wake(self) -> None:
        self._wake.set()

    def submit_work(self, fn: Callable, *args):
        """Run ``fn(*args)`` in the pool the experiments run in, as platform work (a
        federation's coordinator, :mod:`.federations.runner`)."""
        return self._pool.submit(rls.as_platform(fn), *args)

    def request_cancel(self, exp_id: str) -> None:
        with self._lock:
            self._cancel.add(exp_id)

    # ---------------------------------------------------------------- standing
    def _tier(self, tenant: str):
        """(tier name, effective tier) of ``tenant`` now: overrides may change mid-run."""
        if self._tiers is None:
            from fedhub.tiers import load_tiers

            self._tiers = load_tiers()
        with session_scope(self.db_url) as s:
            return quota.tenant_tier(s, self._tiers, tenant)

    def _stop(self, exp_id: str, reason: str) -> None:
        """Ask a running experiment to stop after its current round, saying why."""
        with self._lock:
            self._stop_reason.setdefault(exp_id, reason)
            self._cancel.add(exp_id)

    def _enforce(self) -> None:
        """Cancel the queued and stop the running experiments that may no longer run.

        Runs every ``poll_interval``: a tenant suspended or removed, or a user removed from
        their tenant, loses its queued runs at once and its running ones after their round
        in flight. The reason starts the run's ``error`` and is the audit event's ``reason``.
        """
        with session_scope(self.db_url) as s:
            active = s.execute(
                select(
                    ExperimentRun.id,
                    ExperimentRun.tenant,
                    ExperimentRun.username,
                    ExperimentRun.status,
                ).where(ExperimentRun.status.in_((QUEUED, RUNNING)))
            ).all()
            refused = quota.standing(s, [(i, t, u) for i, t, u, _ in active])
        status = {i: st for i, _, _, st in active}
        for exp_id, (reason, message) in refused.items():
            with self._lock:
                in_flight = exp_id in self._running
                known = exp_id in self._stop_reason
            if status[exp_id] == QUEUED and not in_flight:
                self._finish(exp_id, CANCELLED, error=message, reason=reason)
            elif not known:
                self.log.warning("stopping experiment %s: %s", exp_id, message)
                self._stop(exp_id, f"{reason}: {message}")
                with session_scope(self.db_url) as s:
                    s.execute(
                        update(ExperimentRun)
                        .where(ExperimentRun.id == exp_id)
                        .values(cancel_requested=True)
                    )

    def _refusal(self, tenant: str, username: str, spec: ExperimentSpec) -> str | None:
        """Why a run may not start now, as ``"<reason>: <message>"``; else None.

        The runner's own layer of the limits (a client may lie, a tier may change while a
        run waits): standing of tenant and user, the tier's size limits and the month's
        federated client-hours.
        """
        with session_scope(self.db_url) as s:
            refused = quota.standing(s, [("run", tenant, username)])
        if refused:
            reason, message = refused["run"]
            return f"{reason}: {message}"
        try:
            tier_name, tier = self._tier(tenant)
            quota.check_size(tier_name, tier, spec.rounds, spec.local_epochs, spec.agents or 0)
        except FedhubError as e:  # a size limit (QuotaExceeded) or a tier gone
            return f"{quota.TIER_LIMIT}: {e.message}"
        return self._client_hours_refusal(tenant, tier_name, tier)

    def _client_hours_refusal(self, tenant: str, tier_name: str, tier) -> str | None:
        """``client_hours_exhausted: ...`` when the month's budget is spent, else None."""
        with session_scope(self.db_url) as s:
            used, limit = quota.client_hours_left(s, tenant, tier)
        if used < limit:
            return None
        return (
            f"{quota.CLIENT_HOURS_EXHAUSTED}: organisation {tenant} has used {used:.4g} of its"
            f" {limit:g} federated client-hours this month (tier {tier_name}:"
            f" federated_client_hours_per_month = {limit:g})"
        )

    # ---------------------------------------------------------------- admission
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._admit()
            except Exception:  # keep admitting after a database hiccup
                self.log.exception("experiment admission failed; retrying")
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _admit(self) -> None:
        self._enforce()
        with session_scope(self.db_url) as s:
            queued = s.execute(
                select(ExperimentRun.id, ExperimentRun.tenant, ExperimentRun.cancel_requested)
                .where(ExperimentRun.status == QUEUED)
                .order_by(ExperimentRun.created_at, ExperimentRun.id)
            ).all()
        for exp_id, _tenant, cancel in queued:
            if cancel:
                self._finish(exp_id, CANCELLED)
        queued = [(i, t) for i, t, c in queued if not c]
        while queued and not self._stopping.is_set():
            pick = self.pick(queued)
            if pick is None:
                return
            queued.remove(pick)
            exp_id, tenant = pick
            with self._lock:
                self._running[exp_id] = tenant
                self._served[tenant] = time.monotonic()
            self._pool.submit(rls.as_platform(self._run_guarded), exp_id)

    def pick(self, queued: list[tuple[str, str]]) -> tuple[str, str] | None:
        """The next (id, tenant) to start, or None if no slot may be used now."""
        with self._lock:
            if len(self._running) >= self.max_running:
                return None
            per_tenant: dict[str, int] = {}
            for t in self._running.values():
                per_tenant[t] = per_tenant.get(t, 0) + 1
            oldest: dict[str, tuple[str, str]] = {}
            for exp_id, tenant in queued:
                if exp_id in self._running or tenant in oldest:
                    continue
                if per_tenant.get(tenant, 0) < self.max_running_per_tenant:
                    oldest[tenant] = (exp_id, tenant)
            if not oldest:
                return None
            tenant = min(oldest, key=lambda t: (per_tenant.get(t, 0), self._served.get(t, 0.0)))
            return oldest[tenant]

    # ---------------------------------------------------------------- execution
    def _run_guarded(self, exp_id: str) -> None:
        try:
            self._run(exp_id)
        except _ServiceStopping:
            self.log.info("experiment %s paused for shutdown; it resumes on restart", exp_id)
        except Exception as e:
            self.log.error("experiment %s failed:\n%s", exp_id, traceback.format_exc())
            self._finish(exp_id, FAILED, error=f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                self._running.pop(exp_id, None)
                self._cancel.discard(exp_id)
                self._stop_reason.pop(exp_id, None)
            self.wake()

    def _run(self, exp_id: str) -> None:
        with session_scope(self.db_url) as s:
            run = s.get(ExperimentRun, exp_id)
            if run.status != QUEUED:
                return
            run.status = RUNNING
            run.attempts += 1
            run.started_at = run.started_at or utcnow()
            tenant, username, spec_json = run.tenant, run.username, run.spec
        spec = ExperimentSpec.model_validate(spec_json)
        refusal = self._refusal(tenant, username, spec)
        if refusal is not None:  # checked before the first round, then after every round
            reason, _, message = refusal.partition(": ")
            self._finish(exp_id, CANCELLED, error=message, reason=reason)
            return
        try:  # marketplace assets: their licences again at every attempt, each use recorded
            assets = market_refs.start_use(self.db_url, tenant, username, exp_id, spec)
        except NotEntitled as e:  # refunded or revoked while the run waited
            self._finish(exp_id, CANCELLED, error=e.message, reason=e.code)
            return
        ckpt_dir = self.run_dir(exp_id)
        executor = None
        if is_tenant_dataset(spec) or assets:
            # the tenant's own or licensed data, a market algorithm: only on the tenant's workers
            executor = self.clusters.tenant_executor(tenant, self.tenant_tier(tenant))
        with executor.lease() if executor is not None else contextlib.nullcontext():
            self._run_on(exp_id, tenant, username, spec, ckpt_dir, executor, assets)

    def _run_on(self, exp_id, tenant, username, spec, ckpt_dir, executor, assets) -> None:
        from fedhub import fl

        if fl.checkpoint.latest(ckpt_dir) is not None:
            _, state = fl.checkpoint.load(ckpt_dir)
            for record in state["history"]:  # rounds checkpointed but not yet recorded
                self._record_round(exp_id, tenant, username, record)
            exp = fl.Experiment.load(ckpt_dir)
            market_refs.attach(exp, executor)  # a RemoteStrategy's hooks: the tenant's workers
            self.log.info("experiment %s resumes after round %d", exp_id, state["round"])
        else:
            from .build import build_run

            exp = build_run(spec, tenant, executor, assets)
        if executor is not None:
            client = executor.client  # a cluster of the tenant's account alone
        else:
            client = self.clusters.client(tenant, self.tenant_tier(tenant))

        def on_round(record: dict):
            self._record_round(exp_id, tenant, username, record)  # metered first
            if self._stopping.is_set():
                raise _ServiceStopping
            if int(record["round"]) < spec.rounds:  # before the next round: budget, licences?
                try:
                    spent = self._client_hours_refusal(tenant, *self._tier(tenant))
                except FedhubError:  # tenant removed, tier gone: the standing check says why
                    spent = None
                spent = spent or market_refs.licence_lost(self.db_url, tenant, username, spec)
                if spent is not None:
                    self.log.info("experiment %s: %s", exp_id, spent)
                    self._stop(exp_id, spent)
            return not self._cancel_requested(exp_id)

        result = exp.run(
            client=client,
            callback=on_round,
            progress=None,
            checkpoint_dir=ckpt_dir,
            checkpoint_every=self.checkpoint_every,
        )
        if self._stopping.is_set() and result.cancelled:
            raise _ServiceStopping
        fl.checkpoint.save_weights(ckpt_dir / "final.pt", result.state_dict)  # created 0600
        if not result.cancelled:
            self._finish(exp_id, COMPLETED)
            return
        with self._lock:
            stopped = self._stop_reason.get(exp_id)
        reason, _, message = (stopped or "").partition(": ")
        self._finish(exp_id, CANCELLED, error=message or None, reason=reason or None)

    def _cancel_requested(self, exp_id: str) -> bool:
        with self._lock:
            if exp_id in self._cancel:
                return True
        with session_scope(self.db_url) as s:
            return bool(s.get(ExperimentRun, exp_id).cancel_requested)

    def _record_round(self, exp_id: str, tenant: str, username: str, record: dict) -> None:
        """Persist and meter one round; idempotent, so a resumed run may repeat it."""
        rnd = int(record["round"])
        metrics = {k: _jsonable(v) for k, v in record.items()}
        now = utcnow()
        duration = float(record.get("duration_s") or 0.0)
        with session_scope(self.db_url) as s:
            row = dict(experiment_id=exp_id, round=rnd, metrics=metrics, recorded_at=now)
            insert_ignore(s, ExperimentRound.__table__, row, ["experiment_id", "round"])
            run = s.get(ExperimentRun, exp_id)
            run.rounds_done = max(run.rounds_done, rnd)
            start = now - timedelta(seconds=duration)
            usage = dict(tenant=tenant, start=start, end=now, source=SOURCE, username=username)
            attrs = {"experiment": exp_id, "round": rnd}
            metering.record(
                s,
                [
                    metering.Usage(
                        kind=FL_CLIENT_SECONDS,
                        quantity=duration * int(record.get("clients") or 0),
                        idempotency_key=f"{exp_id}:{rnd}:client_seconds",
                        attributes=attrs,
                        **usage,
                    ),
                    metering.Usage(
                        kind=FL_ROUNDS,
                        quantity=1,
                        idempotency_key=f"{exp_id}:{rnd}:rounds",
                        attributes=attrs,
                        **usage,
                    ),
                ],
            )

    def _finish(
        self, exp_id: str, status: str, error: str | None = None, reason: str | None = None
    ) -> None:
        """End a run. ``reason`` (e.g. ``client_hours_exhausted``) says why the service
        itself cancelled it; the run's ``error`` then reads ``"<reason>: <message>"``."""
        if reason:
            error = f"{reason}: {error}" if error else reason
        with session_scope(self.db_url) as s:
            run = s.get(ExperimentRun, exp_id)
            if run is None or run.status in (COMPLETED, FAILED, CANCELLED):
                return
            run.status = status
            run.error = error
            run.finished_at = utcnow()
            if reason:
                run.cancel_requested = True
            tenant, user, done = run.tenant, run.username, run.rounds_done
        action = {COMPLETED: "completed", CANCELLED: "cancelled", FAILED: "failed"}[status]
        events.emit(
            f"experiment.{action}",
            tenant=tenant,
            actor=user,
            target=f"experiment:{exp_id}",
            result="error" if status == FAILED else "success",
            severity="warning" if status == FAILED else "info",
            details={
                "rounds_done": done,
                **({"error": error} if error else {}),
                **({"reason": reason} if reason else {}),
            },
        )
        self.log.info("experiment %s (%s) %s after %d rounds", exp_id, tenant, status, done)


def _jsonable(value):
    """A round record's value as JSON: numbers as floats (NaN as null), lists and dicts
    (an RL round's ``agents``) item by item, anything else as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None:
        return None
    try:
        value = float(value) if not isinstance(value, int | str | bool) else value
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
