"""fedhub.limits is the one contract of tier keys and meters, and every consumer keeps to it.

Fails when a key of tiers.yaml (or of the Tier model) has no registry entry, when an
enforced entry names a check that does not exist, when a key is left unenforced without
the registry saying so, when quota and billing count compute or storage differently, or when the table in
docs/quotas.md no longer matches the registry. That every priced meter kind has a
producer that really records it is ``test_meter_producers.py``; the ``url`` fixture (a
migrated SQLite database) is in this folder's ``conftest.py``.
"""

from __future__ import annotations

import pkgutil
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from fedhub import limits, metering
from fedhub.tiers import DEFAULT_TIERS_PATH, Tier, load_tiers
from tests.foundation.meter_exercises import run_storage

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_tiers(DEFAULT_TIERS_PATH)

#: The keys the registry declares but nothing enforces, and nothing else. A new gap must be
#: added here on purpose (and is printed in docs/quotas.md and `fedhub tiers limits`).
KNOWN_GAPS = {
    # retired price: compute hours are core-hours, priced by overage.compute_hour
    "overage.cpu_core_hour",
}


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys |= _model_keys(sub, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _yaml_keys(spec: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in spec.items():
        if isinstance(value, dict):
            keys |= _yaml_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


# -- every tier key has an entry, and every entry is honest -------------------------------


def test_every_tier_key_has_exactly_one_registry_entry():
    assert len(limits.BY_KEY) == len(limits.LIMITS), "a key is declared twice"
    model = _model_keys(Tier)
    assert model == set(limits.BY_KEY), (
        f"Tier keys without a registry entry: {sorted(model - set(limits.BY_KEY))}; "
        f"entries for keys the Tier has not: {sorted(set(limits.BY_KEY) - model)}"
    )
    raw = yaml.safe_load(DEFAULT_TIERS_PATH.read_text())
    for name, spec in raw["tiers"].items():
        missing = _yaml_keys(spec) - set(limits.BY_KEY)
        assert not missing, f"tiers.yaml tier {name!r}: keys with no registry entry {missing}"
    for lim in limits.LIMITS:  # every key reads on a real tier
        lim.value(CATALOG.get("starter"))


@pytest.mark.parametrize("lim", limits.LIMITS, ids=lambda lim: lim.key)
def test_each_entry_is_enforced_somewhere_that_exists_or_says_why_not(lim):
    assert lim.role in (limits.LIMIT, limits.ENTITLEMENT, limits.PRICE, limits.LABEL)
    assert lim.window in (*limits.WINDOWS, "")
    known = {limits.SPAWN, limits.RUNTIME, limits.SERVICE, limits.PROXY, limits.MEMBERSHIP,
             limits.LOGIN, limits.BILLING}  # fmt: skip
    assert set(lim.enforced_at) <= known, lim.enforced_at
    if lim.role == limits.LABEL:
        return
    if not lim.enforced:
        assert lim.gap, f"{lim.key} is not enforced and does not say why"
        return
    assert lim.enforced_at, f"{lim.key} has no enforcement point"
    if lim.role == limits.PRICE:
        assert lim.price in limits.PRICES_BY_NAME or lim.enforcers, lim.key
    else:
        assert lim.enforcers, f"{lim.key} names no check"
    for ref in lim.enforcers:
        assert callable(pkgutil.resolve_name(ref)), ref  # import fails loudly if the check moved
    if lim.kind is not None:
        assert lim.kind in limits.KINDS, f"{lim.key} reads an unknown meter kind {lim.kind}"


def test_the_known_gaps_and_no_others():
    """The one list of what is declared but not enforced; the API-call limits are enforced
    by the rate limiter (fedhub.ratelimit) on the hub API and every service."""
    assert set(limits.gaps()) == KNOWN_GAPS
    assert [k for k in limits.gaps() if limits.get(k).role == limits.LIMIT] == []
    api = limits.get("api_calls_per_day")
    assert api.enforced_at[0] == limits.PROXY and api.kind == limits.API_CALLS and api.price
    for key in ("api_calls_per_day", "api_calls_per_hour"):
        assert limits.get(key).enforced
        assert limits.get(key).enforcers == ("fedhub.ratelimit:TenantRateLimiter.check",)


# -- prices: one definition shared with the quotas ------------------------------------------


def test_price_lines_use_the_quota_definitions():
    from fedhub.billing import pricebook
    from fedhub.tiers import Overage

    for line in limits.PRICES:
        assert line.kind in limits.KINDS, line
        assert line.overage in Overage.model_fields, line
        assert limits.get(f"overage.{line.overage}").price == line.name
        if line.included is not None:
            quota = limits.get(line.included)
            assert quota.price == line.name, line
            assert quota.kind == line.kind, f"{line.name}: quota and bill read different kinds"
            # the allowance billing includes is the quota's value, in the line's unit
            meter = pricebook.meter(line)
            tier = CATALOG.get("starter")
            days = 30 if line.included_per_day else 1
            expected = Decimal(str(quota.value(tier) * days * quota.per_unit / line.per_unit))
            assert meter.included(tier, 30) == expected, line.name
    for lim in limits.LIMITS:
        if lim.price is not None:
            assert lim.price in limits.PRICES_BY_NAME, lim
    assert [(m.name, m.kind, m.divisor) for m in pricebook.METERS] == [
        (p.name, p.kind, Decimal(str(p.per_unit)).normalize()) for p in limits.PRICES
    ]
    compute = limits.get("compute_hours_per_month")
    assert (compute.kind, compute.unit) == (limits.CPU_SECONDS, "core-hours")
    assert pricebook.METERS_BY_KIND[limits.CPU_SECONDS].name == "compute_hours"


def test_quota_and_bill_count_the_same_compute_hours(url):
    from fedhub import db, quotas
    from fedhub.billing import subscriptions
    from fedhub.billing.periods import parse
    from fedhub.billing.rating import rate
    from fedhub.metering import Usage, record

    oct_ = parse("2026-10")
    at = datetime(2026, 10, 3)
    with db.session_scope(url) as s:
        subscriptions.record_change(s, "acme", "starter", at=oct_.start)
        record(
            s,
            [  # a 4-core server for 30 minutes: 2 core-hours, 0.5 server hours
                Usage("acme", limits.CPU_SECONDS, 7200.0, at, at, "t", "c", username="ann"),
                Usage("acme", limits.SERVER_SECONDS, 1800.0, at, at, "t", "s", username="ann"),
            ],
        )
        s.flush()
        quota_hours = quotas.compute_hours_used(s, "acme", datetime(2026, 10, 20))
        lines = rate(s, "acme", oct_, CATALOG).lines
    [compute] = [line for line in lines if line.meter == "compute_hours"]
    assert quota_hours == 2.0 and compute.usage == Decimal(2)
    assert [line.meter for line in lines if line.line_type == "usage"] == ["compute_hours"]


# -- storage: one measurement, one place ---------------------------------------------------


def test_quota_and_bill_measure_storage_with_the_same_code(url, tmp_path, monkeypatch):
    from fedhub import db, storage

    run_storage(url, tmp_path, monkeypatch)
    template = str(tmp_path / "homes" / "{username}")
    quota_bytes = storage.tenant_bytes(template, ["ann"])
    with db.session_scope(url) as s:
        billed_gb = metering.latest_level(s, "acme", "storage_gb")
    assert quota_bytes >= 10_000 and billed_gb == pytest.approx(quota_bytes / storage.GB)


def test_fedhub_up_spawner_and_billing_find_homes_in_the_same_place(tmp_path, monkeypatch):
    """The embedded default: the spawner's home_dir_template is where billing samples."""
    from fedhub import launcher
    from fedhub.billing.settings import BillingSettings

    ctx = launcher.LaunchContext(state_dir=tmp_path, db_url="sqlite://", port=8000)
    c = launcher.build_config(ctx)
    [billing] = [svc for svc in c.JupyterHub.services if svc["name"] == "billing"]
    for key in ("FEDHUB_STORAGE_PATH_TEMPLATE", "FEDHUB_STATE_DIR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in billing["environment"].items():
        monkeypatch.setenv(key, value)
    assert BillingSettings().storage_path_template == c.UnixAccountSpawner.home_dir_template


def test_billing_follows_the_spawners_storage_path_in_the_shared_config(monkeypatch):
    from traitlets.config import Config

    from fedhub.billing.settings import BillingSettings

    monkeypatch.setenv("FEDHUB_STORAGE_PATH_TEMPLATE", "/elsewhere/{username}")
    shared = Config({"TierSpawner": {"storage_path_template": "/home/{username}"}})
    assert BillingSettings(config=shared).storage_path_template == "/home/{username}"
    unix = Config({"UnixAccountSpawner": {"home_dir_template": "/srv/homes/{username}"}})
    assert BillingSettings(config=unix).storage_path_template == "/srv/homes/{username}"
    assert BillingSettings().storage_path_template == "/elsewhere/{username}"


# -- one refusal shape ------------------------------------------------------------------------


def test_refusal_details_have_one_shape(url):
    from fedhub import quotas
    from fedhub.errors import QuotaExceeded
    from fedhub.services.experiments import quota
    from fedhub.services.experiments.spec import parse_spec
    from fedhub.tenancy.store import TenantStore

    shape = {"limit", "allowed", "used", "requested", "unit"}
    store = TenantStore(url, CATALOG)
    store.create_tenant("tiny", tier="free")
    quotas.reserve(url, tenant="tiny", username="a", server_name="", profile=None,
                   catalog=CATALOG)  # fmt: skip
    refusals = []
    for call in (
        lambda: quotas.reserve(
            url, tenant="tiny", username="b", server_name="", profile=None, catalog=CATALOG
        ),  # fmt: skip
        lambda: quota.reserve(
            url, "tiny", "a", "free", CATALOG.get("free"), parse_spec({"clients": 11})
        ),  # fmt: skip
        lambda: [store.add_user(f"u{i}", tenant="tiny") for i in range(5)],
    ):
        with pytest.raises(QuotaExceeded) as e:
            call()
        refusals.append(e.value.details)
    for details in refusals:
        assert shape <= set(details), details
        assert details["unit"] == limits.get(details["limit"]).unit
    assert [d["limit"] for d in refusals] == [
        "max_servers_per_tenant",
        "max_clients_per_experiment",
        "max_users",
    ]


def test_a_gpu_profile_needs_the_gpu_feature():
    from fedhub import quotas

    gpu = CATALOG.profiles["gpu"]
    tier = CATALOG.effective("professional", {"profiles": ["small", "gpu"]})
    with pytest.raises(quotas.ProfileNotAllowed) as e:
        quotas.check_profile("professional", tier, "gpu", gpu)
    assert e.value.details["limit"] == "features.gpu"
    quotas.check_profile("enterprise", CATALOG.get("enterprise"), "gpu", gpu)


# -- what users and operators read ---------------------------------------------------------


def test_docs_table_matches_the_registry():
    doc = (ROOT / "docs" / "quotas.md").read_text()
    assert limits.TABLE_BEGIN in doc and limits.TABLE_END in doc, "docs/quotas.md: no table"
    shown = doc.split(limits.TABLE_BEGIN, 1)[1].split(limits.TABLE_END, 1)[0].strip()
    assert shown == limits.markdown_table(), (
        "docs/quotas.md's limits table is stale: regenerate it with"
        " `python -m fedhub.limits --markdown`"
    )


def test_quota_panel_shows_the_registry_rows(url):
    from fedhub import db
    from fedhub.extensions.widgets import QuotaPanel
    from fedhub.services.experiments import quota

    tier = CATALOG.get("starter")
    with db.session_scope(url) as s:
        rows = metering.usage_rows(s, "acme", tier)
        usage = quota.usage(s, "acme")
    assert {r["limit"] for r in rows} == {  # the optional limits a tier leaves unset are not shown
        lim.key
        for lim in limits.LIMITS
        if lim.role == limits.LIMIT and lim.kind and lim.value(tier) is not None
    }
    panel = QuotaPanel(
        {
            "tenant": "acme",
            "tier": "starter",
            "limits": quota.limits(tier),
            "usage": usage,
            "meters": rows,
        }  # fmt: skip
    )
    labels = [w.children[1].value for w in panel.children[1:]]
    assert len(labels) == len(rows) + 1
    assert not any("not enforced" in label for label in labels)  # every metered limit is


def test_cli_prints_every_key_and_the_gaps():
    from click.testing import CliRunner

    from fedhub.cli.tiers import command

    result = CliRunner().invoke(command, ["limits", str(DEFAULT_TIERS_PATH)])
    assert result.exit_code == 0, result.output
    for lim in limits.LIMITS:
        if lim.role != limits.LABEL:
            assert lim.key in result.output
    assert "overage.cpu_core_hour: retired when compute hours" in result.output
