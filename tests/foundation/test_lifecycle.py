"""`fedhub up`: Ctrl-C stops everything quickly, and a restart keeps the data."""

import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.harness import HubProcess, wait_for

pytestmark = pytest.mark.slow


def test_sigint_stops_hub_proxy_services_and_servers_then_restart_keeps_data(hub_state_root):
    # user servers run as their own accounts: the state dir must be traversable
    tmp_path = Path(tempfile.mkdtemp(dir=hub_state_root))
    hub = HubProcess(tmp_path, password="lifecycle-password")
    hub.start()
    try:
        admin = hub.token("admin")
        hub.fedhub("tenant", "create", "keepme", "--tier", "starter")
        assert hub.api("POST", "/hub/api/users/carol/server", admin).status_code in (201, 202)
        wait_for(
            lambda: (
                hub.api("GET", "/hub/api/users/carol", admin).json()["servers"].get("") or {}
            ).get("ready"),
            120,
            interval=0.5,
            what="carol's server",
        )
        tree = [
            psutil.Process(hub.proc.pid),
            *psutil.Process(hub.proc.pid).children(recursive=True),
        ]
        cmdlines = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "configurable-http-proxy" in cmdlines and "jupyterhub-singleuser" in cmdlines

        started = time.monotonic()
        hub.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        hub.proc.wait(15)
        gone, alive = psutil.wait_procs(tree, timeout=max(0.1, 10 - (time.monotonic() - started)))
        elapsed = time.monotonic() - started
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], [
            p.cmdline() for p in alive
        ]
        assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
    finally:
        hub.stop()

    again = HubProcess(tmp_path, password="lifecycle-password")
    again.start()
    try:
        assert "keepme" in again.fedhub("tenant", "list").stdout
        r = again.api("GET", "/hub/api/groups/tenant-keepme", again.token("admin"))
        assert r.status_code == 200
        assert again.login("carol").status_code == 302
    finally:
        again.stop()
