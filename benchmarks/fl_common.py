"""Shared pieces of the FL benchmarks: the sequential PyTorch baseline and output helpers."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.nn import functional as F

RESULTS = Path(__file__).resolve().parent / "results"


def sequential_fedavg(data, rounds, clients_per_round, local_epochs, batch_size, lr, seed=0):
    """FedAvg as a plain sequential PyTorch loop in one process: the overhead baseline.

    Same work as fedhub: the same client sampling, SGD with torch.optim, weighted
    averaging, and an evaluation on the pooled test set every round.
    """
    from fedhub import fl

    planner = fl.Experiment(
        model=lambda: None, data=data, rounds=rounds, clients_per_round=clients_per_round,
        local_epochs=local_epochs, seed=seed,
    )  # fmt: skip
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = fl.models.LogisticRegression(data.num_features, data.num_classes)
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    clients = [(torch.from_numpy(c["x"]), torch.from_numpy(c["y"])) for c in data.clients]
    test_x, test_y = torch.from_numpy(data.test["x"]), torch.from_numpy(data.test["y"])
    per_round = []
    t_start = time.perf_counter()
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        # The very clients fedhub samples in this round, so both sides do the same work
        # (client sizes are heavy-tailed: a different sample is a different workload).
        chosen = [job.cid for job in planner.plan_round(rnd)]
        acc_state = {k: torch.zeros_like(v) for k, v in global_state.items()}
        total = 0
        for cid in chosen:
            x, y = clients[cid]
            model.load_state_dict(global_state)
            opt = torch.optim.SGD(model.parameters(), lr=lr)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + rnd * 1009 + int(cid))
            for _ in range(local_epochs):
                perm = torch.randperm(len(y), generator=gen)
                for s in range(0, len(y), batch_size):
                    idx = perm[s : s + batch_size]
                    opt.zero_grad()
                    F.cross_entropy(model(x[idx]), y[idx]).backward()
                    opt.step()
            for k, v in model.state_dict().items():
                acc_state[k] += v * len(y)
            total += len(y)
        global_state = {k: v / total for k, v in acc_state.items()}
        model.load_state_dict(global_state)
        with torch.no_grad():
            out = model(test_x)
            F.cross_entropy(out, test_y)
            acc = float((out.argmax(1) == test_y).float().mean())
        per_round.append(time.perf_counter() - t0)
    return {"per_round": per_round, "wall_s": time.perf_counter() - t_start, "final_accuracy": acc}


def round_stats(per_round: list[float]) -> dict:
    """Mean and median per-round time, leaving out round 1 (it warms the workers' caches)."""
    steady = per_round[1:] if len(per_round) > 1 else per_round
    return {"mean_s": statistics.fmean(steady), "median_s": statistics.median(steady)}


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    # Other work on the machine skews timings; keep the load next to the figures.
    payload = {**payload, "loadavg_at_end": os.getloadavg()}
    path.write_text(json.dumps(payload, indent=2, default=float))
    print(f"   (load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return path


@contextmanager
def shared_cluster(n_workers: int = 2) -> Iterator:
    """A LocalCluster's client for benchmarks that do not measure start-up; both are
    closed when the block ends, however it ends."""
    from distributed import Client, LocalCluster

    from fedhub.fl.runtime import local_cluster_kwargs

    with (
        LocalCluster(**local_cluster_kwargs(n_workers)) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def command_line(main: Callable[[bool], dict], doc: str | None) -> None:
    """A benchmark script's command line: ``main(quick)``, ``--quick`` for a short run."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (and seeds)")
    main(p.parse_args().quick)
