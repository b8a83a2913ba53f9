"""Benchmark 1: fedhub.fl vs a sequential PyTorch loop, FedAvg on Synthetic(1,1).

100 clients / 10 per round and 1,000 clients / 100 per round; E=1, B=10, lr=0.01, 20
rounds. fedhub runs with its defaults (``exp.run()`` creates and closes a 2-worker
LocalCluster on this 2-core machine), so its start-up is measured too.
"""

from __future__ import annotations

import statistics
import time

from fl_common import command_line, round_stats, save, sequential_fedavg

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


def compare(data, rounds, cpr, repeats):
    """Interleave sequential and fedhub runs ``repeats`` times; keep the median of each
    side's per-round means. The machine is shared, so one run alone is noise."""
    seqs, fhs = [], []
    for _ in range(repeats):
        seqs.append(sequential_fedavg(data, rounds, cpr, 1, 10, 0.01))
        fhs.append(run_fedhub(data, rounds, cpr))
    s = statistics.median(round_stats(r["per_round"])["mean_s"] for r in seqs)
    f = statistics.median(round_stats(r["per_round"])["mean_s"] for r in fhs)
    return {
        "sequential": {"mean_s": s, "runs": seqs},
        "fedhub": {
            "mean_s": f,
            "startup_s": fhs[0]["startup_s"],
            "startup_warm_s": statistics.median(r["startup_s"] for r in fhs[1:] or fhs),
            "runs": fhs,
        },
        "ratio": f / s,
    }


def main(quick: bool = False) -> dict:
    rounds = 10 if quick else 20
    repeats = 1 if quick else 3
    out = {}
    print(f"== overhead: FedAvg Synthetic(1,1), E=1, B=10, {rounds} rounds, median of {repeats}")
    for total, cpr in SIZES:
        data = fl.datasets.synthetic(1.0, 1.0, num_clients=total, seed=0)
        row = compare(data, rounds, cpr, repeats)
        f = row["fedhub"]
        print(
            f"{total:>5} clients, {cpr:>3}/round: sequential {row['sequential']['mean_s']:.4f}"
            f" s/round | fedhub {f['mean_s']:.4f} s/round (start-up {f['startup_s']:.2f} s"
            f" first run, {f['startup_warm_s']:.2f} s later runs) | ratio {row['ratio']:.2f}x"
        )
        out[f"{total}/{cpr}"] = row
    save("fl_overhead", out)
    return out


if __name__ == "__main__":
    command_line(main, __doc__)
