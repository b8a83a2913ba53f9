"""Pure parts of the tier spawner: run-time decisions, backend mapping, form, kernels, limits."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from traitlets.config import Config

from fedhub.extensions.hub.spawner import kernels, limits, profiles
from fedhub.extensions.hub.spawner.reconciler import TenantState, plan
from fedhub.extensions.hub.tier_spawner import TierSpawner
from fedhub.quotas import GIB
from fedhub.tiers import load_tiers

NOW = datetime(2026, 11, 23, 12, 0, 0)
CATALOG = load_tiers()


def state(**kw):
    base = dict(slug="t", suspended=False, compute_used=1, compute_limit=10, idle_timeout=600)
    return TenantState(**{**base, **kw})


@pytest.mark.parametrize(
    "tenant, activity_age, expected",
    [
        (state(), 10, []),
        (state(), 601, ["idle"]),
        (state(idle_timeout=0), 10_000, []),
        (state(over_budget_since=NOW - timedelta(seconds=59)), 10, []),  # within grace
        (state(over_budget_since=NOW - timedelta(seconds=60)), 10, ["compute_budget_exhausted"]),
        (state(suspended=True, suspended_since=NOW - timedelta(seconds=5)), 10, []),
        (
            state(suspended=True, suspended_since=NOW - timedelta(seconds=61)),
            10,
            ["tenant_suspended"],
        ),
        # a suspended tenant's grace is its own, not the budget's
        (
            state(suspended=True, suspended_since=NOW, over_budget_since=NOW - timedelta(days=1)),
            10,
            [],
        ),
    ],
)
def test_plan(tenant, activity_age, expected):
    stops = plan(
        [("t", "ann", "")],
        {"t": tenant},
        {("ann", ""): NOW - timedelta(seconds=activity_age)},
        NOW,
        grace=60,
    )
    assert [s.reason for s in stops] == expected


class KubeSpawner:  # stand-ins for the third-party classes: only the name matters
    pass


class DockerSpawner:
    pass


class SystemdSpawner:
    pass


@pytest.mark.parametrize(
    "cls, kind",
    [(KubeSpawner, "kubernetes"), (DockerSpawner, "docker"), (SystemdSpawner, "systemd")],
)
def test_backend_kind_by_class_name(cls, kind):
    assert profiles.backend_kind(type("Custom", (cls,), {})) == kind


def test_kubernetes_mapping_with_gpu_and_image():
    gpu = CATALOG.profiles["gpu"].model_copy(update={"image": "fedhub/gpu:1"})
    s = profiles.backend_settings("kubernetes", gpu, 0.5)
    assert s["mem_limit"] == 32 * GIB and s["mem_guarantee"] == 16 * GIB
    assert s["cpu_limit"] == 8 and s["cpu_guarantee"] == 4
    assert s["image"] == "fedhub/gpu:1"
    assert s["extra_resource_limits"] == {"nvidia.com/gpu": "1"}


def test_docker_systemd_local_mapping():
    medium = CATALOG.profiles["medium"]
    docker = profiles.backend_settings("docker", medium, 0.25)
    assert (docker["mem_limit"], docker["cpu_limit"], docker["cpu_guarantee"]) == (8 * GIB, 2, 0.5)
    assert "extra_host_config" not in docker
    gpu = profiles.backend_settings("docker", CATALOG.profiles["gpu"])
    assert gpu["extra_host_config"]["device_requests"][0]["Count"] == 1
    for kind in ("systemd", "local"):
        assert profiles.backend_settings(kind, medium) == {"mem_limit": 8 * GIB, "cpu_limit": 2.0}


def test_form_lists_only_the_tier_profiles_and_parsing_has_no_side_effects():
    starter = CATALOG.get("starter")
    html = profiles.render_form(starter, CATALOG.profiles, compute_used=45)
    assert 'value="small"' in html and 'value="medium"' in html
    assert 'value="large"' not in html and 'value="gpu"' not in html
    assert "45.0 of 50 compute hours" in html and "alert-warning" in html
    form = {"profile": ["medium"], "extra": ["x"]}
    assert profiles.options_from_form(form) == {"profile": "medium"}
    assert form == {"profile": ["medium"], "extra": ["x"]}
    assert profiles.options_from_form({}) == {}


def test_backend_class_is_layered_at_construction():
    default = TierSpawner(config=Config())
    assert type(default).__name__ == "TierSimpleLocalProcessSpawner"
    c = Config()
    c.TierSpawner.backend_class = "jupyterhub.spawner.LocalProcessSpawner"
    c.TierSpawner.budget_grace_period = 42
    c.LocalProcessSpawner.interrupt_timeout = 3
    s = TierSpawner(config=c)
    assert type(s).__name__ == "TierLocalProcessSpawner" and isinstance(s, TierSpawner)
    assert (s.budget_grace_period, s.interrupt_timeout) == (42, 3)
    assert s.storage_path_template == "/home/{username}"
    assert type(TierSpawner(config=c)) is type(s)  # one class per backend


def test_kernels_install_only_the_tier_ones(tmp_path):
    installed = kernels.install(["python3", "fedhub-torch", "nope"], tmp_path, python="/x/python")
    assert installed == ["python3", "fedhub-torch"]
    spec = json.loads((tmp_path / "kernels" / "fedhub-torch" / "kernel.json").read_text())
    assert spec["argv"][0] == "/x/python"
    assert spec["display_name"] == "fedhub (PyTorch + Dask)"
    kernels.install(["python3"], tmp_path)  # a downgrade removes the others
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == ["python3"]


def test_concurrent_kernel_installs_never_leave_a_half_copy(tmp_path):
    """Named servers of one user start at once and install into the same directory."""
    from concurrent.futures import ThreadPoolExecutor

    def install(_):
        return kernels.install(["python3", "fedhub-torch"], tmp_path, python="/x/python")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(install, range(24)))
    assert all(r == ["python3", "fedhub-torch"] for r in results)
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == ["fedhub-torch", "python3"]
    for name in ("python3", "fedhub-torch"):
        assert (
            json.loads((tmp_path / "kernels" / name / "kernel.json").read_text())["argv"][0]
            == "/x/python"
        )
    assert [p.name for p in tmp_path.iterdir()] == ["kernels"]  # no staging left behind


def test_directory_bytes_counts_allocated_blocks(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 1_000_000)
    (tmp_path / "link").symlink_to("/usr")  # not followed
    assert 1_000_000 <= limits.directory_bytes(tmp_path) < 1_200_000
    assert limits.directory_bytes(tmp_path / "missing") == 0


@pytest.mark.skipif(not limits.probe().rlimit_as, reason="setrlimit unavailable")
def test_rlimit_preexec_stops_a_process_at_its_memory_limit():
    code = "b = bytearray(600 * 1024 * 1024); print('allocated')"
    preexec = limits.limit_preexec(None, 300 * 1024 * 1024, None)
    r = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=preexec, capture_output=True, text=True
    )
    assert r.returncode != 0 and "MemoryError" in r.stderr
    ok = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ok.stdout.strip() == "allocated"


def test_doctor_reports_what_is_enforced():
    from fedhub.cli import main

    r = CliRunner().invoke(main, ["doctor", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    probe = limits.probe()
    assert data["local_process"]["cgroup_v2"] == probe.cgroup_v2
    assert data["backends"]["local"]["memory"] in ("RLIMIT_AS", "cgroup v2 memory.max", "advisory")
    assert data["backends"]["kubernetes"]["memory"] == "kubelet (cgroup)"
    assert {"python3", "fedhub-torch"} <= set(data["kernels"])
