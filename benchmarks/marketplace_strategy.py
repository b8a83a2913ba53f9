"""What running a bought strategy costs: the built-in FedProx against the same FedProx as a
marketplace source, whose hooks run in a strategy host on the workers.

    .venv/bin/python benchmarks/marketplace_strategy.py
    .venv/bin/python benchmarks/marketplace_strategy.py --pairs 5 --rounds 20

On a Dask LocalCluster of 2 worker processes (as the tests make them), an FL run of
``--rounds`` rounds with 10 clients per round (synthetic data, logistic regression) is
timed with ``fl.strategies.get("fedprox")`` (the baseline: the hooks run in the runner's
process) and with ``fedhub.fl.market.RemoteStrategy`` over a source that subclasses
FedProx (each round: one task relaying ``configure_round`` and one relaying ``aggregate``
to the host over its pipes, plain data both ways). The runs alternate, ``--pairs`` times,
after one remote run that starts the hosts (reported apart). Prints each pair, the
medians, the overhead per round and the ratio, checks the two runs' weights are equal,
and writes benchmarks/results/marketplace_strategy.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedhub import fl  # noqa: E402
from fedhub.fl.market import RemoteStrategy  # noqa: E402

SOURCE = """
from fedhub.fl.registry import Param
from fedhub.fl.strategies import FedProx


class Prox(FedProx):
    params = {"mu": Param(float, min=0.0, max=10.0)}
"""
SHA = hashlib.sha256(SOURCE.encode()).hexdigest()
REF = "market/prox@1.0.0"


def experiment(strategy, rounds: int):
    data = fl.datasets.synthetic(alpha=0.5, beta=0.5, num_clients=10, seed=3)
    model = fl.models.factory("logistic_regression", in_features=60, num_classes=10)
    return fl.Experiment(model, data, strategy, rounds=rounds, clients_per_round=10, seed=5)


def timed(strategy, client, rounds: int):
    tic = time.perf_counter()
    result = experiment(strategy, rounds).run(client=client, progress=None)
    return time.perf_counter() - tic, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args(argv)

    from distributed import Client, LocalCluster

    from tests.fl.workers import cluster_kwargs

    def local():
        return fl.strategies.get("fedprox", mu=0.5)

    def remote(client):
        return RemoteStrategy(REF, SOURCE, SHA, {"mu": 0.5}, executor=client)

    pairs = []
    with LocalCluster(**cluster_kwargs(2)) as cluster, Client(cluster) as client:
        first, _ = timed(remote(client), client, args.rounds)
        print(f"first marketplace run (each worker starts its host): {first:.2f} s")
        timed(local(), client, args.rounds)  # warm the baseline's path too
        for i in range(args.pairs):
            t_local, a = timed(local(), client, args.rounds)
            t_remote, b = timed(remote(client), client, args.rounds)
            same = bool(np.array_equal(a.params, b.params))
            pairs.append({"local_s": t_local, "remote_s": t_remote, "same_weights": same})
            per_round = (t_remote - t_local) / args.rounds * 1000
            print(f"pair {i + 1}: built-in {t_local:.2f} s, marketplace {t_remote:.2f} s "
                  f"({per_round:+.0f} ms per round), same weights: {same}")  # fmt: skip
    local_s = statistics.median(p["local_s"] for p in pairs)
    remote_s = statistics.median(p["remote_s"] for p in pairs)
    out = {
        "rounds": args.rounds,
        "clients_per_round": 10,
        "workers": 2,
        "first_remote_run_s": first,
        "median_builtin_s": local_s,
        "median_marketplace_s": remote_s,
        "overhead_ms_per_round": (remote_s - local_s) / args.rounds * 1000,
        "ratio": remote_s / local_s,
        "all_same_weights": all(p["same_weights"] for p in pairs),
        "pairs": pairs,
    }
    print(f"median: built-in {local_s:.2f} s, marketplace {remote_s:.2f} s; "
          f"{out['overhead_ms_per_round']:+.0f} ms per round; ratio {out['ratio']:.2f}x")  # fmt: skip
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "marketplace_strategy.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["all_same_weights"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
