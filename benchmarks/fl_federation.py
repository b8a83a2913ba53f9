"""Benchmark: a federation of three tenants against each tenant training alone (issue #18).

One task is split over acme, globex and initech with Dirichlet label skew: each member
gets its own mix of classes, and a quarter of its own rows (drawn from its own mix) is its
private test split. Each member's data is written with ``fedhub.datasets.store`` into its
own version directory and read only by the tasks of that member's executor (one Dask
worker per member, as a tenant's own worker). A balanced held-out set is the shared
global test, evaluated by the benchmark (not by the coordinator) on the final weights.

For each member the table compares, on that member's own test split:

* **local only**: ``fedhub.fl.federation.local_only_baseline`` (the member's data alone,
  the same rounds × local epochs, the same initial weights);
* **federated**, plain aggregation, with secure aggregation (SecAgg+), and with secure
  aggregation plus client-level DP (DP-FedAvg; ε as the accountant reports it).

The defaults (mnist5k, alpha 2, at most 400 rows per member, 30 rounds, seeds 0-2) are
data-scarce silos with moderate label skew. With stronger skew or more rows per member a
member's local model, tested on its own skewed mix, often matches or beats the one
global model (``--alpha 0.5 --max-rows 0``): docs/benchmarks.md gives both.
``--quick`` runs 10 rounds and one seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np
from fl_common import save

from fedhub import fl
from fedhub.datasets.store import DatasetStore, Schema
from fedhub.fl import federation as fed

TENANTS = ("acme", "globex", "initech")


class WorkerExecutor:
    """A member's executor: its tasks on its own worker only (as TenantExecutor does)."""

    def __init__(self, client, worker: str) -> None:
        self.client, self.worker = client, worker

    def submit(self, fn, *args, **kwargs):
        kwargs.update(workers=[self.worker], allow_other_workers=False, pure=False)
        return self.client.submit(fn, *args, **kwargs)


def member_data(task: str, alpha: float, seed: int, max_rows: int | None = None):
    """Per-member (x, y, split) with Dirichlet label skew, and the shared global test."""
    data = fl.datasets.get(
        task, num_clients=len(TENANTS), test_fraction=0.2, seed=seed,
        partition=fl.partition.get("dirichlet", alpha=alpha, min_size=50),
    )  # fmt: skip
    members = []
    for i, c in enumerate(data.clients):
        rng = np.random.default_rng([seed, 11, i])
        if max_rows is not None and len(c["y"]) > max_rows:
            keep = np.sort(rng.choice(len(c["y"]), size=max_rows, replace=False))
            c = {"x": c["x"][keep], "y": c["y"][keep]}
        split = (rng.random(len(c["y"])) < 0.25).astype(np.uint8)
        members.append((c["x"], c["y"], split))
    return members, data.test, data.num_features, data.num_classes


def global_accuracy(plan: fed.FederationPlan, weights: np.ndarray, test: dict) -> float:
    from fedhub.fl.training import FlatModel, evaluate

    fm = FlatModel(fl.models.get(plan.model, **plan.model_params))
    fm.set(weights)
    return evaluate(fm, test)[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="10 rounds, one seed")
    p.add_argument("--task", default="mnist5k", choices=["digits", "mnist5k"])
    p.add_argument("--alpha", type=float, default=2.0, help="Dirichlet label-skew concentration")
    p.add_argument("--max-rows", type=int, default=400, help="rows per member at most (0: all)")
    p.add_argument("--rounds", type=int, default=None, help="default 30 (--quick: 10)")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick: 0)")
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument(
        "--noise-multipliers", default="0.05,1.0", help="DP noise z, one run each (comma-separated)"
    )
    p.add_argument("--clip-norm", type=float, default=1.0, help="DP clip norm C")
    p.add_argument("--plain-only", action="store_true", help="skip the SecAgg+ and DP runs")
    args = p.parse_args(argv)
    rounds = args.rounds or (10 if args.quick else 30)
    seeds = [int(x) for x in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    dp = [{"noise_multiplier": float(z), "clip_norm": args.clip_norm, "delta": 1e-5,
           "epsilon_budget": 1e9} for z in args.noise_multipliers.split(",")]  # fmt: skip
    out: dict = {"command": " ".join(sys.argv), "task": args.task, "alpha": args.alpha,
                 "max_rows": args.max_rows, "rounds": rounds, "dp": dp, "seeds": {}}  # fmt: skip
    print(f"== Federation of {', '.join(TENANTS)} on {args.task}: Dirichlet alpha={args.alpha}, "
          f"<= {args.max_rows or 'all'} rows per member, {rounds} rounds, seeds {seeds}")  # fmt: skip
    from distributed import Client, LocalCluster

    from fedhub.fl.runtime import local_cluster_kwargs

    with (
        LocalCluster(**local_cluster_kwargs(len(TENANTS))) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        for seed in seeds:
            out["seeds"][seed] = one_seed(client, args, rounds, seed, dp)
            _print_table(out["seeds"][seed])
    _print_summary(out)
    save("fl_federation", out)
    return out


def one_seed(client, args, rounds: int, seed: int, dp: list[dict]) -> dict:
    parts, global_test, n_features, n_classes = member_data(
        args.task, args.alpha, seed, args.max_rows or None
    )
    base = {
        "model": "mlp",
        "model_params": {"in_features": n_features, "num_classes": n_classes, "hidden": 64},
        "rounds": rounds, "local_epochs": args.local_epochs, "batch_size": 32, "lr": args.lr,
        "seed": seed,
    }  # fmt: skip
    settings = {
        "plain": fed.FederationPlan(**base, secure_aggregation=False),
        "SecAgg+": fed.FederationPlan(**base, secure_aggregation=True),
    }
    for d in dp:
        name = f"+ DP z={d['noise_multiplier']:g}"
        settings[name] = fed.FederationPlan(**base, secure_aggregation=True, dp=d)
    if args.plain_only:
        settings = {"plain": settings["plain"]}
    out: dict = {"seed": seed, "members": {}, "settings": {}}
    print(f"-- seed {seed}")
    with tempfile.TemporaryDirectory() as root:
        store = DatasetStore(root)
        schema = Schema(
            [{"name": f"x{i}", "dtype": "float32"} for i in range(n_features)],
            {"name": "label", "num_classes": n_classes},
        )
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        members = []
        for i, (tenant, (x, y, split)) in enumerate(zip(TENANTS, parts, strict=True)):
            manifest = store.write(tenant, args.task, {"x": x, "y": y, "split": split}, schema)
            folder = store.version_dir(tenant, args.task, manifest["version"])
            executor = WorkerExecutor(client, workers[i % len(workers)])
            members.append(fed.FederationMember(i, tenant, executor, str(folder)))
            counts = np.bincount(y[split == 0], minlength=n_classes).tolist()
            info = {"train": int((split == 0).sum()), "test": int((split == 1).sum()),
                    "train_labels": counts}  # fmt: skip
            out["members"][tenant] = info
            print(f"   {tenant:<8} {info['train']:>5} train rows, {info['test']:>4} test rows, "
                  f"train labels {counts}")  # fmt: skip
        t0 = time.perf_counter()
        out["local_only"] = {
            m.tenant: fed.local_only_baseline(settings["plain"], m) for m in members
        }
        print(f"   local-only baselines: {time.perf_counter() - t0:.1f} s")
        for name, plan in settings.items():
            t0 = time.perf_counter()
            result = fed.run_federation(plan, members, keep_received=False)
            wall = time.perf_counter() - t0
            last = result.rounds[-1]
            out["settings"][name] = {
                "per_member": {t: last["per_member"][t]["accuracy"] for t in TENANTS},
                "aggregate_accuracy": last["aggregate"]["accuracy"],
                "global_test_accuracy": global_accuracy(plan, result.weights, global_test),
                "epsilon": last["epsilon"],
                "wall_s": wall,
                "round_s_median": statistics.median(r["duration_s"] for r in result.rounds),
                "rounds_run": len(result.rounds),
            }
            print(f"   federated, {name}: {wall:.1f} s, median round "
                  f"{out['settings'][name]['round_s_median'] * 1000:.0f} ms")  # fmt: skip
    return out


def _print_table(out: dict) -> None:
    names = list(out["settings"])
    print(f"   {'own test split':<16}{'local only':>11}" + "".join(f"{n:>20}" for n in names))
    margins: dict[str, list[float]] = {n: [] for n in names}
    for t in TENANTS:
        loc = out["local_only"][t]["accuracy"]
        row = f"   {t:<16}{loc:>11.3f}"
        for n in names:
            acc = out["settings"][n]["per_member"][t]
            margins[n].append(acc - loc)
            row += f"{acc:>11.3f} ({acc - loc:+.3f})"
        print(row)
    print(f"   {'global test':<16}{'':>11}" + "".join(
        f"{out['settings'][n]['global_test_accuracy']:>11.3f}{'':>9}" for n in names
    ))  # fmt: skip
    for n in names:
        s = out["settings"][n]
        s["min_margin"] = min(margins[n])
        s["beats_every_local"] = all(m > 0 for m in margins[n])


def _print_summary(out: dict) -> None:
    print("== Summary: does the federated model beat every member's local-only model on that "
          "member's own test split?")  # fmt: skip
    names = list(next(iter(out["seeds"].values()))["settings"])
    for n in names:
        runs = [o["settings"][n] for o in out["seeds"].values()]
        eps = runs[0]["epsilon"]
        margins = ", ".join(f"{r['min_margin']:+.3f}" for r in runs)
        print(
            f"   {n:<14} seeds where it does: {sum(r['beats_every_local'] for r in runs)}/"
            f"{len(runs)}; smallest margin per seed "
            f"{margins}; global test "
            f"{statistics.fmean(r['global_test_accuracy'] for r in runs):.3f}"
            + (f"; epsilon {eps:.1f} at delta 1e-5" if eps is not None else "")
        )


if __name__ == "__main__":
    main()
