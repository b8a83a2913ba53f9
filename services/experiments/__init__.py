"""The experiments service: tenants' federated-learning runs on Dask, from notebooks.

``fedhub up`` picks it up through :func:`service_spec`; :func:`extra_config` tells every
user server where the service is (``FEDHUB_EXPERIMENTS_URL``), the direct URL the
notebook client (``fedhub.client``) and the server extension call with the user's token.
"""

from __future__ import annotations

import os

from fedhub.service import managed_service
from fedhub.tenancy import scopes

NAME = "experiments"
_specs: dict[tuple[str, int], dict] = {}


def service_spec(ctx) -> dict:
    key = (str(ctx.state_dir), ctx.port)
    if key not in _specs:
        # operators tune the service in fedhub_config.py (c.ExperimentScheduler.*,
        # c.DaskClusters.*); FEDHUB_EXPERIMENTS_* from the hub's environment stay fallbacks
        env = {
            k: v
            for k, v in os.environ.items()
            if k.startswith("FEDHUB_EXPERIMENTS_") and k != "FEDHUB_EXPERIMENTS_URL"
        }
        _specs[key] = managed_service(NAME, "fedhub.services.experiments", ctx, extra_env=env)
    return _specs[key]


def service_url(ctx) -> str:
    """The service's direct URL with its prefix, as user servers should call it."""
    return f"{service_spec(ctx)['url']}/services/{NAME}/"


#: The hub's default ``server`` role plus access to fedhub's services, so that the token in
#: a user's server (``JUPYTERHUB_API_TOKEN``) can call them as that user. JupyterHub gives
#: the token only the subset the user holds (``extra_user_scopes`` grants access:services).
SERVER_TOKEN_SCOPES = [
    "users:activity!user",
    "access:servers!server",
    "access:services",
    *scopes.ALL_SCOPES,  # the user's own fedhub scopes, as JupyterHub filters them
]


def extra_config(ctx, c) -> None:
    c.Spawner.environment.update({"FEDHUB_EXPERIMENTS_URL": service_url(ctx)})
    if "server_token_scopes" not in c.Spawner:
        c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
