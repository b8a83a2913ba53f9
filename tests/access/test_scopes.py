"""fedhub's permissions are JupyterHub custom scopes: every endpoint, every role, a real hub.

The table in ``scope_table.py`` names, for every route of the billing, audit, experiments and
scheduler services, the permission it needs and a request to make;
``test_the_table_covers_every_endpoint`` fails when a service gains a route the table does
not name. For each role of both
tenants (and for a key holding only ``custom:fedhub:usage:read``) every request is made
and the status checked against what the role's scopes, narrowed by the token's, allow:
the endpoint's status when allowed, 403 when not, and 404 for another tenant's data.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role
from tests.access.conftest import PEOPLE, SERVICES, make_key, service_env
from tests.access.scope_table import AUDIT_READ, NOT_SERVED, TABLE, Endpoint, service_endpoints

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_covers_every_endpoint():
    assert {(e.service, e.route, e.method) for e in TABLE} == service_endpoints() - NOT_SERVED


def test_every_permission_a_service_checks_is_a_scope():
    """Every ``require("x:y")`` / ``can("x:y")`` in the services names a defined permission."""
    checked = set()
    for path in (ROOT / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("require", "can")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                checked.add(node.args[0].value)
    assert checked and checked <= set(scopes.BY_NAME)


def test_platform_only_permissions_are_never_filtered():
    for role in Role:
        if role == Role.PLATFORM_ADMIN:
            continue
        for scope in scopes.role_scopes(role, "acme"):
            name = scope.partition("!")[0].removeprefix(scopes.SCOPE_PREFIX)
            assert not scopes.BY_NAME[name].platform_only
    # a filtered copy of a platform-only scope grants nothing
    held = {scopes.scope("billing:manage") + scopes.tenant_filter("acme")}
    assert not scopes.granted("billing:manage", held, "acme")
    assert scopes.granted("usage:read", {scopes.scope("usage:read")}, "acme")
    assert not scopes.granted(
        "usage:read", {scopes.scope("usage:read") + scopes.tenant_filter("globex")}, "acme"
    )


def test_production_config_defines_the_same_scopes():
    """hub_config/jupyterhub_config.py holds a copy of the scopes (a config file has no logic)."""
    from traitlets.config import PyFileConfigLoader

    loader = PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT / "hub_config"))
    config = loader.load_config()
    assert dict(config.JupyterHub.custom_scopes) == scopes.custom_scopes()
    for service in config.JupyterHub.services:
        assert service["oauth_client_allowed_scopes"] == list(scopes.ALL_SCOPES)


def test_docs_table_is_generated_from_the_definition():
    text = (ROOT / "docs" / "access.md").read_text()
    assert docs_scope_table() in text, "regenerate the table in docs/access.md: see its comment"


def docs_scope_table() -> str:
    roles = [
        Role.PLATFORM_ADMIN,
        Role.TENANT_ADMIN,
        Role.MEMBER,
        Role.ANALYST,
        Role.SERVICE_ACCOUNT,
    ]
    head = "| scope | what it allows | " + " | ".join(str(r) for r in roles) + " |"
    rule = "|---|---|" + "---|" * len(roles)
    rows = [
        f"| `{p.scope}` | {p.description}{' (platform only)' if p.platform_only else ''} | "
        + " | ".join("✓" if p.name in scopes.ROLE_PERMISSIONS[r] else "" for r in roles)
        + " |"
        for p in scopes.PERMISSIONS
    ]
    return "\n".join([head, rule, *rows])


# -- the table, on a real hub --------------------------------------------------------------

CALLERS = ["platform-admin", "tenant-admin", "member", "analyst", "service-account", "usage-key"]


@pytest.fixture(scope="module")
def tokens(access_hub, service_accounts) -> dict[tuple[str, str], tuple[str, frozenset]]:
    """(caller, tenant) -> (token, the permissions the token may use)."""
    found = {}
    for tenant in ("acme", "globex"):
        for role, people in PEOPLE.items():
            found[(str(role), tenant)] = (
                access_hub.token(people[tenant]),
                scopes.ROLE_PERMISSIONS[role],
            )
        account = service_accounts[tenant]
        found[("service-account", tenant)] = (
            account["token"],
            scopes.ROLE_PERMISSIONS[Role.SERVICE_ACCOUNT],
        )
        key = make_key(
            access_hub,
            PEOPLE[Role.TENANT_ADMIN][tenant],
            account["name"],
            ["custom:fedhub:usage:read"],
        )
        found[("usage-key", tenant)] = (key["token"], frozenset({"usage:read"}))
    return found


def expected(endpoint: Endpoint, caller: str, permissions: frozenset, own: bool) -> int:
    """The status the table promises for ``caller`` (holding ``permissions``)."""
    if caller != "platform-admin" and endpoint.needs == AUDIT_READ:
        # audit:read-all is the platform's; analysts read if acme's tier lets them (it does)
        allowed = bool(permissions & {"audit:read", "audit:read-if-tier"})
    else:
        allowed = not endpoint.needs or bool(permissions & set(endpoint.needs))
    if not allowed:
        return 403
    if not own and endpoint.tenant_data and caller != "platform-admin":
        return 404
    if endpoint.admins_only and caller not in ("platform-admin", "tenant-admin"):
        return 403
    return endpoint.ok


@pytest.mark.slow
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("own", [True, False], ids=["own-tenant", "other-tenant"])
def test_every_endpoint_answers_as_the_scopes_say(access_hub, tokens, caller, own):
    """acme's data, asked for by a caller of acme (own) or of globex (other)."""
    token, permissions = tokens[(caller, "acme" if own else "globex")]
    wrong = []
    for endpoint in TABLE:
        url = endpoint.url("acme", access_hub.records)
        r = access_hub.api(endpoint.method, url, token, json=endpoint.body)
        want = expected(endpoint, caller, permissions, own)
        if r.status_code != want:
            wrong.append(f"{endpoint.method} {url}: {r.status_code} (want {want}) {r.text[:200]}")
        elif r.status_code in (403, 404):
            assert r.json()["error"]["code"] in ("forbidden", "not_found"), r.text
        if not own and caller != "platform-admin" and r.status_code < 300 and endpoint.tenant_data:
            wrong.append(f"{endpoint.method} {url}: another tenant's data was answered")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_a_usage_key_reads_its_tenants_usage_only(access_hub, tokens, service_accounts):
    token, _ = tokens[("usage-key", "acme")]
    r = access_hub.api("GET", SERVICES["billing"] + "api/v1/usage", token)
    assert r.status_code == 200, r.text
    usage = r.json()
    assert usage["tenant"] == "acme" and "by_user" not in usage  # its own share only
    # the tenant's usage against its limits, tenant-wide
    r = access_hub.api("GET", SERVICES["experiments"] + "api/v1/quota", token)
    assert r.status_code == 200 and r.json()["tenant"] == "acme", r.text
    assert r.json()["meters"] and r.json()["limits"]
    # with usage:read-all as well, the whole tenant's
    wide = make_key(
        access_hub,
        "acme-admin",
        service_accounts["acme"]["name"],
        ["custom:fedhub:usage:read", "custom:fedhub:usage:read-all"],
    )
    r = access_hub.api(
        "GET",
        SERVICES["billing"] + f"api/v1/usage?period={access_hub.records['period']}",
        wide["token"],
    )
    assert r.status_code == 200 and "alice" in r.json()["by_user"], r.text
    # the refusal names the scope the token lacks
    r = access_hub.api("GET", SERVICES["experiments"] + "api/v1/experiments", token)
    assert r.status_code == 403
    assert "custom:fedhub:experiments:read" in r.json()["error"]["message"]


@pytest.mark.slow
def test_a_token_with_access_services_but_no_fedhub_scope_is_refused(access_hub):
    """A member's token narrowed to access:services reaches the services and may do nothing."""
    r = access_hub.api(
        "POST",
        "/hub/api/users/alice/tokens",
        access_hub.token("alice"),
        json={"scopes": ["access:services"], "note": "no fedhub scopes"},
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    for endpoint in TABLE:
        if endpoint.needs:
            r = access_hub.api(
                endpoint.method, endpoint.url("acme", access_hub.records), token, json=endpoint.body
            )
            assert r.status_code == 403, (endpoint, r.status_code, r.text)
            assert re.search(r"custom:fedhub:[a-z-]+:[a-z-]+", r.json()["error"]["message"]) or (
                "role" in r.json()["error"]["message"]
            )


@pytest.mark.slow
def test_a_browser_session_of_a_service_holds_the_users_fedhub_scopes(access_hub):
    """The OAuth exchange a browser makes with the billing service, step by step: the token
    it ends with holds the user's fedhub scopes (filtered), and the service answers it."""
    hub = access_hub
    env = service_env(hub, "billing")
    client = {"client_id": env["JUPYTERHUB_CLIENT_ID"]}
    callback = env["JUPYTERHUB_OAUTH_CALLBACK_URL"]
    session = hub.login("alice").session
    r = session.get(
        f"{hub.url}/hub/api/oauth2/authorize",
        params={**client, "redirect_uri": callback, "response_type": "code", "state": "s"},
        allow_redirects=False,
    )
    assert r.status_code == 302, r.text
    code = parse_qs(urlparse(r.headers["Location"]).query)["code"][0]
    r = requests.post(
        f"{hub.url}/hub/api/oauth2/token",
        data={
            **client,
            "client_secret": env["JUPYTERHUB_API_TOKEN"],
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    held = hub.api("GET", "/hub/api/user", token).json()["scopes"]
    member = scopes.role_scopes(Role.MEMBER, "acme")
    assert set(member) <= set(held)
    assert not {s for s in scopes.fedhub_scopes(held)} - set(member)
    assert hub.api("GET", SERVICES["billing"] + "api/v1/usage", token).status_code == 200
    assert hub.api("GET", SERVICES["billing"] + "api/v1/invoices", token).status_code == 403
