"""Row-level security of federations on PostgreSQL: rows shared with the tenants a federation
lists, and nobody else.

The handlers' own blocking functions (:mod:`fedhub.services.experiments.federations`) run in
the scope each request would have (``rls.tenant(<caller's tenant>)``), on a database migrated
to the newest revision (0018_federations included):

- globex, invited, sees acme's federation, its members and (once joined) its rounds; hooli,
  never listed, sees none of it, even when it asks for the id;
- each member's own metrics are its own: globex reads globex's, not acme's;
- no tenant lists itself (or anyone) for a federation: listing is the service's (platform)
  work, so knowing a federation's id shows nothing;
- a member writes only its own member row, and no tenant writes rounds;
- the owner's scope cannot read another member's usage, so the run's limit check is platform
  work: it still refuses a member whose federated client-hours are spent.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError

from fedhub import db, metering
from fedhub.db import rls, session_scope, utcnow
from fedhub.errors import QuotaExceeded
from fedhub.services.experiments.federations import lifecycle, results
from fedhub.services.experiments.federations.models import (
    FederationMember,
    FederationRound,
    FederationTenant,
)
from fedhub.services.experiments.federations.runner import FederationRunner
from fedhub.tenancy.store import TenantStore
from tests.harness import this_month

pytestmark = pytest.mark.postgres

SCHEMA = {"features": [{"name": "a", "dtype": "float32"}], "label": {"name": "y", "num_classes": 2}}
TASK = {"rounds": 2, "local_epochs": 1}


@pytest.fixture(scope="module")
def url(postgres, tmp_path_factory):
    url = postgres.create_database(f"fed_{uuid.uuid4().hex[:10]}")
    db.upgrade(url)
    with rls.platform():
        store = TenantStore(url)
        for slug, tier in (("acme", "professional"), ("globex", "starter"), ("hooli", "free")):
            store.create_tenant(slug, tier=tier)
    yield url
    db.dispose_engines()


@pytest.fixture(scope="module")
def fed(url, tmp_path_factory):
    """acme's federation, globex invited and joined, one round recorded by the runner."""
    with rls.tenant("acme"):
        fid = lifecycle.create(url, tenant="acme", username="a", name="f", task=TASK,
                               schema=SCHEMA, privacy={}, dataset="d@1")  # fmt: skip
        lifecycle.invite(url, fid, "globex", "a")
    with rls.tenant("globex"):
        lifecycle.respond(url, fid, "globex", "g", dataset="e@1")
    spool = tmp_path_factory.mktemp("spool")
    record = {"round": 1, "duration_s": 1.0, "aggregate": {"accuracy": 0.5},
              "per_member": {"acme": {"accuracy": 0.9, "client_seconds": 1.0},
                             "globex": {"accuracy": 0.1, "client_seconds": 2.0}}}  # fmt: skip
    with rls.platform(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDHUB_EVENTS_SPOOL", str(spool))
        FederationRunner._record_round(SimpleNamespace(db_url=url), fid, record, {})
    return fid


def test_listed_tenants_see_the_federation_and_others_do_not(url, fed):
    for tenant in ("acme", "globex"):
        with rls.tenant(tenant):
            found, members = lifecycle.load(url, fed)
            assert found is not None and {m.tenant for m in members} == {"acme", "globex"}
            assert [f["id"] for f in lifecycle.listed(url, tenant)] == [fed]
            assert [r["round"] for r in results.rounds(url, fed)] == [1]
    with rls.tenant("hooli"):
        assert lifecycle.load(url, fed) == (None, [])
        assert results.rounds(url, fed) == []
        # even a query without the tenant filter (what a forgotten WHERE would be)
        assert lifecycle.listed(url, None) == []


def test_each_member_reads_only_its_own_metrics(url, fed):
    with rls.tenant("globex"):
        assert results.member_metrics(url, fed, None) == {
            "members": {"globex": {"rounds": [{"round": 1, "accuracy": 0.1, "client_seconds": 2.0}],
                                   "local_only": None}}}  # fmt: skip
    with rls.tenant("hooli"):
        assert results.member_metrics(url, fed, None) == {"members": {}}


def test_a_tenant_cannot_list_itself_for_another_tenants_federation(url, fed):
    engine = db.get_engine(url)
    with rls.tenant("hooli"), pytest.raises(DBAPIError, match="row-level security"):
        with engine.begin() as conn:
            conn.execute(
                insert(FederationTenant.__table__).values(federation_id=fed, tenant="hooli")
            )
    with rls.tenant("globex"), pytest.raises(DBAPIError, match="row-level security"):
        with engine.begin() as conn:  # a member cannot invite on the owner's behalf either
            conn.execute(
                insert(FederationTenant.__table__).values(federation_id=fed, tenant="hooli")
            )


def test_members_write_only_their_own_row_and_no_results(url, fed):
    engine = db.get_engine(url)
    members = FederationMember.__table__
    with rls.tenant("globex"), pytest.raises(DBAPIError, match="row-level security"):
        with engine.begin() as conn:  # acme's binding is not globex's to change
            conn.execute(members.update().where(members.c.tenant == "acme").values(dataset="x@1"))
    with rls.tenant("globex"), engine.begin() as conn:  # its own row it may answer for
        assert (
            conn.execute(
                members.update().where(members.c.tenant == "globex").values(dataset="e@1")
            ).rowcount
            == 1
        )
    rounds = FederationRound.__table__
    for tenant in ("acme", "globex"):  # rounds are the runner's (platform) alone
        with rls.tenant(tenant), pytest.raises(DBAPIError, match="row-level security"):
            with engine.begin() as conn:
                conn.execute(insert(rounds).values(federation_id=fed, round=9, record={},
                                                   recorded_at=utcnow()))  # fmt: skip


def test_the_run_check_sees_every_members_usage(url, fed):
    runner = FederationRunner(url, SimpleNamespace())
    with rls.tenant("acme"):
        runner.check_members(fed, ["acme", "globex"])  # nothing spent yet
    start, end = this_month()
    with rls.platform(), session_scope(url) as s:  # globex spends its 50 client-hours
        metering.record(s, [metering.Usage(tenant="globex", kind=metering.limits.FL_CLIENT_SECONDS,
                                           quantity=50 * 3600, start=start,
                                           end=end, source="tests", idempotency_key="spent")])  # fmt: skip
    with rls.tenant("acme"), pytest.raises(QuotaExceeded) as refused:
        runner.check_members(fed, ["acme", "globex"])
    assert refused.value.message.startswith("member globex has used all its federated")
    assert refused.value.details["limit"] == "federated_client_hours_per_month"
    assert refused.value.details["used"] is None  # globex's usage is not acme's to see
