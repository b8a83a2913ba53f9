"""Runs on other topologies: 1 worker, a worker killed mid-round, a separately started
scheduler with two worker processes. Each starts its own cluster, hence ``slow``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedhub import fl
from tests.fl.workers import cluster_kwargs, kill_worker_in_round
from tests.harness import wait_for

pytestmark = pytest.mark.slow

lr_model = fl.models.factory("logistic_regression", in_features=60, num_classes=10)
REPO = Path(__file__).resolve().parents[2]


def _experiment(data, **kw):
    kw = {
        "rounds": 4,
        "clients_per_round": 6,
        "local_epochs": 3,
        "batch_size": 10,
        "lr": 0.05,
        **kw,
    }
    return fl.Experiment(
        model=lr_model, data=data, strategy=fl.strategies.FedProx(mu=0.1), seed=11, **kw
    )


def _strip(history):
    return [{k: v for k, v in h.items() if k != "duration_s"} for h in history]


def test_same_result_on_one_and_two_workers(small_data, dask_client):
    two = _experiment(small_data).run(client=dask_client, progress=None)
    one = _experiment(small_data).run(progress=None, cluster_kwargs=cluster_kwargs(1))
    assert _strip(one.history) == _strip(two.history)
    assert np.array_equal(one.params, two.params)


def test_worker_killed_mid_round_run_finishes(dask_client):
    from distributed import Client, LocalCluster

    data = fl.datasets.synthetic(alpha=0.5, beta=0.5, num_clients=20, seed=4)
    exp_kw = {"rounds": 4, "clients_per_round": 10, "local_epochs": 15}
    reference = _experiment(data, **exp_kw).run(client=dask_client, progress=None)

    with (
        LocalCluster(**cluster_kwargs(2)) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        with kill_worker_in_round(client, 2) as killed:
            result = _experiment(data, **exp_kw).run(client=client, progress=None)

    assert killed, "no round-2 task was seen running, so nothing was killed"
    assert len(result.history) == 4
    # The lost clients were retried elsewhere: same clients, same weights as without a kill.
    assert _strip(result.history) == _strip(reference.history)
    assert np.array_equal(result.params, reference.params)


def test_separately_started_scheduler_and_workers(small_data, dask_client, tmp_path):
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    bin_dask = Path(sys.executable).with_name("dask")
    if bin_dask.exists():
        dask = [str(bin_dask), "scheduler"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    sched_file = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [*dask, "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                 "--scheduler-file", str(sched_file)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_for(sched_file.exists, 60, what="the scheduler file")
        worker_cmd = [str(bin_dask), "worker"] if bin_dask.exists() else [
            sys.executable, "-m", "distributed.cli.dask_worker"
        ]  # fmt: skip
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*worker_cmd, "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                     "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                     "--memory-limit", "2GiB"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        import json

        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        from distributed import Client

        with Client(address, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=60)
        result = _experiment(small_data).run(address=address, progress=None)
        reference = _experiment(small_data).run(client=dask_client, progress=None)
        assert _strip(result.history) == _strip(reference.history)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _worker_processes() -> list:
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        # The forkserver and multiprocessing's resource tracker are meant to stay.
        if "forkserver" not in cmd and "resource_tracker" not in cmd:
            out.append(p)
    return out


def test_rerunning_in_the_same_process_leaks_no_workers(small_data):
    before = {p.pid for p in _worker_processes()}
    exp = _experiment(small_data, rounds=2)
    first = exp.run(progress=None, cluster_kwargs=cluster_kwargs(2))
    second = exp.run(progress=None, cluster_kwargs=cluster_kwargs(2))
    assert _strip(first.history) == _strip(second.history)
    # Workers forked from the pre-loaded forkserver: a re-run's cluster starts fast.
    assert second.startup_s < 5.0
    wait_for(lambda: {p.pid for p in _worker_processes()} <= before, 30, what="workers to exit")
