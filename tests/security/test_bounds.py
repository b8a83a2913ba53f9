"""Bounds on every input (issue 10, route 7) and experiments of suspended tenants and
removed users (route 6), against a real hub with its billing and experiments services.

- a usage quantity above the billing service's maximum is a 400 naming field and bound,
  and nothing of its batch is recorded;
- a tenant whose usage cannot be rated fails its invoice close alone, reported by the
  CLI (exit 1) and in the audit spool, while the tenants after it still close;
- an experiment parameter outside the bounds its registry declares is a 400 naming it;
- rounds and local epochs above the tier's limits are refused like the other quotas;
- a run that spends the month's federated client-hours stops, with the reason, at the
  round that spent them;
- a suspended tenant's queued and running experiments, and a removed user's, are
  cancelled within a few seconds.
"""

from __future__ import annotations

import json

import pytest

from fedhub import db
from fedhub.billing import subscriptions
from fedhub.billing.periods import containing
from fedhub.db.base import utcnow
from fedhub.metering import Usage, record
from tests.experiments.conftest import SERVICE, TINY, ExperimentsAPI, spooled_events, sql
from tests.harness import settled_period, wait_for

BILLING = "/services/billing/api/v1"
ERIN_PASSWORD = "Bounds-test-password-1"


@pytest.fixture(scope="module")
def shub(hub_factory):
    """A hub whose experiments service runs one experiment per tenant on its own
    (TLS, fedhub-worker) cluster of two workers."""
    hub = hub_factory(
        env={
            "FEDHUB_EXPERIMENTS_MAX_RUNNING": "2",
            "FEDHUB_EXPERIMENTS_MAX_RUNNING_PER_TENANT": "1",
        }
    )
    admin = hub.token("admin")
    wait_for(
        lambda: hub.api("GET", f"{BILLING}/invoices", admin).status_code == 200,
        60,
        0.3,
        "the billing service",
    )
    wait_for(
        lambda: hub.api("GET", f"{SERVICE}/quota?tenant=acme", admin).status_code == 200,
        120,
        0.3,
        "the experiments service",
    )
    return hub


def _api(hub, user: str) -> ExperimentsAPI:
    return ExperimentsAPI(hub, user)


def _admin_get(hub, exp_id: str) -> dict:
    """Read a run as the platform admin (a suspended tenant's own reads are not the point)."""
    r = hub.api("GET", f"{SERVICE}/experiments/{exp_id}", hub.token("admin"))
    assert r.status_code == 200, r.text
    return r.json()


def _wait_status(hub, exp_id: str, pred, timeout: float, what: str) -> dict:
    try:
        return wait_for(
            lambda: (d := _admin_get(hub, exp_id)) and pred(d) and d, timeout, 0.2, what
        )
    except TimeoutError as e:  # say where the run is and what the service logged
        lines = [x for x in hub.log().splitlines() if "fedhub.experiments" in x]
        raise AssertionError(
            f"{e}; run: {_admin_get(hub, exp_id)}; service log:\n" + "\n".join(lines[-15:])
        ) from None


# ---------------------------------------------------------------- billing


@pytest.mark.slow
def test_usage_quantity_over_the_maximum_is_400_and_nothing_of_the_batch_is_recorded(shub):
    tok = shub.token("acme-admin")
    when = utcnow().isoformat()

    def event(key, quantity):
        return {"id": key, "tenant": "acme", "kind": "api_calls", "quantity": quantity,
                "time": when}  # fmt: skip

    for i, bad in enumerate([1e30, 10**400, -1, float("nan")]):
        body = {"events": [event(f"ok-{i}", 5), event(f"bad-{i}", bad)]}
        r = shub.api("POST", f"{BILLING}/events", tok, data=json.dumps(body),
                     headers={"Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 400, (bad, r.status_code, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_request"
        assert "events[1].quantity" in err["message"], err
        assert err["details"]["field"] == "events[1].quantity" and err["details"]["max"] == 1e9
        if bad == 1e30:
            assert "at most 1e+09" in err["message"], err
    # an integer too long for Python's int parser is a 400 too, not a 500
    huge = '{"events": [{"id": "h", "tenant": "acme", "kind": "api_calls", "quantity": %s}]}'
    r = shub.api("POST", f"{BILLING}/events", tok, data=huge % ("9" * 5000),
                 headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text
    keys = sql(shub, "select idempotency_key from fedhub_meter_events where source='ext:default'")
    assert not [k for (k,) in keys if k.startswith(("ok-", "bad-"))]  # no half batch
    # the largest accepted quantity is recorded and rated without an error
    r = shub.api("POST", f"{BILLING}/events", tok, json={"events": [event("max-1", 1e9)]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    usage = shub.api("GET", f"{BILLING}/usage", tok)
    assert usage.status_code == 200, usage.text
    assert usage.json()["meters"]["api_calls_1k"]["usage"].startswith("1000000")


@pytest.mark.slow
def test_unratable_usage_fails_its_tenant_alone_and_the_others_still_close(shub):
    last = settled_period()
    with db.session_scope(shub.db_url) as s:
        for tenant, tier in (("acme", "professional"), ("globex", "starter"),
                             ("initech", "free")):  # fmt: skip
            subscriptions.record_change(s, tenant, tier, at=last.start)
        # a row older than the bound (or written by a buggy producer): no decimal rates it
        record(s, [
            Usage("acme", "cpu_seconds", 1e300, last.start, last.start, "legacy", "huge",
                  username="alice"),
            Usage("globex", "cpu_seconds", 70 * 3600, last.start, last.start, "t", "g-ok",
                  username="bob"),
        ])  # fmt: skip
    # acme sorts first: on today's code its error stopped globex's and initech's close
    r = shub.fedhub("billing", "close-period", "--period", last.name, check=False)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert f"error: tenant acme, period {last.name}: " in r.stderr, r.stderr
    assert "cannot be rated" in r.stderr and "1 of 3 invoice(s) could not be closed" in r.stderr
    admin = shub.token("admin")
    invoices = shub.api("GET", f"{BILLING}/invoices", admin).json()["invoices"]
    closed = {i["tenant"]: i for i in invoices if i["period"] == last.name}
    assert set(closed) == {"globex", "initech"}, closed
    assert closed["globex"]["total"] != "0.00"
    failed = [e for e in spooled_events(shub) if e["action"] == "billing.close_failed"]
    # the service's own scheduled close may have tried (and failed on acme) meanwhile too
    assert failed and {(e["tenant"], e["result"], e["details"]["period"]) for e in failed} == {
        ("acme", "error", last.name)
    }
    # the JSON output carries the same report
    r = shub.fedhub("billing", "close-period", "--period", last.name, "--json", check=False)
    rows = json.loads(r.stdout)
    assert r.returncode == 1 and [x["tenant"] for x in rows if "error" in x] == ["acme"]


# ---------------------------------------------------------------- experiment specs


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, field, bound",
    [
        ({"model": "mlp", "model_params": {"hidden": 100_000}}, "model_params.hidden", "1024"),
        ({"model": "mlp", "model_params": {"width": 8}}, "model_params.width", "unknown"),
        ({"dataset_params": {"num_features": 10**6}}, "dataset_params.num_features", "1000"),
        ({"strategy": "fedprox", "strategy_params": {"mu": 1e9}}, "strategy_params.mu", "100"),
        ({"dataset": "digits", "partition": "shards", "partition_params": {"per_client": 10**5}},
         "partition_params.per_client", "100"),
    ],
)  # fmt: skip
def test_registry_parameters_outside_their_bounds_are_400_naming_them(shub, spec, field, bound):
    r = _api(shub, "alice").submit(**{**TINY, "rounds": 1, **spec})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request"
    assert err["message"].startswith(f"{field}: ") and bound in err["message"], err
    assert err["details"]["field"] == field


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec, limit, value",
    [({"rounds": 10_000}, "max_rounds_per_experiment", 500),
     ({"local_epochs": 1000}, "max_local_epochs", 5)],
)  # fmt: skip
def test_rounds_and_local_epochs_over_the_tier_are_refused(shub, spec, limit, value):
    carol = _api(shub, "carol")  # free tier
    r = carol.submit(**{**TINY, **spec})
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded" and err["details"]["limit"] == limit
    asked = next(iter(spec.values()))
    assert f"{limit} = {value}" in err["message"] and f"requested {asked}" in err["message"], err
    assert carol.call("GET", "/quota").json()["limits"][limit] == value
    refused = [e for e in spooled_events(shub) if e["action"] == "experiment.refused"]
    assert any(e["details"].get("limit") == limit for e in refused)


# ---------------------------------------------------------------- while runs run


@pytest.mark.slow
def test_suspension_cancels_the_tenants_queued_and_running_experiments(shub):
    alice = _api(shub, "alice")  # token made before the suspension
    long = {**TINY, "rounds": 400}
    first = alice.submit(**long).json()["id"]
    second = alice.submit(**long).json()["id"]  # one slot per tenant: this one waits
    _wait_status(shub, first, lambda d: d["rounds_done"] >= 1, 120, "the first run running")
    assert _admin_get(shub, second)["status"] == "queued"
    shub.fedhub("tenant", "suspend", "acme")
    try:
        for exp_id in (first, second):
            done = _wait_status(
                shub, exp_id, lambda d: d["status"] == "cancelled", 20, "the run cancelled"
            )
            assert done["error"].startswith("tenant_suspended: "), done
            assert done["rounds_done"] < 400
        assert _admin_get(shub, second)["rounds_done"] == 0
        assert alice.submit(**TINY).status_code == 403  # new submissions refused too
        cancelled = [
            e for e in spooled_events(shub)
            if e["action"] == "experiment.cancelled" and e["target"] in
            (f"experiment:{first}", f"experiment:{second}")
        ]  # fmt: skip
        assert sorted(e["details"]["reason"] for e in cancelled) == ["tenant_suspended"] * 2
    finally:
        shub.fedhub("tenant", "resume", "acme")


@pytest.mark.slow
def test_a_removed_users_running_experiment_is_cancelled(shub):
    shub.fedhub("user", "add", "erin", "--tenant", "initech", "--password", ERIN_PASSWORD)
    erin = ExperimentsAPI.__new__(ExperimentsAPI)
    erin.hub, erin.user, erin.token = shub, "erin", shub.token("erin", ERIN_PASSWORD)
    r = erin.submit(**{**TINY, "rounds": 400})
    assert r.status_code == 201, r.text
    exp_id = r.json()["id"]
    _wait_status(shub, exp_id, lambda d: d["rounds_done"] >= 1, 120, "erin's run running")
    shub.fedhub("user", "remove", "erin")
    done = _wait_status(shub, exp_id, lambda d: d["status"] == "cancelled", 20, "cancelled")
    assert done["error"].startswith("user_removed: "), done
    assert done["rounds_done"] < 400


@pytest.mark.slow
def test_a_run_that_spends_the_months_client_hours_stops_with_the_reason(shub):
    # 0.002 client-hours = 7.2 client-seconds: a few rounds of four clients
    shub.fedhub("tenant", "update", "globex", "--override",
                "federated_client_hours_per_month=0.002")  # fmt: skip
    try:
        bob = _api(shub, "bob")
        r = bob.submit(**{**TINY, "rounds": 300})
        assert r.status_code == 201, r.text
        exp_id = r.json()["id"]
        done = _wait_status(
            shub, exp_id, lambda d: d["status"] not in ("queued", "running"), 180, "the stop"
        )
        assert done["status"] == "cancelled", done
        assert done["error"].startswith("client_hours_exhausted: "), done
        assert "federated_client_hours_per_month = 0.002" in done["error"]
        assert 1 <= done["rounds_done"] < 300
        # metered up to the round that spent the budget, once per round
        rows = sql(
            shub,
            "select kind, count(*), sum(quantity) from fedhub_meter_events"
            " where source='experiments' and attributes like ? group by kind",
            f'%"{exp_id}"%',
        )
        meters = {k: (n, q) for k, n, q in rows}
        assert meters["fl_rounds"] == (done["rounds_done"], float(done["rounds_done"]))
        assert meters["fl_client_seconds"][1] >= 0.002 * 3600
        # the event stream ends with the status and its reason
        stream = bob.call("GET", f"/experiments/{exp_id}/events", stream=True)
        lines = list(stream.iter_lines(decode_unicode=True))
        status = json.loads(lines[lines.index("event: status") + 1].removeprefix("data: "))
        assert status["status"] == "cancelled"
        assert status["error"].startswith("client_hours_exhausted")
        ended = [
            e for e in spooled_events(shub)
            if e["action"] == "experiment.cancelled" and e["target"] == f"experiment:{exp_id}"
        ]  # fmt: skip
        assert [e["details"]["reason"] for e in ended] == ["client_hours_exhausted"]
        # and the next submission is refused at admission
        again = bob.submit(**TINY)
        assert again.status_code == 429
        assert again.json()["error"]["details"]["limit"] == "federated_client_hours_per_month"
    finally:
        shub.fedhub("tenant", "update", "globex", "--override",
                    "federated_client_hours_per_month=")  # fmt: skip


# ---------------------------------------------------------------- the other layers, alone


def test_the_engine_rechecks_the_bounds_when_it_builds_objects():
    """A spec that skipped the service's validation still cannot build an oversized model."""
    from fedhub import fl
    from fedhub.fl.registry import ParameterError
    from fedhub.services.experiments.build import build_experiment
    from fedhub.services.experiments.spec import ExperimentSpec

    with pytest.raises(ParameterError, match=r"model_params\.hidden: must be at most 1024"):
        fl.models.factory("mlp", in_features=64, hidden=100_000)
    with pytest.raises(ParameterError, match=r"strategy_params\.mu"):
        fl.strategies.get("fedprox", mu=float("inf"))
    with pytest.raises(ParameterError, match=r"partition_params\.alpha"):
        fl.partition.resolve({"name": "dirichlet", "alpha": 0})
    unchecked = ExperimentSpec.model_validate(
        {"dataset": "digits", "clients": 4, "model": "mlp", "model_params": {"hidden": 10**6}}
    )  # what a row written by something else than parse_spec could hold
    with pytest.raises(ParameterError, match=r"model_params\.hidden"):
        build_experiment(unchecked)
    assert fl.models.get("mlp", in_features=64, hidden=1024.0).net[0].out_features == 1024


def test_rating_prices_the_largest_accepted_quantities_exactly():
    from datetime import datetime
    from decimal import Decimal

    from fedhub.billing.rating import RatingError, rate_rows
    from fedhub.billing.subscriptions import segments
    from fedhub.tiers import load_tiers

    period = containing(datetime(2026, 10, 5))
    segs = segments([(datetime(2026, 9, 1), "starter", {})], period)
    day = datetime(2026, 10, 2)
    rows = [("api_calls", f"u{i}", 1e15, day, None) for i in range(1000)]  # 1e18 calls
    rating = rate_rows("acme", period, load_tiers(), segs, rows)
    [line] = [x for x in rating.lines if x.meter == "api_calls_1k"]
    assert line.usage == Decimal("1000000000000000.000000")  # 1e18 / 1000, to the 6th place
    with pytest.raises(RatingError, match="acme's usage in 2026-10 cannot be rated"):
        rate_rows("acme", period, load_tiers(), segs, [("api_calls", "u", 1e300, day, None)])


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), 1e16])
def test_the_configured_maximum_is_itself_bounded(value):
    from traitlets import TraitError

    from fedhub.billing.settings import BillingSettings

    with pytest.raises(TraitError, match="max_event_quantity"):
        BillingSettings(max_event_quantity=value)
    assert BillingSettings().max_event_quantity == 1e9


@pytest.mark.parametrize("key, value", [("max_rounds_per_experiment", 0),
                                        ("max_local_epochs", 1001)])  # fmt: skip
def test_tier_limits_on_run_size_are_validated(key, value):
    from fedhub.errors import ConfigError
    from fedhub.tiers import load_tiers

    with pytest.raises(ConfigError, match=key):
        load_tiers().effective("free", {key: value})
