"""Row-level security on PostgreSQL: a tenant's transaction sees and writes only its rows.

One throwaway database, migrated to the newest revision (0016_rls included), holds a row
of every tenant-owned table for two tenants, written as platform work. Then, through
fedhub's own engine and its per-transaction scope (:mod:`fedhub.db.rls`):

- acme's scope reads only acme's rows, on every table;
- a scope that names no tenant (a service that forgot to say) reads none, and so does a
  session that switched to ``fedhub_tenant`` without setting ``fedhub.tenant`` at all;
- the platform scope reads both tenants' rows;
- acme's scope may not insert a row for globex (the policies' ``WITH CHECK``);
- every table of the metadata that names a tenant, or hangs off a table that does, has
  the policies, so a new table without them fails here.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    insert,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from fedhub import db
from fedhub.db import rls
from fedhub.tenancy.store import TenantStore

pytestmark = pytest.mark.postgres

TENANTS = ("acme", "globex")


def _load_models():
    # every module that declares fedhub tables, so Base.metadata is complete
    import fedhub.approvals.models
    import fedhub.audit.models
    import fedhub.billing.models
    import fedhub.marketplace.models
    import fedhub.metering
    import fedhub.quotas
    import fedhub.ratelimit
    import fedhub.scheduler.models
    import fedhub.services.experiments.federations.models
    import fedhub.services.experiments.models
    import fedhub.tenancy.branding
    import fedhub.tenancy.models
    import fedhub.tenancy.onboarding
    import fedhub.tenancy.plans
    import fedhub.tenancy.sessions
    import fedhub.tenancy.teams  # noqa: F401

    return db.Base.metadata


def tenant_owned(metadata) -> set[str]:
    """Tables that name a tenant, and tables that hang off one of those (to a fixpoint)."""
    owned = {
        t.name for t in metadata.tables.values() if {"tenant", "tenant_id"} & set(t.columns.keys())
    }
    while True:
        more = {
            t.name
            for t in metadata.tables.values()
            if t.name not in owned
            and any(fk.column.table.name in owned for fk in t.foreign_keys)
            and t.name not in rls.PLATFORM_TABLES
        }
        if not more:
            return owned
        owned |= more


def _value(column, tenant: str, ids: dict):
    """A value for a NOT NULL column: the tenant's own slug/id/parent row, else a dummy."""
    if column.name == "tenant":
        return tenant
    if column.name == "tenant_id":
        return ids[("fedhub_tenants", tenant)]
    for fk in column.foreign_keys:
        return ids[(fk.column.table.name, tenant)]
    kind = column.type
    if type(kind).__name__ == "DecimalText":  # money, stored as text
        return decimal.Decimal("1.00")
    if isinstance(kind, Enum):
        return kind.enums[0] if not kind.enum_class else next(iter(kind.enum_class))
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, DateTime):
        return dt.datetime(2026, 11, 30, 12, 0)
    if isinstance(kind, (Integer, BigInteger)):
        return 1
    if isinstance(kind, (Float, Numeric)):
        return 1.0
    if isinstance(kind, JSON):
        return {}
    if isinstance(kind, LargeBinary):
        return b"x"
    if isinstance(kind, (String, Text)):
        n = getattr(kind, "length", None) or 32
        return f"{tenant}-{uuid.uuid4().hex}"[:n]
    try:
        return kind.python_type()
    except Exception:  # pragma: no cover - a new column type: extend _value
        raise AssertionError(f"no sample value for {column.table.name}.{column.name}") from None


def _sample_row(table, tenant: str, ids: dict) -> dict:
    row = {}
    for column in table.columns:
        required = not column.nullable and column.default is None and column.server_default is None
        autoincrement = column is table.autoincrement_column
        if (
            column.name in ("tenant", "tenant_id")
            or column.foreign_keys
            or (required and not autoincrement)
        ):
            if column.foreign_keys and column.nullable and column.name not in ("tenant_id",):
                parent = next(iter(column.foreign_keys)).column.table.name
                if (parent, tenant) not in ids:
                    continue
            value = _value(column, tenant, ids)
            if isinstance(value, enum.Enum) and not isinstance(column.type, Enum):
                value = value.value
            row[column.name] = value
    return row


def _order(metadata, names: set[str]) -> list:
    return [t for t in metadata.sorted_tables if t.name in names]


@pytest.fixture(scope="module")
def rls_db(postgres):
    metadata = _load_models()
    url = postgres.create_database(f"rls_{uuid.uuid4().hex[:10]}")
    db.upgrade(url)
    engine = db.get_engine(url)
    owned = tenant_owned(metadata)
    ids: dict = {}
    store = TenantStore(url)
    with rls.platform():
        for slug in TENANTS:
            ids[("fedhub_tenants", slug)] = store.create_tenant(slug).id
    with rls.platform(), engine.begin() as conn:
        for table in _order(metadata, owned | {"fedhub_local_credentials"}):
            if table.name == "fedhub_tenants":
                continue
            for slug in TENANTS:
                row = _sample_row(table, slug, ids)
                result = conn.execute(insert(table).values(**row).returning(*table.primary_key))
                ids[(table.name, slug)] = result.first()[0]
    yield url, engine, metadata, owned
    db.dispose_engines()


def _rows(engine, metadata, table_name: str) -> int:
    with engine.begin() as conn:
        return len(conn.execute(select(metadata.tables[table_name])).all())


def test_every_tenant_table_has_the_policies(rls_db):
    url, engine, metadata, owned = rls_db
    assert set(rls.TENANT_TABLES) == owned, "tables that name a tenant must be in TENANT_TABLES"
    with engine.connect() as conn:
        forced = dict(
            conn.execute(
                text(
                    "SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class "
                    "WHERE relname LIKE 'fedhub\\_%' AND relkind = 'r'"
                )
            ).all()
        )
        policies = set(conn.execute(text("SELECT tablename, policyname FROM pg_policies")).all())
    for name in owned:
        assert forced.get(name) is True, f"{name}: row-level security not enabled and forced"
        assert (name, "fedhub_tenant_isolation") in policies, name
        assert (name, "fedhub_platform_access") in policies, name
    for name in set(metadata.tables) - owned:
        assert name in rls.PLATFORM_TABLES, f"{name}: neither tenant-owned nor a platform table"


def _tenants_seen(engine, metadata, table_name: str) -> list:
    """The tenant of each visible row (the table's own column, or None for child tables)."""
    table = metadata.tables[table_name]
    column = table.c.get("tenant", table.c.get("tenant_id"))
    with engine.begin() as conn:
        if column is None:
            return [None] * len(conn.execute(select(table)).all())
        return list(conn.execute(select(column)).scalars())


def test_a_tenant_sees_only_its_own_rows(rls_db):
    url, engine, metadata, owned = rls_db
    own = {"acme": "acme", "globex": "globex"}
    with rls.platform(), engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT id, slug FROM fedhub_tenants")).all())
    for name in sorted(owned):
        seen = {}
        for slug in TENANTS:
            with rls.tenant(slug):
                seen[slug] = _tenants_seen(engine, metadata, name)
            assert seen[slug], f"{name}: {slug} sees none of its own rows"
            for t in seen[slug]:
                assert t is None or own.get(ids.get(t, t)) == slug, (name, slug, t)
        with rls.platform():
            everything = _tenants_seen(engine, metadata, name)
        assert len(everything) == len(seen["acme"]) + len(seen["globex"]), name


def test_a_tenant_not_named_sees_nothing(rls_db):
    url, engine, metadata, owned = rls_db
    for name in sorted(owned):
        with rls.tenant("initech"):  # a tenant with no rows, or a wrong setting
            assert _rows(engine, metadata, name) == 0, name
    rls.enforce(True)  # what every service does: an unscoped transaction fails closed
    try:
        for name in sorted(owned):
            assert _rows(engine, metadata, name) == 0, name
    finally:
        rls.enforce(False)
    # without fedhub's listener at all: the role, and no fedhub.tenant setting
    with engine.connect() as conn:
        conn.exec_driver_sql("SET ROLE fedhub_tenant")
        for name in sorted(owned):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar() == 0, name
        conn.rollback()
        conn.exec_driver_sql("RESET ROLE")


def test_a_tenant_cannot_write_another_tenants_rows(rls_db):
    url, engine, metadata, owned = rls_db
    invoices = metadata.tables["fedhub_billing_invoices"]
    with rls.platform(), engine.connect() as conn:
        globex_row = conn.execute(select(invoices).where(invoices.c.tenant == "globex")).first()
    row = {k: v for k, v in globex_row._mapping.items() if k != "id"}
    row["number"] = f"X-{uuid.uuid4().hex[:8]}"
    with rls.tenant("acme"), pytest.raises(DBAPIError, match="row-level security"):
        with engine.begin() as conn:
            conn.execute(insert(invoices).values(**row))
    with rls.tenant("acme"), engine.begin() as conn:
        updated = conn.execute(
            invoices.update().where(invoices.c.tenant == "globex").values(status="void")
        ).rowcount
        assert updated == 0  # another tenant's rows are not there to update
        deleted = conn.execute(invoices.delete().where(invoices.c.tenant == "globex")).rowcount
        assert deleted == 0
    with rls.platform():
        assert _rows(engine, metadata, "fedhub_billing_invoices") == 2


def test_the_platform_policy_admits_members_of_fedhub_platform(rls_db):
    """Where fedhub_platform could not be made BYPASSRLS (no superuser at migration time),
    its members still see every row, through ``fedhub_platform_access``; a role that is
    a member of neither role sees none."""
    url, engine, metadata, owned = rls_db
    with rls.platform():
        expected = {name: _rows(engine, metadata, name) for name in owned}
    with engine.connect() as conn:  # all rolled back, the roles included
        conn.exec_driver_sql("CREATE ROLE fedhub_rls_probe NOLOGIN")
        conn.exec_driver_sql("GRANT fedhub_platform TO fedhub_rls_probe")
        conn.exec_driver_sql("CREATE ROLE fedhub_rls_stranger NOLOGIN")
        conn.exec_driver_sql("GRANT fedhub_tenant TO fedhub_rls_stranger")
        conn.exec_driver_sql("SET LOCAL ROLE fedhub_rls_probe")
        assert not conn.exec_driver_sql(
            "SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).scalar()
        for name in sorted(owned):
            seen = conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar()
            assert seen == expected[name], name
        conn.exec_driver_sql("SET LOCAL ROLE fedhub_rls_stranger")
        for name in sorted(owned):
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar() == 0, name
        conn.rollback()


def test_the_migration_downgrades_and_upgrades_again(postgres):
    from alembic import command

    url = postgres.create_database(f"rls_{uuid.uuid4().hex[:10]}")
    db.upgrade(url)
    engine = db.get_engine(url)

    def policies():
        with engine.connect() as conn:
            sql = "SELECT count(*) FROM pg_policies WHERE policyname LIKE 'fedhub%%'"
            return conn.exec_driver_sql(sql).scalar()

    try:
        assert policies() == 2 * len(rls.TENANT_TABLES)
        command.downgrade(db.alembic_config(url), "rls@base")
        assert policies() == 0
        db.upgrade(url)  # the roles exist already: made once per cluster
        assert policies() == 2 * len(rls.TENANT_TABLES)
    finally:
        db.dispose_engines()
