"""Tiers: declarative quota templates loaded from ``tiers.yaml``.

A tier says how much of the platform a tenant may use. The file is validated
when it is loaded, and every problem is reported with the file, the tier and
the key, e.g. ``hub_config/tiers.yaml: tier 'starter', key 'max_users': ...``,
so an operator can fix it without reading a traceback.

Tiers can also live in the database (``fedhub tiers import|clone``, docs/tier-templates.md):
:func:`load_tiers` is the one place that merges them into the file's catalog. The file
wins for every name it defines; the database adds the names the file does not define,
each at the version last applied (``fedhub tiers apply``); the tables, and the functions
that store, apply and read them, are in :mod:`fedhub.tiers.store`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from fedhub.errors import ConfigError
from fedhub.tiers.store import TierVersion, _tiers_database, applied_tiers, forget_stored_tiers

log = logging.getLogger("fedhub.tiers")

# hub_config/tiers.yaml in a checkout; package data of fedhub.hub_config in a wheel (setup.py)
DEFAULT_TIERS_PATH = Path(str(files("fedhub.hub_config") / "tiers.yaml"))
TIER_ORDER = ("free", "starter", "professional", "enterprise")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class Profile(_Strict):
    """A server size a user can pick on the spawn page."""

    display_name: str
    cpu: NonNegativeFloat = Field(description="CPU cores (limit)")
    memory_gb: NonNegativeFloat = Field(description="memory limit in GB")
    gpu: NonNegativeInt = 0
    image: str | None = Field(None, description="container image for container backends")
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Kubernetes node labels a server of this size must run on (KubeSpawner)",
    )
    description: str = ""


class Features(_Strict):
    marketplace_publishing: bool = False
    sso: bool = False
    audit_export: bool = False
    gpu: bool = False
    analyst_audit_read: bool = False


class Overage(_Strict):
    """Unit prices charged beyond what the monthly price includes."""

    compute_hour: NonNegativeFloat = 0.0
    storage_gb_month: NonNegativeFloat = 0.0
    api_calls_1k: NonNegativeFloat = 0.0
    experiment: NonNegativeFloat = 0.0
    client_hour: NonNegativeFloat = 0.0
    # reserved resources by profile (what a server asked for, not what it used)
    cpu_core_hour: NonNegativeFloat = 0.0
    memory_gb_hour: NonNegativeFloat = 0.0
    fl_round: NonNegativeFloat = 0.0


class PasswordPolicy(_Strict):
    """What a local password must be (fedhub.tenancy.passwords.check_password)."""

    min_length: int = Field(8, ge=8, le=128, description="fewest characters")
    character_classes: int = Field(
        1, ge=1, le=4, description="how many of lower case, upper case, digits, symbols"
    )
    history: int = Field(0, ge=0, le=24, description="not one of the last N passwords")
    max_age_days: NonNegativeInt = Field(
        0, description="days before a password must be changed at login (0: never)"
    )


class SessionPolicy(_Strict):
    """How long a hub login lasts (enforced by the sessions work)."""

    idle_minutes: NonNegativeInt = Field(0, description="idle minutes before logout (0: none)")
    absolute_hours: NonNegativeInt = Field(
        0, description="hours after login before logout (0: the hub cookie's lifetime)"
    )


class SecurityPolicy(_Strict):
    """The tier's login policy (docs/security-policy.md)."""

    mfa_required: bool = Field(
        False, description="local users must enrol a TOTP authenticator before logging in"
    )
    ip_allowlist: bool = Field(
        False, description="the tier lets tenant admins restrict logins to CIDRs"
    )
    password: PasswordPolicy = Field(PasswordPolicy(), description="local password rules")
    sessions: SessionPolicy = Field(SessionPolicy(), description="login lifetimes")


class Tier(_Strict):
    """One tier's quotas. Every quota is a non-negative number."""

    display_name: str
    monthly_price: NonNegativeFloat
    max_users: NonNegativeInt
    max_servers_per_tenant: NonNegativeInt
    max_servers_per_user: NonNegativeInt
    profiles: list[str] = Field(min_length=1)
    kernels: list[str] = Field(default_factory=lambda: ["python3"])
    compute_hours_per_month: NonNegativeFloat
    storage_gb: NonNegativeFloat
    api_calls_per_day: NonNegativeInt
    # hard caps of the rate limiter (fedhub.ratelimit), hub API and services together; the
    # daily one is a cap only where overage.api_calls_1k is 0, else an allowance billed beyond.
    # None: no hourly cap
    api_calls_per_hour: NonNegativeInt | None = None
    experiments_per_month: NonNegativeInt
    max_clients_per_experiment: NonNegativeInt
    max_concurrent_experiments: NonNegativeInt = 1
    # agent groups of one graph_td3 experiment (each counts as a client); a tier that does
    # not say runs none
    max_agents_per_experiment: NonNegativeInt = 0
    federated_client_hours_per_month: NonNegativeFloat = 0.0
    # per experiment: how long one run may hold the shared workers (checked at submission)
    max_rounds_per_experiment: int = Field(100, ge=1, le=10_000)
    max_local_epochs: int = Field(5, ge=1, le=1_000)
    idle_timeout_minutes: NonNegativeInt = 60
    # scheduled notebooks (fedhub.scheduler): jobs per tenant, how often one may fire
    # (a float: a sixth cron field counts seconds), runs executing at once per tenant
    scheduled_jobs_per_tenant: NonNegativeInt = 10
    min_schedule_interval_minutes: NonNegativeFloat = 60.0
    max_concurrent_scheduled_runs: NonNegativeInt = 1
    audit_retention_days: NonNegativeInt = 90
    # Dask Gateway clusters (fedhub.gateway): clusters pending or running per tenant, workers
    # per cluster, and the largest worker a user may ask for
    gateway_max_clusters: NonNegativeInt = 1
    gateway_max_workers: NonNegativeInt = 2
    gateway_worker_cores: int = Field(1, ge=1, le=256)
    gateway_worker_memory_gb: float = Field(2.0, gt=0, le=4096)
    features: Features = Features()
    overage: Overage = Overage()
    security: SecurityPolicy = SecurityPolicy()
    # billing (fedhub.billing): a negotiated discount on the invoice subtotal, in percent
    discount_percent: NonNegativeFloat = Field(0.0, le=100)


class TierCatalog:
    """The tiers and profiles of one ``tiers.yaml``, and the tiers a database adds.

    A catalog made by :func:`load_tiers` with a database re-reads the database's tiers
    when they are older than :data:`fedhub.tiers.store.STORED_TIERS_TTL` seconds, so a
    tier imported or a version applied reaches a running hub and its services without a
    restart.
    """

    def __init__(
        self,
        tiers: Mapping[str, Tier],
        profiles: Mapping[str, Profile],
        source: str,
        *,
        db: str | None = None,
    ):
        self._file_tiers = dict(tiers)
        self.profiles = dict(profiles)
        self.source = source
        self._db = db
        self._tiers = dict(tiers)
        self._versions: dict[str, int] = {}
        self._stored_seen: dict[str, tuple[int, dict[str, Any]]] = {}
        if db:
            self._refresh(strict=True)

    @property
    def tiers(self) -> dict[str, Tier]:
        self._refresh()
        return self._tiers

    @property
    def versions(self) -> dict[str, int]:
        """The tiers that come from the database, and the version of each that applies."""
        self._refresh()
        return self._versions

    def _refresh(self, strict: bool = False) -> None:
        """Merge the database's tiers in (the file wins for a name it defines). ``strict``
        (at load): a bad stored tier raises; later it is logged and the last good kept."""
        if self._db is None:
            return
        try:
            stored = applied_tiers(self._db)
        except SQLAlchemyError as e:
            if strict:
                raise
            log.warning("tiers of the database not re-read (%s): the last ones kept", e)
            return
        if stored is self._stored_seen or stored == self._stored_seen:
            return
        self._stored_seen = stored
        tiers, versions = dict(self._file_tiers), {}
        for name, (version, definition) in sorted(stored.items()):
            if name in tiers:
                log.warning(
                    "tier %r of the database (version %d) is ignored: %s defines it and wins",
                    name,
                    version,
                    self.source,
                )
                continue
            where = f"{TierVersion.__tablename__} (version {version})"  # not the URL: a password
            try:
                tier = Tier.model_validate(definition)
                self._check_profiles(name, tier, where)
            except ValidationError as e:
                error = ConfigError(_describe(e, f"{where}: tier {name!r}"))
            except ConfigError as e:
                error = e
            else:
                tiers[name], versions[name] = tier, version
                continue
            if strict:
                raise error from None
            log.error("%s; the tiers read before are kept", error.message)
            return
        self._tiers, self._versions = tiers, versions

    def origin(self, name: str) -> str:
        """Where a tier is defined: the file, or the database and the version that applies."""
        self.get(name)
        if name in self.versions:
            return f"the database, version {self.versions[name]}"
        return self.source

    def __contains__(self, name: str) -> bool:
        return name in self.tiers

    def names(self) -> list[str]:
        known = [t for t in TIER_ORDER if t in self.tiers]
        return known + sorted(set(self.tiers) - set(known))

    def get(self, name: str) -> Tier:
        if name not in self.tiers and self._db is not None:
            # a tier imported since the last read (a tenant just created on it): read now
            # rather than refuse for up to STORED_TIERS_TTL seconds
            forget_stored_tiers(self._db)
            self._refresh()
        try:
            return self.tiers[name]
        except KeyError:
            raise ConfigError(
                f"unknown tier {name!r}; {self.source} declares: {', '.join(self.names())}"
            ) from None

    def effective(self, name: str, overrides: Mapping[str, Any] | None = None) -> Tier:
        """The tier with a tenant's negotiated overrides applied and validated."""
        tier = self.get(name)
        if not overrides:
            return tier
        try:
            result = Tier.model_validate(_merge(tier.model_dump(), overrides))
        except ValidationError as e:
            raise ConfigError(_describe(e, f"overrides of tier {name!r}")) from None
        self._check_profiles(name, result, "overrides")
        return result

    def profiles_for(self, tier: Tier) -> dict[str, Profile]:
        return {p: self.profiles[p] for p in tier.profiles}

    def _check_profiles(self, tier_name: str, tier: Tier, where: str) -> None:
        for p in tier.profiles:
            if p not in self.profiles:
                raise ConfigError(
                    f"{where}: tier {tier_name!r}, key 'profiles': unknown profile {p!r}"
                    f" (declared: {', '.join(sorted(self.profiles))})"
                )

    @property
    def as_dict(self) -> dict[str, Any]:
        return {
            "profiles": {k: v.model_dump() for k, v in self.profiles.items()},
            "tiers": {k: self.tiers[k].model_dump() for k in self.names()},
        }


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied key by key, into nested mappings
    (an override of ``security.password.min_length`` keeps the other password rules)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, where: str) -> str:
    """One readable line per problem: where, key path, what is wrong."""
    lines = []
    for err in error.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) if loc else "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}, key {key!r}: {msg}")
    return "; ".join(lines)


def parse_tiers(raw: Any, source: str) -> TierCatalog:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping with 'profiles' and 'tiers'")
    unknown = set(raw) - {"profiles", "tiers"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}")
    profiles: dict[str, Profile] = {}
    for name, spec in (raw.get("profiles") or {}).items():
        try:
            profiles[name] = Profile.model_validate(spec)
        except ValidationError as e:
            raise ConfigError(_describe(e, f"{source}: profile {name!r}")) from None
    tiers: dict[str, Tier] = {}
    tier_specs = raw.get("tiers")
    if not isinstance(tier_specs, Mapping) or not tier_specs:
        raise ConfigError(f"{source}: key 'tiers' must be a non-empty mapping")
    for name, spec in tier_specs.items():
        try:
            tiers[name] = Tier.model_validate(spec)
        except ValidationError as e:
            raise ConfigError(_describe(e, f"{source}: tier {name!r}")) from None
    catalog = TierCatalog(tiers, profiles, source)
    for name, tier in tiers.items():
        catalog._check_profiles(name, tier, source)
    return catalog


#: The tiers file this process was configured with (``c.Fedhub.tiers_file``, set by
#: :meth:`fedhub.config.Fedhub.apply` when the hub or a service loads its configuration).
_configured_path: str | None = None


def use_tiers_file(path: str | os.PathLike | None) -> None:
    """Make ``path`` the default of :func:`load_tiers` in this process (None: unset)."""
    global _configured_path
    _configured_path = str(path) if path else None


def load_tiers(path: str | os.PathLike | None = None, *, db: str | None = None) -> TierCatalog:
    """Load and validate a tiers file (default: the configured ``c.Fedhub.tiers_file``,
    else ``$FEDHUB_TIERS``, else the bundled one), with the database's tiers added.

    The database is ``db``, else ``$FEDHUB_DB_URL``, else the SQLite file of
    ``$FEDHUB_STATE_DIR``; none of them (or a SQLite file not made yet, or tables not
    migrated yet): the file alone, as before tier templates existed.
    """
    catalog = load_tiers_file(path)
    url = _tiers_database(db)
    if not url:
        return catalog
    return TierCatalog(catalog.tiers, catalog.profiles, catalog.source, db=url)


def load_tiers_file(path: str | os.PathLike | None = None) -> TierCatalog:
    """The tiers file alone (see :func:`load_tiers`)."""
    path = Path(path or _configured_path or os.environ.get("FEDHUB_TIERS") or DEFAULT_TIERS_PATH)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read tiers file ({e.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML") from None
    return parse_tiers(raw, str(path))
