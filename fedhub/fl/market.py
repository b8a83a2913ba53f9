"""Marketplace strategies: reviewed, licensed source run as a run's strategy, never in the
process that runs the experiment.

An ``algorithm`` asset of the marketplace is Python source that defines a
:class:`fedhub.fl.Strategy` subclass (docs/marketplace.md, "Using an asset"). A spec names
it ``strategy: "market/<slug>@<version>"``. The runner (:meth:`fedhub.fl.Experiment.run`, a
thread of the experiments service) holds a :class:`RemoteStrategy`: a proxy whose every hook
is a task on the executor it is given, which the service makes the buying tenant's own
workers (``DaskClusters.tenant_executor``: processes of the tenant's Unix account
``fedhub_t_<slug>``, which read only that tenant's data). Not in the worker process
either: each task relays its hook to a *strategy host* (:mod:`fedhub.fl.market_host`), a
child process of the worker with no Dask in it, started once per worker and source. There
the source is checked against its SHA-256, executed once (:func:`load_strategy`, cached by
hash) and the real strategy rebuilt from its state for each call. Host and worker exchange
JSON and ``.npz`` over pipes, decoded without pickle, so what the source's code returns
reaches the worker, and Dask, only as plain data built by fedhub's code.

Round trips are batched: one task for ``initialize``, one for ``configure_round`` with the
chosen clients' ``client_extra`` (the round's RNG state goes and comes back, so the runner's
RNG advances exactly as with a local strategy), one for ``aggregate`` with ``evaluate``.
Everything that comes back (state, weights, extras, metrics) must be plain data: numbers,
strings, lists, dicts and numeric numpy arrays; anything else fails the run with a
:class:`MarketCodeError` naming the asset.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .market_source import MarketCodeError, check_params, load_strategy
from .strategies import Strategy

__all__ = [
    "MarketCodeError",
    "RemoteStrategy",
    "WarmStart",
    "attach",
    "check_params",
    "initial_weights",
    "load_strategy",
    "plain",
]


# ------------------------------------------------------------------ plain data


def plain(value: Any, ref: str, where: str) -> Any:
    """``value`` if it is plain data (see the module), numpy scalars as Python numbers."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise MarketCodeError(f"{ref}: {where} is an array of {value.dtype}, not of numbers")
        return value
    if isinstance(value, list | tuple):
        return type(value)(plain(v, ref, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise MarketCodeError(f"{ref}: {where} has a key of type {type(k).__name__}")
            out[k] = plain(v, ref, f"{where}.{k}")
        return out
    raise MarketCodeError(
        f"{ref}: {where} is a {type(value).__name__}; a strategy's state, extras and "
        "metrics must be numbers, strings, lists, dicts or numeric arrays"
    )


# ------------------------------------------------------------------ tasks (worker side)
# Each task relays its hook to this worker's strategy host for the source
# (fedhub.fl.market_host): the source never runs in the worker process, and what comes
# back is decoded from JSON and .npz without pickle, then returned to the runner.


def _relay(source: str, sha256: str, ref: str, op: str, *args) -> tuple:
    from .market_host import call_host

    return tuple(call_host(source, sha256, ref, op, list(args)))


def remote_initialize(source, sha256, ref, params, init_params, num_clients):
    """Task: build the strategy with its checked parameters and initialize it."""
    return _relay(source, sha256, ref, "initialize", dict(params), init_params, num_clients)


def remote_configure(source, sha256, ref, state, rnd, client_ids, num_sample, rng_state):
    """Task: ``configure_round`` on the runner's RNG state, then each chosen client's extra."""
    return _relay(source, sha256, ref, "configure", state, rnd, client_ids, num_sample, rng_state)


def remote_aggregate(source, sha256, ref, state, rnd, params, results):
    """Task: ``aggregate`` then ``evaluate`` on the new weights (as the runner stores them)."""
    return _relay(source, sha256, ref, "aggregate", state, rnd, params, list(results))


def remote_evaluate(source, sha256, ref, state, rnd, params):
    """Task: ``evaluate`` alone (a round in which no client reported)."""
    return _relay(source, sha256, ref, "evaluate", state, rnd, params)


# ------------------------------------------------------------------ the proxy (runner side)


class RemoteStrategy(Strategy):
    """A marketplace strategy whose hooks run as tasks on ``executor`` (anything with
    ``submit(fn, *args)`` returning a future: the tenant's :class:`TenantExecutor`, or a
    ``distributed.Client``). Holds the asset's source, hash, parameters and the remote
    strategy's state; the executor is not pickled (a checkpoint cannot carry a
    connection): re-attach it with :attr:`executor` after loading one."""

    def __init__(
        self,
        ref: str,
        source: str,
        sha256: str,
        params: Mapping[str, Any] | None = None,
        executor=None,
        timeout: float = 600.0,
    ) -> None:
        self.ref = ref
        self.params = dict(params or {})
        self._source = source
        self._sha256 = sha256
        self._state: dict | None = None
        self._extras: dict[int, dict] = {}
        self._evaluated: tuple[int, dict | None] | None = None
        self._timeout = timeout
        self._executor = executor

    @property
    def executor(self):
        return self._executor

    @executor.setter
    def executor(self, value) -> None:
        self._executor = value

    def _call(self, fn, *args):
        if self._executor is None:
            raise RuntimeError(f"{self.ref}: no executor attached to run the strategy's hooks")
        fut = self._executor.submit(fn, self._source, self._sha256, self.ref, *args, pure=False)
        return fut.result(timeout=self._timeout)

    def _keep(self, state: dict, mu: float) -> None:
        self._state = plain(state, self.ref, "state")
        self.proximal_mu = float(mu)

    def initialize(self, params: np.ndarray, num_clients: int) -> None:
        self.num_clients = num_clients
        self._keep(*self._call(remote_initialize, self.params, params, num_clients))

    def configure_round(
        self, rnd: int, client_ids: Sequence[int], num_sample: int, rng: np.random.Generator
    ) -> list[int]:
        chosen, extras, rng_state, state, mu = self._call(
            remote_configure, self._state, rnd, np.asarray(client_ids), num_sample,
            rng.bit_generator.state,
        )  # fmt: skip
        rng.bit_generator.state = plain(rng_state, self.ref, "rng state")
        self._keep(state, mu)
        self._extras = {int(c): plain(e, self.ref, "client_extra") for c, e in extras.items()}
        return [int(c) for c in chosen]

    def client_extra(self, rnd: int, cid: int) -> dict:
        return self._extras.get(int(cid), {})

    def aggregate(self, rnd, params, results):
        new, metrics, state, mu = self._call(remote_aggregate, self._state, rnd, params, results)
        new = plain(new, self.ref, "aggregate's weights")
        if not isinstance(new, np.ndarray) or new.shape != params.shape:
            raise MarketCodeError(f"{self.ref}: aggregate must return an array of {params.shape}")
        self._keep(state, mu)
        self._evaluated = (rnd, plain(metrics, self.ref, "evaluate"))
        return new

    def evaluate(self, rnd, params):
        if self._evaluated is not None and self._evaluated[0] == rnd:
            metrics = self._evaluated[1]
        else:
            metrics, state, mu = self._call(remote_evaluate, self._state, rnd, params)
            self._keep(state, mu)
            metrics = plain(metrics, self.ref, "evaluate")
        if metrics is not None and not isinstance(metrics, dict):
            raise MarketCodeError(f"{self.ref}: evaluate must return a dict or None")
        return metrics

    def state_dict(self) -> dict:
        return {"_state": self._state, "proximal_mu": self.proximal_mu}

    def load_state_dict(self, state: dict) -> None:
        self._keep(state["_state"], state["proximal_mu"])

    def __getstate__(self) -> dict:
        state = dict(vars(self))
        state["_executor"] = None
        state["_extras"] = {}
        return state

    def __deepcopy__(self, memo) -> RemoteStrategy:
        """The runner deep-copies its strategy: the copy shares the executor."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for key, value in vars(self).items():
            vars(new)[key] = value if key == "_executor" else copy.deepcopy(value, memo)
        return new

    def __repr__(self) -> str:
        return f"RemoteStrategy(ref={self.ref!r}, params={self.params!r})"


def attach(experiment, executor) -> None:
    """Give a loaded experiment's :class:`RemoteStrategy` (and its checkpointed copy) the
    executor its hooks run on; other strategies are left alone."""
    strategies = [experiment.strategy]
    if experiment._start is not None:
        strategies.append(experiment._start["strategy"])
    for strategy in strategies:
        if isinstance(strategy, RemoteStrategy):
            strategy.executor = executor


# ------------------------------------------------------------------ a model's weights


def initial_weights(content: bytes, sha256: str, ref: str, model_factory) -> dict[str, np.ndarray]:
    """Task (the tenant's worker): a ``model`` asset's state dict, checked against its hash,
    loaded with ``torch.load(weights_only=True)`` (tensors and plain containers only: no
    code from the file runs) and into the run's model (strict: every name and shape must
    fit), returned as ``{name: array}``."""
    import io

    import torch

    if hashlib.sha256(content).hexdigest() != sha256:
        raise MarketCodeError(f"{ref}: the file does not match its SHA-256 {sha256}")
    try:
        state = torch.load(io.BytesIO(content), weights_only=True, map_location="cpu")
        model = model_factory()
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - a file that does not fit is the asset's error
        why = " ".join(x.strip() for x in str(e).splitlines() if x.strip())[:400]
        raise MarketCodeError(
            f"{ref}: does not load into the run's model: {why or type(e).__name__}"
        ) from None
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


class WarmStart:
    """A model factory whose models start from given weights (``{name: array}``, as
    :func:`initial_weights` returns them): the run's ``init_weights``. Picklable."""

    def __init__(self, factory, weights: Mapping[str, np.ndarray], ref: str) -> None:
        self.factory = factory
        self.weights = {k: plain(v, ref, f"init_weights.{k}") for k, v in weights.items()}
        self.ref = ref

    def __call__(self):
        import torch

        model = self.factory()
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.weights.items()})
        return model

    def __repr__(self) -> str:
        return f"WarmStart({self.factory!r}, {self.ref!r})"
