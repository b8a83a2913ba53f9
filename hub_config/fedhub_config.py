# fedhub — the one configuration file of the hub and every service (docs/operators.md).
#
# traitlets Python config, as dask-gateway's dask_gateway_config.py: only `c.Part.option = ...`
# lines. Read by
#   - the hub: `fedhub up` loads <state-dir>/fedhub_config.py (or --config-file, or
#     $FEDHUB_CONFIG_FILE); a production jupyterhub_config.py has
#     `load_subconfig("fedhub_config.py")`;
#   - every service (audit, billing, experiments) at start: $FEDHUB_CONFIG_FILE, which the
#     hub sets for them, else $FEDHUB_STATE_DIR/fedhub_config.py.
# A value here wins over the environment variable its help names (a fallback) and over the
# default. `fedhub config show` prints what each part ends up with, and where it came from.
# ruff: noqa: F821

# --- every process ------------------------------------------------------------------
# the tiers (quotas and the price book), named once: the hub enforces and billing prices
# the same file
c.Fedhub.tiers_file = "/etc/fedhub/tiers.yaml"  # EDIT

# --- service accounts' API keys (docs/access.md) ------------------------------------------
# how long a key lives when its creator names no expiry, and the longest it may (seconds)
c.ServiceAccountKeys.default_expires_in = 30 * 86400
c.ServiceAccountKeys.max_expires_in = 365 * 86400

# --- mail: sign-up verification links and notices -------------------------------------
# empty smtp_host: messages are written to <state>/outbox/ and the link is logged
c.Mailer.smtp_host = "smtp.example.org"  # EDIT
c.Mailer.smtp_port = 587
c.Mailer.smtp_security = "starttls"
c.Mailer.smtp_username = "fedhub"  # EDIT; the password: $FEDHUB_SMTP_PASSWORD
c.Mailer.from_address = "fedhub <noreply@example.org>"  # EDIT
# TOTP secrets are encrypted with this key, kept outside the database (docs/security.md)
c.TotpSecretBox.key_file = "/srv/fedhub/keys/totp.key"

# --- the audit service ------------------------------------------------------------------
# signing key, master key and checkpoints: keep them off the database host
c.AuditLog.audit_dir = "/srv/fedhub/audit"  # EDIT
c.AuditLog.checkpoint_every_records = 1000
c.AuditLog.checkpoint_every_seconds = 300.0
c.AuditApp.ingest_seconds = 2.0

# --- the billing service ----------------------------------------------------------------
c.BillingSettings.grace_days = 3.0
c.BillingSettings.late_window_hours = 168.0
c.BillingSettings.max_event_quantity = 1e9
c.BillingSettings.close_interval_seconds = 3600.0

# --- the experiments service --------------------------------------------------------------
c.ExperimentScheduler.max_running = 4
c.ExperimentScheduler.max_running_per_tenant = 2
# "local": a private TLS cluster in the service; "address": an existing scheduler (over TLS,
# docs/experiments.md); "gateway": Dask Gateway, a cluster per tenant
c.DaskClusters.mode = "local"
c.DaskClusters.n_workers = 2
c.DaskClusters.gateway_workers_per_tier = {
    "free": 1,
    "starter": 2,
    "professional": 4,
    "enterprise": 8,
}

# --- Dask Gateway (docs/gateway.md; the `gateway` extra) ------------------------------------
# per-user Dask clusters as the owner's Unix account, limited by the tier (gateway_* keys);
# `fedhub up --gateway` turns it on for one start. dask-gateway's own options
# (c.FedhubBackend.*, c.ClusterConfig.*, c.Proxy.*) can be set in this file too.
c.GatewaySettings.enabled = False
