"""Property tests (hypothesis): order and duplicates never change an invoice; totals add up;
proration follows the formula."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedhub import db
from fedhub.billing import subscriptions
from fedhub.billing.invoices import close_period, get_invoice
from fedhub.billing.money import split
from fedhub.billing.periods import containing, parse
from fedhub.billing.rating import rate, rate_rows
from fedhub.billing.settings import BillingSettings
from fedhub.metering import Usage, record
from fedhub.tiers import load_tiers

CATALOG = load_tiers()
OCT = parse("2026-10")
KINDS = ["server_seconds", "cpu_seconds", "api_calls", "fl_client_seconds", "storage_gb_days"]
_counter = itertools.count()

event_st = st.builds(
    lambda minute, kind, q, user, exp: (minute, kind, q, user, exp),
    st.integers(0, OCT.days * 24 * 60 - 1),
    st.sampled_from(KINDS),
    st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from(["alice", "bob", "carol", None]),
    st.sampled_from([None, "exp-1", "exp-2"]),
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('props') / 'billing.sqlite'}"
    db.upgrade(url)
    yield url
    db.dispose_engines()


def _usage(tenant, i, ev):
    minute, kind, q, user, exp = ev
    start = OCT.start + timedelta(minutes=minute)
    return Usage(
        tenant,
        kind,
        q,
        start,
        start + timedelta(minutes=1),
        "prop",
        f"k{i}",
        username=user,
        attributes={"experiment": exp} if exp else {},
    )


def _lines(doc_lines):
    return [
        (ln.line_type, ln.line_key, ln.quantity, ln.unit_price, ln.amount, ln.attribution)
        for ln in doc_lines
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(event_st, max_size=40),
    data=st.data(),
    tier=st.sampled_from(["starter", "professional", "enterprise"]),
)
def test_shuffling_or_duplicating_events_never_changes_the_invoice(url, events, data, tier):
    n = next(_counter)
    order = data.draw(st.permutations(range(len(events))))
    dupes = data.draw(st.lists(st.sampled_from(range(len(events))), max_size=20)) if events else []
    settings_ = BillingSettings(grace_days=0)
    invoices = []
    for variant, idx in (("a", list(range(len(events)))), ("b", list(order) + dupes)):
        tenant = f"t{n}{variant}"
        with db.session_scope(url) as s:
            subscriptions.record_change(s, tenant, tier, at=OCT.start)
            # one recording per event, in this variant's order (duplicates are resent)
            for i in idx:
                record(s, [_usage(tenant, i, events[i])])
            inv = close_period(
                s, tenant, OCT, catalog=CATALOG, settings=settings_, now=OCT.end + timedelta(days=1)
            )
            invoices.append((inv.total, _lines(get_invoice(s, tenant, OCT).lines)))
    assert invoices[0] == invoices[1]


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(event_st, max_size=60),
    tier=st.sampled_from(["free", "starter", "professional", "enterprise"]),
    discount=st.sampled_from([0, 7.5, 12.345, 100]),
    change_day=st.integers(1, 30),
    tier2=st.sampled_from(["starter", "professional"]),
)
def test_total_is_the_sum_of_lines_and_attribution_adds_up(
    events, tier, discount, change_day, tier2
):
    changes = [
        (OCT.start, tier, {"discount_percent": discount}),
        (OCT.start + timedelta(days=change_day), tier2, {}),
    ]
    segs = subscriptions.segments(changes, OCT)
    rows = [
        (u.kind, u.username, u.quantity, u.start, dict(u.attributes))
        for u in (_usage("t", i, e) for i, e in enumerate(events))
    ]
    r = rate_rows("t", OCT, CATALOG, segs, rows)
    assert r.total == sum(line.amount for line in r.lines)
    assert r.total >= 0
    for line in r.lines:
        assert line.amount == line.amount.quantize(Decimal("0.01"))
        users = line.attribution.get("users", {})
        assert sum(Decimal(u["amount"]) for u in users.values()) == line.amount
        exps = line.attribution.get("experiments")
        if exps:
            assert sum(Decimal(e["amount"]) for e in exps.values()) == line.amount
    assert sum(r.by_user().values()) == r.total


@settings(max_examples=300, deadline=None)
@given(
    month=st.integers(1, 12),
    day=st.integers(2, 28),
    hour=st.integers(0, 23),
    old=st.sampled_from(["free", "starter", "professional", "enterprise"]),
    new=st.sampled_from(["free", "starter", "professional", "enterprise"]),
    price=st.decimals(0, 100000, places=2),
)
def test_mid_month_change_is_prorated_by_the_formula(month, day, hour, old, new, price):
    period = containing(datetime(2027, month, 1))
    at = datetime(2027, month, day, hour, 17)
    changes = [(period.start, old, {}), (at, new, {"monthly_price": float(price)})]
    r = rate_rows("t", period, CATALOG, subscriptions.segments(changes, period), [])
    base = [line.amount for line in r.lines if line.line_type == "base"]
    days_old = day - 1  # the change counts from the start of its UTC day
    days_new = period.days - days_old

    def cents(x):
        return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    p_old = Decimal(repr(CATALOG.get(old).monthly_price))
    p_new = Decimal(repr(float(price)))
    assert base == [cents(p_old * days_old / period.days), cents(p_new * days_new / period.days)]


@given(
    amount=st.decimals(-10000, 10000, places=2),
    weights=st.dictionaries(
        st.text(min_size=1, max_size=3), st.decimals(0, 1000, places=3), min_size=1, max_size=8
    ),
)
def test_split_always_adds_up_to_the_cent(amount, weights):
    shares = split(amount, weights)
    assert sum(shares.values()) == amount and set(shares) == set(weights)


def test_rate_reads_the_database_like_rate_rows(url):
    with db.session_scope(url) as s:
        subscriptions.record_change(s, "same", "starter", at=OCT.start)
        record(s, [_usage("same", 0, (60, "cpu_seconds", 7200.0, "alice", None))])
        s.flush()
        r = rate(s, "same", OCT, CATALOG)
    assert [line.line_type for line in r.lines] == ["base", "usage"]
