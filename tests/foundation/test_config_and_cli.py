"""The production config, the wheel, and the CLI's errors."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[2]


def fedhub(*args, state_dir):
    return subprocess.run(
        [sys.executable, "-m", "fedhub.cli", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_production_config_names_only_real_options():
    from jupyterhub.app import JupyterHub
    from jupyterhub.spawner import Spawner

    from fedhub.cli.config import service_classes
    from fedhub.extensions.hub.keys_api import ServiceAccountKeys
    from fedhub.extensions.hub.oidc import TenantOIDCAuthenticator
    from fedhub.extensions.hub.tier_spawner import TierSpawner
    from fedhub.gateway import GatewaySettings
    from fedhub.mail import Mailer
    from fedhub.tenancy.totp import TotpSecretBox

    # jupyterhub_config.py loads fedhub_config.py (load_subconfig): both are checked here
    cfg = PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT / "hub_config")).load_config()
    classes = {
        "JupyterHub": JupyterHub,
        "Spawner": Spawner,
        "TierSpawner": TierSpawner,
        "TenantOIDCAuthenticator": TenantOIDCAuthenticator,
        "TenantAuthenticatorMixin": TenantOIDCAuthenticator,
        "Mailer": Mailer,
        "TotpSecretBox": TotpSecretBox,
        "ServiceAccountKeys": ServiceAccountKeys,
        "GatewaySettings": GatewaySettings,
    }
    for parts in service_classes().values():
        classes.update({cls.__name__: cls for cls in parts})
    assert "tiers_file" not in cfg.get("TenantAuthenticatorMixin", {}), "use c.Fedhub.tiers_file"
    assert set(cfg) <= set(classes), set(cfg) - set(classes)
    for section, cls in classes.items():
        traits = cls.class_traits(config=True)
        for key in cfg[section]:
            assert key in traits, f"c.{section}.{key} is not an option"
    # named by entry point, as JupyterHub's docs do
    assert cfg.JupyterHub.authenticator_class == "fedhub-oidc"
    assert cfg.JupyterHub.spawner_class == "fedhub-tier"
    source = (ROOT / "hub_config" / "jupyterhub_config.py").read_text()
    code = [ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert all(
        not ln.lstrip().startswith(("import ", "from ", "def ", "class ", "if ", "for "))
        for ln in code
    )


@pytest.mark.slow
def test_wheel_contains_every_package_folder(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("fedhub-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder, package in (
        ("fedhub", "fedhub"),
        ("extensions", "fedhub/extensions"),
        ("services", "fedhub/services"),
    ):
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.relative_to(ROOT / folder)
            assert f"{package}/{rel.as_posix()}" in names, f"{folder}/{rel} missing from the wheel"
    # the data a hub reads at run time (importlib.resources), each from its checkout folder
    data = {
        "hub_config/tiers.yaml": "fedhub/hub_config/tiers.yaml",
        "fedhub/db/migrations/script.py.mako": "fedhub/db/migrations/script.py.mako",
        "fedhub/events_schemas/audit_event.yaml": "fedhub/events_schemas/audit_event.yaml",
        "fedhub/billing/templates/invoice.html": "fedhub/billing/templates/invoice.html",
        "extensions/server/jupyter_server_config.d/fedhub.json": (
            "fedhub-0.1.0.data/data/etc/jupyter/jupyter_server_config.d/fedhub.json"
        ),
    }
    for pattern, into in (
        ("kernels/*/kernel.json", "fedhub/kernels"),
        ("notebooks/*/*.ipynb", "fedhub/notebooks"),
        ("extensions/hub/templates/*.html", "fedhub/extensions/hub/templates"),
        ("fedhub/db/migrations/versions/*.py", "fedhub/db/migrations/versions"),
    ):
        top = pattern.split("/*")[0]
        for path in ROOT.glob(pattern):
            data[path.relative_to(ROOT).as_posix()] = (
                f"{into}/{path.relative_to(ROOT / top).as_posix()}"
            )
    assert len(data) > 15
    missing = [src for src, into in data.items() if into not in names]
    assert not missing, f"not in the wheel: {missing}"
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
    assert b"License-Expression: BSD-3-Clause" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # the exact torch pin lives in constraints.txt, not in what pip installs for users
    requires = [line for line in metadata.decode().splitlines() if line.startswith("Requires-Dist")]
    torch = [line for line in requires if re.match(r"Requires-Dist: torch[<>=; ]", line)]
    assert torch and all("==" not in line.split(";")[0] for line in torch), torch
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for name in ("fedhub-local", "fedhub-oidc", "fedhub-tier", "fedhub = fedhub.cli:main"):
        assert name in text


def test_cli_errors_are_one_line_and_non_zero(tmp_path):
    cases = [
        (("tenant", "show", "nope"), "Error: no tenant 'nope'"),
        (("tenant", "create", "Bad Slug!"), "Error: invalid tenant slug 'Bad Slug!'"),
        (("tenant", "create", "acme", "--tier", "platinum"), "Error: unknown tier 'platinum'"),
        (("user", "add", "zed", "--tenant", "missing"), "Error: no tenant 'missing'"),
        (("user", "add", "zed"), "Error: a member must belong to a tenant"),
        (("user", "set-role", "ghost", "member"), "Error: no user 'ghost'"),
        (
            ("tenant", "update", "x", "--override", "max_users"),
            "Error: override 'max_users' must look like key=value",
        ),
    ]
    for args, expected in cases:
        r = fedhub(*args, state_dir=tmp_path)
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().startswith(expected), (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_tenant_lifecycle(tmp_path):
    assert (
        fedhub(
            "tenant", "create", "acme", "--name", "Acme", "--tier", "starter", state_dir=tmp_path
        ).returncode
        == 0
    )
    assert fedhub("tenant", "create", "acme", state_dir=tmp_path).stderr.startswith(
        "Error: tenant 'acme' already exists"
    )
    for i in range(10):
        r = fedhub("user", "add", f"u{i}", "--tenant", "acme", state_dir=tmp_path)
        assert r.returncode == 0, r.stderr
    # starter allows 10 users
    r = fedhub("user", "add", "u10", "--tenant", "acme", state_dir=tmp_path)
    assert r.returncode != 0 and "has 10 of 10 users allowed by its starter tier" in r.stderr
    assert (
        fedhub(
            "tenant", "update", "acme", "--override", "max_users=11", state_dir=tmp_path
        ).returncode
        == 0
    )
    assert fedhub("user", "add", "u10", "--tenant", "acme", state_dir=tmp_path).returncode == 0
    r = fedhub("tenant", "update", "acme", "--override", "max_users=-1", state_dir=tmp_path)
    assert r.returncode != 0 and "max_users" in r.stderr
    # a dotted key nests at any depth and keeps the tier's other rules at that level
    deep = "security.password.min_length=16"
    assert (
        fedhub("tenant", "update", "acme", "--override", deep, state_dir=tmp_path).returncode == 0
    )
    both = ("--override", "max_users=11", "--override", "max_users.x=1")
    r = fedhub("tenant", "update", "acme", *both, state_dir=tmp_path)
    assert r.returncode != 0 and "'max_users', which is a value" in r.stderr
    show = fedhub("tenant", "show", "acme", "--json", state_dir=tmp_path)
    import json

    data = json.loads(show.stdout)
    assert data["effective_tier"]["max_users"] == 11 and data["tier"] == "starter"
    password = data["effective_tier"]["security"]["password"]
    assert password["min_length"] == 16 and password["character_classes"] == 2  # starter's
    assert fedhub("tenant", "suspend", "acme", state_dir=tmp_path).returncode == 0
    assert "suspended" in fedhub("tenant", "list", state_dir=tmp_path).stdout
    assert fedhub("tenant", "delete", "acme", "--yes", state_dir=tmp_path).returncode == 0
    assert "acme" not in fedhub("tenant", "list", state_dir=tmp_path).stdout
