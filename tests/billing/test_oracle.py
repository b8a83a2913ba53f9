"""OpenMeter-style oracle tests: the meter's sums against sums computed here."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from fedhub.billing import subscriptions
from fedhub.billing.ingest import ingest
from fedhub.billing.periods import parse
from fedhub.billing.rating import rate
from fedhub.metering import Usage, usage_total

OCT = parse("2026-10")


def _events(n, seed=7):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        start = OCT.start + timedelta(seconds=rng.randrange(OCT.days * 86400))
        out.append(
            Usage(
                tenant=rng.choice(["acme", "globex"]),
                kind=rng.choice(["cpu_seconds", "api_calls", "fl_client_seconds"]),
                quantity=round(rng.uniform(0, 5000), 3),
                start=start,
                end=start + timedelta(minutes=5),
                source="ext:oracle",
                idempotency_key=f"e{i}",
                username=rng.choice(["alice", "bob", None]),
            )
        )
    return out


def test_thousand_random_events_sum_exactly(billing):
    events = _events(1000)
    with billing.session() as s:
        result = ingest(s, events, now=billing.clock.now())
    assert result == {"received": 1000, "accepted": 1000, "duplicates": 0}
    oracle = defaultdict(list)
    for e in events:
        oracle[(e.tenant, e.kind)].append(e.quantity)
    with billing.session() as s:
        for (tenant, kind), quantities in oracle.items():
            got = usage_total(s, tenant, kind, OCT.start, OCT.end)
            assert math.isclose(got, math.fsum(quantities), rel_tol=1e-12), (tenant, kind)
        # rating sums exactly (fsum), so compare Decimals exactly
        subscriptions.record_change(s, "acme", "starter", at=OCT.start)
        s.flush()
        r = rate(s, "acme", OCT, billing.catalog)
    usage = r.usage_summary()
    expected = Decimal(repr(math.fsum(oracle[("acme", "cpu_seconds")]))) / 3600
    assert usage["compute_hours"]["usage"] == expected.quantize(Decimal("0.000001"))


def test_same_event_a_thousand_times_counts_once(billing):
    event = _events(1)[0]
    now = billing.clock.now()
    accepted = 0
    for _ in range(10):  # 10 batches of 100 copies
        with billing.session() as s:
            accepted += ingest(s, [event] * 100, now=now)["accepted"]
    assert accepted == 1
    with billing.session() as s:
        assert usage_total(s, event.tenant, event.kind, OCT.start, OCT.end) == event.quantity


def test_per_day_windows_are_exact(billing):
    events = _events(1000, seed=11)
    # put some events exactly on day boundaries: they belong to the day they start
    for i in range(0, 1000, 50):
        e = events[i]
        day = datetime(2026, 10, 1 + (i // 50))
        events[i] = Usage(
            e.tenant,
            e.kind,
            e.quantity,
            day,
            day + timedelta(hours=1),
            e.source,
            e.idempotency_key,
            e.username,
        )
    with billing.session() as s:
        ingest(s, events, now=billing.clock.now())
    oracle = defaultdict(list)
    for e in events:
        oracle[(e.tenant, e.kind, e.start.date())].append(e.quantity)
    with billing.session() as s:
        for day in range(OCT.days):
            since = OCT.start + timedelta(days=day)
            for tenant in ("acme", "globex"):
                for kind in ("cpu_seconds", "api_calls", "fl_client_seconds"):
                    got = usage_total(s, tenant, kind, since, since + timedelta(days=1))
                    want = math.fsum(oracle.get((tenant, kind, since.date()), []))
                    assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9), (tenant, kind, day)
