"""The ``fedhub`` command: start the platform and manage tenants, users and tiers.

Every error a user can cause is printed as one line on stderr with a non-zero
exit status; tracebacks are for bugs only.
"""

from __future__ import annotations

import sys

import click

from fedhub.errors import FedhubError


class FedhubGroup(click.Group):
    """A click group that turns fedhub's typed errors into one clear line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FedhubError as e:
            click.echo(f"Error: {e.message}", err=True)
            sys.exit(2 if e.status == 500 else 1)


@click.group(cls=FedhubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db-url",
    envvar="FEDHUB_DB_URL",
    default=None,
    help="Database URL (default: $FEDHUB_DB_URL, else <state-dir>/jupyterhub.sqlite).",
)
@click.option(
    "--state-dir",
    envvar="FEDHUB_STATE_DIR",
    default=".fedhub",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the embedded deployment keeps its data.",
)
@click.option(
    "--config-file",
    envvar="FEDHUB_CONFIG_FILE",
    default=None,
    type=click.Path(dir_okay=False),
    help="The fedhub configuration file (default: $FEDHUB_CONFIG_FILE, else "
    "<state-dir>/fedhub_config.py if it exists).",
)
@click.version_option(package_name="fedhub")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, state_dir: str, config_file: str | None) -> None:
    """fedhub: many organisations' data science on one JupyterHub."""
    ctx.ensure_object(dict)
    ctx.obj["db_url"] = db_url
    ctx.obj["state_dir"] = state_dir
    ctx.obj["config_file"] = config_file
    # every command uses the tiers file the configuration file names (c.Fedhub.tiers_file)
    from fedhub import config, tiers

    path = config_file or config.default_config_file(state_dir)
    if path:
        tiers.use_tiers_file(config.Fedhub(config=config.load_config_file(path)).tiers_file)


def _register() -> None:
    """Add every ``fedhub/cli/<name>.py`` that defines ``command`` as a sub-command."""
    import importlib
    import pkgutil

    import fedhub.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"fedhub.cli.{info.name}")
        if isinstance(getattr(module, "command", None), click.Command):
            main.add_command(module.command)


_register()
