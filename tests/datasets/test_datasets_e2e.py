"""Tenants' private datasets on a real hub: the client, the API, and who can open the files.

One hub for the module (as root: files owned by the tenants' accounts). alice (acme) registers
a DataFrame through ``fedhub.datasets``; bob (globex) cannot see it; an analyst cannot write;
initech over its storage_gb is refused; a process of globex's tenant account cannot open
acme's files.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import psutil
import pytest

from fedhub import accounts
from fedhub.client import FedhubAPIError, configure
from fedhub.datasets import load_arrays
from tests.harness import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not accounts.can_isolate(), reason="tenant accounts need root"),
]

SERVICE = "/services/experiments/api/v1"


@pytest.fixture(scope="module")
def hub(hub_factory):
    from tests.experiments.conftest import wait_for_experiments_service

    hub = hub_factory(env={"FEDHUB_EXPERIMENTS_WORKERS": "1", "FEDHUB_EXPERIMENTS_WARM_UP": "0"})
    wait_for_experiments_service(hub)
    return hub


@pytest.fixture(scope="module")
def alice(hub):
    from fedhub.client import _overrides

    configure(url=f"{hub.url}/services/experiments/", token=hub.token("alice"))
    import fedhub

    yield fedhub.datasets
    _overrides.clear()  # the next module's client finds its own service


def call(hub, user, method, path, **kw):
    return hub.api(method, f"{SERVICE}{path}", hub.token(user), **kw)


def churn(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"age": rng.integers(18, 90, rows), "spend": rng.normal(50, 10, rows)})
    df["churned"] = np.where(df["spend"] > 50, "yes", "no")
    return df


def test_register_list_describe(hub, alice):
    first = alice.register("churn", churn(), label="churned", card="Accounts of 2025.")
    assert first["ref"] == "tenant/churn@1" and first["rows"] == 120
    second = alice.register("churn", churn(80), label="churned")
    assert second["version"] == 2

    listed = alice.list()
    assert [(d["name"], d["versions"]) for d in listed] == [("churn", [1, 2])]
    info = alice.describe("churn", version=1)
    assert info["version"]["schema"]["label"] == {
        "name": "churned",
        "num_classes": 2,
        "classes": ["no", "yes"],
    }
    assert "Accounts of 2025." in info["card"] and first["sha256"] in info["card"]

    # on disk: the tenant account's, private, and what was uploaded
    folder = hub.state_dir / "tenant-data" / "acme" / "datasets" / "churn" / "1"
    owner = accounts.lookup(accounts.tenant_account("acme"))
    for path in (hub.state_dir / "tenant-data" / "acme", folder, folder / "arrays.npz"):
        st = os.stat(path)
        assert st.st_uid == owner.pw_uid
        assert stat.S_IMODE(st.st_mode) == (0o700 if path.is_dir() else 0o600)
    assert len(load_arrays(folder)["y"]) == 120

    events = [e for e in _spooled(hub) if e["action"] == "dataset.registered"]
    assert {(e["tenant"], e["actor"], e["details"]["version"]) for e in events} == {
        ("acme", "alice", 1),
        ("acme", "alice", 2),
    }


def test_another_tenant_sees_nothing_and_an_analyst_cannot_write(hub, alice):
    assert call(hub, "bob", "GET", "/datasets").json()["datasets"] == []
    for method, path in [("GET", "/datasets/churn"), ("DELETE", "/datasets/churn"),
                         ("DELETE", "/datasets/churn/1"), ("GET", "/datasets?tenant=acme")]:  # fmt: skip
        r = call(hub, "bob", method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "not_found"
    # an analyst of acme reads but does not write
    assert call(hub, "dave", "GET", "/datasets/churn").status_code == 200
    r = call(hub, "dave", "DELETE", "/datasets/churn")
    assert r.status_code == 403 and "experiments:run" in r.json()["error"]["message"]
    assert [d["name"] for d in alice.list()] == ["churn"]


def test_bad_uploads_get_a_reason(hub):
    def upload(meta, body=b"x", user="alice", name="bad"):
        header = base64.urlsafe_b64encode(json.dumps(meta).encode()).decode()
        return call(hub, user, "POST", f"/datasets/{name}", data=body,
                    headers={"X-Fedhub-Dataset": header})  # fmt: skip

    schema = {"features": [{"name": "a", "dtype": "float32"}],
              "label": {"name": "y", "num_classes": 2}}  # fmt: skip
    cases = [
        (upload({"schema": schema}), "readable .npz"),
        (upload({"schema": {"features": []}}), "at least one feature"),
        (upload({"schema": schema, "sha256": "0" * 64}), "does not match"),
        (upload({"schema": schema}, name="Bad Name"), "dataset name"),
        (call(hub, "alice", "POST", "/datasets/bad", data=b"x"), "X-Fedhub-Dataset"),
    ]
    for r, message in cases:
        assert r.status_code == 400, r.text
        assert message in r.json()["error"]["message"]
    assert call(hub, "alice", "GET", "/datasets/bad").status_code == 404


def test_over_storage_gb_is_refused(hub):
    # initech's free tier allows 1 GB; carol's home already holds a full one
    home = hub.state_dir / "homes" / "carol"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "big.bin", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, 1024**3)
    try:
        configure(token=hub.token("carol"))
        import fedhub

        with pytest.raises(FedhubAPIError) as refused:
            fedhub.datasets.register("churn", churn(), label="churned")
        assert refused.value.status == 429
        assert "storage" in refused.value.message and "free" in refused.value.message
    finally:
        (home / "big.bin").unlink()
        configure(token=hub.token("alice"))
    assert not (hub.state_dir / "tenant-data" / "initech" / "datasets" / "churn").exists()


def test_an_experiment_trains_on_the_tenants_own_workers(hub, alice):
    spec = {"dataset": "tenant/churn@latest", "clients": 3, "clients_per_round": 3,
            "rounds": 2, "partition": "dirichlet", "partition_params": {"alpha": 1.0},
            "lr": 0.1, "seed": 2}  # fmt: skip
    r = call(hub, "alice", "POST", "/experiments", json=spec)
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["spec"]["dataset"] == "tenant/churn@2"  # pinned when submitted
    done = wait_for(
        lambda: (
            (d := call(hub, "alice", "GET", f"/experiments/{run['id']}").json())
            and d["status"] in ("completed", "failed", "cancelled")
            and d
        ),
        180,
        0.5,
        "the tenant-data experiment",
    )
    assert done["status"] == "completed", done["error"]
    assert len(done["metrics"]) == 2 and 0.0 <= done["metrics"][-1]["test_accuracy"] <= 1.0
    # it ran on workers of acme's own account (they idle on after the run)
    uid = accounts.lookup(accounts.tenant_account("acme")).pw_uid
    workers = [p for p in psutil.process_iter(["uids", "cmdline"])
               if p.info["uids"] and p.info["uids"].real == uid
               and "fedhub.services.experiments.worker" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    assert workers

    # bob's tenant has no such dataset; a bad reference names the field
    for dataset, message in [("tenant/churn", "no dataset 'churn'"),
                             ("tenant/Churn@1", "dataset name")]:  # fmt: skip
        r = call(hub, "bob", "POST", "/experiments", json={**spec, "dataset": dataset})
        assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
    r = call(hub, "alice", "POST", "/experiments", json={**spec, "dataset": "tenant/churn@9"})
    assert r.status_code == 400 and "no version 9" in r.json()["error"]["message"]


def test_globex_account_cannot_open_acme_files_and_delete_removes_them(hub, alice):
    folder = hub.state_dir / "tenant-data" / "acme" / "datasets" / "churn" / "1"
    globex = accounts.ensure_account(accounts.tenant_account("globex"))
    code = "import sys\ntry:\n open(sys.argv[1], 'rb')\nexcept PermissionError:\n print('denied')"
    for target in (folder / "arrays.npz", folder / "manifest.json"):
        out = subprocess.run(
            [sys.executable, "-c", code, str(target)],
            user=globex.pw_uid,
            group=globex.pw_gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            cwd="/",
            timeout=60,
        )
        assert out.stdout.strip() == "denied", out.stderr
    assert alice.delete("churn", version=1) == [1]
    assert not folder.exists()
    assert alice.delete("churn") == [2]
    assert alice.list() == []
    assert [e["details"]["versions"] for e in _spooled(hub) if e["action"] == "dataset.deleted"] \
        == [[1], [2]]  # fmt: skip


def _spooled(hub) -> list[dict]:
    out = []
    for f in (hub.state_dir / "spool").glob("events-*.jsonl"):
        out += [json.loads(line) for line in f.read_text().splitlines() if line]
    return out
