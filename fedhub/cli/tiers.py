"""``fedhub tiers show|limits|validate`` (the file) and the tier templates stored in the
database: ``export|import|clone|diff|history|apply`` (docs/tier-templates.md)."""

from __future__ import annotations

from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from fedhub import db as fedhub_db
from fedhub import limits
from fedhub.cli.common import ACTOR, db_url, output, table
from fedhub.cli.tenants import parse_overrides
from fedhub.errors import ConfigError
from fedhub.tiers import Tier, TierCatalog, _describe, _merge, load_tiers, load_tiers_file
from fedhub.tiers.store import (
    STORED_TIERS_TTL,
    apply_tier_version,
    store_tier_version,
    tier_versions,
)


@click.group("tiers")
def command():
    """Inspect and validate tiers.yaml; export, import, clone and diff tier templates."""


def _catalog(ctx, path) -> TierCatalog:
    """PATH: that file alone; else what the hub sees: the configured file and the tiers of
    the database (when it exists: these commands never create one)."""
    return load_tiers_file(path) if path else load_tiers(db=db_url(ctx))


@command.command("show")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option("--full", is_flag=True, help="Every key of every tier, as YAML.")
@click.pass_context
def show(ctx, path, as_json, full):
    """Show the tiers (default: the configured file with the database's tiers; PATH: a file)."""
    catalog = _catalog(ctx, path)
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
@click.pass_context
def limits_table(ctx, path, as_json):
    """Every tier key from the limits registry: unit, window, meter, where it is enforced,
    and each tier's value (one column per tier). Keys not enforced yet are marked."""
    catalog = _catalog(ctx, path)
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
    catalog = load_tiers_file(path)
    click.echo(
        f"{catalog.source}: {len(catalog.tiers)} tiers, {len(catalog.profiles)} profiles, OK"
    )


# -- tier templates: export, import, clone, diff, history, apply (docs/tier-templates.md) --


def _database(ctx) -> str:
    url = db_url(ctx)
    fedhub_db.ensure_sqlite_dir(url)
    fedhub_db.upgrade(url)
    return url


def _resolve(catalog: TierCatalog, url: str, ref: str) -> tuple[str, Tier, str]:
    """``NAME`` (the version that applies) or ``NAME@N`` (a stored version): name, tier, origin."""
    name, sep, number = ref.partition("@")
    if not sep:
        return name, catalog.get(name), catalog.origin(name)
    for row, _applied in tier_versions(url, name):
        if str(row.version) == number:
            return name, Tier.model_validate(row.definition), f"the database, version {number}"
    raise ConfigError(f"tier {ref!r}: no such stored version (see fedhub tiers history {name})")


def export_text(name: str, tier: Tier, origin: str) -> str:
    """One tier as a template file a person can edit and import again."""
    body = yaml.safe_dump(
        {"tiers": {name: tier.model_dump(mode="json")}}, sort_keys=False, allow_unicode=True
    )
    return (
        f"# fedhub tier template: tier {name!r} from {origin}, every key resolved\n"
        "# (defaults included). Edit the values, and the name under 'tiers:' for a new\n"
        "# tier, then: fedhub tiers import FILE [--as NAME]   (docs/tier-templates.md)\n" + body
    )


def read_template(path: str, catalog: TierCatalog) -> dict[str, Tier]:
    """The tiers of a template file, validated like tiers.yaml; errors name file, tier, key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(
            f"{path}:{f' line {mark.line + 1}' if mark else ''} invalid YAML"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tiers"), dict) or not raw["tiers"]:
        raise ConfigError(f"{path}: expected a mapping 'tiers:' with at least one tier")
    unknown = set(raw) - {"tiers"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key {sorted(unknown)[0]!r} (profiles are defined "
            f"only in {catalog.source})"
        )
    tiers = {}
    for name, spec in raw["tiers"].items():
        try:
            tiers[str(name)] = Tier.model_validate(spec)
        except ValidationError as e:
            raise ConfigError(_describe(e, f"{path}: tier {name!r}")) from None
        catalog._check_profiles(str(name), tiers[str(name)], path)
    return tiers


def _stored(name: str, row, applies: bool, verb: str) -> str:
    text = f"{verb} tier {name!r} version {row.version} (sha256 {row.sha256[:12]})"
    if applies:
        return text + "; it applies now (a new tier: no tenant is on it yet)."
    return (
        text + f"; tenants on {name!r} keep the version that applies until "
        f"'fedhub tiers apply {name} --version {row.version}'."
    )


@command.command("export")
@click.argument("name")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False), help="Write to a file.")
@click.pass_context
def export(ctx, name, out):
    """Write one tier (NAME or NAME@VERSION) as an editable YAML template."""
    url = _database(ctx)
    name, tier, origin = _resolve(load_tiers(db=url), url, name)
    text = export_text(name, tier, origin)
    if out:
        Path(out).write_text(text)
        click.echo(f"Exported tier {name!r} to {out}.")
    else:
        click.echo(text, nl=False)


@command.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--as", "as_name", help="Store the file's one tier under this name.")
@click.pass_context
def import_(ctx, path, as_name):
    """Store the tiers of a template file in the database, each as a new version."""
    url = _database(ctx)
    catalog = load_tiers(db=url)
    tiers = read_template(path, catalog)
    if as_name:
        if len(tiers) != 1:
            raise ConfigError(f"{path}: --as needs a file with one tier (it has {len(tiers)})")
        tiers = {as_name: next(iter(tiers.values()))}
    for name, tier in tiers.items():
        row, applies = store_tier_version(
            url, catalog, name, tier, action="imported", source=str(path), actor=ACTOR
        )
        click.echo(_stored(name, row, applies, "Imported"))


@command.command("clone")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--set",
    "sets",
    multiple=True,
    help="key=value, dotted keys nest (limits as in tiers.yaml), values are YAML (repeatable).",
)
@click.pass_context
def clone(ctx, src, dst, sets):
    """Store a copy of tier SRC (NAME or NAME@VERSION) as DST, with --set changes."""
    url = _database(ctx)
    catalog = load_tiers(db=url)
    src_name, tier, origin = _resolve(catalog, url, src)
    changes = parse_overrides(sets)  # key= (or key=null) is None: api_calls_per_hour, no cap
    try:
        result = Tier.model_validate(_merge(tier.model_dump(), changes))
    except ValidationError as e:
        raise ConfigError(_describe(e, f"clone of {src!r} (--set): tier {dst!r}")) from None
    row, applies = store_tier_version(
        url, catalog, dst, result, action="cloned", source=f"{src_name} ({origin})", actor=ACTOR
    )
    click.echo(_stored(dst, row, applies, "Cloned"))


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@command.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def diff(ctx, a, b, as_json):
    """Key by key, where two tiers (NAME or NAME@VERSION) differ."""
    url = _database(ctx)
    catalog = load_tiers(db=url)
    flat_a = _flatten(_resolve(catalog, url, a)[1].model_dump(mode="json"))
    flat_b = _flatten(_resolve(catalog, url, b)[1].model_dump(mode="json"))
    keys = list(flat_a) + [k for k in flat_b if k not in flat_a]
    changed = [
        {"key": k, "a": flat_a.get(k), "b": flat_b.get(k)}
        for k in keys
        if flat_a.get(k) != flat_b.get(k)
    ]
    if not changed:
        text = f"tiers {a!r} and {b!r} are the same"
    else:
        rows = [[d["key"], _cell(d["a"]), _cell(d["b"])] for d in changed]
        text = table(rows, ["KEY", a, b]) + f"\n\n{len(changed)} of {len(keys)} keys differ"
    output({"a": a, "b": b, "differences": changed}, as_json, text)


@command.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history(ctx, name, as_json):
    """The stored versions of a tier, and which one applies."""
    url = _database(ctx)
    catalog = load_tiers(db=url)
    versions = tier_versions(url, name)
    if not versions:
        if name in catalog:
            where = f"{name!r} is defined in {catalog.source}; it has no stored versions"
        else:
            where = f"no tier {name!r} is stored in the database"
        output({"name": name, "versions": []}, as_json, where)
        return
    current = catalog.versions.get(name)
    data, rows = [], []
    for row, applied in versions:
        entry = {
            "version": row.version,
            "applies": row.version == current,
            "sha256": row.sha256,
            "action": row.action,
            "source": row.source,
            "created_by": row.created_by,
            "created_at": row.created_at,
            "applied_at": [a.applied_at for a in applied],
        }
        data.append(entry)
        rows.append(
            [
                f"{row.version}{' *' if entry['applies'] else ''}",
                row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                row.created_by,
                f"{row.action} from {row.source}",
                row.sha256[:12],
                applied[-1].applied_at.strftime("%Y-%m-%d %H:%M:%S") if applied else "-",
            ]
        )
    text = table(rows, ["VERSION", "CREATED (UTC)", "BY", "HOW", "SHA256", "LAST APPLIED"])
    if name in catalog and name not in catalog.versions:
        text += f"\n\n{catalog.source} defines {name!r} and wins: no stored version applies"
    else:
        text += "\n\n* the version that applies"
    output({"name": name, "versions": data}, as_json, text)


@command.command("apply")
@click.argument("name")
@click.option("--version", "version", type=int, help="The version to apply (default: newest).")
@click.pass_context
def apply(ctx, name, version):
    """Make a stored version of a tier the one that applies to its tenants."""
    url = _database(ctx)
    row = apply_tier_version(url, name, version, actor=ACTOR)
    click.echo(
        f"Tier {name!r} version {row.version} applies from now on, to every tenant on it "
        f"(a running hub and its services read it within {STORED_TIERS_TTL:g} s)."
    )
