"""``fedhub config show``: the effective configuration of the hub and of every service."""

from __future__ import annotations

import importlib
import json
import os
from importlib.metadata import entry_points
from pathlib import Path

import click
from traitlets.config import Config
from traitlets.utils.importstring import import_item

from fedhub import config as fedhub_config
from fedhub import db as fedhub_db
from fedhub import launcher


@click.group("config")
def command():
    """The fedhub configuration file (fedhub_config.py) and what each part reads from it."""


def _plugin(value, group: str, fallback: str):
    """The class a ``JupyterHub.*_class`` value names (an entry point name or a dotted path)."""
    if isinstance(value, type):
        return value
    value = value or fallback
    found = entry_points(group=group, name=value)
    if found:
        return next(iter(found)).load()
    return import_item(value)


def hub_classes(effective: Config) -> list[type]:
    """The hub-side fedhub classes of this configuration."""
    from fedhub.extensions.hub.keys_api import ServiceAccountKeys
    from fedhub.extensions.hub.tenancy_api.onboarding import Onboarding
    from fedhub.extensions.hub.tier_spawner import TierSpawner
    from fedhub.gateway import GatewaySettings
    from fedhub.mail import Mailer
    from fedhub.ratelimit import RateLimits
    from fedhub.tenancy.totp import TotpSecretBox

    hub = effective.get("JupyterHub", {})
    classes = [fedhub_config.Fedhub]
    classes.append(
        _plugin(hub.get("authenticator_class"), "jupyterhub.authenticators", "fedhub-local")
    )
    spawner = _plugin(hub.get("spawner_class"), "jupyterhub.spawners", "fedhub-tier")
    classes.append(spawner)
    if issubclass(spawner, TierSpawner):
        backend = effective.get("TierSpawner", {}).get("backend_class")
        if backend:
            classes.append(import_item(backend) if isinstance(backend, str) else backend)
    return [
        *classes,
        Mailer,
        TotpSecretBox,
        ServiceAccountKeys,
        RateLimits,
        GatewaySettings,
        Onboarding,
    ]


def service_classes() -> dict[str, list[type]]:
    """``{service: [its ServiceApp, its Configurable parts]}`` for every managed service."""
    from fedhub.service import ServiceApp

    found = {}
    for name in launcher.service_modules():
        try:
            module = importlib.import_module(f"{name}.app")
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, ServiceApp)
                and value.__module__ == module.__name__
            ):
                parts = [value, *[c for c in value.classes if c is not value]]
                found[name.rsplit(".", 1)[-1]] = parts
    return found


def effective_configuration(obj: dict) -> dict:
    """What ``fedhub up`` with this state dir would give each part, and where from."""
    state_dir = Path(obj["state_dir"]).resolve()
    config_file = launcher.config_file_for(state_dir, obj.get("config_file"))
    file_config = launcher.fedhub_config(config_file)
    url = obj.get("db_url") or fedhub_db.sqlite_url(state_dir)
    # what a service started by this hub would see
    os.environ["FEDHUB_STATE_DIR"] = str(state_dir)
    os.environ["FEDHUB_DB_URL"] = url
    try:
        ctx = launcher.LaunchContext(state_dir=state_dir, db_url=url, port=8000)
        base = launcher.build_config(ctx)
    except Exception:  # e.g. no configurable-http-proxy here: show file, env and defaults
        base = None
    effective = Config()
    effective.merge(base or Config())
    effective.merge(file_config)
    parts = {"hub": fedhub_config.describe(hub_classes(effective), file_config, base)}
    for service, classes in service_classes().items():
        parts[service] = fedhub_config.describe(classes, file_config)
    return {"config_file": config_file or None, "parts": parts}


@command.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def show(ctx, as_json):
    """Every fedhub option of the hub and of each service: value and source.

    The source is `file` (the configuration file), `env` (a fallback environment
    variable), `fedhub up` (the embedded deployment's own value) or `default`.
    Secrets are shown as ***.
    """
    report = effective_configuration(ctx.find_root().obj)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f"configuration file: {report['config_file'] or '(none)'}")
    for part, classes in report["parts"].items():
        click.echo(f"\n[{part}]")
        rows = [
            (f"{cls}.{name}", json.dumps(row["value"], default=str), row["source"])
            for cls, options in classes.items()
            for name, row in options.items()
        ]
        width = max((len(r[0]) for r in rows), default=0)
        for name, value, source in rows:
            click.echo(f"  {name.ljust(width)}  {value}  ({source})")
