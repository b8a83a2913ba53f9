"""Benchmark 4: the FedProx paper's straggler experiment on Synthetic(1,1).

30 clients, 10 per round, E=20, B=10, lr=0.01, 90 % stragglers, 200 rounds (Li et al. 2020,
Figure 1): FedAvg dropping stragglers vs FedProx mu=0 (partial work) vs FedProx mu=1.
The paper's ordering in final test accuracy: mu=1 >= mu=0 partial > FedAvg drop.
``--quick`` runs 50 rounds with one seed.
"""

from __future__ import annotations

import statistics
import time

from fl_common import command_line, save, shared_cluster

from fedhub import fl

CONFIGS = {
    "FedAvg (drop stragglers)": (fl.strategies.FedAvg, {}, "drop"),
    "FedProx mu=0 (partial work)": (fl.strategies.FedProx, {"mu": 0.0}, "partial"),
    "FedProx mu=1 (partial work)": (fl.strategies.FedProx, {"mu": 1.0}, "partial"),
}


def main(quick: bool = False) -> dict:
    rounds = 50 if quick else 200
    seeds = [0] if quick else [0, 1, 2]
    out = {"rounds": rounds, "seeds": seeds, "results": {}}
    print(f"== FedProx reproduction: Synthetic(1,1), 90% stragglers, {rounds} rounds")
    with shared_cluster() as client:
        for name, (cls, kw, policy) in CONFIGS.items():
            accs, losses = [], []
            t0 = time.perf_counter()
            for seed in seeds:
                data = fl.datasets.synthetic(1.0, 1.0, num_clients=30, seed=seed)
                exp = fl.Experiment(
                    model=lambda: fl.models.LogisticRegression(60, 10),
                    data=data, strategy=cls(**kw), rounds=rounds, clients_per_round=10,
                    local_epochs=20, batch_size=10, lr=0.01,
                    stragglers=fl.Stragglers(fraction=0.9, policy=policy), seed=seed,
                )  # fmt: skip
                r = exp.run(client=client, progress=None)
                accs.append(r.final_accuracy)
                losses.append(r.history[-1]["train_loss"])
            out["results"][name] = {"final_accuracy": accs, "final_train_loss": losses}
            print(
                f"{name:<30} test accuracy {statistics.fmean(accs):.3f} "
                f"(per seed {', '.join(f'{a:.3f}' for a in accs)}) "
                f"[{time.perf_counter() - t0:.0f} s]"
            )
    means = [statistics.fmean(v["final_accuracy"]) for v in out["results"].values()]
    out["paper_ordering_holds"] = means[2] >= means[1] > means[0]
    print(f"paper ordering mu=1 >= mu=0 partial > FedAvg drop: {out['paper_ordering_holds']}")
    save("fl_fedprox", out)
    return out


if __name__ == "__main__":
    command_line(main, __doc__)
