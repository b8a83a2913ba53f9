"""Must-show 1: alice (acme) logs in, starts her server, runs the tutorial notebook with
papermill in her server's environment, and the experiment's metrics are in the API.

papermill runs here in the test process with exactly what the tier spawner gives the
server (alice's JupyterHub token and ``FEDHUB_EXPERIMENTS_URL``); the server's own
environment is checked through the fedhub server extension, which reads the same
variables inside the running server.
"""

from pathlib import Path

import papermill
import pytest

from tests.experiments.conftest import ROOT, service_url
from tests.harness import wait_for

pytestmark = pytest.mark.slow


def test_alice_runs_the_tutorial_notebook(exp_hub, api, tmp_path, monkeypatch):
    hub = exp_hub
    assert hub.login("alice").status_code == 302
    token = hub.token("alice")
    r = hub.api("POST", "/hub/api/users/alice/server", token)
    assert r.status_code in (201, 202, 400), r.text  # 400: the form login already started it

    def ready():
        server = hub.api("GET", "/hub/api/users/alice", token).json()["servers"].get("")
        return server and server["ready"]

    wait_for(ready, 90, 0.5, "alice's server")
    try:
        # the server extension, inside alice's server, sees her tenant and the service
        q = hub.api("GET", "/user/alice/fedhub/api/quota", token)
        assert q.status_code == 200, q.text
        quota = q.json()
        assert quota["tenant"] == "acme" and quota["tier"] == "professional", quota
        assert "error" not in quota, quota.get("error")
        assert quota["limits"]["max_clients_per_experiment"] == 500, quota

        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
        monkeypatch.setenv("FEDHUB_EXPERIMENTS_URL", service_url(hub))
        out = tmp_path / "experiments-out.ipynb"
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "tutorials" / "experiments.ipynb"),
            str(out),
            parameters={"rounds": 4, "clients": 8, "clients_per_round": 4},
            cwd=str(tmp_path),
            kernel_name="python3",
            progress_bar=False,
        )
        text = Path(out).read_text()
        assert "final accuracy" in text and "max_clients_per_experiment" in text
    finally:
        hub.api("DELETE", "/hub/api/users/alice/server", token)

    runs = api("alice").call("GET", "/experiments").json()["experiments"]
    tutorial = next(e for e in runs if e["name"].startswith("tutorial:"))
    done = api("alice").get(tutorial["id"])
    assert done["status"] == "completed" and done["user"] == "alice"
    assert done["spec"]["strategy"] == "fedprox" and done["spec"]["strategy_params"] == {"mu": 1.0}
    assert [m["round"] for m in done["metrics"]] == [1, 2, 3, 4]
