"""Benchmark 1: fedhub.fl vs a sequential PyTorch loop, FedAvg on Synthetic(1,1).

100 clients / 10 per round and 1,000 clients / 100 per round; E=1, B=10, lr=0.01, 20
rounds. fedhub runs with its defaults (``exp.run()`` creates and closes a 2-worker
LocalCluster on this 2-core machine), so its start-up is measured too.
"""

from __future__ import annotations

import argparse
import time

from fl_common import round_stats, save, sequential_fedavg

from fedhub import fl

SIZES = [(100, 10), (1000, 100)]


def run_fedhub(data, rounds, cpr):
    exp = fl.Experiment(
        model=lambda: fl.models.LogisticRegression(60, 10),
        data=data,
        strategy=fl.strategies.FedAvg(),
        rounds=rounds, clients_per_round=cpr, local_epochs=1, batch_size=10, lr=0.01, seed=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    result = exp.run(progress=None)
    return {
        "per_round": [h["duration_s"] for h in result.history],
        "startup_s": result.startup_s,
        "wall_s": time.perf_counter() - t0,
        "final_accuracy": result.final_accuracy,
    }


def main(quick: bool = False) -> dict:
    rounds = 10 if quick else 20
    out = {}
    print(f"== overhead: FedAvg Synthetic(1,1), E=1, B=10, {rounds} rounds")
    for total, cpr in SIZES:
        data = fl.datasets.synthetic(1.0, 1.0, num_clients=total, seed=0)
        seq = sequential_fedavg(data, rounds, cpr, 1, 10, 0.01)
        fh = run_fedhub(data, rounds, cpr)
        s, f = round_stats(seq["per_round"]), round_stats(fh["per_round"])
        ratio = f["mean_s"] / s["mean_s"]
        print(
            f"{total:>5} clients, {cpr:>3}/round: sequential {s['mean_s']:.4f} s/round | "
            f"fedhub {f['mean_s']:.4f} s/round (start-up {fh['startup_s']:.2f} s, "
            f"wall {fh['wall_s']:.2f} s) | ratio fedhub/sequential {ratio:.2f}x"
        )
        out[f"{total}/{cpr}"] = {"sequential": seq | s, "fedhub": fh | f, "ratio": ratio}
    save("fl_overhead", out)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    main(p.parse_args().quick)
