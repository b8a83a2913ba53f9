"""fedhub.fl.privacy: clipping, Gaussian noise and the RDP accountant (issue #18, must-show 4).

Fast and hub-free: numpy, scipy and dp_accounting only.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp
from scipy import stats

from fedhub.fl.privacy import (
    PrivacyAccountant,
    PrivacyBudgetExceeded,
    PrivacyConfigError,
    add_noise,
    clip,
)


def _dp_accounting_epsilon(z: float, q: float, steps: int, delta: float) -> float:
    """ε straight from dp_accounting, composing the round one event at a time."""
    accountant = rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    for _ in range(steps):
        accountant.compose(event)
    return accountant.get_epsilon(delta)


@pytest.mark.parametrize(
    ("z", "q", "rounds", "delta"),
    [(1.1, 1.0, 10, 1e-5), (2.0, 1.0, 50, 1e-6), (1.0, 0.1, 8, 1e-5), (0.8, 0.5, 1, 1e-3)],
)
def test_epsilon_after_n_rounds_is_the_accountants_value(z, q, rounds, delta):
    acc = PrivacyAccountant(noise_multiplier=z, sampling_rate=q, delta=delta)
    expected = _dp_accounting_epsilon(z, q, rounds, delta)
    assert acc.epsilon(rounds) == pytest.approx(expected, rel=1e-9)
    for _ in range(rounds):
        acc.step()
    assert acc.rounds == rounds
    assert acc.spent == pytest.approx(expected, rel=1e-9)
    # ε grows with every round
    eps = [acc.epsilon(r) for r in range(rounds + 1)]
    assert eps[0] == 0.0
    assert np.all(np.diff(eps) > 0)


def _classic_epsilon(acc: rdp.RdpAccountant, delta: float) -> float:
    """The RDP -> (ε, δ) conversion of Mironov 2017 (Prop. 3) that Abadi et al. and TF
    Privacy's tables used; dp_accounting's get_epsilon uses a tighter one (Canonne et al.)."""
    orders = np.asarray(acc.orders, dtype=float)
    curve = np.asarray(acc.rdp, dtype=float)
    return float(np.min(curve + math.log(1 / delta) / (orders - 1)))


@pytest.mark.parametrize(
    ("z", "q", "steps", "published"),
    [
        # Abadi et al., CCS 2016, §3.1: q=0.01, σ=4, δ=1e-5, T=10,000 -> ε ≈ 1.26
        (4.0, 0.01, 10_000, 1.26),
        # TF Privacy's MNIST tutorial table: N=60,000, batch 256, σ=1.1, 60 epochs -> ε = 3.01
        (1.1, 256 / 60_000, 60 * 60_000 // 256, 3.01),
    ],
)
def test_epsilon_agrees_with_published_tables(z, q, steps, published):
    acc = PrivacyAccountant(noise_multiplier=z, sampling_rate=q, delta=1e-5)
    reference = rdp.RdpAccountant()
    reference.compose(acc.event(), steps)
    # the same RDP curve, converted the way the papers did, gives their number
    assert _classic_epsilon(reference, 1e-5) == pytest.approx(published, abs=0.01)
    # ours converts tighter: never above the published value, and not wildly below it
    eps = acc.epsilon(steps)
    assert 0.75 * published < eps <= published


def test_can_run_refuses_the_round_that_would_exceed_the_budget():
    probe = PrivacyAccountant(noise_multiplier=1.5, delta=1e-5)
    budget = (probe.epsilon(3) + probe.epsilon(4)) / 2
    acc = PrivacyAccountant(noise_multiplier=1.5, delta=1e-5, epsilon_budget=budget)
    assert [acc.can_run(n) for n in (1, 2, 3, 4, 5)] == [True, True, True, False, False]
    for _ in range(3):
        acc.step()
    assert acc.spent == pytest.approx(probe.epsilon(3))
    assert not acc.can_run(acc.rounds + 1)
    with pytest.raises(PrivacyBudgetExceeded, match="round 4 would spend") as info:
        acc.step()
    assert info.value.code == "privacy_budget_exceeded" and info.value.status == 409
    assert acc.rounds == 3  # the refused round is not recorded
    # a budget exactly at a round's ε allows that round
    exact = PrivacyAccountant(noise_multiplier=1.5, delta=1e-5, epsilon_budget=probe.epsilon(2))
    assert exact.can_run(2) and not exact.can_run(3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise_multiplier": 0}, "noise_multiplier must be a positive"),
        ({"noise_multiplier": "lots"}, "noise_multiplier must be a number"),
        ({"noise_multiplier": 1.0, "sampling_rate": 1.5}, "sampling_rate is a probability"),
        ({"noise_multiplier": 1.0, "delta": 1.0}, "delta must be below 1"),
        ({"noise_multiplier": 1.0, "delta": -1e-5}, "delta must be a positive"),
        ({"noise_multiplier": 1.0, "epsilon_budget": 0}, "epsilon_budget must be positive"),
        ({"noise_multiplier": 1.0, "epsilon_budget": None}, "epsilon_budget must be a number"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(PrivacyConfigError, match=message) as info:
        PrivacyAccountant(**kwargs)
    assert info.value.status == 400


def test_clipping_bounds_the_norm_and_keeps_the_direction():
    rng = np.random.default_rng(7)
    for scale in (0.01, 1.0, 100.0):
        update = rng.normal(size=1000) * scale
        clipped = clip(update, 1.5)
        norm = np.linalg.norm(update)
        assert np.linalg.norm(clipped) <= 1.5 * (1 + 1e-12)
        if norm <= 1.5:
            np.testing.assert_array_equal(clipped, update)
        else:
            assert np.linalg.norm(clipped) == pytest.approx(1.5, rel=1e-12)
            np.testing.assert_allclose(clipped * (norm / 1.5), update, rtol=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        clip(np.array([1.0, np.nan]), 1.0)
    with pytest.raises(PrivacyConfigError, match="clip_norm"):
        clip(np.ones(3), -1.0)


def test_noise_has_standard_deviation_noise_multiplier_times_clip_norm():
    z, c, n = 1.3, 0.7, 200_000
    base = np.linspace(-1, 1, n)
    noisy = add_noise(base, z, c, np.random.default_rng(12345))
    noise = noisy - base
    sigma = z * c
    # the standard error of a sample standard deviation is about sigma / sqrt(2n)
    se = sigma / math.sqrt(2 * n)
    assert abs(noise.std() - sigma) < 4 * se
    assert abs(noise.mean()) < 4 * sigma / math.sqrt(n)
    assert stats.kstest(noise, "norm", args=(0, sigma)).pvalue > 0.01
    # the test has the power to tell a 2 % error in the standard deviation
    assert stats.kstest(noise, "norm", args=(0, sigma * 1.02)).pvalue < 1e-6
    # the same seed gives the same noise; the input is not modified
    again = add_noise(base, z, c, np.random.default_rng(12345))
    np.testing.assert_array_equal(noisy, again)
    assert base[0] == -1.0
