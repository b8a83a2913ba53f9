"""Benchmark: federated GNNs on one partitioned graph (issue #16, part 1).

One community-structured graph (``fedhub.fl.graphs.community_graph``, 20,000 nodes by
default) is split over 10 clients by METIS (and, for the edge-cut report, by Louvain and
at random). Each client holds few labelled nodes (``--train-fraction``, 10 %), so a client
alone has too few labels; METIS keeps communities together, so the clients' label mixes
differ. Every method is scored on the same test nodes:

* **local only**: each client trains GraphSAGE on its own subgraph and is scored on its
  own test nodes (pooled over clients), ``rounds x local epochs`` full-batch steps;
* **federated**: FedAvg over the clients' subgraphs (``fl.Experiment`` on a 2-worker
  LocalCluster), cut edges lost; scored on each client's subgraph;
* **federated + neighbour features**: the same, with FedGCN's one-time aggregate of the
  missing neighbours' features appended (docs/fl.md, "Graphs");
* **centralised**: one GraphSAGE on the whole graph, the same number of steps;
* the two federated runs again on a random-node partition, where ~90 % of the edges are
  cut, to show what the neighbour features recover when much is missing.

``--quick`` runs 5,000 nodes and fewer rounds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--local-epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--train-fraction", type=float, default=0.1)
    ap.add_argument("--partitioner", default="metis")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.rounds = 5_000, 20

    import torch
    from distributed import Client, LocalCluster

    from fedhub import fl
    from fedhub.fl import graphs

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    graph = graphs.community_graph(num_nodes=args.nodes, seed=args.seed)
    n, classes = len(graph["y"]), int(graph["y"].max()) + 1
    print(f"graph: {n} nodes, {graph['edge_index'].shape[1] // 2} edges, {classes} classes"
          f" ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
    owners = {}
    for name in ("metis", "louvain", "random"):
        t = time.perf_counter()
        owners[name] = graphs.get(name).assign(graph["edge_index"], n, args.clients, args.seed)
        cut = graphs.edge_cut(graph["edge_index"], owners[name])
        sizes = np.bincount(owners[name], minlength=args.clients)
        print(f"  {name:8s} edges cut {cut.cut:6d} / {cut.total} ({cut.fraction:.1%}),"
              f" client sizes {sizes.min()}-{sizes.max()} ({time.perf_counter() - t:.1f} s)")  # fmt: skip
    owner = owners[args.partitioner]
    train, test = graphs.node_split(graph["y"], args.train_fraction, 0.3, args.seed)
    steps = args.rounds * args.local_epochs

    def sage(in_features):
        return fl.models.factory("sage", in_features=in_features, num_classes=classes,
                                 hidden=args.hidden)  # fmt: skip

    rows = {}
    t = time.perf_counter()
    plain = graphs.split(graph, owner, args.clients, train, test)
    rows["local only"] = graphs.local_only(
        sage(graph["x"].shape[1]), plain, steps, args.lr, args.seed
    )[0]
    print(f"local only {rows['local only']:.3f} ({time.perf_counter() - t:.0f} s)")
    t = time.perf_counter()
    whole = graphs.whole_graph_client(graph, train, test)
    c, total, _ = graphs.train_alone(sage(graph["x"].shape[1]), whole, steps, args.lr, args.seed)
    rows["centralised"] = c / total
    print(f"centralised {rows['centralised']:.3f} ({time.perf_counter() - t:.0f} s)")

    kwargs = {"n_workers": 2, "threads_per_worker": 1, "processes": True,
              "host": "127.0.0.1", "dashboard_address": ":0"}  # fmt: skip
    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        runs = [("federated", owner, False), ("federated + neighbour features", owner, True),
                ("federated, random partition", owners["random"], False),
                ("  + neighbour features", owners["random"], True)]  # fmt: skip
        for label, who, extra in runs:
            t = time.perf_counter()
            clients = graphs.split(graph, who, args.clients, train, test, extra)
            data = fl.FederatedData(clients, None, clients[0]["x"].shape[1], classes, "graph",
                                    "community_graph")  # fmt: skip
            exp = fl.Experiment(model=sage(data.num_features), data=data, rounds=args.rounds,
                                clients_per_round=args.clients,
                                local_epochs=args.local_epochs, lr=args.lr, seed=args.seed)  # fmt: skip
            rows[label] = exp.run(client=client, progress=None).final_accuracy
            print(f"{label} {rows[label]:.3f} ({time.perf_counter() - t:.0f} s)")

    fed, local, central = rows["federated"], rows["local only"], rows["centralised"]
    print()
    print(f"{n} nodes, {args.clients} clients ({args.partitioner}), GraphSAGE hidden"
          f" {args.hidden}, {args.rounds} rounds x {args.local_epochs} local epochs, lr"
          f" {args.lr}, train fraction {args.train_fraction}, seed {args.seed}")  # fmt: skip
    print(f"{'method':34s} {'test accuracy':>13s}")
    for label, acc in rows.items():
        print(f"{label:34s} {acc:13.3f}")
    print(f"federated - local only: {100 * (fed - local):+.1f} points (target >= +5)")
    print(f"centralised - federated: {100 * (central - fed):+.1f} points (target <= 5)")
    gain = rows["federated + neighbour features"] - fed
    print(f"neighbour features' gain ({args.partitioner}): {100 * gain:+.1f} points")
    gain = rows["  + neighbour features"] - rows["federated, random partition"]
    print(f"neighbour features' gain (random partition): {100 * gain:+.1f} points")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
