"""fedhub.fl.federation on a real 2-worker LocalCluster.

Each member's "executor" submits to one worker only (as a tenant's executor does), and its
dataset is a version directory in the store's layout, read on that worker by
``fedhub.datasets.store.load_arrays``. Three members split sklearn's digits with Dirichlet
label skew; each keeps a quarter of its own rows as its test split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import pytest

from fedhub.fl import federation as fed
from fedhub.fl.partition import Dirichlet

TENANTS = ("acme", "globex", "initech")
MODEL = {"in_features": 64, "num_classes": 10, "hidden": 32}


def write_version(folder, x, y, split) -> str:
    """A dataset version directory as fedhub.datasets.store lays it out."""
    folder.mkdir(parents=True)
    np.savez(folder / "arrays.npz", x=x, y=y, split=split)
    digest = hashlib.sha256((folder / "arrays.npz").read_bytes()).hexdigest()
    manifest = {"sha256": digest, "rows": len(y), "version": 1, "created_at": "2026-11-30"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int64)
    root = tmp_path_factory.mktemp("tenant-data")
    dirs, raw = [], []
    for i, part in enumerate(Dirichlet(alpha=0.3, min_size=60).split(y, len(TENANTS), seed=1)):
        rng = np.random.default_rng([7, i])
        split = (rng.random(len(part)) < 0.25).astype(np.uint8)
        dirs.append(write_version(root / TENANTS[i] / "digits" / "1", x[part], y[part], split))
        raw.append((x[part], y[part]))
    return dirs, raw


class WorkerExecutor:
    """A member's executor: every task on one worker, nowhere else (``worker=None``: the
    whole cluster, as a tenant's gateway cluster; a task the caller does not place goes
    to the next worker in turn, the worst a scheduler could do).

    ``fail_at`` = (stage function name, round) makes that task fail as a member whose
    worker lost its state would (the round argument points at a round it never saw);
    (name, round, seconds) makes it answer that late instead.
    """

    def __init__(self, client, worker, fail_at=None):
        self.client, self.worker, self.fail_at = client, worker, fail_at

    def submit(self, fn, *args, **kwargs):
        if self.fail_at and fn.__name__ == self.fail_at[0] and args[1] == self.fail_at[1]:
            if len(self.fail_at) == 3:  # late rather than failing
                args = (self.fail_at[2], fn, *args)
                fn = late
            elif fn is fed.member_train:  # the data cannot be read
                spec = dataclasses.replace(args[0], dataset_dir="/nonexistent", token="gone")
                args = (spec, *args[1:])
            else:
                args = (args[0], -1, *args[2:])
        kwargs["pure"] = False
        if self.worker is not None:
            kwargs.update(workers=[self.worker], allow_other_workers=False)
        elif "workers" not in kwargs:
            self.turn = getattr(self, "turn", -1) + 1
            workers = sorted(self.client.scheduler_info()["workers"])
            kwargs.update(workers=[workers[self.turn % len(workers)]], allow_other_workers=False)
        return self.client.submit(fn, *args, **kwargs)


def late(seconds, fn, *args):
    time.sleep(seconds)
    return fn(*args)


def members(client, dirs, fail=None, whole_cluster=()):
    workers = sorted(client.scheduler_info()["workers"])
    fail = fail or {}
    out = []
    for i, t in enumerate(TENANTS):
        worker = None if t in whole_cluster else workers[i % len(workers)]
        out.append(fed.FederationMember(i, t, WorkerExecutor(client, worker, fail.get(t)), dirs[i]))
    return out


def plan(**kw) -> fed.FederationPlan:
    base = {"model": "mlp", "model_params": MODEL, "rounds": 8, "lr": 0.2, "batch_size": 16,
            "local_epochs": 1, "seed": 3}  # fmt: skip
    base.update(kw)
    return fed.FederationPlan(**base)


def arrays_in(obj):
    """Every numpy array anywhere in ``obj`` (dicts, lists, tuples, dataclasses)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from arrays_in(k)
            yield from arrays_in(v)
    elif isinstance(obj, list | tuple | set):
        for v in obj:
            yield from arrays_in(v)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from arrays_in(getattr(obj, f.name))
    elif hasattr(obj, "__dict__"):
        yield from arrays_in(vars(obj))


def test_plan_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="at least 2 members"):
        plan().validate(1)
    with pytest.raises(ValueError, match="needs each member's own update"):
        plan(strategy="fedmedian").validate(3)
    with pytest.raises(ValueError, match="threshold 4 is more than the 3 members"):
        plan(secagg_threshold=4).validate(3)
    with pytest.raises(ValueError, match="more than half"):
        plan(secagg_threshold=2).validate(4)
    with pytest.raises(ValueError, match="dp is missing"):
        plan(dp={"noise_multiplier": 1.0}).validate(3)
    with pytest.raises(fed.FederationPlanError, match="delta"):
        plan(dp={**dp_settings(2), "delta": 2.0}).validate(3)
    plan(strategy="fedmedian", secure_aggregation=False).validate(3)
    assert plan().threshold(3) == 2 and plan().threshold(5) == 4 and plan().threshold(2) == 2


def test_plain_fedavg_converges_and_is_deterministic(dask_client, datasets):
    dirs, _ = datasets
    seen = []
    p = plan(secure_aggregation=False)
    first = fed.run_federation(p, members(dask_client, dirs), on_round=seen.append)
    again = fed.run_federation(p, members(dask_client, dirs))
    assert np.array_equal(first.weights, again.weights)
    assert [r["round"] for r in seen] == list(range(1, 9))
    acc = [r["aggregate"]["accuracy"] for r in first.rounds]
    assert acc[-1] > 0.8 and acc[-1] > acc[0] + 0.3
    last = first.rounds[-1]
    assert last["members"] == [0, 1, 2] and last["dropped"] == [] and last["epsilon"] is None
    assert set(last["per_member"]) == set(TENANTS)
    for metrics in last["per_member"].values():
        assert metrics["client_seconds"] > 0 and metrics["examples"] > 0
        assert 0 <= metrics["accuracy"] <= 1


def test_local_only_baseline_trains_on_one_member(dask_client, datasets):
    dirs, _ = datasets
    p = plan(secure_aggregation=False)
    m = members(dask_client, dirs)[0]
    local = fed.local_only_baseline(p, m)
    assert local == fed.local_only_baseline(p, m)
    assert 0.5 < local["accuracy"] <= 1 and local["loss"] > 0
    untrained = fed.local_only_baseline(dataclasses.replace(p, lr=1e-9), m)
    assert untrained["accuracy"] < 0.3


def dp_settings(rounds_in_budget: int, **kw) -> dict:
    from fedhub.fl.privacy import PrivacyAccountant

    acc = PrivacyAccountant(noise_multiplier=1.5, delta=1e-5)
    budget = (acc.epsilon(rounds_in_budget) + acc.epsilon(rounds_in_budget + 1)) / 2
    return {"noise_multiplier": 1.5, "clip_norm": 0.5, "delta": 1e-5, "epsilon_budget": budget,
            **kw}  # fmt: skip


def test_dp_clips_on_members_and_stops_at_the_budget(dask_client, datasets):
    from fedhub.fl.privacy import PrivacyAccountant

    dirs, _ = datasets
    p = plan(secure_aggregation=False, dp=dp_settings(2, noise_seed=5))
    result = fed.run_federation(p, members(dask_client, dirs))
    assert result.stopped_reason == "epsilon_budget" and len(result.rounds) == 2
    acc = PrivacyAccountant(noise_multiplier=1.5, delta=1e-5)
    assert [r["epsilon"] for r in result.rounds] == [acc.epsilon(1), acc.epsilon(2)]
    for got in result.received:
        for answer in got["train"].values():
            assert np.linalg.norm(answer["update"]) <= 0.5 + 1e-9
    # the noise is seeded here, so the run repeats; without a seed it does not
    again = fed.run_federation(p, members(dask_client, dirs))
    assert np.array_equal(result.weights, again.weights)
    unseeded = dataclasses.replace(p, dp=dp_settings(2))
    one = fed.run_federation(unseeded, members(dask_client, dirs))
    two = fed.run_federation(unseeded, members(dask_client, dirs))
    assert not np.allclose(one.weights, two.weights)


def test_secure_aggregation_converges_and_the_coordinator_holds_no_data(dask_client, datasets):
    dirs, raw = datasets
    # globex's tasks may go to either worker: its round's stages must follow its state
    secure = fed.run_federation(plan(), members(dask_client, dirs, whole_cluster={"globex"}))
    acc = [r["aggregate"]["accuracy"] for r in secure.rounds]
    assert acc[-1] > 0.8 and acc[-1] > acc[0] + 0.3
    assert all(r["members"] == [0, 1, 2] for r in secure.rounds)
    dim = secure.weights.size
    stages = {"round", "train", "share_keys", "masked_input", "unmask", "evaluate"}
    masked = 0
    for got in secure.received:
        assert set(got) == stages
        for stage in stages - {"round"}:
            for answer in got[stage].values():
                for a in arrays_in(answer):
                    # the only arrays: masked inputs, words of Z_2^32, one per parameter
                    assert stage == "masked_input" and a.dtype == np.uint64 and a.shape == (dim,)
                    assert int(a.max()) < 2**32
                    masked += 1
        for x, y in raw:  # (and so no float array at all: the data's values never appear)
            assert all(a.shape not in (x.shape, y.shape) for a in arrays_in(got))
    assert masked == 3 * len(secure.rounds)
    # masks are fresh every run, the sum is not: same plan, same weights
    again = fed.run_federation(plan(), members(dask_client, dirs))
    assert np.array_equal(secure.weights, again.weights)


def quantisation_bound(p, weights, n=3):
    return p.secagg_config(n).error_bound(n, n) + float(np.abs(weights).max()) * 2.0**-23


def test_secure_sum_equals_the_plain_sum(dask_client, datasets):
    dirs, _ = datasets
    p = plan(rounds=1)
    secure = fed.run_federation(p, members(dask_client, dirs))
    plain = fed.run_federation(dataclasses.replace(p, secure_aggregation=False),
                               members(dask_client, dirs))  # fmt: skip
    diff = np.abs(secure.weights - plain.weights).max()
    assert diff <= quantisation_bound(p, plain.weights)
    # and the update itself is far above the quantisation step
    assert np.abs(plain.weights - p.initial_weights()).max() > 1e3 * quantisation_bound(
        p, plain.weights
    )


def test_a_member_dropping_mid_round(dask_client, datasets):
    dirs, _ = datasets
    p = plan(rounds=3)
    # initech's worker loses its state after keys are shared: its masks are rebuilt
    # from the survivors' shares, and the round is the survivors' average
    secure = fed.run_federation(p, members(dask_client, dirs, {"initech": ("member_masked", 2)}))
    r2 = secure.rounds[1]
    assert r2["members"] == [0, 1] and r2["dropped"] == [2]
    assert r2["per_member"]["initech"]["examples"] == 0
    assert secure.rounds[2]["members"] == [0, 1, 2]
    assert set(secure.received[1]["unmask"]) == {0, 1}
    plain = fed.run_federation(
        dataclasses.replace(p, secure_aggregation=False),
        members(dask_client, dirs, {"initech": ("member_train", 2)}),
    )
    assert plain.rounds[1]["members"] == [0, 1]
    assert plain.rounds[1]["per_member"]["initech"]["error"] == "train: DatasetCorrupt"
    assert "error" not in plain.rounds[1]["per_member"]["acme"]
    assert np.abs(secure.weights - plain.weights).max() <= 10 * quantisation_bound(p, plain.weights)
    # one member not answering the unmasking request: t = 2 answers suffice
    late = fed.run_federation(p, members(dask_client, dirs, {"acme": ("member_unmask", 1)}))
    assert late.rounds[0]["members"] == [0, 1, 2] and set(late.received[0]["unmask"]) == {1, 2}
    # a member too slow for member_timeout counts as dropped (globex has a worker to itself)
    slow = fed.run_federation(
        dataclasses.replace(p, rounds=2, member_timeout=2.5),
        members(dask_client, dirs, {"globex": ("member_masked", 1, 5.0)}),
    )
    assert slow.rounds[0]["dropped"] == [1] and slow.rounds[1]["members"] == [0, 1, 2]
    # two of three gone: the round cannot be unmasked, and the run says so
    with pytest.raises(fed.FederationError, match="round 1: only 1 of 3 members completed"):
        fed.run_federation(p, members(dask_client, dirs, {"acme": ("member_share_keys", 1),
                                                          "globex": ("member_masked", 1)}))  # fmt: skip


def test_dp_with_secure_aggregation_stops_at_the_budget(dask_client, datasets):
    dirs, _ = datasets
    p = plan(dp=dp_settings(3, noise_seed=9))
    secure = fed.run_federation(p, members(dask_client, dirs))
    assert secure.stopped_reason == "epsilon_budget" and len(secure.rounds) == 3
    assert secure.rounds[-1]["epsilon"] <= p.dp["epsilon_budget"] < p.accountant().epsilon(4)
    plain = fed.run_federation(dataclasses.replace(p, secure_aggregation=False),
                               members(dask_client, dirs))  # fmt: skip
    assert np.abs(secure.weights - plain.weights).max() <= 10 * quantisation_bound(p, plain.weights)


def test_the_strategy_takes_the_server_step(dask_client, datasets):
    dirs, _ = datasets
    p = plan(rounds=2, strategy="fedavgm", strategy_params={"server_lr": 1.0, "momentum": 0.9})
    secure = fed.run_federation(p, members(dask_client, dirs))
    plain = fed.run_federation(dataclasses.replace(p, secure_aggregation=False),
                               members(dask_client, dirs))  # fmt: skip
    fedavg = fed.run_federation(dataclasses.replace(p, strategy="fedavg", strategy_params={}),
                                members(dask_client, dirs))  # fmt: skip
    bound = quantisation_bound(p, plain.weights)
    assert np.abs(secure.weights - plain.weights).max() <= 10 * bound
    # round 2 adds 0.9 x round 1's step: far from FedAvg's weights
    assert np.abs(secure.weights - fedavg.weights).max() > 1e3 * bound
    # robust strategies see each member's model (plain aggregation only)
    median = fed.run_federation(
        dataclasses.replace(p, strategy="fedmedian", strategy_params={}, secure_aggregation=False),
        members(dask_client, dirs),
    )
    assert median.rounds[-1]["members"] == [0, 1, 2]
    assert np.abs(median.weights - fedavg.weights).max() > 1e3 * bound
