"""Tier templates (issue 13, seed 004): export, import, clone, diff, history, apply.

The CLI runs in-process through click's CliRunner (one call through the installed
``fedhub`` script checks the exit status and stderr a shell sees) against a SQLite
database made with fedhub's migrations; the catalog is then read back through
:func:`fedhub.tiers.load_tiers`, the loader the hub, the spawner and the services use.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import text
from traitlets.config import Config

from fedhub import db as fedhub_db
from fedhub.cli import main
from fedhub.cli.common import ACTOR
from fedhub.config import Fedhub
from fedhub.errors import ConfigError
from fedhub.tenancy.store import TenantStore
from fedhub.tiers import load_tiers, load_tiers_file
from fedhub.tiers import store as tier_store

FEDHUB = Path(sys.executable).parent / "fedhub"


@pytest.fixture
def hub_db(tmp_path):
    """A state dir whose database is migrated (as ``fedhub up`` leaves it)."""
    url = fedhub_db.sqlite_url(tmp_path)
    fedhub_db.upgrade(url)
    yield tmp_path, url
    fedhub_db.dispose_engines()


def run(state: Path, *args: str, ok: bool = True):
    result = CliRunner().invoke(
        main,
        ["--state-dir", str(state), "tiers", *args],
        env={"FEDHUB_EVENTS_SPOOL": str(state / "spool"), "FEDHUB_STATE_DIR": None},
    )
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def body(text: str) -> str:
    """A template without its header comment."""
    return "".join(line for line in text.splitlines(True) if not line.startswith("#"))


def spooled(state: Path) -> list[dict]:
    lines = [
        ln for f in sorted((state / "spool").glob("*.jsonl")) for ln in f.read_text().split("\n")
    ]
    return [json.loads(ln) for ln in lines if ln]


def import_gold(state: Path, max_users: int = 12) -> Path:
    """starter, exported, edited into 'gold' and imported; returns the edited file."""
    run(state, "export", "starter", "-o", str(state / "starter.yaml"))
    text = (state / "starter.yaml").read_text()
    assert "  starter:\n" in text and "max_users: 10\n" in text
    edited = (
        text.replace("  starter:\n", "  gold:\n")
        .replace("max_users: 10\n", f"max_users: {max_users}\n")
        .replace("display_name: Starter\n", "display_name: Gold\n")
        .replace("    - medium\n", "    - medium\n    - large\n")
    )
    gold = state / "gold.yaml"
    gold.write_text(edited)
    out = run(state, "import", str(gold)).output
    assert "Imported tier 'gold' version 1" in out and "applies now" in out
    return gold


def test_export_edit_import_round_trips(hub_db):
    state, url = hub_db
    exported = run(state, "export", "starter").output
    assert exported.startswith("# fedhub tier template: tier 'starter' from ")
    # the full resolved tier: keys tiers.yaml leaves to their defaults are written out
    starter = yaml.safe_load(exported)["tiers"]["starter"]
    assert starter["discount_percent"] == 0.0 and starter["features"]["analyst_audit_read"] is False
    assert starter == load_tiers_file().get("starter").model_dump(mode="json")

    gold_file = import_gold(state)
    again = run(state, "export", "gold").output
    assert "from the database, version 1" in again.splitlines()[0]
    assert body(again) == body(gold_file.read_text())  # byte for byte, below the header
    gold = load_tiers(db=url).get("gold")
    assert (gold.max_users, gold.display_name, gold.profiles) == (
        12,
        "Gold",
        ["small", "medium", "large"],
    )
    # a second import of the same file is a new version, never an overwrite
    assert "version 2" in run(state, "import", str(gold_file), "--as", "gold").output


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            ("max_servers_per_tenant: 5\n", "max_servers_per_tenant: -1\n"),
            "tier 'gold', key 'max_servers_per_tenant': Input should be greater than or equal to 0",
        ),
        (("max_users: 10\n", "max_userz: 10\n"), "tier 'gold', key 'max_userz': unknown key"),
        (
            ("min_length: 10\n", "min_length: 4\n"),
            "tier 'gold', key 'security.password.min_length': Input should be greater than",
        ),
        (("    - medium\n", "    - huge\n"), "tier 'gold', key 'profiles': unknown profile 'huge'"),
        (("storage_gb: 5.0\n", "storage_gb: [5\n"), "invalid YAML"),
    ],
    ids=["negative", "unknown-key", "nested", "profile", "yaml"],
)
def test_a_bad_file_is_refused_naming_file_tier_and_key(hub_db, edit, message):
    state, url = hub_db
    run(state, "export", "starter", "-o", str(state / "starter.yaml"))
    text = (state / "starter.yaml").read_text().replace("  starter:\n", "  gold:\n")
    assert edit[0] in text
    bad = state / "tiers-bad.yaml"
    bad.write_text(text.replace(edit[0], edit[1]))
    result = run(state, "import", str(bad), ok=False)
    assert result.output.startswith(f"Error: {bad}:"), result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert "gold" not in load_tiers(db=url)
    assert "no tier 'gold' is stored" in run(state, "history", "gold").output


def test_the_installed_command_exits_non_zero_with_one_line(hub_db, tmp_path):
    state, _url = hub_db
    bad = tmp_path / "tiers-bad.yaml"
    bad.write_text("tiers:\n  gold:\n    display_name: Gold\n    max_users: -3\n")
    proc = subprocess.run(
        [str(FEDHUB), "--state-dir", str(state), "tiers", "import", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "FEDHUB_EVENTS_SPOOL": str(state / "spool")},
    )
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"Error: {bad}: tier 'gold', key 'monthly_price': Field required")
    assert "key 'max_users': Input should be greater than or equal to 0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""


def test_file_defined_names_are_refused(hub_db):
    state, url = hub_db
    run(state, "export", "starter", "-o", str(state / "starter.yaml"))
    for args in (
        ["import", str(state / "starter.yaml")],
        ["import", str(state / "starter.yaml"), "--as", "free"],
        ["clone", "free", "enterprise", "--set", "max_users=5"],
    ):
        out = run(state, *args, ok=False).output
        assert "is defined in " in out and "tiers.yaml, which wins over the database" in out
    assert load_tiers(db=url).as_dict == load_tiers_file().as_dict
    assert "is defined in" in run(state, "history", "starter").output


def test_clone_with_set_validates_the_result(hub_db):
    state, url = hub_db
    out = run(
        state,
        "clone",
        "starter",
        "silver",
        "--set",
        "max_users=25",
        "--set",
        "security.password.min_length=14",
        "--set",
        "profiles=[small, large]",
        "--set",
        "api_calls_per_hour=",  # no hourly cap
        "--set",
        "display_name=Silver",
    ).output
    assert "Cloned tier 'silver' version 1" in out
    silver, starter = load_tiers(db=url).get("silver"), load_tiers_file().get("starter")
    assert (silver.max_users, silver.profiles, silver.api_calls_per_hour) == (
        25,
        ["small", "large"],
        None,
    )
    assert silver.security.password.min_length == 14
    assert silver.security.password.character_classes == starter.security.password.character_classes
    assert silver.monthly_price == starter.monthly_price

    for setting, message in [
        (
            "max_users=-3",
            "tier 'bronze', key 'max_users': Input should be greater than or equal to 0",
        ),
        ("max_users=lots", "tier 'bronze', key 'max_users': Input should be a valid integer"),
        ("security.password.min_length=4", "key 'security.password.min_length'"),
        ("nosuch.key=1", "tier 'bronze', key 'nosuch': unknown key"),
        ("profiles=[small, huge]", "tier 'bronze', key 'profiles': unknown profile 'huge'"),
        ("max_users", "must look like key=value"),
    ]:
        result = run(state, "clone", "starter", "bronze", "--set", setting, ok=False)
        assert message in result.output, (setting, result.output)
    assert "bronze" not in load_tiers(db=url)


def test_versions_are_kept_applied_explicitly_and_audited(hub_db):
    state, url = hub_db
    import_gold(state, max_users=12)
    # a tenant on gold, through the same store the hub and the CLI use
    store = TenantStore(url)
    store.create_tenant("acme", tier="gold")
    out = run(state, "clone", "gold", "gold", "--set", "max_users=13").output
    assert "version 2" in out and "keep the version that applies" in out
    # a new version waits: every loader still serves version 1
    catalog = load_tiers(db=url)
    assert catalog.get("gold").max_users == 12 and catalog.versions == {"gold": 1}
    assert TenantStore(url).effective_tier(TenantStore(url).get_tenant("acme")).max_users == 12

    history = json.loads(run(state, "history", "gold", "--json").output)["versions"]
    assert [(v["version"], v["applies"], v["action"]) for v in history] == [
        (1, True, "imported"),
        (2, False, "cloned"),
    ]
    assert (
        history[1]["source"] == "gold (the database, version 1)"
        and history[0]["created_by"] == ACTOR
    )

    assert "version 2 applies" in run(state, "apply", "gold").output
    assert load_tiers(db=url).get("gold").max_users == 13
    run(state, "apply", "gold", "--version", "1")  # back to an earlier version
    assert load_tiers(db=url).get("gold").max_users == 12
    assert (
        "version 7 of tier 'gold' is not stored"
        in run(state, "apply", "gold", "--version", "7", ok=False).output
    )
    text = run(state, "history", "gold").output
    assert text.splitlines()[2].startswith("1 *") and text.splitlines()[3].startswith("2 ")

    events = [e for e in spooled(state) if e["action"].startswith("tier.")]
    assert [(e["action"], e["target"], e["tenant"]) for e in events] == [
        ("tier.imported", "gold@1", None),
        ("tier.cloned", "gold@2", None),
        ("tier.applied", "gold@2", None),
        ("tier.applied", "gold@1", None),
    ]
    assert events[0]["details"]["sha256"] == history[0]["sha256"] and events[0]["actor"] == ACTOR
    assert events[3]["details"]["previous"] == 2


def test_diff_prints_a_key_by_key_table_and_json(hub_db):
    state, _url = hub_db
    import_gold(state)
    run(state, "clone", "gold", "gold", "--set", "max_users=13", "--set", "features.gpu=true")
    lines = run(state, "diff", "starter", "gold").output.splitlines()
    assert lines[0].split() == ["KEY", "starter", "gold"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line and " of " not in line}
    assert rows == {
        "display_name": ["Starter", "Gold"],
        "max_users": ["10", "12"],
        "profiles": ["small,medium", "small,medium,large"],
    }
    from fedhub import limits  # one registry entry per key of a tier

    assert lines[-1] == f"3 of {len(limits.BY_KEY)} keys differ"
    data = json.loads(run(state, "diff", "gold@1", "gold@2", "--json").output)
    assert data["differences"] == [
        {"key": "max_users", "a": 12, "b": 13},
        {"key": "features.gpu", "a": False, "b": True},
    ]
    assert "are the same" in run(state, "diff", "gold", "gold@1").output
    assert "unknown tier 'platinum'" in run(state, "diff", "gold", "platinum", ok=False).output
    assert "no such stored version" in run(state, "diff", "gold", "gold@9", ok=False).output


def test_the_hubs_loader_sees_imported_tiers(hub_db, monkeypatch):
    state, url = hub_db
    # no tier rows: exactly the file's catalog (the rest of the suite depends on it)
    monkeypatch.setenv("FEDHUB_DB_URL", url)
    at_start = Fedhub(config=Config()).apply()
    assert at_start.as_dict == load_tiers_file().as_dict
    import_gold(state)
    # another process (the hub) read the database just before the import: its cache is
    # fresh and empty, yet its catalog finds the new name at once (a tenant just made on it)
    monkeypatch.setitem(tier_store._stored_cache, url, (time.monotonic(), {}))
    assert "gold" not in at_start
    assert at_start.get("gold").max_users == 12
    # what the hub's authenticator and every service call at start (c.Fedhub.tiers_file)
    catalog = Fedhub(config=Config()).apply()
    assert catalog.names()[:4] == ["free", "starter", "professional", "enterprise"]
    assert (
        catalog.get("gold").max_users == 12 and catalog.origin("gold") == "the database, version 1"
    )
    shown = json.loads(run(state, "show", "--json").output)["tiers"]  # what the hub sees
    assert list(shown)[4:] == ["gold"] and shown["gold"]["max_users"] == 12
    tenant = TenantStore(url, catalog).create_tenant("globex", tier="gold")
    assert tenant.tier == "gold"
    # a process told of no database reads the file alone
    monkeypatch.delenv("FEDHUB_DB_URL")
    monkeypatch.delenv("FEDHUB_STATE_DIR", raising=False)
    assert "gold" not in load_tiers()


def test_a_stored_tier_the_file_no_longer_allows_stops_the_loader(hub_db, tmp_path):
    state, url = hub_db
    import_gold(state)  # gold offers the 'large' profile
    base = yaml.safe_load(Path(load_tiers_file().source).read_text())
    del base["profiles"]["large"]
    for tier in base["tiers"].values():
        tier["profiles"] = [p for p in tier["profiles"] if p != "large"]
    smaller = tmp_path / "tiers-small.yaml"
    smaller.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigError) as e:
        load_tiers(smaller, db=url)
    assert (
        "fedhub_tier_versions (version 1): tier 'gold', key 'profiles': unknown profile 'large'"
        in str(e.value)
    )


@pytest.mark.postgres
def test_a_services_unscoped_and_tenant_transactions_read_stored_tiers(migrated_db, monkeypatch):
    """On PostgreSQL a hub service's unscoped transaction runs as fedhub_tenant (fail
    closed): the tier tables are granted to it, so every process sees the same catalog."""
    from fedhub.db import rls
    from fedhub.tiers import TierCatalog
    from fedhub.tiers.store import forget_stored_tiers, store_tier_version

    url = migrated_db
    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", "")
    file_catalog: TierCatalog = load_tiers_file()
    gold = file_catalog.get("starter").model_copy(update={"max_users": 12})
    store_tier_version(url, file_catalog, "gold", gold, action="imported", source="t", actor="t")
    monkeypatch.setattr(rls, "_enforced", True)
    for scope in (rls.platform(), rls.tenant("acme")):
        forget_stored_tiers()
        with scope:
            assert load_tiers(db=url).get("gold").max_users == 12
    forget_stored_tiers()
    assert load_tiers(db=url).versions == {"gold": 1}  # unscoped, as fedhub_tenant


def test_a_catalog_loaded_at_start_follows_imports_and_applies(hub_db, monkeypatch, caplog):
    """The hub and the services load their catalog once; the database's part is re-read
    when older than STORED_TIERS_TTL (0 here: every access), so a running hub spawns for
    a tenant on a tier imported after it started, and sees a version applied later."""
    state, url = hub_db
    ttl = tier_store.STORED_TIERS_TTL
    monkeypatch.setattr(tier_store, "STORED_TIERS_TTL", ttl)  # restored after
    monkeypatch.setenv("FEDHUB_DB_URL", url)
    running = Fedhub(config=Config({"Fedhub": {"stored_tiers_ttl": 0}})).apply()
    assert tier_store.STORED_TIERS_TTL == 0
    assert "gold" not in running
    import_gold(state)
    assert running.get("gold").max_users == 12
    run(state, "clone", "gold", "gold", "--set", "max_users=13")
    assert running.get("gold").max_users == 12  # stored, not applied
    run(state, "apply", "gold", "--version", "2")
    assert running.get("gold").max_users == 13 and running.versions == {"gold": 2}
    # a stored version that no longer validates (written behind the CLI's back) is logged;
    # the running catalog keeps what it had, a fresh load refuses to start
    with fedhub_db.get_engine(url).begin() as conn:
        conn.exec_driver_sql(
            "UPDATE fedhub_tier_versions SET definition = json_set(definition, '$.max_users', -1)"
            " WHERE version = 2"
        )
    assert running.get("gold").max_users == 13
    assert "fedhub_tier_versions (version 2): tier 'gold', key 'max_users'" in caplog.text
    with pytest.raises(ConfigError, match="tier 'gold', key 'max_users'"):
        load_tiers(db=url)


def test_a_refresh_inside_a_write_transaction_reads_at_once(hub_db):
    """Services rate usage inside a transaction, and the catalog's refresh happens
    there: it must read without waiting on that transaction's write lock."""
    _, url = hub_db
    catalog = load_tiers(db=url)
    elapsed = []
    with fedhub_db.session_scope(url) as s:
        s.execute(text("UPDATE fedhub_tenants SET name = name"))  # this thread's write lock
        tier_store.forget_stored_tiers(url)
        tic = time.monotonic()
        catalog.get("free")
        elapsed.append(time.monotonic() - tic)
    assert elapsed[0] < 5, f"the refresh waited {elapsed[0]:.1f} s on its own thread's lock"
