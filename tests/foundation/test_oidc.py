"""Single sign-on through a real OpenID Connect provider (oidc-provider-mock, in-process)."""

import html
import subprocess
import sys
from urllib.parse import urljoin

import oidc_provider_mock
import pytest
import requests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def provider():
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


def oidc_hub_args(provider: str) -> list[str]:
    """The hub's command line for fedhub-oidc against ``provider``."""
    scopes = [f"--TenantOIDCAuthenticator.scope={s}" for s in ("openid", "profile", "email")]
    return [
        "--JupyterHub.authenticator_class=fedhub-oidc",
        "--TenantOIDCAuthenticator.client_id=fedhub",
        "--TenantOIDCAuthenticator.client_secret=not-a-real-secret",
        f"--TenantOIDCAuthenticator.authorize_url={provider}/oauth2/authorize",
        f"--TenantOIDCAuthenticator.token_url={provider}/oauth2/token",
        f"--TenantOIDCAuthenticator.userdata_url={provider}/userinfo",
        "--TenantOIDCAuthenticator.username_claim=sub",
        *scopes,
    ]


@pytest.fixture(scope="module")
def oidc_hub(hub_factory, provider):
    return hub_factory(args=oidc_hub_args(provider))


def sso_login(hub, provider, sub, **claims):
    """The whole browser dance: hub → provider form → provider redirect → hub callback."""
    requests.put(f"{provider}/users/{sub}", json=claims, timeout=10).raise_for_status()
    s = requests.Session()
    r = s.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    authorize = r.headers["Location"]
    assert authorize.startswith(provider)
    r = s.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    callback = urljoin(authorize, r.headers["Location"])
    return s.get(callback, allow_redirects=False, timeout=30)


def test_sso_by_claim_provisions_member_of_tenant(oidc_hub, provider):
    hub = oidc_hub
    r = sso_login(hub, provider, "sam", email="sam@anywhere.example", fedhub_tenant="acme")
    assert r.status_code == 302, html.unescape(r.text)[-600:]
    assert "sam" in hub.fedhub("user", "list", "--tenant", "acme").stdout
    group = hub.api("GET", "/hub/api/groups/tenant-acme", _admin_token(hub)).json()
    assert "sam" in group["users"]


def test_sso_role_claim_and_email_domain(oidc_hub, provider):
    hub = oidc_hub
    r = sso_login(
        hub, provider, "sue", email="sue@acme.example", email_verified=True, fedhub_role="analyst"
    )
    assert r.status_code == 302
    out = hub.fedhub("user", "list", "--tenant", "acme").stdout
    assert any(line.split()[:3] == ["sue", "acme", "analyst"] for line in out.splitlines())
    # a claim can never make a platform admin
    r = sso_login(hub, provider, "sly", fedhub_tenant="acme", fedhub_role="platform-admin")
    assert r.status_code == 302
    assert any(
        line.split()[:3] == ["sly", "acme", "member"]
        for line in hub.fedhub("user", "list").stdout.splitlines()
    )


def test_sso_refused_without_tenant_or_for_tier_without_sso(oidc_hub, provider):
    hub = oidc_hub
    r = sso_login(hub, provider, "nina", email="nina@nowhere.example")
    assert r.status_code == 403
    assert "did not say which organisation" in html.unescape(r.text)
    # globex is on starter, whose tier has no SSO
    r = sso_login(hub, provider, "gil", fedhub_tenant="globex")
    assert r.status_code == 403
    assert "Single sign-on is not part of Globex's starter tier" in html.unescape(r.text)


def _admin_token(hub):
    """A platform admin's token, made with JupyterHub's own ``jupyterhub token`` command
    (an OIDC hub has no password form to log in through)."""
    out = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "token", "admin", "--db", hub.db_url],
        capture_output=True,
        text=True,
        cwd=hub.state_dir,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _text(r: requests.Response) -> str:
    return " ".join(html.unescape(r.text).split())


# -- issue 10, route 4: the email domain maps a user only when the provider verified it


def test_oidc_maps_by_email_domain_only_when_the_address_is_verified(oidc_hub, provider):
    hub = oidc_hub
    r = sso_login(hub, provider, "mal", email="mal@acme.example", email_verified=False)
    assert r.status_code == 403
    assert "has not verified your email address m***@acme.example" in _text(r)
    r = sso_login(hub, provider, "mel", email="mel@acme.example")  # no claim at all
    assert r.status_code == 403
    users = [line.split()[0] for line in hub.fedhub("user", "list").stdout.splitlines()[2:]]
    assert "mal" not in users and "mel" not in users

    r = sso_login(hub, provider, "val", email="val@acme.example", email_verified=True)
    assert r.status_code == 302, _text(r)[-600:]
    assert any(
        line.split()[:2] == ["val", "acme"]
        for line in hub.fedhub("user", "list").stdout.splitlines()
    )
    # a tenant claim from the provider works as before, verified address or not
    r = sso_login(
        hub,
        provider,
        "tim",
        email="tim@elsewhere.example",
        email_verified=False,
        fedhub_tenant="acme",
    )
    assert r.status_code == 302, _text(r)[-600:]


def test_login_page_shows_the_named_tenants_branding(oidc_hub):
    """``/hub/login?tenant=acme`` on the OIDC hub: acme's name and logo (docs/branding.md)."""
    from fedhub import db
    from fedhub.tenancy import branding

    hub = oidc_hub
    with db.session_scope(hub.db_url) as s:
        branding.set_branding(s, "acme", display_name="Acme via SSO", primary_colour="#c2185b")
    page = requests.get(f"{hub.url}/hub/login?tenant=acme", timeout=10).text
    assert 'id="fedhub-tenant-name"' in page and "Acme via SSO" in page
    assert "#c2185b" not in page  # the colour is not public: only the name and logo
    plain = requests.get(f"{hub.url}/hub/login?tenant=globex", timeout=10).text
    assert "fedhub-tenant-name" not in plain and "Acme" not in plain
