"""The experiment: a fixed round loop that calls the strategy's hooks and the Dask runner.

One round:
  configure (strategy picks clients; stragglers are chosen from the same round RNG) →
  train (runner; deadlines, lost workers) → aggregate (strategy, in sorted client order) →
  evaluate on the pooled test set → history, progress, callback → checkpoint.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint as _ckpt
from .datasets import FederatedData
from .progress import make_progress
from .runtime import RoundRunner, WorkerPayload, dask_client
from .strategies import FedAvg, Strategy
from .tenant_data import TenantData, evaluate_on_worker
from .training import ClientJob, FlatModel, evaluate

log = logging.getLogger("fedhub.fl")


class Cancelled(Exception):  # noqa: N818 - the public name is part of the contract
    """Raise from a round callback (or return ``False``) to stop a run cleanly."""


@dataclass(frozen=True)
class Stragglers:
    """Simulated systems heterogeneity (FedProx section 5.2).

    Each round, ``fraction`` of the sampled clients are stragglers. ``"drop"`` leaves them
    out of the aggregate (FedAvg's behaviour); ``"partial"`` lets each do a random number
    of local epochs in ``[1, E-1]`` and aggregates what they did (FedProx's).
    """

    fraction: float = 0.0
    policy: str = "drop"

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be in [0, 1]")
        if self.policy not in ("drop", "partial"):
            raise ValueError("policy must be 'drop' or 'partial'")


@dataclass
class Result:
    """The outcome of a run: per-round history and the final weights."""

    history: list[dict]
    state_dict: dict
    params: np.ndarray
    cancelled: bool = False
    startup_s: float = 0.0
    wall_s: float = 0.0
    lost_clients: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def final_accuracy(self) -> float:
        return self.history[-1].get("test_accuracy", math.nan) if self.history else math.nan

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.history)


class Experiment:
    """A federated training run; see docs/fl.md for the full contract."""

    def __init__(
        self,
        model: Callable,
        data: FederatedData,
        strategy: Strategy | None = None,
        rounds: int = 10,
        clients_per_round: int = 10,
        local_epochs: int = 1,
        batch_size: int | None = 10,
        lr: float = 0.01,
        stragglers: Stragglers | None = None,
        seed: int = 0,
        round_timeout: float | None = None,
        max_retries: int = 3,
    ) -> None:
        if not callable(model):
            raise TypeError("model must be a zero-argument factory returning a torch.nn.Module")
        if rounds < 1 or clients_per_round < 1 or local_epochs < 1 or lr <= 0:
            raise ValueError("rounds, clients_per_round, local_epochs must be >= 1 and lr > 0")
        self.model = model
        self.data = data
        self.strategy = strategy if strategy is not None else FedAvg()
        self.rounds = rounds
        self.clients_per_round = clients_per_round
        self.local_epochs = local_epochs
        self.batch_size = batch_size if batch_size and batch_size > 0 else None
        self.lr = lr
        self.stragglers = stragglers or Stragglers()
        self.seed = seed
        self.round_timeout = round_timeout
        self.max_retries = max_retries
        self._start: dict | None = None  # set by load(): state to continue from

    # ------------------------------------------------------------ resume
    @classmethod
    def load(cls, path) -> Experiment:
        """The experiment saved in checkpoint ``path``, ready to ``run()`` from there."""
        exp, state = _ckpt.load(path)
        exp._start = state
        return exp

    @classmethod
    def resume(cls, path, rounds: int | None = None, **run_kwargs) -> Result:
        """Continue a checkpointed run to its end (or to ``rounds``); bit-identical."""
        exp = cls.load(path)
        if rounds is not None:
            exp.rounds = rounds
        run_kwargs.setdefault("checkpoint_dir", path if _is_dir(path) else None)
        return exp.run(**run_kwargs)

    def __getstate__(self):
        state = dict(vars(self))
        state["_start"] = None
        return state

    def initial_model(self):
        """The model with its initial weights drawn from ``seed`` (the caller's torch RNG is
        left untouched), so two runs with the same seed start from the same weights."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self.model()

    # ------------------------------------------------------------ planning
    def plan_round(self, rnd: int, strategy: Strategy | None = None) -> list[ClientJob]:
        """The round's jobs: which clients, how many epochs, what extra payload."""
        strategy = strategy or self.strategy
        rng = np.random.default_rng([self.seed, rnd, 0x5E1EC7])
        ids = np.arange(self.data.num_clients)
        chosen = strategy.configure_round(rnd, ids, self.clients_per_round, rng)
        n_strag = int(round(self.stragglers.fraction * len(chosen)))
        stragglers = set()
        if n_strag:
            stragglers = {int(c) for c in rng.choice(chosen, size=n_strag, replace=False)}
        jobs = []
        for cid in chosen:
            epochs = self.local_epochs
            if cid in stragglers:
                if self.stragglers.policy == "drop":
                    continue
                epochs = int(rng.integers(1, self.local_epochs)) if self.local_epochs > 1 else 1
            jobs.append(ClientJob(cid, epochs, strategy.client_extra(rnd, cid)))
        return jobs

    # ------------------------------------------------------------ run
    def run(
        self,
        client=None,
        address: str | None = None,
        callback: Callable[[dict], object] | None = None,
        progress: str | None = "auto",
        checkpoint_dir=None,
        checkpoint_every: int = 10,
        cluster_kwargs: dict | None = None,
    ) -> Result:
        """Run the remaining rounds on ``client``, on the scheduler at ``address``, or on a
        LocalCluster created (and closed) for this call."""
        t_start = time.perf_counter()
        fm = FlatModel(self.initial_model())
        if self._start is None:
            params = fm.get()
            strategy = copy.deepcopy(self.strategy)
            strategy.initialize(params, self.data.num_clients)
            history: list[dict] = []
            first = 1
        else:
            state = self._start
            strategy = copy.deepcopy(state["strategy"])
            params = state["params"]
            history = list(state["history"])
            first = state["round"] + 1
        if checkpoint_dir is not None and self._start is None:
            _ckpt.save_experiment(checkpoint_dir, self)
        payload = WorkerPayload(
            token=uuid.uuid4().hex,
            data=self.data,
            model_factory=self.model,
            lr=self.lr,
            batch_size=self.batch_size,
            mu=float(strategy.proximal_mu),
            seed=self.seed,
        )
        sizes = self.data.sizes()
        cancelled = False
        bar = None
        with dask_client(client, address, cluster_kwargs) as dc:
            runner = RoundRunner(dc, payload, self.max_retries)
            runner.start()
            startup = time.perf_counter() - t_start
            bar = make_progress(progress, self.rounds, initial=first - 1)
            try:
                for rnd in range(first, self.rounds + 1):
                    t0 = time.perf_counter()
                    jobs = self.plan_round(rnd, strategy)
                    results, lost = runner.run_round(
                        rnd,
                        params,
                        jobs,
                        cost=lambda j: j.epochs * max(int(sizes[j.cid]), 1),
                        timeout=self.round_timeout,
                    )
                    if results:
                        params = strategy.aggregate(rnd, params, results).astype(np.float32)
                    fm.set(params)
                    measure = getattr(self.data, "round_metrics", None)
                    if measure is not None:  # e.g. RL: the clients' episodes measure a round
                        test_loss = test_acc = None
                    elif isinstance(self.data, TenantData):  # its rows are on the workers only
                        test_loss, test_acc = dc.submit(
                            evaluate_on_worker, self.data, self.model, params, pure=False
                        ).result()
                    else:
                        test_loss, test_acc = evaluate(fm, self._test_set(), self.data.kind)
                    n_ex = sum(r.num_examples for r in results)
                    record = {
                        "round": rnd,
                        "clients": len(results),
                        "train_loss": (
                            sum(r.train_loss * r.num_examples for r in results) / n_ex
                            if n_ex
                            else math.nan
                        ),
                        "test_loss": test_loss,
                        "test_accuracy": test_acc,
                        "duration_s": time.perf_counter() - t0,
                        "dropped": len(lost),
                    }
                    if measure is not None:
                        del record["test_loss"], record["test_accuracy"]
                        record.update(measure(rnd, results, lost, history))
                    record.update(strategy.evaluate(rnd, params) or {})
                    history.append(record)
                    bar.update(record)
                    if checkpoint_dir is not None and (
                        rnd % checkpoint_every == 0 or rnd == self.rounds
                    ):
                        _ckpt.save_state(
                            checkpoint_dir,
                            {"round": rnd, "params": params, "strategy": strategy,
                             "history": history},
                        )  # fmt: skip
                    if callback is not None:
                        try:
                            if callback(dict(record)) is False:
                                cancelled = True
                        except Cancelled:
                            cancelled = True
                        if cancelled:
                            log.info("experiment cancelled by callback after round %d", rnd)
                            break
            finally:
                bar.close()
                lost_total = runner.lost_clients_total
                runner.close()
        return Result(
            history=history,
            state_dict={k: v.clone() for k, v in fm.model.state_dict().items()},
            params=params,
            cancelled=cancelled,
            startup_s=startup,
            wall_s=time.perf_counter() - t_start,
            lost_clients=lost_total,
        )

    def _test_set(self):
        return self.data.clients if self.data.kind == "graph" else self.data.test

    def __repr__(self) -> str:
        return (
            f"Experiment(data={self.data.name!r}, strategy={self.strategy!r}, rounds={self.rounds},"
            f" clients_per_round={self.clients_per_round}, local_epochs={self.local_epochs},"
            f" batch_size={self.batch_size}, lr={self.lr}, stragglers={self.stragglers!r},"
            f" seed={self.seed})"
        )


def _is_dir(path) -> bool:
    from pathlib import Path

    return Path(path).is_dir()
