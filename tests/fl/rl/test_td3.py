"""graph-TD3's math: the target against hand-worked values, target policy smoothing,
delayed policy updates, the replay buffer with graphs whose edges change."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fedhub.fl.rl.td3 import (
    GraphActorCritic,
    GraphTD3,
    ReplayBuffer,
    TD3Config,
    smoothed_action,
    td3_target,
)
from tests.fl.rl.toy_env import ToyConfig, ToyEnv


def test_td3_target_by_hand():
    reward = torch.tensor([1.0, -0.5, 2.0])
    done = torch.tensor([0.0, 1.0, 0.0])
    q1 = torch.tensor([2.0, 3.0, -1.0])
    q2 = torch.tensor([1.5, 4.0, -2.0])
    # 1 + 0.9*min(2, 1.5) = 2.35;  -0.5 + 0 (done);  2 + 0.9*min(-1, -2) = 0.2
    y = td3_target(reward, done, q1, q2, gamma=0.9)
    assert torch.allclose(y, torch.tensor([2.35, -0.5, 0.2]))


def test_target_policy_smoothing_clips_noise_then_action():
    mu = torch.tensor([[0.9], [-0.2], [0.0]])
    noise = torch.tensor([[0.7], [-0.8], [0.1]])
    # 0.9 + clip(0.7)=0.5 -> 1.4 -> 1.0;  -0.2 + clip(-0.8)=-0.5 -> -0.7;  0.0 + 0.1
    a = smoothed_action(mu, noise, noise_clip=0.5)
    assert torch.allclose(a, torch.tensor([[1.0], [-0.7], [0.1]]))


class _Linear(nn.Module):
    """Stand-in target networks with a closed form: pi(s) = 0.9 everywhere,
    Q1(s, a) = x0 + 2a, Q2(s, a) = x0 + a + 0.5."""

    def actor(self, x, edge_index, edge_attr=None):
        return torch.full((x.size(0), 1), 0.9)

    def critics(self, x, edge_index, edge_attr, action):
        return x[:, 0] + 2 * action[:, 0], x[:, 0] + action[:, 0] + 0.5


def test_critic_target_composes_smoothing_and_clipped_double_q():
    cfg = TD3Config(gamma=0.5, target_noise=0.2, noise_clip=0.25)
    agent = GraphTD3(GraphActorCritic(2, 0, 1, hidden=4), cfg, seed=0)
    agent.target = _Linear()
    x = torch.tensor([[1.0, 0.0], [-2.0, 0.0]])
    nxt = type("G", (), {"x": x, "edge_index": torch.zeros(2, 0, dtype=torch.long)})()
    # The agent's smoothing noise: torch.randn from a generator seeded 0, times 0.2.
    eps = torch.randn((2, 1), generator=torch.Generator().manual_seed(0)) * 0.2
    assert eps[0, 0] > 0.25 and abs(eps[1, 0]) < 0.25  # 0.3082 and -0.0587
    # node 0: a' = clip(0.9 + clip(0.3082, ±0.25), ±1) = clip(1.15) = 1.0
    #         Q1 = 1 + 2 = 3, Q2 = 1 + 1 + 0.5 = 2.5  ->  y = 1 + 0.5 * 2.5 = 2.25
    # node 1: a' = 0.9 - 0.0587 = 0.8413 (eps[1] exactly below)
    #         Q1 = -2 + 2a' = -0.3174, Q2 = -2 + a' + 0.5 = -0.6587  ->  y = 0.5 * Q2
    a1 = 0.9 + float(eps[1, 0])
    y = agent.critic_target(nxt, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert torch.allclose(y, torch.tensor([2.25, 0.5 * (-2 + a1 + 0.5)]), atol=1e-6)
    assert abs(float(y[1]) - (-0.32934)) < 1e-4


def _filled_buffer(seed=0, n=20):
    env = ToyEnv(ToyConfig(steps=n))
    buf = ReplayBuffer(100, seed=seed)
    obs = env.reset(seed=3)
    rng = np.random.default_rng(0)
    done = False
    while not done:
        a = rng.uniform(-1, 1, size=(4, 1)).astype(np.float32)
        nxt, r, done, _ = env.step(a)
        buf.add(obs, a, r, nxt, False, mask=[True, True, False, False])
        obs = nxt
    return buf


def _flat(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def test_delayed_policy_updates():
    torch.manual_seed(0)
    cfg = TD3Config(policy_delay=3, batch_size=4, hidden=8)
    agent = GraphTD3(GraphActorCritic(2, 1, 1, hidden=8), cfg, seed=1)
    buf = _filled_buffer()
    actor, critic, target = (
        _flat(agent.model.actor_net),
        _flat(agent.model.critic1),
        _flat(agent.target),
    )
    moved = []
    for step in range(1, 7):
        out = agent.update(buf.sample(cfg.batch_size))
        a2, c2, t2 = _flat(agent.model.actor_net), _flat(agent.model.critic1), _flat(agent.target)
        moved.append((not torch.equal(a2, actor), not torch.equal(t2, target)))
        assert not torch.equal(c2, critic), f"critic did not move at update {step}"
        assert math.isnan(out["actor_loss"]) == (step % 3 != 0)
        actor, critic, target = a2, c2, t2
    # actor and targets move on updates 3 and 6 only
    assert moved == [(False, False), (False, False), (True, True)] * 2


def test_replay_buffer_keeps_each_graphs_edges_and_samples_by_seed():
    a, b = _filled_buffer(seed=5), _filled_buffer(seed=5)
    sa, sb = a.sample(6), b.sample(6)
    assert torch.equal(sa[0].x, sb[0].x) and torch.equal(sa[1].edge_index, sb[1].edge_index)
    # the incident removes one road: graphs in the buffer have 7 or 8 edges, each its own
    counts = {int(d.edge_index.size(1)) for d in a._obs}
    assert counts == {7, 8}
    obs, nxt = a.sample(32)
    assert obs.action.shape == (obs.num_nodes, 1) and obs.mask.sum() == 32 * 2
    assert obs.num_nodes == nxt.num_nodes == 32 * 4


def test_act_explores_with_seeded_noise_within_bounds():
    model = GraphActorCritic(2, 1, 1, hidden=8)
    obs = ToyEnv(ToyConfig()).reset(seed=0)
    greedy = GraphTD3(model, TD3Config(), seed=0).act(obs)
    e1 = GraphTD3(model, TD3Config(explore_noise=0.5), seed=4).act(obs, explore=True)
    e2 = GraphTD3(model, TD3Config(explore_noise=0.5), seed=4).act(obs, explore=True)
    assert greedy.shape == (4, 1) and np.array_equal(e1, e2) and not np.array_equal(e1, greedy)
    assert np.all(np.abs(e1) <= 1.0)


def test_config_refuses_nonsense():
    with pytest.raises(ValueError, match="policy_delay"):
        TD3Config(policy_delay=0)
    with pytest.raises(ValueError, match="explore_noise"):
        TD3Config(explore_noise=-1)
