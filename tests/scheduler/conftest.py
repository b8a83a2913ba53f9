"""A hub whose scheduler looks for work every second, mails through an in-process SMTP
server (the sign-up tests' fixture), and whose tiers let acme schedule every few seconds
(``min_schedule_interval_minutes: 0.1``, a sixth cron field counts seconds) while
globex's starter tier keeps an hourly minimum, one job and only the python3 kernel."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

from fedhub import accounts
from fedhub.tiers import DEFAULT_TIERS_PATH
from tests.conftest import DEMO_PASSWORD
from tests.experiments.conftest import spooled_events, sql  # noqa: F401  (re-exported)
from tests.harness import HubProcess, wait_for
from tests.security.conftest import smtp  # noqa: F401  (the in-process SMTP server)

API = "/services/scheduler/api/v1"
ALICE_EMAIL = "alice@acme.example"


def tiers_file(folder: Path) -> Path:
    spec = yaml.safe_load(DEFAULT_TIERS_PATH.read_text())
    spec["tiers"]["professional"].update(
        min_schedule_interval_minutes=0.1, max_concurrent_scheduled_runs=2
    )
    spec["tiers"]["starter"].update(scheduled_jobs_per_tenant=1, min_schedule_interval_minutes=60,
                                    kernels=["python3"])  # fmt: skip
    path = folder / "tiers.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def scheduler_config(smtp_controller) -> str:
    return (
        "c = get_config()  # noqa\n"
        "c.Scheduler.poll_seconds = 1\n"
        "c.Scheduler.stale_after_seconds = 4\n"
        f"c.Mailer.smtp_host = {smtp_controller.hostname!r}\n"
        f"c.Mailer.smtp_port = {smtp_controller.port}\n"
        'c.Mailer.smtp_security = "none"\n'
        'c.Mailer.from_address = "fedhub <noreply@hub.example>"\n'
    )


class SchedulerAPI:
    """The scheduler service through the hub's proxy, as one user."""

    def __init__(self, hub: HubProcess, user: str):
        self.hub = hub
        self.token = hub.token(user)

    def call(self, method: str, path: str, **kw):
        return self.hub.api(method, f"{API}{path}", self.token, **kw)

    def schedule(self, **body) -> dict:
        r = self.call("POST", "/jobs", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def runs(self, job_id: str) -> list[dict]:
        r = self.call("GET", f"/jobs/{job_id}/runs")
        assert r.status_code == 200, r.text
        return r.json()["runs"]

    def wait_runs(self, job_id: str, pred, timeout: float = 90, what: str = "runs"):
        return wait_for(lambda: (rs := self.runs(job_id)) and pred(rs) and rs, timeout, 0.5, what)


@pytest.fixture(scope="package")
def sched_hub(smtp, hub_state_root):  # noqa: F811
    controller, _ = smtp
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    env = {"FEDHUB_TIERS": str(tiers_file(state))}
    hub = HubProcess(state, password=DEMO_PASSWORD, env=env,
                     fedhub_config=scheduler_config(controller))  # fmt: skip
    hub.start()
    sql(hub, "UPDATE fedhub_memberships SET email = ? WHERE username = 'alice'", ALICE_EMAIL)
    token = hub.token("alice")
    wait_for(lambda: hub.api("GET", f"{API}/jobs", token).status_code == 200, 120, 0.3,
             "the scheduler service")  # fmt: skip
    yield hub
    hub.stop()


@pytest.fixture(scope="package")
def api(sched_hub):
    return lambda user: SchedulerAPI(sched_hub, user)


def put_notebook(hub: HubProcess, user: str, name: str, text: str) -> Path:
    """A notebook in ``user``'s home, owned by their account, as if they had saved it."""
    home = hub.state_dir / "homes" / user
    entry = accounts.ensure_account(accounts.account_name(user), home=home)
    accounts.make_home(home, entry)
    path = home / name
    path.write_text(text)
    accounts.chown_tree(home, entry)
    return path


def wait_status(api: SchedulerAPI, run_id: str, statuses, timeout: float = 90) -> dict:
    def done():
        r = api.call("GET", f"/runs/{run_id}")
        return r.json() if r.json()["status"] in statuses else None

    return wait_for(done, timeout, 0.5, f"run {run_id} in {statuses}")
