"""End-to-end runs on the session's real 2-worker LocalCluster."""

import math

import numpy as np
import pytest
import torch

from fedhub import fl

# Every test here runs on the session's real LocalCluster (tests/fl/conftest.py).
pytestmark = pytest.mark.slow

lr_model = fl.models.factory("logistic_regression", in_features=60, num_classes=10)

HISTORY_KEYS = {"round", "clients", "train_loss", "test_loss", "test_accuracy", "duration_s"}


def _run(data, dask_client, **kw):
    kw.setdefault("rounds", 3)
    exp = fl.Experiment(
        model=lr_model,
        data=data,
        clients_per_round=kw.pop("clients_per_round", 5),
        local_epochs=kw.pop("local_epochs", 2),
        batch_size=10,
        lr=0.05,
        seed=kw.pop("seed", 0),
        strategy=kw.pop("strategy", None),
        stragglers=kw.pop("stragglers", None),
        rounds=kw.pop("rounds"),
    )
    return exp.run(client=dask_client, progress=None, **kw)


def test_history_contract_and_learning(small_data, dask_client):
    result = _run(small_data, dask_client, rounds=8)
    assert len(result.history) == 8
    assert all(HISTORY_KEYS <= set(h) for h in result.history)
    assert [h["round"] for h in result.history] == list(range(1, 9))
    assert all(h["clients"] == 5 for h in result.history)
    assert result.history[-1]["test_loss"] < result.history[0]["test_loss"]
    assert result.final_accuracy == result.history[-1]["test_accuracy"] > 0.3
    assert set(result.state_dict) == {"linear.weight", "linear.bias"}
    df = result.to_dataframe()
    assert list(df["round"]) == list(range(1, 9))


@pytest.mark.parametrize("name", sorted(fl.strategies.registry.names()))
def test_every_strategy_runs_and_learns(name, dask_client):
    iid_data = fl.datasets.synthetic(num_clients=12, iid=True, seed=1)
    tuned = {"fedadagrad": {"eta": 0.01}, "fedadam": {"eta": 0.01}, "fedyogi": {"eta": 0.01}}
    strategy = fl.strategies.get(name, **tuned.get(name, {}))
    result = _run(iid_data, dask_client, strategy=strategy, rounds=5)
    losses = [h["test_loss"] for h in result.history]
    assert all(math.isfinite(x) for x in losses)
    assert min(losses) < 2.30  # below chance-level cross-entropy ln(10)


def test_custom_strategy_subclass(small_data, dask_client):
    class LargestClientWins(fl.Strategy):
        def aggregate(self, rnd, params, results):
            return max(results, key=lambda r: r.num_examples).params

    result = _run(small_data, dask_client, strategy=LargestClientWins(), rounds=2)
    assert len(result.history) == 2


def test_stragglers_drop_and_partial(small_data, dask_client):
    drop = _run(
        small_data, dask_client, clients_per_round=10, stragglers=fl.Stragglers(0.9, "drop")
    )
    assert [h["clients"] for h in drop.history] == [1, 1, 1]
    partial = _run(
        small_data, dask_client, clients_per_round=10, stragglers=fl.Stragglers(0.5, "partial")
    )
    assert [h["clients"] for h in partial.history] == [10, 10, 10]
    with pytest.raises(ValueError):
        fl.Stragglers(0.5, "sometimes")


def test_callback_can_cancel(small_data, dask_client):
    seen = []

    def stop_after_two(record):
        seen.append(record["round"])
        return record["round"] < 2

    result = _run(small_data, dask_client, rounds=10, callback=stop_after_two)
    assert result.cancelled and seen == [1, 2] and len(result.history) == 2

    def raise_cancelled(record):
        raise fl.Cancelled()

    result = _run(small_data, dask_client, rounds=10, callback=raise_cancelled)
    assert result.cancelled and len(result.history) == 1


def test_same_seed_same_result_different_seed_differs(small_data, dask_client):
    a = _run(small_data, dask_client, seed=5)
    b = _run(small_data, dask_client, seed=5)
    c = _run(small_data, dask_client, seed=6)
    strip = [{k: v for k, v in h.items() if k != "duration_s"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "duration_s"} for h in b.history]
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_resume_is_bit_identical(small_data, dask_client, tmp_path):
    kw = dict(strategy=fl.strategies.FedAdam(eta=0.05), rounds=6)
    full = _run(small_data, dask_client, **kw)

    stopped = _run(
        small_data,
        dask_client,
        checkpoint_dir=tmp_path,
        checkpoint_every=2,
        callback=lambda r: r["round"] < 3,
        **kw,
    )
    assert stopped.cancelled and len(stopped.history) == 3
    assert fl.checkpoint.latest(tmp_path).name == "round-000002.ckpt"
    resumed = fl.Experiment.resume(tmp_path, client=dask_client, progress=None)
    assert [h["round"] for h in resumed.history] == list(range(1, 7))

    def strip(history):
        return [{k: v for k, v in h.items() if k != "duration_s"} for h in history]

    assert strip(resumed.history) == strip(full.history)
    assert np.array_equal(resumed.params, full.params)
    for k, v in full.state_dict.items():
        assert torch.equal(v, resumed.state_dict[k])


def test_scaffold_resume_keeps_control_variates(small_data, dask_client, tmp_path):
    kw = dict(strategy=fl.strategies.SCAFFOLD(), rounds=4)
    full = _run(small_data, dask_client, **kw)
    _run(small_data, dask_client, checkpoint_dir=tmp_path, checkpoint_every=2,
         callback=lambda r: r["round"] < 2, **kw)  # fmt: skip
    resumed = fl.Experiment.resume(tmp_path, client=dask_client, progress=None)
    assert np.array_equal(resumed.params, full.params)


def test_graph_model_trains_federated(dask_client):
    data = fl.datasets.sbm(num_clients=6, seed=0)
    exp = fl.Experiment(
        model=lambda: fl.models.GCN(data.num_features, data.num_classes, hidden=16),
        data=data,
        rounds=15,
        clients_per_round=3,
        local_epochs=5,
        lr=0.1,
    )
    result = exp.run(client=dask_client, progress=None)
    assert result.final_accuracy > 0.6
    assert result.history[-1]["test_loss"] < result.history[0]["test_loss"]


def test_digits_mlp(dask_client):
    data = fl.datasets.digits(num_clients=10, partition="iid")
    exp = fl.Experiment(
        model=fl.models.factory("mlp", in_features=64, num_classes=10, hidden=32),
        data=data, rounds=10, clients_per_round=5, local_epochs=2, batch_size=10, lr=0.1,
    )  # fmt: skip
    assert exp.run(client=dask_client, progress=None).final_accuracy > 0.8


def test_progress_modes(small_data, dask_client, capsys):
    fl.Experiment(lr_model, small_data, rounds=2).run(client=dask_client, progress="tqdm")
    assert "2/2" in capsys.readouterr().err
    from fedhub.fl.progress import WidgetProgress, make_progress

    bar = make_progress("widget", 3)
    assert isinstance(bar, WidgetProgress)
    bar.update({"round": 1, "test_accuracy": 0.5, "test_loss": 1.0})
    assert bar.bar.value == 1 and "accuracy 0.500" in bar.label.value
    with pytest.raises(ValueError):
        make_progress("fancy", 3)


def test_round_timeout_drops_late_clients_and_run_goes_on(small_data, dask_client):
    on_time = _run(small_data, dask_client, rounds=2, local_epochs=2)
    roomy = fl.Experiment(
        lr_model, small_data, rounds=2, clients_per_round=5, local_epochs=2, lr=0.05,
        round_timeout=120.0,
    ).run(client=dask_client, progress=None)  # fmt: skip
    # A deadline that is met changes nothing (the task path gives the same results).
    assert [h["test_loss"] for h in roomy.history] == [h["test_loss"] for h in on_time.history]

    late = fl.Experiment(
        lr_model, small_data, rounds=2, clients_per_round=5, local_epochs=30, lr=0.05,
        round_timeout=0.001,
    ).run(client=dask_client, progress=None)  # fmt: skip
    assert [h["clients"] for h in late.history] == [0, 0]
    assert [h["dropped"] for h in late.history] == [5, 5]
    assert late.lost_clients == 10
