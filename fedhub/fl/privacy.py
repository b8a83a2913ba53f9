"""Client-level differential privacy for federations: DP-FedAvg and its accountant.

DP-FedAvg (McMahan et al., "Learning Differentially Private Recurrent Language Models",
ICLR 2018) protects each *member* (a whole organisation's contribution in a round), not
each example:

1. every member clips its model update to L2 norm ``clip_norm`` (:func:`clip`), so no
   member can move the sum by more than ``clip_norm``;
2. the coordinator adds Gaussian noise of standard deviation
   ``noise_multiplier * clip_norm`` to the *sum* of the clipped updates (:func:`add_noise`)
   before it averages and applies it;
3. :class:`PrivacyAccountant` tracks the (ε, δ) the rounds have spent with the Rényi-DP
   accountant of Google's ``dp_accounting`` (Mironov, "Rényi Differential Privacy", CSF
   2017): each round is a ``PoissonSampledDpEvent(sampling_rate, GaussianDpEvent(z))``;
   with every member taking part in every round (cross-silo), ``sampling_rate`` is 1.

The noise is added by the coordinator after secure aggregation has unmasked the sum
(``fedhub.fl.secagg``): the coordinator sees the exact sum of the clipped updates, the
members and everyone the model is released to see only the noised one. docs/fl.md says
what that protects and what it does not.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
from dp_accounting import rdp

from fedhub.errors import Conflict, InvalidRequest

__all__ = [
    "PrivacyAccountant",
    "PrivacyBudgetExceeded",
    "PrivacyConfigError",
    "add_noise",
    "clip",
]


class PrivacyConfigError(InvalidRequest, code="invalid_privacy_settings"):
    """A DP setting is out of range (the message names the setting)."""


class PrivacyBudgetExceeded(Conflict, code="privacy_budget_exceeded"):
    """A round was asked for that would spend more than the federation's ε budget."""


def _positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise PrivacyConfigError(f"dp.{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise PrivacyConfigError(f"dp.{name} must be a positive finite number, got {value!r}")
    return value


def clip(update: np.ndarray, norm: float) -> np.ndarray:
    """``update`` scaled down to L2 norm ``norm`` when it is longer; unchanged otherwise.

    Scaling (not per-coordinate clipping) keeps the update's direction. Returns float64.
    """
    norm = _positive("clip_norm", norm)
    vec = np.asarray(update, dtype=np.float64)
    if not np.all(np.isfinite(vec)):
        raise ValueError("the update holds NaN or infinite values")
    length = float(np.linalg.norm(vec))
    if length <= norm:
        return vec.copy()
    return vec * (norm / length)


def add_noise(
    sum_: np.ndarray, noise_multiplier: float, clip_norm: float, rng: np.random.Generator
) -> np.ndarray:
    """``sum_`` plus Gaussian noise of standard deviation ``noise_multiplier * clip_norm``.

    ``sum_`` is the sum of the round's clipped updates (sensitivity ``clip_norm``: adding or
    removing one member moves it by at most that much). Average *after* adding the noise.
    ``rng`` should come from ``np.random.default_rng()`` (OS entropy) in a real run; a
    seeded one makes the noise predictable to whoever knows the seed.
    """
    noise_multiplier = _positive("noise_multiplier", noise_multiplier)
    clip_norm = _positive("clip_norm", clip_norm)
    vec = np.asarray(sum_, dtype=np.float64)
    return vec + rng.normal(0.0, noise_multiplier * clip_norm, size=vec.shape)


class PrivacyAccountant:
    """The (ε, δ) a federation's rounds spend, and whether the next one fits its budget.

    ``epsilon(rounds)`` is a pure function of the settings (dp_accounting's
    ``RdpAccountant`` over ``rounds`` compositions of one round's event, converted at
    ``delta``); ``step()`` records that a round ran, ``spent`` is ε after the rounds run so
    far, and ``can_run(n)`` says whether round ``n`` (1-based) keeps ε within the budget.
    """

    def __init__(
        self,
        noise_multiplier: float,
        sampling_rate: float = 1.0,
        delta: float = 1e-5,
        epsilon_budget: float = math.inf,
    ):
        self.noise_multiplier = _positive("noise_multiplier", noise_multiplier)
        self.sampling_rate = _positive("sampling_rate", sampling_rate)
        if self.sampling_rate > 1:
            raise PrivacyConfigError(
                f"dp.sampling_rate is a probability (0 < q <= 1), got {sampling_rate!r}"
            )
        self.delta = _positive("delta", delta)
        if self.delta >= 1:
            raise PrivacyConfigError(f"dp.delta must be below 1, got {delta!r}")
        try:
            budget = float(epsilon_budget)
        except (TypeError, ValueError):
            raise PrivacyConfigError(
                f"dp.epsilon_budget must be a number, got {epsilon_budget!r}"
            ) from None
        if math.isnan(budget) or budget <= 0:
            raise PrivacyConfigError(f"dp.epsilon_budget must be positive, got {epsilon_budget!r}")
        self.epsilon_budget = budget
        self.rounds = 0
        self._cache: dict[int, float] = {0: 0.0}

    def event(self) -> dp_accounting.DpEvent:
        """One round's privacy event: a Poisson-sampled Gaussian mechanism."""
        return dp_accounting.PoissonSampledDpEvent(
            self.sampling_rate, dp_accounting.GaussianDpEvent(self.noise_multiplier)
        )

    def epsilon(self, rounds: int) -> float:
        """ε at ``self.delta`` after ``rounds`` rounds (0 for none)."""
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ValueError(f"rounds must be a non-negative integer, got {rounds!r}")
        if rounds not in self._cache:
            accountant = rdp.RdpAccountant()
            accountant.compose(self.event(), rounds)
            self._cache[rounds] = float(accountant.get_epsilon(self.delta))
        return self._cache[rounds]

    @property
    def spent(self) -> float:
        """ε spent by the rounds recorded with :meth:`step`."""
        return self.epsilon(self.rounds)

    def can_run(self, next_round_number: int) -> bool:
        """Whether running round ``next_round_number`` (1-based) keeps ε within the budget."""
        return self.epsilon(next_round_number) <= self.epsilon_budget

    def step(self) -> float:
        """Record one round; returns ε spent so far. Refuses a round past the budget."""
        if not self.can_run(self.rounds + 1):
            raise PrivacyBudgetExceeded(
                f"round {self.rounds + 1} would spend ε = {self.epsilon(self.rounds + 1):.3f}, "
                f"over the budget of {self.epsilon_budget:g} (δ = {self.delta:g}); "
                f"{self.rounds} round(s) have spent ε = {self.spent:.3f}"
            )
        self.rounds += 1
        return self.spent

    def __repr__(self) -> str:
        return (
            f"PrivacyAccountant(noise_multiplier={self.noise_multiplier}, "
            f"sampling_rate={self.sampling_rate}, delta={self.delta}, "
            f"epsilon_budget={self.epsilon_budget}, rounds={self.rounds})"
        )
