"""The storefront (issue #14, must-show 7) in Chromium (Playwright) on one real hub.

acme's admin publishes an algorithm through the Publish form (the file chosen in the
browser); initech's carol cannot open its page while it is pending (a 404 page that names
nothing); the platform admin reads the source in the review queue and approves it there;
globex's admin logs in, searches, opens the asset, double-clicks Buy (one purchase), sees
the licence and finds the reference to paste into a spec on My licences; acme's publisher
page shows the sale and its share, and acme submits version 1.1.0 through the form;
globex upgrades to it on My licences; the platform admin's Payouts page shows the API's
refusal to mark an open statement paid, and marks it paid once the month is closed (by the
store's own closing job with a clock in the next month); globex asks for a refund in the
browser; acme delists the asset. The hub runs on PostgreSQL, so every read behind the
pages goes through row-level security.

Screenshots go to the test's tmp folder, and to docs/img/marketplace-*.png when
``FEDHUB_DOCS_SCREENSHOTS=1`` (nothing is compared pixel-wise).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from playwright.sync_api import expect

from fedhub.billing.periods import containing
from fedhub.marketplace.store import MarketStore
from tests.browser import DOCS_IMG, browser, docs_screenshots  # noqa: F401
from tests.harness import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MARKET = "/services/marketplace/"
API = MARKET + "api/v1/"
SLUG = "fedprox-decay"
REF = f"market/{SLUG}@1.0.0"
SOURCE = '''"""FedProx whose proximal term halves every round."""

from fedhub.fl.strategies import FedProx


class DecayingFedProx(FedProx):
    def configure_round(self, rnd, clients, rng):
        self.proximal_mu = self.proximal_mu * 0.5 ** (rnd - 1)
        return super().configure_round(rnd, clients, rng)
'''
ASSET = {
    "name": "FedProx with a decaying proximal term",
    "slug": SLUG,
    "asset_type": "algorithm",
    "category": "strategies",
    "description": (
        "FedProx whose **proximal term halves every round**: strong pull towards the "
        "global model early, plain FedAvg later.\n\n- drop-in for `fedprox`\n"
        "- tested on non-IID splits (Dirichlet alpha 0.1)\n\n<script>alert(1)</script>"
    ),
    "tags": ["fedprox", "non-iid"],
    "licence": "commercial",
    "price": "49.99",
    "filename": "decaying_fedprox.py",
    "content": SOURCE,
    "changelog": "First release.",
}
SOURCE_2 = SOURCE.replace("0.5 **", "0.7 **").replace("halves", "shrinks by 30 % ")
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def hub(hub_factory, postgres):
    hub = hub_factory(db_url=postgres.create_database(f"shop_{uuid.uuid4().hex[:8]}"))
    wait_for(lambda: hub.api("GET", API + "openapi.json").status_code == 200, 120, 0.3,
             "the marketplace service")  # fmt: skip
    return hub


@pytest.fixture(scope="module")
def t(hub) -> dict[str, str]:
    people = ("admin", "acme-admin", "globex-admin", "bob", "carol")
    return {name: hub.token(name) for name in people}


def log_in(browser, hub, user: str, **context):  # noqa: F811
    """A new browser context logged in as ``user`` through the hub's form, on the storefront
    (the hub's OAuth sends the browser back to the service: no server is started)."""
    page = browser.new_context(viewport=VIEWPORT, **context).new_page()
    page.goto(f"{hub.url}/hub/login?next={MARKET}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.password)
    page.click("#login_submit")
    page.wait_for_url(f"**{MARKET}**", timeout=30_000)
    page.wait_for_load_state("networkidle")
    return page


def message(page, ok: bool = True) -> str:
    """The page's message once it is a success (``ok``) or a refusal; its text."""
    box = page.locator("#market-message.alert-" + ("success" if ok else "danger"))
    try:
        box.wait_for(state="visible", timeout=15_000)
    except Exception:
        raise AssertionError(page.locator("#market-message").inner_text()) from None
    return box.inner_text()


def screenshot(page, name: str, tmp_path) -> None:
    path = tmp_path / f"marketplace-{name}.png"
    page.screenshot(path=path, full_page=True)
    if docs_screenshots():
        shutil.copyfile(path, DOCS_IMG / path.name)


def test_a_browser_without_a_session_goes_to_the_hub_login(hub):
    r = hub.api("GET", MARKET, allow_redirects=False)
    assert r.status_code == 302, r.text
    assert "/hub/api/oauth2/authorize" in r.headers["Location"]
    js = hub.api("GET", MARKET + "static/marketplace.js")  # code, no data: no login needed
    assert js.status_code == 200 and "Idempotency-Key" in js.text


def publish_through_the_form(page, tmp_path) -> None:
    """acme's admin fills the Publish form with the asset and its file."""
    page.click("#nav-publisher")
    page.click("#new-asset")
    page.wait_for_url(f"**{MARKET}publish")
    page.fill("#name", ASSET["name"])
    page.fill("#slug", SLUG)
    page.select_option("#asset_type", ASSET["asset_type"])
    page.fill("#category", ASSET["category"])
    page.fill("#description", ASSET["description"])
    page.fill("#tags", ", ".join(ASSET["tags"]))
    page.select_option("#licence-kind", ASSET["licence"])
    page.fill("#price", ASSET["price"])
    page.fill("#changelog", ASSET["changelog"])
    assert page.locator("#dataset-fields").is_hidden()  # only datasets name a label column
    page.set_input_files("#file", files=[
        {"name": ASSET["filename"], "mimeType": "text/x-python", "buffer": SOURCE.encode()}
    ])  # fmt: skip
    screenshot(page, "publish", tmp_path)
    page.click("#publish-button")
    assert f"Submitted {SLUG}@1.0.0 for review." in message(page)


def test_search_open_buy_and_see_the_licence(hub, t, browser, tmp_path):  # noqa: F811
    # acme's colours, as the hub's own pages show them
    branding = {"display_name": "Acme Rockets", "primary_colour": "#c2185b"}
    r = hub.api("PUT", "/hub/api/fedhub/tenants/acme/branding", t["acme-admin"], json=branding)
    assert r.status_code == 200, r.text
    acme = log_in(browser, hub, "acme-admin")
    assert acme.locator("#fedhub-tenant-name").inner_text() == "Acme Rockets"
    navbar = acme.locator("nav.navbar").evaluate("n => getComputedStyle(n).backgroundColor")
    assert navbar == "rgb(194, 24, 91)"
    publish_through_the_form(acme, tmp_path)
    mine = hub.api("GET", API + f"assets/{SLUG}", t["acme-admin"]).json()
    assert (mine["state"], mine["price"], mine["licence"], mine["tags"]) == (
        "pending_review", "49.99", "commercial", ASSET["tags"])  # fmt: skip
    assert mine["versions"][0]["sha256"] == hashlib.sha256(SOURCE.encode()).hexdigest()

    # pending: initech's carol neither finds nor opens it, and the 404 page names nothing
    carol = log_in(browser, hub, "carol")
    carol.goto(f"{hub.url}/hub/home")  # the hub's navigation bar leads to the storefront
    with carol.expect_navigation(url=f"**{MARKET}"):
        carol.click("#fedhub-marketplace-link")
    carol.fill("#q", "fedprox")
    carol.click("#search-button")
    carol.locator("#no-results").wait_for(state="visible")
    answer = carol.goto(f"{hub.url}{MARKET}asset/{SLUG}")
    assert answer.status == 404
    # the same answer as for a slug that never existed: only what carol typed
    assert carol.locator("#market-error-message").inner_text() == f"no asset {SLUG!r}"
    assert ASSET["name"] not in carol.content() and "decaying" not in carol.content()
    bad = carol.goto(f"{hub.url}{MARKET}asset/No%20Such_Thing")  # bad input: a page, no traceback
    assert bad.status == 404 and "Traceback" not in carol.content()
    # the Payouts page is the platform admin's: carol gets the API's refusal, no statement
    assert carol.locator("#nav-payouts").count() == 0
    carol.goto(f"{hub.url}{MARKET}payouts")
    refusal = hub.api("GET", API + "payouts", t["carol"])
    assert refusal.status_code == 403, refusal.text
    assert message(carol, ok=False) == refusal.json()["error"]["message"]
    assert carol.locator("#all-payouts tbody tr").count() == 0

    # the platform admin reads the source in the review queue and approves it there
    admin = log_in(browser, hub, "admin")
    admin.click("#nav-review")
    item = admin.locator(f'.submission[data-slug="{SLUG}"]')
    item.wait_for()
    assert item.locator("code.source").inner_text().strip() == SOURCE.strip()
    screenshot(admin, "review", tmp_path)
    item.locator("button.reject").click()  # a rejection without a note: the API's 400, as text
    refusal = hub.api("POST", API + f"assets/{SLUG}/review", t["admin"],
                      json={"version": "1.0.0", "decision": "reject", "note": ""})  # fmt: skip
    assert refusal.status_code == 400
    assert message(admin, ok=False) == refusal.json()["error"]["message"]
    assert item.is_visible()
    item.locator(".review-note").fill("Source read: it only changes proximal_mu.")
    item.locator("button.approve").click()
    assert f"Approved {SLUG}@1.0.0" in message(admin)

    # globex's bob may not buy for his organisation: the card says who can
    bob = log_in(browser, hub, "bob")
    bob.goto(f"{hub.url}{MARKET}asset/{SLUG}")
    bob.locator("#ask-buyer").wait_for()
    assert bob.locator("#buy").is_hidden()

    # globex's admin searches, opens the card, buys (a double click buys once)
    shop = log_in(browser, hub, "globex-admin", permissions=["clipboard-read", "clipboard-write"])
    shop.fill("#q", "decaying proximal")
    shop.select_option("#type", "algorithm")
    shop.click("#search-button")
    found = shop.locator(f'#results [data-slug="{SLUG}"]')
    found.wait_for()
    assert found.locator(".market-price").inner_text() == "49.99 USD"
    screenshot(shop, "browse", tmp_path)
    found.locator("a").click()
    shop.wait_for_url(f"**{MARKET}asset/{SLUG}")
    version = shop.locator('#versions tr[data-version="1.0.0"]')
    version.wait_for()
    assert hashlib.sha256(SOURCE.encode()).hexdigest() in version.inner_text()
    assert (
        shop.locator("#asset-description strong").inner_text() == "proximal term halves every round"
    )
    assert shop.locator("#asset-description script").count() == 0

    # a cookie-authenticated POST without the page's _xsrf token does not count as the user
    refused = shop.evaluate(
        """async (path) => (await fetch(path, {method: "POST",
             headers: {"Idempotency-Key": "no-xsrf"}})).status""",
        f"{API}assets/{SLUG}/purchase",
    )
    assert refused == 403
    shop.locator("#buy").dblclick()
    assert f"Bought: {REF} for 49.99 USD." in message(shop)
    licence = shop.locator(".licence[data-state=active] .licence-reference")
    assert licence.inner_text() == REF
    assert shop.locator("#buy").is_hidden()
    sales = hub.api("GET", API + "sales?tenant=acme", t["admin"]).json()["sales"]
    assert [(s["buyer"], s["kind"], s["gross"]) for s in sales] == [("globex", "sale", "49.99")]

    # a review from globex and acme's answer, as the card shows them
    r = hub.api("POST", API + f"assets/{SLUG}/reviews", t["bob"],
                json={"stars": 4, "text": "Converged in fewer rounds on skewed clients."})  # fmt: skip
    assert r.status_code == 201, r.text
    answer_path = API + f"assets/{SLUG}/reviews/{r.json()['id']}/answer"
    r = hub.api("POST", answer_path, t["acme-admin"], json={"text": "Thanks! Try mu=0.1."})
    assert r.status_code == 200, r.text
    shop.reload()
    shop.locator(".market-review .market-answer").wait_for()
    assert shop.locator("#review-form").is_visible()  # globex holds a licence: it may review
    screenshot(shop, "asset", tmp_path)

    # My licences: the reference to paste into a spec, and its copy button
    shop.click("#nav-licences")
    row = shop.locator(f'#licences tr[data-reference="{REF}"]')
    row.wait_for()
    assert row.locator("code.reference").inner_text() == REF
    row.locator("button.copy-reference").click()
    expect(row.locator("button.copy-reference")).to_have_text("Copied")
    assert shop.evaluate("navigator.clipboard.readText()") == REF

    # bad input on a page: the API's message as text
    shop.goto(f"{hub.url}{MARKET}?min_price=abc")
    assert "min_price must be a decimal number" in message(shop, ok=False)
    # globex has published nothing: its publisher page says how one publishes
    shop.click("#nav-publisher")
    shop.locator("#no-assets").wait_for()
    assert shop.locator("#sales tbody tr").count() == 0
    # ... but its tier (starter) has no marketplace publishing: the form shows the API's 403
    shop.click("#new-asset")
    shop.click("#publish-button")  # no file chosen: said before anything is sent
    assert message(shop, ok=False) == "Choose the file to publish."
    shop.fill("#name", "Globex churn model")
    shop.set_input_files("#file", files=[
        {"name": "churn.py", "mimeType": "text/x-python", "buffer": SOURCE.encode()}
    ])  # fmt: skip
    shop.click("#publish-button")
    refusal = hub.api("POST", API + "assets", t["globex-admin"], json={
        "name": "Globex churn model", "asset_type": "algorithm", "filename": "churn.py",
        "content": SOURCE})  # fmt: skip
    assert refusal.status_code == 403, refusal.text
    expect(shop.locator("#market-message.alert-danger")).to_have_text(
        refusal.json()["error"]["message"]
    )

    # acme's publisher page: the asset listed, the sale and its share
    acme.click("#nav-publisher")
    acme.locator(f'#own-assets tr[data-slug="{SLUG}"]').wait_for()
    assert acme.locator(f'#own-assets tr[data-slug="{SLUG}"] .asset-state').inner_text() == "listed"
    share = Decimal("49.99") * 80 / 100  # revenue_share_percent's default
    expected = str(share.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    assert acme.locator("#sales .sale-amount").all_inner_texts() == [expected]
    assert acme.locator("#payouts .statement-amount").all_inner_texts() == [f"{expected} USD"]
    screenshot(acme, "publisher", tmp_path)

    # acme submits version 1.1.0 through the form; the platform admin approves it (API)
    acme.locator(f'#own-assets tr[data-slug="{SLUG}"] a.new-version').click()
    acme.wait_for_url(f"**{MARKET}publish?asset={SLUG}")
    expect(acme.locator("#publish-title")).to_have_text(f"New version of {ASSET['name']}")
    assert acme.locator("#name").count() == 0  # a version has no asset fields
    acme.fill("#version", "1.1.0")
    acme.fill("#changelog", "The proximal term shrinks by 30 % a round.")
    acme.set_input_files("#file", files=[
        {"name": "decaying_fedprox.py", "mimeType": "text/x-python", "buffer": SOURCE_2.encode()}
    ])  # fmt: skip
    acme.click("#publish-button")
    assert f"Submitted {SLUG}@1.1.0 for review." in message(acme)
    r = hub.api("POST", API + f"assets/{SLUG}/review", t["admin"],
                json={"version": "1.1.0", "decision": "approve", "note": "read"})  # fmt: skip
    assert r.status_code == 200, r.text

    # globex's admin moves its licence to 1.1.0 on My licences
    shop.click("#nav-licences")
    upgrade = shop.locator(f'#licences tr[data-asset="{SLUG}"] button.upgrade')
    expect(upgrade).to_have_text("Upgrade to 1.1.0")
    upgrade.click()
    assert f"Upgraded: market/{SLUG}@1.1.0." in message(shop)
    held = shop.locator(f'#licences tr[data-asset="{SLUG}"]')
    expect(held.locator(".licence-version")).to_have_text("1.1.0")
    assert held.locator("button.upgrade").count() == 0
    screenshot(shop, "licences", tmp_path)

    # the platform admin's Payouts page: an open statement is refused with the API's
    # message; once the month is closed (the store's job, a clock in the next month) it is
    # marked paid with the transfer's reference
    admin.click("#nav-payouts")
    row = admin.locator('#all-payouts tr[data-tenant="acme"]')
    row.wait_for()
    assert row.locator(".statement-state").inner_text() == "open"
    assert row.locator(".statement-amount").inner_text() == f"{expected} USD"
    statement = int(row.get_attribute("data-statement"))
    row.locator(".paid-reference").fill("SEPA-0001")
    row.locator("button.mark-paid").click()
    refusal = hub.api("POST", API + f"payouts/{statement}/paid", t["admin"],
                      json={"reference": "SEPA-0001"})  # fmt: skip
    assert refusal.status_code == 409, refusal.text
    assert message(admin, ok=False) == refusal.json()["error"]["message"]
    next_month = containing(datetime.now(UTC).replace(tzinfo=None)).next().start
    assert MarketStore(hub.db_url).close_statements(now=next_month + timedelta(hours=1)) >= 1
    admin.reload()
    row.wait_for()
    assert row.locator(".statement-state").inner_text() == "closed"
    row.locator(".paid-reference").fill("SEPA-2026-ACME-0001")
    row.locator("button.mark-paid").click()
    assert "is paid: SEPA-2026-ACME-0001." in message(admin)
    expect(row.locator(".statement-state")).to_have_text("paid")
    screenshot(admin, "payouts", tmp_path)
    paid = hub.api("GET", API + f"payouts/{statement}", t["acme-admin"]).json()
    assert (paid["state"], paid["paid_reference"]) == ("paid", "SEPA-2026-ACME-0001")

    # globex asks for its refund in the browser (within the window: the API decides)
    reference = held.get_attribute("data-reference")
    held.locator("button.refund").click()
    held.locator("button.refund").click()  # the confirmation
    expect(shop.locator("#market-message.alert-success")).to_contain_text("Refunded purchase")
    expect(held.locator(".licence-state")).to_have_text("refunded")
    assert held.locator("button.refund").count() == 0
    state = [
        e["state"] for e in hub.api("GET", API + "entitlements", t["globex-admin"]).json()["entitlements"]
        if e["reference"] == reference
    ]  # fmt: skip
    assert state == ["refunded"]

    # acme delists the asset: no new sales
    acme.click("#nav-publisher")
    mine = acme.locator(f'#own-assets tr[data-slug="{SLUG}"]')
    mine.locator("button.delist").click()
    mine.locator("button.delist").click()  # the confirmation
    assert f"Delisted {SLUG}" in message(acme)
    expect(mine.locator(".asset-state")).to_have_text("delisted")
    assert hub.api("GET", API + f"assets/{SLUG}", t["acme-admin"]).json()["state"] == "delisted"

    # a dataset through the form: its label column and default partition reach the API
    acme.click("#new-asset")
    acme.fill("#name", "Turbine vibrations")
    acme.select_option("#asset_type", "dataset")
    acme.select_option("#licence-kind", "custom")
    acme.fill("#licence_text", "Research use within your organisation.")
    acme.fill("#label_column", "fault")
    acme.fill("#partition", '{"name": "dirichlet", "alpha": 0.1}')
    rows = "".join(f"{i % 7},{i % 3 * 0.5},{i % 2}\n" for i in range(40))
    acme.set_input_files("#file", files=[
        {"name": "turbines.csv", "mimeType": "text/csv", "buffer": f"rpm,amp,fault\n{rows}".encode()}
    ])  # fmt: skip
    acme.click("#publish-button")
    assert "Submitted turbine-vibrations@1.0.0 for review." in message(acme)
    data = hub.api("GET", API + "assets/turbine-vibrations", t["acme-admin"]).json()
    schema = data["versions"][0]["schema"]
    assert (schema["label_column"], schema["partition"]) == (
        "fault", {"name": "dirichlet", "alpha": 0.1})  # fmt: skip
    assert data["licence_text"] == "Research use within your organisation."
