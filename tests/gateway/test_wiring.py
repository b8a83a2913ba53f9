"""``fedhub up``'s configuration with and without the gateway (fast: nothing is started)."""

from __future__ import annotations

import pytest

from fedhub import launcher


@pytest.mark.parametrize("how", ["flag", "config file", "off"])
def test_the_gateway_is_a_managed_service_only_when_asked_for(how, tmp_path):
    config = ""
    if how == "config file":
        config = tmp_path / "fedhub_config.py"
        config.write_text("c.GatewaySettings.enabled = True\n")
    ctx = launcher.LaunchContext(state_dir=tmp_path, db_url="sqlite://", port=8123,
                                 config_file=str(config), gateway=how == "flag")  # fmt: skip
    c = launcher.build_config(ctx)
    found = [s for s in c.JupyterHub.services if s["name"] == "dask-gateway"]
    env = c.Spawner.environment.get_value({})  # a LazyConfigValue of updates
    if how == "off":
        assert found == [] and not any(k.startswith("DASK_GATEWAY__") for k in env)
        return
    [spec] = found
    assert spec["command"][-2:] == ["-m", "fedhub.gateway"]
    assert spec["url"].startswith("http://127.0.0.1:")
    tcp = spec["environment"]["FEDHUB_GATEWAY_TCP_ADDRESS"]
    assert spec["environment"]["FEDHUB_DB_URL"] == "sqlite://"
    assert env["DASK_GATEWAY__ADDRESS"] == "http://127.0.0.1:8123/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == f"gateway://{tcp}"
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    # the other services' variables are still there
    assert "FEDHUB_EXPERIMENTS_URL" in env


def test_the_experiments_service_may_call_the_gateway(tmp_path):
    ctx = launcher.LaunchContext(state_dir=tmp_path, db_url="sqlite://", port=8123, gateway=True)
    c = launcher.build_config(ctx)
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    role = roles["dask-gateway-tenant-services"]
    assert role["services"] == ["experiments"]
    assert role["scopes"] == ["access:services!service=dask-gateway"]
    [experiments] = [s for s in c.JupyterHub.services if s["name"] == "experiments"]
    assert experiments["environment"]["DASK_GATEWAY__ADDRESS"].endswith("/services/dask-gateway")
