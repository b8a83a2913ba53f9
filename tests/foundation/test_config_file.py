"""One configuration file (``fedhub_config.py``) for the hub and every service.

A real hub is started with ``fedhub up --state-dir D --db-url U`` (the options after the
sub-command) and a ``fedhub_config.py`` in its state dir that sets, for each part, a value
only that part reads; each test watches that part behave accordingly. The tiers file is
named once in the same file (``c.Fedhub.tiers_file``) and both the hub and the services
use it. ``fedhub config show`` reports every value with its source and no secret.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

from tests.conftest import DEMO_PASSWORD, SESSION_GUARD_MARK
from tests.harness import HubProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]
TIER_NAME = "Professional (from fedhub_config.py)"
PROFILE_NAME = "Small (from fedhub_config.py)"
UNREACHABLE_SCHEDULER = "tcp://127.0.0.1:9"
SMTP_SECRET = "not-a-real-password-2468"

CONFIG = """\
c.Fedhub.tiers_file = {tiers!r}
# the hub
c.LocalTenantAuthenticator.lockout_threshold = 2
# audit
c.AuditLog.checkpoint_every_records = 7
c.AuditApp.ingest_seconds = 0.5
# billing
c.BillingSettings.max_event_quantity = 5
# experiments
c.DaskClusters.mode = "address"
c.DaskClusters.scheduler_address = {scheduler!r}
"""


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedhub.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def custom_tiers(path: Path) -> Path:
    """The bundled tiers with a renamed tier and profile, to see which file a part read."""
    doc = yaml.safe_load((ROOT / "hub_config" / "tiers.yaml").read_text())
    doc["tiers"]["professional"]["display_name"] = TIER_NAME
    doc["profiles"]["small"]["display_name"] = PROFILE_NAME
    path.write_text(yaml.safe_dump(doc))
    return path


# -- without a hub --------------------------------------------------------------------


def test_example_config_names_only_real_options():
    """hub_config/fedhub_config.py: only `c.X = ...` lines, each a real option of a part."""
    from fedhub.cli.config import hub_classes, service_classes
    from fedhub.extensions.hub.oidc import TenantOIDCAuthenticator
    from fedhub.extensions.hub.tenant_auth import TenantAuthenticatorMixin

    cfg = PyFileConfigLoader("fedhub_config.py", path=str(ROOT / "hub_config")).load_config()
    classes = {c.__name__: c for c in hub_classes(cfg)}
    classes["TenantAuthenticatorMixin"] = TenantAuthenticatorMixin
    classes["TenantOIDCAuthenticator"] = TenantOIDCAuthenticator
    for parts in service_classes().values():
        classes.update({c.__name__: c for c in parts})
    assert set(cfg) <= set(classes), set(cfg) - set(classes)
    for section in cfg:
        traits = classes[section].class_traits(config=True)
        for key in cfg[section]:
            assert key in traits, f"c.{section}.{key} is not an option"
    source = (ROOT / "hub_config" / "fedhub_config.py").read_text()
    code = [ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    statements = [ln for ln in code if not ln.startswith((" ", "}"))]
    assert statements and all(ln.startswith("c.") for ln in statements), statements


def test_config_show_sources_and_no_secrets(tmp_path):
    (tmp_path / "fedhub_config.py").write_text(
        "c.AuditLog.checkpoint_every_records = 7\n"
        f"c.Mailer.smtp_password = {SMTP_SECRET!r}\n"
        f"c.Fedhub.tiers_file = {str(custom_tiers(tmp_path / 'tiers.yaml'))!r}\n"
    )
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith("FEDHUB_") or k == "FEDHUB_PG_BIN"
    }
    env["FEDHUB_BILLING_GRACE_DAYS"] = "5"
    db = "postgresql+psycopg://fedhub:db-secret-1357@db.invalid/fedhub"
    r = cli("--state-dir", str(tmp_path), "--db-url", db, "config", "show", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert SMTP_SECRET not in r.stdout and "db-secret-1357" not in r.stdout
    report = json.loads(r.stdout)
    assert report["config_file"] == str(tmp_path / "fedhub_config.py")
    parts = report["parts"]
    assert set(parts) >= {"hub", "audit", "billing", "experiments"}
    assert parts["audit"]["AuditLog"]["checkpoint_every_records"] == {"value": 7, "source": "file"}
    assert parts["audit"]["AuditLog"]["checkpoint_every_seconds"]["source"] == "default"
    assert parts["billing"]["BillingSettings"]["grace_days"] == {"value": 5.0, "source": "env"}
    assert parts["hub"]["Mailer"]["smtp_password"] == {"value": "***", "source": "file"}
    assert "***" in parts["hub"]["LocalTenantAuthenticator"]["db_url"]["value"]
    # the tiers file is named once and every part reads the same one
    for part in ("hub", "audit", "billing", "experiments"):
        assert parts[part]["Fedhub"]["tiers_file"] == {
            "value": str(tmp_path / "tiers.yaml"),
            "source": "file",
        }
    text = cli("--state-dir", str(tmp_path), "--db-url", db, "config", "show", env=env)
    assert text.returncode == 0, text.stderr
    assert SMTP_SECRET not in text.stdout and "db-secret-1357" not in text.stdout
    assert "AuditLog.checkpoint_every_records" in text.stdout and "(file)" in text.stdout


def test_a_broken_config_file_is_one_clear_line(tmp_path):
    (tmp_path / "fedhub_config.py").write_text("c.AuditLog.checkpoint_every_records = (\n")
    r = cli("--state-dir", str(tmp_path), "config", "show")
    assert r.returncode != 0
    assert r.stderr.startswith("Error: ") and "fedhub_config.py" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("--config-file", str(tmp_path / "missing.py"), "config", "show")
    assert r.returncode != 0 and "configuration file not found" in r.stderr


def test_service_app_loads_the_file_and_the_command_line_wins(tmp_path, monkeypatch):
    from fedhub import tiers
    from fedhub.audit import AuditLog
    from fedhub.services.audit.app import AuditApp

    path = tmp_path / "fedhub_config.py"
    path.write_text(
        "c.AuditLog.checkpoint_every_records = 7\n"
        f"c.Fedhub.tiers_file = {str(custom_tiers(tmp_path / 'tiers.yaml'))!r}\n"
    )
    monkeypatch.setenv("FEDHUB_CONFIG_FILE", str(path))
    monkeypatch.setenv("FEDHUB_AUDIT_INGEST_SECONDS", "0.25")  # a fallback: still honoured
    try:
        app = AuditApp()
        app.initialize([])
        assert app.config_file == str(path)
        assert AuditLog(parent=app).checkpoint_every_records == 7
        assert app.ingest_seconds == 0.25
        # the tiers file is the process's default from now on (TenantStore, Billing...)
        assert app.tiers.get("professional").display_name == TIER_NAME
        assert tiers.load_tiers().get("professional").display_name == TIER_NAME
        app = AuditApp()
        app.initialize(["--AuditLog.checkpoint_every_records=3"])
        assert AuditLog(parent=app).checkpoint_every_records == 3
    finally:
        tiers.use_tiers_file(None)


# -- a real hub ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(hub_state_root):
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    tiers = custom_tiers(state / "custom-tiers.yaml")
    hub = HubProcess(
        state,
        password=DEMO_PASSWORD,
        fedhub_config=CONFIG.format(tiers=str(tiers), scheduler=UNREACHABLE_SCHEDULER),
        options_after_up=True,  # `fedhub up --state-dir D --db-url U`
        args=["--Spawner.poll_interval=1"],
    )
    # nothing but the options after `up` says where the state is
    hub.env.pop("FEDHUB_STATE_DIR", None)
    hub.env.pop("FEDHUB_DB_URL", None)
    try:
        hub.start(timeout=90)
        yield hub
    finally:
        hub.stop()
        assert SESSION_GUARD_MARK not in hub.log(), "hub session used off the event loop"


def test_up_takes_state_dir_after_the_subcommand(hub):
    assert (hub.state_dir / "jupyterhub.sqlite").is_file()
    assert f"configuration file {hub.state_dir / 'fedhub_config.py'}" in hub.log()


def test_hub_reads_the_file(hub):
    # c.LocalTenantAuthenticator.lockout_threshold = 2: two failures lock the account
    for _ in range(2):
        assert hub.login("carol", password="wrong-password-1").status_code != 302
    assert hub.login("carol").status_code != 302, "carol was not locked after 2 failures"
    # c.Fedhub.tiers_file: the hub's spawn form shows the profiles of that file
    r = hub.login("bob")
    assert r.status_code == 302
    page = r.session.get(f"{hub.url}/hub/spawn", timeout=30)
    assert page.status_code == 200 and PROFILE_NAME in page.text, page.text[-2000:]


def test_audit_service_reads_the_file(hub):
    # c.AuditLog.checkpoint_every_records = 7 (default 1000, or every 300 s): a chain is
    # signed after seven records, well within this test
    admin = hub.token("admin")

    def signed():
        r = hub.api("GET", "/services/audit/api/v1/checkpoints", admin)
        if r.status_code != 200:
            return None
        cps = [json.loads(c["payload"]) for c in r.json()["checkpoints"]]
        if not cps:
            hub.token("acme-admin", password=DEMO_PASSWORD)  # a login and a token: events
        return cps

    cps = wait_for(signed, 60, interval=1, what="a checkpoint after 7 records")
    assert all(c["seq"] >= 7 and c["kind"] == "periodic" for c in cps), cps


def test_billing_service_reads_the_file(hub):
    # c.BillingSettings.max_event_quantity = 5 (default 1e9)
    from fedhub.db.base import utcnow

    admin = hub.token("admin")
    api = "/services/billing/api/v1/events"

    def event(i, quantity):
        return {
            "id": f"config-file-{i}",
            "tenant": "acme",
            "kind": "api_calls",
            "quantity": quantity,
            "time": utcnow().isoformat(),
        }

    wait_for(
        lambda: hub.api("GET", "/services/billing/api/v1/invoices", admin).status_code == 200,
        60,
        what="billing service",
    )
    r = hub.api("POST", api, admin, json={"events": [event(1, 6)]})
    assert r.status_code == 400, r.text
    assert "at most 5 per event" in r.json()["error"]["message"]
    r = hub.api("POST", api, admin, json={"events": [event(2, 5)]})
    assert r.status_code in (200, 201, 202), r.text


def test_experiments_service_reads_the_file(hub):
    alice = hub.token("alice")
    api = "/services/experiments/api/v1"
    # c.Fedhub.tiers_file reaches the service: acme's tier has the file's display name
    q = wait_for(
        lambda: (r := hub.api("GET", f"{api}/quota", alice)).status_code == 200 and r.json(),
        60,
        what="experiments service",
    )
    assert q["tier"] == "professional" and q["tier_display_name"] == TIER_NAME
    # c.DaskClusters.mode/scheduler_address: the run goes to that (plain tcp://) scheduler,
    # which the service refuses, saying which one
    spec = {"dataset": "synthetic", "clients": 4, "clients_per_round": 2, "rounds": 1, "seed": 1}
    r = hub.api("POST", f"{api}/experiments", alice, json=spec)
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]

    def finished():
        d = hub.api("GET", f"{api}/experiments/{exp_id}", alice).json()
        return d if d["status"] in ("completed", "failed", "cancelled") else None

    done = wait_for(finished, 120, interval=0.5, what="the experiment to end")
    assert done["status"] == "failed", done
    assert UNREACHABLE_SCHEDULER in (done.get("error") or ""), done


def test_config_show_of_the_running_hub(hub):
    r = hub.fedhub("config", "show", "--json")
    parts = json.loads(r.stdout)["parts"]
    assert parts["audit"]["AuditLog"]["checkpoint_every_records"] == {"value": 7, "source": "file"}
    assert parts["billing"]["BillingSettings"]["max_event_quantity"]["value"] == 5
    assert parts["experiments"]["DaskClusters"]["scheduler_address"] == {
        "value": UNREACHABLE_SCHEDULER,
        "source": "file",
    }
    assert parts["hub"]["LocalTenantAuthenticator"]["lockout_threshold"]["source"] == "file"
