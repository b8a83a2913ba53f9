"""Federations on a real hub: acme, globex and initech train one model on their private data.

One hub for the module, on PostgreSQL (so row-level security stands under the service's
own filters), with the experiments service and its Dask workers; tenants' own workers
start on demand. Each member registers a label-skewed slice of scikit-learn's
digits in its own dataset store (files of its tenant account, 0700/0600), and the
federation runs a few rounds with secure aggregation. The module shows:

- the API's rules: only tenant admins change a federation, an unknown invitee is a 404, a
  schema mismatch a 400 naming the differences, a second join a 409, a run a 409 before
  two members joined, a member's tier refusing the run a 429 naming the member;
- a tenant outside the federation gets 404 on every endpoint, as its admin, its member
  and its analyst;
- must-show 1: the federated model beats each member's local-only model on that member's
  own test data (both computed by the service on the member's own workers);
- must-show 2: during the run, a process of globex's account cannot open acme's dataset
  file (acme's account can), and what the coordinator received holds no row of data;
- must-show 5: each member's draft invoice shows its own client time only, and each
  member's audit chain holds the federation's events.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import pwd
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import psutil
import pytest

from fedhub import accounts
from fedhub.db import rls
from fedhub.tenancy.models import Role
from fedhub.tenancy.store import TenantStore
from tests.harness import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

API = "/services/experiments/api/v1"
MEMBERS = ("acme", "globex", "initech")
#: each member's "home" digits: most of its training rows are of these classes
HOME = {"acme": (0, 1, 2), "globex": (3, 4, 5), "initech": (6, 7, 8, 9)}
TASK = {"model": "mlp", "model_params": {"hidden": 64}, "rounds": 8, "local_epochs": 5,
        "batch_size": 32, "lr": 0.3, "seed": 3, "compare_local_only": True}  # fmt: skip
SCHEMA_FEATURES = [{"name": f"px{i}", "dtype": "float32"} for i in range(64)]
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="tenant accounts need root")


def digits_slices(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Non-IID slices of one task: each member trains on 120 rows of its home digits and 12
    of the others, and tests on 60 rows of every digit (the data it will meet)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    taken = np.zeros(len(y), bool)
    out = {}
    for tenant, home in HOME.items():
        at_home = [i for i in order if y[i] in home and not taken[i]][:120]
        taken[at_home] = True
        away = [i for i in order if y[i] not in home and not taken[i]][:12]
        taken[away] = True
        test = list(rng.choice(np.flatnonzero(~taken), 60, replace=False))
        taken[test] = True
        idx = np.array(at_home + away + test)
        split = np.r_[np.zeros(len(at_home) + len(away), np.uint8), np.ones(len(test), np.uint8)]
        mix = rng.permutation(len(idx))
        out[tenant] = {"x": x[idx[mix]], "y": y[idx[mix]].astype(np.int64), "split": split[mix]}
    return out


def schema(label: str = "digit") -> dict:
    return {"features": SCHEMA_FEATURES, "label": {"name": label, "num_classes": 10}}


def upload(hub, user: str, name: str, arrays: dict, schema: dict) -> None:
    """``POST /datasets/<name>``: the .npz as the body, the schema in X-Fedhub-Dataset."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    meta = base64.urlsafe_b64encode(json.dumps({"schema": schema}).encode()).decode()
    r = hub.api("POST", f"{API}/datasets/{name}", hub.token(user), data=buf.getvalue(),
                headers={"X-Fedhub-Dataset": meta, "Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text


class Caller:
    def __init__(self, hub, user: str):
        self.hub, self.user, self.token = hub, user, hub.token(user)

    def __call__(self, method: str, path: str = "", **kw):
        return self.hub.api(method, f"{API}/federations{path}", self.token, **kw)


@pytest.fixture(scope="module")
def fed_hub(hub_factory, postgres):
    env = {"FEDHUB_EXPERIMENTS_WORKERS": "1", "FEDHUB_EXPERIMENTS_KEEP_RECEIVED": "1"}
    # PostgreSQL: the ORM filters and, under them, row-level security (rls.TENANT_TABLES)
    hub = hub_factory(db_url=postgres.create_database(f"fed_{uuid.uuid4().hex[:10]}"), env=env)
    with rls.platform():
        store = TenantStore(hub.db_url)
        store.create_tenant("hooli", "Hooli", "starter", actor="tests")
        for user, tenant, role in (
            ("initech-admin", "initech", Role.TENANT_ADMIN),
            ("hooli-admin", "hooli", Role.TENANT_ADMIN),
            ("hooli-member", "hooli", Role.MEMBER),
            ("hooli-analyst", "hooli", Role.ANALYST),
        ):
            store.add_user(user, tenant, role, password=hub.password, actor="tests")
    wait_for(lambda: Caller(hub, "alice")("GET").status_code == 200, 120, 0.3, "the service")
    # each member registers its private dataset through the service's datasets API
    data = digits_slices()
    for tenant, name, label in [(t, "digits", "digit") for t in MEMBERS] + [
        ("initech", "other", "number")
    ]:
        upload(hub, f"{tenant}-admin", name, data[tenant], schema(label))
    from fedhub.datasets import DatasetStore

    store = DatasetStore(Path(hub.state_dir) / "tenant-data")
    hub.datasets, hub.data = store, data
    return hub


@pytest.fixture(scope="module")
def call(fed_hub):
    callers: dict[str, Caller] = {}

    def get(user: str) -> Caller:
        if user not in callers:
            callers[user] = Caller(fed_hub, user)
        return callers[user]

    return get


def create(call, user: str = "acme-admin", **extra) -> dict:
    body = {"name": "digits", "task": TASK, "dataset": "digits", **extra}
    r = call(user)("POST", json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def federation(call):
    """acme's federation with globex and initech joined (not yet run)."""
    fed = create(call, privacy={"secure_aggregation": True})
    fid = fed["id"]
    for tenant in ("globex", "initech"):
        r = call("acme-admin")("POST", f"/{fid}/invitations", json={"tenant": tenant})
        assert r.status_code == 201, r.text
    for tenant in ("globex", "initech"):
        r = call(f"{tenant}-admin")("POST", f"/{fid}/join", json={"dataset": "digits@latest"})
        assert r.status_code == 200, r.text
    return r.json()


def test_only_tenant_admins_change_a_federation_and_the_state_machine_holds(call, federation):
    fid = federation["id"]
    assert [(m["tenant"], m["state"]) for m in federation["members"]] == [
        ("acme", "joined"), ("globex", "joined"), ("initech", "joined")]  # fmt: skip
    # a member sees its own binding, not the others'
    mine = {m["tenant"]: m.get("dataset") for m in call("globex-admin")("GET", f"/{fid}").json()["members"]}  # fmt: skip
    assert mine == {"acme": None, "globex": "digits@1", "initech": None}
    # members and analysts read, only admins change
    r = call("alice")("POST", json={"name": "x", "dataset": "digits"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert call("dave")("GET", f"/{fid}").status_code == 200
    assert call("dave")("POST", f"/{fid}/run").status_code == 403
    assert call("bob")("POST", f"/{fid}/cancel").status_code == 403
    # bad requests name what is wrong
    admin = call("acme-admin")
    r = admin("POST", json={"name": "x", "dataset": "digits", "schema": {"features": []}})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("schema: ")
    r = admin("POST", json={"name": "x", "dataset": "nope"})
    assert r.status_code == 404 and "no dataset 'nope'" in r.json()["error"]["message"]
    r = admin("POST", json={"name": "x", "dataset": "digits", "task": {"model": "gpt"}})
    assert r.status_code == 400 and "task.model: unknown model 'gpt'" in r.text
    r = admin("POST", json={"name": "x", "dataset": "digits", "task": {"rounds": 0}})
    assert r.status_code == 400 and r.json()["error"]["details"]["fields"] == ["task.rounds"]
    # a second join, an unknown invitee, a member inviting
    r = call("globex-admin")("POST", f"/{fid}/join", json={"dataset": "digits"})
    assert r.status_code == 409 and "already joined" in r.json()["error"]["message"]
    r = call("acme-admin")("POST", f"/{fid}/invitations", json={"tenant": "nosuchco"})
    assert r.status_code == 404
    r = call("globex-admin")("POST", f"/{fid}/invitations", json={"tenant": "hooli"})
    assert r.status_code == 403

    # another federation: a schema mismatch names the field, one member cannot run
    other = create(call)
    oid = other["id"]
    assert call("acme-admin")("POST", f"/{oid}/run").status_code == 409
    call("acme-admin")("POST", f"/{oid}/invitations", json={"tenant": "initech"})
    call("acme-admin")("POST", f"/{oid}/invitations", json={"tenant": "globex"})
    r = call("initech-admin")("POST", f"/{oid}/join", json={"dataset": "other"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert "label is 'number', expected 'digit'" in err["message"]
    assert err["details"]["differences"] == ["the label is 'number', expected 'digit'"]
    r = call("globex-admin")("POST", f"/{oid}/decline")
    assert r.status_code == 200 and {m["tenant"]: m["state"] for m in r.json()["members"]}[
        "globex"] == "declined"  # fmt: skip
    assert (
        call("globex-admin")("POST", f"/{oid}/join", json={"dataset": "digits"}).status_code == 409
    )
    r = call("acme-admin")("POST", f"/{oid}/run")
    assert r.status_code == 409 and "at least 2 members" in r.json()["error"]["message"]
    # initech (free tier: max_local_epochs 5) refuses a task of 6 local epochs: 429 naming it
    big = create(call, task={**TASK, "local_epochs": 6})
    call("acme-admin")("POST", f"/{big['id']}/invitations", json={"tenant": "initech"})
    assert call("initech-admin")("POST", f"/{big['id']}/join", json={"dataset": "digits"}).ok
    r = call("acme-admin")("POST", f"/{big['id']}/run")
    assert r.status_code == 429, r.text
    assert r.json()["error"]["message"].startswith("member initech: ")
    assert r.json()["error"]["details"]["limit"] == "max_local_epochs"
    for f in (oid, big["id"]):
        assert call("acme-admin")("POST", f"/{f}/cancel").json()["status"] == "cancelled"


def outsider_requests(fid: str) -> list[tuple[str, str, dict]]:
    return [
        ("GET", f"/{fid}", {}),
        ("POST", f"/{fid}/invitations", {"json": {"tenant": "hooli"}}),
        ("POST", f"/{fid}/join", {"json": {"dataset": "digits"}}),
        ("POST", f"/{fid}/decline", {}),
        ("POST", f"/{fid}/run", {}),
        ("POST", f"/{fid}/cancel", {}),
        ("GET", f"/{fid}/rounds", {}),
        ("GET", f"/{fid}/metrics", {}),
        ("GET", f"/{fid}/model", {}),
    ]


@pytest.mark.parametrize("user", ["hooli-admin", "hooli-member", "hooli-analyst"])
def test_a_tenant_outside_the_federation_gets_404_everywhere(call, federation, user):
    fid = federation["id"]
    for method, path, kw in outsider_requests(fid):
        r = call(user)(method, path, **kw)
        assert r.status_code == 404, (user, method, path, r.status_code, r.text)
        assert r.json()["error"]["message"] == "no such federation", (path, r.text)
    listed = call(user)("GET").json()["federations"]
    assert fid not in {f["id"] for f in listed}


def _cat(path: Path, account: str) -> subprocess.CompletedProcess:
    """``cat path`` as ``account`` (its uid and group, no supplementary groups)."""
    entry = pwd.getpwnam(account)
    cmd = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
           "cat", str(path)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def trained(fed_hub, call, federation):
    """Run the federation; while it runs, probe who can read acme's data."""
    fid = federation["id"]
    r = call("acme-admin")("POST", f"/{fid}/run")
    assert r.status_code == 202, r.text
    acme_file = fed_hub.datasets.version_dir("acme", "digits") / "arrays.npz"
    probes = {}

    def during_run():
        fed = call("alice")("GET", f"/{fid}").json()
        if fed["status"] != "running" or fed["rounds_done"] < 1:
            return fed["status"] not in ("draft", "running") and fed  # ended early: fail below
        owners = {}
        for p in psutil.process_iter(["username"]):
            owners.setdefault(p.info["username"], []).append(p.pid)
        probes["workers"] = {t: len(owners.get(accounts.tenant_account(t), [])) for t in MEMBERS}
        if os.geteuid() == 0:
            probes["globex"] = _cat(acme_file, accounts.tenant_account("globex"))
            probes["acme"] = _cat(acme_file, accounts.tenant_account("acme"))
        probes["status"] = call("alice")("GET", f"/{fid}").json()["status"]
        return fed

    wait_for(during_run, 90, 0.2, "the federation's first round")
    done = wait_for(
        lambda: (
            (f := call("acme-admin")("GET", f"/{fid}").json())["status"] not in ("draft", "running")
            and f
        ),
        120,
        0.5,
        "the federation to end",
    )
    assert done["status"] == "finished", done
    return fid, done, probes


def test_the_federated_model_beats_every_members_local_model(call, trained):
    fid, fed, _ = trained
    assert fed["rounds_done"] == TASK["rounds"]
    for tenant in MEMBERS:
        admin = call(f"{tenant}-admin")
        mine = admin("GET", f"/{fid}/metrics").json()
        assert [m["round"] for m in mine["rounds"]] == list(range(1, TASK["rounds"] + 1))
        federated = mine["rounds"][-1]["accuracy"]
        local = mine["local_only"]["accuracy"]
        print(f"{tenant}: federated {federated:.3f} vs local-only {local:.3f} on its own test")
        assert federated > local, (tenant, federated, local)
    # aggregate rounds for every member, analysts included; each member's own metrics only
    rounds = call("dave")("GET", f"/{fid}/rounds").json()["rounds"]
    assert len(rounds) == TASK["rounds"] and "per_member" not in rounds[0]
    assert rounds[-1]["aggregate"]["accuracy"] > 0.5
    assert call("bob")("GET", f"/{fid}/metrics").json()["tenant"] == "globex"
    # the final model for every member
    model = call("bob")("GET", f"/{fid}/model")
    assert model.status_code == 200
    with np.load(io.BytesIO(model.content)) as npz:
        assert npz["weights"].ndim == 1 and npz["weights"].size > 64 * 32


@ROOT_ONLY
def test_during_the_run_no_other_account_reads_a_members_data(fed_hub, trained):
    fid, _, probes = trained
    assert probes["status"] == "running"
    # each member's workers run as its own account
    assert all(n >= 1 for n in probes["workers"].values()), probes["workers"]
    denied, allowed = probes["globex"], probes["acme"]
    assert denied.returncode != 0 and b"Permission denied" in denied.stderr, denied
    assert allowed.returncode == 0 and allowed.stdout[:2] == b"PK", allowed.stderr  # a zip
    # what the coordinator received: per round and member, masked vectors, counts and
    # metrics; no array holds a row of any member's data
    received = pickle.loads(
        (Path(fed_hub.state_dir) / "federations" / fid / "received.pkl").read_bytes()
    )
    assert len(received) == TASK["rounds"]
    arrays = list(_arrays(received))
    assert arrays, "the coordinator received no update vectors"
    rows = np.concatenate([d["x"] for d in fed_hub.data.values()])
    row_bytes = {r.tobytes() for r in rows}
    for a in arrays:
        assert not (a.ndim == 2 and a.shape[1] == rows.shape[1]), a.shape
        if a.dtype == np.float32 and a.size >= rows.shape[1]:
            windows = np.lib.stride_tricks.sliding_window_view(a.ravel(), rows.shape[1])
            assert not any(w.tobytes() in row_bytes for w in windows)
    assert any(a.dtype.kind == "u" for a in arrays), "secure aggregation: masked integers"


def _arrays(value):
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _arrays(v)


def test_each_member_is_billed_its_own_client_time_and_audited(fed_hub, call, trained):
    fid, fed, _ = trained
    seconds = {}
    for tenant in MEMBERS:
        mine = call(f"{tenant}-admin")("GET", f"/{fid}/metrics").json()["rounds"]
        seconds[tenant] = sum(m["client_seconds"] for m in mine)
    assert len(set(seconds.values())) == 3  # three different amounts of work
    # close the running month as billing will after it ends: draft invoices
    from fedhub.billing.periods import containing
    from fedhub.db import utcnow

    period = containing(utcnow())
    env = dict(fed_hub.env, FEDHUB_BILLING_NOW=(period.end + timedelta(hours=1)).isoformat())
    cmd = [*fed_hub.command, "--db-url", fed_hub.db_url, "--state-dir", str(fed_hub.state_dir),
           "billing", "close-period", "--period", period.name]  # fmt: skip
    for tenant in MEMBERS:
        cmd += ["--tenant", tenant]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    for tenant in MEMBERS:
        admin = fed_hub.token(f"{tenant}-admin")
        [inv] = fed_hub.api("GET", "/services/billing/api/v1/invoices", admin).json()["invoices"]
        doc = fed_hub.api("GET", f"/services/billing/api/v1/invoices/{inv['id']}", admin).json()
        assert doc["status"] == "draft" and doc["tenant"] == tenant
        [line] = [
            ln for ln in doc["lines"] if ln["type"] == "usage" and ln["meter"] == "client_hours"
        ]
        billed = float(line["usage"]) * 3600  # client-hours to 6 decimals: 3.6 ms
        assert billed == pytest.approx(seconds[tenant], abs=0.004), (tenant, line, seconds)
        others = sum(seconds.values()) - seconds[tenant]
        assert abs(billed - seconds[tenant]) < others / 10, (tenant, billed, seconds)
    # every member's chain: created .. finished (invited/joined as they took part)
    wanted = {"federation.started", "federation.round_completed", "federation.finished",
              "federation.joined", "federation.dataset_bound", "federation.invited"}  # fmt: skip
    for tenant in MEMBERS:
        admin = fed_hub.token(f"{tenant}-admin")

        def chain(admin=admin, tenant=tenant):
            r = fed_hub.api("GET", "/services/audit/api/v1/events?action=federation.&limit=500",
                            admin)  # fmt: skip
            events = [e for e in r.json()["events"] if e["target"] == f"federation:{fid}"]
            return wanted <= {e["action"] for e in events} and events

        events = wait_for(chain, 30, 0.5, f"{tenant}'s federation events")
        assert {e["tenant"] for e in events} == {tenant}
        rounds = [e for e in events if e["action"] == "federation.round_completed"]
        assert sorted(e["details"]["round"] for e in rounds) == list(range(1, TASK["rounds"] + 1))
        # another tenant's users are not named in this chain
        assert {e["actor"] for e in events} <= {None, f"{tenant}-admin"}
    acme_chain = fed_hub.api("GET", "/services/audit/api/v1/events?action=federation.created&limit=500",
                             fed_hub.token("acme-admin")).json()["events"]  # fmt: skip
    assert any(e["target"] == f"federation:{fid}" for e in acme_chain)


def test_a_federation_stops_before_its_epsilon_budget_would_be_exceeded(call, trained):
    """Client-level DP: ε per round as the accountant says, and a stop (``stopped_budget``)
    before the round that would spend more than the budget. Last in the module: its
    client time is not in the invoices checked above."""
    from fedhub.fl.privacy import PrivacyAccountant

    dp = {"noise_multiplier": 1.0, "clip_norm": 5.0, "delta": 1e-5}
    accountant = PrivacyAccountant(dp["noise_multiplier"], 1.0, dp["delta"])
    budget = (accountant.epsilon(2) + accountant.epsilon(3)) / 2  # two rounds fit, not three
    task = {**TASK, "rounds": 5, "compare_local_only": False}
    fed = create(call, task=task, privacy={"dp": {**dp, "epsilon_budget": budget}})
    fid = fed["id"]
    assert call("acme-admin")("POST", f"/{fid}/invitations", json={"tenant": "globex"}).ok
    assert call("globex-admin")("POST", f"/{fid}/join", json={"dataset": "digits"}).ok
    assert call("acme-admin")("POST", f"/{fid}/run").status_code == 202
    done = wait_for(
        lambda: (f := call("bob")("GET", f"/{fid}").json())["status"] not in ("running",) and f,
        90,
        0.5,
        "the DP federation to end",
    )
    assert done["status"] == "stopped_budget", done
    assert done["rounds_done"] == 2
    rounds = call("bob")("GET", f"/{fid}/rounds").json()
    assert [r["epsilon"] for r in rounds["rounds"]] == pytest.approx(
        [accountant.epsilon(1), accountant.epsilon(2)]
    )
    assert rounds["epsilon"] == pytest.approx(accountant.epsilon(2)) and rounds["epsilon"] <= budget
    assert call("alice")("GET", f"/{fid}/model").status_code == 200  # the model so far
