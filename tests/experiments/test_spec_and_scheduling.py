"""Spec validation and the admission policy, without a hub."""

import pytest

from fedhub.errors import InvalidRequest
from fedhub.services.experiments.scheduler import ExperimentScheduler
from fedhub.services.experiments.spec import parse_spec


@pytest.mark.parametrize(
    "body, field",
    [
        ({"rounds": 0}, "rounds"),
        ({"lr": -1}, "lr"),
        ({"clients": 5, "clients_per_round": 6}, "clients_per_round"),
        ({"strategy": "fedmagic"}, "strategy"),
        ({"dataset": "cora"}, "dataset"),
        ({"model": "resnet"}, "model"),
        ({"rounds": "many"}, "rounds"),
        ({"colour": "blue"}, "colour"),
        ({"strategy": "fedprox", "strategy_params": {"nu": 1}}, "strategy_params"),
        ({"dataset_params": {"num_clients": 3}}, "num_clients"),
        ({"dataset": "synthetic", "partition": "dirichlet"}, "partition"),
        ({"dataset": "digits", "partition": "zipf"}, "partition"),
    ],
)
def test_invalid_spec_names_the_field(body, field):
    with pytest.raises(InvalidRequest) as err:
        parse_spec(body)
    assert field in err.value.message


def test_partition_accepted_where_the_dataset_takes_one():
    spec = parse_spec({"dataset": "digits", "partition": "dirichlet", "clients": 5})
    assert spec.partition == "dirichlet"


def test_defaults_and_body_shape():
    spec = parse_spec({"clients": 4})
    assert spec.clients_per_round == 4 and spec.strategy == "fedavg"
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_spec([1, 2])


def test_admission_is_round_robin_with_a_per_tenant_cap():
    s = ExperimentScheduler("sqlite://", lambda t: "free", max_running=3, max_running_per_tenant=2)
    queued = [("a1", "acme"), ("a2", "acme"), ("a3", "acme"), ("g1", "globex"), ("i1", "initech")]
    started = []
    for _ in range(3):
        pick = s.pick(queued)
        queued.remove(pick)
        s._running[pick[0]] = pick[1]
        s._served[pick[1]] = len(started)
        started.append(pick[0])
    # one per tenant before anyone gets a second slot, oldest first within a tenant
    assert started == ["a1", "g1", "i1"]
    assert s.pick(queued) is None  # all three slots taken
    del s._running["g1"]
    assert s.pick(queued) == ("a2", "acme")  # only acme has work left
    s._running["a2"] = "acme"
    del s._running["i1"]
    assert s.pick(queued) is None  # acme is at its cap of two


@pytest.mark.parametrize(
    "body, model_cls",
    [
        ({"dataset": "synthetic", "clients": 4}, "LogisticRegression"),
        ({"dataset": "digits", "partition": "dirichlet", "clients": 4, "model": "cnn"}, "CNN"),
        ({"dataset": "digits", "clients": 4, "model": "mlp", "model_params": {"hidden": 8}}, "MLP"),
    ],
)
def test_spec_builds_the_engine_experiment(body, model_cls):
    from fedhub.services.experiments.build import build_experiment

    exp = build_experiment(parse_spec({**body, "rounds": 2}))
    assert exp.data.num_clients == 4 and exp.rounds == 2
    model = exp.initial_model()
    assert type(model).__name__ == model_cls
