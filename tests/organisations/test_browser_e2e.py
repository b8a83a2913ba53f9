"""Issue #13's must-show 1 and 2 end to end in Chromium (Playwright), against one real hub
whose mail goes to a real SMTP server in this process (aiosmtpd):

1. a new person onboards a free organisation at /hub/onboard, follows the emailed link,
   logs in, opens the console, invites a colleague who joins through the emailed link,
   makes a team with a ``servers`` quota of 1 holding both, and the colleague's server
   start is refused once the first's server uses the team's quota;
2. a paid-tier onboarding and then a tier upgrade are approved by the platform admin in
   the platform console; November's invoice prorates the two tiers by day (the amounts
   computed here from tiers.yaml's prices, not read from the output).

The hub runs on PostgreSQL, so every console read goes through row-level security. Its
process clock is frozen (``FEDHUB_BILLING_NOW``) on 10 November 2026 for the
onboarding and moved to the 20th (a restart) for the upgrade, so the invoice has both
tiers. Screenshots of both consoles go to docs/img/ when ``FEDHUB_DOCS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psutil
import pytest
from aiosmtpd.controller import Controller

from fedhub import db
from fedhub.billing.clock import FixedClock
from fedhub.billing.invoices import get_invoice, invoice_document
from fedhub.billing.operations import Billing
from fedhub.billing.periods import parse
from fedhub.db import rls
from fedhub.tiers import load_tiers
from tests.browser import DOCS_IMG, browser, docs_screenshots, running_server  # noqa: F401
from tests.conftest import DEMO_PASSWORD
from tests.harness import HubProcess, free_port, wait_for
from tests.security.signup_mail import Inbox

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ONBOARD_LINK = re.compile(r"https?://[^\s\"'<>]+/hub/onboard/verify\?token=[A-Za-z0-9_\-]+")
INVITE_LINK = re.compile(r"https?://[^\s\"'<>]+/hub/signup\?invitation=[A-Za-z0-9_\-]+")
NOV = parse("2026-11")
ONBOARDED = datetime(2026, 11, 10, 9, 0)  # the hub's clock for the onboarding ...
UPGRADED = datetime(2026, 11, 20, 15, 0)  # ... and for the upgrade
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def inbox():
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.controller = controller
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def hub(inbox, hub_state_root, hub_factory, postgres):
    """The demo hub on PostgreSQL (the consoles read under row-level security), its mail
    going to the in-process SMTP server, its clock on 10 Nov."""
    state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
    (state / "jupyterhub_config.py").write_text(
        "c = get_config()  # noqa\n"
        f"c.Mailer.smtp_host = {inbox.controller.hostname!r}\n"
        f"c.Mailer.smtp_port = {inbox.controller.port}\n"
        'c.Mailer.smtp_security = "none"\n'
        'c.Mailer.from_address = "fedhub <noreply@hub.example>"\n'
    )
    hub = HubProcess(
        state,
        db_url=postgres.create_database(f"e2e_{uuid.uuid4().hex[:8]}"),
        password=DEMO_PASSWORD,
        env={"FEDHUB_BILLING_NOW": ONBOARDED.isoformat()},
    )
    hub.keep = False
    hub_factory.started.append(hub)  # stopped with the module; its log checked at the end
    hub.start()
    return hub


def restart_at(hub, when: datetime) -> None:
    """The same hub (state, port, cookie secret) with its clock at ``when``."""
    children = psutil.Process(hub.proc.pid).children(recursive=True)
    hub.stop()
    psutil.wait_procs(children, timeout=15)  # the proxy lets go of the port first
    hub.env["FEDHUB_BILLING_NOW"] = when.isoformat()
    hub.start()


def link(inbox: Inbox, address: str, pattern: re.Pattern, count: int = 1) -> str:
    msgs = wait_for(lambda: len(inbox.to(address)) >= count and inbox.to(address), 30,
                    what=f"message {count} to {address}")  # fmt: skip
    body = msgs[count - 1].get_body(preferencelist=("plain",)).get_content()
    found = pattern.search(body)
    assert found, body
    return found.group(0)


def log_in(page, hub, user: str, password: str) -> None:
    """The hub's login form, on to the home page (no server started by the login)."""
    page.goto(f"{hub.url}/hub/login?next=/hub/home")
    if "/hub/login" not in page.url:  # still logged in (the hub kept its cookie secret)
        return
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("#login_submit")
    page.wait_for_url("**/hub/home", timeout=30_000)


def onboard(page, hub, organisation: str, email: str, username: str, password: str, tier: str):
    page.goto(f"{hub.url}/hub/onboard")
    page.fill("#organisation", organisation)
    page.fill("#email", email)
    page.fill("#username", username)
    page.fill("#password", password)
    page.select_option("#tier", tier)
    with page.expect_navigation():
        page.click("input[type=submit]")
    refused = page.locator("#onboard-error")
    assert refused.count() == 0, refused.inner_text()
    assert "Check your email" in page.locator("#onboard-sent").inner_text()


def confirm(page, verify_link: str, password: str) -> str:
    """Follow the emailed link and confirm with the password; the page's state line."""
    page.goto(verify_link)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("input[type=submit]")
    return page.locator("#onboard-state").inner_text()


def succeeded(page) -> str:
    """The console's message after an action (failing with the API's error), once the
    page has reloaded to show the result."""
    box = page.locator("#console-message")
    box.wait_for(state="visible", timeout=15_000)
    message = box.inner_text()
    assert "alert-success" in box.get_attribute("class"), message
    box.wait_for(state="hidden", timeout=15_000)  # the reloaded page's box is empty
    page.wait_for_load_state("load")
    return message


def test_must_show_1_a_free_organisation_runs_itself(hub, inbox, browser, tmp_path):  # noqa: F811
    founder, colleague = "rosa", "colin"
    rosa_pw, colin_pw = "Blue-harbour-pw-1", "Green-valley-pw-2"
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    # the form, the emailed link, the password again: the organisation exists at once
    onboard(page, hub, "Rocket Labs", "rosa@rocketlabs.example", founder, rosa_pw, "free")
    state = confirm(page, link(inbox, "rosa@rocketlabs.example", ONBOARD_LINK), rosa_pw)
    assert "Rocket Labs exists" in state, state
    slug = page.locator("#onboard-state code").inner_text()
    assert slug == "rocket-labs"
    # the operator lets the organisation run two servers: the team's quota is what refuses
    hub.fedhub("tenant", "update", slug, "--override", "max_servers_per_tenant=2")

    # she logs in and finds her console in the navigation bar
    log_in(page, hub, founder, rosa_pw)
    page.click("#fedhub-console-link")
    page.wait_for_url("**/hub/fedhub/console")
    assert page.locator("#console-title").inner_text() == "Rocket Labs"
    assert page.locator('#members tr[data-user="rosa"] select').input_value() == "tenant-admin"

    # she invites a colleague, who joins through the emailed link
    page.fill("#invite-form input[name=email]", "colin@rocketlabs.example")
    page.click("#invite-form button[type=submit]")
    assert "Invitation sent" in succeeded(page)
    assert page.locator("#invitations .invitation-state").inner_text() == "pending"
    other = browser.new_context(viewport=VIEWPORT).new_page()
    other.goto(link(inbox, "colin@rocketlabs.example", INVITE_LINK))
    assert other.locator("#email").input_value() == "colin@rocketlabs.example"
    other.fill("#username", colleague)
    other.fill("#password", colin_pw)
    with other.expect_navigation() as signed_up:
        other.click("input[type=submit]")
    joined = " ".join(other.locator("body").inner_text().split())
    assert f"Your account {colleague} is ready" in joined, (
        signed_up.value.status,
        other.content()[-3000:],
    )

    # a team with a servers quota of 1, holding both
    page.reload()
    assert page.locator('#members tr[data-user="colin"]').count() == 1
    colin_row = page.locator("#invitations tr[data-invitation]", has_text="colin@")
    assert colin_row.locator(".invitation-state").inner_text() == "accepted"
    # the console's other member and invitation actions, through the same API
    role = page.locator('#members tr[data-user="colin"] select')
    role.select_option("analyst")
    assert "Role changed" in succeeded(page)
    assert role.input_value() == "analyst"
    role.select_option("member")
    assert "Role changed" in succeeded(page)
    page.fill("#invite-form input[name=email]", "typo@rocketlabs.example")
    page.click("#invite-form button[type=submit]")
    succeeded(page)
    typo = page.locator("#invitations tr[data-invitation]", has_text="typo@")
    typo.locator("[data-action=revoke-invitation]").click()
    assert "Revoked" in succeeded(page)
    assert typo.locator(".invitation-state").inner_text() == "revoked"

    page.fill("#team-form input[name=name]", "core")
    page.fill("#team-form input[name=lead]", founder)
    page.fill("#team-form input[name=quota-servers]", "1")
    page.click("#team-form button[type=submit]")
    assert "Team core created" in succeeded(page)
    team = page.locator('#teams tr[data-team="core"]')
    team.locator(".team-user").fill(colleague)
    team.locator("[data-action=add-team-member]").click()
    assert "Added to the team" in succeeded(page)
    team = page.locator('#teams tr[data-team="core"]')
    assert team.locator(".team-quotas").inner_text() == "servers 1"
    assert set(team.locator(".team-members").inner_text().split(", ")) == {founder, colleague}
    if docs_screenshots():
        page.screenshot(path=str(DOCS_IMG / "organisations-console.png"), full_page=True)
    check_console_screenshot(page, tmp_path, "Rocket Labs", ("core", "colin"))

    # rosa's server takes the team's one server; colin's start is refused, naming the team
    rosa_token = hub.token(founder, rosa_pw)
    with running_server(hub, founder, rosa_token):
        log_in(other, hub, colleague, colin_pw)
        other.goto(f"{hub.url}/hub/spawn")  # the tier's server sizes, and Start
        other.click("form [type=submit]")
        refusal = "Your team core is running 1 of the 1 servers its team quota allows"
        other.get_by_text(refusal).first.wait_for(timeout=30_000)
        if docs_screenshots():
            other.screenshot(path=str(DOCS_IMG / "organisations-team-quota.png"))
        colin_token = hub.token(colleague, colin_pw)
        servers = hub.api("GET", f"/hub/api/users/{colleague}", colin_token).json()["servers"]
        assert not servers  # nothing of colin's runs
    ctx.close()
    other.context.close()


def check_console_screenshot(page, tmp_path: Path, title: str, shown: tuple[str, ...]) -> None:
    """The screenshot is of the console as the test saw it: the page's own text holds the
    organisation and what was just made, and the charts drew (plotly's SVG)."""
    path = tmp_path / "console.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000  # a rendered page, not a blank one
    body = page.locator("body").inner_text()
    assert title in body and all(word in body for word in shown)
    # read under row-level security: nothing of the demo's tenants or their people
    assert not any(word in body.lower() for word in ("acme", "globex", "alice", "bob"))
    assert page.locator("#usage-chart .main-svg").count() >= 1
    assert page.locator("#cost-chart .main-svg").count() >= 1


def approve_in_platform_console(page, hub, kind: str, what: str, screenshot=None) -> None:
    """Find the pending request of ``kind`` mentioning ``what`` and approve it (after a
    screenshot of the console as it stands, when ``screenshot`` names a file)."""
    page.goto(f"{hub.url}/hub/fedhub/platform")
    req = page.locator(f'#pending tr[data-kind="{kind}"]', has_text=what)
    assert req.count() == 1, page.locator("#pending").inner_text()
    if screenshot:
        # what the picture shows: every tenant, the request waiting, the revenue chart
        body = page.locator("body").inner_text()
        assert all(slug in body for slug in ("acme", "globex", "initech", "yellow-labs"))
        assert page.locator("#revenue-chart .main-svg").count() >= 1
        page.screenshot(path=str(screenshot), full_page=True)
    req.locator(".request-reason").fill("welcome aboard")
    req.locator("[data-action=approve]").click()
    assert "approved" in succeeded(page)
    assert page.locator(f'#pending tr[data-kind="{kind}"]', has_text=what).count() == 0


def test_must_show_2_paid_onboarding_and_upgrade_approved_and_prorated(
    hub,
    inbox,
    browser,  # noqa: F811
    tmp_path,
):
    founder, password = "yuki", "Quiet-river-pw-3"
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    # 10 Nov: a starter organisation asks; the link confirms the address; it waits
    onboard(page, hub, "Yellow Labs", "yuki@yellowlabs.example", founder, password, "starter")
    state = confirm(page, link(inbox, "yuki@yellowlabs.example", ONBOARD_LINK), password)
    assert "waiting for a platform administrator" in state, state
    admin = browser.new_context(viewport=VIEWPORT).new_page()
    log_in(admin, hub, "admin", hub.password)
    admin.click("#fedhub-platform-link")
    approve_in_platform_console(admin, hub, "onboarding", "Yellow Labs")
    tenant = admin.locator('#tenants tr[data-tenant="yellow-labs"]')
    assert tenant.locator("td").nth(1).inner_text() == "starter"
    inbox.wait_message("yuki@yellowlabs.example", "welcome aboard")  # the decision, emailed

    # 20 Nov: its admin asks for professional in the console; the platform admin approves
    restart_at(hub, UPGRADED)
    log_in(page, hub, founder, password)
    page.goto(f"{hub.url}/hub/fedhub/console")
    page.select_option("#tier-select", "professional")
    page.click("#tier-form button[type=submit]")
    assert "Tier change requested" in succeeded(page)
    upgrade = page.locator("#requests tr[data-request]", has_text="tier_change")
    assert upgrade.locator(".request-state").inner_text() == "pending"
    log_in(admin, hub, "admin", hub.password)
    shot = (DOCS_IMG if docs_screenshots() else tmp_path) / "organisations-platform.png"
    approve_in_platform_console(admin, hub, "tier_change", "yellow-labs", screenshot=shot)
    assert shot.stat().st_size > 20_000
    tenant = admin.locator('#tenants tr[data-tenant="yellow-labs"]')
    assert tenant.locator("td").nth(1).inner_text() == "professional"
    page.reload()
    assert page.locator("#console-tier").inner_text().endswith("(professional)")
    upgrade = page.locator("#requests tr[data-request]", has_text="tier_change")
    assert upgrade.locator(".request-state").inner_text() == "approved"

    # November closes: starter from the 10th, professional from the 20th, by day
    billing = Billing(hub.db_url, clock=FixedClock(datetime(2026, 12, 5)))
    with rls.platform():
        billing.close(NOV, tenants=["yellow-labs"])
        with db.session_scope(hub.db_url) as s:
            doc = invoice_document(s, get_invoice(s, "yellow-labs", NOV))
    base = [(line["description"], Decimal(line["amount"])) for line in doc["lines"]
            if line["type"] == "base"]  # fmt: skip
    tiers = load_tiers()

    def share(tier: str, days: int) -> Decimal:
        price = Decimal(str(tiers.get(tier).monthly_price))
        return (price * days / NOV.days).quantize(Decimal("0.01"), ROUND_HALF_UP)

    assert [amount for _, amount in base] == [share("starter", 10), share("professional", 11)]
    assert "2026-11-10 to 2026-11-19 (10 of 30 days)" in base[0][0]
    assert "2026-11-20 to 2026-11-30 (11 of 30 days)" in base[1][0]
    # and the tenant admin's console shows November as that invoice, no longer an estimate
    page.reload()
    month = page.locator("#cost-table tr", has_text="2026-11").locator("td")
    assert [month.nth(1).inner_text(), month.nth(2).inner_text()] == [
        doc["total"],
        doc["status"],
    ]
    ctx.close()
    admin.context.close()
