"""Runs a federation: one coordinator thread in the experiments service, each member's
training on workers that run as that member's account.

``POST /federations/<id>/run`` hands the federation to the service's scheduler pool (the
threads experiments run in, :meth:`ExperimentScheduler.submit_work`). The thread builds one
:class:`fedhub.fl.federation.FederationMember` per member that joined: its executor is
``DaskClusters.tenant_executor(member, tier)`` (workers running as
``fedhub.accounts.tenant_account(member)``, the only account that can read the member's
dataset folder) and its dataset is the version folder the member bound when it joined.
The coordinator (:func:`fedhub.fl.federation.run_federation`, in this thread) sends
weights and receives masked updates, counts and metrics, never rows of data.

After every round the thread stores the aggregate record (every member reads it), each
member's own evaluation (that member only), meters each member's client seconds to that
member (``fl_client_seconds``, idempotency key ``fed:<id>:<round>:<tenant>``) and emits
``federation.round_completed`` into every member's audit chain; a cancel, or a member that is
suspended, removed or out of its month's federated client-hours, stops the run after the
round in flight (``cancelled``, the error naming the member and why). The
final weights go to ``<state>/federations/<id>/model.npz`` (0600), served to members only.

A service that stops mid-run does not resume a federation (its members' secure-aggregation
secrets lived in worker memory): the next process marks it failed.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from traitlets import Bool, Float, default
from traitlets.config import LoggingConfigurable

from fedhub import metering
from fedhub.db import insert_ignore, rls, session_scope, utcnow
from fedhub.errors import FedhubError, QuotaExceeded
from fedhub.tenancy.models import Tenant, TenantStatus

from .. import quota
from ..clusters import ClusterConfigError
from . import audit
from .models import (
    CANCELLED,
    ENDED,
    FAILED,
    FINISHED,
    JOINED,
    RUNNING,
    STOPPED_BUDGET,
    Federation,
    FederationMember,
    FederationMemberMetrics,
    FederationRound,
)
from .spec import plan_kwargs

SOURCE = quota.SOURCE


class RunRefused(RuntimeError):
    """A federation cannot run as it stands; the message is safe to show every member."""


class FederationRunner(LoggingConfigurable):
    """Runs federations in the experiments service's scheduler pool."""

    keep_received = Bool(
        config=True,
        help="""Debugging and tests: keep what the coordinator received in each round
        (masked update vectors, counts, metrics) in ``<state>/federations/<id>/received.pkl``
        (0600), so one can check it holds no data. Off in production. Default from
        ``$FEDHUB_EXPERIMENTS_KEEP_RECEIVED`` (``1``), else off.

            c.FederationRunner.keep_received = True
        """,
    )

    @default("keep_received")
    def _keep_received_default(self):
        return os.environ.get("FEDHUB_EXPERIMENTS_KEEP_RECEIVED", "") in ("1", "true", "yes")

    member_timeout = Float(
        600.0,
        config=True,
        help="""Seconds a member may take for one step of a round before it counts as
        dropped from that round (secure aggregation recovers the sum of the others while
        at least the threshold answer).

            c.FederationRunner.member_timeout = 120
        """,
    )

    def __init__(self, db_url: str, scheduler, **kwargs):
        super().__init__(**kwargs)
        self.db_url = db_url
        self.scheduler = scheduler
        self._cancel: set[str] = set()
        self._lock = threading.Lock()
        self._tiers = None

    # ---------------------------------------------------------------- paths, lifecycle
    def run_dir(self, fed_id: str) -> Path:
        return Path(self.scheduler.state_dir) / "federations" / fed_id

    def model_path(self, fed_id: str) -> Path:
        return self.run_dir(fed_id) / "model.npz"

    def start(self) -> None:
        """Fail the federations a previous process left running (see the module doc)."""
        with rls.platform():
            with session_scope(self.db_url) as s:
                left = list(s.scalars(select(Federation.id).where(Federation.status == RUNNING)))
            for fed_id in left:
                self._finish(fed_id, FAILED, error="the service restarted during the run")

    def submit(self, fed_id: str) -> None:
        self.scheduler.submit_work(self._run_guarded, fed_id)

    def request_cancel(self, fed_id: str) -> None:
        with self._lock:
            self._cancel.add(fed_id)

    # ---------------------------------------------------------------- limits
    def catalog(self):
        if self._tiers is None:
            from fedhub.tiers import load_tiers

            self._tiers = load_tiers()
        return self._tiers

    def check_members(self, fed_id: str, tenants: list[str]) -> None:
        """Raise :class:`QuotaExceeded` naming the first member whose tier refuses the run:
        its rounds or local epochs, its concurrent experiments (a running federation counts
        as one for each member), or its month's federated client-hours.

        Platform work: other members' usage is not the caller's to read (row-level
        security would hide it and every limit would pass); only the refusal, naming the
        member and the limit, not its usage, goes back to the caller.
        """
        with rls.platform():
            self._check_members(fed_id, tenants)

    def _check_members(self, fed_id: str, tenants: list[str]) -> None:
        fed, _ = self._federation(fed_id)
        with session_scope(self.db_url) as s:
            for tenant in tenants:
                tier_name, tier = quota.tenant_tier(s, self.catalog(), tenant)
                try:
                    quota.check_size(tier_name, tier, fed.rounds, fed.task["local_epochs"])
                except QuotaExceeded as e:
                    raise QuotaExceeded(
                        f"member {tenant}: {e.message}", details=e.details
                    ) from None
                # queued and running experiments and running federations (this one is
                # still a draft): what experiment submissions count too
                active = quota.usage(s, tenant)["concurrent_experiments"]
                if active >= tier.max_concurrent_experiments:
                    _refuse(
                        tenant,
                        tier_name,
                        "max_concurrent_experiments",
                        tier.max_concurrent_experiments,
                        "already has as many experiments and federations running as its tier"
                        " allows",
                    )
                used, limit = quota.client_hours_left(s, tenant, tier)
                if used >= limit:
                    _refuse(
                        tenant,
                        tier_name,
                        "federated_client_hours_per_month",
                        limit,
                        "has used all its federated client-hours for this month",
                    )

    def _stop_reason(self, tenants: list[str]) -> str | None:
        """Why the run must stop after this round, as ``"<reason>: <message>"``: a member
        suspended or removed, or one whose month's federated client-hours are spent (named,
        its usage not shown: every member reads the federation's error)."""
        with session_scope(self.db_url) as s:
            status = dict(
                s.execute(select(Tenant.slug, Tenant.status).where(Tenant.slug.in_(tenants))).all()
            )
            for tenant in tenants:
                if tenant not in status:
                    return f"{quota.TENANT_REMOVED}: member {tenant} was removed"
                if status[tenant] == TenantStatus.SUSPENDED:
                    return f"{quota.TENANT_SUSPENDED}: member {tenant} is suspended"
                try:
                    tier_name, tier = quota.tenant_tier(s, self.catalog(), tenant)
                except FedhubError:  # its tier is gone from the catalog
                    return f"{quota.TIER_LIMIT}: member {tenant}'s tier is no longer offered"
                used, limit = quota.client_hours_left(s, tenant, tier)
                if used >= limit:
                    return (
                        f"{quota.CLIENT_HOURS_EXHAUSTED}: member {tenant} has used all its"
                        f" federated client-hours this month (tier {tier_name}:"
                        f" federated_client_hours_per_month = {limit:g})"
                    )
        return None

    # ---------------------------------------------------------------- the run
    def _federation(self, fed_id: str) -> tuple[Federation, list[FederationMember]]:
        with session_scope(self.db_url) as s:
            fed = s.get(Federation, fed_id)
            members = list(
                s.scalars(
                    select(FederationMember)
                    .where(
                        FederationMember.federation_id == fed_id,
                        FederationMember.state == JOINED,
                    )
                    .order_by(FederationMember.member_id)
                )
            )
            s.expunge_all()
        return fed, members

    def _run_guarded(self, fed_id: str) -> None:
        try:
            self._run(fed_id)
        except Exception as e:
            self.log.error("federation %s failed:\n%s", fed_id, traceback.format_exc())
            from fedhub.fl.federation import FederationError

            # what members read: the coordinator's own message, never a path or a
            # traceback (a member's dataset folder must not reach the others)
            shown = isinstance(e, FederationError | RunRefused | ClusterConfigError)
            message = str(e) if shown else "internal error; the service logged it"
            self._finish(fed_id, FAILED, error=message)
        finally:
            with self._lock:
                self._cancel.discard(fed_id)

    def members(self, fed: Federation, seats: list[FederationMember]) -> list:
        """One :class:`FederationMember` per seat: the member's executor and dataset."""
        from fedhub.datasets import DatasetNotFound, DatasetStore
        from fedhub.fl.federation import FederationMember as Seat

        store = DatasetStore()
        out = []
        for seat in seats:
            try:
                folder, _ = store.resolve(seat.tenant, f"tenant/{seat.dataset}")
            except DatasetNotFound:
                raise RunRefused(
                    f"member {seat.tenant}'s bound dataset was deleted since it joined"
                ) from None
            tier_name = self.scheduler.tenant_tier(seat.tenant)
            executor = self.scheduler.clusters.tenant_executor(seat.tenant, tier_name)
            out.append(Seat(seat.member_id, seat.tenant, executor, str(folder)))
        return out

    def _run(self, fed_id: str) -> None:
        from fedhub.fl.federation import FederationPlan, local_only_baseline, run_federation

        fed, seats = self._federation(fed_id)
        if fed is None or fed.status != RUNNING:
            return
        tenants = [m.tenant for m in seats]
        users = {m.tenant: m.responded_by for m in seats}
        plan = FederationPlan(
            **plan_kwargs(fed.task, fed.privacy, fed.schema), member_timeout=self.member_timeout
        )
        plan.validate(len(seats))
        members = self.members(fed, seats)
        stop: dict[str, str] = {}

        def on_round(record: dict) -> None:
            self._record_round(fed_id, record, users)
            if int(record["round"]) < fed.rounds:
                spent = self._stop_reason(tenants)
                if spent is not None:
                    self.log.info("federation %s: %s", fed_id, spent)
                    stop.setdefault("reason", spent)

        def cancelled() -> bool:
            return "reason" in stop or self._cancel_requested(fed_id)

        with contextlib.ExitStack() as leases:
            # the members' workers hold their data and secure-aggregation secrets between
            # a round's steps: none may retire as idle while the federation runs
            for member in members:
                if hasattr(member.executor, "lease"):
                    leases.enter_context(member.executor.lease())
            result = run_federation(
                plan,
                members,
                on_round=on_round,
                cancelled=cancelled,
                keep_received=self.keep_received,
            )
            folder = self.run_dir(fed_id)
            _private_dir(folder)
            _write_private(self.model_path(fed_id), _npz_bytes(result.weights))
            if self.keep_received:
                _write_private(folder / "received.pkl", pickle.dumps(result.received))
            if fed.task.get("compare_local_only") and result.stopped_reason is None:
                for member in members:
                    baseline = _jsonable(local_only_baseline(plan, member))
                    self._store_metrics(fed_id, 0, member.tenant, {"local_only": baseline})
        if result.stopped_reason == "epsilon_budget":
            self._finish(fed_id, STOPPED_BUDGET, error="the next round would exceed the ε budget")
        elif result.stopped_reason == "cancelled":
            reason, _, message = stop.get("reason", "").partition(": ")
            self._finish(fed_id, CANCELLED, error=stop.get("reason"), reason=reason or None)
        else:
            self._finish(fed_id, FINISHED)

    def _cancel_requested(self, fed_id: str) -> bool:
        with self._lock:
            if fed_id in self._cancel:
                return True
        with session_scope(self.db_url) as s:
            return bool(
                s.scalar(select(Federation.cancel_requested).where(Federation.id == fed_id))
            )

    def _store_metrics(self, fed_id: str, rnd: int, tenant: str, metrics: dict) -> None:
        with session_scope(self.db_url) as s:
            row = dict(federation_id=fed_id, round=rnd, tenant=tenant, metrics=metrics,
                       recorded_at=utcnow())  # fmt: skip
            insert_ignore(
                s, FederationMemberMetrics.__table__, row, ["federation_id", "round", "tenant"]
            )

    def _record_round(self, fed_id: str, record: dict, users: dict[str, str]) -> None:
        """Store, meter and audit one round (idempotent per federation, round, member)."""
        rnd = int(record["round"])
        per_member = record.get("per_member") or {}
        shared = _jsonable({k: v for k, v in record.items() if k != "per_member"})
        now = utcnow()
        duration = float(record.get("duration_s") or 0.0)
        usages = [
            metering.Usage(
                tenant=tenant,
                kind=quota.FL_CLIENT_SECONDS,
                quantity=max(0.0, float(m.get("client_seconds") or 0.0)),
                start=now - timedelta(seconds=duration),
                end=now,
                source=SOURCE,
                idempotency_key=f"fed:{fed_id}:{rnd}:{tenant}",
                username=users.get(tenant),
                attributes={"federation": fed_id, "round": rnd},
            )
            for tenant, m in per_member.items()
        ]
        with session_scope(self.db_url) as s:
            row = dict(federation_id=fed_id, round=rnd, record=shared, recorded_at=now)
            insert_ignore(s, FederationRound.__table__, row, ["federation_id", "round"])
            rows = [
                dict(federation_id=fed_id, round=rnd, tenant=tenant,
                     metrics=_jsonable({"round": rnd, **m}), recorded_at=now)
                for tenant, m in per_member.items()
            ]  # fmt: skip
            if rows:
                insert_ignore(
                    s,
                    FederationMemberMetrics.__table__,
                    rows,
                    ["federation_id", "round", "tenant"],
                )
            s.execute(  # rounds come in order; a repeated one changes nothing
                update(Federation)
                .where(Federation.id == fed_id, Federation.rounds_done < rnd)
                .values(rounds_done=rnd, epsilon=shared.get("epsilon"))
            )
            metering.record(s, usages)
        audit.emit(
            "federation.round_completed",
            fed_id,
            list(per_member) or list(users),
            details={
                "round": rnd,
                "epsilon": shared.get("epsilon"),
                "accuracy": (shared.get("aggregate") or {}).get("accuracy"),
                "dropped": shared.get("dropped") or [],
            },
        )

    def _finish(
        self, fed_id: str, status: str, error: str | None = None, reason: str | None = None
    ) -> None:
        with session_scope(self.db_url) as s:
            fed = s.get(Federation, fed_id)
            if fed is None or fed.status in ENDED:
                return
            fed.status = status
            fed.error = error
            fed.finished_at = utcnow()
            done, epsilon = fed.rounds_done, fed.epsilon
            tenants = list(
                s.scalars(
                    select(FederationMember.tenant)
                    .where(
                        FederationMember.federation_id == fed_id,
                        FederationMember.state == JOINED,
                    )
                    .order_by(FederationMember.member_id)
                )
            )
        failed = status == FAILED
        audit.emit(
            "federation.failed" if failed else "federation.finished",
            fed_id,
            tenants,
            result="error" if failed else "success",
            severity="warning" if failed else "info",
            details={
                "status": status,
                "rounds_done": done,
                "epsilon": epsilon,
                **({"error": error} if error else {}),
                **({"reason": reason} if reason else {}),
            },
        )
        self.log.info("federation %s %s after %d rounds", fed_id, status, done)


def _refuse(tenant: str, tier_name: str, limit: str, value, what: str) -> None:
    """A refusal naming the member and its limit; its usage stays the member's own."""
    from fedhub import limits as registry

    raise QuotaExceeded(
        f"member {tenant} {what} (tier {tier_name}: {limit} = {value})",
        details={**registry.details(limit, value, None, 1, tier=tier_name), "member": tenant},
    )


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, NaN, nested dicts and lists → plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy
        return _jsonable(value.tolist())
    if isinstance(value, float) and value != value:
        return None
    return value


def _npz_bytes(weights) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, weights=np.asarray(weights, dtype=np.float32))
    return buf.getvalue()


def _private_dir(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
