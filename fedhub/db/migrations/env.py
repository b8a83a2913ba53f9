"""Alembic environment for fedhub's own tables (never JupyterHub's)."""

from alembic import context

from fedhub.db import VERSION_TABLE, create_db_engine

url = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url")


def include_name(name, type_, parent_names):
    # the hub's tables live in the same database: only look at ours
    if type_ == "table":
        return name.startswith("fedhub_")
    return True


def run_migrations_online() -> None:
    engine = create_db_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            version_table=VERSION_TABLE,
            include_name=include_name,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
