"""Federations: one model trained by several tenants whose data never leaves their workers.

Who runs what:

* Each **member** (a tenant) runs the ``member_*`` functions of
  :mod:`fedhub.fl.federation_tasks` as Dask tasks on its own executor (workers that run as
  the tenant's Unix account and alone can read its dataset directory). A member's data
  and its secure-aggregation secrets live in that worker process's memory (cached per run
  token and round) and never travel.
* The **coordinator** (whoever calls :func:`run_federation`; in the hub, the experiments
  service) only relays: it sends global weights and the secure-aggregation roster, and
  receives public keys, encrypted shares addressed to other members, masked update vectors,
  example counts, client seconds and test metrics. :attr:`FederationResult.received` keeps
  exactly that, so a test can check it holds no data.

One round is a sequence of task waves across the members, one task per member per wave:

====================  ==========================================================
``member_train``      load data (once per worker), train from the global weights,
                      clip (DP), keep the update; return public keys + counts
``member_share_keys`` Shamir shares of the member's secrets, encrypted per peer
``member_masked``     the member's weighted update, quantised and masked
``member_unmask``     shares that let the coordinator cancel the masks
``member_evaluate``   the new global model on the member's own test split
====================  ==========================================================

Without secure aggregation the first wave returns the update itself and the next three
are skipped. A member whose task fails or misses ``member_timeout`` drops out of the round;
SecAgg+ recovers the sum of the survivors as long as ``threshold`` members answer each
stage. The aggregated update goes through the plan's strategy (:mod:`fedhub.fl.strategies`)
like a single client's result, so FedAvgM / FedAdam etc. apply their server step to it.

Randomness: training batches are seeded by ``(seed, round, member_id)`` and quantisation is
deterministic, so the same plan gives the same weights whether or not secure aggregation is
on (up to the quantisation step). Masks come from the operating system's randomness (a
seed the coordinator knows would let it remove them), and so does the DP noise unless
``dp["noise_seed"]`` is set: members know the plan's seed, and noise they can recompute
protects nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedhub.errors import Conflict, InvalidRequest

from . import models as _models
from . import strategies as _strategies
from .federation_tasks import (
    MemberSpec,
    member_evaluate,
    member_local_only,
    member_masked,
    member_share_keys,
    member_train,
    member_unmask,
)
from .training import ClientResult, FlatModel

log = logging.getLogger("fedhub.fl.federation")


class FederationPlanError(InvalidRequest, ValueError, code="invalid_federation_plan"):
    """A plan that cannot run; the message names the setting."""


class FederationError(Conflict, RuntimeError, code="federation_round_failed"):
    """A round could not complete (too few members answered); the message is safe to show."""


@dataclass
class FederationPlan:
    """The federation's task and privacy settings (the same for every member)."""

    model: str = "mlp"
    model_params: dict = field(default_factory=dict)
    strategy: str = "fedavg"
    strategy_params: dict = field(default_factory=dict)
    rounds: int = 10
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    seed: int = 0
    secure_aggregation: bool = True
    secagg_threshold: int | None = None  # default ceil(2n/3), at least 2
    dp: dict | None = None  # noise_multiplier, clip_norm, delta, epsilon_budget[, noise_seed]
    #: seconds a member may take for one wave before it counts as dropped (extension)
    member_timeout: float = 600.0

    def validate(self, num_members: int) -> None:
        """Raise :class:`FederationPlanError` (a ValueError) with a message a user can act on."""
        if num_members < 2:
            raise FederationPlanError("a federation needs at least 2 members")
        if self.rounds < 1 or self.local_epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise FederationPlanError("rounds, local_epochs and batch_size must be >= 1 and lr > 0")
        try:
            _models.registry.check(self.model, self.model_params)
            strategy = self.make_strategy()
        except ValueError as e:  # fedhub.fl.registry.ParameterError names the field
            raise FederationPlanError(str(e)) from None
        if not isinstance(strategy, _strategies.FedAvg) and (
            self.secure_aggregation or self.dp is not None
        ):
            raise FederationPlanError(
                f"strategy {self.strategy!r} needs each member's own update; with secure "
                "aggregation or DP only the sum is known (use fedavg, fedprox, fedavgm, "
                "fedadagrad, fedadam or fedyogi)"
            )
        if isinstance(strategy, _strategies.SCAFFOLD):
            raise FederationPlanError("scaffold keeps per-client state and is not supported here")
        if self.dp is not None:
            self._validate_dp()
        if self.secure_aggregation:
            from .secagg import SecAggConfigError

            try:
                self.secagg_config(num_members).check_members(num_members)
            except SecAggConfigError as e:
                raise FederationPlanError(e.message) from None

    def _validate_dp(self) -> None:
        from .privacy import PrivacyConfigError, clip

        missing = {"noise_multiplier", "clip_norm", "delta", "epsilon_budget"} - set(self.dp)
        if missing:
            raise FederationPlanError(f"dp is missing {', '.join(sorted(missing))}")
        try:
            self.accountant()
            clip(np.zeros(1), self.dp["clip_norm"])
        except PrivacyConfigError as e:
            raise FederationPlanError(e.message) from None

    def accountant(self):
        """The DP accountant of this plan: every member takes part in every round."""
        from .privacy import PrivacyAccountant

        return PrivacyAccountant(
            noise_multiplier=self.dp["noise_multiplier"],
            sampling_rate=1.0,
            delta=self.dp["delta"],
            epsilon_budget=self.dp["epsilon_budget"],
        )

    def threshold(self, num_members: int) -> int:
        from .secagg import default_threshold

        if self.secagg_threshold is not None:
            return self.secagg_threshold
        return default_threshold(num_members)

    def secagg_config(self, num_members: int):
        """SecAgg+ settings; with DP, the quantiser's range covers the clip norm."""
        from .secagg import SecAggConfig

        clip_range = 8.0 if self.dp is None else max(8.0, float(self.dp["clip_norm"]))
        return SecAggConfig(threshold=self.threshold(num_members), clip_range=clip_range)

    def make_strategy(self) -> _strategies.Strategy:
        return _strategies.get(self.strategy, **self.strategy_params)

    def initial_weights(self) -> np.ndarray:
        """The model's initial weights drawn from ``seed`` (the caller's RNG untouched)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return FlatModel(_models.get(self.model, **self.model_params)).get()


@dataclass
class FederationMember:
    """One tenant's seat: where its tasks run and which dataset version they read."""

    member_id: int
    tenant: str
    executor: Any  # anything with .submit(fn, *args, **kwargs) -> distributed.Future
    dataset_dir: str


@dataclass
class FederationResult:
    weights: np.ndarray
    rounds: list[dict]
    stopped_reason: str | None = None  # "epsilon_budget" | "cancelled" | None
    received: list[dict] = field(default_factory=list)


def _spec(plan: FederationPlan, member: FederationMember, token: str, secagg) -> MemberSpec:
    strategy = plan.make_strategy()
    return MemberSpec(
        token=token,
        member_id=member.member_id,
        dataset_dir=member.dataset_dir,
        model=plan.model,
        model_params=dict(plan.model_params),
        local_epochs=plan.local_epochs,
        batch_size=plan.batch_size,
        lr=plan.lr,
        seed=plan.seed,
        mu=float(strategy.proximal_mu),
        clip_norm=float(plan.dp["clip_norm"]) if plan.dp is not None else None,
        secagg=secagg,
    )


class _Round:
    """One round's waves; records what the coordinator received and each member's time."""

    def __init__(self, run: _Federation, rnd: int) -> None:
        self.run = run
        self.rnd = rnd
        self.received: dict[str, Any] = {"round": rnd}
        self.seconds = {m.member_id: 0.0 for m in run.members}
        self.failed: dict[int, str] = {}
        self.where: dict[int, str | None] = {}  # member -> worker holding its round state

    def wave(self, stage: str, fn: Callable, args: dict[int, tuple]) -> dict[int, dict]:
        """Submit ``fn(spec, *args[mid])`` on each member's executor; wait for all with one
        deadline. Members whose task errs or is late are left out of the answer."""
        timeout = self.run.plan.member_timeout
        futures = {mid: self._submit(stage, mid, fn, a) for mid, a in args.items()}
        deadline = time.monotonic() + timeout
        finished = {mid: threading.Event() for mid in futures}
        for mid, fut in futures.items():  # called on success, error or cancellation
            fut.add_done_callback(lambda _, event=finished[mid]: event.set())
        answers = {}
        for mid, fut in futures.items():
            try:
                # Wait for the task to end by the deadline, then fetch its result (a
                # result() with the time left would count the transfer against it).
                if not finished[mid].wait(max(deadline - time.monotonic(), 0.0)):
                    raise TimeoutError(f"no answer within {timeout:g} s")
                answers[mid] = fut.result(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - any failure is a dropout
                # The type only: a member's error text may name its files.
                self.failed[mid] = f"{stage}: {type(exc).__name__}"
                log.warning(
                    "federation round %d: member %d dropped at %s (%s)",
                    self.rnd, mid, stage, type(exc).__name__,
                )  # fmt: skip
                try:
                    fut.cancel()
                except Exception:  # noqa: BLE001 - best effort
                    pass
                continue
            self.seconds[mid] += float(answers[mid].pop("client_seconds", 0.0))
            if "worker" in answers[mid]:
                self.where[mid] = answers[mid].pop("worker")
        self.received[stage] = answers
        return answers

    def _submit(self, stage: str, mid: int, fn: Callable, args: tuple):
        """One member's task. After training, its round's state lives on one worker: the
        later stages go there (a tenant cluster may have several workers)."""
        kwargs = {"key": f"federation-{stage}-r{self.rnd}-m{mid}-{uuid.uuid4().hex[:12]}"}
        if self.where.get(mid):
            kwargs.update(workers=[self.where[mid]], allow_other_workers=False)
        return self.run.by_id[mid].executor.submit(fn, self.run.specs[mid], *args, **kwargs)

    def need(self, answered, stage: str) -> None:
        if len(answered) < self.run.threshold:
            raise FederationError(
                f"round {self.rnd}: only {len(answered)} of {len(self.run.members)} members "
                f"completed {stage} (at least {self.run.threshold} are needed)"
            )


class _Federation:
    def __init__(self, plan, members, initial_weights) -> None:
        plan.validate(len(members))
        if len({m.member_id for m in members}) != len(members):
            raise FederationPlanError("member ids must be unique")
        self.plan = plan
        self.members = sorted(members, key=lambda m: m.member_id)
        self.by_id = {m.member_id: m for m in self.members}
        self.threshold = plan.threshold(len(members)) if plan.secure_aggregation else 1
        self.secagg = plan.secagg_config(len(members)) if plan.secure_aggregation else None
        token = uuid.uuid4().hex
        self.specs = {m.member_id: _spec(plan, m, token, self.secagg) for m in self.members}
        self.strategy = plan.make_strategy()
        w0 = plan.initial_weights()
        if initial_weights is not None:
            if np.shape(initial_weights) != w0.shape:
                raise FederationPlanError(
                    f"initial_weights has shape {np.shape(initial_weights)}, the model {w0.shape}"
                )
            w0 = initial_weights
        self.weights = np.asarray(w0, dtype=np.float32).copy()
        self.strategy.initialize(self.weights, len(members))
        self.accountant = None
        self.noise_rng = None
        if plan.dp is not None:
            self.accountant = plan.accountant()
            seed = plan.dp.get("noise_seed")
            self.noise_rng = np.random.default_rng(
                secrets.randbits(128) if seed is None else [int(seed), 0xD1FF]
            )

    # ---------------------------------------------------------------- one round
    def round(self, rnd: int) -> tuple[dict, dict]:
        t0 = time.perf_counter()
        r = _Round(self, rnd)
        all_ids = [m.member_id for m in self.members]
        trained = r.wave("train", member_train, {mid: (rnd, self.weights) for mid in all_ids})
        r.need(trained, "training")
        if self.secagg is None:
            included, total, weight_sum = self._plain_sum(trained)
        else:
            included, total, weight_sum = self._secure_sum(r, trained)
        self.weights = self._server_step(rnd, trained, included, total, weight_sum)
        evals = r.wave("evaluate", member_evaluate, {mid: (self.weights,) for mid in all_ids})
        record = self._record(r, trained, included, evals, time.perf_counter() - t0)
        return record, r.received

    def _weights_for(self, trained: dict, ids) -> dict[int, float]:
        if self.plan.dp is not None:
            return dict.fromkeys(ids, 1.0)  # DP-FedAvg: each member's clipped update counts once
        total = sum(trained[mid]["examples"] for mid in ids)
        return {mid: trained[mid]["examples"] / total for mid in ids}

    def _plain_sum(self, trained):
        included = sorted(trained)
        weights = self._weights_for(trained, included)
        total = sum(weights[mid] * trained[mid]["update"] for mid in included)
        return included, total, sum(weights.values())

    def _secure_sum(self, r: _Round, trained):
        from .secagg import SecAggError, SecAggServer

        roster_ids = sorted(trained)
        roster = {mid: trained[mid]["public_keys"] for mid in roster_ids}
        shared = r.wave("share_keys", member_share_keys, {mid: (r.rnd, roster) for mid in roster})
        r.need(shared, "key sharing")
        u1 = sorted(shared)
        weights = self._weights_for(trained, u1)
        inbox = {mid: {src: shared[src]["shares"][mid] for src in u1 if src != mid} for mid in u1}
        masked = r.wave(
            "masked_input",
            member_masked,
            {mid: (r.rnd, weights[mid], inbox[mid]) for mid in u1},
        )
        r.need(masked, "masked input")
        survivors = sorted(masked)
        dropped = [mid for mid in u1 if mid not in masked]
        unmasked = r.wave(
            "unmask", member_unmask, {mid: (r.rnd, survivors, dropped) for mid in survivors}
        )
        r.need(unmasked, "unmasking")
        try:
            total = SecAggServer(self.secagg, u1, self.weights.size).aggregate(
                {mid: masked[mid]["masked"] for mid in survivors},
                {mid: unmasked[mid]["unmask"] for mid in sorted(unmasked)},
            )
        except SecAggError as e:  # a share, key or answer did not check out
            raise FederationError(f"round {r.rnd}: secure aggregation failed: {e.message}") from e
        return survivors, np.asarray(total, dtype=np.float64), sum(weights[m] for m in survivors)

    def _server_step(self, rnd, trained, included, total, weight_sum) -> np.ndarray:
        params = self.weights
        if not isinstance(self.strategy, _strategies.FedAvg):
            # robust strategies (plain aggregation only): each member's model as a client
            results = [
                self._client_result(mid, params + trained[mid]["update"], trained[mid])
                for mid in included
            ]
            return self.strategy.aggregate(rnd, params, results).astype(np.float32)
        if self.noise_rng is not None:
            from .privacy import add_noise

            dp = self.plan.dp
            total = add_noise(total, dp["noise_multiplier"], dp["clip_norm"], self.noise_rng)
        mean = np.asarray(total, dtype=np.float64) / weight_sum
        merged = self._client_result(-1, params + mean, {"examples": 1, "train_loss": 0.0})
        return self.strategy.aggregate(rnd, params, [merged]).astype(np.float32)

    def _client_result(self, cid, new_params, answer) -> ClientResult:
        return ClientResult(
            cid=cid,
            params=np.asarray(new_params, dtype=np.float32),
            num_examples=int(answer["examples"]),
            train_loss=float(answer["train_loss"]),
            epochs=self.plan.local_epochs,
            steps=0,
        )

    def _record(self, r: _Round, trained, included, evals, duration) -> dict:
        per_member = {}
        for m in self.members:
            ev = evals.get(m.member_id, {})
            per_member[m.tenant] = {
                "accuracy": ev.get("accuracy"),
                "loss": ev.get("loss"),
                "client_seconds": r.seconds[m.member_id],
                "examples": trained[m.member_id]["examples"] if m.member_id in included else 0,
            }
            if m.member_id in r.failed:  # e.g. "train: DatasetCorrupt" (for that member only)
                per_member[m.tenant]["error"] = r.failed[m.member_id]
        n_test = sum(ev["test_examples"] for ev in evals.values())
        aggregate = {
            "accuracy": (
                sum(ev["accuracy"] * ev["test_examples"] for ev in evals.values()) / n_test
                if n_test
                else None
            ),
            "loss": (
                sum(ev["loss"] * ev["test_examples"] for ev in evals.values()) / n_test
                if n_test
                else None
            ),
            "examples": sum(trained[mid]["examples"] for mid in included),
        }
        return {
            "round": r.rnd,
            "members": list(included),
            "dropped": sorted(m.member_id for m in self.members if m.member_id not in included),
            "epsilon": None,
            "aggregate": aggregate,
            "per_member": per_member,
            "duration_s": duration,
        }


def run_federation(
    plan: FederationPlan,
    members: list[FederationMember],
    *,
    on_round: Callable[[dict], object] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    initial_weights: np.ndarray | None = None,
    keep_received: bool = True,
) -> FederationResult:
    """Run ``plan.rounds`` rounds (fewer if cancelled or the ε budget would be exceeded).

    ``on_round(record)`` after each round, with ``round``, ``members`` (ids in the sum),
    ``dropped``, ``epsilon`` (ε spent so far, or None without DP), ``aggregate``
    (``accuracy`` and ``loss`` over all members' test splits, ``examples`` trained on),
    ``per_member`` (per tenant: its own ``accuracy``, ``loss``, ``client_seconds``,
    ``examples``, and ``error``, e.g. ``"train: DatasetCorrupt"``, when it dropped out;
    for that tenant's eyes only) and ``duration_s``.
    ``keep_received=False`` leaves :attr:`FederationResult.received` empty (a long-running
    service need not hold every round's masked vectors). Raises :class:`FederationError`
    when fewer than the secure-aggregation threshold of members complete a stage.
    """
    fed = _Federation(plan, members, initial_weights)
    rounds: list[dict] = []
    received: list[dict] = []
    stopped = None
    for rnd in range(1, plan.rounds + 1):
        if cancelled():
            stopped = "cancelled"
            break
        if fed.accountant is not None and not fed.accountant.can_run(rnd):
            stopped = "epsilon_budget"
            break
        record, got = fed.round(rnd)
        if fed.accountant is not None:
            fed.accountant.step()
            record["epsilon"] = float(fed.accountant.spent)
        rounds.append(record)
        if keep_received:
            received.append(got)
        if on_round is not None:
            on_round(dict(record))
    return FederationResult(fed.weights, rounds, stopped, received)


def local_only_baseline(plan: FederationPlan, member: FederationMember) -> dict:
    """Train on ``member``'s data alone, on its own executor, for the federation's
    rounds × local epochs, from the same initial weights; evaluate on its own test split."""
    spec = dataclasses.replace(_spec(plan, member, uuid.uuid4().hex, None), clip_norm=None)
    fut = member.executor.submit(member_local_only, spec, plan.rounds, plan.initial_weights())
    return fut.result()
