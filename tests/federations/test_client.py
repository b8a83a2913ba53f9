"""The notebook client of federations (fedhub.federations) and its watch widget, against a
tiny in-process tornado app that answers with the agreed API shapes (docs/federations.md).

What is checked here is the client's side: the requests it makes (paths, bodies, the
dataset reference it sends), how it reads the answers (pagination, round records, the
model's npz) and how refusals become :class:`FedhubAPIError`; and what the widget shows
from those answers. The real service on a real hub, with its tenant isolation and
privacy, is tested end to end by the other modules of this folder.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

import fedhub
from fedhub import client
from fedhub.client import FedhubAPIError
from tests.harness import wait_for

TOKENS = {
    "acme-admin": ("acme", True),
    "alice": ("acme", False),
    "globex-admin": ("globex", True),
    "initech-admin": ("initech", True),
}


class FakeService:
    """In-memory federations with the API's shapes and refusals; ``requests`` records
    each call (method, path, body) for the assertions."""

    def __init__(self) -> None:
        self.feds: dict[str, dict] = {}
        self.rounds: dict[str, list[dict]] = {}
        self.per_member: dict[str, dict[str, list[dict]]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.local_only: set[str] = set()
        self.lock = threading.Lock()

    def view(self, fed: dict, tenant: str) -> dict:
        """The federation as ``tenant`` sees it: only its own dataset is named."""
        members = [
            {"tenant": m["tenant"], "member_id": i + 1, "state": m["state"],
             **({"dataset": m.get("dataset")} if m["tenant"] == tenant else {})}
            for i, m in enumerate(fed["members"])
        ]  # fmt: skip
        return {**{k: v for k, v in fed.items() if k != "members"}, "members": members}

    def add_round(self, fed_id: str, accuracy: float, mine: dict[str, float]) -> None:
        """What the runner would store after a round."""
        with self.lock:
            fed = self.feds[fed_id]
            n = fed["rounds_done"] + 1
            dp = fed["privacy"].get("dp")
            eps = round(0.5 * n, 3) if dp else None
            self.rounds[fed_id].append(
                {"round": n, "members": [0, 1], "dropped": [], "epsilon": eps,
                 "aggregate": {"accuracy": accuracy, "loss": 1.0 - accuracy, "examples": 200},
                 "duration_s": 0.1}
            )  # fmt: skip
            for tenant, acc in mine.items():
                self.per_member[fed_id].setdefault(tenant, []).append(
                    {"round": n, "accuracy": acc, "loss": 1.0 - acc, "client_seconds": 0.5,
                     "examples": 100}
                )  # fmt: skip
            fed.update(rounds_done=n, epsilon=eps)
            if n >= fed["rounds"]:
                fed["status"] = "finished"


def make_app(svc: FakeService) -> tornado.web.Application:
    class Base(tornado.web.RequestHandler):
        def prepare(self):
            auth = self.request.headers.get("Authorization", "")
            token = auth.removeprefix("token ")
            if token not in TOKENS:
                self.fail(403, "forbidden", "no valid token")
            self.tenant, self.admin = TOKENS[token]
            body = json.loads(self.request.body) if self.request.body else None
            svc.requests.append((self.request.method, self.request.path, body))
            self.body = body or {}

        def fail(self, status: int, code: str, message: str):
            self.set_status(status)
            self.finish({"error": {"code": code, "message": message}})
            raise tornado.web.Finish()

        def fed(self, fed_id: str) -> dict:
            fed = svc.feds.get(fed_id)
            if fed is None or self.tenant not in {m["tenant"] for m in fed["members"]}:
                self.fail(404, "not_found", f"no federation {fed_id}")
            return fed

        def member(self, fed: dict) -> dict:
            return next(m for m in fed["members"] if m["tenant"] == self.tenant)

        def answer(self, fed: dict):
            self.finish(svc.view(fed, self.tenant))

    class Federations(Base):
        def get(self):
            mine = [svc.view(f, self.tenant) for f in reversed(svc.feds.values())
                    if self.tenant in {m["tenant"] for m in f["members"]}]  # fmt: skip
            start = int(self.get_argument("cursor", "0"))
            limit = int(self.get_argument("limit", "500"))
            page = mine[start : start + limit]
            more = start + limit < len(mine)
            self.finish({"federations": page, "next_cursor": str(start + limit) if more else None})

        def post(self):
            if not self.admin:
                self.fail(403, "forbidden", "only a tenant admin can create a federation")
            task = self.body.get("task") or {}
            if not isinstance(task.get("rounds"), int) or task["rounds"] < 1:
                self.fail(400, "invalid_task", "task.rounds: a whole number of at least 1")
            if not str(self.body.get("dataset", "")).startswith("tenant/"):
                self.fail(400, "invalid_dataset", "dataset: tenant/<name>@<version>")
            fed_id = uuid.uuid4().hex[:16]
            svc.feds[fed_id] = {
                "id": fed_id, "name": self.body["name"], "owner": self.tenant,
                "status": "draft", "task": task, "privacy": self.body["privacy"],
                "rounds": task["rounds"], "rounds_done": 0, "epsilon": None,
                "members": [{"tenant": self.tenant, "state": "joined", "role": "owner",
                             "dataset": self.body["dataset"]}],
            }  # fmt: skip
            svc.rounds[fed_id], svc.per_member[fed_id] = [], {}
            self.set_status(201)
            self.answer(svc.feds[fed_id])

    class Federation(Base):
        def get(self, fed_id):
            self.answer(self.fed(fed_id))

    class Action(Base):
        def post(self, fed_id, action):
            fed = self.fed(fed_id)
            me = self.member(fed)
            if not self.admin:
                self.fail(403, "forbidden", "tenant admins only")
            if action == "invitations":
                if me["role"] != "owner":
                    self.fail(403, "forbidden", "only the owner invites")
                fed["members"].append(
                    {"tenant": self.body["tenant"], "state": "invited", "role": "member"}
                )
            elif action in ("join", "decline"):
                if me["state"] != "invited":
                    self.fail(409, "not_invited", f"{self.tenant} has already answered")
                me["state"] = "joined" if action == "join" else "declined"
                me["dataset"] = self.body.get("dataset")
            elif action == "run":
                if sum(m["state"] == "joined" for m in fed["members"]) < 2:
                    self.fail(409, "conflict", "needs at least 2 members that joined")
                fed["status"] = "running"
            elif action == "cancel":
                fed["status"] = "cancelled"
            self.answer(fed)

    class Rounds(Base):
        def get(self, fed_id):
            self.fed(fed_id)
            self.finish({"federation": fed_id, "status": svc.feds[fed_id]["status"],
                         "epsilon": svc.feds[fed_id]["epsilon"], "rounds": svc.rounds[fed_id]})  # fmt: skip

    class Metrics(Base):
        def get(self, fed_id):
            self.fed(fed_id)
            rows = svc.per_member[fed_id].get(self.tenant, [])
            local = {"accuracy": 0.6, "loss": 0.9} if fed_id in svc.local_only else None
            self.finish({"federation": fed_id, "tenant": self.tenant, "rounds": rows,
                         "local_only": local})  # fmt: skip

    class Model(Base):
        def get(self, fed_id):
            fed = self.fed(fed_id)
            if fed["status"] != "finished":
                self.fail(404, "not_found", f"federation {fed_id} has no final model")
            buf = io.BytesIO()
            np.savez(buf, weights=np.arange(6, dtype=np.float32))
            self.set_header("Content-Type", "application/octet-stream")
            self.finish(buf.getvalue())

    class Broken(tornado.web.RequestHandler):
        def get(self):
            self.set_status(502)
            self.finish("<html>bad gateway</html>")

    prefix = r"/services/experiments/api/v1/federations"
    return tornado.web.Application([
        (prefix, Federations),
        (prefix + r"/([0-9a-f]+)", Federation),
        (prefix + r"/([0-9a-f]+)/(invitations|join|decline|run|cancel)", Action),
        (prefix + r"/([0-9a-f]+)/rounds", Rounds),
        (prefix + r"/([0-9a-f]+)/metrics", Metrics),
        (prefix + r"/([0-9a-f]+)/model", Model),
        (r"/services/experiments/api/v1/broken", Broken),
    ])  # fmt: skip


@pytest.fixture(scope="module")
def service():
    """The fake service on a loopback port, served by its own thread's event loop."""
    svc = FakeService()
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        server = tornado.httpserver.HTTPServer(make_app(svc))
        server.add_sockets(sockets)
        loop.call_soon(ready.set)
        loop.run_forever()
        server.stop()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    svc.url = f"http://127.0.0.1:{port}/services/experiments/"
    yield svc
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def as_user(service, monkeypatch):
    """``as_user("globex-admin")``: the client's calls from now on are that user's."""
    monkeypatch.setitem(client._overrides, "url", service.url)

    def switch(user: str) -> None:
        monkeypatch.setitem(client._overrides, "token", user)

    return switch


DP = {"noise_multiplier": 1.1, "clip_norm": 1.0, "delta": 1e-5, "epsilon_budget": 3.0}


def test_the_lifecycle_sends_the_agreed_requests(service, as_user):
    as_user("acme-admin")
    fed = fedhub.federations.create(
        "churn", dataset="churn@1", model="mlp", rounds=2, lr=0.1, secagg_threshold=2,
        model_params={"hidden": 16}, compare_local_only=True, dp=DP, invite=["globex"],
    )  # fmt: skip
    method, path, body = service.requests[-2]
    assert (method, path) == ("POST", "/services/experiments/api/v1/federations")
    assert body == {
        "name": "churn", "dataset": "tenant/churn@1",
        "task": {"model": "mlp", "rounds": 2, "lr": 0.1, "model_params": {"hidden": 16},
                 "compare_local_only": True},
        "privacy": {"secure_aggregation": True, "dp": DP, "secagg_threshold": 2},
    }  # fmt: skip
    assert service.requests[-1][1:] == (f"{path}/{fed.id}/invitations", {"tenant": "globex"})
    assert [(m["tenant"], m["state"]) for m in fed.members] == [
        ("acme", "joined"), ("globex", "invited")]  # fmt: skip

    # globex's admin sees the invitation and joins with one of globex's datasets
    as_user("globex-admin")
    assert [f.id for f in fedhub.federations.list()] == [fed.id]
    registered = {"name": "churn-eu", "version": 1, "ref": "tenant/churn-eu"}  # as register()
    joined = fedhub.federations.join(fed.id, dataset=registered)
    assert service.requests[-1][1:] == (f"{path}/{fed.id}/join", {"dataset": "tenant/churn-eu"})
    mine = {m["tenant"]: m for m in joined.members}
    assert mine["globex"] == {"tenant": "globex", "member_id": 2, "state": "joined",
                              "dataset": "tenant/churn-eu"}  # fmt: skip
    assert "dataset" not in mine["acme"]

    as_user("acme-admin")
    assert fed.run().info["status"] == "running"
    with pytest.raises(FedhubAPIError) as refused:
        fed.model()
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    assert fed.local_only() is None
    service.add_round(fed.id, 0.6, {"acme": 0.7, "globex": 0.5})
    service.add_round(fed.id, 0.8, {"acme": 0.85, "globex": 0.75})
    assert fed.wait(timeout=10, interval=0.05) == "finished"
    service.local_only.add(fed.id)
    assert fed.local_only() == {"accuracy": 0.6, "loss": 0.9}

    rounds = fed.rounds()
    assert list(rounds["round"]) == [1, 2]
    assert list(rounds["accuracy"]) == [0.6, 0.8] and list(rounds["epsilon"]) == [0.5, 1.0]
    assert list(fed.my_metrics()["accuracy"]) == [0.7, 0.85]  # acme's own, not globex's
    as_user("globex-admin")
    assert list(fedhub.federations.get(fed.id).my_metrics()["accuracy"]) == [0.5, 0.75]
    weights = fedhub.federations.get(fed.id).model()
    assert weights.dtype == np.float32 and weights.tolist() == [0, 1, 2, 3, 4, 5]


def test_refusals_become_fedhub_api_errors(service, as_user):
    as_user("acme-admin")
    fed = fedhub.federations.create("solo", dataset="a", rounds=1, invite=["globex"])
    # a tenant outside the federation: 404, as if it did not exist
    as_user("initech-admin")
    with pytest.raises(FedhubAPIError) as outside:
        fedhub.federations.get(fed.id)
    assert (outside.value.status, outside.value.code) == (404, "not_found")
    assert fed.id not in {f.id for f in fedhub.federations.list()}
    with pytest.raises(FedhubAPIError) as outside:
        fedhub.federations.join(fed.id, dataset="x")
    assert outside.value.status == 404
    # a member who is no admin; the owner starting with an unanswered invitation
    as_user("alice")
    with pytest.raises(FedhubAPIError, match="only a tenant admin") as member:
        fedhub.federations.create("mine", dataset="a")
    assert member.value.status == 403
    as_user("acme-admin")
    with pytest.raises(FedhubAPIError, match="at least 2 members") as early:
        fed.run()  # globex has not answered: acme alone
    assert (early.value.status, early.value.code) == (409, "conflict")
    with pytest.raises(FedhubAPIError) as bad:
        fedhub.federations.create("bad", dataset="a", rounds=0)
    assert (bad.value.status, bad.value.code) == (400, "invalid_task")
    # decline, then answering again is refused
    as_user("globex-admin")
    assert {m["tenant"]: m["state"] for m in fedhub.federations.decline(fed.id).members} == {
        "acme": "joined", "globex": "declined"}  # fmt: skip
    with pytest.raises(FedhubAPIError) as again:
        fedhub.federations.join(fed.id, dataset="x")
    assert again.value.code == "not_invited"
    # a proxy's HTML error page keeps its status
    with pytest.raises(FedhubAPIError) as proxy:
        client.request("GET", "api/v1/broken")
    assert (proxy.value.status, proxy.value.code) == (502, "http_502")
    with pytest.raises(TypeError, match="unknown task fields"):
        fedhub.federations.create("typo", dataset="a", round=3)
    with pytest.raises(ValueError, match="dataset"):
        fedhub.federations.create("empty", dataset="")


def test_list_follows_the_pages(service, as_user):
    as_user("initech-admin")
    made = [fedhub.federations.create(f"page {i}", dataset="d", rounds=1).id for i in range(5)]
    calls = len(service.requests)
    every = fedhub.federations.list(limit=None)
    assert [f.id for f in every][:5] == made[::-1]
    assert len(service.requests) - calls == 1  # one page of up to 500
    assert [f.id for f in fedhub.federations.list(limit=3)] == made[::-1][:3]


def test_the_watch_widget_shows_members_rounds_and_the_budget(service, as_user):
    from fedhub.extensions.widgets.federations import FederationMonitor

    as_user("acme-admin")
    fed = fedhub.federations.create("<b>churn</b>", dataset="churn", rounds=3, dp=DP,
                                    invite=["globex"])  # fmt: skip
    as_user("globex-admin")
    fedhub.federations.join(fed.id, dataset="churn-eu@2")
    as_user("acme-admin")
    fed.run()
    service.add_round(fed.id, 0.6, {"acme": 0.7, "globex": 0.5})

    still = FederationMonitor(fed, follow=False)
    assert "<b>churn</b>" not in still.chart.value and "&lt;b&gt;churn" in still.chart.value
    assert 'data-rounds="1"' in still.chart.value and 'data-my-rounds="1"' in still.chart.value
    assert "accuracy 0.600 · yours 0.700" in still.chart.value  # acme's own next to all
    table = re.sub(r" style='[^']*'", "", still.members.value)
    assert "<td>acme (owner)</td><td>joined</td><td>tenant/churn</td>" in table
    assert "<td>globex</td><td>joined</td><td>yes</td>" in table  # bound, not named to acme
    assert "churn-eu" not in table
    assert (still.epsilon_bar.max, still.epsilon_bar.value) == (3.0, 0.5)
    assert still.epsilon_label.value == "ε 0.50 of 3 (δ = 1e-05)"
    assert still.epsilon_box.layout.display is None
    assert (still.progress.value, still.progress.max) == (1, 3)
    assert 'data-status="running"' in still.status_label.value

    live = FederationMonitor(fed, interval=0.05)
    service.local_only.add(fed.id)
    service.add_round(fed.id, 0.7, {"acme": 0.8})
    service.add_round(fed.id, 0.8, {"acme": 0.85})
    wait_for(lambda: live.finished, 10, 0.05, "the widget to see the run finish")
    live._thread.join(5)
    assert live.progress.value == 3 and live.progress.bar_style == "success"
    assert 'data-rounds="3"' in live.chart.value
    assert "yours, local-only 0.600" in live.chart.value
    assert "fedhub-local-only" in live.chart.value
    assert "fedhub-local-only" not in still.chart.value
    assert live.epsilon_bar.value == 1.5 and live.epsilon_bar.bar_style == "info"

    plain = fedhub.federations.create("no dp", dataset="d", rounds=1)
    draft = FederationMonitor(plain, follow=False, interval=0.05)
    assert draft.epsilon_box.layout.display == "none"
    assert draft._pause() == 10.0 and live._pause() == 0.05  # a draft is polled slowly


def test_the_client_loads_no_widget_code_until_watch():
    """Federation.watch() imports the widget when called; importing the client does not."""
    code = (
        "import json, sys\n"
        "import fedhub\n"
        "fedhub.federations.Federation\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.startswith(('fedhub.extensions', 'ipywidgets', 'pandas', 'numpy')))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
