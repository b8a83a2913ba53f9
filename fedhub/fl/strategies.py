"""Strategies: small policy objects with hooks; the runner owns transport and failures.

A strategy is asked, each round, to

1. :meth:`Strategy.configure_round` — pick the clients to train (a pure function of the
   round's RNG), and :meth:`Strategy.client_extra` — per-client payload (SCAFFOLD's
   control variates);
2. :meth:`Strategy.aggregate` — turn the reporting clients' results (sorted by client id)
   into new global parameters;
3. :meth:`Strategy.evaluate` — optionally add server-side metrics.

It does no I/O. The math is in :mod:`fedhub.fl.aggregate`. A variant overrides one hook
and never copies its parent's constructor. :meth:`state_dict` / :meth:`load_state_dict`
carry the server optimiser state through checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import aggregate as agg
from .registry import Param, Registry
from .training import ClientResult

registry = Registry("strategy")

# Bounds of the strategies' parameters (see fedhub.fl.registry): wide enough for any
# experiment in the literature, narrow enough that none turns into a denial of service.
_SERVER_LR = Param(float, min=1e-6, max=100.0)
_BETA = Param(float, min=0.0, max=0.999999)
_ADAPTIVE = {
    "eta": Param(float, min=1e-9, max=10.0),
    "beta_1": _BETA,
    "beta_2": _BETA,
    "tau": Param(float, min=1e-12, max=1.0),
}


class Strategy:
    """Base class; the default hooks implement FedAvg."""

    #: FedProx's proximal coefficient used in the clients' local objective.
    proximal_mu: float = 0.0

    def initialize(self, params: np.ndarray, num_clients: int) -> None:
        """Called once before round 1 (not on resume) with the initial weights."""
        self.num_clients = num_clients

    def configure_round(
        self, rnd: int, client_ids: Sequence[int], num_sample: int, rng: np.random.Generator
    ) -> list[int]:
        """Choose this round's clients; default: uniform without replacement."""
        k = min(num_sample, len(client_ids))
        return sorted(int(c) for c in rng.choice(client_ids, size=k, replace=False))

    def client_extra(self, rnd: int, cid: int) -> dict:
        """Extra payload for one client's local training (default: none)."""
        return {}

    def aggregate(self, rnd: int, params: np.ndarray, results: list[ClientResult]) -> np.ndarray:
        """New global parameters from the results of the clients that reported."""
        return self.average(results)

    def evaluate(self, rnd: int, params: np.ndarray) -> dict | None:
        """Server-side metrics to add to the round's history (default: none)."""
        return None

    # Helpers shared by subclasses.
    @staticmethod
    def stack(results: list[ClientResult]) -> np.ndarray:
        return np.stack([r.params for r in results])

    def average(self, results: list[ClientResult]) -> np.ndarray:
        weights = np.array([r.num_examples for r in results], dtype=np.float64)
        return agg.weighted_average(self.stack(results), weights)

    def state_dict(self) -> dict:
        """Server optimiser state for a checkpoint (plain Python and numpy)."""
        return {k: v for k, v in vars(self).items() if k.startswith("_state_")}

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}"
            for k, v in vars(self).items()
            if not k.startswith("_") and k != "num_clients"
        )
        return f"{type(self).__name__}({params})"


@registry.register("fedavg", params={})
class FedAvg(Strategy):
    """FedAvg (McMahan et al. 2017) with weights normalised over the reporting clients."""


@registry.register("fedprox", params={"mu": Param(float, min=0.0, max=100.0)})
class FedProx(FedAvg):
    """FedProx (Li et al. 2020): FedAvg aggregation, proximal term in the local objective."""

    def __init__(self, mu: float = 0.01) -> None:
        if mu < 0:
            raise ValueError("mu must be non-negative")
        self.proximal_mu = float(mu)


@registry.register("fedavgm", params={"server_lr": _SERVER_LR, "momentum": _BETA})
class FedAvgM(FedAvg):
    """FedAvg with server momentum (Hsu et al. 2019)."""

    def __init__(self, server_lr: float = 1.0, momentum: float = 0.9) -> None:
        self.server_lr = server_lr
        self.momentum = momentum
        self._state_velocity = None

    def aggregate(self, rnd, params, results):
        avg = self.average(results)
        new, self._state_velocity = agg.momentum_step(
            params, params - avg, self._state_velocity, self.server_lr, self.momentum
        )
        return new.astype(params.dtype, copy=False)


class _Adaptive(FedAvg):
    """FedOpt family (Reddi et al. 2021): an adaptive server optimiser on the average delta."""

    kind = "adam"

    def __init__(
        self, eta: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-9
    ) -> None:
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau
        self._state_m = None
        self._state_v = None

    def aggregate(self, rnd, params, results):
        delta = self.average(results) - params
        new, self._state_m, self._state_v = agg.adaptive_step(
            self.kind, params, delta, self._state_m, self._state_v,
            self.eta, self.beta_1, self.beta_2, self.tau,
        )  # fmt: skip
        return new


@registry.register("fedadagrad", params=_ADAPTIVE)
class FedAdagrad(_Adaptive):
    kind = "adagrad"


@registry.register("fedadam", params=_ADAPTIVE)
class FedAdam(_Adaptive):
    kind = "adam"


@registry.register("fedyogi", params=_ADAPTIVE)
class FedYogi(_Adaptive):
    kind = "yogi"

    def __init__(self, eta: float = 0.01, beta_1=0.9, beta_2=0.99, tau: float = 1e-3) -> None:
        super().__init__(eta, beta_1, beta_2, tau)


@registry.register("scaffold", params={"server_lr": _SERVER_LR})
class SCAFFOLD(Strategy):
    """SCAFFOLD (Karimireddy et al. 2020) with option II client controls.

    The server keeps the global control ``c`` and every client's ``c_i`` (clients in a
    simulation are stateless between rounds), sends both with the job, and applies the
    returned control deltas.
    """

    def __init__(self, server_lr: float = 1.0) -> None:
        self.server_lr = server_lr
        self._state_c = None
        self._state_ci: dict[int, np.ndarray] = {}

    def initialize(self, params, num_clients):
        super().initialize(params, num_clients)
        self._state_c = np.zeros_like(params)
        self._state_ci = {}

    def client_extra(self, rnd, cid):
        c_i = self._state_ci.get(cid)
        return {"c": self._state_c, "c_i": np.zeros_like(self._state_c) if c_i is None else c_i}

    def aggregate(self, rnd, params, results):
        dy = self.stack(results) - params
        dc = np.stack([r.extra["dc"] for r in results])
        for r in results:
            base = self._state_ci.get(r.cid, np.zeros_like(params))
            self._state_ci[r.cid] = base + r.extra["dc"]
        new, self._state_c = agg.scaffold_server_update(
            params, self._state_c, dy, dc, self.num_clients, self.server_lr
        )
        return new.astype(params.dtype, copy=False)


@registry.register("fedmedian", params={})
class FedMedian(Strategy):
    """Coordinate-wise median of the client models (Yin et al. 2018)."""

    def aggregate(self, rnd, params, results):
        return agg.coordinate_median(self.stack(results))


@registry.register("fedtrimmedavg", params={"beta": Param(float, min=0.0, max=0.49)})
class FedTrimmedAvg(Strategy):
    """Coordinate-wise trimmed mean, cutting ``beta`` at each end (Yin et al. 2018)."""

    def __init__(self, beta: float = 0.2) -> None:
        self.beta = beta

    def aggregate(self, rnd, params, results):
        return agg.trimmed_mean(self.stack(results), self.beta)


@registry.register(
    "krum",
    params={
        "num_malicious": Param(int, min=0, max=1000),
        "num_to_keep": Param(int, min=1, max=1000),
    },
)
class Krum(Strategy):
    """Krum / Multi-Krum (Blanchard et al. 2017)."""

    def __init__(self, num_malicious: int = 0, num_to_keep: int = 1) -> None:
        self.num_malicious = num_malicious
        self.num_to_keep = num_to_keep

    def aggregate(self, rnd, params, results):
        return agg.krum(self.stack(results), self.num_malicious, self.num_to_keep)


def get(name: str, **params) -> Strategy:
    """Build a strategy by name, e.g. ``get("fedprox", mu=1.0)``."""
    return registry.get(name, **params)
