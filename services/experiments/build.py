"""Turn a validated spec into the engine's objects (``fedhub.fl``).

Kept apart from the scheduler so that the mapping (defaults for the model's input and
output sizes, where the partitioner goes) can be read and tested on its own.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from .spec import DEFAULT_MODEL, ExperimentSpec, is_tenant_dataset

#: building an RL experiment sizes its network in the service's process (netgenerate into
#: a cache shared by the process, then sumolib reads it): one build at a time, as the runs'
#: threads share the process
_SIMULATOR = threading.Lock()


def build_experiment(spec: ExperimentSpec, data=None, strategy=None):
    """An ``fl.Experiment`` for ``spec`` (imports torch: call it in the runner only).

    ``data``: the run's data when the service made it (a tenant dataset,
    :func:`tenant_data`), else the bundled dataset the spec names. ``strategy``: the run's
    strategy when the service made it (a marketplace algorithm's
    :class:`~fedhub.fl.market.RemoteStrategy`), else the engine's strategy the spec names.
    """
    from fedhub import fl

    if spec.algorithm == "graph_td3":
        return build_rl_experiment(spec)
    if data is None:
        params = dict(spec.dataset_params)
        if spec.partition:
            params["partition"] = {"name": spec.partition, **spec.partition_params}
        data = fl.datasets.get(spec.dataset, num_clients=spec.clients, seed=spec.seed, **params)
    model_name = spec.model or DEFAULT_MODEL.get(spec.dataset.lower(), "logistic_regression")
    model_params = dict(spec.model_params)
    if model_name.lower() == "cnn":
        model_params.setdefault("side", int(math.isqrt(data.num_features)))
    else:
        model_params.setdefault("in_features", data.num_features)
    model_params.setdefault("num_classes", data.num_classes)
    return fl.Experiment(
        model=fl.models.factory(model_name, **model_params),
        data=data,
        strategy=strategy
        if strategy is not None
        else fl.strategies.get(spec.strategy, **spec.strategy_params),
        rounds=spec.rounds,
        clients_per_round=spec.clients_per_round,
        local_epochs=spec.local_epochs,
        batch_size=spec.batch_size,
        lr=spec.lr,
        stragglers=fl.Stragglers(spec.stragglers, spec.straggler_policy),
        seed=spec.seed,
    )


def rl_settings(spec: ExperimentSpec) -> dict[str, Any]:
    """What a graph_td3 spec asks of the RL engine (:func:`fedhub.fl.rl.federated.
    build_experiment`): the environment's ``TrafficConfig`` fields (its seed the spec's),
    the agent groups as clients, and ``local_epochs`` as each group's episodes per round."""
    environment = spec.environment.model_dump(exclude={"name"})
    return {
        "config": {**environment, "seed": spec.seed},
        "clients": spec.agents,
        "rounds": spec.rounds,
        "clients_per_round": spec.clients_per_round,
        "episodes_per_round": spec.local_epochs,
        "seed": spec.seed,
        "strategy": (spec.strategy, dict(spec.strategy_params)),
    }


def build_rl_experiment(spec: ExperimentSpec):
    """An ``fl.Experiment`` whose clients are graph-TD3 agent groups on the spec's grid."""
    from fedhub import fl
    from fedhub.fl.rl import federated
    from fedhub.fl.rl.traffic import TrafficConfig

    settings = rl_settings(spec)
    name, params = settings["strategy"]
    with _SIMULATOR:
        return federated.build_experiment(
            TrafficConfig(**settings["config"]),
            settings["clients"],
            settings["rounds"],
            strategy=fl.strategies.get(name, **params),
            episodes_per_round=settings["episodes_per_round"],
            seed=settings["seed"],
            clients_per_round=settings["clients_per_round"],
        )


def build_run(spec: ExperimentSpec, tenant: str, executor, assets: dict[str, dict]):
    """A new run's ``fl.Experiment``: its data (a tenant dataset or a licensed marketplace
    dataset, read on ``executor``, the tenant's own workers), a marketplace strategy and
    initial weights from ``assets`` (:func:`.market_refs.start_use`'s answer)."""
    from fedhub.datasets import DatasetStore

    from . import market_refs, market_run

    data = strategy = None
    if is_tenant_dataset(spec):
        data = tenant_data(spec, tenant, executor, DatasetStore())
    elif "dataset" in assets:
        data = market_run.market_data(spec, tenant, executor, assets["dataset"], DatasetStore())
    if "strategy" in assets:
        strategy = market_refs.remote_strategy(spec, assets["strategy"], executor)
    exp = build_experiment(spec, data, strategy)
    if "init_weights" in assets:
        market_refs.warm_start(exp, assets["init_weights"], executor)
    return exp


def tenant_data(spec: ExperimentSpec, tenant: str, executor, store):
    """The spec's tenant dataset as a :class:`fedhub.fl.tenant_data.TenantData`: its path
    and schema from the store, its clients' sizes counted on the tenant's worker (the only
    place its rows are read)."""
    from fedhub.datasets import DatasetRef
    from fedhub.fl.tenant_data import sized

    ref = DatasetRef.parse(spec.dataset)
    folder, version = store.resolve(tenant, ref)
    partition = {"name": spec.partition, **spec.partition_params} if spec.partition else None
    return sized(
        executor, folder, ref=str(DatasetRef(ref.name, version)),
        schema=store.schema(tenant, ref.name, version), partition=partition,
        num_clients=spec.clients, seed=spec.seed,
    )  # fmt: skip
