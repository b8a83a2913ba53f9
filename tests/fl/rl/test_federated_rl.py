"""Federated graph-TD3 through the engine: determinism on 1 and 2 workers, resume,
a worker killed mid-round, per-agent status. On the toy graph environment (fast); the
SUMO run is at the end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedhub import fl
from fedhub.fl.rl import federated as frl
from fedhub.fl.rl.td3 import TD3Config
from fedhub.fl.runtime import dask_client
from fedhub.fl.training import ClientResult
from tests.fl.rl.toy_env import ToyConfig, ToyEnv
from tests.fl.workers import cluster_kwargs, kill_worker_in_round

TD3 = TD3Config(batch_size=8, hidden=16, policy_delay=2)


def _clients(step_seconds: float = 0.0):
    net = ToyConfig(seed=1, step_seconds=step_seconds)
    return [
        frl.RLClient(net, [0, 1], district=0),  # two districts of one network
        frl.RLClient(net, [2, 3], district=1),
        frl.RLClient(ToyConfig(seed=2, step_seconds=step_seconds)),  # a whole network
        frl.RLClient(ToyConfig(seed=3, step_seconds=step_seconds)),
    ]


def _experiment(rounds=3, step_seconds=0.0, strategy=None):
    return frl.build_experiment(
        None,
        _clients(step_seconds),
        rounds,
        env_factory=ToyEnv,
        td3=TD3,
        episodes_per_round=2,
        seed=11,
        strategy=strategy or fl.strategies.FedProx(mu=0.01),
    )


def _strip(history):
    return [{k: v for k, v in h.items() if k != "duration_s"} for h in history]


@pytest.fixture(scope="module")
def reference(dask_client):
    return _experiment().run(client=dask_client, progress=None)


def test_round_records_carry_reward_delay_queue_and_agents(reference):
    assert [h["round"] for h in reference.history] == [1, 2, 3]
    for h in reference.history:
        assert h["clients"] == 4 and h["dropped"] == 0
        for key in ("reward", "mean_delay", "queue", "train_loss"):
            assert math.isfinite(h[key]), key
    agents = frl.agents_status(reference.history[-1])
    assert [a["agent"] for a in agents] == [0, 1, 2, 3]
    assert [a["district"] for a in agents] == [0, 1, 2, 3]
    assert all(a["health"] == "ok" and a["episodes"] == 6 for a in agents)
    assert all(a["last_reward"] < 0 for a in agents)  # minus queues
    # training moved the weights away from the initial ones
    init = fl.training.FlatModel(_experiment().initial_model()).get()
    assert not np.array_equal(init, reference.params)


@pytest.mark.slow
def test_same_weights_on_one_and_two_workers(reference):
    one = _experiment().run(progress=None, cluster_kwargs=cluster_kwargs(1))
    assert np.array_equal(one.params, reference.params)
    assert _strip(one.history) == _strip(reference.history)


def test_resume_is_bit_identical(reference, dask_client, tmp_path):
    ckpt = tmp_path / "ckpt"
    stopped = _experiment().run(
        client=dask_client, progress=None, checkpoint_dir=ckpt, checkpoint_every=1,
        callback=lambda rec: rec["round"] < 2,
    )  # fmt: skip
    assert stopped.cancelled and len(stopped.history) == 2
    resumed = fl.Experiment.resume(ckpt, client=dask_client, progress=None)
    assert np.array_equal(resumed.params, reference.params)
    assert _strip(resumed.history) == _strip(reference.history)


@pytest.mark.slow
def test_worker_killed_mid_round_run_finishes(reference):
    # 20 ms of wall time per simulated step (the numbers do not change): a round lasts
    # ~0.5 s per worker, long enough to kill one in the middle of it
    # the engine's own cluster (workers forked from a server that imported torch: fast)
    with dask_client(None, None, cluster_kwargs(2)) as client:
        client.wait_for_workers(2, timeout=60)
        with kill_worker_in_round(client, 2) as killed:
            result = _experiment(step_seconds=0.02).run(client=client, progress=None)
    assert killed, "no round-2 task was seen running, so nothing was killed"
    assert len(result.history) == 3 and result.lost_clients == 0
    # the killed worker's clients ran again on the survivor: same weights as without a kill
    assert np.array_equal(result.params, reference.params)
    assert _strip(result.history) == _strip(reference.history)


def test_agents_status_marks_lost_groups_and_keeps_their_last_reward():
    data = frl.RLClients(_clients(), env_factory=ToyEnv)

    def res(cid, reward):
        extra = {"reward": reward, "mean_delay": 2.0, "queue": 5.0}
        return ClientResult(cid, np.zeros(1), 16, 1.0, 2, 16, extra)

    first = data.round_metrics(1, [res(c, -float(c)) for c in range(4)], [], [])
    second = data.round_metrics(2, [res(0, -7.0), res(2, -9.0)], [1], [first])
    status = frl.agents_status(second)
    assert [a["health"] for a in status] == ["ok", "lost", "ok", "ok"]
    assert [a["episodes"] for a in status] == [4, 2, 4, 2]  # 3 was not sampled in round 2
    assert [a["last_reward"] for a in status] == [-7.0, -1.0, -9.0, -3.0]
    assert second["reward"] == -8.0


def test_policies_act_on_the_whole_graph(reference):
    exp = _experiment()
    policy = frl.policy_of(reference, exp)
    obs = ToyEnv(ToyConfig()).reset(seed=0)
    a = policy.act(obs, None)
    assert a.shape == (4, 1) and np.all(np.abs(a) <= 1)
    other = frl.GraphPolicy(exp.initial_model())
    split = frl.DistrictPolicy([policy, other], [[0, 1], [2, 3]])
    b = split.act(obs, None)
    assert np.array_equal(b[:2], a[:2]) and np.array_equal(b[2:], other.act(obs)[2:])


def test_scaffold_is_refused_for_rl():
    with pytest.raises(ValueError, match="SCAFFOLD"):
        _experiment(rounds=1, strategy=fl.strategies.registry.get("scaffold"))


@pytest.mark.slow
def test_two_rounds_of_two_districts_on_a_sumo_grid(dask_client):
    from fedhub.fl.rl.baselines import evaluate
    from fedhub.fl.rl.traffic import TrafficConfig

    config = TrafficConfig(grid=2, episode_seconds=240, decision_seconds=30, demand=0.3, seed=5)
    exp = frl.build_experiment(config, 2, 2, td3=TD3, episodes_per_round=1, seed=3)
    assert [c.agents for c in exp.data.clients] == [[0, 1], [2, 3]]
    result = exp.run(client=dask_client, progress=None)
    assert [h["clients"] for h in result.history] == [2, 2]
    for h in result.history:
        assert h["mean_delay"] > 0 and h["queue"] >= 0 and h["reward"] <= 0
    assert [a["episodes"] for a in frl.agents_status(result.history[-1])] == [2, 2]
    # the same rounds replayed in this process give the same bits: the simulator and the
    # agent depend on (seed, round, client) only, not on the process that ran them
    fm = fl.training.FlatModel(exp.initial_model())
    params = fm.get()
    with fl.training.torch_threads(1):  # as on a worker (and 15x faster on a busy machine)
        for rnd in (1, 2):
            global_params = torch.from_numpy(params.copy())
            results = [exp.data.train_client(fm, fl.ClientJob(c, 1), global_params, rnd=rnd,
                                             seed=3) for c in (0, 1)]  # fmt: skip
            params = fl.strategies.FedAvg().aggregate(rnd, params, results).astype(np.float32)
    assert np.array_equal(params, result.params)
    # the trained actor drives the simulator in this process too
    scored = evaluate(frl.policy_of(result, exp), config, [1_000_000])
    assert math.isfinite(scored["mean_delay"])
