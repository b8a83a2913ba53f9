"""Flower side of benchmark 2; runs inside .venv-flower (see setup_flower_venv.sh).

Same workload as fl_overhead.py: FedAvg on Synthetic(1,1), E=1, B=10, lr=0.01, the same
logistic regression and a centralised evaluation every round. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

TOTAL, CPR, ROUNDS = (int(a) for a in sys.argv[1:4])
_DATA = {}


def data():
    if "d" not in _DATA:
        from fedhub import fl

        _DATA["d"] = fl.datasets.synthetic(1.0, 1.0, num_clients=TOTAL, seed=0)
    return _DATA["d"]


def make_model():
    return torch.nn.Linear(60, 10)


def get_weights(model):
    return [v.detach().numpy().copy() for v in model.state_dict().values()]


def set_weights(model, weights):
    model.load_state_dict(
        {k: torch.from_numpy(w) for k, w in zip(model.state_dict(), weights, strict=True)}
    )


def main():
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    class SynthClient(NumPyClient):
        def __init__(self, cid):
            c = data().clients[cid]
            self.x, self.y = torch.from_numpy(c["x"]), torch.from_numpy(c["y"])
            self.model = make_model()

        def fit(self, parameters, config):
            torch.set_num_threads(1)
            set_weights(self.model, parameters)
            opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
            perm = torch.randperm(len(self.y))
            for s in range(0, len(self.y), 10):
                idx = perm[s : s + 10]
                opt.zero_grad()
                F.cross_entropy(self.model(self.x[idx]), self.y[idx]).backward()
                opt.step()
            return get_weights(self.model), len(self.y), {}

    def client_fn(context: Context):
        return SynthClient(int(context.node_config["partition-id"])).to_client()

    stamps = []
    test_x = torch.from_numpy(data().test["x"])
    test_y = torch.from_numpy(data().test["y"])
    eval_model = make_model()

    def evaluate_fn(server_round, parameters, config):
        set_weights(eval_model, parameters)
        with torch.no_grad():
            out = eval_model(test_x)
            loss = float(F.cross_entropy(out, test_y))
            acc = float((out.argmax(1) == test_y).float().mean())
        stamps.append(time.perf_counter())
        return loss, {"accuracy": acc}

    def server_fn(context: Context):
        strategy = FedAvg(
            fraction_fit=CPR / TOTAL,
            min_fit_clients=CPR,
            fraction_evaluate=0.0,
            min_available_clients=TOTAL,
            evaluate_fn=evaluate_fn,
            initial_parameters=ndarrays_to_parameters(get_weights(make_model())),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=ROUNDS))

    t0 = time.perf_counter()
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=TOTAL,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    wall = time.perf_counter() - t0
    per_round = list(np.diff(stamps))
    print(
        "FLOWER_RESULT "
        + json.dumps({"startup_s": stamps[0] - t0, "per_round": per_round, "wall_s": wall})
    )


if __name__ == "__main__":
    main()
