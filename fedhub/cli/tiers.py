"""``fedhub tiers show|limits|validate``."""

from __future__ import annotations

import click
import yaml

from fedhub import limits
from fedhub.cli.common import output, table
from fedhub.tiers import load_tiers


@click.group("tiers")
def command():
    """Inspect and validate tiers.yaml."""


@command.command("show")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option("--full", is_flag=True, help="Every key of every tier, as YAML.")
def show(path, as_json, full):
    """Show the tiers (default file: $FEDHUB_TIERS or hub_config/tiers.yaml)."""
    catalog = load_tiers(path)
    if full or as_json:
        output(catalog.as_dict, as_json, yaml.safe_dump(catalog.as_dict, sort_keys=False).rstrip())
        return
    rows = []
    for name in catalog.names():
        t = catalog.get(name)
        rows.append(
            [
                name,
                f"${t.monthly_price:g}",
                t.max_users,
                f"{t.max_servers_per_tenant}/{t.max_servers_per_user}",
                ",".join(t.profiles),
                f"{t.compute_hours_per_month:g}",
                f"{t.storage_gb:g}",
                t.api_calls_per_day,
                t.experiments_per_month,
                t.max_clients_per_experiment,
            ]
        )
    click.echo(
        table(
            rows,
            [
                "TIER",
                "PRICE",
                "USERS",
                "SERVERS t/u",
                "PROFILES",
                "CORE-H/MO",
                "STORAGE GB",
                "API/DAY",
                "EXP/MO",
                "FL CLIENTS",
            ],
        )
    )


@command.command("limits")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def limits_table(path, as_json):
    """Every tier key from the limits registry: unit, window, meter, where it is enforced,
    and each tier's value (one column per tier). Keys not enforced yet are marked."""
    catalog = load_tiers(path)
    names = catalog.names()
    data = []
    rows = []
    for lim in limits.LIMITS:
        if lim.role == limits.LABEL:
            continue
        values = {n: lim.value(catalog.get(n)) for n in names}
        data.append(
            {
                "key": lim.key,
                "role": lim.role,
                "unit": lim.unit,
                "window": lim.window,
                "meter_kind": lim.kind,
                "enforced_at": list(lim.enforced_at),
                "enforced": lim.enforced,
                "gap": lim.gap or None,
                "price_line": lim.price,
                "values": values,
            }
        )
        where = ",".join(lim.enforced_at) or "-"
        rows.append(
            [
                lim.key,
                lim.unit or "-",
                lim.window or "-",
                where if lim.enforced else f"{where} (NOT ENFORCED)",
                *(_cell(values[n]) for n in names),
            ]
        )
    text = table(rows, ["KEY", "UNIT", "WINDOW", "ENFORCED AT", *(n.upper() for n in names)])
    gaps = limits.gaps()
    if gaps:
        text += "\n\nNot enforced:\n" + "\n".join(f"  {k}: {why}" for k, why in gaps.items())
    output({"limits": data}, as_json, text)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@command.command("validate")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def validate(path):
    """Check a tiers file; exits non-zero naming the file, tier and key of a problem."""
    catalog = load_tiers(path)
    click.echo(
        f"{catalog.source}: {len(catalog.tiers)} tiers, {len(catalog.profiles)} profiles, OK"
    )
