"""Route 9: fedhub code uses the hub's database session on the event loop's thread only.

In the hub, fedhub's tables are read and written on the hub's own session. A
worker thread that touches it (even by reading an expired attribute of the
hub's ``User``) races the loop: eight simultaneous spawns once gave a 500
("This session is provisioning a new connection"). The guard in
:mod:`fedhub.extensions.hub.session_guard` reports every such use; these tests
show that it catches one, and that a real hub under concurrent spawns, logins,
the spawn page and stops never trips it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from jupyterhub import orm
from traitlets.config import Config

from fedhub.extensions.hub import session_guard
from fedhub.extensions.hub.local_auth import LocalTenantAuthenticator
from fedhub.tenancy.store import TenantStore
from tests.harness import wait_for
from tests.spawner.race import FAST_SERVER_ARGS, guard_report, race_round, servers, stop_all

GUARD_ENV = {session_guard.ENV: "strict"}


# -- the guard itself ------------------------------------------------------------


@pytest.fixture
def hub_session(tmp_path):
    """A JupyterHub ORM session with one user, like the hub's ``app.db``."""
    session = orm.new_session_factory(f"sqlite:///{tmp_path / 'hub.sqlite'}")()
    session.add(orm.User(name="alice"))
    session.commit()
    yield session
    session.close()


@pytest.mark.parametrize("mode", ["log", "raise"])
async def test_guard_catches_an_expired_user_loaded_from_a_worker_thread(hub_session, mode, caplog):
    user = orm.User.find(hub_session, "alice")
    guard = session_guard.install(hub_session, mode)
    try:
        assert await asyncio.to_thread(lambda: user.name) == "alice"  # loaded: no query
        assert guard.violations == []
        hub_session.rollback()  # what every refused spawn did: expires the hub's objects
        with caplog.at_level(logging.ERROR, logger="fedhub.session_guard"):
            if mode == "raise":
                with pytest.raises(session_guard.SessionThreadViolation):
                    await asyncio.to_thread(lambda: user.name)
            else:
                assert await asyncio.to_thread(lambda: user.name) == "alice"
        assert guard.violations[0].startswith("refresh of an expired attribute")
        reports = [r.getMessage() for r in caplog.records if session_guard.MARKER in r.getMessage()]
        assert len(reports) == 1  # one access, one report (however many statements it ran)
        assert "test_session_thread.py" in reports[0]  # with the offending stack
        # on the loop's thread the same read is fine
        seen = len(guard.violations)
        hub_session.rollback()
        assert user.name == "alice"
        assert len(guard.violations) == seen
    finally:
        guard.remove()


async def test_guard_catches_statements_and_flushes_from_a_worker_thread(hub_session):
    guard = session_guard.install(hub_session, "raise")
    try:
        with pytest.raises(session_guard.SessionThreadViolation):
            await asyncio.to_thread(orm.User.find, hub_session, "alice")

        def add_user():
            hub_session.add(orm.User(name="bob"))
            hub_session.flush()

        with pytest.raises(session_guard.SessionThreadViolation):
            await asyncio.to_thread(add_user)
        hub_session.rollback()
        kinds = [v.split(":")[0] for v in guard.violations]
        assert kinds == ["ORM statement", "flush"]
        # installing twice keeps one guard
        assert session_guard.install(hub_session, "raise") is guard
    finally:
        guard.remove()


async def test_strict_mode_catches_a_read_that_no_rollback_preceded(hub_session):
    """``strict`` expires the hub's objects at every commit, so an off-loop read of one is
    caught every time, not only when a rollback happened to come first."""
    user = orm.User.find(hub_session, "alice")
    assert hub_session.expire_on_commit is False  # as JupyterHub makes it
    guard = session_guard.install(hub_session, "strict")
    try:
        hub_session.commit()
        with pytest.raises(session_guard.SessionThreadViolation):
            await asyncio.to_thread(lambda: user.name)
    finally:
        guard.remove()
    assert hub_session.expire_on_commit is False


def test_off_installs_nothing(hub_session):
    assert session_guard.install(hub_session, "off") is None
    assert session_guard.install(None, "raise") is None


def test_mode_comes_from_config_then_environment(monkeypatch):
    monkeypatch.delenv(session_guard.ENV, raising=False)
    assert LocalTenantAuthenticator().check_session_thread == session_guard.DEFAULT_MODE
    monkeypatch.setenv(session_guard.ENV, "raise")
    assert LocalTenantAuthenticator().check_session_thread == "raise"
    c = Config()
    c.TenantAuthenticatorMixin.check_session_thread = "off"
    assert LocalTenantAuthenticator(config=c).check_session_thread == "off"


async def test_a_refused_spawn_leaves_the_hubs_objects_loaded(migrated_db, monkeypatch):
    """A refusal writes nothing, so it must not roll back the hub's session: a rollback
    expires every hub object, and the next read of one (from any thread) reloads it."""
    from functools import partial
    from types import SimpleNamespace

    from fedhub import db as fedhub_db
    from fedhub import quotas
    from fedhub.extensions.hub.tenant_auth import shared_session

    hub_db = orm.new_session_factory(migrated_db)()
    hub_db.add(orm.User(name="alice"))
    hub_db.commit()
    factory = partial(shared_session, SimpleNamespace(db=hub_db))
    monkeypatch.setitem(fedhub_db._shared_sessions, migrated_db, factory)
    store = TenantStore(migrated_db)
    store.create_tenant("full", tier="starter", overrides={"max_servers_per_tenant": 0})
    user = orm.User.find(hub_db, "alice")
    try:
        with pytest.raises(quotas.TenantServerLimit):
            quotas.reserve(
                migrated_db,
                tenant="full",
                username="alice",
                server_name="",
                profile=None,
                catalog=store.tiers,
            )
        assert "name" in user.__dict__  # still loaded: no rollback expired it
        assert quotas.reservations(migrated_db, "full") == []
    finally:
        hub_db.close()


async def test_meter_flushes_in_threads_never_take_a_shared_session(
    migrated_db, tmp_path, monkeypatch
):
    """The API-call flush and the storage sampler run in worker threads: even in a process
    that shares a session for their URL (the hub), they use sessions of their own."""
    from collections import Counter

    from fedhub import db as fedhub_db
    from fedhub import metering
    from fedhub.billing import samplers
    from fedhub.db.base import utcnow

    def shared():
        raise AssertionError("a worker thread asked for the process's shared session")

    monkeypatch.setitem(fedhub_db._shared_sessions, migrated_db, shared)
    store = TenantStore(fedhub_db.get_engine(migrated_db))
    store.create_tenant("acme", tier="starter")
    store.add_user("alice", tenant="acme")
    (tmp_path / "homes" / "alice").mkdir(parents=True)
    (tmp_path / "homes" / "alice" / "data.bin").write_bytes(b"x" * 1000)
    monkeypatch.setattr(metering, "_calls", Counter())
    monkeypatch.setattr(metering, "_start_flusher", lambda: None)
    metering.count_api_call("billing", "acme", "alice")
    assert await asyncio.to_thread(metering.flush_api_calls, migrated_db) == 1
    assert (
        await asyncio.to_thread(
            samplers.sample_storage, migrated_db, str(tmp_path / "homes" / "{username}"), utcnow()
        )
        == 1
    )


# -- a real hub ---------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_spawns_logins_and_stops_keep_the_session_on_the_loop(hub_factory):
    """Spawns up to and past the limit, logins, the spawn page, stops by the user and by
    the reconciler, with the guard strict: no report, no 5xx."""
    hub = hub_factory(
        args=[
            "--JupyterHub.allow_named_servers=True",
            "--TierSpawner.reconcile_interval=0.5",  # metering runs during the test
            "--TierSpawner.budget_grace_period=0",
            "--TierSpawner.storage_cache_seconds=0",  # storage measured at every spawn
            *FAST_SERVER_ARGS,
        ],
        env=GUARD_ENV,
    )
    assert "Checking that the hub's database session stays on thread" in hub.log()
    store = TenantStore(hub.db_url)
    limits = {"max_servers_per_tenant": 2, "max_servers_per_user": 10}
    store.update_tenant("acme", overrides=limits)
    alice = hub.token("alice")
    try:
        race_round(hub, "alice", alice, n=2, limit=2, tag="up-to")
        stop_all(hub, "alice", alice, "acme")
        for round_ in range(3):
            race_round(hub, "alice", alice, n=8, limit=2, tag=f"past{round_}")
            # while two run: a login, the spawn page with the tier's form, a refusal there
            login = hub.login("dave")
            assert login.status_code == 302
            s = login.session
            page = s.get(f"{hub.url}/hub/spawn/dave/extra", timeout=30)
            assert page.status_code == 200 and 'name="profile"' in page.text
            r = s.post(
                f"{hub.url}/hub/spawn/dave/extra",
                data={"profile": "small", "_xsrf": s.cookies.get("_xsrf")},
                timeout=30,
            )
            assert r.status_code == 429 and "running 2 of the 2 servers" in r.text
            stop_all(hub, "alice", alice, "acme")
        # and stops by the reconciler: the month's compute budget is used up
        race_round(hub, "alice", alice, n=8, limit=2, tag="budget")
        store.update_tenant("acme", overrides={**limits, "compute_hours_per_month": 1e-6})
        wait_for(lambda: not servers(hub, "alice", alice), 30, what="the reconciler's stops")
        assert "(compute_budget_exhausted:" in hub.log()
    finally:
        store.update_tenant(
            "acme",
            overrides={
                "max_servers_per_tenant": None,
                "max_servers_per_user": None,
                "compute_hours_per_month": None,
            },
        )
        stop_all(hub, "alice", alice, "acme")
    assert not guard_report(hub), guard_report(hub)
