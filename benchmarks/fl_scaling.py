"""Benchmark 3: round time vs clients per round and vs total clients (FedAvg, E=1, B=10).

Round time should grow with the sampled clients, not with the total: client data stays on
the workers and only the sampled clients' ids travel each round.
"""

from __future__ import annotations

from fl_common import command_line, round_stats, save, shared_cluster

from fedhub import fl


def one(client, data, cpr, rounds):
    exp = fl.Experiment(
        model=lambda: fl.models.LogisticRegression(60, 10), data=data,
        rounds=rounds, clients_per_round=cpr, local_epochs=1, batch_size=10, lr=0.01,
    )  # fmt: skip
    return round_stats([h["duration_s"] for h in exp.run(client=client, progress=None).history])


def main(quick: bool = False) -> dict:
    rounds = 4 if quick else 8
    out = {"vs_clients_per_round": {}, "vs_total_clients": {}}
    print(f"== scaling ({rounds} rounds each, 2-worker LocalCluster)")
    with shared_cluster() as client:
        big = fl.datasets.synthetic(1.0, 1.0, num_clients=1000, seed=0)
        for cpr in [10, 25, 50, 100, 200]:
            st = one(client, big, cpr, rounds)
            out["vs_clients_per_round"][cpr] = st
            print(f"1000 clients, {cpr:>3}/round: {st['mean_s']:.4f} s/round")
        for total in [100, 300, 1000, 3000]:
            data = big if total == 1000 else fl.datasets.synthetic(1, 1, num_clients=total, seed=0)
            st = one(client, data, 10, rounds)
            out["vs_total_clients"][total] = st
            print(f"{total:>5} clients, 10/round: {st['mean_s']:.4f} s/round")
    save("fl_scaling", out)
    return out


if __name__ == "__main__":
    command_line(main, __doc__)
