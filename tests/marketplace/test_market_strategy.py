"""Marketplace strategies (fedhub.fl.market): loading reviewed source, its declared
parameters, and a RemoteStrategy whose hooks run as tasks on a real Dask LocalCluster,
giving the same weights as the built-in strategy it wraps. No hub."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import pickle
import signal

import cloudpickle
import numpy as np
import psutil
import pytest

from fedhub import fl
from fedhub.fl.market import MarketCodeError, RemoteStrategy, attach, check_params, load_strategy
from fedhub.fl.registry import ParameterError
from tests.fl.workers import cluster_kwargs
from tests.harness import wait_for

PROX = """
from fedhub.fl.strategies import FedProx
from fedhub.fl.registry import Param


class Prox(FedProx):
    params = {"mu": Param(float, min=0.0, max=10.0)}
"""

#: FedProx whose server takes only a step of ``server_lr`` towards the clients' average
DAMPED = (
    PROX
    + """

class Damped(Prox):
    params = {**Prox.params, "server_lr": Param(float, min=0.0, max=1.0)}

    def __init__(self, mu=0.01, server_lr=0.5):
        super().__init__(mu)
        self.server_lr = server_lr

    def aggregate(self, rnd, params, results):
        return params + self.server_lr * (self.average(results) - params)

    def evaluate(self, rnd, params):
        return {"server_lr": self.server_lr}


STRATEGY = Damped
"""
)


def sha(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def test_the_source_is_checked_against_its_hash_and_must_define_one_strategy():
    ref = "market/prox@1.0.0"
    assert issubclass(load_strategy(PROX, sha(PROX), ref), fl.strategies.FedProx)
    with pytest.raises(MarketCodeError, match="does not match its SHA-256"):
        load_strategy(PROX + "\n", sha(PROX), ref)
    assert load_strategy(DAMPED, sha(DAMPED), "market/d@1").__name__ == "Damped"  # STRATEGY
    two = DAMPED.replace("STRATEGY = Damped", "")
    with pytest.raises(MarketCodeError, match=r"market/two@1: .*several strategies \(Damped, Prox"):
        load_strategy(two, sha(two), "market/two@1")
    none = "from fedhub.fl.strategies import FedProx\nx = 1\n"
    with pytest.raises(MarketCodeError, match="market/none@1: the source defines no"):
        load_strategy(none, sha(none), "market/none@1")
    broken = "raise RuntimeError('boom')\n"
    with pytest.raises(MarketCodeError, match="market/b@1: the source failed to load: Runtime"):
        load_strategy(broken, sha(broken), "market/b@1")


def test_only_declared_parameters_within_their_bounds():
    cls = load_strategy(DAMPED, sha(DAMPED), "market/d@1")
    assert check_params(cls, "market/d@1", {"mu": 1, "server_lr": 0.25}) == {
        "mu": 1.0,
        "server_lr": 0.25,
    }
    with pytest.raises(ParameterError, match=r"strategy_params.bogus: unknown parameter"):
        check_params(cls, "market/d@1", {"bogus": 1})
    with pytest.raises(ParameterError, match=r"strategy_params.mu: must be at most 10"):
        check_params(cls, "market/d@1", {"mu": 11})


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(**cluster_kwargs(2)) as cluster, Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def experiment(strategy, rounds=3):
    data = fl.datasets.synthetic(alpha=0.5, beta=0.5, num_clients=8, seed=3)
    model = fl.models.factory("logistic_regression", in_features=60, num_classes=10)
    return fl.Experiment(model, data, strategy, rounds=rounds, clients_per_round=4, seed=5)


def test_a_remote_fedprox_gives_the_same_weights_as_the_built_in(client):
    local = experiment(fl.strategies.get("fedprox", mu=0.5)).run(client=client, progress=None)
    remote = RemoteStrategy("market/prox@1.0.0", PROX, sha(PROX), {"mu": 0.5}, executor=client)
    result = experiment(remote).run(client=client, progress=None)
    np.testing.assert_array_equal(result.params, local.params)
    assert [r["clients"] for r in result.history] == [r["clients"] for r in local.history]
    # the runner deep-copied the strategy: the configured one was never initialized
    assert remote._state is None and remote.executor is client


def test_a_variant_runs_remotely_and_survives_a_checkpoint(client, tmp_path):
    remote = RemoteStrategy(
        "market/d@1", DAMPED, sha(DAMPED), {"mu": 0.1, "server_lr": 0.5}, executor=client
    )
    exp = experiment(remote, rounds=2)
    full = experiment(copy.deepcopy(remote), rounds=3).run(client=client, progress=None)
    exp.run(client=client, progress=None, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert all(r["server_lr"] == 0.5 for r in full.history)
    # a checkpoint holds no connection; the resumed run gets its executor back
    assert pickle.loads(cloudpickle.dumps(remote)).executor is None
    resumed = fl.Experiment.load(tmp_path)
    resumed.rounds = 3
    with pytest.raises(RuntimeError, match="no executor attached"):
        resumed.run(client=client, progress=None)
    resumed = fl.Experiment.load(tmp_path)
    resumed.rounds = 3
    attach(resumed, client)
    np.testing.assert_array_equal(resumed.run(client=client, progress=None).params, full.params)


def test_hooks_failing_on_the_worker_name_the_asset(client):
    bad = RemoteStrategy("market/d@1", DAMPED, sha(DAMPED), {"bogus": 1}, executor=client)
    with pytest.raises(MarketCodeError, match=r"market/d@1: strategy_params.bogus: unknown"):
        experiment(bad).run(client=client, progress=None)
    sneaky = PROX + "\n    def initialize(self, params, n):\n        self.hook = print\n"
    bad = RemoteStrategy("market/s@1", sneaky, sha(sneaky), {}, executor=client)
    with pytest.raises(MarketCodeError, match=r"market/s@1: state.hook is a builtin_function"):
        experiment(bad).run(client=client, progress=None)


# -- the strategy host: the source runs in a child process of the worker, not in it --------

#: Prox whose evaluate reports where it runs
WHERE = (
    PROX
    + """
import os, resource, stat


class Where(Prox):
    def evaluate(self, rnd, params):
        return {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "cwd_mode": stat.S_IMODE(os.stat(os.getcwd()).st_mode),
            "home_is_cwd": int(os.environ["HOME"] == os.getcwd()),
            "dask_env": sum(k.startswith("DASK_") for k in os.environ),
            "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
            "fds": len(os.listdir("/proc/self/fd")),  # its pipes, /dev/null, its log
        }


STRATEGY = Where
"""
)


def test_hooks_run_in_a_host_process_whose_parent_is_the_worker(client):
    workers = set(client.run(os.getpid).values())
    local = experiment(fl.strategies.get("fedprox", mu=0.5)).run(client=client, progress=None)
    remote = RemoteStrategy("market/w@1", WHERE, sha(WHERE), {"mu": 0.5}, executor=client)
    result = experiment(remote).run(client=client, progress=None)
    np.testing.assert_array_equal(result.params, local.params)
    for r in result.history:
        assert r["pid"] not in workers and r["ppid"] in workers, (r, workers)
        assert (r["cwd_mode"], r["home_is_cwd"], r["dask_env"]) == (0o700, 1, 0)
        assert r["fds"] == 6  # 0-4 and the one listdir opened
        assert r["address_space"] >= 1 << 30  # the LocalCluster's 2 GiB memory limit
    assert r["address_space"] == 2 << 30


def test_a_host_killed_between_rounds_is_restarted_and_the_run_is_unchanged(client):
    def kill_hosts(digest: str) -> list[int]:
        from fedhub.fl.market_host import host_pids

        pids = host_pids(digest)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:  # dead: a zombie, all its threads gone, until the next call reaps it
            wait_for(lambda p=pid: open(f"/proc/{p}/stat").read().split()[2] == "Z"
                     and os.listdir(f"/proc/{p}/task") == [str(p)],
                     10, 0.01, f"host {pid} to be dead")  # fmt: skip
        return pids

    killed: list[int] = []

    def after_round(record: dict) -> None:
        if record["round"] == 1:
            killed.extend(p for pids in client.run(kill_hosts, sha(WHERE)).values() for p in pids)

    local = experiment(fl.strategies.get("fedprox", mu=0.5)).run(client=client, progress=None)
    remote = RemoteStrategy("market/w@1", WHERE, sha(WHERE), {"mu": 0.5}, executor=client)
    result = experiment(remote).run(client=client, callback=after_round, progress=None)
    np.testing.assert_array_equal(result.params, local.params)
    assert result.history[0]["pid"] in killed
    assert not {r["pid"] for r in result.history[1:]} & set(killed)


def test_non_plain_results_fail_the_run_naming_the_asset_and_are_never_unpickled(client, tmp_path):
    marker = tmp_path / "unpickled"
    evil = (
        PROX
        + f"""

class Payload:
    def __reduce__(self):
        return (open, ({str(marker)!r}, "w"))


class Evil(Prox):
    def evaluate(self, rnd, params):
        return {{"score": Payload()}}


STRATEGY = Evil
"""
    )
    odd = (
        PROX
        + """

class Box:
    pass


class Odd(Prox):
    def client_extra(self, rnd, cid):
        return {"box": Box()}


STRATEGY = Odd
"""
    )
    for ref, source, message in [
        ("market/evil@1", evil, r"market/evil@1: evaluate.score is a Payload; a strategy's"),
        ("market/odd@1", odd, r"market/odd@1: client_extra.\d+.box is a Box"),
    ]:
        bad = RemoteStrategy(ref, source, sha(source), {}, executor=client)
        with pytest.raises(MarketCodeError, match=message):
            experiment(bad).run(client=client, progress=None)
    assert not marker.exists()


# -- the pipe protocol, and a hook that does not return ----------------------------------------


def test_the_protocol_carries_plain_data_exactly_and_refuses_anything_else():
    from fedhub.fl.market_host import _FRAME, decode, encode
    from fedhub.fl.training import ClientResult

    result = ClientResult(cid=3, params=np.arange(4, dtype=np.float32), num_examples=7,
                          train_loss=0.25, epochs=1, steps=2, extra={"dc": np.ones(2)})  # fmt: skip
    state = np.random.default_rng(1).bit_generator.state  # ints of 128 bits
    value = {"a": (1, 2.5, None, True), 4: [state, float("inf"), -0.0], "r": [result]}
    message = encode(value, "market/x@1")
    n_header = _FRAME.unpack(message[: _FRAME.size])[1]
    header, blob = message[_FRAME.size :][:n_header], message[_FRAME.size :][n_header:]
    back = decode(header, blob, "market/x@1")
    assert back["a"] == (1, 2.5, None, True) and back[4][:2] == [state, float("inf")]
    assert str(back[4][2]) == "-0.0" and back["r"][0].cid == 3
    np.testing.assert_array_equal(back["r"][0].params, result.params)
    assert back["r"][0].params.dtype == np.float32

    pickled = io.BytesIO()
    np.savez(pickled, a0=np.array([object()], dtype=object))  # an object array: a pickle
    for header, blob in [
        (b'{"array":"a0"}', pickled.getvalue()),
        (b'{"__reduce__":["os.system","true"]}', b""),
        (b'{"dict":[[1.5,2]]}', b""),
        (b"[" * 100000, b""),
    ]:
        with pytest.raises(MarketCodeError, match="market/x@1: the strategy host sent a malf"):
            decode(header, blob, "market/x@1")
    with pytest.raises(MarketCodeError, match=r"market/x@1: message.k has a key of type tuple"):
        encode({"k": {(1, 2): 3}}, "market/x@1")


def test_a_hook_over_its_timeout_stops_its_host_and_the_next_call_starts_another():
    import dask

    from fedhub.fl import market_host

    slow = (
        PROX
        + """

class Slow(Prox):
    def evaluate(self, rnd, params):
        if rnd == 1:
            import time
            time.sleep(60)
        return {"round": rnd}


STRATEGY = Slow
"""
    )
    ref, state, params = "market/slow@1", {"proximal_mu": 0.0}, np.zeros(3, np.float32)
    try:
        with dask.config.set({market_host.TIMEOUT_KEY: 2}):
            market_host.call_host(slow, sha(slow), ref, "evaluate", [state, 2, params])
            first = market_host.host_pids()
            with pytest.raises(
                MarketCodeError, match=rf"{ref}: evaluate did not finish in time \(2 s\)"
            ):
                market_host.call_host(slow, sha(slow), ref, "evaluate", [state, 1, params])
            assert market_host.host_pids() == [] and not psutil.pid_exists(first[0])
            metrics = market_host.call_host(slow, sha(slow), ref, "evaluate", [state, 3, params])
            assert metrics[0] == {"round": 3} and market_host.host_pids() != first
        host = market_host._HOSTS[sha(slow)]  # its worker closes the pipe (or dies): it ends
        host.proc.stdin.close()
        assert host.proc.wait(timeout=30) == 0 and not os.path.exists(host.folder)
    finally:
        for host in list(market_host._HOSTS.values()):
            market_host._drop(host)


# -- the use at each run's start (must-show 2 at the store level) ----------------------------


def test_each_use_is_metered_once_per_run_and_a_refund_cancels_the_queued_run(
    market, tmp_path, monkeypatch
):
    import json

    from sqlalchemy import select

    from fedhub import db
    from fedhub.db import rls
    from fedhub.marketplace.errors import NotEntitled
    from fedhub.metering import MeterEvent
    from fedhub.services.experiments import market_refs
    from fedhub.services.experiments.models import ExperimentRun
    from fedhub.services.experiments.scheduler import ExperimentScheduler
    from tests.marketplace.conftest import ALGORITHM, GLOBEX_ADMIN, listed

    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(tmp_path / "spool"))
    ref = "market/fedprox-variant@1.0.0"
    listed(market)
    purchase, _ = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "k")
    for _ in range(2):  # a resumed run uses it again: one use
        used = market.use("globex", "bob", ref, context={"experiment": "e1"})
    assert (used["content"], used["asset_type"], used["filename"]) == (
        ALGORITHM, "algorithm", "variant.py",
    )  # fmt: skip
    market.use("globex", "bob", ref, context={"experiment": "e2"})
    with db.session_scope(market.db) as s:
        uses = s.execute(
            select(MeterEvent.quantity, MeterEvent.attributes).where(
                MeterEvent.tenant == "globex", MeterEvent.kind == "marketplace_uses"
            )
        ).all()
    assert sorted((q, a["experiment"], a["ref"]) for q, a in uses) == [
        (1.0, "e1", ref), (1.0, "e2", ref),
    ]  # fmt: skip
    spooled = [json.loads(x) for f in (tmp_path / "spool").iterdir() for x in f.open()]
    audited = [e for e in spooled if e["action"] == "marketplace.used"]
    assert [e["details"]["context"] for e in audited] == [
        {"experiment": f"e{i}"} for i in (1, 1, 2)
    ]
    assert {(e["tenant"], e["details"]["sha256"]) for e in audited} == {("globex", used["sha256"])}

    # a run queued with the licence; the licence refunded before it starts
    spec = {"strategy": ref, "rounds": 1, "clients": 2}
    with rls.platform(), db.session_scope(market.db) as s:
        s.add(ExperimentRun(id="queued1", tenant="globex", username="bob", name="", spec=spec,
                            clients=2, rounds=1))  # fmt: skip
    market.refund(GLOBEX_ADMIN, purchase["id"])
    with pytest.raises(NotEntitled, match=ref):  # the next submission: 403
        market_refs.check(market.db, "globex", "bob", {"strategy": ref}, spec)
    scheduler = ExperimentScheduler(market.db, lambda t: "starter", state_dir=str(tmp_path))
    rls.as_platform(scheduler._run)("queued1")
    with rls.platform(), db.session_scope(market.db) as s:
        run = s.get(ExperimentRun, "queued1")
        assert (run.status, run.error.split(":")[0]) == ("cancelled", "not_entitled")
        assert ref in run.error


def test_a_licence_revoked_while_the_run_runs_stops_it_after_the_round(
    market, client, tmp_path, monkeypatch
):
    """Between rounds the scheduler checks the run's licences again: revoked after round 1
    of 3, the run ends cancelled with not_entitled after that round (on a real LocalCluster,
    the scheduler's own run path)."""
    from fedhub import db
    from fedhub.db import rls
    from fedhub.services.experiments.models import ExperimentRun
    from fedhub.services.experiments.scheduler import ExperimentScheduler
    from fedhub.services.experiments.tenant_workers import TenantExecutor
    from tests.marketplace.conftest import ADMIN, GLOBEX_ADMIN, listed

    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(tmp_path / "spool"))
    ref = "market/fedprox-variant@1.0.0"
    listed(market)
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "k")
    [licence] = market.entitlements(GLOBEX_ADMIN)
    spec = {"strategy": ref, "rounds": 3, "clients": 2, "dataset": "synthetic"}
    with rls.platform(), db.session_scope(market.db) as s:
        s.add(ExperimentRun(id="running1", tenant="globex", username="bob", name="", spec=spec,
                            clients=2, rounds=3))  # fmt: skip
    scheduler = ExperimentScheduler(market.db, lambda t: "starter", state_dir=str(tmp_path))
    # globex's workers: the module's LocalCluster stands in for globex's own cluster
    executor = TenantExecutor("globex", "fedhub_t_globex", client)
    monkeypatch.setattr(scheduler.clusters, "tenant_executor", lambda tenant, tier: executor)
    record_round = scheduler._record_round

    def revoked_after_round_1(exp_id, tenant, username, record):
        record_round(exp_id, tenant, username, record)
        if record["round"] == 1:
            market.revoke(ADMIN, licence["id"], "a licence breach")

    monkeypatch.setattr(scheduler, "_record_round", revoked_after_round_1)
    rls.as_platform(scheduler._run)("running1")
    with rls.platform(), db.session_scope(market.db) as s:
        run = s.get(ExperimentRun, "running1")
        assert (run.status, run.rounds_done) == ("cancelled", 1), run.error
        assert run.error.split(":")[0] == "not_entitled" and ref in run.error


# -- init_weights: a model asset's state dict as the run's initial weights --------------------


def test_a_model_assets_weights_start_the_run_and_must_fit_its_model(client):
    import io

    import torch

    from fedhub.fl.market import WarmStart, initial_weights

    def saved(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    torch.manual_seed(42)  # weights no run's seed draws
    trained = fl.models.get("logistic_regression", in_features=60, num_classes=10)
    blob = saved(trained.state_dict())
    digest = hashlib.sha256(blob).hexdigest()
    exp = experiment(fl.strategies.get("fedavg"), rounds=1)
    weights = client.submit(initial_weights, blob, digest, "market/m@1", exp.model).result()
    exp.model = WarmStart(exp.model, weights, "market/m@1")
    start = exp.initial_model().state_dict()
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(start[name], tensor)
    assert exp.run(client=client, progress=None).history[0]["clients"] == 4

    other = saved(fl.models.get("logistic_regression", in_features=30, num_classes=10).state_dict())
    whole = saved(trained)  # a pickled module, not a state dict: weights_only refuses it
    for data, message in [
        (other, r"does not load into the run's model: .* size mismatch for linear.weight"),
        (whole, "does not load into the run's model"),
        (blob + b"x", "the file does not match its SHA-256"),
    ]:
        sha = digest if data.endswith(b"x") else hashlib.sha256(data).hexdigest()
        with pytest.raises(MarketCodeError, match=f"market/m@1: {message}"):
            client.submit(initial_weights, data, sha, "market/m@1", exp.model).result()
