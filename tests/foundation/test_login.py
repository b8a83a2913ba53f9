"""Logging in to a real hub: lockout, TOTP, suspended tenants, sign-up, the mirror."""

import html
import re

import pyotp
import pytest

from tests.harness import wait_for

pytestmark = pytest.mark.slow

LOCKOUT_ARGS = [
    "--LocalTenantAuthenticator.lockout_threshold=5",
    "--LocalTenantAuthenticator.lockout_seconds=4",
    "--TenantAuthenticatorMixin.mirror_interval=0.3",
]


@pytest.fixture(scope="module")
def auth_hub(hub_factory):
    return hub_factory(args=LOCKOUT_ARGS)


def test_demo_users_log_in(auth_hub):
    for user in ("admin", "acme-admin", "alice", "dave", "globex-admin", "bob", "carol"):
        r = auth_hub.login(user)
        assert r.status_code == 302, (user, r.status_code)
    assert auth_hub.login("alice", "not-the-password").status_code == 403
    assert auth_hub.login("nobody").status_code == 403


def test_five_wrong_passwords_lock_the_account_for_a_while(auth_hub):
    hub = auth_hub
    hub.fedhub("user", "add", "lucy", "--tenant", "acme", "--password", "Lockout-test-pw-1")
    for _ in range(5):
        assert hub.login("lucy", "wrong-password").status_code == 403
    # now even the right password is refused, with a message that says why
    r = hub.login("lucy", "Lockout-test-pw-1")
    assert r.status_code == 403
    assert "locked after 5 failed logins" in r.text
    # after lockout_seconds it works again
    wait_for(
        lambda: hub.login("lucy", "Lockout-test-pw-1").status_code == 302,
        15,
        interval=0.5,
        what="lockout to expire",
    )


def test_totp_second_factor(auth_hub):
    hub = auth_hub
    hub.fedhub("user", "add", "tom", "--tenant", "globex", "--password", "Second-factor-1")
    out = hub.fedhub("user", "totp", "tom").stdout
    uri = next(line for line in out.splitlines() if line.startswith("otpauth://"))
    totp = pyotp.parse_uri(uri)
    assert hub.login("tom", "Second-factor-1").status_code == 403  # code missing
    assert (
        hub.login(
            "tom", "Second-factor-1", otp="000000" if totp.now() != "000000" else "111111"
        ).status_code
        == 403
    )
    r = hub.login("tom", "Second-factor-1", otp=totp.now())
    assert r.status_code == 302
    # the same code cannot be replayed
    assert hub.login("tom", "Second-factor-1", otp=totp.now()).status_code == 403


def test_suspended_tenant_cannot_log_in(auth_hub):
    hub = auth_hub
    hub.fedhub("tenant", "create", "umbrella", "--name", "Umbrella Corp", "--tier", "starter")
    hub.fedhub("user", "add", "ursula", "--tenant", "umbrella", "--password", "Suspension-pw-1")
    assert hub.login("ursula", "Suspension-pw-1").status_code == 302
    hub.fedhub("tenant", "suspend", "umbrella", "--reason", "unpaid")
    r = hub.login("ursula", "Suspension-pw-1")
    assert r.status_code == 403
    assert "Your organisation 'Umbrella Corp' is suspended" in html.unescape(r.text)
    hub.fedhub("tenant", "resume", "umbrella")
    assert hub.login("ursula", "Suspension-pw-1").status_code == 302


def test_cli_changes_are_mirrored_into_the_running_hub(auth_hub):
    hub = auth_hub
    admin = hub.token("admin")
    hub.fedhub("tenant", "create", "hooli", "--tier", "professional")
    hub.fedhub(
        "user",
        "add",
        "gavin",
        "--tenant",
        "hooli",
        "--role",
        "tenant-admin",
        "--password",
        "Mirror-admin-pw-1",
    )
    hub.fedhub("user", "add", "jared", "--tenant", "hooli", "--password", "Mirror-member-pw-1")

    def mirrored():
        r = hub.api("GET", "/hub/api/groups/tenant-hooli", admin)
        return r.status_code == 200 and sorted(r.json()["users"]) == ["gavin", "jared"] and r.json()

    group = wait_for(mirrored, 10, what="tenant-hooli group")
    assert group["properties"]["tier"] == "professional"
    gavin = hub.token("gavin", "Mirror-admin-pw-1")
    assert sorted(u["name"] for u in hub.api("GET", "/hub/api/users", gavin).json()) == [
        "gavin",
        "jared",
    ]
    # demoting the admin takes their tenant-admin scopes away, without a login
    hub.fedhub("user", "set-role", "gavin", "member")
    wait_for(
        lambda: hub.api("GET", "/hub/api/users/jared", gavin).status_code in (403, 404),
        10,
        what="role change to reach the hub",
    )
    hub.fedhub("tenant", "update", "hooli", "--tier", "enterprise")
    wait_for(
        lambda: (
            hub.api("GET", "/hub/api/groups/tenant-hooli", admin).json()["properties"]["tier"]
            == "enterprise"
        ),
        10,
        what="tier change in group properties",
    )
    hub.fedhub("tenant", "delete", "hooli", "--yes")
    wait_for(
        lambda: hub.api("GET", "/hub/api/groups/tenant-hooli", admin).status_code == 404,
        10,
        what="group of deleted tenant to go",
    )


def test_sign_up_by_invitation_and_by_email_domain(auth_hub):
    hub = auth_hub
    import requests

    def sign_up(**form):
        s = requests.Session()
        s.get(f"{hub.url}/hub/signup")
        return s.post(f"{hub.url}/hub/signup", data={**form, "_xsrf": s.cookies.get("_xsrf")})

    # no invitation and a domain nobody allows: refused
    r = sign_up(username="eve", email="eve@evil.example", password="eve-password-1")
    assert r.status_code == 400 and "needs an invitation" in r.text
    # acme allows acme.example: the account works once the link sent there is followed
    # (no SMTP server here: the hub logs the link; tests/security/test_signup.py has the rest)
    r = sign_up(username="erin", email="erin@acme.example", password="Acme-domain-pw-1")
    assert r.status_code == 200 and "Check your email" in r.text
    assert hub.login("erin", "Acme-domain-pw-1").status_code == 403
    link = wait_for(
        lambda: re.search(r"sign-up link for erin <erin@acme.example>: (\S+)", hub.log()),
        10,
        what="the sign-up link in the hub's log",
    ).group(1)
    s = requests.Session()
    token = link.split("token=", 1)[1]
    s.get(link)
    r = s.post(
        link.split("?")[0],
        data={"token": token, "password": "Acme-domain-pw-1", "_xsrf": s.cookies.get("_xsrf")},
    )
    assert r.status_code == 200 and "is ready" in r.text
    assert hub.login("erin", "Acme-domain-pw-1").status_code == 302
    # invitation: the code works once, for its email only
    out = hub.fedhub(
        "user", "invite", "frank@elsewhere.example", "--tenant", "globex", "--role", "analyst"
    ).stdout
    code = out.split(": ")[1].split()[0]
    r = sign_up(
        username="frank",
        email="other@elsewhere.example",
        password="Globex-invite-pw-1",
        invitation=code,
    )
    assert r.status_code == 400
    r = sign_up(
        username="frank",
        email="frank@elsewhere.example",
        password="Globex-invite-pw-1",
        invitation=code,
    )
    assert r.status_code == 200, r.text
    r = sign_up(
        username="frank2",
        email="frank@elsewhere.example",
        password="Globex-invite-pw-1",
        invitation=code,
    )
    assert r.status_code == 400 and "not valid" in r.text
    info = hub.fedhub("user", "list", "--tenant", "globex").stdout
    assert "frank" in info and "analyst" in info
