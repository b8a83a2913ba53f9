"""Tier templates on a real hub: the running hub serves a tier imported after it started,
and a version applied later, to the tenants on it (the spawn page's profiles)."""

from __future__ import annotations

import json

import pytest

from tests.harness import wait_for

pytestmark = pytest.mark.slow

PASSWORD = "Tier-templates-login-1"


@pytest.fixture(scope="module")
def hub(hub_factory, tmp_path_factory):
    config = tmp_path_factory.mktemp("tiers-config") / "fedhub_config.py"
    config.write_text("c.Fedhub.stored_tiers_ttl = 1\n")  # an applied version: within 1 s
    return hub_factory(env={"FEDHUB_CONFIG_FILE": str(config)})


def spawn_page(hub, session) -> str:
    page = session.get(f"{hub.url}/hub/spawn/tony", timeout=30)
    assert page.status_code == 200, page.status_code
    return page.text


def test_a_running_hub_serves_imported_tiers_and_applied_versions(hub, tmp_path):
    exported = hub.fedhub("tiers", "export", "starter").stdout
    gold = tmp_path / "gold.yaml"
    gold.write_text(
        exported.replace("  starter:\n", "  gold:\n")
        .replace("display_name: Starter\n", "display_name: Gold\n")
        .replace("    - medium\n", "    - medium\n    - large\n")
    )
    hub.fedhub("tiers", "import", str(gold))
    hub.fedhub("tenant", "create", "stark", "--tier", "gold")
    hub.fedhub("user", "add", "tony", "--tenant", "stark", "--password", PASSWORD)
    login = hub.login("tony", PASSWORD)
    assert login.status_code == 302, login.status_code
    page = spawn_page(hub, login.session)
    assert 'name="profile" value="large"' in page and 'value="medium"' in page

    # a new version is stored, not applied: the hub keeps serving version 1
    hub.fedhub("tiers", "clone", "gold", "gold", "--set", "profiles=[small, medium]")
    assert 'value="large"' in spawn_page(hub, login.session)
    hub.fedhub("tiers", "apply", "gold")
    wait_for(
        lambda: 'value="large"' not in spawn_page(hub, login.session),
        15,
        interval=0.5,
        what="the applied version on the spawn page",
    )
    assert 'value="small"' in spawn_page(hub, login.session)
    # a platform admin reads the same catalog through the CLI
    history = json.loads(hub.fedhub("tiers", "history", "gold", "--json").stdout)
    assert [(v["version"], v["applies"]) for v in history["versions"]] == [(1, False), (2, True)]
    assert "Traceback" not in hub.log()
