"""FedhubBackend's file and account handling, without a hub (fast)."""

from __future__ import annotations

import os
import stat
import subprocess
from types import SimpleNamespace

import pytest

from fedhub import accounts
from fedhub.gateway.backend import FedhubBackend


def cluster():
    return SimpleNamespace(name="c1", username="alice", tls_cert=b"cert", tls_key=b"key", state={})


def test_not_root_a_cluster_runs_as_the_gateways_account(monkeypatch, tmp_path):
    """The fallback of every fedhub process without root: no switch, said in the log."""
    monkeypatch.setattr(accounts, "can_isolate", lambda: False)
    backend = FedhubBackend(clusters_directory=str(tmp_path))
    assert not backend.isolated and backend._prepare_account("fedhub-alice", "/nonexistent") is None
    c = cluster()
    workdir = backend.setup_working_directory(c)
    c.state["workdir"] = workdir
    assert stat.S_IMODE(os.stat(workdir).st_mode) == 0o700
    _, key = backend.get_tls_paths(c)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and open(key, "rb").read() == b"key"
    out = subprocess.run(["sh", "-c", "id -u; pwd; umask"], preexec_fn=backend.make_preexec_fn(c),
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert out == [str(os.geteuid()), workdir, "0077"]


def test_file_owners_are_changed_only_for_absolute_paths_below_the_root(monkeypatch, tmp_path):
    """dask-gateway-server 2026.3.0's LocalBackend hands set_file_permissions "/", "t", ...:
    FedhubBackend refuses such paths instead of giving them to the cluster's user."""
    monkeypatch.setattr(accounts, "can_isolate", lambda: True)
    monkeypatch.setattr(accounts, "lookup", lambda name: SimpleNamespace(
        pw_name=name, pw_uid=os.geteuid(), pw_gid=os.getegid()))  # fmt: skip
    changed = []
    monkeypatch.setattr(os, "chown", lambda path, *a, **kw: changed.append(path))
    backend = FedhubBackend()
    for bad in ("/", "t", "tmp/x"):
        with pytest.raises(ValueError, match="refusing to give"):
            backend.set_file_permissions([bad], "alice")
    backend.set_file_permissions([str(tmp_path)], "alice")
    assert changed == [str(tmp_path)]


def test_a_cluster_log_is_not_opened_through_a_link(monkeypatch, tmp_path):
    monkeypatch.setattr(accounts, "can_isolate", lambda: False)
    backend = FedhubBackend(clusters_directory=str(tmp_path))
    c = cluster()
    c.state["workdir"] = backend.setup_working_directory(c)
    logs = backend.get_logs_directory(c.state["workdir"])
    os.rmdir(logs)
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, logs)  # what the cluster's owner could do to their own folder
    import asyncio

    with pytest.raises(OSError):
        asyncio.run(backend.start_process(c, ["true"], {}, "scheduler"))
    assert list(target.iterdir()) == []


def test_a_services_cluster_runs_as_its_tenants_account_never_a_users():
    backend = FedhubBackend()
    assert backend.is_tenant_service("service:experiments")
    assert not backend.is_tenant_service("service:billing") and not backend.is_tenant_service("bob")
    svc = SimpleNamespace(username="service:experiments", options={"tenant": "acme"}, state={})
    user = SimpleNamespace(username="t_acme", options={}, state={})  # a hub user named t_acme
    base = accounts.ACCOUNT_PREFIX  # fedhub- unless $FEDHUB_ACCOUNT_PREFIX says otherwise
    assert backend.cluster_account(svc) == f"{base[:-1]}_t_acme"  # fedhub_t_acme
    assert backend.cluster_account(user) == f"{base}t_acme"  # fedhub-t_acme
