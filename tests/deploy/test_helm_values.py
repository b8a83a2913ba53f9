"""The Helm values: made from the tiers, current, and valid for the charts they are for.

``helm`` cannot be installed here (no container engine, not in Debian 12), so the values
are checked without rendering the charts: against our own JSON schemas of the keys fedhub
sets (``deploy/helm/schema/``, each property typed as the charts' own ``values.schema.yaml``
types it), and every ``c.Class.trait`` they configure is checked to name a configurable
trait of a class the hub or a service really has.
"""

from __future__ import annotations

import ast
import copy
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from kubespawner import KubeSpawner
from traitlets.config import Config, Configurable, PyFileConfigLoader

from fedhub.cli import main
from fedhub.cli.config import hub_classes, service_classes
from fedhub.deploy import helm
from fedhub.launcher import service_modules
from fedhub.tiers import load_tiers, parse_tiers

ROOT = Path(__file__).resolve().parents[2]
TIERS = "hub_config/tiers.yaml"
CHARTS = {
    "jupyterhub": ("deploy/helm/values.yaml", "deploy/helm/schema/jupyterhub.schema.yaml"),
    "dask-gateway": (
        "deploy/helm/dask-gateway-values.yaml",
        "deploy/helm/schema/dask-gateway.schema.yaml",
    ),
}


def generate(*args: str):
    return CliRunner().invoke(main, ["deploy", "helm-values", *args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("FEDHUB_STATE_DIR", str(tmp_path))  # no developer's .fedhub config
    monkeypatch.delenv("FEDHUB_CONFIG_FILE", raising=False)
    monkeypatch.delenv("FEDHUB_TIERS", raising=False)


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load((ROOT / CHARTS["jupyterhub"][0]).read_text())


@pytest.mark.parametrize("chart", CHARTS)
def test_committed_values_are_the_generators_output(chart):
    args = ["--tiers", TIERS] + (["--chart", chart] if chart != "jupyterhub" else [])
    result = generate(*args)
    assert result.exit_code == 0, result.output
    committed = (ROOT / CHARTS[chart][0]).read_text()
    assert result.output == committed, (
        f"{CHARTS[chart][0]} is out of date: run "
        f"`fedhub deploy helm-values {' '.join(args)} -o {CHARTS[chart][0]}`"
    )


@pytest.mark.parametrize("chart", CHARTS)
def test_values_match_the_charts_schema(chart):
    path, schema_path = CHARTS[chart]
    schema = yaml.safe_load((ROOT / schema_path).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    data = yaml.safe_load((ROOT / path).read_text())
    jsonschema.validate(data, schema, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize(
    "path, bad",
    [
        (("singleuser", "profilelist"), []),  # z2jh spells it profileList
        (("singleuser", "cpu", "limit"), "1"),  # a number in z2jh
        (("hub", "db", "type"), "postgresql"),  # z2jh's enum says postgres
        (("hub", "extraFiles", "fedhub-tiers", "data"), {}),  # stringData or data, not both
        (("cull", "enabled"), "no"),
    ],
)
def test_the_schema_refuses_what_the_chart_refuses(values, path, bad):
    schema = yaml.safe_load((ROOT / CHARTS["jupyterhub"][1]).read_text())
    broken = copy.deepcopy(values)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


def test_the_dask_gateway_schema_refuses_a_wrong_auth_type():
    schema = yaml.safe_load((ROOT / CHARTS["dask-gateway"][1]).read_text())
    data = yaml.safe_load((ROOT / CHARTS["dask-gateway"][0]).read_text())
    data["gateway"]["auth"]["type"] = "hub"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft7Validator)


def test_profile_list_is_the_tiers_profiles(values):
    catalog = load_tiers(TIERS)
    entries = {p["slug"]: p for p in values["singleuser"]["profileList"]}
    assert list(entries) == list(catalog.profiles)
    assert sum(bool(p.get("default")) for p in entries.values()) == 1
    kube_traits = set(KubeSpawner.class_trait_names(config=True))
    for name, profile in catalog.profiles.items():
        override = entries[name]["kubespawner_override"]
        assert set(override) <= kube_traits, set(override) - kube_traits
        assert override["cpu_limit"] == profile.cpu
        assert override["mem_limit"] == int(profile.memory_gb * 2**30)
        assert override.get("node_selector", {}) == profile.node_selector
        for tier, spec in catalog.tiers.items():
            assert (tier in entries[name]["description"]) == (name in spec.profiles)


def test_the_tiers_file_in_the_hub_pod_is_the_tiers(values):
    text = values["hub"]["extraFiles"]["fedhub-tiers"]["stringData"]
    assert parse_tiers(yaml.safe_load(text), "values").as_dict == load_tiers(TIERS).as_dict


def _known_classes() -> dict[str, type]:
    """Every configurable class of the hub (with the Kubernetes backend) and the services."""
    hub = Config(
        {"JupyterHub": {"spawner_class": "fedhub-tier", "authenticator_class": "fedhub-oidc"}}
    )
    hub.TierSpawner.backend_class = "kubespawner.KubeSpawner"
    from jupyterhub.app import JupyterHub

    classes = [JupyterHub, *hub_classes(hub)]
    for parts in service_classes().values():
        classes += parts
    known: dict[str, type] = {}
    for cls in classes:
        for klass in cls.__mro__:
            if isinstance(klass, type) and issubclass(klass, Configurable):
                known.setdefault(klass.__name__, klass)
    return known


def _check_config(config: Config, known: dict[str, type], where: str) -> int:
    checked = 0
    for section, settings in config.items():
        assert section in known, f"{where}: no class {section}"
        traits = known[section].class_trait_names(config=True)
        for key in settings:
            assert key in traits, f"{where}: {section}.{key} is not a configurable trait"
            checked += 1
    return checked


def test_every_configured_trait_exists(values, tmp_path):
    known = _known_classes()
    checked = _check_config(Config(values["hub"]["config"]), known, "hub.config")
    # the fedhub configuration file mounted into the hub pod, loaded as traitlets loads it
    path = tmp_path / "fedhub_config.py"
    path.write_text(values["hub"]["extraFiles"]["fedhub-config"]["stringData"])
    loaded = PyFileConfigLoader(path.name, path=str(tmp_path)).load_config()
    checked += _check_config(loaded, known, "fedhub_config.py")
    assert checked >= 12
    # the check can fail
    with pytest.raises(AssertionError):
        _check_config(Config({"TierSpawner": {"backend": "x"}}), known, "typo")


def test_extra_config_is_python_that_loads_fedhubs_file(values):
    for source in values["hub"]["extraConfig"].values():
        tree = ast.parse(source)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        assert any(getattr(c.func, "id", "") == "load_subconfig" for c in calls)
    assert helm.CONFIG_FILE in values["hub"]["extraConfig"]["00-fedhub"]


def test_hub_services_are_fedhubs_services_on_open_ports(values):
    services = values["hub"]["services"]
    names = [m.rsplit(".", 1)[1] for m in service_modules()]
    assert [n for n in services if n != "dask-gateway"] == names
    ports = []
    for name in names:
        spec = services[name]
        port = int(spec["url"].rsplit(":", 1)[1])
        ports.append(port)
        assert spec["url"] == f"http://hub:{port}"
        assert spec["command"] == ["python", "-m", f"fedhub.services.{name}"]
        env = spec["environment"]
        assert env["FEDHUB_SERVICE_BIND_HOST"] == "0.0.0.0"
        assert env["FEDHUB_CONFIG_FILE"] == helm.CONFIG_FILE
        # no password or token in the values: the database password is the pgpass file's
        assert urlparse(env["FEDHUB_DB_URL"]).password is None
        assert not {"api_token", "apiToken"} & set(spec)
    assert len(set(ports)) == len(ports)
    assert sorted(p["port"] for p in values["hub"]["service"]["extraPorts"]) == sorted(ports)
    for policy in (
        values["hub"]["networkPolicy"]["ingress"][0],
        values["singleuser"]["networkPolicy"]["egress"][0],
        values["proxy"]["chp"]["networkPolicy"]["egress"][0],
    ):
        assert sorted(p["port"] for p in policy["ports"]) == sorted(ports)
    # user servers find the services through the hub's Service
    env = values["singleuser"]["extraEnv"]
    assert (
        env["FEDHUB_EXPERIMENTS_URL"] == services["experiments"]["url"] + "/services/experiments/"
    )
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert values["hub"]["loadRoles"]["scheduler-service"]["services"] == ["scheduler"]
    # the gateway's pod checks users' tokens on the hub's API
    gateway_rule = values["hub"]["networkPolicy"]["ingress"][1]
    assert (
        gateway_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "gateway"
    )
    assert gateway_rule["ports"] == [{"port": 8081, "protocol": "TCP"}]


def test_dask_gateway_workers_fit_the_largest_tier():
    catalog = load_tiers(TIERS)
    data = helm.dask_gateway_values(catalog)
    worker = data["gateway"]["backend"]["worker"]
    assert worker["cores"]["limit"] == max(t.gateway_worker_cores for t in catalog.tiers.values())
    ceiling = data["gateway"]["extraConfig"]["00-fedhub-ceilings"]
    most = max(t.gateway_max_workers for t in catalog.tiers.values())
    assert f"c.ClusterConfig.cluster_max_workers = {most}" in ceiling
    compile(ceiling, "extraConfig", "exec")


def test_another_tiers_file_changes_the_profiles(tmp_path):
    raw = yaml.safe_load((ROOT / TIERS).read_text())
    raw["profiles"]["huge"] = {
        "display_name": "Huge",
        "cpu": 32,
        "memory_gb": 128,
        "node_selector": {"pool": "big"},
    }
    raw["tiers"]["enterprise"]["profiles"].append("huge")
    path = tmp_path / "tiers.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "values.yaml"
    result = generate("--tiers", str(path), "-o", str(out), "--tag", "9.9")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(out.read_text())
    huge = next(p for p in data["singleuser"]["profileList"] if p["slug"] == "huge")
    assert huge["kubespawner_override"]["node_selector"] == {"pool": "big"}
    assert huge["kubespawner_override"]["cpu_limit"] == 32
    assert data["singleuser"]["image"]["tag"] == "9.9"


def test_cli_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "tiers.yaml"
    raw = yaml.safe_load((ROOT / TIERS).read_text())
    raw["profiles"]["small"]["node_selector"] = ["not", "a", "mapping"]
    bad.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["deploy", "helm-values", "--tiers", str(bad)])
    assert result.exit_code != 0
    assert str(bad) in result.output and "node_selector" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        main, ["deploy", "helm-values", "--tiers", TIERS, "-o", str(tmp_path / "no" / "x.yaml")]
    )
    assert result.exit_code != 0
    assert "cannot write" in result.output and "Traceback" not in result.output


def test_the_state_claim_is_the_one_the_hub_mounts(values):
    path = ROOT / "deploy/kubernetes/fedhub-state.yaml"
    claim = yaml.safe_load(path.read_text())
    assert claim["kind"] == "PersistentVolumeClaim"
    mounted = [v for v in values["hub"]["extraVolumes"] if "persistentVolumeClaim" in v]
    assert [v["persistentVolumeClaim"]["claimName"] for v in mounted] == [claim["metadata"]["name"]]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed on this machine")
    out = subprocess.run(
        [kubectl, "set", "env", "--local", "--list", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_a_service_in_the_hub_pod_listens_on_every_address(monkeypatch):
    """``http://hub:10101`` is the hub's Service, not an address of the pod: bind 0.0.0.0."""
    from fedhub.service import listen_address

    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://hub:10101")
    monkeypatch.delenv("FEDHUB_SERVICE_BIND_HOST", raising=False)
    assert listen_address() == ("hub", 10101)
    monkeypatch.setenv("FEDHUB_SERVICE_BIND_HOST", "0.0.0.0")
    assert listen_address() == ("0.0.0.0", 10101)
