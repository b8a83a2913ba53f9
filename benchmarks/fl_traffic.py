"""Benchmark: traffic-signal control on a SUMO grid, federated graph-TD3 vs baselines (#16).

A 4x4 grid (``fedhub.fl.rl.traffic``), every episode with a demand shift (the main flow
turns from one axis to the other at a seeded time) and one incident (a seeded road blocked
for a seeded while, dropped from the observation graph). Policies, all scored by
``fedhub.fl.rl.baselines.evaluate`` on the same held-out demand seeds (never used in
training), by the mean time loss per vehicle:

* **fixed-time**: SUMO's default programme (equal greens, one cycle per decision);
* **max-pressure**: each cycle the green goes to the phase with the largest pressure;
* **federated graph-TD3**: the network split into ``--clients`` districts (connected
  blocks), one agent group each; every round each group runs its own simulator on a Dask
  worker, explores for its own intersections and trains the shared GNN actor/critics;
  FedAvg aggregates (``fedhub.fl.rl.federated.train_federated``);
* **independent graph-TD3**: the same districts, rounds, episodes and updates, each group
  training alone, each district driven by its own actor (``train_independent``).

Run: ``.venv/bin/python benchmarks/fl_traffic.py`` (``--quick``: 3 rounds, 2 seeds, to
check the plumbing; ``--baselines-only``: no training).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

HELD_OUT = 1_000_000  # evaluation seeds start here; training seeds come from SeedSequence


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--demand", type=float, default=0.6, help="vehicles/s entering the grid")
    ap.add_argument("--episode-seconds", type=int, default=900)
    ap.add_argument("--clients", type=int, default=4, help="districts (agent groups)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--episodes-per-round", type=int, default=2)
    ap.add_argument("--updates-per-step", type=int, default=1)
    ap.add_argument("--eval-seeds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--baselines-only", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.eval_seeds = 3, 2

    import torch

    from fedhub.fl.rl.baselines import FixedTime, MaxPressure, evaluate
    from fedhub.fl.rl.traffic import TrafficConfig

    torch.set_num_threads(1)
    config = TrafficConfig(
        grid=args.grid, demand=args.demand, episode_seconds=args.episode_seconds,
        demand_shift=True, incident=True, seed=args.seed,
    )  # fmt: skip
    seeds = list(range(HELD_OUT, HELD_OUT + args.eval_seeds))
    print(f"config: {config}")
    print(f"held-out seeds: {seeds}")

    rows: dict[str, dict] = {}

    def score(name: str, policy, train_seconds: float | None = None) -> None:
        t = time.perf_counter()
        result = evaluate(policy, config, seeds)
        delays = [e["mean_delay"] for e in result["episodes"]]
        rows[name] = {**result, "std": float(np.std(delays)), "train_s": train_seconds}
        print(f"{name:24s} mean delay {result['mean_delay']:6.1f} s (per seed "
              f"{', '.join(f'{d:.1f}' for d in delays)}), mean queue "
              f"{result['mean_queue']:.1f}  [eval {time.perf_counter() - t:.1f} s]")  # fmt: skip

    score("fixed-time", FixedTime())
    score("max-pressure", MaxPressure())

    if not args.baselines_only:
        from distributed import Client, LocalCluster

        from fedhub.fl.rl.federated import train_federated, train_independent
        from fedhub.fl.rl.td3 import TD3Config

        td3 = TD3Config(updates_per_step=args.updates_per_step)
        kwargs = {"episodes_per_round": args.episodes_per_round, "seed": args.seed, "td3": td3}
        cluster = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
                   "host": "127.0.0.1", "dashboard_address": None, "memory_limit": "2GiB"}  # fmt: skip
        with LocalCluster(**cluster) as lc, Client(lc) as client:
            t = time.perf_counter()
            federated = train_federated(config, args.clients, args.rounds, client=client, **kwargs)
            train_s = time.perf_counter() - t
            curve = [round(r.get("mean_delay", float("nan")), 1) for r in federated.history]
            print(f"federated training {train_s:.0f} s; training-episode delay by round: {curve}")
            score("federated graph-TD3", federated, train_s)

            t = time.perf_counter()
            independent = train_independent(
                config, args.clients, args.rounds, client=client, **kwargs
            )
            train_s = time.perf_counter() - t
            print(f"independent training {train_s:.0f} s")
            score("independent graph-TD3", independent, train_s)

    base = rows["fixed-time"]["mean_delay"]
    print()
    print(
        "| policy | mean delay (s) | std over seeds | mean queue (veh) | delay reduction vs fixed-time | training |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        change = (base - r["mean_delay"]) / base
        train = "—" if r["train_s"] is None else f"{r['train_s']:.0f} s"
        print(f"| {name} | {r['mean_delay']:.1f} | {r['std']:.1f} | {r['mean_queue']:.1f} | "
              f"{change:+.1%} | {train} |")  # fmt: skip


if __name__ == "__main__":
    main()
