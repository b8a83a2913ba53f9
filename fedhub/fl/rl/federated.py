"""Federated graph-TD3 on the FL engine: RL is one more kind of client data.

An :class:`RLClients` object stands where a :class:`~fedhub.fl.datasets.FederatedData`
stands in :class:`fedhub.fl.Experiment` (``kind = "rl"``), so the engine's round loop, its
strategies, Dask runner (actors, worker-loss retry), checkpoints and progress run RL
unchanged. What differs is what a client does in a round and how a round is measured:

* a client is an agent group: a district of one road network (it learns for its own
  intersections; the others follow the current global policy without noise) or a whole
  network with its own demand seed. Each round it builds its own simulator on its worker,
  loads the global actor and critics, collects ``local_epochs`` episodes with exploration
  noise seeded by ``(seed, round, client)``, fills a fresh replay buffer, runs TD3
  updates and returns the weights. Nothing survives a round on the worker (stateless
  rounds: no replay buffer, optimiser or target network is carried over), which is what
  makes a run the same on 1 or 2 workers, after a lost worker and after a resume;
* a round is measured by the clients' own episodes (reward, mean delay, queue), carried
  back in :class:`~fedhub.fl.training.ClientResult` ``extra``; the driver starts no
  simulator (libsumo allows one per process, and the driver may be a shared service).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..training import ClientJob, ClientResult, FlatModel, client_seed, torch_threads
from .td3 import GraphActorCritic, GraphTD3, ReplayBuffer, TD3Config


@dataclass
class RLClient:
    """One agent group: the environment it simulates and the nodes it learns for."""

    env: object  # an environment config, e.g. fedhub.fl.rl.traffic.TrafficConfig
    agents: list[int] | None = None  # node indices of its district; None: every node
    district: int | None = None


@dataclass
class RLClients:
    """The clients of a federated RL run, shaped like ``FederatedData`` for the engine."""

    clients: list[RLClient]
    td3: TD3Config = field(default_factory=TD3Config)
    env_factory: Callable | None = None  # config -> environment; default TrafficEnv
    capacity: int = 100_000
    name: str = "traffic-rl"
    kind: str = "rl"

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    def sizes(self) -> np.ndarray:
        """Relative work per episode (the runner balances shares with it)."""
        return np.ones(self.num_clients, dtype=np.int64)

    def make_env(self, config):
        if self.env_factory is not None:
            return self.env_factory(config)
        from .traffic import TrafficEnv

        return TrafficEnv(config)

    def train_client(self, fm: FlatModel, job: ClientJob, global_params: torch.Tensor, *,
                     rnd: int, seed: int, mu: float = 0.0) -> ClientResult:  # fmt: skip
        """The engine's worker-side entry point for one client of kind ``"rl"``."""
        return train_rl_client(fm, self, job, global_params, rnd=rnd, seed=seed, mu=mu)

    # the engine asks the data how a round went when it has no test set
    def round_metrics(self, rnd: int, results: list[ClientResult], lost: list[int],
                      history: list[dict]) -> dict:  # fmt: skip
        """Reward, mean delay and queue of the round's episodes, and each agent's status."""
        before = {a["agent"]: a for a in (history[-1].get("agents", []) if history else [])}
        by_cid = {r.cid: r for r in results}
        agents = []
        for cid, c in enumerate(self.clients):
            prev = before.get(cid, {})
            entry = {
                "agent": cid,
                "district": c.district if c.district is not None else cid,
                "last_reward": prev.get("last_reward", math.nan),
                "episodes": prev.get("episodes", 0),
                "health": "ok",
            }
            if cid in by_cid:
                entry["last_reward"] = by_cid[cid].extra["reward"]
                entry["episodes"] += by_cid[cid].epochs
            elif cid in lost:
                entry["health"] = "lost"
            agents.append(entry)

        def mean(key):
            vals = [r.extra[key] for r in results]
            return float(np.mean(vals)) if vals else math.nan

        return {"reward": mean("reward"), "mean_delay": mean("mean_delay"),
                "queue": mean("queue"), "agents": agents}  # fmt: skip


def agents_status(record: dict) -> list[dict]:
    """Per agent group: ``{"agent", "district", "last_reward", "episodes", "health"}``
    (health ``"ok"`` or ``"lost"`` when its worker was lost and retries ran out)."""
    return [dict(a) for a in record.get("agents", [])]


def episode_seed(base: int, rnd: int, episode: int) -> int:
    """The demand seed of one training episode: a pure function of the client's demand
    seed, the round and the episode (held-out evaluation seeds are chosen apart)."""
    return int(np.random.SeedSequence([int(base), rnd, episode]).generate_state(1)[0] >> 1)


# ---------------------------------------------------------------- worker side


def train_rl_client(
    fm: FlatModel,
    data: RLClients,
    job: ClientJob,
    global_params: torch.Tensor,
    *,
    rnd: int,
    seed: int,
    mu: float = 0.0,
) -> ClientResult:
    """One client's round: episodes on its own simulator, TD3 updates, its new weights."""
    if "c" in job.extra:
        raise ValueError("SCAFFOLD's control variates are not supported for RL clients")
    client = data.clients[job.cid]
    fm.set(global_params)
    cs = client_seed(seed, rnd, job.cid)
    agent = GraphTD3(fm.model, data.td3, seed=cs, proximal_mu=mu)
    buffer = ReplayBuffer(data.capacity, seed=cs ^ 0x5EED)
    cfg = data.td3
    env = data.make_env(client.env)
    returns, delays, queues, losses = [], [], [], []
    transitions = 0
    try:
        mask = None
        if client.agents is not None:
            mask = np.zeros(env.num_agents, dtype=bool)
            mask[list(client.agents)] = True
        base = int(getattr(client.env, "seed", 0))
        for ep in range(job.epochs):
            obs = env.reset(seed=episode_seed(base, rnd, ep))
            done, ep_return, steps, ep_queue, info = False, 0.0, 0, 0.0, {}
            while not done:
                action = agent.act(obs, explore=True)
                if mask is not None:  # the other districts follow the global policy
                    action[~mask] = agent.act(obs, explore=False)[~mask]
                nxt, reward, done, info = env.step(action)
                # episodes end on a time limit, not in a terminal state: bootstrap (d = 0)
                buffer.add(obs, action, reward, nxt, False, mask)
                r = np.asarray(reward, dtype=np.float64)
                ep_return += float(r[mask].mean() if mask is not None else r.mean())
                ep_queue += float(info.get("queue", math.nan))
                steps += 1
                obs = nxt
            transitions += steps
            returns.append(ep_return)
            delays.append(float(info.get("mean_delay", math.nan)))
            queues.append(ep_queue / max(steps, 1))
            for _ in range(cfg.updates_per_step * steps):
                losses.append(agent.update(buffer.sample(cfg.batch_size))["critic_loss"])
    finally:
        env.close()
    return ClientResult(
        cid=job.cid,
        params=fm.get(),
        num_examples=transitions,
        train_loss=float(np.mean(losses)) if losses else math.nan,
        epochs=job.epochs,
        steps=agent.updates,
        extra={
            "reward": float(np.mean(returns)),
            "mean_delay": float(np.mean(delays)),
            "queue": float(np.mean(queues)),
        },  # fmt: skip
    )


# ---------------------------------------------------------------- policies


class GraphPolicy:
    """A trained actor as a signal controller: ``act(obs, env) -> [N, action_dim]``."""

    def __init__(self, model: GraphActorCritic, history: list[dict] | None = None) -> None:
        self.model = model.eval()
        self.history = history or []

    @torch.no_grad()
    def act(self, obs, env=None) -> np.ndarray:
        ea = getattr(obs, "edge_attr", None)
        # one thread: a few dozen nodes gain nothing from more, and on a busy machine a
        # multi-threaded region stalls on a descheduled thread (see training.torch_threads)
        with torch_threads(1):
            a = self.model.actor(obs.x.float(), obs.edge_index, None if ea is None else ea.float())
        return a.numpy().astype(np.float32)


class DistrictPolicy:
    """Independent learners: each district's intersections follow their own actor."""

    def __init__(self, policies: Sequence[GraphPolicy], districts: Sequence[Sequence[int]]):
        self.policies = list(policies)
        self.districts = [list(d) for d in districts]
        self.history = [p.history for p in self.policies]

    def act(self, obs, env=None) -> np.ndarray:
        out = None
        for policy, nodes in zip(self.policies, self.districts, strict=True):
            a = policy.act(obs, env)
            if out is None:
                out = np.zeros_like(a)
            out[nodes] = a[nodes]
        return out


# ---------------------------------------------------------------- building runs


def env_dims(env_factory: Callable | None, config) -> tuple[int, int, int]:
    """``(node_dim, edge_dim, action_dim)`` of an environment."""
    probe = RLClients([], env_factory=env_factory).make_env(config)
    try:
        return int(probe.node_dim), int(probe.edge_dim), int(probe.action_dim)
    finally:
        probe.close()


def make_clients(config, clients, env_factory: Callable | None = None) -> list[RLClient]:
    """``clients`` as agent groups: an int ``k`` (``k`` districts of ``config``'s network),
    a list of environment configs (whole networks), or a list of :class:`RLClient`."""
    if isinstance(clients, int):
        if clients < 1:
            raise ValueError("clients must be >= 1")
        from .traffic import districts

        groups = districts(config, clients)
        return [RLClient(config, list(g), d) for d, g in enumerate(groups)]
    out = []
    for i, c in enumerate(clients):
        out.append(c if isinstance(c, RLClient) else RLClient(c, None, i))
    if not out:
        raise ValueError("at least one client is needed")
    return out


def build_experiment(
    config,
    clients,
    rounds: int,
    *,
    strategy=None,
    td3: TD3Config | None = None,
    episodes_per_round: int = 2,
    seed: int = 0,
    env_factory: Callable | None = None,
    clients_per_round: int | None = None,
    max_retries: int = 3,
):
    """A :class:`fedhub.fl.Experiment` that trains graph-TD3 agent groups."""
    from ..experiment import Experiment
    from ..strategies import SCAFFOLD

    if isinstance(strategy, SCAFFOLD):
        raise ValueError("SCAFFOLD's control variates are not supported for RL clients")
    td3 = td3 or TD3Config()
    groups = make_clients(config, clients, env_factory)
    node_dim, edge_dim, action_dim = env_dims(env_factory, groups[0].env)
    model = functools.partial(GraphActorCritic, node_dim, edge_dim, action_dim, td3.hidden)
    data = RLClients(groups, td3=td3, env_factory=env_factory)
    return Experiment(
        model=model,
        data=data,
        strategy=strategy,
        rounds=rounds,
        clients_per_round=clients_per_round or len(groups),
        local_epochs=episodes_per_round,
        batch_size=td3.batch_size,
        lr=td3.lr_critic,
        seed=seed,
        max_retries=max_retries,
    )


def policy_of(result, experiment) -> GraphPolicy:
    model = experiment.initial_model()
    model.load_state_dict(result.state_dict)
    return GraphPolicy(model, result.history)


def train_federated(config, clients, rounds: int, *, client=None, cluster_kwargs=None,
                    progress=None, checkpoint_dir=None, callback=None,
                    **build_kwargs) -> GraphPolicy:  # fmt: skip
    """Federated graph-TD3: returns the global actor as a policy (``.history`` holds the
    round records)."""
    exp = build_experiment(config, clients, rounds, **build_kwargs)
    result = exp.run(client=client, cluster_kwargs=cluster_kwargs, progress=progress,
                     checkpoint_dir=checkpoint_dir, callback=callback)  # fmt: skip
    return policy_of(result, exp)


def train_independent(config, clients, rounds: int, *, client=None, cluster_kwargs=None,
                      progress=None, **build_kwargs) -> DistrictPolicy | list[GraphPolicy]:  # fmt: skip
    """Independent graph-TD3: each agent group trains alone (the same rounds, episodes and
    updates as federated, no aggregation). District groups give a :class:`DistrictPolicy`
    for the whole network; whole-network groups give one policy each."""
    from ..runtime import dask_client

    groups = make_clients(config, clients, build_kwargs.get("env_factory"))
    policies = []
    base_seed = build_kwargs.pop("seed", 0)
    with dask_client(client, None, cluster_kwargs) as dc:
        for i, group in enumerate(groups):
            # each group its own exploration, as if it were client i of one run
            seed = client_seed(base_seed, 0, i)
            exp = build_experiment(config, [group], rounds, seed=seed, **build_kwargs)
            policies.append(policy_of(exp.run(client=dc, progress=progress), exp))
    if all(g.agents is not None for g in groups):
        return DistrictPolicy(policies, [g.agents for g in groups])
    return policies
