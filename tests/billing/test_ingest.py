"""The events API's library half: one pydantic validation of the request bytes, and a
write that counts every event once (inside a batch, across batches, in one transaction)
on both engines."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from fedhub.billing.ingest import LateEvent, ingest, parse_batch
from fedhub.errors import InvalidRequest
from fedhub.metering import MeterEvent
from tests.harness import wait_for

NOW = datetime(2026, 10, 1)
WHEN = "2026-09-30T12:00:00Z"


def event(key="e1", **fields):
    return {"id": key, "tenant": "acme", "kind": "api_calls", "quantity": 2, "time": WHEN} | fields


def parse(body, **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_batch(
        raw, now=NOW, late_window=timedelta(days=7), future_skew=timedelta(minutes=5), **kw
    )


def count(billing, source="ext:default"):
    with billing.session() as s:
        return s.execute(
            select(func.count(), func.coalesce(func.sum(MeterEvent.quantity), 0)).where(
                MeterEvent.source == source
            )
        ).one()


def test_duplicates_inside_and_across_batches_count_once(billing):
    first = parse({"events": [event("a"), event("b"), event("a"), event("c"), event("b")]})
    second = parse({"events": [event("c"), event("d"), event("d"), event("a")]})
    with billing.session() as s:
        assert ingest(s, first, now=NOW) == {"received": 5, "accepted": 3, "duplicates": 2}
    with billing.session() as s:
        assert ingest(s, second, now=NOW) == {"received": 4, "accepted": 1, "duplicates": 3}
    with billing.session() as s:  # the whole thing again: nothing new
        assert ingest(s, first + second, now=NOW)["accepted"] == 0
    assert tuple(count(billing)) == (4, 8)


def test_two_batches_in_one_transaction_each_count_their_own_rows(billing):
    with billing.session() as s:
        assert ingest(s, parse({"events": [event("x"), event("y")]}), now=NOW)["accepted"] == 2
        assert ingest(s, parse({"events": [event("y"), event("z")]}), now=NOW)["accepted"] == 1
    assert tuple(count(billing)) == (3, 6)


def test_a_rolled_back_batch_leaves_nothing(billing):
    usages = parse({"events": [event("r1"), event("r2")]})
    with pytest.raises(RuntimeError), billing.session() as s:
        ingest(s, usages, now=NOW)
        raise RuntimeError("killed mid-batch")
    assert tuple(count(billing)) == (0, 0)
    with billing.session() as s:
        assert ingest(s, usages, now=NOW)["accepted"] == 2


def test_stored_rows_keep_every_field(billing):
    [u] = parse(
        {
            "events": [
                {
                    "id": "full",
                    "tenant": "acme",
                    "kind": "api_calls",
                    "quantity": 2.5,
                    "start": "2026-09-30T10:00:00+02:00",
                    "end": "2026-09-30T09:00:00Z",
                    "user": "bob",
                    "source": "lab.1",
                    "attributes": {"experiment": "exp-1"},
                }
            ]
        }
    )
    with billing.session() as s:
        ingest(s, [u], now=NOW)
    with billing.session() as s:
        row = s.scalars(select(MeterEvent).where(MeterEvent.idempotency_key == "full")).one()
        assert (row.tenant, row.username, row.kind, row.quantity, row.source) == (
            "acme",
            "bob",
            "api_calls",
            2.5,
            "ext:lab.1",
        )
        assert (row.start, row.end) == (datetime(2026, 9, 30, 8), datetime(2026, 9, 30, 9))
        assert row.attributes == {"experiment": "exp-1"} and row.recorded_at == NOW


# -- validation: one 400 naming the first bad event and field ----------------------------

BAD = [
    ([event(), event(quantity=1e30)], "events[1].quantity: at most 1e+09 per event"),
    ([event(), event(quantity=-1)], "events[1].quantity: must be >= 0, got -1"),
    ([event(quantity=True)], "events[0].quantity: a number"),
    ([event(quantity="5")], "events[0].quantity: a number"),
    ([{k: v for k, v in event().items() if k != "quantity"}], "events[0].quantity: a number"),
    ([{"id": "bad"}], "events[0].tenant: a tenant slug"),
    ([event(tenant="Acme")], "events[0].tenant: a tenant slug"),
    ([event(id="")], "events[0].id: a string of 1-200 characters"),
    ([event(id=7)], "events[0].id: a string of 1-200 characters"),
    ([event(kind="API")], "events[0].kind: lowercase letters, digits and _"),
    ([event(zz=1, aa=2, tenant=5)], "events[0]: unknown field 'aa'"),
    ([event(), 5], "events[1]: expected an object"),
    ([event(time=None)], "events[0].time: expected an ISO 8601 time string"),
    ([event(time="soon")], "events[0].time: 'soon' is not an ISO 8601 time"),
    ([event(time=3)], "events[0].time: expected an ISO 8601 time string"),
    (
        [{k: v for k, v in event(start=WHEN, end="2026-09-30T11:00:00Z").items() if k != "time"}],
        "events[0]: end is before start",
    ),
    ([{k: v for k, v in event().items() if k != "time"}], "events[0].start: expected an ISO"),
    ([event(user="")], "events[0].user: a username"),
    ([event(source=None)], "events[0].source: lowercase letters, digits and . _ -"),
    ([event(attributes=[1])], "events[0].attributes: an object under 4096 bytes"),
    ([event(attributes={"a": "x" * 5000})], "events[0].attributes: an object under 4096"),
    ([event("ok"), event("bad", kind="X"), event("worse", tenant="?")], "events[1].kind"),
    ([], "the batch is empty"),
]


@pytest.mark.parametrize("events, message", BAD)
def test_a_bad_event_refuses_the_batch_naming_it(events, message):
    with pytest.raises(InvalidRequest) as e:
        parse({"events": events})
    assert e.value.message.startswith(message), e.value.message
    body = e.value.to_json()["error"]
    assert body["code"] == "invalid_request"
    if ".quantity" in message:
        field = message.split(":")[0]
        assert body["details"] == {"field": field, "min": 0, "max": 1e9}


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", 'expected {"events": [...]}'),
        (b"[1, 2]", 'expected {"events": [...]}'),
        (b'{"events": {}}', 'expected {"events": [...]}'),
        (b"{,", "request body is not valid JSON"),
        (b'{"events": [' + b"9" * 5000 + b"]}", "request body is not acceptable JSON"),
        (b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}", "request body is not acceptable"),
    ],
)
def test_a_body_that_is_not_a_batch_is_a_400(body, message):
    with pytest.raises(InvalidRequest) as e:
        parse(body)
    assert e.value.status == 400 and e.value.message.startswith(message), e.value.message


def test_limits_come_from_the_settings():
    with pytest.raises(InvalidRequest, match=r"at most 2 events per batch, got 3"):
        parse({"events": [event("a"), event("b"), event("c")]}, max_batch=2)
    with pytest.raises(InvalidRequest, match=r"events\[0\].quantity: at most 10 per event"):
        parse({"events": [event(quantity=11)]}, max_quantity=10)
    assert parse({"events": [event(quantity=10)]}, max_quantity=10)[0].quantity == 10.0


def test_time_wins_over_start_and_end_and_windows_are_checked():
    [u] = parse({"events": [event(start="not a time")]})
    assert u.start == u.end == datetime(2026, 9, 30, 12)
    with pytest.raises(LateEvent):
        parse({"events": [event(time="2026-09-01T00:00:00")]})
    with pytest.raises(InvalidRequest, match="end in the future"):
        parse({"events": [event(time="2026-10-02T00:00:00")]})


# row locks exist on PostgreSQL only: SQLite serialises whole writers at BEGIN IMMEDIATE
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_concurrent_batches_sharing_keys_in_opposite_orders_do_not_deadlock(billing):
    """Batch B holds A's keys in reverse order and arrives while A's transaction is open."""
    keys = [f"k{i:03d}" for i in range(200)]
    first, second = keys[:100], keys[100:]
    reverse = parse({"events": [event(k) for k in reversed(keys)]})
    outcome = {}

    def send_b():
        try:
            with billing.session() as s:
                outcome["b"] = ingest(s, reverse, now=NOW)["accepted"]
        except Exception as e:  # surfaced by the assertion below
            outcome["b"] = e

    def b_waits():
        with billing.session() as s:
            return s.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))

    with billing.session() as s:
        a = ingest(s, parse({"events": [event(k) for k in first]}), now=NOW)["accepted"]
        sender = threading.Thread(target=send_b)
        sender.start()
        wait_for(b_waits, 30, interval=0.02, what="batch B to wait for batch A's keys")
        a += ingest(s, parse({"events": [event(k) for k in second]}), now=NOW)["accepted"]
    sender.join(30)
    assert a == 200 and outcome["b"] == 0, outcome
    assert tuple(count(billing)) == (200, 400)
