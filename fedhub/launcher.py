"""``fedhub up``: the embedded default deployment in one process tree.

Builds a JupyterHub configuration (SQLite under the state dir, the tier spawner
over local processes, configurable-http-proxy from ``node_modules``, fedhub's
managed services) and runs JupyterHub in this process, so Ctrl-C (SIGINT) or
SIGTERM go straight to JupyterHub's own clean shutdown of the proxy, services
and user servers. ``hub_config/jupyterhub_config.py`` is the production-style
equivalent a deployer copies.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config

from fedhub import accounts, gateway
from fedhub import db as fedhub_db
from fedhub.config import Fedhub, default_config_file, load_config_file
from fedhub.errors import ConfigError
from fedhub.extras import needs_extra
from fedhub.service import free_port, managed_service
from fedhub.tenancy import passwords
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import Role
from fedhub.tenancy.store import TenantStore

# the source checkout when fedhub runs from one (make run, an editable install); in a wheel
# install this is site-packages, which has no node_modules. Data files are found with
# importlib.resources, never through this path.
CHECKOUT = Path(__file__).resolve().parent.parent


def service_modules() -> list[str]:
    """The packages under ``fedhub.services`` that contribute a managed service.

    Such a package defines ``service_spec(ctx: LaunchContext) -> dict`` (one
    ``JupyterHub.services`` entry) and optionally ``extra_config(ctx, config)``.
    """
    import pkgutil

    import fedhub.services as services

    found = []
    for info in sorted(pkgutil.iter_modules(services.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"fedhub.services.{info.name}")
        if hasattr(module, "service_spec"):
            found.append(module.__name__)
    return found


DEMO_TENANTS = [
    ("acme", "Acme Corporation", "professional", ["acme.example"]),
    ("globex", "Globex", "starter", ["globex.example"]),
    ("initech", "Initech", "free", []),
]
DEMO_USERS = [
    ("admin", None, Role.PLATFORM_ADMIN),
    ("acme-admin", "acme", Role.TENANT_ADMIN),
    ("alice", "acme", Role.MEMBER),
    ("dave", "acme", Role.ANALYST),
    ("globex-admin", "globex", Role.TENANT_ADMIN),
    ("bob", "globex", Role.MEMBER),
    ("carol", "initech", Role.MEMBER),
]


NOT_ISOLATED_NOTICE = (
    "This fedhub is not running as root: every user's server runs as the hub's own "
    "account, so users are <strong>not isolated</strong> from each other or from the hub's "
    "files. Fine for a single-user demo; see docs/security.md before inviting others."
)


@dataclass
class LaunchContext:
    """What a service needs to know to configure itself for ``fedhub up``."""

    state_dir: Path
    db_url: str
    port: int
    ip: str = "127.0.0.1"
    #: the fedhub configuration file the hub and every service load ('' for none)
    config_file: str = ""
    #: run the Dask Gateway (``fedhub up --gateway``; else c.GatewaySettings.enabled)
    gateway: bool = False

    @property
    def hub_url(self) -> str:
        return f"http://{self.ip}:{self.port}"


def proxy_command() -> list[str]:
    """configurable-http-proxy from the checkout's ``node_modules``, else from ``PATH``."""
    local = CHECKOUT / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return [str(local)]
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    raise ConfigError(
        "configurable-http-proxy not found on PATH: `npm install -g configurable-http-proxy`, "
        "or `npm ci` in a fedhub checkout (make run does it)"
    )


def build_config(ctx: LaunchContext) -> Config:
    """The embedded deployment's JupyterHub configuration."""
    state = ctx.state_dir
    c = Config()
    c.JupyterHub.bind_url = f"{ctx.hub_url}/"
    c.JupyterHub.hub_bind_url = f"http://{ctx.ip}:{free_port()}"
    c.JupyterHub.db_url = ctx.db_url
    if ctx.db_url.startswith("sqlite"):
        # The hub shares the SQLite file with four services, whose transactions take the
        # write lock at BEGIN (fedhub.db): wait for it as long as they do (30 s), not the
        # driver's 5 s, after which JupyterHub's one session is left unusable and every
        # later request fails ("Missing or invalid credentials").
        c.JupyterHub.db_kwargs = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.authenticator_class = "fedhub-local"
    c.JupyterHub.spawner_class = "fedhub-tier"
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True
    # /hub/metrics names tenants and users: platform admins (read:metrics) only
    c.JupyterHub.authenticate_prometheus = True
    # every user may open fedhub's services; the services decide what they see
    c.JupyterHub.extra_user_scopes = ["access:services"]
    # fedhub's permissions, granted by the roles the tenant mirror keeps (docs/access.md)
    c.JupyterHub.custom_scopes = fedhub_scopes.custom_scopes()
    c.ConfigurableHTTPProxy.api_url = f"http://{ctx.ip}:{free_port()}"
    c.ConfigurableHTTPProxy.command = proxy_command()
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.ConfigurableHTTPProxy.debug = False
    c.Spawner.ip = ctx.ip
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 90
    c.Spawner.cmd = [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]
    # tier spawner (docs/quotas.md) over one Unix account per user (docs/security.md):
    # quotas checked at spawn, reconciler (metering, warnings, budget stops, culling)
    c.UnixAccountSpawner.home_dir_template = str(state / "homes" / "{username}")
    c.TierSpawner.backend_class = "fedhub.extensions.hub.spawner.accounts.UnixAccountSpawner"
    if not accounts.can_isolate():
        c.JupyterHub.template_vars = {"announcement_login": NOT_ISOLATED_NOTICE}
    c.TierSpawner.reconcile_interval = 60.0
    c.TierSpawner.budget_grace_period = 300.0
    c.TenantAuthenticatorMixin.db_url = ctx.db_url
    services = []
    for name in service_modules():
        module = importlib.import_module(name)
        services.append(module.service_spec(ctx))
        if hasattr(module, "extra_config"):
            module.extra_config(ctx, c)
    if services:
        c.JupyterHub.services = services
    gateway_service(ctx, c)
    return c


def gateway_enabled(ctx: LaunchContext) -> bool:
    """``fedhub up --gateway``, else ``c.GatewaySettings.enabled`` in the configuration file."""
    return ctx.gateway or gateway.GatewaySettings(config=fedhub_config(ctx.config_file)).enabled


def gateway_service(ctx: LaunchContext, c: Config) -> None:
    """dask-gateway-server as the hub service ``dask-gateway``, when asked for, and the
    environment that lets ``dask_gateway.Gateway()`` find it from every user's server."""
    if not gateway_enabled(ctx):
        return
    with needs_extra("gateway", "the Dask Gateway (fedhub up --gateway)"):
        import dask_gateway_server  # noqa: F401
    tcp, api = free_port(ctx.ip), free_port(ctx.ip)
    env = gateway.service_environment(ctx.ip, tcp, api)
    spec = managed_service(gateway.SERVICE_NAME, "fedhub.gateway", ctx, extra_env=env)
    spec["display"] = False  # an API for Dask clients, not a page
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), spec]
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), gateway.SERVICES_ROLE]
    client_env = gateway.client_environment(ctx.hub_url, ctx.ip, tcp)
    c.Spawner.environment.update(client_env)
    # the services that run tenants' clusters (c.DaskClusters.mode = "gateway") find it too
    for service in c.JupyterHub.services:
        if service["name"] in gateway.SERVICES_ROLE["services"]:
            service["environment"].update(client_env)


def demo_password(state_dir: Path) -> tuple[str, bool]:
    """The demo password: ``$FEDHUB_DEMO_PASSWORD``, else the one saved earlier, else new.

    Returns the password and whether it was generated now.
    """
    env = os.environ.get("FEDHUB_DEMO_PASSWORD")
    if env:
        return env, False
    saved = state_dir / "demo-credentials.json"
    if saved.exists():
        return json.loads(saved.read_text())["password"], False
    return secrets.token_urlsafe(12), True


def seed_demo(store: TenantStore, state_dir: Path, password: str) -> None:
    """Create the demo tenants and users that are missing (idempotent)."""
    existing = {t.slug for t in store.list_tenants()}
    for slug, name, tier, domains in DEMO_TENANTS:
        if slug not in existing:
            store.create_tenant(slug, name, tier, email_domains=domains, actor="fedhub-demo")
    # the demo users share one password: one argon2 hash for all (a hash costs ~0.1 s of
    # CPU, more on a busy machine; seven of them were a third of `fedhub up`'s own start)
    password_hash = passwords.hash_password(password)
    for username, tenant, role in DEMO_USERS:
        if store.user(username) is None:
            store.add_user(
                username,
                tenant,
                role,
                password=password,
                password_hash=password_hash,
                actor="fedhub-demo",
            )
        else:
            store.set_password(username, password, password_hash=password_hash)
    accounts.write_private(
        state_dir / "demo-credentials.json",
        json.dumps({"users": [u for u, _, _ in DEMO_USERS], "password": password}, indent=2),
    )


# under the state dir, only these are meant for user accounts: their homes (each 0700,
# theirs), the tier kernel specs (read-only), the tenants' stores (0711; each tenant's
# folder 0700, its own account's: fedhub.datasets) and the teams' folders (0711; each
# team's 2770, its Unix group's: fedhub.tenancy.team_folders)
PUBLIC_STATE_ENTRIES = ("homes", "share", "tenant-data", "team-data")


def secure_state_dir(state_dir: Path) -> None:
    """Create the state dir as 0711 (users traverse it to their homes, list nothing).

    A state dir made by an older fedhub had the default umask: its files are made
    private once here, so an upgrade does not leave the database readable.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o711)  # explicit: the umask is 077 by now
    for entry in state_dir.iterdir():
        if entry.name in PUBLIC_STATE_ENTRIES or entry.is_symlink():
            continue
        if entry.lstat().st_uid != os.geteuid():
            continue  # not ours to change (e.g. a log file an operator's tooling made)
        if entry.lstat().st_mode & 0o077:
            entry.chmod(0o700 if entry.is_dir() else 0o600)


def check_isolation(state_dir: Path) -> None:
    """As root, make sure user accounts can run Python and reach their homes."""
    if not accounts.can_isolate():
        return
    try:
        accounts.check_runnable_by_users(sys.executable)
        accounts.check_runnable_by_users(Path(sys.executable).with_name("jupyterhub-singleuser"))
    except accounts.AccountError as e:
        raise ConfigError(str(e)) from None
    blocked = accounts.blocked_for_others(state_dir)
    if blocked is not None and blocked != state_dir.resolve():
        raise ConfigError(
            f"user accounts cannot reach their homes under {state_dir}: {blocked} is not "
            "traversable by others (chmod o+x it, or choose another --state-dir)"
        )


def config_file_for(state_dir: Path, explicit: str | None = None) -> str:
    """The fedhub configuration file of this deployment ('' for none).

    ``explicit`` (``--config-file``), else ``$FEDHUB_CONFIG_FILE``, else
    ``<state dir>/fedhub_config.py`` if it exists.
    """
    if explicit:
        path = Path(explicit).resolve()
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        return str(path)
    return default_config_file(state_dir)


def fedhub_config(config_file: str) -> Config:
    """The contents of the fedhub configuration file (empty when there is none)."""
    return load_config_file(config_file) if config_file else Config()


def prepare(
    state_dir: Path, db_url: str | None, demo: bool, config_file: str = ""
) -> tuple[str, str | None, bool]:
    """Create the state dir, migrate, validate tiers and seed the demo data."""
    # everything the hub, the proxy and the services write is private to the hub's
    # account; user servers drop to their own accounts and set their own umask
    accounts.private_umask()
    secure_state_dir(state_dir)
    os.environ["FEDHUB_STATE_DIR"] = str(state_dir)
    url = db_url or fedhub_db.sqlite_url(state_dir)
    os.environ["FEDHUB_DB_URL"] = url
    # the tiers file named in the configuration file (c.Fedhub.tiers_file), validated now
    tiers = Fedhub(config=fedhub_config(config_file)).apply()
    check_isolation(state_dir)
    fedhub_db.upgrade(url)
    password, generated = None, False
    if demo:
        password, generated = demo_password(state_dir)
        seed_demo(TenantStore(url, tiers), state_dir, password)
    return url, password, generated


def run_hub(ctx: LaunchContext, argv: list[str]) -> None:
    """Run JupyterHub in this process until it is stopped."""
    from fedhub.extensions.hub.app import FedhubHub

    config = build_config(ctx)
    # the fedhub configuration file wins over the embedded defaults (and reaches the
    # services through FEDHUB_CONFIG_FILE); JupyterHub then loads ./jupyterhub_config.py
    # if present (a file in the state dir for local overrides), then the command line
    config.merge(fedhub_config(ctx.config_file))
    os.chdir(ctx.state_dir)
    FedhubHub.instance(config=config)  # the singleton launch_instance() will use
    FedhubHub.launch_instance(argv)
