"""Sign-up under each tenant policy (issue 10, route 4), against real hubs:
``invitation_only`` refuses domain sign-up, ``admin_approval`` waits for a tenant
admin (on the CLI and on the hub's page, never another tenant's admin); and the
store's requests on both database engines. The emailed link itself is tested in
``test_signup.py``.
"""

from __future__ import annotations

import pytest

from tests.security.signup_mail import follow, sign_up, text

pytestmark = pytest.mark.slow


# -- the policies --------------------------------------------------------------------


def test_invitation_only_tenant_refuses_domain_sign_up_but_takes_invitations(smtp_hub, inbox):
    hub = smtp_hub
    hub.fedhub(
        "tenant",
        "create",
        "wayne",
        "--tier",
        "starter",
        "--email-domain",
        "wayne.example",
        "--signup-policy",
        "invitation_only",
    )
    r = sign_up(hub, username="bruce", email="bruce@wayne.example", password="Wayne-signup-pw-1")
    assert r.status_code == 403
    assert "accepts new members by invitation only" in text(r)
    assert hub.login("bruce", "Wayne-signup-pw-1").status_code == 403
    assert not inbox.to("bruce@wayne.example")

    out = hub.fedhub("user", "invite", "bruce@wayne.example", "--tenant", "wayne").stdout
    code = out.split(": ")[1].split()[0]
    r = sign_up(
        hub,
        username="bruce",
        email="bruce@wayne.example",
        password="Wayne-signup-pw-1",
        invitation=code,
    )
    assert r.status_code == 200 and "is ready" in text(r)
    assert hub.login("bruce", "Wayne-signup-pw-1").status_code == 302
    assert "invitation_only" in hub.fedhub("tenant", "show", "wayne").stdout


def test_admin_approval_waits_for_a_tenant_admin(smtp_hub, inbox):
    hub = smtp_hub
    hub.fedhub(
        "tenant",
        "create",
        "stark",
        "--name",
        "Stark Industries",
        "--tier",
        "starter",
        "--email-domain",
        "stark.example",
    )
    hub.fedhub("tenant", "update", "stark", "--signup-policy", "admin_approval")
    password = "Stark-signup-pw-1"
    r = sign_up(hub, username="tony", email="tony@stark.example", password=password)
    assert r.status_code == 200 and "Check your email" in text(r)
    # the address first: an admin cannot approve an address nobody has proven
    r = hub.fedhub("user", "approve", "tony", check=False)
    assert r.returncode == 1 and "has not confirmed their email address" in r.stderr

    r = follow(inbox.wait_link("tony@stark.example"), password)
    assert r.status_code == 200
    assert "waiting for an administrator of Stark Industries" in text(r)
    r = hub.login("tony", password)
    assert r.status_code == 403
    assert "waiting for an administrator of Stark Industries" in text(r)
    assert "tony" in hub.fedhub("user", "signups", "--tenant", "stark").stdout

    r = hub.fedhub("user", "approve", "tony")
    assert "Warning" not in r.stderr, r.stderr
    assert hub.login("tony", password).status_code == 302
    # the CLI mails through the same c.Mailer settings (the state dir's config file)
    inbox.wait_message("tony@stark.example", "approved your sign-up")
    assert "tony" not in hub.fedhub("user", "signups").stdout

    # and a rejected request never becomes an account
    assert sign_up(hub, username="pepper", email="pepper@stark.example", password=password).ok
    assert follow(inbox.wait_link("pepper@stark.example"), password).ok
    hub.fedhub("user", "reject", "pepper", "--reason", "not an employee")
    r = hub.login("pepper", password)
    assert r.status_code == 403 and "waiting" not in text(r)
    r = hub.fedhub("user", "approve", "pepper", check=False)
    assert r.returncode == 1 and "no sign-up request" in r.stderr


def test_a_tenant_admin_approves_on_the_hub_page(smtp_hub, inbox):
    hub = smtp_hub
    hub.fedhub(
        "tenant",
        "create",
        "oscorp",
        "--name",
        "Oscorp",
        "--tier",
        "starter",
        "--email-domain",
        "oscorp.example",
        "--signup-policy",
        "admin_approval",
    )
    hub.fedhub(
        "user",
        "add",
        "norman",
        "--tenant",
        "oscorp",
        "--role",
        "tenant-admin",
        "--password",
        "Approver-pw-1",
    )
    password = "Oscorp-signup-pw-1"
    assert sign_up(hub, username="harry", email="harry@oscorp.example", password=password).ok
    assert follow(inbox.wait_link("harry@oscorp.example"), password).ok

    def review(user, user_password=None, **form):
        s = hub.login(user, user_password).session
        if not form:
            return s.get(f"{hub.url}/hub/signup/requests", timeout=10)
        data = {**form, "_xsrf": s.cookies.get("_xsrf")}
        return s.post(f"{hub.url}/hub/signup/requests", data=data, timeout=30)

    # another tenant's admin neither sees nor approves it; a member may not look
    r = review("acme-admin")
    assert r.status_code == 200 and "harry" not in r.text
    r = review("acme-admin", username="harry", action="approve")
    assert r.status_code == 404 and "no sign-up request" in text(r)
    assert review("alice").status_code == 403
    assert hub.login("harry", password).status_code == 403

    r = review("norman", "Approver-pw-1")
    assert r.status_code == 200 and "harry@oscorp.example" in r.text
    r = review("norman", "Approver-pw-1", username="harry", action="approve")
    assert r.status_code == 200 and "harry is now a member of Oscorp" in text(r)
    assert hub.login("harry", password).status_code == 302
    inbox.wait_message("harry@oscorp.example", "approved your sign-up")


# -- the store on both engines (migration 0007 included) -----------------------------


def test_sign_up_requests_on_both_engines(migrated_db):
    """A request is no account: ``TenantStore.user`` (what the hub and the services ask)
    knows nothing of it until the link is followed (and, under admin_approval, approved)."""
    from fedhub.errors import FedhubError
    from fedhub.tenancy.store import TenantStore

    store = TenantStore(migrated_db)
    store.create_tenant("acme", "Acme", "professional", email_domains=["acme.example"])
    assert store.get_tenant("acme").signup_policy == "verify_email"
    first = store.sign_up("mallory", "Mallory@acme.example", "Store-signup-pw-1")
    assert first.status == "awaiting_email" and first.token
    assert store.user("mallory") is None
    again = store.sign_up("mallory", "mallory@acme.example", "Store-signup-pw-1")
    assert again.resent and again.token != first.token
    with pytest.raises(FedhubError, match="not valid"):
        store.verify_signup(first.token, "Store-signup-pw-1")
    with pytest.raises(FedhubError, match="already exists"):  # the username is held
        store.sign_up("mallory", "someone-else@acme.example", "Store-signup-pw-1")
    with pytest.raises(FedhubError, match="not the password"):
        store.verify_signup(again.token, "wrong-password")
    assert store.verify_signup(again.token, "Store-signup-pw-1").active
    assert store.user("mallory").tenant == "acme"
    assert store.pending_signup("mallory") is None

    store.set_signup_policy("acme", "admin_approval")
    nina = store.sign_up("nina", "nina@acme.example", "Store-signup-pw-2")
    assert store.verify_signup(nina.token, "Store-signup-pw-2").status == "awaiting_approval"
    assert store.user("nina") is None
    assert [p.username for p in store.signup_requests("acme")] == ["nina"]
    store.approve_signup("nina", tenant="acme", actor="acme-admin")
    assert store.user("nina").tenant == "acme"

    store.set_signup_policy("acme", "invitation_only")
    with pytest.raises(FedhubError, match="invitation only") as refused:
        store.sign_up("oz", "oz@acme.example", "oz-password-1")
    assert refused.value.status == 403
    with pytest.raises(FedhubError, match="unknown sign-up policy"):
        store.set_signup_policy("acme", "anyone")
    with pytest.raises(FedhubError, match="invalid email address") as bad:  # not a 500
        store.sign_up("long", "x" * 400 + "@acme.example", "long-password")
    assert bad.value.status == 400
