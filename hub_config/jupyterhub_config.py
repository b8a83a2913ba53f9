# fedhub — production-style JupyterHub configuration.
#
# Copy this file and fedhub_config.py into one folder (e.g. /etc/fedhub), edit the values
# marked EDIT, and run:
#     fedhub db upgrade            # or let the hub migrate at start (upgrade_db below)
#     jupyterhub -f /etc/fedhub/jupyterhub_config.py
#
# Only `c.X = ...` lines: a config file is executed, not imported, so all logic
# lives in fedhub's classes. `fedhub up` (the embedded default) builds the same
# configuration in fedhub/launcher.py with local values.
# ruff: noqa: F821

# fedhub's own settings (tiers file, mail, audit, billing, experiments) live in the one
# file every fedhub process reads; the hub reads it from this folder:
load_subconfig("fedhub_config.py")

# --- the hub --------------------------------------------------------------------
c.JupyterHub.bind_url = "http://0.0.0.0:8000/"  # EDIT: behind your TLS terminator
c.JupyterHub.db_url = "postgresql+psycopg://fedhub@db.internal/fedhub"  # EDIT
c.JupyterHub.cookie_secret_file = "/srv/fedhub/jupyterhub_cookie_secret"
c.JupyterHub.cleanup_servers = False  # keep user servers running across hub restarts
# every user may open fedhub's services; each service decides what they see
c.JupyterHub.extra_user_scopes = ["access:services"]
# fedhub's permissions (docs/access.md): the tenant mirror grants them through roles
# filtered to each tenant's group. Copied from fedhub/tenancy/scopes.py, the one definition;
# tests/access/test_scopes.py fails when the two differ.
c.JupyterHub.custom_scopes = {
    "custom:fedhub:tenants:manage": {"description": "Create, change and suspend any tenant."},
    "custom:fedhub:tenant:read": {"description": "Read the tenant's name, tier and status."},
    "custom:fedhub:tenant:admin": {
        "description": "Set the tenant's budget and send its usage events."
    },
    "custom:fedhub:usage:read": {
        "description": "Read the tenant's usage, costs and quota (members: their own)."
    },
    "custom:fedhub:usage:read-all": {
        "description": "See every user's share of the tenant's usage and costs."
    },
    "custom:fedhub:billing:read": {
        "description": "Read the tenant's invoices, credit notes and budget."
    },
    "custom:fedhub:billing:manage": {"description": "Issue credit notes; read revenue."},
    "custom:fedhub:audit:read": {"description": "Read, verify and export the tenant's audit log."},
    "custom:fedhub:audit:read-if-tier": {
        "description": "Read the tenant's audit log if its tier lets analysts (features.analyst_audit_read)."
    },
    "custom:fedhub:audit:read-all": {"description": "Read every audit chain, the platform's too."},
    "custom:fedhub:experiments:run": {
        "description": "Submit and cancel federated-learning experiments."
    },
    "custom:fedhub:experiments:read": {
        "description": "Read experiments, their rounds, events and weights."
    },
    "custom:fedhub:scheduler:run": {
        "description": "Schedule notebooks, run them now, pause, cancel, delete."
    },
    "custom:fedhub:scheduler:read": {
        "description": "Read scheduled jobs, their runs and the runs' outputs."
    },
    "custom:fedhub:marketplace:publish": {"description": "Publish to the marketplace."},
    "custom:fedhub:marketplace:buy": {
        "description": "Buy, upgrade and refund marketplace licences."
    },
    "custom:fedhub:servers:start": {"description": "Start notebook servers."},
}

# --- who logs in: tenants, roles, the mirror -------------------------------------
# "fedhub-oidc": single sign-on (oauthenticator's GenericOAuthenticator + tenants);
# "fedhub-local": argon2 passwords, lockout, optional TOTP, sign-up by invitation.
c.JupyterHub.authenticator_class = "fedhub-oidc"
# fedhub's tables; default: the hub's own database (one backup holds everything)
# c.TenantAuthenticatorMixin.db_url = "postgresql+psycopg://fedhub@db.internal/fedhub"
# the tiers file: c.Fedhub.tiers_file in fedhub_config.py (the services read it too)
# migrate fedhub's tables at start (like `jupyterhub --upgrade-db`)
c.TenantAuthenticatorMixin.upgrade_db = True
# seconds between checks for tenancy changes made by the CLI or services
c.TenantAuthenticatorMixin.mirror_interval = 5.0

# OIDC provider (any: Keycloak, Entra ID, Okta, Google...) — EDIT all four
c.TenantOIDCAuthenticator.client_id = "fedhub"
c.TenantOIDCAuthenticator.client_secret = ""  # EDIT: or $OAUTH_CLIENT_SECRET
c.TenantOIDCAuthenticator.oauth_callback_url = "https://fedhub.example.org/hub/oauth_callback"
c.TenantOIDCAuthenticator.authorize_url = "https://idp.example.org/oauth2/authorize"
c.TenantOIDCAuthenticator.token_url = "https://idp.example.org/oauth2/token"
c.TenantOIDCAuthenticator.userdata_url = "https://idp.example.org/userinfo"
c.TenantOIDCAuthenticator.scope = ["openid", "profile", "email"]
c.TenantOIDCAuthenticator.username_claim = "preferred_username"
# the claim naming the tenant (else: the tenant allowing the user's email domain)
c.TenantOIDCAuthenticator.tenant_claim = "fedhub_tenant"
# the claim naming the role (tenant-admin, member, analyst, service-account)
c.TenantOIDCAuthenticator.role_claim = "fedhub_role"
# create the membership on first login when the tenant is known
c.TenantOIDCAuthenticator.auto_provision = True

# With fedhub-local instead:
# c.LocalTenantAuthenticator.lockout_threshold = 5      # failures in a row that lock
# c.LocalTenantAuthenticator.lockout_seconds = 900      # how long the lock lasts
# c.LocalTenantAuthenticator.allow_signup = True        # /hub/signup by invitation or domain

# mail (c.Mailer.*) and the TOTP key file (c.TotpSecretBox.key_file): fedhub_config.py

# --- servers: the tier spawner over a real backend -------------------------------
c.JupyterHub.spawner_class = "fedhub-tier"
# the backend that really starts servers: UnixAccountSpawner (an account per user,
# created on first spawn: the embedded default), LocalProcessSpawner (system users),
# "kubespawner.KubeSpawner", "dockerspawner.DockerSpawner", "systemdspawner.SystemdSpawner";
# profiles map onto their mem_limit/cpu_limit/guarantees/image (docs/quotas.md)
c.TierSpawner.backend_class = "jupyterhub.spawner.LocalProcessSpawner"  # EDIT
# seconds between run-time checks: metering, warnings, budget stops, idle culling
c.TierSpawner.reconcile_interval = 60.0
# seconds a tenant may stay over budget (or suspended) before its servers stop
c.TierSpawner.budget_grace_period = 900.0
# cull servers idle longer than the tier's idle_timeout_minutes
c.TierSpawner.cull_idle = True
# guarantees (requests) as a fraction of the profile's limits, for Kubernetes
c.TierSpawner.guarantee_fraction = 0.5
# how the home directory is measured for the storage quota
c.TierSpawner.storage_path_template = "/home/{username}"
# install the tier's kernel specs from kernels/ into each server
c.TierSpawner.install_kernels = True
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90

# --- fedhub's services -------------------------------------------------------------
# Each runs `python -m fedhub.services.<name>` under the hub and is reached at
# /services/<name>/. Each loads FEDHUB_CONFIG_FILE (the same fedhub_config.py as the hub)
# and reads FEDHUB_DB_URL and FEDHUB_STATE_DIR (events spool, experiment checkpoints).
# EDIT the three paths.
c.JupyterHub.services = [
    {
        "name": "audit",
        "url": "http://127.0.0.1:10101",
        "command": ["python", "-m", "fedhub.services.audit"],
        "environment": {
            "FEDHUB_DB_URL": "postgresql+psycopg://fedhub@db.internal/fedhub",
            "FEDHUB_STATE_DIR": "/srv/fedhub",
            "FEDHUB_CONFIG_FILE": "/etc/fedhub/fedhub_config.py",
        },
        "oauth_no_confirm": True,
        # a browser session's token gets the user's fedhub scopes
        "oauth_client_allowed_scopes": list(c.JupyterHub.custom_scopes),
    },
    {
        "name": "billing",
        "url": "http://127.0.0.1:10102",
        "command": ["python", "-m", "fedhub.services.billing"],
        "environment": {
            "FEDHUB_DB_URL": "postgresql+psycopg://fedhub@db.internal/fedhub",
            "FEDHUB_STATE_DIR": "/srv/fedhub",
            "FEDHUB_CONFIG_FILE": "/etc/fedhub/fedhub_config.py",
        },
        "oauth_no_confirm": True,
        # a browser session's token gets the user's fedhub scopes
        "oauth_client_allowed_scopes": list(c.JupyterHub.custom_scopes),
    },
    {
        "name": "experiments",
        "url": "http://127.0.0.1:10103",
        "command": ["python", "-m", "fedhub.services.experiments"],
        "environment": {
            "FEDHUB_DB_URL": "postgresql+psycopg://fedhub@db.internal/fedhub",
            "FEDHUB_STATE_DIR": "/srv/fedhub",
            "FEDHUB_CONFIG_FILE": "/etc/fedhub/fedhub_config.py",
        },
        "oauth_no_confirm": True,
        # a browser session's token gets the user's fedhub scopes
        "oauth_client_allowed_scopes": list(c.JupyterHub.custom_scopes),
    },
    {
        # scheduled notebooks, run as their owners (root: it switches to their accounts)
        "name": "scheduler",
        "url": "http://127.0.0.1:10104",
        "command": ["python", "-m", "fedhub.services.scheduler"],
        "environment": {
            "FEDHUB_DB_URL": "postgresql+psycopg://fedhub@db.internal/fedhub",
            "FEDHUB_STATE_DIR": "/srv/fedhub",
            "FEDHUB_CONFIG_FILE": "/etc/fedhub/fedhub_config.py",
            "FEDHUB_SCHEDULER_URL": "http://127.0.0.1:10104/services/scheduler/",
        },
        "oauth_no_confirm": True,
        # a browser session's token gets the user's fedhub scopes
        "oauth_client_allowed_scopes": list(c.JupyterHub.custom_scopes),
    },
]
# Dask Gateway (docs/gateway.md; the `gateway` extra): per-user Dask clusters, each as its
# owner's Unix account, limited by the tier. Uncomment, pick two more free ports, and add
# the three DASK_GATEWAY__ variables to c.Spawner.environment below.
# c.JupyterHub.services.append(
#     {
#         "name": "dask-gateway",
#         "url": "http://127.0.0.1:10105",
#         "command": ["python", "-m", "fedhub.gateway"],
#         "environment": {
#             "FEDHUB_DB_URL": "postgresql+psycopg://fedhub@db.internal/fedhub",
#             "FEDHUB_STATE_DIR": "/srv/fedhub",
#             "FEDHUB_CONFIG_FILE": "/etc/fedhub/fedhub_config.py",
#             "FEDHUB_GATEWAY_TCP_ADDRESS": "127.0.0.1:10106",
#             "FEDHUB_GATEWAY_API_ADDRESS": "127.0.0.1:10107",
#         },
#     }
# )
# with, in c.Spawner.environment:
#     "DASK_GATEWAY__ADDRESS": "https://fedhub.example.org/services/dask-gateway",
#     "DASK_GATEWAY__PROXY_ADDRESS": "gateway://127.0.0.1:10106",  # servers on this host
#     "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
# the scheduler asks the hub for a short-lived token of a run's owner
c.JupyterHub.load_roles = [
    {"name": "scheduler-service", "scopes": ["tokens"], "services": ["scheduler"]},
]
# user servers find the experiments service here (fedhub.experiments in notebooks)
c.Spawner.environment = {
    "FEDHUB_EXPERIMENTS_URL": "http://127.0.0.1:10103/services/experiments/",
    "FEDHUB_SCHEDULER_URL": "http://127.0.0.1:10104/services/scheduler/",
}
# the server's token may call fedhub's services as its user, with the user's fedhub scopes
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services",
    *c.JupyterHub.custom_scopes,
]
