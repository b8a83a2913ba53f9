"""Shared fixtures: real hubs, a throwaway PostgreSQL, databases on both engines.

Like JupyterHub's own ``MockHub`` tests, hubs here are real: ``fedhub up`` in a
subprocess with a real configurable-http-proxy on free loopback ports and a
temporary state dir, stopped by PID. Database tests run on SQLite and on a
PostgreSQL 15 cluster made with ``initdb``/``pg_ctl`` for the session (or the
server in ``$FEDHUB_TEST_DATABASE_URL``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs two workers) each worker's hubs make Unix
# accounts of their own (fh0-alice, fh1-alice): a test that deletes alice, and so
# kills her account's processes, must not reach the other worker's alice. Set before
# anything imports fedhub.accounts, which reads it once.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["FEDHUB_ACCOUNT_PREFIX"] = "fh" + os.environ["PYTEST_XDIST_WORKER"][2:] + "-"

from tests.harness import HubProcess, PostgresCluster, free_port  # noqa: E402, F401

DEMO_PASSWORD = "Fedhub-test-password-1"

#: Packages whose tests share one hub (a package- or session-scoped fixture). Under
#: ``--dist loadscope`` a package's modules may go to both workers, and then both start
#: its hub; these packages go to one worker as one unit instead. (Not access and
#: experiments: as two units they run side by side from the start, the two heaviest
#: packages at once, and their hubs' SQLite locks were held past JupyterHub's timeout.)
SHARED_HUB_PACKAGES = ("tests/reports/", "tests/scheduler/")


#: The rough cost of a work unit, in seconds, by which the units are sent longest first: a
#: unit with end-to-end (``slow``) tests starts a hub or more, and each such test mostly
#: waits on it; the other tests are unit tests, mostly well under a second.
UNIT_WITH_HUB_SECONDS, SLOW_TEST_SECONDS, TEST_SECONDS = 20.0, 8.0, 0.3


def _work_unit(nodeid: str) -> str:
    """What ``--dist loadscope`` sends to one worker: a package of ``SHARED_HUB_PACKAGES``,
    else the module (or the class), split as xdist's ``LoadScopeScheduling`` splits it."""
    package = next((p for p in SHARED_HUB_PACKAGES if nodeid.startswith(p)), None)
    return package or nodeid.rsplit("::", 1)[0]


def _estimated_seconds(items: list[pytest.Item]) -> float:
    slow = sum(1 for item in items if item.get_closest_marker("slow"))
    return (
        (UNIT_WITH_HUB_SECONDS if slow else 0.0)
        + slow * SLOW_TEST_SECONDS
        + (len(items) - slow) * TEST_SECONDS
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadscope``, collect the work units longest first.

    The scheduler below hands the units out in collection order. xdist's own order (most
    tests first) left the one-test end-to-end modules, a minute each, for the very end,
    where one worker ran them while the other had nothing left; longest first, the short
    unit-test modules fill the end instead. Only the order changes: every test still runs,
    each unit on one worker, its tests in their own order.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ or config.getvalue("dist") != "loadscope":
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(_work_unit(item.nodeid), []).append(item)
    ordered = sorted(units.values(), key=_estimated_seconds, reverse=True)  # stable: ties keep
    items[:] = [item for unit in ordered for item in unit]


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # the units go out in the order the workers collected them (longest first, above),
    # not re-sorted by their number of tests
    config.option.loadscopereorder = False

    class SharedHubScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return SharedHubScheduling(config, log)


SESSION_GUARD_MARK = "FEDHUB-SESSION-THREAD-VIOLATION"


@pytest.fixture(autouse=True)
def _fedhub_environment_restored():
    """The CLI run in-process (click's CliRunner) sets ``FEDHUB_*`` defaults in
    ``os.environ``; undo them after each test, or every hub started later inherits
    another test's state dir or key file."""
    before = {k: v for k, v in os.environ.items() if k.startswith("FEDHUB_")}
    yield
    for key in [k for k in os.environ if k.startswith("FEDHUB_") and k not in before]:
        del os.environ[key]
    os.environ.update(before)


@pytest.fixture(scope="session")
def postgres():
    """The base URL of a PostgreSQL server for this test session."""
    url = os.environ.get("FEDHUB_TEST_DATABASE_URL")
    if url:
        yield PostgresCluster.external(url)
        return
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fedhub.sqlite'}"
    else:
        cluster = request.getfixturevalue("postgres")
        yield cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def migrated_db(db_url):
    from fedhub import db

    db.upgrade(db_url)
    yield db_url
    db.dispose_engines()


@pytest.fixture(scope="session")
def hub_state_root():
    """Where hubs keep their state: a folder other accounts may traverse (0711).

    pytest's own temporary folders are 0700 root; user servers run as their own
    Unix accounts and must reach their homes under ``<state>/homes``.
    """
    root = Path(tempfile.mkdtemp(prefix="fedhub-tests-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_factory(hub_state_root):
    """Start real hubs: ``hub_factory(db_url=None, args=[...], env={...}, keep=False)``.

    A hub is stopped when the test module that started it ends (each idle hub still
    runs its proxy, services, mirror and reconciler), unless ``keep=True``: the hubs of
    package- and session-scoped fixtures, shared beyond one module.
    """
    started: list[HubProcess] = []

    def start(
        db_url: str | None = None, args=(), env=None, demo: bool = True, keep: bool = False
    ) -> HubProcess:
        state = Path(tempfile.mkdtemp(prefix="hub-", dir=hub_state_root))
        hub = HubProcess(
            state, db_url=db_url, args=list(args), env=env or {}, demo=demo, password=DEMO_PASSWORD
        )
        hub.keep = keep
        started.append(hub)
        hub.start()
        return hub

    start.started = started
    yield start
    for hub in started:
        hub.stop()
    # every hub of the suite ran with the session guard logging (route 9 of issue 10):
    # fedhub code must never touch the hub's database session off the event loop
    offenders = [str(h.log_path) for h in started if SESSION_GUARD_MARK in h.log()]
    if offenders:
        pytest.fail(f"hub database session used off the event loop; see {offenders}")


@pytest.fixture(scope="module", autouse=True)
def _module_hubs_stopped(hub_factory):
    """Stop the hubs a module started once the module (and its fixtures) is done.

    Autouse, so it is set up before the module's own fixtures and torn down after them.
    """
    first = len(hub_factory.started)
    yield
    for hub in hub_factory.started[first:]:
        if not hub.keep:
            hub.stop()


@pytest.fixture(scope="session")
def hub(hub_factory):
    """One demo hub on SQLite shared by the tests that only read or tidy up after themselves."""
    return hub_factory(keep=True)
