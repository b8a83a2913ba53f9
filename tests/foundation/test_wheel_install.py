"""The wheel as a user gets it: installed into a fresh venv outside the checkout, it
starts a demo hub and a demo user logs in (issue 11, must show 1).

First the wheel alone (the hub and its services must load without any extra), then
every extra on top (``fedhub[all]``), both with the constraints file ``make`` uses; the
packages come from the machine's local indexes (/etc/pip.conf). configurable-http-proxy is the one thing not in the wheel (an
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


def pip_install(venv: Path, requirement: str, cwd: Path) -> float:
    """``pip install`` with make's constraints file; returns the seconds it took."""
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
            requirement,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    assert pip.returncode == 0, pip.stderr[-4000:]
    return time.monotonic() - started


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A fresh venv with the freshly built wheel and no extra; yields (folder, wheel)."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} not found: make installs python3-venv")
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
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", base / "venv"], check=True)
    seconds = pip_install(base / "venv", f"fedhub @ {wheel.as_uri()}", base)
    print(f"pip install fedhub (no extra) from the wheel: {seconds:.0f} s")
    yield base, wheel
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(wheel_venv):
    """The same venv with every extra added (``fedhub[all]``); yields its folder."""
    base, wheel = wheel_venv
    seconds = pip_install(base / "venv", f"fedhub[all] @ {wheel.as_uri()}", base)
    print(f"pip install fedhub[all] on top: {seconds:.0f} s")
    return base


def test_base_install_loads_the_hub_and_services_without_the_extras(wheel_venv):
    base, _ = wheel_venv
    probe = """
import importlib, importlib.util
from fedhub import launcher
from fedhub.extras import MissingExtra
heavy = ["torch", "torch_geometric", "distributed", "weasyprint", "jupyterlab", "voila",
         "mlxtend", "sklearn", "dask_gateway", "kubespawner"]
present = [name for name in heavy if importlib.util.find_spec(name) is not None]
assert not present, present
# what fedhub up loads in the hub process, and each service's entry module
for name in ["fedhub.cli", "fedhub.extensions.hub.tier_spawner",
             "fedhub.extensions.hub.local_auth", "fedhub.extensions.hub.oidc",
             "fedhub.extensions.server", *launcher.service_modules(),
             "fedhub.services.audit.__main__", "fedhub.services.experiments.__main__",
             "fedhub.services.billing.app"]:
    importlib.import_module(name)
try:
    import fedhub.fl
except MissingExtra as e:
    print(e)
else:
    raise AssertionError("fedhub.fl imported without torch")
"""
    out = subprocess.run(
        [base / "venv" / "bin" / "python", "-c", probe],
        capture_output=True,
        text=True,
        cwd=base,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "pip install 'fedhub[fl]'" in out.stdout
    tiers = subprocess.run(
        [base / "venv" / "bin" / "fedhub", "tiers", "show"],
        capture_output=True,
        text=True,
        cwd=base,
    )
    assert tiers.returncode == 0 and "professional" in tiers.stdout, tiers.stderr


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
        pytest.fail("configurable-http-proxy not installed: npm ci (make install does it)")
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
