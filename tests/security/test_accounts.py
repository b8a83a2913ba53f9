"""Route 1: notebook code runs as the user's own Unix account and reads nothing of the hub.

Carol (initech, free tier) and bob (globex) start real servers on the embedded
default; code in carol's kernel reports its uid and tries to open every file of
the hub's state directory and bob's home.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys

import psutil
import pytest
import requests

from fedhub import accounts
from tests.harness import HubProcess
from tests.security.notebook import run_cell, start_server, stop_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="separate accounts need root")


def hub_private_files(state_dir) -> list[str]:
    """Every file and folder of the hub's state dir that is not meant for users."""
    found = []
    for entry in state_dir.iterdir():
        if entry.name in ("homes", "share"):
            continue
        found.append(str(entry))
        if entry.is_dir():
            found += [str(p) for p in entry.rglob("*")]
    return found


@pytest.fixture
def servers(hub):
    carol, bob = hub.token("carol"), hub.token("bob")
    started = {"carol": start_server(hub, "carol", carol), "bob": start_server(hub, "bob", bob)}
    yield {"carol": carol, "bob": bob, "models": started}
    stop_server(hub, "carol", carol)
    stop_server(hub, "bob", bob)


def test_each_server_runs_as_its_own_account(hub, servers):
    admin = hub.token("admin")
    for name in ("carol", "bob"):
        model = hub.api("GET", f"/hub/api/users/{name}", token=admin).json()
        pid = model["servers"][""]["state"]["pid"]
        proc = psutil.Process(pid)
        expected = pwd.getpwnam(accounts.account_name(name))
        assert proc.uids().real == expected.pw_uid != 0
        assert "--allow-root" not in proc.cmdline()
        home = hub.state_dir / "homes" / name
        st = home.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (expected.pw_uid, 0o700)


def test_notebook_code_cannot_read_the_hub_or_another_home(hub, servers):
    bob_file = "secret-model.txt"
    run_cell(hub, "bob", servers["bob"], f"open({bob_file!r}, 'w').write('globex only')")
    targets = hub_private_files(hub.state_dir)
    assert any(t.endswith("jupyterhub.sqlite") for t in targets)
    assert any("cookie_secret" in t for t in targets)
    targets += [
        str(hub.state_dir),  # listing the state dir
        str(hub.state_dir / "homes"),  # listing the homes
        str(hub.state_dir / "homes" / "bob" / bob_file),
        str(hub.state_dir / "homes" / "bob"),
    ]
    code = f"""
import json, os
out = {{"uid": os.getuid(), "home": os.path.expanduser("~"), "opened": []}}
for path in {json.dumps(targets)}:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        out["opened"].append(path)
    except PermissionError:
        pass
    except FileNotFoundError:
        pass  # a spool file rotated away meanwhile
open("mine.txt", "w").write("ok")
print(json.dumps(out))
"""
    result = json.loads(run_cell(hub, "carol", servers["carol"], code).strip().splitlines()[-1])
    assert result["uid"] == pwd.getpwnam(accounts.account_name("carol")).pw_uid
    assert result["home"] == str(hub.state_dir / "homes" / "carol")
    assert result["opened"] == []
    # and her own home works as a home
    assert (hub.state_dir / "homes" / "carol" / "mine.txt").read_text() == "ok"


def test_hub_state_is_private_from_the_start(hub):
    """Files are born private (umask/os.open modes): nothing for group or others."""
    leaks = []
    for path in hub_private_files(hub.state_dir):
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            continue
        if stat.S_IMODE(mode) & 0o077:
            leaks.append(f"{path} {oct(stat.S_IMODE(mode))}")
    assert leaks == []
    assert stat.S_IMODE(hub.state_dir.stat().st_mode) == 0o711


def test_a_python_users_cannot_reach_is_refused_with_the_folder(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    interpreter = private / "python3"
    interpreter.write_text("")
    with pytest.raises(accounts.AccountError, match=str(private)):
        accounts.check_runnable_by_users(interpreter)


@pytest.mark.slow  # starts a hub (20 s in CI)
def test_not_root_still_starts_and_says_users_are_not_isolated(hub_state_root):
    """Not run as root: the hub starts, the login page and doctor say so plainly."""
    account = "fedhub-nonroot-test"
    entry = accounts.ensure_account(account)
    state = hub_state_root / f"nonroot-{os.getpid()}"
    state.mkdir()
    os.chown(state, entry.pw_uid, entry.pw_gid)
    hub = HubProcess(state, password="nonroot-password", run_as=account)
    try:
        hub.start(timeout=120)
        page = requests.get(f"{hub.url}/hub/login", timeout=10).text
        assert "not isolated" in page
        doctor = subprocess.run(
            [sys.executable, "-m", "fedhub.cli", "doctor"],
            capture_output=True,
            text=True,
            user=account,
            group=account,
            extra_groups=[],
            cwd=state,
        )
        assert "NOT ISOLATED" in doctor.stdout, doctor.stderr
    finally:
        hub.stop()


def test_no_hub_user_is_mapped_onto_the_workers_or_anothers_account():
    prefix = accounts.ACCOUNT_PREFIX
    assert accounts.account_name("alice") == prefix + "alice"
    # "worker" would otherwise be the Dask workers' own account
    assert accounts.account_name("worker") != accounts.WORKER_ACCOUNT
    assert accounts.account_name("worker").startswith(prefix + "worker-")
    # names useradd refuses, and names that differ only by those characters, stay apart
    assert accounts.account_name("Alice") != accounts.account_name("alice")
    assert accounts.account_name("a.b") != accounts.account_name("a-b")
    long = "x" * 40
    assert len(accounts.account_name(long)) <= accounts.MAX_ACCOUNT_NAME
    assert accounts.account_name(long) != accounts.account_name(long + "y")


def test_the_account_prefix_is_one_setting_checked_at_import(monkeypatch):
    monkeypatch.setenv("FEDHUB_ACCOUNT_PREFIX", "Bad Prefix")
    with pytest.raises(ValueError, match="FEDHUB_ACCOUNT_PREFIX"):
        accounts._prefix_from_environment()
    monkeypatch.setenv("FEDHUB_ACCOUNT_PREFIX", "fh1-")
    assert accounts._prefix_from_environment() == "fh1-"
