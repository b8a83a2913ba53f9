"""The tier's security policy (issue 12, must show 4): password rules, MFA enrolment with
recovery codes, password age, and tenants' IP allowlists.

Unit tests of the rules and the store first (both database engines where they write),
then a real hub: an enterprise user without MFA is sent to enrolment and logged in only
after it, weak and reused passwords are refused naming the rule, a login from outside
the tenant's allowlist is refused and audited, and the allowlist API is the tenant
admin's alone.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timedelta
from html import unescape

import pyotp
import pytest
import requests

from fedhub.db.base import utcnow
from fedhub.errors import Forbidden, InvalidRequest
from fedhub.tenancy import allowlist, passwords
from fedhub.tenancy.passwords import PasswordRefused, check_password
from fedhub.tiers import PasswordPolicy, SecurityPolicy, load_tiers
from tests.audit.test_service import wait_actions
from tests.foundation import test_oidc
from tests.foundation.test_oidc import oidc_hub_args, sso_login
from tests.security.signup_mail import sign_up

CATALOG = load_tiers()
ENTERPRISE = CATALOG.get("enterprise").security
STRONG = "Quiet-harbour-lamp-42"  # 21 characters, 4 classes
FIRST = "First-strong-pass-1"


# -- the password rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Short-1a", "at least 14 characters"),
        ("alllowercaseletters", "3 of: lower case, upper case, digits, symbols"),
        ("lowercase-and-symbols", "3 of: lower case, upper case, digits, symbols"),
        ("Ivana-Secure-2026!", "must not contain your user name or email"),
        ("Xy-ivana.k@example-1", "must not contain your user name or email"),
    ],
)
def test_a_weak_password_is_refused_naming_the_rule(password, rule):
    with pytest.raises(PasswordRefused) as e:
        check_password(ENTERPRISE.password, password, "ivana", "ivana.k@example.org")
    assert e.value.status == 400 and e.value.code == "password_policy"
    assert e.value.message == f"password refused: {rule}"
    assert e.value.details["requirement"] == rule


def test_a_password_that_keeps_the_rules_passes():
    assert check_password(ENTERPRISE.password, STRONG, "ivana", "ivana.k@example.org") == STRONG
    # the lowest tier asks for 8 characters of any kind
    assert check_password(PasswordPolicy(), "abcdefgh", "ivana", None) == "abcdefgh"


def test_one_of_the_last_n_passwords_is_refused():
    old = [passwords.hash_password(p) for p in ("Old-password-one-1", STRONG)]
    with pytest.raises(PasswordRefused, match="must not be one of your last 10 passwords"):
        check_password(ENTERPRISE.password, STRONG, "ivana", None, old)
    policy = PasswordPolicy(min_length=8, history=0)  # no history: the same one again is fine
    assert check_password(policy, STRONG, "ivana", None, old) == STRONG


def test_login_steps_follow_the_policy():
    now = utcnow()
    fresh, old = now - timedelta(days=1), now - timedelta(days=91)
    steps = passwords.login_steps
    assert steps(ENTERPRISE, totp_enabled=False, password_changed_at=fresh, now=now) == [
        passwords.ENROL_MFA
    ]
    assert steps(ENTERPRISE, totp_enabled=True, password_changed_at=old, now=now) == [
        passwords.CHANGE_PASSWORD
    ]
    assert steps(ENTERPRISE, totp_enabled=True, password_changed_at=fresh, now=now) == []
    assert steps(SecurityPolicy(), totp_enabled=False, password_changed_at=old, now=now) == []


# -- allowlists ---------------------------------------------------------------------------


def test_allowlist_networks_are_validated_and_matched():
    assert allowlist.normalize(["10.0.0.0/8", "192.0.2.7", "10.0.0.0/8", "2001:db8::/32"]) == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
    ]
    for bad in ("10.0.0.1/8", "300.1.1.1/32", "not-a-network", 42):
        with pytest.raises(InvalidRequest, match=re.escape(f"invalid CIDR {bad!r}")):
            allowlist.normalize([bad])
    assert allowlist.address_allowed([], "203.0.113.9")  # no list: anywhere
    assert allowlist.address_allowed(["10.0.0.0/8"], "10.2.3.4")
    assert allowlist.address_allowed(["10.0.0.0/8"], "::ffff:10.2.3.4")  # IPv4-mapped
    assert not allowlist.address_allowed(["10.0.0.0/8"], "127.0.0.1")
    assert not allowlist.address_allowed(["10.0.0.0/8"], None)
    with pytest.raises(allowlist.AddressNotAllowed) as e:
        allowlist.check_login_address("acme", ["10.0.0.0/8"], "127.0.0.1")
    assert e.value.message == (
        "logins to acme are allowed only from its allowlisted networks; your address is 127.0.0.1"
    )


# -- the store: history, recovery codes, allowlists (both engines) --------------------------


@pytest.fixture
def store(migrated_db, tmp_path, monkeypatch):
    from fedhub.tenancy.store import TenantStore
    from fedhub.tenancy.totp import TotpSecretBox

    box = TotpSecretBox(key_file=str(tmp_path / "keys" / "totp.key"))
    store = TenantStore(migrated_db, CATALOG, totp_box=box)
    store.create_tenant("bigco", tier="enterprise")
    store.create_tenant("smallco", tier="starter")
    store.add_user("ivana", "bigco", password=FIRST, email="ivana@bigco.example")
    return store


def test_a_changed_password_joins_the_history(store):
    security = store.security
    security.change_password("ivana", STRONG)
    security.change_password("ivana", "Second-strong-pass-7")
    for reused in (STRONG, FIRST, "Second-strong-pass-7"):  # two old ones and the current
        with pytest.raises(PasswordRefused, match="must not be one of your last 10 passwords"):
            security.change_password("ivana", reused)
    assert security.login_steps("ivana") == [passwords.ENROL_MFA]
    # a tenant that remembers only the current password: the older ones are allowed again
    store.update_tenant("bigco", overrides={"security": {"password": {"history": 1}}})
    security.change_password("ivana", FIRST)


def test_recovery_codes_work_once_and_are_replaced(store):
    from fedhub.tenancy.security import AccountSecurity

    security = store.security
    secret = security.start_enrolment("ivana")
    with pytest.raises(InvalidRequest, match="code does not match"):
        security.confirm_enrolment(
            "ivana", "000000" if pyotp.TOTP(secret).now() != "000000" else "1"
        )
    codes = security.confirm_enrolment("ivana", pyotp.TOTP(secret).now())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert security.login_steps("ivana") == []
    with store.session() as s:
        assert AccountSecurity.redeem_recovery_code(s, "ivana", codes[0])
    with store.session() as s:
        assert not AccountSecurity.redeem_recovery_code(s, "ivana", codes[0])  # spent
    assert security.unused_recovery_codes("ivana") == 9
    fresh = security.regenerate_recovery_codes("ivana")
    with store.session() as s:
        assert not AccountSecurity.redeem_recovery_code(s, "ivana", codes[1])  # replaced
        assert AccountSecurity.redeem_recovery_code(s, "ivana", fresh[1].upper())
    # a removed user's codes go with the credential: a new "ivana" inherits none
    store.remove_user("ivana")
    store.add_user("ivana", "bigco", password="another-password")
    assert security.unused_recovery_codes("ivana") == 0


def test_a_user_without_a_local_password_has_no_enrolment(store):
    from fedhub.errors import NotFound

    store.add_user("sso-sam", "bigco")  # an identity provider's user
    assert store.security.pending_secret("sso-sam") is None
    with pytest.raises(NotFound, match="identity provider"):
        store.security.confirm_enrolment("sso-sam", "123456")
    assert store.security.login_steps("sso-sam") == []  # MFA is the provider's job


def test_allowlist_needs_the_tier_and_names_it(store):
    security = store.security
    assert security.set_allowlist("bigco", ["10.1.0.0/16"]) == ["10.1.0.0/16"]
    with pytest.raises(Forbidden, match="not part of smallco's starter tier"):
        security.set_allowlist("smallco", ["10.1.0.0/16"])
    assert security.set_allowlist("smallco", []) == []  # lifting is always allowed
    with pytest.raises(allowlist.AddressNotAllowed, match="logins to bigco"):
        security.check_login_address("ivana", "192.0.2.1")
    security.check_login_address("ivana", "10.1.2.3")


# -- the CLI ------------------------------------------------------------------------------


def test_cli_sets_allowlists_and_refuses_bad_input(tmp_path):
    from click.testing import CliRunner

    from fedhub.cli import main

    def run(*args):
        return CliRunner().invoke(main, ["--state-dir", str(tmp_path), *args])

    assert run("tenant", "create", "bigco", "--tier", "enterprise").exit_code == 0
    assert run("tenant", "create", "smallco", "--tier", "starter").exit_code == 0
    r = run("security", "allowlist", "set", "bigco", "10.0.0.0/8", "192.0.2.0/24")
    assert r.exit_code == 0, r.output
    assert run("security", "allowlist", "show", "bigco").output.split() == [
        "10.0.0.0/8",
        "192.0.2.0/24",
    ]
    r = run("security", "allowlist", "set", "bigco", "10.0.0.300/8")
    assert r.exit_code == 1 and "invalid CIDR '10.0.0.300/8'" in r.output
    r = run("security", "allowlist", "set", "smallco", "10.0.0.0/8")
    assert r.exit_code == 1 and "starter tier" in r.output
    policy = json.loads(run("security", "policy", "bigco", "--json").output)
    assert policy["mfa_required"] and policy["ip_allowlist_networks"] == [
        "10.0.0.0/8",
        "192.0.2.0/24",
    ]


# -- a real hub ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy_hub(hub_factory):
    hub = hub_factory()
    hub.fedhub("tenant", "create", "bigco", "--name", "BigCo", "--tier", "enterprise")
    hub.fedhub("tenant", "create", "midco", "--name", "MidCo", "--tier", "professional")
    return hub


def _form(session: requests.Session, url: str, **data) -> requests.Response:
    return session.post(
        url, data={**data, "_xsrf": session.cookies.get("_xsrf")}, allow_redirects=False
    )


def _error(r: requests.Response) -> tuple[int, str | None]:
    found = re.search(r'id="security-error">([^<]+)<', r.text)
    return r.status_code, unescape(found.group(1)) if found else None


def _enrol(hub, r: requests.Response) -> tuple[requests.Session, str, list[str]]:
    """Follow a login sent to enrolment: scan, confirm one code, keep the recovery codes."""
    assert r.status_code == 302, r.text
    s, url = r.session, hub.url + r.headers["Location"]
    assert url.startswith(f"{hub.url}/hub/fedhub/login/continue")
    page = s.get(url)
    assert page.status_code == 200 and "Set up two-factor login" in page.text
    assert "<svg" in page.text  # the QR code, drawn by the hub
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    totp = pyotp.TOTP(secret)
    wrong = "000000" if totp.now() != "000000" else "111111"
    assert _error(_form(s, url, action="confirm_mfa", code=wrong)) == (
        400,
        "that code does not match: check the authenticator app's clock and enter the code it "
        "shows now",
    )
    done = _form(s, url, action="confirm_mfa", code=totp.now())
    assert done.status_code == 200, done.text
    codes = re.findall(r'class="recovery-code">([a-z0-9-]+)<', done.text)
    assert len(codes) == 10
    return s, secret, codes


def _logged_in(hub, session: requests.Session, username: str) -> bool:
    r = session.get(f"{hub.url}/hub/api/user", headers={"Referer": f"{hub.url}/hub/"})
    return r.status_code == 200 and r.json()["name"] == username


@pytest.mark.slow
def test_an_enterprise_user_without_mfa_is_sent_to_enrolment(policy_hub):
    hub = policy_hub
    hub.fedhub("user", "add", "erik", "--tenant", "bigco", "--password", STRONG)
    r = hub.login("erik", STRONG)
    assert r.status_code == 302 and "/hub/fedhub/login/continue" in r.headers["Location"]
    assert not _logged_in(hub, r.session, "erik")  # nothing is logged in before enrolment
    # the pending login is the hub's signed cookie: without it, or with a forged one, nothing
    url = hub.url + r.headers["Location"]
    for cookies in ({}, {"fedhub-login-pending": '{"user": "erik"}'}):
        refused = requests.get(url, cookies=cookies, timeout=10)
        assert refused.status_code == 403 and "This login has expired" in refused.text
    s, _, codes = _enrol(hub, r)
    assert _logged_in(hub, s, "erik")
    # from now on: the password and a code, or the password and a recovery code, once
    assert hub.login("erik", STRONG).status_code == 403
    assert hub.login("erik", "not-the-password", otp=codes[0]).status_code == 403
    assert hub.login("erik", STRONG, otp=codes[0]).status_code == 302
    assert hub.login("erik", STRONG, otp=codes[0]).status_code == 403  # used up
    assert hub.login("erik", STRONG, otp=codes[1]).status_code == 302


@pytest.mark.slow
def test_weak_and_reused_passwords_are_refused_naming_the_rule(policy_hub):
    hub = policy_hub
    r = hub.fedhub("user", "add", "wendy", "--tenant", "bigco", "--password", "short", check=False)
    assert r.returncode == 1 and "password refused: at least 14 characters" in r.stderr
    hub.fedhub("user", "add", "wendy", "--tenant", "midco", "--password", STRONG)
    r = hub.login("wendy", STRONG)
    assert r.status_code == 302 and "continue" not in r.headers["Location"]  # no MFA asked
    s, page = r.session, f"{hub.url}/hub/fedhub/security"
    assert "at least 12 characters" in s.get(page).text

    def change(new, current=STRONG):
        return _error(
            _form(
                s,
                page,
                action="password",
                current_password=current,
                new_password=new,
                repeat_password=new,
            )
        )

    assert change("alllowercaseletters") == (
        400,
        "password refused: 3 of: lower case, upper case, digits, symbols",
    )
    assert change("Wendy-is-the-best-1") == (
        400,
        "password refused: must not contain your user name or email",
    )
    assert change("Good-new-password-2", current="wrong") == (
        403,
        "your current password is not right",
    )
    assert change("Good-new-password-2") == (200, None)
    assert change(STRONG, current="Good-new-password-2") == (
        400,
        "password refused: must not be one of your last 5 passwords",
    )
    assert hub.login("wendy", STRONG).status_code == 403
    assert hub.login("wendy", "Good-new-password-2").status_code == 302


@pytest.mark.slow
def test_users_enrol_and_renew_recovery_codes_on_their_security_page(policy_hub):
    hub = policy_hub
    hub.fedhub("user", "add", "yara", "--tenant", "midco", "--password", STRONG)
    s, page = hub.login("yara", STRONG).session, f"{hub.url}/hub/fedhub/security"
    assert "Off." in s.get(page).text
    r = _form(s, page, action="enrol_mfa", current_password="wrong")
    assert _error(r) == (403, "your current password is not right")
    r = _form(s, page, action="enrol_mfa", current_password=STRONG)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', r.text).group(1)
    r = _form(s, page, action="confirm_mfa", code=pyotp.TOTP(secret).now())
    old = re.findall(r'class="recovery-code">([a-z0-9-]+)<', r.text)
    assert len(old) == 10 and "On, with 10 unused recovery code(s)" in r.text
    assert hub.login("yara", STRONG).status_code == 403  # the code is required now
    r = _form(s, page, action="recovery_codes", current_password=STRONG)
    new = re.findall(r'class="recovery-code">([a-z0-9-]+)<', r.text)
    assert len(new) == 10 and not set(new) & set(old)
    assert hub.login("yara", STRONG, otp=old[0]).status_code == 403  # replaced
    assert hub.login("yara", STRONG, otp=new[0]).status_code == 302


@pytest.mark.slow
def test_sign_up_keeps_the_tiers_password_policy(policy_hub):
    hub = policy_hub
    # the demo tenant acme (professional) takes members of acme.example
    form = {"username": "ines", "email": "ines@acme.example"}
    for password, rule in (
        ("Short-pw-1", "at least 12 characters"),
        ("longbutonlylowercase", "3 of: lower case, upper case, digits, symbols"),
        ("Ines-is-signing-up-1", "must not contain your user name or email"),
    ):
        r = sign_up(hub, **form, password=password)
        assert r.status_code == 400 and f"password refused: {rule}" in unescape(r.text)
    r = sign_up(hub, **form, password=STRONG)
    assert r.status_code == 200 and "Check your email" in r.text


@pytest.mark.slow
def test_an_expired_password_is_changed_before_the_login_completes(policy_hub):
    hub = policy_hub
    hub.fedhub("user", "add", "xavi", "--tenant", "bigco", "--password", STRONG)
    _, _, codes = _enrol(hub, hub.login("xavi", STRONG))
    # the password was set 91 days ago (the enterprise tier allows 90)
    with sqlite3.connect(hub.db_url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "update fedhub_local_credentials set password_changed_at = ? where username = ?",
            ((utcnow() - timedelta(days=91)).isoformat(sep=" "), "xavi"),
        )
    r = hub.login("xavi", STRONG, otp=codes[0])
    assert r.status_code == 302 and "/hub/fedhub/login/continue" in r.headers["Location"]
    s, url = r.session, hub.url + r.headers["Location"]
    assert "Your password has expired" in s.get(url).text
    assert not _logged_in(hub, s, "xavi")
    same = _form(s, url, action="password", new_password=STRONG, repeat_password=STRONG)
    assert _error(same) == (400, "password refused: must not be one of your last 10 passwords")
    new = "Fresh-harbour-lamp-43"
    done = _form(s, url, action="password", new_password=new, repeat_password=new)
    assert done.status_code == 302 and "continue" not in done.headers["Location"]
    assert _logged_in(hub, s, "xavi")
    assert hub.login("xavi", new, otp=codes[1]).status_code == 302


@pytest.mark.slow
def test_a_login_from_outside_the_allowlist_is_refused_and_audited(policy_hub):
    hub = policy_hub
    hub.fedhub("user", "add", "alma", "--tenant", "midco", "--role", "tenant-admin",
               "--password", STRONG)  # fmt: skip
    hub.fedhub("user", "add", "mo", "--tenant", "midco", "--password", STRONG)
    admin = hub.token("alma", STRONG)
    api = "/hub/api/fedhub/tenants/midco/ip-allowlist"
    r = hub.api("GET", api, admin)
    assert r.status_code == 200 and r.json()["networks"] == [] and r.json()["tier_allows"]
    here = r.json()["your_address"]
    # a list without the admin's own address would lock them out: refused
    r = hub.api("PUT", api, admin, json={"networks": ["10.0.0.0/8"]})
    assert r.status_code == 409 and here in r.json()["error"]["message"]
    r = hub.api("PUT", api, admin, json={"networks": ["10.0.0.0/8", "10.0.0.1/8"]})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("invalid CIDR '10.0.0.1/8'")
    # the operator sets a list without this address: members are refused, saying why
    hub.fedhub("security", "allowlist", "set", "midco", "10.0.0.0/8")
    r = hub.login("mo", STRONG)
    assert r.status_code == 403
    assert (
        "logins to midco are allowed only from its allowlisted networks; your address is "
        f"{here}" in unescape(r.text)
    )
    seen = wait_actions(hub, {"auth.login_refused"}, timeout=60)
    refused = [e for e in seen if e["action"] == "auth.login_refused" and e["target"] == "mo"]
    assert refused[-1]["details"]["reason"] == "ip_not_allowed"
    assert refused[-1]["source_ip"] == here and refused[-1]["tenant"] == "midco"
    # a key of the admin's made without the tenant-admin scope cannot change it
    narrow_scopes = ["custom:fedhub:tenant:read!group=tenant-midco"]
    r = hub.api("POST", "/hub/api/users/alma/tokens", admin, json={"scopes": narrow_scopes})
    assert r.status_code == 201, r.text
    narrow = r.json()["token"]
    r = hub.api("PUT", api, narrow, json={"networks": []})
    assert r.status_code == 403 and "custom:fedhub:tenant:admin" in r.json()["error"]["message"]
    r = hub.api("PUT", api, admin, json={"networks": ["10.0.0.0/8", f"{here}/32"]})
    assert r.status_code == 200 and r.json()["networks"] == ["10.0.0.0/8", f"{here}/32"]
    assert hub.login("mo", STRONG).status_code == 302


@pytest.mark.slow
def test_allowlist_api_is_the_tenant_admins_alone(policy_hub):
    hub = policy_hub
    api = "/hub/api/fedhub/tenants/{}/ip-allowlist"
    other_admin = hub.token("acme-admin")  # the admin of the demo tenant acme
    for method, kw in (("GET", {}), ("PUT", {"json": {"networks": []}})):
        for slug in ("midco", "no-such-tenant"):
            r = hub.api(method, api.format(slug), other_admin, **kw)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert hub.api("GET", api.format("acme"), other_admin).status_code == 200
    assert hub.api("GET", api.format("acme"), hub.token("alice")).status_code == 404  # a member
    # a tier without allowlists: the refusal names it
    globex = hub.token("globex-admin")
    r = hub.api("PUT", api.format("globex"), globex, json={"networks": ["10.0.0.0/8"]})
    assert r.status_code == 403
    assert r.json()["error"]["message"] == "IP allowlists are not part of Globex's starter tier"


provider = test_oidc.provider  # the OIDC tests' provider (oidc-provider-mock), one per module


@pytest.fixture(scope="module")
def mfa_oidc_hub(hub_factory, provider):
    args = oidc_hub_args(provider) + ["--TenantOIDCAuthenticator.require_mfa_claim=True"]
    hub = hub_factory(args=args)
    hub.fedhub("tenant", "create", "ssoco", "--name", "SsoCo", "--tier", "enterprise")
    return hub


@pytest.mark.slow
def test_oidc_logins_keep_the_allowlist_and_need_an_mfa_claim(mfa_oidc_hub, provider):
    hub = mfa_oidc_hub
    claims = {"fedhub_tenant": "ssoco", "amr": ["pwd", "otp"]}
    hub.fedhub("security", "allowlist", "set", "ssoco", "10.0.0.0/8")
    r = sso_login(hub, provider, "olga", **claims)
    assert r.status_code == 403
    assert "logins to ssoco are allowed only from its allowlisted networks" in unescape(r.text)
    hub.fedhub("security", "allowlist", "clear", "ssoco")
    r = sso_login(hub, provider, "olga", **{**claims, "amr": ["pwd"]})
    assert r.status_code == 403
    assert "SsoCo requires two-factor login" in unescape(r.text)
    assert sso_login(hub, provider, "olga", **claims).status_code == 302


@pytest.mark.slow
def test_wrong_current_passwords_on_the_security_page_lock_the_account(policy_hub):
    hub = policy_hub
    hub.fedhub("user", "add", "zoe", "--tenant", "midco", "--password", STRONG)
    s, page = hub.login("zoe", STRONG).session, f"{hub.url}/hub/fedhub/security"
    for _ in range(5):  # the hub's default lockout_threshold
        r = _form(s, page, action="recovery_codes", current_password="guess")
        assert _error(r) == (403, "your current password is not right")
    r = _form(s, page, action="enrol_mfa", current_password=STRONG)
    assert _error(r)[0] == 403 and "locked" in _error(r)[1]
    assert "locked after 5 failed logins" in hub.login("zoe", STRONG).text
