"""The wheel as a user gets it: installed into a fresh venv outside the checkout, it
starts a demo hub and a demo user logs in (issue 11, must show 1).

Every extra is installed (``fedhub[all]``) with the same constraints file ``make``
uses; the packages come from the machine's local indexes (/etc/pip.conf), ~70 s on
this kind of machine. configurable-http-proxy is the one thing not in the wheel (an
npm package): it is found on ``PATH``, here the checkout's ``node_modules/.bin``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness import HubProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # what make builds its venv from, for the same reason
PASSWORD = "wheel-test-password"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with the freshly built wheel and all its extras; yields its folder."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} not found")
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, ROOT],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("fedhub-*.whl"))
    # not under pytest's 0700 folders: user servers run as their own accounts and must
    # be able to run the venv's interpreter and reach their homes
    base = Path(tempfile.mkdtemp(prefix="fedhub-wheel-"))
    base.chmod(0o711)
    venv = base / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], check=True)
    started = time.monotonic()
    pip = subprocess.run(
        [
            venv / "bin" / "pip",
            "install",
            "--quiet",
            # no .pyc for torch's thousands of modules (a good part of the install's time);
            # Python compiles what it imports on first use
            "--no-compile",
            "--constraint",
            ROOT / "constraints.txt",
            f"fedhub[all] @ {wheel.as_uri()}",
        ],
        capture_output=True,
        text=True,
        cwd=base,
    )
    assert pip.returncode == 0, pip.stderr[-4000:]
    print(f"pip install fedhub[all] from the wheel: {time.monotonic() - started:.0f} s")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_installed_package_reads_its_data_from_the_venv(installed):
    venv = installed / "venv"
    probe = (
        "import json, fedhub, torch\n"
        "from fedhub.tiers import DEFAULT_TIERS_PATH, load_tiers\n"
        "load_tiers()\n"
        "from fedhub.extensions.hub.spawner import kernels\n"
        "from fedhub.audit.report import NOTEBOOK\n"
        "print(json.dumps({'fedhub': fedhub.__file__, 'tiers': str(DEFAULT_TIERS_PATH),\n"
        "  'kernels': {k: str(v) for k, v in kernels.available().items()},\n"
        "  'report': str(NOTEBOOK), 'report_exists': NOTEBOOK.exists(),\n"
        "  'torch': torch.__version__}))\n"
    )
    out = subprocess.run(
        [venv / "bin" / "python", "-c", probe],
        capture_output=True,
        text=True,
        cwd=installed,
        check=True,
    )
    found = json.loads(out.stdout)
    site = str(venv / "lib")
    assert found["fedhub"].startswith(site), found
    assert found["tiers"].startswith(site) and found["tiers"].endswith("hub_config/tiers.yaml")
    assert set(found["kernels"]) == {"python3", "fedhub-torch"}
    assert all(path.startswith(site) for path in found["kernels"].values())
    assert found["report"].startswith(site) and found["report_exists"]
    # the constraints file pinned it
    assert found["torch"].startswith("2.13.0")


def test_fedhub_up_from_the_wheel_and_a_demo_user_logs_in(installed):
    venv = installed / "venv"
    state = installed / "state"
    elsewhere = installed / "cwd"  # a folder with no fedhub checkout in or above it
    elsewhere.mkdir()
    state.mkdir()
    node_bin = ROOT / "node_modules" / ".bin"
    if not (node_bin / "configurable-http-proxy").exists():
        pytest.skip("configurable-http-proxy not installed: npm ci (make install does it)")
    hub = HubProcess(
        state,
        command=[str(venv / "bin" / "fedhub")],
        cwd=elsewhere,
        password=PASSWORD,
        env={"PATH": f"{node_bin}:{venv / 'bin'}:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)},
    )
    hub.start(timeout=120)
    try:
        r = hub.login("alice")
        assert r.status_code == 302, r.text
        assert r.headers["location"].endswith("/hub/spawn")
        # the user's server from the installed wheel: the tier's kernels (package data)
        # and the fedhub server extension (the wheel's etc/jupyter config) are there
        token = hub.token("alice")
        r = hub.api("POST", "/hub/api/users/alice/server", token, json={"profile": "small"})
        assert r.status_code in (201, 202), r.text

        def ready():
            server = hub.api("GET", "/hub/api/users/alice", token).json()["servers"].get("")
            return server and server["ready"]

        wait_for(ready, 90, interval=0.5, what="alice's server")
        specs = hub.api("GET", "/user/alice/api/kernelspecs", token).json()["kernelspecs"]
        assert set(specs) == {"python3", "fedhub-torch"}
        quota = hub.api("GET", "/user/alice/fedhub/api/quota", token)
        assert quota.status_code != 404, "fedhub's server extension is not enabled"
        r = hub.api("DELETE", "/hub/api/users/alice/server", token)
        assert r.status_code in (202, 204)
        wait_for(
            lambda: not hub.api("GET", "/hub/api/users/alice", token).json()["servers"],
            60,
            what="alice's server to stop",
        )
    finally:
        hub.stop()
    log = hub.log()
    assert "Traceback" not in log, log[-4000:]
